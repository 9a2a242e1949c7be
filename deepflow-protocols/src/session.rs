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
            MessageKind::OneWay => push(out, counters, row_single(flow, &msg, LogType::Session)),
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
                            EmitMode::Sessions => row_merged(flow, &req, &msg),
                            EmitMode::Messages => {
                                let mut r = row_single(flow, &msg, LogType::Response);
                                r.rrt = Some(msg.end_us.saturating_sub(req.start_us));
                                r
                            }
                        };
                        push(out, counters, row);
                    }
                    None => {
                        counters.unmatched_responses += 1;
                        push(out, counters, row_single(flow, &msg, LogType::Response));
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
                EmitMode::Sessions => row_single(flow, &req, LogType::Request),
                EmitMode::Messages => {
                    let mut r = row_single(flow, &req, LogType::Response);
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
                    r.start_time = now_us.unwrap_or(req.end_us);
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
    let mut r = L7FlowLog::new(flow, m.protocol, log_type);
    r.start_time = m.start_us;
    r.end_time = m.end_us.max(m.start_us);
    r.version = m.version.clone();
    r.request_type = m.request_type.clone();
    r.request_domain = m.request_domain.clone();
    r.request_resource = m.request_resource.clone();
    r.endpoint = m.endpoint.clone();
    r.request_id = m.request_id;
    r.response_code = m.response_code;
    r.response_status = m.response_status.unwrap_or(ResponseStatus::Unknown);
    r.response_exception = m.response_exception.clone();
    r.response_result = m.response_result.clone();
    match m.kind() {
        MessageKind::Response => {
            r.response_length = m.length;
            r.x_request_id_1 = m.trace.x_request_id.clone();
        }
        _ => {
            r.request_length = m.length;
            r.x_request_id_0 = m.trace.x_request_id.clone();
            r.http_proxy_client = m.trace.proxy_client.clone();
        }
    }
    r.trace_id = m.trace.trace_id.clone();
    r.span_id = m.trace.span_id.clone();
    r.parent_span_id = m.trace.parent_span_id.clone();
    for (n, v) in &m.attributes {
        r.attribute_names.push(n.clone());
        r.attribute_values.push(v.clone());
    }
    r
}

/// A `session` row merging a request with its response.
pub fn row_merged(flow: &FlowInfo, req: &L7Message, resp: &L7Message) -> L7FlowLog {
    // gRPC is only known once content-type is seen: keep the more specific (higher id) one
    let proto = if resp.protocol.id() > req.protocol.id() { resp.protocol } else { req.protocol };
    let mut r = L7FlowLog::new(flow, proto, LogType::Session);
    r.start_time = req.start_us;
    r.end_time = resp.end_us.max(req.start_us);
    r.rrt = Some(resp.end_us.saturating_sub(req.start_us));
    r.version = resp.version.clone().or_else(|| req.version.clone());
    r.request_type = req.request_type.clone().or_else(|| resp.request_type.clone());
    r.request_domain = req.request_domain.clone().or_else(|| resp.request_domain.clone());
    r.request_resource = req.request_resource.clone().or_else(|| resp.request_resource.clone());
    r.endpoint = req.endpoint.clone().or_else(|| resp.endpoint.clone());
    r.request_id = req.request_id.or(resp.request_id);
    r.response_code = resp.response_code;
    r.response_status = resp.response_status.unwrap_or(ResponseStatus::Unknown);
    r.response_exception = resp.response_exception.clone();
    r.response_result = resp.response_result.clone();
    r.request_length = req.length;
    r.response_length = resp.length;
    r.trace_id = req.trace.trace_id.clone().or_else(|| resp.trace.trace_id.clone());
    r.span_id = req.trace.span_id.clone().or_else(|| resp.trace.span_id.clone());
    r.parent_span_id = req.trace.parent_span_id.clone().or_else(|| resp.trace.parent_span_id.clone());
    r.x_request_id_0 = req.trace.x_request_id.clone();
    r.x_request_id_1 = resp.trace.x_request_id.clone();
    r.http_proxy_client = req.trace.proxy_client.clone();
    for (n, v) in req.attributes.iter() {
        r.attribute_names.push(n.clone());
        r.attribute_values.push(v.clone());
    }
    // a response repeating a request attribute (same name and value) adds nothing
    for (n, v) in resp.attributes.iter().filter(|a| !req.attributes.contains(a)) {
        r.attribute_names.push(n.clone());
        r.attribute_values.push(v.clone());
    }
    r
}
