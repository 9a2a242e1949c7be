//! SOME/IP (`someip`) over UDP and TCP.
//!
//! Header (16 bytes): service id u16, method id u16, length u32 (bytes after the length
//! field: 8 + payload), client id u16, session id u16, protocol version u8 (1), interface
//! version u8, message type u8, return code u8. Message types: REQUEST 0x00,
//! REQUEST_NO_RETURN 0x01, NOTIFICATION 0x02, RESPONSE 0x80, ERROR 0x81, and the same with the
//! TP (segmentation) flag 0x20. A TP message carries a 4-byte TP header (offset, more-segments
//! flag); only its last segment emits a message (the others are skipped).
//!
//! Fields follow L7_FIELDS.md "SOME/IP": message type name → `request_type`, service id
//! (decimal) → `request_resource`, method id (decimal) → `endpoint`, `protocol.interface`
//! version → `version`, client id → attribute `client_id`, return code → `response_code`,
//! return-code name → `response_exception` (when not E_OK). Status: E_OK ok; unknown
//! service/method, wrong protocol/interface version, wrong message type → client_error;
//! others → server_error. REQUEST_NO_RETURN and NOTIFICATION are one-way rows.
//!
//! Pairing is by (client id, session id): `request_id` = `client id << 16 | session id`
//! (L7_FIELDS.md says session id alone; several clients behind one socket pair reuse
//! session ids, so the client id is kept in the key). On UDP only the first SOME/IP message
//! of a datagram is parsed (the engine takes one message per datagram).
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use deepflow_core::flow::ip_proto;
use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;

// ---------------------------------------------------------------------------------------------
// constants

const HEADER_LEN: usize = 16;
const PROTOCOL_VERSION: u8 = 1;
const TP_FLAG: u8 = 0x20;
/// SOME/IP-TP segments are small; TCP messages may be large.
const MAX_LEN: usize = 16 * 1024 * 1024;

/// Message type name (TP flag included).
pub fn message_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        0x00 => "REQUEST",
        0x01 => "REQUEST_NO_RETURN",
        0x02 => "NOTIFICATION",
        0x80 => "RESPONSE",
        0x81 => "ERROR",
        0x20 => "TP_REQUEST",
        0x21 => "TP_REQUEST_NO_RETURN",
        0x22 => "TP_NOTIFICATION",
        0xa0 => "TP_RESPONSE",
        0xa1 => "TP_ERROR",
        _ => return None,
    })
}

/// Return code name.
pub fn return_code_name(c: u8) -> &'static str {
    match c {
        0x00 => "E_OK",
        0x01 => "E_NOT_OK",
        0x02 => "E_UNKNOWN_SERVICE",
        0x03 => "E_UNKNOWN_METHOD",
        0x04 => "E_NOT_READY",
        0x05 => "E_NOT_REACHABLE",
        0x06 => "E_TIMEOUT",
        0x07 => "E_WRONG_PROTOCOL_VERSION",
        0x08 => "E_WRONG_INTERFACE_VERSION",
        0x09 => "E_MALFORMED_MESSAGE",
        0x0a => "E_WRONG_MESSAGE_TYPE",
        0x0b => "E_E2E_REPEATED",
        0x0c => "E_E2E_WRONG_SEQUENCE",
        0x0d => "E_E2E",
        0x0e => "E_E2E_NOT_AVAILABLE",
        0x0f => "E_E2E_NO_NEW_DATA",
        0x10..=0x1f => "RESERVED_GENERIC",
        _ => "RESERVED_SERVICE_SPECIFIC",
    }
}

/// Status of a return code (L7_FIELDS.md "SOME/IP").
pub fn return_status(c: u8) -> ResponseStatus {
    match c {
        0x00 => ResponseStatus::Ok,
        0x02 | 0x03 | 0x07 | 0x08 | 0x0a => ResponseStatus::ClientError,
        _ => ResponseStatus::ServerError,
    }
}

// ---------------------------------------------------------------------------------------------
// header

#[derive(Debug, Clone, Copy)]
struct Header {
    service: u16,
    method: u16,
    length: usize,
    client: u16,
    session: u16,
    proto: u8,
    iface: u8,
    mtype: u8,
    code: u8,
}

fn header(b: &[u8]) -> Option<Header> {
    let h: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
    let [s0, s1, m0, m1, l0, l1, l2, l3, c0, c1, e0, e1, proto, iface, mtype, code] = *h;
    Some(Header {
        service: u16::from_be_bytes([s0, s1]),
        method: u16::from_be_bytes([m0, m1]),
        length: u32::from_be_bytes([l0, l1, l2, l3]) as usize,
        client: u16::from_be_bytes([c0, c1]),
        session: u16::from_be_bytes([e0, e1]),
        proto,
        iface,
        mtype,
        code,
    })
}

fn valid(h: &Header) -> bool {
    h.proto == PROTOCOL_VERSION
        && message_type_name(h.mtype).is_some()
        && (8..=MAX_LEN).contains(&h.length)
        && h.code <= 0x5e
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start with a SOME/IP message (and, for a datagram, fit it)?
pub fn probe_message(data: &[u8], datagram: bool) -> Probe {
    let Some(h) = header(data) else {
        // protocol version at offset 12 is the strongest early signal
        return if data.get(12).is_some_and(|&v| v != PROTOCOL_VERSION) { Probe::NotThis } else { Probe::NeedMore };
    };
    if !valid(&h) || (datagram && 8 + h.length > data.len()) {
        return Probe::NotThis;
    }
    // requests carry E_OK
    if h.mtype & !TP_FLAG < 0x80 && h.code != 0 {
        return Probe::NotThis;
    }
    Probe::Match
}

// ---------------------------------------------------------------------------------------------
// parser

/// The SOME/IP parser.
pub struct SomeIpParser {
    partial_limit: usize,
    skip: [usize; 2],
}

impl SomeIpParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        SomeIpParser { partial_limit: (cfg.max_buffered_bytes / 2).max(64), skip: [0; 2] }
    }

    fn message(h: &Header) -> L7Message {
        let base = h.mtype & !TP_FLAG;
        let kind = match base {
            0x00 => MessageKind::Request,
            0x01 | 0x02 => MessageKind::OneWay,
            _ => MessageKind::Response,
        };
        let mut msg = L7Message::new(L7Protocol::SomeIp, kind);
        msg.request_type = message_type_name(h.mtype).map(str::to_string);
        msg.request_resource = Some(h.service.to_string());
        msg.endpoint = Some(h.method.to_string());
        msg.version = Some(format!("{}.{}", h.proto, h.iface));
        msg.request_id = Some((u32::from(h.client) << 16) | u32::from(h.session));
        msg.length = Some((8 + h.length) as u64);
        msg.attr("client_id", h.client.to_string());
        if kind != MessageKind::Request {
            msg.response_code = Some(i32::from(h.code));
            msg.response_status = Some(return_status(h.code));
            if h.code != 0 {
                msg.response_exception = Some(return_code_name(h.code).to_string());
            }
        }
        msg
    }
}

impl L7Parser for SomeIpParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::SomeIp
    }

    fn supports_transport(&self, p: u8) -> bool {
        p == ip_proto::TCP || p == ip_proto::UDP
    }

    fn port_hint(&self, port: u16) -> bool {
        matches!(port, 30490 | 30501 | 30509)
    }

    fn probe(&self, data: &[u8], _dir: Direction, flow: &FlowInfo) -> Probe {
        probe_message(data, flow.protocol == ip_proto::UDP)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(SomeIpParser { partial_limit: self.partial_limit, skip: [0; 2] })
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
        let Some(h) = header(data) else {
            if data.get(12).is_some_and(|&v| v != PROTOCOL_VERSION) {
                return ParseOutcome::Error(ParseErrorKind::Malformed);
            }
            return ParseOutcome::NeedMore(HEADER_LEN - data.len());
        };
        if !valid(&h) {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let total = 8 + h.length;
        let need = if h.mtype & TP_FLAG != 0 { HEADER_LEN + 4 } else { HEADER_LEN };
        if total < need {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let take = if ctx.datagram { total } else { total.min(HEADER_LEN + self.partial_limit).max(need) };
        if data.len() < take {
            return ParseOutcome::NeedMore(take - data.len());
        }
        if let Some(s) = self.skip.get_mut(d) {
            *s = total - take;
        }
        if h.mtype & TP_FLAG != 0 {
            let more = data.get(HEADER_LEN + 3).is_some_and(|b| b & 1 != 0);
            if more {
                return ParseOutcome::Skip(take);
            }
        }
        ParseOutcome::message(Self::message(&h), take)
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(s) = self.skip.get_mut(dir.index()) {
            *s = 0;
        }
    }
}

/// Test helpers: SOME/IP messages.
#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(crate) mod build {
    /// One message.
    #[allow(clippy::too_many_arguments)]
    pub fn msg(
        service: u16,
        method: u16,
        client: u16,
        session: u16,
        iface: u8,
        mtype: u8,
        code: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut v = service.to_be_bytes().to_vec();
        v.extend(method.to_be_bytes());
        v.extend(((8 + payload.len()) as u32).to_be_bytes());
        v.extend(client.to_be_bytes());
        v.extend(session.to_be_bytes());
        v.extend([1, iface, mtype, code]);
        v.extend(payload);
        v
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::build::*;
    use super::*;
    use crate::l7::kafka::testkit::*;
    use crate::{EmitMode, L7Engine, L7FlowState};
    use deepflow_core::record::{L7FlowLog, LogType};

    fn make(cfg: &L7Config) -> Box<dyn L7Parser> {
        Box::new(SomeIpParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "someip", 30509, emit, segs)
    }

    fn tp(more: bool, offset: u32) -> Vec<u8> {
        ((offset / 16) << 4 | u32::from(more)).to_be_bytes().to_vec()
    }

    fn exchange() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C2S, msg(0x1234, 0x0421, 0x0001, 1, 1, 0x00, 0, b"\x00\x01")),
            (C2S, msg(0x1234, 0x0421, 0x0002, 1, 1, 0x00, 0, b"")),
            (S2C, msg(0x1234, 0x0421, 0x0002, 1, 1, 0x81, 0x03, b"")),
            (S2C, msg(0x1234, 0x0421, 0x0001, 1, 1, 0x80, 0, b"\x00\x02")),
            (C2S, msg(0x1234, 0x0001, 0x0001, 2, 1, 0x01, 0, b"fire")),
            (S2C, msg(0x1234, 0x8005, 0x0000, 3, 1, 0x02, 0, b"event")),
            (C2S, msg(0x1234, 0x0422, 0x0001, 4, 2, 0x00, 0, b"")),
            (S2C, [msg(0x1234, 0x0422, 0x0001, 4, 2, 0xa0, 0, &[tp(true, 0), vec![7; 32]].concat())].concat()),
            (S2C, msg(0x1234, 0x0422, 0x0001, 4, 2, 0xa0, 0, &[tp(false, 32), vec![7; 8]].concat())),
            (C2S, msg(0x1234, 0x0423, 0x0001, 5, 1, 0x00, 0, b"")),
            (S2C, msg(0x1234, 0x0423, 0x0001, 5, 1, 0x81, 0x01, b"")),
        ]
    }

    #[test]
    fn tcp_sessions() {
        let rows = run(EmitMode::Sessions, &exchange());
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.request_type.clone().unwrap_or_default(),
                    r.endpoint.clone().unwrap_or_default(),
                    r.response_status,
                    r.log_type,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("REQUEST".into(), "1057".into(), ResponseStatus::ClientError, LogType::Session),
                ("REQUEST".into(), "1057".into(), ResponseStatus::Ok, LogType::Session),
                ("REQUEST_NO_RETURN".into(), "1".into(), ResponseStatus::Ok, LogType::Session),
                ("NOTIFICATION".into(), "32773".into(), ResponseStatus::Ok, LogType::Session),
                ("REQUEST".into(), "1058".into(), ResponseStatus::Ok, LogType::Session),
                ("REQUEST".into(), "1059".into(), ResponseStatus::ServerError, LogType::Session),
            ],
            "{rows:#?}"
        );
        let r = &rows[0];
        assert_eq!(r.request_resource.as_deref(), Some("4660"));
        assert_eq!(r.request_id, Some(0x0002_0001));
        assert_eq!(r.response_code, Some(3));
        assert_eq!(r.response_exception.as_deref(), Some("E_UNKNOWN_METHOD"));
        assert_eq!(r.version.as_deref(), Some("1.1"));
        assert!(r.attribute_values.contains(&"2".to_string()));
        assert_eq!(rows[4].version.as_deref(), Some("1.2"));
    }

    #[test]
    fn udp_datagrams() {
        let c = cfg("someip", EmitMode::Sessions);
        let mut e = L7Engine::new(c.clone());
        e.register(make(&c));
        let mut f = flow(30490);
        f.protocol = 17;
        let mut st = L7FlowState::default();
        let mut rows = Vec::new();
        for (i, (dir, b)) in exchange().iter().enumerate() {
            e.on_payload(&mut st, &f, *dir, 1000 * (i as u64 + 1), b, &mut rows);
        }
        e.on_flow_end(&mut st, &f, 1_000_000, &mut rows);
        assert_eq!(rows.len(), 6, "{rows:#?}");
        assert_eq!(rows[4].rrt, Some(2000)); // answered by the last TP segment
        assert_eq!(e.counters().parse_errors, 0);
    }

    #[test]
    fn probe() {
        let f = flow(1);
        let p = SomeIpParser::new(&L7Config::default());
        let ex = exchange();
        assert_eq!(p.probe(&ex[0].1, C2S, &f), Probe::Match);
        assert_eq!(p.probe(&ex[2].1, S2C, &f), Probe::Match);
        assert_eq!(p.probe(&ex[0].1[..8], C2S, &f), Probe::NeedMore);
        assert_eq!(p.probe(b"GET / HTTP/1.1\r\n\r\n", C2S, &f), Probe::NotThis);
    }

    #[test]
    fn splits() {
        check_splits(&make, "someip", 30509, &exchange());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &exchange());
    }

    #[test]
    fn fuzz_50k() {
        fuzz(&make, "someip", &exchange(), 50_000);
    }
}
