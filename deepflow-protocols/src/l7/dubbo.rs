//! Apache Dubbo 2 protocol (`dubbo`).
//!
//! A frame is a 16-byte header — magic `0xdabb`, flag byte (bit 7 request, bit 6 two-way,
//! bit 5 event, low 5 bits serialization id), status byte, 64-bit request id, 32-bit body
//! length — and a body. A Hessian2 request body holds the dubbo version, service path,
//! service version, method name, parameter-type descriptor, the arguments (skipped) and the
//! attachments map. Fields follow L7_FIELDS.md "Dubbo": dubbo version → `version`, method →
//! `request_type`, service path → `request_domain` and `request_resource`, `service/method`
//! → `endpoint`, low 32 bits of the request id → `request_id` (pairing key), header status →
//! `response_code` (status table below), serialization name → attribute `serialization_id`,
//! event frames → attribute `event` (`heartbeat` for a null body). Trace context and the
//! x-request-id come from the attachments with the configured header names. Bodies of other
//! serializations are not decoded (header fields only). Requests without the two-way bit are
//! one-way rows (ok).
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::hessian::{self, Reader, Value};
use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;
use crate::trace::{TraceConfig, TraceExtractor};

// ---------------------------------------------------------------------------------------------
// constants

const MAGIC: [u8; 2] = [0xda, 0xbb];
const HEADER_LEN: usize = 16;
/// Dubbo's default payload limit is 8 MiB; allow more, reject absurd lengths.
const MAX_BODY: usize = 64 * 1024 * 1024;
const FLAG_REQUEST: u8 = 0x80;
const FLAG_TWOWAY: u8 = 0x40;
const FLAG_EVENT: u8 = 0x20;
const SERIALIZATION_MASK: u8 = 0x1f;
const HESSIAN2: u8 = 2;

/// Serialization name of a serialization id (Dubbo's `Constants`/`*Serialization` ids).
pub fn serialization_name(id: u8) -> Option<&'static str> {
    Some(match id {
        2 => "HESSIAN2",
        3 => "JAVA",
        4 => "COMPACTED_JAVA",
        6 => "FASTJSON",
        7 => "NATIVE_JAVA",
        8 => "KRYO",
        9 => "FST",
        10 => "NATIVE_HESSIAN",
        11 => "PROTOSTUFF",
        12 => "AVRO",
        16 => "GSON",
        21 => "PROTOBUF_JSON",
        22 => "PROTOBUF",
        23 => "FASTJSON2",
        25 => "KRYO2",
        27 => "MSGPACK",
        _ => return None,
    })
}

/// Status of a response header status byte (L7_FIELDS.md "Dubbo").
pub fn response_status(code: u8) -> ResponseStatus {
    match code {
        20 => ResponseStatus::Ok,
        30 | 40 | 90 => ResponseStatus::ClientError,
        31 | 50 | 60 | 70 | 80 | 100 => ResponseStatus::ServerError,
        _ => ResponseStatus::Ok,
    }
}

// ---------------------------------------------------------------------------------------------
// header

/// The fixed 16-byte header.
#[derive(Debug, Clone, Copy)]
struct Header {
    flag: u8,
    status: u8,
    id: u64,
    body_len: usize,
}

fn header(b: &[u8]) -> Option<Header> {
    let h: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
    let [m0, m1, flag, status, i0, i1, i2, i3, i4, i5, i6, i7, l0, l1, l2, l3] = *h;
    if [m0, m1] != MAGIC {
        return None;
    }
    Some(Header {
        flag,
        status,
        id: u64::from_be_bytes([i0, i1, i2, i3, i4, i5, i6, i7]),
        body_len: u32::from_be_bytes([l0, l1, l2, l3]) as usize,
    })
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start with a Dubbo header?
pub fn probe_header(data: &[u8]) -> Probe {
    match (data.first(), data.get(1)) {
        (None, _) => return Probe::NeedMore,
        (Some(&a), None) => return if a == MAGIC[0] { Probe::NeedMore } else { Probe::NotThis },
        (Some(&a), Some(&b)) if [a, b] != MAGIC => return Probe::NotThis,
        _ => {}
    }
    let Some(h) = header(data) else { return Probe::NeedMore };
    if h.body_len > MAX_BODY || serialization_name(h.flag & SERIALIZATION_MASK).is_none() {
        return Probe::NotThis;
    }
    // a request has status 0; a response never has the two-way bit
    let ok = if h.flag & FLAG_REQUEST != 0 { h.status == 0 } else { h.flag & FLAG_TWOWAY == 0 && h.status != 0 };
    if ok { Probe::Match } else { Probe::NotThis }
}

// ---------------------------------------------------------------------------------------------
// parser

/// The Dubbo parser.
pub struct DubboParser {
    trace: Arc<TraceConfig>,
    partial_limit: usize,
    skip: [usize; 2],
}

impl DubboParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        DubboParser {
            trace: Arc::new(cfg.trace.clone()),
            partial_limit: (cfg.max_buffered_bytes / 2).max(64),
            skip: [0; 2],
        }
    }

    fn request_body(&self, body: &[u8], msg: &mut L7Message) {
        let mut r = Reader::new(body);
        let Some(version) = r.string() else { return };
        msg.version = Some(version);
        let Some(service) = r.string() else { return };
        msg.request_domain = Some(service.clone());
        msg.request_resource = Some(service.clone());
        let _service_version = r.value();
        let Some(method) = r.string() else { return };
        msg.endpoint = Some(format!("{service}/{method}"));
        msg.request_type = Some(method);
        let Some(n) = r.string().and_then(|d| hessian::descriptor_params(&d)) else { return };
        for _ in 0..n {
            if r.value().is_none() {
                return;
            }
        }
        let Some(att @ Value::Map(_)) = r.value() else { return };
        let mut ex = TraceExtractor::new(&self.trace);
        for (k, v) in att.str_pairs() {
            ex.header(k, v, msg);
        }
    }

    fn frame(&self, h: Header, body: &[u8], total: usize) -> L7Message {
        let serial = h.flag & SERIALIZATION_MASK;
        let is_req = h.flag & FLAG_REQUEST != 0;
        let kind = match (is_req, h.flag & FLAG_TWOWAY != 0) {
            (false, _) => MessageKind::Response,
            (true, true) => MessageKind::Request,
            (true, false) => MessageKind::OneWay,
        };
        let mut msg = L7Message::new(L7Protocol::Dubbo, kind);
        msg.request_id = Some(h.id as u32);
        msg.length = Some(total as u64);
        let name = serialization_name(serial).map_or_else(|| serial.to_string(), str::to_string);
        msg.attr("serialization_id", name);
        if h.flag & FLAG_EVENT != 0 {
            let what = match body {
                [] | [b'N'] => "heartbeat",
                _ => "event",
            };
            msg.attr("event", what);
        } else if is_req && serial == HESSIAN2 {
            self.request_body(body, &mut msg);
        }
        if !is_req {
            msg.response_code = Some(i32::from(h.status));
            msg.response_status = Some(response_status(h.status));
        } else if kind == MessageKind::OneWay {
            msg.response_status = Some(ResponseStatus::Ok);
        }
        msg
    }
}

impl L7Parser for DubboParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Dubbo
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 20880
    }

    fn probe(&self, data: &[u8], _dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_header(data)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(DubboParser { trace: Arc::clone(&self.trace), partial_limit: self.partial_limit, skip: [0; 2] })
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
        if data.len() < HEADER_LEN {
            if data.len() >= 2 && data.get(..2) != Some(&MAGIC[..]) {
                return ParseOutcome::Error(ParseErrorKind::Malformed);
            }
            return ParseOutcome::NeedMore(HEADER_LEN - data.len());
        }
        let Some(h) = header(data) else { return ParseOutcome::Error(ParseErrorKind::Malformed) };
        if h.body_len > MAX_BODY {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let total = HEADER_LEN + h.body_len;
        // decode exactly this much (the rest of a large body is skipped), whatever the chunking
        let take = total.min(HEADER_LEN + self.partial_limit);
        if data.len() < take {
            return ParseOutcome::NeedMore(take - data.len());
        }
        let body = data.get(HEADER_LEN..take).unwrap_or_default();
        let msg = self.frame(h, body, total);
        if let Some(s) = self.skip.get_mut(d) {
            *s = total - take;
        }
        ParseOutcome::message(msg, take)
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(s) = self.skip.get_mut(dir.index()) {
            *s = 0;
        }
    }
}

/// Test helpers: Dubbo frames built from the wire format.
#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(crate) mod build {
    use super::hessian::write;

    /// A Hessian2 two-way request.
    pub fn request(id: u64, service: &str, method: &str, desc: &str, args: &[&str], att: &[(&str, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        write::string(&mut body, "2.0.2");
        write::string(&mut body, service);
        write::string(&mut body, "0.0.0");
        write::string(&mut body, method);
        write::string(&mut body, desc);
        for a in args {
            write::string(&mut body, a);
        }
        write::map(&mut body, att);
        frame(0xc2, 0, id, &body)
    }
    /// Any frame.
    pub fn frame(flag: u8, status: u8, id: u64, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0xda, 0xbb, flag, status];
        v.extend(id.to_be_bytes());
        v.extend((body.len() as u32).to_be_bytes());
        v.extend(body);
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
    use deepflow_core::record::{L7FlowLog, LogType};

    fn make(cfg: &L7Config) -> Box<dyn L7Parser> {
        Box::new(DubboParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "dubbo", 20880, emit, segs)
    }

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn exchange() -> Vec<(Direction, Vec<u8>)> {
        // an object argument with a class definition, to exercise skipping
        let mut obj_args = Vec::new();
        hessian::write::string(&mut obj_args, "2.0.2");
        hessian::write::string(&mut obj_args, "org.demo.UserService");
        hessian::write::string(&mut obj_args, "1.0");
        hessian::write::string(&mut obj_args, "save");
        hessian::write::string(&mut obj_args, "Lorg/demo/User;J");
        obj_args.extend([b'C', 0x0d]);
        obj_args.extend(b"org.demo.User");
        obj_args.extend([0x92, 0x02, b'i', b'd', 0x04]);
        obj_args.extend(b"name");
        obj_args.extend([0x60, 0xe7, 0x03, b'b', b'o', b'b', 0xf8, 0x10]);
        hessian::write::map(&mut obj_args, &[("sw8", "1-dHJhY2U=-c2Vn-2-a-b-c-d"), ("x-request-id", "rq-1")]);
        let mut oneway = request(4, "org.demo.GreetService", "notify", "", &[], &[]);
        oneway[2] = 0x82;
        vec![
            (
                C2S,
                request(
                    1,
                    "org.demo.GreetService",
                    "sayHello",
                    "Ljava/lang/String;",
                    &["world"],
                    &[("traceparent", TP), ("path", "org.demo.GreetService")],
                ),
            ),
            (S2C, frame(0x02, 20, 1, &[0x91, 0x05, b'h', b'e', b'l', b'l', b'o'])),
            (C2S, frame(0xc2, 0, 2, &obj_args)),
            (S2C, frame(0x02, 70, 2, &[0x90, 0x01, b'x'])),
            (C2S, frame(0xe2, 0, 3, b"N")),
            (S2C, frame(0x22, 20, 3, b"N")),
            (C2S, oneway),
            (C2S, request(5, "org.demo.GreetService", "slow", "", &[], &[])),
            (S2C, frame(0x02, 30, 5, b"")),
        ]
    }

    #[test]
    fn sessions() {
        let rows = run(EmitMode::Sessions, &exchange());
        let names: Vec<_> = rows.iter().map(|r| r.request_type.clone().unwrap_or_default()).collect();
        assert_eq!(names, ["sayHello", "save", "", "notify", "slow"], "{rows:#?}");
        let r = &rows[0];
        assert_eq!(r.version.as_deref(), Some("2.0.2"));
        assert_eq!(r.request_domain.as_deref(), Some("org.demo.GreetService"));
        assert_eq!(r.request_resource.as_deref(), Some("org.demo.GreetService"));
        assert_eq!(r.endpoint.as_deref(), Some("org.demo.GreetService/sayHello"));
        assert_eq!(r.request_id, Some(1));
        assert_eq!(r.response_code, Some(20));
        assert_eq!(r.response_status, ResponseStatus::Ok);
        assert_eq!(r.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(r.span_id.as_deref(), Some("b7ad6b7169203331"));
        assert!(
            r.attribute_names.iter().zip(&r.attribute_values).any(|(n, v)| n == "serialization_id" && v == "HESSIAN2")
        );
        let r = &rows[1];
        assert_eq!(r.endpoint.as_deref(), Some("org.demo.UserService/save"));
        assert_eq!(r.trace_id.as_deref(), Some("trace"));
        assert_eq!(r.x_request_id_0.as_deref(), Some("rq-1"));
        assert_eq!(r.response_status, ResponseStatus::ServerError);
        let r = &rows[2];
        assert!(r.attribute_names.iter().zip(&r.attribute_values).any(|(n, v)| n == "event" && v == "heartbeat"));
        assert_eq!(r.response_status, ResponseStatus::Ok);
        assert_eq!(rows[3].log_type, LogType::Session);
        assert_eq!(rows[3].rrt, None);
        assert_eq!(rows[4].response_status, ResponseStatus::ClientError);
    }

    #[test]
    fn out_of_order_responses() {
        let a = request(7, "S", "a", "", &[], &[]);
        let b = request(8, "S", "b", "", &[], &[]);
        let rows = run(
            EmitMode::Sessions,
            &[(C2S, [a, b].concat()), (S2C, frame(0x02, 20, 8, b"")), (S2C, frame(0x02, 50, 7, b""))],
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].request_type.as_deref(), Some("b"));
        assert_eq!(rows[1].request_type.as_deref(), Some("a"));
        assert_eq!(rows[1].response_status, ResponseStatus::ServerError);
    }

    #[test]
    fn large_body_is_skipped() {
        let big = "x".repeat(1000);
        let args: Vec<&str> = std::iter::repeat_n(big.as_str(), 100).collect();
        let desc = "Ljava/lang/String;".repeat(100);
        let req = request(9, "S", "big", &desc, &args, &[("traceparent", TP)]);
        let rows = run(EmitMode::Sessions, &[(C2S, req), (S2C, frame(0x02, 20, 9, b""))]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].request_type.as_deref(), Some("big"));
        assert_eq!(rows[0].response_status, ResponseStatus::Ok);
    }

    #[test]
    fn tables_and_probe() {
        assert_eq!(response_status(20), ResponseStatus::Ok);
        assert_eq!(response_status(90), ResponseStatus::ClientError);
        assert_eq!(response_status(100), ResponseStatus::ServerError);
        assert_eq!(response_status(99), ResponseStatus::Ok);
        let f = flow(1);
        let p = DubboParser::new(&L7Config::default());
        let ex = exchange();
        assert_eq!(p.probe(&ex[0].1, C2S, &f), Probe::Match);
        assert_eq!(p.probe(&ex[1].1, S2C, &f), Probe::Match);
        assert_eq!(p.probe(&ex[0].1[..5], C2S, &f), Probe::NeedMore);
        assert_eq!(p.probe(b"GET / HTTP/1.1\r\n\r\n", C2S, &f), Probe::NotThis);
    }

    #[test]
    fn splits() {
        check_splits(&make, "dubbo", 20880, &exchange());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &exchange());
    }

    #[test]
    fn fuzz_50k() {
        fuzz(&make, "dubbo", &exchange(), 50_000);
    }
}
