//! Request/response pairing per flow and conversion of messages into `l7_flow_log` rows.
//!
//! Pipelined protocols ([`Pairing::InOrder`]) answer requests in order; id-based protocols
//! ([`Pairing::ById`]) match on [`L7Message::request_id`]. The pending queue is bounded (the
//! oldest request is dropped and counted); unanswered requests time out into rows with
//! `response_status = timeout`.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::collections::VecDeque;

use deepflow_core::FlowInfo;
use deepflow_core::record::{L7FlowLog, L7Protocol, LogType, ResponseStatus};

use crate::L7Counters;
use crate::config::EmitMode;
use crate::l7::{L7Message, MessageKind, Pairing};

/// Unanswered requests of one flow.
#[derive(Debug, Default)]
pub(crate) struct Session {
    pending: VecDeque<Box<L7Message>>,
}

/// What the session layer needs from the engine configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionCfg {
    pub max_pending: usize,
    pub timeout_us: u64,
    pub emit: EmitMode,
}

impl Session {
    /// Number of unanswered requests.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Feeds one complete message (times already set).
    pub(crate) fn on_message(
        &mut self,
        mut msg: Box<L7Message>,
        pairing: Pairing,
        cfg: SessionCfg,
        flow: &FlowInfo,
        counters: &mut L7Counters,
        out: &mut Vec<L7FlowLog>,
    ) {
        counters.messages += 1;
        match msg.kind() {
            MessageKind::OneWay => {
                push_with(out, counters, flow, msg.protocol, LogType::Session, |r| fill_single(r, &mut msg));
            }
            MessageKind::Request => {
                if cfg.emit == EmitMode::Messages {
                    push(out, counters, row_single(flow, &msg, LogType::Request));
                }
                if self.pending.len() >= cfg.max_pending.max(1) {
                    self.pending.pop_front();
                    counters.pending_dropped += 1;
                }
                self.pending.push_back(msg);
            }
            MessageKind::Response => {
                let idx = match pairing {
                    Pairing::InOrder => (!self.pending.is_empty()).then_some(0),
                    Pairing::ById => {
                        msg.request_id.and_then(|id| self.pending.iter().position(|r| r.request_id == Some(id)))
                    }
                };
                // rows are built in place in `out` from the boxed messages: no copy of either
                match idx.and_then(|i| self.pending.remove(i)) {
                    Some(mut req) => match cfg.emit {
                        EmitMode::Sessions => {
                            let proto = merged_protocol(&req, &msg);
                            push_with(out, counters, flow, proto, LogType::Session, |r| {
                                fill_merged(r, &mut req, &mut msg);
                            });
                        }
                        EmitMode::Messages => {
                            let rrt = msg.end_us.saturating_sub(req.start_us);
                            push_with(out, counters, flow, msg.protocol, LogType::Response, |r| {
                                fill_single(r, &mut msg);
                                r.rrt = Some(rrt);
                            });
                        }
                    },
                    None => {
                        counters.unmatched_responses += 1;
                        push_with(out, counters, flow, msg.protocol, LogType::Response, |r| fill_single(r, &mut msg));
                    }
                }
            }
        }
    }

    /// Emits requests older than the timeout (or all of them when `now_us` is `None`).
    pub(crate) fn expire(
        &mut self,
        now_us: Option<u64>,
        cfg: SessionCfg,
        flow: &FlowInfo,
        counters: &mut L7Counters,
        out: &mut Vec<L7FlowLog>,
    ) {
        let mut kept = VecDeque::with_capacity(self.pending.len());
        for req in self.pending.drain(..) {
            let expired = match now_us {
                None => true,
                Some(now) => req.start_us.saturating_add(cfg.timeout_us) <= now,
            };
            if !expired {
                kept.push_back(req);
                continue;
            }
            counters.timeouts += 1;
            let mut row = match cfg.emit {
                EmitMode::Sessions => row_single_owned(flow, *req, LogType::Request),
                EmitMode::Messages => {
                    let end_us = req.end_us;
                    let mut r = row_single_owned(flow, *req, LogType::Response);
                    // a synthetic "no response" marker: only the request identity is kept
                    r.version = None;
                    r.request_length = None;
                    r.response_length = None;
                    r.trace_id = None;
                    r.span_id = None;
                    r.parent_span_id = None;
                    r.x_request_id_0 = None;
                    r.attribute_names.clear();
                    r.attribute_values.clear();
                    r.start_time = now_us.unwrap_or(end_us);
                    r.end_time = r.start_time;
                    r
                }
            };
            row.response_status = ResponseStatus::Timeout;
            push(out, counters, row);
        }
        self.pending = kept;
    }
}

fn push(out: &mut Vec<L7FlowLog>, counters: &mut L7Counters, row: L7FlowLog) {
    counters.rows += 1;
    out.push(row);
}

/// Appends a new row of `flow` and fills it where it lies.
fn push_with(
    out: &mut Vec<L7FlowLog>,
    counters: &mut L7Counters,
    flow: &FlowInfo,
    protocol: L7Protocol,
    log_type: LogType,
    fill: impl FnOnce(&mut L7FlowLog),
) {
    counters.rows += 1;
    out.push(L7FlowLog::new(flow, protocol, log_type));
    if let Some(r) = out.last_mut() {
        fill(r);
    }
}

/// A row made of one message (request, response or one-way).
pub fn row_single(flow: &FlowInfo, m: &L7Message, log_type: LogType) -> L7FlowLog {
    row_single_owned(flow, m.clone(), log_type)
}

/// [`row_single`] taking the message by value: its strings move into the row.
pub fn row_single_owned(flow: &FlowInfo, mut m: L7Message, log_type: LogType) -> L7FlowLog {
    let mut r = L7FlowLog::new(flow, m.protocol, log_type);
    fill_single(&mut r, &mut m);
    r
}

/// Fills a new row (of `m.protocol`) from one message, taking the message's strings.
fn fill_single(r: &mut L7FlowLog, m: &mut L7Message) {
    let kind = m.kind();
    r.start_time = m.start_us;
    r.end_time = m.end_us.max(m.start_us);
    r.version = m.version.take();
    r.request_type = m.request_type.take();
    r.request_domain = m.request_domain.take();
    r.request_resource = m.request_resource.take();
    r.endpoint = m.endpoint.take();
    r.request_id = m.request_id;
    r.response_code = m.response_code;
    r.response_status = m.response_status.unwrap_or(ResponseStatus::Unknown);
    r.response_exception = m.response_exception.take();
    r.response_result = m.response_result.take();
    let trace = &mut m.trace;
    match kind {
        MessageKind::Response => {
            r.response_length = m.length;
            r.x_request_id_1 = trace.x_request_id.take();
        }
        _ => {
            r.request_length = m.length;
            r.x_request_id_0 = trace.x_request_id.take();
            r.http_proxy_client = trace.proxy_client.take();
        }
    }
    r.trace_id = trace.trace_id.take();
    r.span_id = trace.span_id.take();
    r.parent_span_id = trace.parent_span_id.take();
    push_attributes(r, std::mem::take(&mut m.attributes));
}

/// Moves `attrs` into the row's attribute columns.
fn push_attributes(r: &mut L7FlowLog, attrs: Vec<(String, String)>) {
    r.attribute_names.reserve(attrs.len());
    r.attribute_values.reserve(attrs.len());
    for (n, v) in attrs {
        r.attribute_names.push(n);
        r.attribute_values.push(v);
    }
}

/// A `session` row merging a request with its response.
pub fn row_merged(flow: &FlowInfo, req: &L7Message, resp: &L7Message) -> L7FlowLog {
    row_merged_owned(flow, req.clone(), resp.clone())
}

/// [`row_merged`] taking both messages by value: their strings move into the row.
pub fn row_merged_owned(flow: &FlowInfo, mut req: L7Message, mut resp: L7Message) -> L7FlowLog {
    let mut r = L7FlowLog::new(flow, merged_protocol(&req, &resp), LogType::Session);
    fill_merged(&mut r, &mut req, &mut resp);
    r
}

/// The protocol of a session row. gRPC is only known once content-type is seen: the more
/// specific (higher id) of the two.
fn merged_protocol(req: &L7Message, resp: &L7Message) -> L7Protocol {
    if resp.protocol.id() > req.protocol.id() { resp.protocol } else { req.protocol }
}

/// Fills a new session row from a request and its response, taking their strings.
fn fill_merged(r: &mut L7FlowLog, req: &mut L7Message, resp: &mut L7Message) {
    r.start_time = req.start_us;
    r.end_time = resp.end_us.max(req.start_us);
    r.rrt = Some(resp.end_us.saturating_sub(req.start_us));
    r.version = resp.version.take().or_else(|| req.version.take());
    r.request_type = req.request_type.take().or_else(|| resp.request_type.take());
    r.request_domain = req.request_domain.take().or_else(|| resp.request_domain.take());
    r.request_resource = req.request_resource.take().or_else(|| resp.request_resource.take());
    r.endpoint = req.endpoint.take().or_else(|| resp.endpoint.take());
    r.request_id = req.request_id.or(resp.request_id);
    r.response_code = resp.response_code;
    r.response_status = resp.response_status.unwrap_or(ResponseStatus::Unknown);
    r.response_exception = resp.response_exception.take();
    r.response_result = resp.response_result.take();
    r.request_length = req.length;
    r.response_length = resp.length;
    let (qt, st) = (&mut req.trace, &mut resp.trace);
    r.trace_id = qt.trace_id.take().or_else(|| st.trace_id.take());
    r.span_id = qt.span_id.take().or_else(|| st.span_id.take());
    r.parent_span_id = qt.parent_span_id.take().or_else(|| st.parent_span_id.take());
    r.x_request_id_0 = qt.x_request_id.take();
    r.x_request_id_1 = st.x_request_id.take();
    r.http_proxy_client = qt.proxy_client.take();
    // a response repeating a request attribute (same name and value) adds nothing
    let resp_attrs = std::mem::take(&mut resp.attributes);
    let req_attrs = std::mem::take(&mut req.attributes);
    let n = req_attrs.len();
    push_attributes(r, req_attrs);
    r.attribute_names.reserve(resp_attrs.len());
    r.attribute_values.reserve(resp_attrs.len());
    for (name, value) in resp_attrs {
        let repeated =
            r.attribute_names.iter().zip(&r.attribute_values).take(n).any(|(a, b)| *a == name && *b == value);
        if !repeated {
            r.attribute_names.push(name);
            r.attribute_values.push(value);
        }
    }
}
