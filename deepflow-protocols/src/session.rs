//! Request/response pairing per flow and conversion of messages into `l7_flow_log` rows.
//!
//! Pipelined protocols ([`Pairing::InOrder`]) answer requests in order; id-based protocols
//! ([`Pairing::ById`]) match on [`L7Message::request_id`]. The pending queue is bounded (the
//! oldest request is dropped and counted); unanswered requests time out into rows with
//! `response_status = timeout`.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::collections::VecDeque;

use deepflow_core::FlowInfo;
use deepflow_core::record::{L7FlowLog, LogType, ResponseStatus};

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
        msg: Box<L7Message>,
        pairing: Pairing,
        cfg: SessionCfg,
        flow: &FlowInfo,
        counters: &mut L7Counters,
        out: &mut Vec<L7FlowLog>,
    ) {
        counters.messages += 1;
        match msg.kind() {
            MessageKind::OneWay => push(out, counters, row_single_owned(flow, *msg, LogType::Session)),
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
                match idx.and_then(|i| self.pending.remove(i)) {
                    Some(req) => {
                        let row = match cfg.emit {
                            EmitMode::Sessions => row_merged_owned(flow, *req, *msg),
                            EmitMode::Messages => {
                                let rrt = msg.end_us.saturating_sub(req.start_us);
                                let mut r = row_single_owned(flow, *msg, LogType::Response);
                                r.rrt = Some(rrt);
                                r
                            }
                        };
                        push(out, counters, row);
                    }
                    None => {
                        counters.unmatched_responses += 1;
                        push(out, counters, row_single_owned(flow, *msg, LogType::Response));
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

/// A row made of one message (request, response or one-way).
pub fn row_single(flow: &FlowInfo, m: &L7Message, log_type: LogType) -> L7FlowLog {
    row_single_owned(flow, m.clone(), log_type)
}

/// [`row_single`] taking the message by value: its strings move into the row.
pub fn row_single_owned(flow: &FlowInfo, m: L7Message, log_type: LogType) -> L7FlowLog {
    let kind = m.kind();
    let L7Message {
        protocol,
        version,
        request_type,
        request_domain,
        request_resource,
        endpoint,
        request_id,
        response_code,
        response_status,
        response_exception,
        response_result,
        length,
        trace,
        attributes,
        start_us,
        end_us,
        ..
    } = m;
    let mut r = L7FlowLog::new(flow, protocol, log_type);
    r.start_time = start_us;
    r.end_time = end_us.max(start_us);
    r.version = version;
    r.request_type = request_type;
    r.request_domain = request_domain;
    r.request_resource = request_resource;
    r.endpoint = endpoint;
    r.request_id = request_id;
    r.response_code = response_code;
    r.response_status = response_status.unwrap_or(ResponseStatus::Unknown);
    r.response_exception = response_exception;
    r.response_result = response_result;
    match kind {
        MessageKind::Response => {
            r.response_length = length;
            r.x_request_id_1 = trace.x_request_id;
        }
        _ => {
            r.request_length = length;
            r.x_request_id_0 = trace.x_request_id;
            r.http_proxy_client = trace.proxy_client;
        }
    }
    r.trace_id = trace.trace_id;
    r.span_id = trace.span_id;
    r.parent_span_id = trace.parent_span_id;
    push_attributes(&mut r, attributes);
    r
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
pub fn row_merged_owned(flow: &FlowInfo, req: L7Message, resp: L7Message) -> L7FlowLog {
    // gRPC is only known once content-type is seen: keep the more specific (higher id) one
    let proto = if resp.protocol.id() > req.protocol.id() { resp.protocol } else { req.protocol };
    let mut r = L7FlowLog::new(flow, proto, LogType::Session);
    r.start_time = req.start_us;
    r.end_time = resp.end_us.max(req.start_us);
    r.rrt = Some(resp.end_us.saturating_sub(req.start_us));
    r.version = resp.version.or(req.version);
    r.request_type = req.request_type.or(resp.request_type);
    r.request_domain = req.request_domain.or(resp.request_domain);
    r.request_resource = req.request_resource.or(resp.request_resource);
    r.endpoint = req.endpoint.or(resp.endpoint);
    r.request_id = req.request_id.or(resp.request_id);
    r.response_code = resp.response_code;
    r.response_status = resp.response_status.unwrap_or(ResponseStatus::Unknown);
    r.response_exception = resp.response_exception;
    r.response_result = resp.response_result;
    r.request_length = req.length;
    r.response_length = resp.length;
    let (qt, st) = (req.trace, resp.trace);
    r.trace_id = qt.trace_id.or(st.trace_id);
    r.span_id = qt.span_id.or(st.span_id);
    r.parent_span_id = qt.parent_span_id.or(st.parent_span_id);
    r.x_request_id_0 = qt.x_request_id;
    r.x_request_id_1 = st.x_request_id;
    r.http_proxy_client = qt.proxy_client;
    // a response repeating a request attribute (same name and value) adds nothing
    let resp_attrs: Vec<_> = resp.attributes.into_iter().filter(|a| !req.attributes.contains(a)).collect();
    push_attributes(&mut r, req.attributes);
    push_attributes(&mut r, resp_attrs);
    r
}
