//! bRPC's baidu_std protocol (`brpc`).
//!
//! A frame is `"PRPC"`, body size u32 (meta + payload + attachment), meta size u32, then the
//! `RpcMeta` protobuf (decoded with a minimal field reader, no codegen): `request` (1:
//! service_name 1, method_name 2, log_id 3), `response` (2: error_code 1, error_text 2),
//! `correlation_id` 4, `user_fields` 9 (map<string,string>).
//!
//! Fields follow L7_FIELDS.md "bRPC": method_name → `request_type`, service_name →
//! `request_resource`, `service/method` → `endpoint`, `correlation_id >> 32` → `request_id`
//! (pairing key; when the high half is 0, as with clients that number calls 1, 2, 3, ..., the
//! low half is used instead so concurrent calls still pair), log_id → `x_request_id_0`,
//! error_code/error_text → `response_code`/`response_exception` (non-zero → server_error).
//! Trace context: user_fields with the configured names.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;
use crate::trace::{TraceConfig, TraceExtractor};

// ---------------------------------------------------------------------------------------------
// constants

const MAGIC: &[u8; 4] = b"PRPC";
const HEADER_LEN: usize = 12;
/// bRPC's default max_body_size is 64 MiB.
const MAX_BODY: usize = 512 * 1024 * 1024;
/// RpcMeta is small; larger ones are not baidu_std.
const MAX_META: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// minimal protobuf reader

struct Pb<'a> {
    b: &'a [u8],
    pos: usize,
}

enum PbVal<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Pb<'a> {
    fn new(b: &'a [u8]) -> Self {
        Pb { b, pos: 0 }
    }
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let x = *self.b.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(x & 0x7f) << shift;
            if x & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    /// The next (field number, value); `None` at the end or on bad input.
    fn field(&mut self) -> Option<(u64, PbVal<'a>)> {
        if self.pos >= self.b.len() {
            return None;
        }
        let key = self.varint()?;
        let v = match key & 7 {
            0 => PbVal::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                PbVal::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).ok()?;
                PbVal::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                PbVal::Fixed
            }
            _ => return None,
        };
        Some((key >> 3, v))
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------------
// RpcMeta

#[derive(Debug, Default)]
struct Meta {
    is_request: bool,
    is_response: bool,
    service: Option<String>,
    method: Option<String>,
    log_id: Option<u64>,
    error_code: Option<i32>,
    error_text: Option<String>,
    correlation_id: u64,
    user_fields: Vec<(String, String)>,
}

fn meta(b: &[u8]) -> Option<Meta> {
    let mut m = Meta::default();
    let mut p = Pb::new(b);
    while p.pos < b.len() {
        match p.field()? {
            (1, PbVal::Bytes(req)) => {
                m.is_request = true;
                let mut r = Pb::new(req);
                while r.pos < req.len() {
                    match r.field()? {
                        (1, PbVal::Bytes(s)) => m.service = Some(text(s)),
                        (2, PbVal::Bytes(s)) => m.method = Some(text(s)),
                        (3, PbVal::Varint(v)) => m.log_id = Some(v),
                        _ => {}
                    }
                }
            }
            (2, PbVal::Bytes(resp)) => {
                m.is_response = true;
                let mut r = Pb::new(resp);
                while r.pos < resp.len() {
                    match r.field()? {
                        (1, PbVal::Varint(v)) => m.error_code = Some(v as i32),
                        (2, PbVal::Bytes(s)) => m.error_text = Some(text(s)),
                        _ => {}
                    }
                }
            }
            (4, PbVal::Varint(v)) => m.correlation_id = v,
            (9, PbVal::Bytes(entry)) => {
                let mut e = Pb::new(entry);
                let (mut k, mut v) = (None, None);
                while e.pos < entry.len() {
                    match e.field()? {
                        (1, PbVal::Bytes(s)) => k = Some(text(s)),
                        (2, PbVal::Bytes(s)) => v = Some(text(s)),
                        _ => {}
                    }
                }
                if let (Some(k), Some(v)) = (k, v) {
                    m.user_fields.push((k, v));
                }
            }
            _ => {}
        }
    }
    Some(m)
}

/// The pairing key / `request_id` of a correlation id (see the module docs).
pub fn request_id(correlation_id: u64) -> u32 {
    let high = (correlation_id >> 32) as u32;
    if high != 0 { high } else { correlation_id as u32 }
}

// ---------------------------------------------------------------------------------------------
// probe

fn sizes(data: &[u8]) -> Option<(usize, usize)> {
    let body = u32::from_be_bytes(data.get(4..8)?.try_into().ok()?) as usize;
    let meta = u32::from_be_bytes(data.get(8..12)?.try_into().ok()?) as usize;
    Some((body, meta))
}

/// Does `data` start with a baidu_std frame?
pub fn probe_frame(data: &[u8]) -> Probe {
    let n = data.len().min(4);
    if data.get(..n) != MAGIC.get(..n) {
        return Probe::NotThis;
    }
    let Some((body, meta_len)) = sizes(data) else { return Probe::NeedMore };
    if meta_len > body || body > MAX_BODY || meta_len > MAX_META || meta_len == 0 {
        return Probe::NotThis;
    }
    Probe::Match
}

// ---------------------------------------------------------------------------------------------
// parser

/// The bRPC (baidu_std) parser.
pub struct BrpcParser {
    trace: Arc<TraceConfig>,
    skip: [usize; 2],
}

impl BrpcParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        BrpcParser { trace: Arc::new(cfg.trace.clone()), skip: [0; 2] }
    }

    fn frame(&self, m: Meta, dir: Direction, total: usize) -> L7Message {
        let kind = if m.is_response || (!m.is_request && dir == Direction::ServerToClient) {
            MessageKind::Response
        } else {
            MessageKind::Request
        };
        let mut msg = L7Message::new(L7Protocol::Brpc, kind);
        msg.request_id = Some(request_id(m.correlation_id));
        msg.length = Some(total as u64);
        if let (Some(s), Some(me)) = (&m.service, &m.method) {
            msg.endpoint = Some(format!("{s}/{me}"));
        }
        msg.request_type = m.method;
        msg.request_resource = m.service;
        if kind == MessageKind::Request {
            msg.trace.x_request_id = m.log_id.map(|l| l.to_string());
        } else {
            let code = m.error_code.unwrap_or(0);
            msg.response_code = Some(code);
            msg.response_status = Some(if code != 0 { ResponseStatus::ServerError } else { ResponseStatus::Ok });
            if code != 0 {
                msg.response_exception = m.error_text;
            }
        }
        let mut ex = TraceExtractor::new(&self.trace);
        for (k, v) in &m.user_fields {
            ex.header(k, v, &mut msg);
        }
        msg
    }
}

impl L7Parser for BrpcParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Brpc
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 8000
    }

    fn probe(&self, data: &[u8], _dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_frame(data)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(BrpcParser { trace: Arc::clone(&self.trace), skip: [0; 2] })
    }

    fn pairing(&self) -> Pairing {
        Pairing::ById
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        let d = ctx.dir.index();
        if let Some(skip) = self.skip.get_mut(d)
            && *skip > 0
        {
            let n = (*skip).min(data.len());
            *skip -= n;
            return ParseOutcome::Skip(n);
        }
        let n = data.len().min(4);
        if data.get(..n) != MAGIC.get(..n) {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let Some((body, meta_len)) = sizes(data) else { return ParseOutcome::NeedMore(HEADER_LEN - data.len()) };
        if meta_len > body || body > MAX_BODY || meta_len > MAX_META {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        // the meta must be complete; payload and attachment are skipped
        let take = HEADER_LEN + meta_len;
        if data.len() < take {
            return ParseOutcome::NeedMore(take - data.len());
        }
        let Some(m) = data.get(HEADER_LEN..take).and_then(meta) else {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        };
        if let Some(s) = self.skip.get_mut(d) {
            *s = body - meta_len;
        }
        ParseOutcome::message(self.frame(m, ctx.dir, HEADER_LEN + body), take)
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(s) = self.skip.get_mut(dir.index()) {
            *s = 0;
        }
    }
}

/// Test helpers: baidu_std frames.
#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(crate) mod build {
    fn varint(v: &mut Vec<u8>, mut x: u64) {
        while x >= 0x80 {
            v.push((x as u8) | 0x80);
            x >>= 7;
        }
        v.push(x as u8);
    }
    fn bytes(v: &mut Vec<u8>, field: u64, b: &[u8]) {
        varint(v, field << 3 | 2);
        varint(v, b.len() as u64);
        v.extend(b);
    }
    fn num(v: &mut Vec<u8>, field: u64, x: u64) {
        varint(v, field << 3);
        varint(v, x);
    }
    /// A request frame.
    pub fn request(
        corr: u64,
        service: &str,
        method: &str,
        log_id: u64,
        user: &[(&str, &str)],
        payload: &[u8],
    ) -> Vec<u8> {
        let mut req = Vec::new();
        bytes(&mut req, 1, service.as_bytes());
        bytes(&mut req, 2, method.as_bytes());
        num(&mut req, 3, log_id);
        let mut m = Vec::new();
        bytes(&mut m, 1, &req);
        num(&mut m, 4, corr);
        for (k, val) in user {
            let mut e = Vec::new();
            bytes(&mut e, 1, k.as_bytes());
            bytes(&mut e, 2, val.as_bytes());
            bytes(&mut m, 9, &e);
        }
        frame(&m, payload)
    }
    /// A response frame.
    pub fn response(corr: u64, code: i32, text: &str, payload: &[u8]) -> Vec<u8> {
        let mut resp = Vec::new();
        if code != 0 {
            num(&mut resp, 1, code as i64 as u64);
            bytes(&mut resp, 2, text.as_bytes());
        }
        let mut m = Vec::new();
        bytes(&mut m, 2, &resp);
        num(&mut m, 4, corr);
        frame(&m, payload)
    }
    fn frame(meta: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut v = b"PRPC".to_vec();
        v.extend(((meta.len() + payload.len()) as u32).to_be_bytes());
        v.extend((meta.len() as u32).to_be_bytes());
        v.extend(meta);
        v.extend(payload);
        v
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::build::*;
    use super::*;
    use crate::EmitMode;
    use crate::l7::kafka::testkit::*;
    use deepflow_core::record::L7FlowLog;

    fn make(cfg: &L7Config) -> Box<dyn L7Parser> {
        Box::new(BrpcParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "brpc", 8000, emit, segs)
    }

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const C1: u64 = (7 << 32) | 1;
    const C2: u64 = (8 << 32) | 3;

    fn exchange() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C2S, request(C1, "example.EchoService", "Echo", 12345, &[("traceparent", TP)], b"\x0a\x05hello")),
            (C2S, request(C2, "example.EchoService", "Fail", 0, &[], &[])),
            (S2C, response(C2, 1003, "[E1003]Internal error", b"")),
            (S2C, response(C1, 0, "", &vec![b'x'; 3_000])),
        ]
    }

    #[test]
    fn sessions() {
        let rows = run(EmitMode::Sessions, &exchange());
        assert_eq!(rows.len(), 2, "{rows:#?}");
        let r = &rows[0];
        assert_eq!(r.request_type.as_deref(), Some("Fail"));
        assert_eq!(r.request_id, Some(8));
        assert_eq!(r.response_code, Some(1003));
        assert_eq!(r.response_exception.as_deref(), Some("[E1003]Internal error"));
        assert_eq!(r.response_status, ResponseStatus::ServerError);
        let r = &rows[1];
        assert_eq!(r.request_type.as_deref(), Some("Echo"));
        assert_eq!(r.request_resource.as_deref(), Some("example.EchoService"));
        assert_eq!(r.endpoint.as_deref(), Some("example.EchoService/Echo"));
        assert_eq!(r.request_id, Some(7));
        assert_eq!(r.x_request_id_0.as_deref(), Some("12345"));
        assert_eq!(r.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(r.response_code, Some(0));
        assert_eq!(r.response_status, ResponseStatus::Ok);
        assert_eq!(r.response_length, Some(exchange()[3].1.len() as u64));
    }

    #[test]
    fn small_correlation_ids() {
        assert_eq!(request_id(C1), 7);
        assert_eq!(request_id(5), 5);
    }

    #[test]
    fn probe() {
        let f = flow(1);
        let p = BrpcParser::new(&L7Config::default());
        let ex = exchange();
        assert_eq!(p.probe(&ex[0].1, C2S, &f), Probe::Match);
        assert_eq!(p.probe(b"PRP", C2S, &f), Probe::NeedMore);
        assert_eq!(p.probe(b"PRPC\0\0\0\x01\0\0\0\x02", C2S, &f), Probe::NotThis);
        assert_eq!(p.probe(b"GET / HTTP/1.1\r\n\r\n", C2S, &f), Probe::NotThis);
    }

    #[test]
    fn splits() {
        check_splits(&make, "brpc", 8000, &exchange());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &exchange());
    }

    #[test]
    fn fuzz_50k() {
        let mut ex = exchange();
        ex.pop();
        ex.push((S2C, response(C1, 0, "", b"abc")));
        fuzz(&make, "brpc", &ex, 50_000);
    }
}
