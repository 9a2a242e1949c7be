//! Apache Pulsar binary protocol (`pulsar`).
//!
//! Frames are `[total size u32][command size u32][BaseCommand protobuf]`, and for SEND and
//! MESSAGE additionally `[magic 0x0e01][crc32c u32]` (optional) `[metadata size u32]
//! [MessageMetadata][payload]`. BaseCommand is decoded with a minimal protobuf reader (no
//! codegen): field 1 is the type, and the command sub-message sits in the field whose number
//! equals the type value. Fields follow L7_FIELDS.md "Pulsar": type proto name →
//! `request_type`, min(protocol_version of CONNECT, CONNECTED) → `version`, CONNECT
//! `proxy_to_broker_url` → `request_domain`, topic → `request_resource` and its last `/`
//! segment → `endpoint` (from PRODUCER/SUBSCRIBE/LOOKUP/..., then by producer_id/consumer_id),
//! `request_id` (SEND/SEND_RECEIPT/SEND_ERROR: `(producer_id & 0xffff) << 16 |
//! (sequence_id & 0xffff)`), message id `ledger:entry:partition:batch` → `x_request_id`,
//! server error enum → `response_code`, error message → `response_exception` (server_error).
//! Trace context comes from MessageMetadata properties. CONNECT/CONNECTED and PING/PONG carry
//! no id: they pair on reserved keys (0xFFFF_FFFF; PING 0xFFFF_FFFE from the client,
//! 0xFFFF_FFFD from the broker), which also show in `request_id`.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::Arc;

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;
use crate::trace::{TraceConfig, TraceExtractor};

// ---------------------------------------------------------------------------------------------
// constants

/// Pulsar's default `maxMessageSize` is 5 MiB; frames add a little.
const MAX_FRAME: usize = 64 * 1024 * 1024;
const MAGIC_CRC32C: [u8; 2] = [0x0e, 0x01];
const KEY_CONNECT: u32 = 0xffff_ffff;
const KEY_PING_CLIENT: u32 = 0xffff_fffe;
const KEY_PING_SERVER: u32 = 0xffff_fffd;
/// producer/consumer id → topic entries kept per flow.
const MAX_IDS: usize = 1024;

const CONNECT: u64 = 2;
const CONNECTED: u64 = 3;
const SUBSCRIBE: u64 = 4;
const PRODUCER: u64 = 5;
const SEND: u64 = 6;
const SEND_RECEIPT: u64 = 7;
const SEND_ERROR: u64 = 8;
const MESSAGE: u64 = 9;
const PING: u64 = 18;
const PONG: u64 = 19;

/// BaseCommand.Type proto name.
pub fn type_name(t: u64) -> Option<&'static str> {
    Some(match t {
        2 => "CONNECT",
        3 => "CONNECTED",
        4 => "SUBSCRIBE",
        5 => "PRODUCER",
        6 => "SEND",
        7 => "SEND_RECEIPT",
        8 => "SEND_ERROR",
        9 => "MESSAGE",
        10 => "ACK",
        11 => "FLOW",
        12 => "UNSUBSCRIBE",
        13 => "SUCCESS",
        14 => "ERROR",
        15 => "CLOSE_PRODUCER",
        16 => "CLOSE_CONSUMER",
        17 => "PRODUCER_SUCCESS",
        18 => "PING",
        19 => "PONG",
        20 => "REDELIVER_UNACKNOWLEDGED_MESSAGES",
        21 => "PARTITIONED_METADATA",
        22 => "PARTITIONED_METADATA_RESPONSE",
        23 => "LOOKUP",
        24 => "LOOKUP_RESPONSE",
        25 => "CONSUMER_STATS",
        26 => "CONSUMER_STATS_RESPONSE",
        27 => "REACHED_END_OF_TOPIC",
        28 => "SEEK",
        29 => "GET_LAST_MESSAGE_ID",
        30 => "GET_LAST_MESSAGE_ID_RESPONSE",
        31 => "ACTIVE_CONSUMER_CHANGE",
        32 => "GET_TOPICS_OF_NAMESPACE",
        33 => "GET_TOPICS_OF_NAMESPACE_RESPONSE",
        34 => "GET_SCHEMA",
        35 => "GET_SCHEMA_RESPONSE",
        36 => "AUTH_CHALLENGE",
        37 => "AUTH_RESPONSE",
        38 => "ACK_RESPONSE",
        39 => "GET_OR_CREATE_SCHEMA",
        40 => "GET_OR_CREATE_SCHEMA_RESPONSE",
        50 => "NEW_TXN",
        51 => "NEW_TXN_RESPONSE",
        52 => "ADD_PARTITION_TO_TXN",
        53 => "ADD_PARTITION_TO_TXN_RESPONSE",
        54 => "ADD_SUBSCRIPTION_TO_TXN",
        55 => "ADD_SUBSCRIPTION_TO_TXN_RESPONSE",
        56 => "END_TXN",
        57 => "END_TXN_RESPONSE",
        58 => "END_TXN_ON_PARTITION",
        59 => "END_TXN_ON_PARTITION_RESPONSE",
        60 => "END_TXN_ON_SUBSCRIPTION",
        61 => "END_TXN_ON_SUBSCRIPTION_RESPONSE",
        62 => "TC_CLIENT_CONNECT_REQUEST",
        63 => "TC_CLIENT_CONNECT_RESPONSE",
        64 => "WATCH_TOPIC_LIST",
        65 => "WATCH_TOPIC_LIST_SUCCESS",
        66 => "WATCH_TOPIC_UPDATE",
        67 => "WATCH_TOPIC_LIST_CLOSE",
        68 => "TOPIC_MIGRATED",
        _ => return None,
    })
}

/// ServerError enum name.
pub fn server_error_name(e: u64) -> Option<&'static str> {
    const N: [&str; 26] = [
        "UnknownError",
        "MetadataError",
        "PersistenceError",
        "AuthenticationError",
        "AuthorizationError",
        "ConsumerBusy",
        "ServiceNotReady",
        "ProducerBlockedQuotaExceededError",
        "ProducerBlockedQuotaExceededException",
        "ChecksumError",
        "UnsupportedVersionError",
        "TopicNotFound",
        "SubscriptionNotFound",
        "ConsumerNotFound",
        "TooManyRequests",
        "TopicTerminatedError",
        "ProducerBusy",
        "InvalidTopicName",
        "IncompatibleSchema",
        "ConsumerAssignError",
        "TransactionCoordinatorNotFound",
        "InvalidTxnStatus",
        "NotAllowedError",
        "TransactionConflict",
        "TransactionNotFound",
        "ProducerFenced",
    ];
    usize::try_from(e).ok().and_then(|i| N.get(i)).copied()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Req,
    Resp,
    OneWay,
}

/// Role and the field numbers of (request_id, topic, producer_id, consumer_id, error, message)
/// inside the command sub-message (0 = absent).
fn layout(t: u64) -> (Role, [u32; 6]) {
    use Role::*;
    match t {
        CONNECT => (Req, [0; 6]),
        CONNECTED => (Resp, [0; 6]),
        SUBSCRIBE => (Req, [5, 1, 0, 4, 0, 0]),
        PRODUCER => (Req, [3, 1, 2, 0, 0, 0]),
        SEND => (Req, [0, 0, 1, 0, 0, 0]),
        SEND_RECEIPT => (Resp, [0, 0, 1, 0, 0, 0]),
        SEND_ERROR => (Resp, [0, 0, 1, 0, 3, 4]),
        MESSAGE => (OneWay, [0, 0, 0, 1, 0, 0]),
        10 => (OneWay, [8, 0, 0, 1, 0, 0]),
        11 | 20 | 27 | 31 => (OneWay, [0, 0, 0, 1, 0, 0]),
        12 => (Req, [2, 0, 0, 1, 0, 0]),
        13 => (Resp, [1, 0, 0, 0, 0, 0]),
        14 => (Resp, [1, 0, 0, 0, 2, 3]),
        15 => (Req, [2, 0, 1, 0, 0, 0]),
        16 => (Req, [2, 0, 0, 1, 0, 0]),
        17 => (Resp, [1, 0, 0, 0, 0, 0]),
        PING => (Req, [0; 6]),
        PONG => (Resp, [0; 6]),
        21 => (Req, [2, 1, 0, 0, 0, 0]),
        22 => (Resp, [2, 0, 0, 0, 4, 5]),
        23 => (Req, [2, 1, 0, 0, 0, 0]),
        24 => (Resp, [4, 0, 0, 0, 6, 7]),
        25 => (Req, [1, 0, 0, 2, 0, 0]),
        26 => (Resp, [1, 0, 0, 0, 2, 3]),
        28 => (Req, [2, 0, 0, 1, 0, 0]),
        29 => (Req, [2, 0, 0, 1, 0, 0]),
        30 => (Resp, [2, 0, 0, 0, 0, 0]),
        32 => (Req, [1, 0, 0, 0, 0, 0]),
        33 => (Resp, [2, 0, 0, 0, 0, 0]),
        34 => (Req, [1, 2, 0, 0, 0, 0]),
        35 => (Resp, [1, 0, 0, 0, 2, 3]),
        36 => (Req, [0; 6]),
        37 => (Resp, [0; 6]),
        38 => (OneWay, [6, 0, 0, 1, 4, 5]),
        39 => (Req, [1, 2, 0, 0, 0, 0]),
        40 => (Resp, [1, 0, 0, 0, 2, 3]),
        50 | 52 | 54 | 56 | 58 | 60 | 62 => (Req, [1, 0, 0, 0, 0, 0]),
        51 | 53 | 55 | 57 | 59 | 61 | 63 => (Resp, [1, 0, 0, 0, 4, 5]),
        64..=68 => (OneWay, [0; 6]),
        _ => (OneWay, [0; 6]),
    }
}

// ---------------------------------------------------------------------------------------------
// protobuf reader

/// One protobuf field value.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

/// Iterates `(field number, value)` over a protobuf message; stops at the first malformed or
/// truncated field.
struct Pb<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Pb<'a> {
    fn new(b: &'a [u8]) -> Self {
        Pb { b, pos: 0 }
    }
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let c = *self.b.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(c & 0x7f) << shift;
            if c & 0x80 == 0 {
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
}

impl<'a> Iterator for Pb<'a> {
    type Item = (u32, Val<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).ok()?;
        let v = match key & 7 {
            0 => Val::Int(self.varint()?),
            1 => Val::Int(u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            2 => {
                let n = usize::try_from(self.varint()?).ok()?;
                Val::Bytes(self.take(n)?)
            }
            5 => Val::Int(u64::from(u32::from_le_bytes(self.take(4)?.try_into().ok()?))),
            _ => return None,
        };
        Some((field, v))
    }
}

fn pb_int(b: &[u8], f: u32) -> Option<u64> {
    Pb::new(b).find_map(|(n, v)| match v {
        Val::Int(i) if n == f => Some(i),
        _ => None,
    })
}

fn pb_bytes(b: &[u8], f: u32) -> Option<&[u8]> {
    Pb::new(b).find_map(|(n, v)| match v {
        Val::Bytes(x) if n == f => Some(x),
        _ => None,
    })
}

fn pb_str(b: &[u8], f: u32) -> Option<String> {
    pb_bytes(b, f).map(|x| String::from_utf8_lossy(x).into_owned())
}

/// `ledger:entry:partition:batch` of a MessageIdData (-1 when missing).
fn message_id(m: Option<&[u8]>) -> String {
    let get = |f: u32, signed32: bool| -> String {
        match m.and_then(|m| pb_int(m, f)) {
            Some(v) if signed32 => (v as i32).to_string(),
            Some(v) => v.to_string(),
            None => "-1".to_string(),
        }
    };
    format!("{}:{}:{}:{}", get(1, false), get(2, false), get(3, true), get(4, true))
}

fn last_segment(topic: &str) -> String {
    topic.rsplit('/').next().unwrap_or(topic).to_string()
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start with a Pulsar CONNECT (client) or CONNECTED (broker) frame?
pub fn probe_frame(data: &[u8], dir: Direction) -> Probe {
    let want = match dir {
        Direction::ClientToServer => CONNECT,
        Direction::ServerToClient => CONNECTED,
    };
    let be = |r: std::ops::Range<usize>| data.get(r).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_be_bytes);
    let (Some(total), Some(cmd)) = (be(0..4), be(4..8)) else { return Probe::NeedMore };
    let (total, cmd) = (total as usize, cmd as usize);
    if total > MAX_FRAME || cmd + 4 > total || cmd < 2 {
        return Probe::NotThis;
    }
    // BaseCommand starts with field 1 (type) as a varint: 0x08 <type>
    match (data.get(8), data.get(9)) {
        (Some(0x08), Some(&t)) if u64::from(t) == want => Probe::Match,
        (Some(0x08), None) | (None, _) => Probe::NeedMore,
        _ => Probe::NotThis,
    }
}

// ---------------------------------------------------------------------------------------------
// parser

/// The Pulsar parser.
pub struct PulsarParser {
    trace: Arc<TraceConfig>,
    partial_limit: usize,
    versions: [Option<u64>; 2],
    proxy_url: Option<String>,
    producers: VecDeque<(u64, String)>,
    consumers: VecDeque<(u64, String)>,
    skip: [usize; 2],
}

impl PulsarParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        PulsarParser {
            trace: Arc::new(cfg.trace.clone()),
            partial_limit: (cfg.max_buffered_bytes / 2).max(64),
            versions: [None; 2],
            proxy_url: None,
            producers: VecDeque::new(),
            consumers: VecDeque::new(),
            skip: [0; 2],
        }
    }

    fn remember(map: &mut VecDeque<(u64, String)>, id: u64, topic: &str) {
        map.retain(|(i, _)| *i != id);
        if map.len() >= MAX_IDS {
            map.pop_front();
        }
        map.push_back((id, topic.to_string()));
    }

    fn lookup(map: &VecDeque<(u64, String)>, id: u64) -> Option<String> {
        map.iter().find(|(i, _)| *i == id).map(|(_, t)| t.clone())
    }

    /// Decodes one frame prefix: `frame` starts after the total size.
    fn frame(&mut self, frame: &[u8], dir: Direction, total: usize) -> Result<L7Message, ParseErrorKind> {
        let m = ParseErrorKind::Malformed;
        let cmd_len = frame.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_be_bytes).ok_or(m)?;
        let cmd_len = cmd_len as usize;
        let base = frame.get(4..4 + cmd_len).ok_or(ParseErrorKind::Truncated)?;
        let t = pb_int(base, 1).ok_or(m)?;
        let name = type_name(t).ok_or(m)?;
        let sub = pb_bytes(base, u32::try_from(t).map_err(|_| m)?).unwrap_or_default();
        let (role, [f_req, f_topic, f_prod, f_cons, f_err, f_msg]) = layout(t);
        let kind = match role {
            Role::Req => MessageKind::Request,
            Role::Resp => MessageKind::Response,
            Role::OneWay => MessageKind::OneWay,
        };
        let mut msg = L7Message::new(L7Protocol::Pulsar, kind);
        msg.request_type = Some(name.to_string());
        msg.length = Some(total as u64);
        let get = |f: u32| if f == 0 { None } else { pb_int(sub, f) };
        msg.request_id = get(f_req).map(|v| v as u32);
        let producer = get(f_prod);
        let consumer = get(f_cons);
        let mut topic = if f_topic == 0 { None } else { pb_str(sub, f_topic) };
        match t {
            CONNECT => {
                if let Some(v) = pb_int(sub, 4) {
                    self.versions[0] = Some(v);
                }
                if let Some(u) = pb_str(sub, 6) {
                    self.proxy_url = Some(u);
                }
                msg.request_id = Some(KEY_CONNECT);
            }
            CONNECTED => {
                if let Some(v) = pb_int(sub, 2) {
                    self.versions[1] = Some(v);
                }
                msg.request_id = Some(KEY_CONNECT);
            }
            PING | PONG => {
                let from_client = dir == Direction::ClientToServer;
                let client_started = if t == PING { from_client } else { !from_client };
                msg.request_id = Some(if client_started { KEY_PING_CLIENT } else { KEY_PING_SERVER });
            }
            SEND | SEND_RECEIPT | SEND_ERROR => {
                let p = producer.unwrap_or(0);
                let s = pb_int(sub, 2).unwrap_or(0);
                msg.request_id = Some((((p & 0xffff) << 16) | (s & 0xffff)) as u32);
            }
            _ => {}
        }
        match t {
            PRODUCER => {
                if let (Some(p), Some(tp)) = (producer, &topic) {
                    Self::remember(&mut self.producers, p, tp);
                }
            }
            SUBSCRIBE => {
                if let (Some(c), Some(tp)) = (consumer, &topic) {
                    Self::remember(&mut self.consumers, c, tp);
                }
            }
            _ => {}
        }
        if topic.is_none() {
            topic = producer
                .and_then(|p| Self::lookup(&self.producers, p))
                .or_else(|| consumer.and_then(|c| Self::lookup(&self.consumers, c)));
        }
        if let Some(tp) = topic {
            msg.endpoint = Some(last_segment(&tp));
            msg.request_resource = Some(tp);
        }
        let version = match self.versions {
            [Some(a), Some(b)] => Some(a.min(b)),
            [a, b] => a.or(b),
        };
        msg.version = version.map(|v| v.to_string());
        msg.request_domain = self.proxy_url.clone();
        match t {
            SEND | MESSAGE => {
                let f = if t == SEND { 9 } else { 2 };
                msg.trace.x_request_id = Some(message_id(pb_bytes(sub, f)));
                let rest = frame.get(4 + cmd_len..).unwrap_or_default();
                self.metadata(rest, &mut msg);
            }
            SEND_RECEIPT => msg.trace.x_request_id = Some(message_id(pb_bytes(sub, 3))),
            _ => {}
        }
        if kind != MessageKind::Request {
            let err = get(f_err);
            let text = if f_msg == 0 { None } else { pb_str(sub, f_msg) };
            match err {
                Some(e) => {
                    msg.response_code = Some(e as i32);
                    msg.response_status = Some(ResponseStatus::ServerError);
                    msg.response_exception =
                        text.or_else(|| server_error_name(e).map(str::to_string)).or(Some(format!("error {e}")));
                }
                None => msg.response_status = Some(ResponseStatus::Ok),
            }
        }
        Ok(msg)
    }

    /// Trace context from the MessageMetadata properties after the command.
    fn metadata(&self, rest: &[u8], msg: &mut L7Message) {
        let rest = if rest.get(..2) == Some(&MAGIC_CRC32C[..]) { rest.get(6..).unwrap_or_default() } else { rest };
        let Some(len) = rest.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_be_bytes) else {
            return;
        };
        let Some(md) = rest.get(4..4 + len as usize) else { return };
        let mut ex = TraceExtractor::new(&self.trace);
        for (f, v) in Pb::new(md) {
            if let (4, Val::Bytes(kv)) = (f, v)
                && let (Some(k), Some(val)) = (pb_str(kv, 1), pb_str(kv, 2))
            {
                ex.header(&k, &val, msg);
            }
        }
    }
}

impl L7Parser for PulsarParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Pulsar
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 6650
    }

    fn probe(&self, data: &[u8], dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_frame(data, dir)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(PulsarParser {
            trace: Arc::clone(&self.trace),
            partial_limit: self.partial_limit,
            versions: [None; 2],
            proxy_url: None,
            producers: VecDeque::new(),
            consumers: VecDeque::new(),
            skip: [0; 2],
        })
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
        let Some(size) = data.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_be_bytes) else {
            return ParseOutcome::NeedMore(4 - data.len());
        };
        let size = size as usize;
        if !(5..=MAX_FRAME).contains(&size) {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let total = size + 4;
        let need = total.min(self.partial_limit.max(8));
        if data.len() < need {
            return ParseOutcome::NeedMore(need - data.len());
        }
        let avail = total.min(data.len());
        match self.frame(data.get(4..avail).unwrap_or_default(), ctx.dir, total) {
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
pub(crate) mod tests {
    use super::*;
    use crate::EmitMode;
    use crate::l7::kafka::testkit::*;
    use deepflow_core::record::{L7FlowLog, LogType};

    fn make(cfg: &L7Config) -> Box<dyn L7Parser> {
        Box::new(PulsarParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "pulsar", 6650, emit, segs)
    }

    fn var(mut n: u64) -> Vec<u8> {
        let mut v = Vec::new();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                v.push(b);
                return v;
            }
            v.push(b | 0x80);
        }
    }
    fn fi(f: u32, v: u64) -> Vec<u8> {
        [var(u64::from(f) << 3), var(v)].concat()
    }
    fn fb(f: u32, b: &[u8]) -> Vec<u8> {
        [var((u64::from(f) << 3) | 2), var(b.len() as u64), b.to_vec()].concat()
    }
    fn cmd(t: u64, sub: Vec<u8>) -> Vec<u8> {
        let base = [fi(1, t), fb(t as u32, &sub)].concat();
        let mut v = ((base.len() + 4) as u32).to_be_bytes().to_vec();
        v.extend((base.len() as u32).to_be_bytes());
        v.extend(base);
        v
    }
    fn with_payload(t: u64, sub: Vec<u8>, props: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
        let base = [fi(1, t), fb(t as u32, &sub)].concat();
        let mut md = [fb(1, b"prod-1"), fi(2, 0), fi(3, 1_700_000_000_000)].concat();
        for (k, v) in props {
            md.extend(fb(4, &[fb(1, k.as_bytes()), fb(2, v.as_bytes())].concat()));
        }
        let mut tail = MAGIC_CRC32C.to_vec();
        tail.extend(0u32.to_be_bytes());
        tail.extend((md.len() as u32).to_be_bytes());
        tail.extend(md);
        tail.extend(payload);
        let mut v = ((4 + base.len() + tail.len()) as u32).to_be_bytes().to_vec();
        v.extend((base.len() as u32).to_be_bytes());
        v.extend(base);
        v.extend(tail);
        v
    }
    fn msgid(l: u64, e: u64) -> Vec<u8> {
        [fi(1, l), fi(2, e)].concat()
    }

    const TOPIC: &str = "persistent://public/default/orders";
    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    pub(crate) fn exchange() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C2S, cmd(CONNECT, [fb(1, b"Pulsar-Java-v3.1"), fi(4, 21), fb(6, b"pulsar://broker-1:6650")].concat())),
            (S2C, cmd(CONNECTED, [fb(1, b"Pulsar Server3.1"), fi(2, 19)].concat())),
            (C2S, cmd(PRODUCER, [fb(1, TOPIC.as_bytes()), fi(2, 1), fi(3, 7)].concat())),
            (S2C, cmd(17, [fi(1, 7), fb(2, b"standalone-0-1")].concat())),
            (C2S, with_payload(SEND, [fi(1, 1), fi(2, 0), fi(3, 1)].concat(), &[("traceparent", TP)], b"hello")),
            (S2C, cmd(SEND_RECEIPT, [fi(1, 1), fi(2, 0), fb(3, &msgid(12, 0))].concat())),
            (C2S, with_payload(SEND, [fi(1, 1), fi(2, 1), fi(3, 1)].concat(), &[], b"again")),
            (S2C, cmd(SEND_ERROR, [fi(1, 1), fi(2, 1), fi(3, 2), fb(4, b"bookie down")].concat())),
            (C2S, cmd(SUBSCRIBE, [fb(1, TOPIC.as_bytes()), fb(2, b"sub"), fi(3, 0), fi(4, 3), fi(5, 8)].concat())),
            (S2C, cmd(13, fi(1, 8))),
            (C2S, cmd(11, [fi(1, 3), fi(2, 1000)].concat())),
            (S2C, with_payload(MESSAGE, [fi(1, 3), fb(2, &msgid(12, 0))].concat(), &[("traceparent", TP)], b"hello")),
            (C2S, [cmd(10, [fi(1, 3), fi(2, 0), fb(3, &msgid(12, 0))].concat()), cmd(PING, vec![])].concat()),
            (S2C, cmd(PONG, vec![])),
            (C2S, cmd(23, [fb(1, b"persistent://public/default/nope"), fi(2, 9)].concat())),
            (S2C, cmd(14, [fi(1, 9), fi(2, 11), fb(3, b"Topic not found")].concat())),
        ]
    }

    #[test]
    fn sessions() {
        let rows = run(EmitMode::Sessions, &exchange());
        let names: Vec<_> = rows.iter().map(|r| r.request_type.clone().unwrap_or_default()).collect();
        assert_eq!(
            names,
            ["CONNECT", "PRODUCER", "SEND", "SEND", "SUBSCRIBE", "FLOW", "MESSAGE", "ACK", "PING", "LOOKUP"],
            "{rows:#?}"
        );
        let r = &rows[0];
        assert_eq!(r.version.as_deref(), Some("19"));
        assert_eq!(r.request_domain.as_deref(), Some("pulsar://broker-1:6650"));
        assert_eq!(r.response_status, ResponseStatus::Ok);
        let r = &rows[1];
        assert_eq!(r.request_resource.as_deref(), Some(TOPIC));
        assert_eq!(r.endpoint.as_deref(), Some("orders"));
        assert_eq!(r.request_id, Some(7));
        let r = &rows[2];
        assert_eq!(r.request_id, Some(1 << 16));
        assert_eq!(r.endpoint.as_deref(), Some("orders"));
        assert_eq!(r.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(r.x_request_id_0.as_deref(), Some("-1:-1:-1:-1"));
        assert_eq!(r.x_request_id_1.as_deref(), Some("12:0:-1:-1"));
        let r = &rows[3];
        assert_eq!(r.response_code, Some(2));
        assert_eq!(r.response_status, ResponseStatus::ServerError);
        assert_eq!(r.response_exception.as_deref(), Some("bookie down"));
        assert_eq!(rows[5].log_type, LogType::Session);
        assert_eq!(rows[5].endpoint.as_deref(), Some("orders"));
        assert_eq!(rows[6].x_request_id_0.as_deref(), Some("12:0:-1:-1"));
        assert_eq!(rows[6].trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        let r = &rows[9];
        assert_eq!(r.endpoint.as_deref(), Some("nope"));
        assert_eq!(r.response_code, Some(11));
        assert_eq!(r.response_exception.as_deref(), Some("Topic not found"));
        assert!(rows.iter().all(|r| r.response_status != ResponseStatus::Timeout));
    }

    #[test]
    fn probe() {
        let f = flow(1);
        let p = PulsarParser::new(&L7Config::default());
        let ex = exchange();
        assert_eq!(p.probe(&ex[0].1, C2S, &f), Probe::Match);
        assert_eq!(p.probe(&ex[1].1, S2C, &f), Probe::Match);
        assert_eq!(p.probe(&ex[2].1, C2S, &f), Probe::NotThis);
        assert_eq!(p.probe(&ex[0].1[..6], C2S, &f), Probe::NeedMore);
        assert_eq!(p.probe(b"GET / HTTP/1.1\r\n", C2S, &f), Probe::NotThis);
    }

    #[test]
    fn splits() {
        check_splits(&make, "pulsar", 6650, &exchange());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &exchange());
    }

    #[test]
    fn fuzz_50k() {
        fuzz(&make, "pulsar", &exchange(), 50_000);
    }
}
