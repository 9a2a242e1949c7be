//! MQTT 3.1, 3.1.1 and 5.0 (`mqtt`).
//!
//! A packet is a fixed header (type and flags byte, remaining length as a 1–4 byte varint)
//! followed by a variable header and payload. Fields follow L7_FIELDS.md "MQTT": packet type
//! name → `request_type`, CONNECT protocol level → `version` (remembered per flow), CONNECT
//! client id → `request_domain` (remembered per flow), PUBLISH topic or SUBSCRIBE/UNSUBSCRIBE
//! filters joined with `,` → `request_resource`/`endpoint`, CONNACK return code →
//! `response_code`; the CONNACK status is carried on later packets.
//!
//! Pairing is by id. MQTT packet identifiers are per sender, so the pairing key is the packet
//! id for exchanges the client starts and `0x1_0000 | id` for exchanges the server starts
//! (server PUBLISH QoS 1/2 and the client's acknowledgements). CONNECT/CONNACK and
//! PINGREQ/PINGRESP have no id on the wire and use the reserved keys `0x2_0000` and
//! `0x3_0000`. The key is also the `request_id` column.
//!
//! Beyond L7_FIELDS.md: SUBACK/UNSUBACK return codes and MQTT 5 reason codes of
//! PUBACK/PUBREC/PUBREL/PUBCOMP/DISCONNECT also fill `response_code`; a code ≥ 0x80 sets the
//! status of that packet (client or server error by the reason code meaning) instead of the
//! carried CONNACK status.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;

// ---------------------------------------------------------------------------------------------
// constants

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;
const AUTH: u8 = 15;

/// Largest remaining length the protocol can encode.
const MAX_REMAINING: usize = 268_435_455;
/// Pairing key flag of exchanges started by the server.
const SERVER_STARTED: u32 = 0x1_0000;
/// Pairing keys of the id-less exchanges.
const KEY_CONNECT: u32 = 0x2_0000;
const KEY_PING: u32 = 0x3_0000;

/// Name of an MQTT control packet type.
pub fn packet_name(t: u8) -> Option<&'static str> {
    Some(match t {
        CONNECT => "CONNECT",
        CONNACK => "CONNACK",
        PUBLISH => "PUBLISH",
        PUBACK => "PUBACK",
        PUBREC => "PUBREC",
        PUBREL => "PUBREL",
        PUBCOMP => "PUBCOMP",
        SUBSCRIBE => "SUBSCRIBE",
        SUBACK => "SUBACK",
        UNSUBSCRIBE => "UNSUBSCRIBE",
        UNSUBACK => "UNSUBACK",
        PINGREQ => "PINGREQ",
        PINGRESP => "PINGRESP",
        DISCONNECT => "DISCONNECT",
        AUTH => "AUTH",
        _ => return None,
    })
}

/// Status of a CONNACK return code (MQTT 3) or reason code (MQTT 5).
pub fn connack_status(code: u8) -> ResponseStatus {
    match code {
        0 => ResponseStatus::Ok,
        1 | 2 | 4 | 5 => ResponseStatus::ClientError,
        3 => ResponseStatus::ServerError,
        c => reason_status(c),
    }
}

/// Status of an MQTT 5 reason code: < 0x80 success; server-side failures (unspecified,
/// implementation specific, unavailable, busy, quota, moved, ...) → server_error; the rest
/// (malformed, not authorized, bad credentials, topic invalid, ...) → client_error.
pub fn reason_status(code: u8) -> ResponseStatus {
    match code {
        0..=0x7f => ResponseStatus::Ok,
        0x80 | 0x83 | 0x88 | 0x89 | 0x8b | 0x97 | 0x9c | 0x9d | 0xa1 | 0xa2 => ResponseStatus::ServerError,
        _ => ResponseStatus::ClientError,
    }
}

fn version_name(level: u8) -> Option<&'static str> {
    match level {
        3 => Some("3.1"),
        4 => Some("3.1.1"),
        5 => Some("5.0"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// byte reader

struct Rd<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<&'a str> {
        let n = usize::from(self.u16()?);
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn varint(&mut self) -> Option<usize> {
        let mut v = 0usize;
        for i in 0..4 {
            let b = self.u8()?;
            v |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    /// MQTT 5 properties: a varint length and that many bytes.
    fn properties(&mut self) -> Option<()> {
        let n = self.varint()?;
        self.take(n).map(|_| ())
    }
    fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.pos)
    }
}

/// Fixed header: (type, flags, remaining length, header length). `Err(true)` = need more.
fn fixed_header(data: &[u8]) -> Result<(u8, u8, usize, usize), bool> {
    let b0 = *data.first().ok_or(true)?;
    let mut len = 0usize;
    for i in 0..4 {
        let Some(&b) = data.get(1 + i) else { return Err(true) };
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((b0 >> 4, b0 & 0xf, len, 2 + i));
        }
    }
    Err(false)
}

/// Is `data` the start of an MQTT CONNECT packet?
pub fn probe_connect(data: &[u8]) -> Probe {
    let (t, flags, len, hl) = match fixed_header(data) {
        Ok(h) => h,
        Err(true) => return Probe::NeedMore,
        Err(false) => return Probe::NotThis,
    };
    if t != CONNECT || flags != 0 || len < 10 {
        return Probe::NotThis;
    }
    let body = data.get(hl..).unwrap_or_default();
    let want: &[&[u8]] = &[b"\x00\x04MQTT", b"\x00\x06MQIsdp"];
    for w in want {
        let n = body.len().min(w.len());
        if body.get(..n) == w.get(..n) {
            if body.len() <= w.len() {
                return Probe::NeedMore;
            }
            return match body.get(w.len()) {
                Some(3..=5) => Probe::Match,
                _ => Probe::NotThis,
            };
        }
    }
    Probe::NotThis
}

// ---------------------------------------------------------------------------------------------
// parser

/// The MQTT parser.
pub struct MqttParser {
    partial_limit: usize,
    /// Protocol level from CONNECT (0 = not seen: parsed as 3.1.1).
    level: u8,
    client_id: Option<String>,
    /// Status of the last CONNACK, carried on later packets.
    status: ResponseStatus,
    skip: [usize; 2],
}

impl MqttParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        MqttParser {
            partial_limit: (cfg.max_buffered_bytes / 2).max(64),
            level: 0,
            client_id: None,
            status: ResponseStatus::Ok,
            skip: [0; 2],
        }
    }

    fn v5(&self) -> bool {
        self.level == 5
    }

    /// Decodes one packet (`body` may be a prefix of a large PUBLISH).
    fn packet(
        &mut self,
        t: u8,
        flags: u8,
        body: &[u8],
        dir: Direction,
        len: usize,
    ) -> Result<L7Message, ParseErrorKind> {
        let m = ParseErrorKind::Malformed;
        let name = packet_name(t).ok_or(m)?;
        let mut r = Rd { b: body, pos: 0 };
        let from_client = dir == Direction::ClientToServer;
        // key of an exchange started by the sender of a request / the peer of a response
        let key = |id: u16, started_by_client: bool| u32::from(id) | if started_by_client { 0 } else { SERVER_STARTED };
        let mut kind = MessageKind::Response;
        let mut id: Option<u32> = None;
        let mut code: Option<u8> = None;
        let mut resource: Option<String> = None;
        match t {
            CONNECT => {
                kind = MessageKind::Request;
                r.string().ok_or(m)?;
                let level = r.u8().ok_or(m)?;
                version_name(level).ok_or(m)?;
                self.level = level;
                r.u8().ok_or(m)?;
                r.u16().ok_or(m)?;
                if self.v5() {
                    r.properties().ok_or(m)?;
                }
                self.client_id = Some(r.string().ok_or(m)?.to_string());
                id = Some(KEY_CONNECT);
            }
            CONNACK => {
                r.u8().ok_or(m)?;
                let c = r.u8().ok_or(m)?;
                code = Some(c);
                self.status = connack_status(c);
                id = Some(KEY_CONNECT);
            }
            PUBLISH => {
                let qos = (flags >> 1) & 3;
                if qos == 3 {
                    return Err(m);
                }
                resource = Some(r.string().ok_or(m)?.to_string());
                if qos > 0 {
                    kind = MessageKind::Request;
                    id = Some(key(r.u16().ok_or(m)?, from_client));
                }
                // v5 properties precede the payload; nothing in them is reported
            }
            PUBACK | PUBREC | PUBREL | PUBCOMP => {
                let pid = r.u16().ok_or(m)?;
                if t == PUBREL {
                    kind = MessageKind::Request;
                    id = Some(key(pid, from_client));
                } else {
                    id = Some(key(pid, !from_client));
                }
                if self.v5() && r.remaining() > 0 {
                    code = Some(r.u8().ok_or(m)?);
                }
            }
            SUBSCRIBE | UNSUBSCRIBE => {
                kind = MessageKind::Request;
                id = Some(key(r.u16().ok_or(m)?, from_client));
                if self.v5() {
                    r.properties().ok_or(m)?;
                }
                let mut filters = Vec::new();
                while r.remaining() > 0 {
                    filters.push(r.string().ok_or(m)?);
                    if t == SUBSCRIBE {
                        r.u8().ok_or(m)?;
                    }
                }
                resource = Some(filters.join(","));
            }
            SUBACK | UNSUBACK => {
                id = Some(key(r.u16().ok_or(m)?, !from_client));
                if t == SUBACK || self.v5() {
                    if self.v5() {
                        r.properties().ok_or(m)?;
                    }
                    let codes = r.take(r.remaining()).unwrap_or_default();
                    code = codes.iter().copied().find(|&c| c >= 0x80).or_else(|| codes.first().copied());
                }
            }
            PINGREQ => {
                kind = MessageKind::Request;
                id = Some(KEY_PING);
            }
            PINGRESP => id = Some(KEY_PING),
            DISCONNECT | AUTH => {
                kind = MessageKind::OneWay;
                if self.v5() && r.remaining() > 0 {
                    code = Some(r.u8().ok_or(m)?);
                }
            }
            _ => return Err(m),
        }
        let mut msg = L7Message::new(L7Protocol::Mqtt, kind);
        msg.request_type = Some(name.to_string());
        msg.version = version_name(self.level).map(str::to_string);
        msg.request_domain = self.client_id.clone();
        msg.request_id = id;
        msg.length = Some(len as u64);
        msg.endpoint = resource.clone();
        msg.request_resource = resource;
        if kind != MessageKind::Request {
            msg.response_status = Some(self.status);
        }
        if let Some(c) = code {
            msg.response_code = Some(i32::from(c));
            if t != CONNACK && c >= 0x80 {
                msg.response_status = Some(reason_status(c));
            }
        }
        Ok(msg)
    }
}

impl L7Parser for MqttParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Mqtt
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 1883
    }

    fn probe(&self, data: &[u8], dir: Direction, _flow: &FlowInfo) -> Probe {
        match dir {
            Direction::ClientToServer => probe_connect(data),
            Direction::ServerToClient => Probe::NotThis,
        }
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(MqttParser { partial_limit: self.partial_limit, ..MqttParser::new(&L7Config::default()) })
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
        let (t, flags, len, hl) = match fixed_header(data) {
            Ok(h) => h,
            Err(true) => return ParseOutcome::NeedMore(1),
            Err(false) => return ParseOutcome::Error(ParseErrorKind::Malformed),
        };
        if len > MAX_REMAINING {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let total = hl + len;
        // only PUBLISH carries a payload big enough to be worth decoding from a prefix
        let need = if t == PUBLISH { total.min(self.partial_limit) } else { total };
        if data.len() < need {
            return ParseOutcome::NeedMore(need - data.len());
        }
        let avail = total.min(data.len());
        let body = data.get(hl..avail).unwrap_or_default();
        match self.packet(t, flags, body, ctx.dir, total) {
            Ok(msg) => {
                if let Some(s) = self.skip.get_mut(d) {
                    *s = total - avail;
                }
                ParseOutcome::message(msg, avail)
            }
            Err(e) => ParseOutcome::Error(e),
        }
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(s) = self.skip.get_mut(dir.index()) {
            *s = 0;
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::EmitMode;
    use crate::l7::kafka::testkit::*;
    use deepflow_core::record::{L7FlowLog, LogType};

    fn make(cfg: &L7Config) -> Box<dyn L7Parser> {
        Box::new(MqttParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "mqtt", 1883, emit, segs)
    }

    fn s(x: &str) -> Vec<u8> {
        let mut v = (x.len() as u16).to_be_bytes().to_vec();
        v.extend(x.as_bytes());
        v
    }
    fn pkt(b0: u8, body: Vec<u8>) -> Vec<u8> {
        let mut v = vec![b0];
        let mut n = body.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                v.push(b);
                break;
            }
            v.push(b | 0x80);
        }
        v.extend(body);
        v
    }
    fn connect(level: u8, client: &str) -> Vec<u8> {
        let mut b = if level == 3 { s("MQIsdp") } else { s("MQTT") };
        b.push(level);
        b.push(0x02);
        b.extend(60u16.to_be_bytes());
        if level == 5 {
            b.extend([5, 0x11, 0, 0, 0, 10]); // session expiry interval property
        }
        b.extend(s(client));
        pkt(0x10, b)
    }
    fn connack(level: u8, code: u8) -> Vec<u8> {
        let mut b = vec![0, code];
        if level == 5 {
            b.extend([3, 0x21, 0, 10]); // receive maximum
        }
        pkt(0x20, b)
    }
    fn publish(level: u8, qos: u8, retain: bool, topic: &str, id: u16, payload: &[u8]) -> Vec<u8> {
        let mut b = s(topic);
        if qos > 0 {
            b.extend(id.to_be_bytes());
        }
        if level == 5 {
            b.extend([2, 0x01, 1]); // payload format indicator
        }
        b.extend(payload);
        pkt(0x30 | (qos << 1) | u8::from(retain), b)
    }
    fn ack(t: u8, id: u16, reason: Option<u8>) -> Vec<u8> {
        let mut b = id.to_be_bytes().to_vec();
        if let Some(r) = reason {
            b.push(r);
            b.push(0);
        }
        pkt((t << 4) | if t == PUBREL { 2 } else { 0 }, b)
    }
    fn subscribe(level: u8, id: u16, filters: &[&str]) -> Vec<u8> {
        let mut b = id.to_be_bytes().to_vec();
        if level == 5 {
            b.push(0);
        }
        for f in filters {
            b.extend(s(f));
            b.push(1);
        }
        pkt(0x82, b)
    }
    fn suback(level: u8, id: u16, codes: &[u8]) -> Vec<u8> {
        let mut b = id.to_be_bytes().to_vec();
        if level == 5 {
            b.push(0);
        }
        b.extend(codes);
        pkt(0x90, b)
    }

    fn v311() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C2S, connect(4, "sensor-1")),
            (S2C, connack(4, 0)),
            (C2S, [subscribe(4, 1, &["a/#", "b/+"]), publish(4, 1, false, "a/x", 2, b"hi")].concat()),
            (S2C, [suback(4, 1, &[1, 0x80]), ack(PUBACK, 2, None)].concat()),
            // server delivers QoS 1 with id 1 (same id as the client's SUBSCRIBE)
            (S2C, publish(4, 1, false, "a/y", 1, b"payload")),
            (C2S, ack(PUBACK, 1, None)),
            // QoS 2 from client
            (C2S, publish(4, 2, true, "b/z", 3, b"q2")),
            (S2C, ack(PUBREC, 3, None)),
            (C2S, ack(PUBREL, 3, None)),
            (S2C, ack(PUBCOMP, 3, None)),
            (C2S, [publish(4, 0, false, "log", 0, b"x"), pkt(0xc0, vec![])].concat()),
            (S2C, pkt(0xd0, vec![])),
            (C2S, [pkt(0xa2, [7u16.to_be_bytes().to_vec(), s("a/#")].concat()), pkt(0xe0, vec![])].concat()),
            (S2C, pkt(0xb0, 7u16.to_be_bytes().to_vec())),
        ]
    }

    #[test]
    fn mqtt_311_sessions() {
        let rows = run(EmitMode::Sessions, &v311());
        let names: Vec<_> = rows.iter().map(|r| r.request_type.clone().unwrap_or_default()).collect();
        assert_eq!(
            names,
            [
                "CONNECT",
                "SUBSCRIBE",
                "PUBLISH",
                "PUBLISH",
                "PUBLISH",
                "PUBREL",
                "PUBLISH",
                "PINGREQ",
                "DISCONNECT",
                "UNSUBSCRIBE"
            ],
            "{rows:#?}"
        );
        let r = &rows[0];
        assert_eq!(r.version.as_deref(), Some("3.1.1"));
        assert_eq!(r.request_domain.as_deref(), Some("sensor-1"));
        assert_eq!(r.response_code, Some(0));
        assert_eq!(r.response_status, ResponseStatus::Ok);
        let r = &rows[1];
        assert_eq!(r.request_resource.as_deref(), Some("a/#,b/+"));
        assert_eq!(r.response_code, Some(0x80));
        // 0x80 = Failure (3.1.1) / Unspecified error (5)
        assert_eq!(r.response_status, ResponseStatus::ServerError);
        assert_eq!(rows[2].request_resource.as_deref(), Some("a/x"));
        assert_eq!(rows[2].log_type, LogType::Session);
        assert_eq!(rows[3].request_resource.as_deref(), Some("a/y"));
        assert_eq!(rows[3].request_id, Some(0x1_0001));
        assert_eq!(rows[3].log_type, LogType::Session);
        assert_eq!(rows[4].request_resource.as_deref(), Some("b/z"));
        assert_eq!(rows[4].log_type, LogType::Session);
        // QoS 0 publish is an unmatched "response"
        assert_eq!(rows[6].log_type, LogType::Response);
        assert_eq!(rows[6].request_resource.as_deref(), Some("log"));
        assert_eq!(rows[7].log_type, LogType::Session);
        assert_eq!(rows[8].log_type, LogType::Session);
        assert_eq!(rows[9].endpoint.as_deref(), Some("a/#"));
        assert!(rows.iter().all(|r| r.response_status != ResponseStatus::Timeout));
    }

    fn v5() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C2S, connect(5, "c5")),
            (S2C, connack(5, 0)),
            (C2S, publish(5, 1, false, "secret/x", 9, b"data")),
            (S2C, ack(PUBACK, 9, Some(0x87))),
            (C2S, subscribe(5, 10, &["t/1"])),
            (S2C, suback(5, 10, &[0x87])),
            (C2S, pkt(0xe0, vec![0x00])),
        ]
    }

    #[test]
    fn mqtt_5_reason_codes() {
        let rows = run(EmitMode::Sessions, &v5());
        assert_eq!(rows.len(), 4, "{rows:#?}");
        assert_eq!(rows[0].version.as_deref(), Some("5.0"));
        assert_eq!(rows[0].request_domain.as_deref(), Some("c5"));
        assert_eq!(rows[1].request_resource.as_deref(), Some("secret/x"));
        assert_eq!(rows[1].response_code, Some(0x87));
        assert_eq!(rows[1].response_status, ResponseStatus::ClientError);
        assert_eq!(rows[2].response_code, Some(0x87));
        assert_eq!(rows[3].request_type.as_deref(), Some("DISCONNECT"));
        assert_eq!(rows[3].response_code, Some(0));
    }

    #[test]
    fn connack_refused_status_carried() {
        let segs = vec![(C2S, connect(3, "old")), (S2C, connack(3, 5)), (C2S, publish(3, 0, false, "t", 0, b""))];
        let rows = run(EmitMode::Sessions, &segs);
        assert_eq!(rows[0].version.as_deref(), Some("3.1"));
        assert_eq!(rows[0].response_code, Some(5));
        assert_eq!(rows[0].response_status, ResponseStatus::ClientError);
        assert_eq!(rows[1].response_status, ResponseStatus::ClientError);
        let rows = run(EmitMode::Sessions, &[(C2S, connect(5, "x")), (S2C, connack(5, 0x86))]);
        assert_eq!(rows[0].response_status, ResponseStatus::ClientError);
        let rows = run(EmitMode::Sessions, &[(C2S, connect(4, "x")), (S2C, connack(4, 3))]);
        assert_eq!(rows[0].response_status, ResponseStatus::ServerError);
    }

    #[test]
    fn large_publish_is_skipped() {
        let big = vec![b'z'; 300_000];
        let p = publish(4, 1, false, "big", 5, &big);
        let mut segs = vec![(C2S, connect(4, "c")), (S2C, connack(4, 0))];
        for c in p.chunks(1460) {
            segs.push((C2S, c.to_vec()));
        }
        segs.push((S2C, ack(PUBACK, 5, None)));
        segs.push((C2S, pkt(0xc0, vec![])));
        segs.push((S2C, pkt(0xd0, vec![])));
        let rows = run(EmitMode::Sessions, &segs);
        assert_eq!(rows.len(), 3, "{rows:#?}");
        assert_eq!(rows[1].request_resource.as_deref(), Some("big"));
        assert_eq!(rows[1].request_length, Some(p.len() as u64));
        assert_eq!(rows[2].request_type.as_deref(), Some("PINGREQ"));
    }

    #[test]
    fn probe() {
        let f = flow(1);
        let p = MqttParser::new(&L7Config::default());
        assert_eq!(p.probe(&connect(4, "x"), C2S, &f), Probe::Match);
        assert_eq!(p.probe(&connect(3, "x"), C2S, &f), Probe::Match);
        assert_eq!(p.probe(&connect(4, "x")[..5], C2S, &f), Probe::NeedMore);
        assert_eq!(p.probe(b"\x10\x20GET", C2S, &f), Probe::NotThis);
        assert_eq!(p.probe(&pkt(0xc0, vec![]), C2S, &f), Probe::NotThis);
    }

    #[test]
    fn splits() {
        check_splits(&make, "mqtt", 1883, &v311());
        check_splits(&make, "mqtt", 1883, &v5());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &v311());
        check_truncations(make(&L7Config::default()).as_ref(), &v5());
    }

    #[test]
    fn fuzz_50k() {
        let mut seeds = v311();
        seeds.extend(v5());
        fuzz(&make, "mqtt", &seeds, 50_000);
    }
}
