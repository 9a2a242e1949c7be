//! A protocol plugin as an [`L7Parser`]: `df_probe`/`df_parse` on the engine's bytes.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::PluginInfo;
use super::guest::{Failure, Guest};
use super::records::Records;
use crate::error::ParseErrorKind;
use crate::l7::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};

/// `df_parse` result codes (`-(code | hint << 8)`).
const NEED_MORE: i64 = 1;
const MALFORMED: i64 = 2;
const UNSUPPORTED: i64 = 3;

pub(crate) struct WasmParser {
    guest: Arc<Mutex<Guest>>,
    info: Arc<PluginInfo>,
}

pub(crate) fn lock(g: &Mutex<Guest>) -> MutexGuard<'_, Guest> {
    g.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn dir_abi(d: Direction) -> i32 {
    match d {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

impl WasmParser {
    pub(crate) fn new(guest: Arc<Mutex<Guest>>, info: Arc<PluginInfo>) -> Self {
        WasmParser { guest, info }
    }
}

impl L7Parser for WasmParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Custom
    }

    fn supports_transport(&self, ip_proto: u8) -> bool {
        match ip_proto {
            deepflow_core::flow::ip_proto::TCP => self.info.tcp,
            deepflow_core::flow::ip_proto::UDP => self.info.udp,
            _ => false,
        }
    }

    fn port_hint(&self, port: u16) -> bool {
        self.info.ports.contains(&port)
    }

    fn probe(&self, data: &[u8], dir: Direction, _flow: &FlowInfo) -> Probe {
        let mut g = lock(&self.guest);
        if g.stats.disabled.load(Ordering::Relaxed) {
            return Probe::NotThis;
        }
        g.stats.calls.fetch_add(1, Ordering::Relaxed);
        match g.call_probe(data, dir_abi(dir)) {
            Ok(1) => Probe::Match,
            Ok(2) => Probe::NeedMore,
            Ok(_) => Probe::NotThis,
            Err(f) => {
                g.fail(f, "df_probe");
                Probe::NotThis
            }
        }
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(WasmParser { guest: self.guest.clone(), info: self.info.clone() })
    }

    fn pairing(&self) -> Pairing {
        self.info.pairing
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        if data.is_empty() {
            // the engine asks for held-back messages; guests keep none (calls are stateless)
            return ParseOutcome::NeedMore(0);
        }
        let mut g = lock(&self.guest);
        if g.stats.disabled.load(Ordering::Relaxed) {
            return ParseOutcome::Error(ParseErrorKind::Unsupported);
        }
        g.stats.calls.fetch_add(1, Ordering::Relaxed);
        let r = match g.call_parse(data, dir_abi(ctx.dir)) {
            Ok(r) => r,
            Err(f) => {
                g.fail(f, "df_parse");
                return ParseOutcome::Error(ParseErrorKind::Unsupported);
            }
        };
        if r < 0 {
            let code = r.unsigned_abs();
            return match (code & 0xff) as i64 {
                NEED_MORE => ParseOutcome::NeedMore(usize::try_from(code >> 8).unwrap_or(0)),
                MALFORMED => ParseOutcome::Error(ParseErrorKind::Malformed),
                UNSUPPORTED => ParseOutcome::Error(ParseErrorKind::Unsupported),
                _ => {
                    g.stats.bad_output.fetch_add(1, Ordering::Relaxed);
                    ParseOutcome::Error(ParseErrorKind::Malformed)
                }
            };
        }
        let n = usize::try_from(r).unwrap_or(usize::MAX).min(data.len());
        if g.output().is_empty() {
            return if n == 0 { ParseOutcome::Error(ParseErrorKind::Malformed) } else { ParseOutcome::Skip(n) };
        }
        match decode_message(g.output(), &self.info.name, ctx.dir) {
            Some(m) => {
                g.stats.messages.fetch_add(1, Ordering::Relaxed);
                ParseOutcome::message(m, n)
            }
            None => {
                g.fail(Failure::BadOutput, "df_parse output");
                ParseOutcome::Error(ParseErrorKind::Unsupported)
            }
        }
    }
}

fn status(v: &str) -> Option<ResponseStatus> {
    Some(match v {
        "ok" => ResponseStatus::Ok,
        "client_error" => ResponseStatus::ClientError,
        "server_error" => ResponseStatus::ServerError,
        "unknown" => ResponseStatus::Unknown,
        _ => return None,
    })
}

/// The message encoded in `out`; `None` when a record is truncated or a value is invalid.
fn decode_message(out: &[u8], name: &str, dir: Direction) -> Option<L7Message> {
    let default_kind = match dir {
        Direction::ClientToServer => MessageKind::Request,
        Direction::ServerToClient => MessageKind::Response,
    };
    let mut m = L7Message::new(L7Protocol::Custom, default_kind);
    m.attr("l7_protocol_str", name);
    let mut recs = Records::new(out);
    for (k, v) in recs.by_ref() {
        let v = std::str::from_utf8(v).ok()?;
        let s = || Some(v.to_string());
        match k {
            b"kind" => {
                m.kind = Some(match v {
                    "request" => MessageKind::Request,
                    "response" => MessageKind::Response,
                    "oneway" => MessageKind::OneWay,
                    _ => return None,
                })
            }
            b"version" => m.version = s(),
            b"request_type" => m.request_type = s(),
            b"request_domain" => m.request_domain = s(),
            b"request_resource" => m.request_resource = s(),
            b"endpoint" => m.endpoint = s(),
            b"request_id" => m.request_id = Some(v.parse().ok()?),
            b"response_code" => m.response_code = Some(v.parse().ok()?),
            b"response_status" => m.response_status = Some(status(v)?),
            b"response_exception" => m.response_exception = s(),
            b"response_result" => m.response_result = s(),
            b"length" => m.length = Some(v.parse().ok()?),
            b"trace_id" => m.trace.trace_id = s(),
            b"span_id" => m.trace.span_id = s(),
            b"x_request_id" => m.trace.x_request_id = s(),
            _ => {
                if let Some(n) = k.strip_prefix(b"attr:") {
                    m.attr(std::str::from_utf8(n).ok()?, v);
                }
            }
        }
    }
    (!recs.truncated).then_some(m)
}
