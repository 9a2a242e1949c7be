//! Apache RocketMQ remoting protocol (`rocketmq`).
//!
//! A frame is `[length u32][serialize type u8 | header length u24][header][body]`, the header
//! serialized as JSON (type 0) or RocketMQ's binary form (type 1: code i16, language u8,
//! version i16, opaque i32, flag i32, remark and extFields with length prefixes). Fields
//! follow L7_FIELDS.md "RocketMQ": request code name → `request_type`, header version →
//! MQVersion name → `version`, extFields producerGroup (codes 10/310/320) else consumerGroup
//! → `request_domain`, topic → `request_resource`, `topic-queueId` → `endpoint`, opaque →
//! `request_id` (pairing key), response code → `response_code` (status table below), remark →
//! `response_exception`, message `UNIQ_KEY` (or `KEY`) property → `x_request_id_0` and the
//! response's `msgId` → `x_request_id_1`. Flag bit 0 marks responses, bit 1 one-way requests
//! (one-way rows, ok). SEND_MESSAGE_V2/SEND_BATCH_MESSAGE use the abbreviated extFields
//! (`a` producerGroup, `b` topic, `e` queueId, `i` properties). Trace context: properties
//! (`key\x01value\x02…`, from extFields or the request body) `traceparent`, `sw8`.
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

const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Headers are small; larger ones are not RocketMQ.
const MAX_HEADER: usize = 1024 * 1024;
const FLAG_RESPONSE: i32 = 1;
const FLAG_ONEWAY: i32 = 2;

/// RequestCode name.
pub fn request_code_name(code: i32) -> Option<&'static str> {
    Some(match code {
        10 => "SEND_MESSAGE",
        11 => "PULL_MESSAGE",
        12 => "QUERY_MESSAGE",
        13 => "QUERY_BROKER_OFFSET",
        14 => "QUERY_CONSUMER_OFFSET",
        15 => "UPDATE_CONSUMER_OFFSET",
        17 => "UPDATE_AND_CREATE_TOPIC",
        21 => "GET_ALL_TOPIC_CONFIG",
        22 => "GET_TOPIC_CONFIG_LIST",
        23 => "GET_TOPIC_NAME_LIST",
        25 => "UPDATE_BROKER_CONFIG",
        26 => "GET_BROKER_CONFIG",
        28 => "GET_BROKER_RUNTIME_INFO",
        29 => "SEARCH_OFFSET_BY_TIMESTAMP",
        30 => "GET_MAX_OFFSET",
        31 => "GET_MIN_OFFSET",
        32 => "GET_EARLIEST_MSG_STORETIME",
        33 => "VIEW_MESSAGE_BY_ID",
        34 => "HEART_BEAT",
        35 => "UNREGISTER_CLIENT",
        36 => "CONSUMER_SEND_MSG_BACK",
        37 => "END_TRANSACTION",
        38 => "GET_CONSUMER_LIST_BY_GROUP",
        39 => "CHECK_TRANSACTION_STATE",
        40 => "NOTIFY_CONSUMER_IDS_CHANGED",
        41 => "LOCK_BATCH_MQ",
        42 => "UNLOCK_BATCH_MQ",
        43 => "GET_ALL_CONSUMER_OFFSET",
        45 => "GET_ALL_DELAY_OFFSET",
        46 => "CHECK_CLIENT_CONFIG",
        100 => "PUT_KV_CONFIG",
        101 => "GET_KV_CONFIG",
        102 => "DELETE_KV_CONFIG",
        103 => "REGISTER_BROKER",
        104 => "UNREGISTER_BROKER",
        105 => "GET_ROUTEINFO_BY_TOPIC",
        106 => "GET_BROKER_CLUSTER_INFO",
        200 => "UPDATE_AND_CREATE_SUBSCRIPTIONGROUP",
        201 => "GET_ALL_SUBSCRIPTIONGROUP_CONFIG",
        202 => "GET_TOPIC_STATS_INFO",
        203 => "GET_CONSUMER_CONNECTION_LIST",
        204 => "GET_PRODUCER_CONNECTION_LIST",
        205 => "WIPE_WRITE_PERM_OF_BROKER",
        206 => "GET_ALL_TOPIC_LIST_FROM_NAMESERVER",
        207 => "DELETE_SUBSCRIPTIONGROUP",
        208 => "GET_CONSUME_STATS",
        215 => "DELETE_TOPIC_IN_BROKER",
        216 => "DELETE_TOPIC_IN_NAMESRV",
        300 => "GET_CONSUMER_STATUS_FROM_CLIENT",
        307 => "GET_CONSUMER_RUNNING_INFO",
        309 => "CONSUME_MESSAGE_DIRECTLY",
        310 => "SEND_MESSAGE_V2",
        320 => "SEND_BATCH_MESSAGE",
        346 => "PULL_MESSAGE_V2",
        351 => "GET_CONSUMER_LIST_BY_GROUP_V2",
        _ => return None,
    })
}

/// Status of a response code (L7_FIELDS.md "RocketMQ").
pub fn response_status(code: i32) -> ResponseStatus {
    match code {
        0 | 19 | 20 | 22 | 208 | 200 | 201 => ResponseStatus::Ok,
        1 | 2 | 4 | 10 | 11 | 12 | 14 | 202 | 203 | 206 | 207 | 209..=216 | -1010..=-1000 => {
            ResponseStatus::ServerError
        }
        3 | 13 | 15..=18 | 21 | 23..=28 | 204 | 205 | 501 | 604 => ResponseStatus::ClientError,
        _ => ResponseStatus::ParseFailed,
    }
}

/// MQVersion.Version enum name of a header version ordinal.
pub fn version_name(v: i32) -> String {
    match v {
        0 => return "V3_0_0_SNAPSHOT".into(),
        1 => return "V3_0_0_ALPHA1".into(),
        2..=10 => return format!("V3_0_0_BETA{}", v - 1),
        11 => return "V3_0_0_FINAL".into(),
        _ if v < 0 => return v.to_string(),
        _ => {}
    }
    let k = (v - 12) / 2;
    let suffix = if (v - 12) % 2 == 0 { "_SNAPSHOT" } else { "" };
    let (major, minor, patch) = if k < 10 {
        (3, 0, k + 1)
    } else if k < 100 {
        (3, 1 + (k - 10) / 10, (k - 10) % 10)
    } else {
        let j = k - 100;
        (4 + j / 100, (j % 100) / 10, j % 10)
    };
    if major > 9 { "HIGHER_VERSION".into() } else { format!("V{major}_{minor}_{patch}{suffix}") }
}

// ---------------------------------------------------------------------------------------------
// header decoding

/// A decoded remoting command header.
#[derive(Debug, Default)]
struct Header {
    code: i32,
    version: Option<i32>,
    opaque: i32,
    flag: i32,
    remark: Option<String>,
    ext: Vec<(String, String)>,
}

impl Header {
    fn ext(&self, k: &str) -> Option<&str> {
        self.ext.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

/// Minimal JSON reader for the flat remoting header (`extFields` is one level deep).
struct Json<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Json<'a> {
    fn ws(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }
    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.s.get(self.pos) == Some(&c)).then(|| self.pos += 1)
    }
    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.pos)?;
            self.pos += 1;
            match c {
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let e = *self.s.get(self.pos)?;
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = std::str::from_utf8(self.s.get(self.pos..self.pos + 4)?).ok()?;
                            self.pos += 4;
                            let cp = u32::from_str_radix(hex, 16).ok()?;
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut b = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                _ => out.push(c),
            }
        }
    }
    /// A scalar (number, bool, null) as text.
    fn scalar(&mut self) -> Option<String> {
        self.ws();
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace()) {
            self.pos += 1;
        }
        (self.pos > start)
            .then(|| String::from_utf8_lossy(self.s.get(start..self.pos).unwrap_or_default()).into_owned())
    }
    fn value(&mut self, depth: u8) -> Option<Option<String>> {
        self.ws();
        match self.s.get(self.pos)? {
            b'"' => Some(Some(self.string()?)),
            b'{' | b'[' => {
                if depth > 8 {
                    return None;
                }
                let close = if self.s.get(self.pos) == Some(&b'{') { b'}' } else { b']' };
                self.pos += 1;
                loop {
                    self.ws();
                    if self.s.get(self.pos) == Some(&close) {
                        self.pos += 1;
                        return Some(None);
                    }
                    if close == b'}' {
                        self.string()?;
                        self.eat(b':')?;
                    }
                    self.value(depth + 1)?;
                    self.ws();
                    if self.s.get(self.pos) == Some(&b',') {
                        self.pos += 1;
                    }
                }
            }
            _ => Some(Some(self.scalar()?)),
        }
    }
    /// Iterates the members of an object, handing nested `extFields` to `ext`.
    fn header(&mut self, h: &mut Header) -> Option<()> {
        self.eat(b'{')?;
        loop {
            self.ws();
            if self.s.get(self.pos) == Some(&b'}') {
                return Some(());
            }
            let key = self.string()?;
            self.eat(b':')?;
            if key == "extFields" && {
                self.ws();
                self.s.get(self.pos) == Some(&b'{')
            } {
                self.pos += 1;
                loop {
                    self.ws();
                    if self.s.get(self.pos) == Some(&b'}') {
                        self.pos += 1;
                        break;
                    }
                    let k = self.string()?;
                    self.eat(b':')?;
                    if let Some(v) = self.value(1)? {
                        h.ext.push((k, v));
                    }
                    self.ws();
                    if self.s.get(self.pos) == Some(&b',') {
                        self.pos += 1;
                    }
                }
            } else {
                let v = self.value(0)?;
                let num = || v.as_deref().and_then(|x| x.parse::<i64>().ok());
                match key.as_str() {
                    "code" => h.code = num()? as i32,
                    "version" => h.version = num().map(|x| x as i32),
                    "opaque" => h.opaque = num()? as i32,
                    "flag" => h.flag = num()? as i32,
                    "remark" => h.remark = v.filter(|r| r != "null"),
                    _ => {}
                }
            }
            self.ws();
            if self.s.get(self.pos) == Some(&b',') {
                self.pos += 1;
            }
        }
    }
}

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
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn bytes32(&mut self) -> Option<&'a [u8]> {
        let n = self.i32()?;
        if n <= 0 {
            return Some(&[]);
        }
        self.take(usize::try_from(n).ok()?)
    }
}

fn binary_header(b: &[u8]) -> Option<Header> {
    let mut r = Rd { b, pos: 0 };
    let mut h = Header { code: i32::from(r.i16()?), ..Default::default() };
    r.take(1)?; // language
    h.version = Some(i32::from(r.i16()?));
    h.opaque = r.i32()?;
    h.flag = r.i32()?;
    let remark = r.bytes32()?;
    if !remark.is_empty() {
        h.remark = Some(String::from_utf8_lossy(remark).into_owned());
    }
    let ext = r.bytes32()?;
    let mut e = Rd { b: ext, pos: 0 };
    while e.pos < ext.len() {
        let kl = usize::try_from(e.i16()?).ok()?;
        let k = String::from_utf8_lossy(e.take(kl)?).into_owned();
        let v = String::from_utf8_lossy(e.bytes32()?).into_owned();
        h.ext.push((k, v));
    }
    Some(h)
}

/// `key\x01value\x02…` message properties.
fn properties(s: &str) -> impl Iterator<Item = (&str, &str)> {
    s.split('\u{2}').filter_map(|kv| kv.split_once('\u{1}'))
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start with a remoting command frame?
pub fn probe_frame(data: &[u8]) -> Probe {
    let (Some(len), Some(ht)) = (
        data.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_be_bytes),
        data.get(4..8).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_be_bytes),
    ) else {
        return Probe::NeedMore;
    };
    let (len, ser, hl) = (len as usize, ht >> 24, (ht & 0xff_ffff) as usize);
    if len > MAX_FRAME || hl + 4 > len || !(2..=MAX_HEADER).contains(&hl) {
        return Probe::NotThis;
    }
    match (ser, data.get(8)) {
        (0, Some(b'{')) => Probe::Match,
        (0, None) | (1, None) => Probe::NeedMore,
        (1, Some(_)) => match data.get(8..10).and_then(|s| <[u8; 2]>::try_from(s).ok()).map(i16::from_be_bytes) {
            Some(c) if request_code_name(i32::from(c)).is_some() => Probe::Match,
            Some(_) => Probe::NotThis,
            None => Probe::NeedMore,
        },
        _ => Probe::NotThis,
    }
}

// ---------------------------------------------------------------------------------------------
// parser

/// The RocketMQ parser.
pub struct RocketMqParser {
    trace: Arc<TraceConfig>,
    partial_limit: usize,
    skip: [usize; 2],
}

impl RocketMqParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        RocketMqParser {
            trace: Arc::new(cfg.trace.clone()),
            partial_limit: (cfg.max_buffered_bytes / 2).max(64),
            skip: [0; 2],
        }
    }

    fn frame(&self, f: &[u8], total: usize) -> Result<L7Message, ParseErrorKind> {
        let m = ParseErrorKind::Malformed;
        let ht = f.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_be_bytes).ok_or(m)?;
        let hl = (ht & 0xff_ffff) as usize;
        let hdr = f.get(4..4 + hl).ok_or(ParseErrorKind::Truncated)?;
        let h = match ht >> 24 {
            0 => {
                let mut h = Header::default();
                Json { s: hdr, pos: 0 }.header(&mut h).ok_or(m)?;
                h
            }
            1 => binary_header(hdr).ok_or(m)?,
            _ => return Err(m),
        };
        let body = f.get(4 + hl..).unwrap_or_default();
        let is_resp = h.flag & FLAG_RESPONSE != 0;
        let kind = if is_resp {
            MessageKind::Response
        } else if h.flag & FLAG_ONEWAY != 0 {
            MessageKind::OneWay
        } else {
            MessageKind::Request
        };
        let mut msg = L7Message::new(L7Protocol::RocketMq, kind);
        msg.request_id = Some(h.opaque as u32);
        msg.version = h.version.map(version_name);
        msg.length = Some(total as u64);
        if is_resp {
            msg.response_code = Some(h.code);
            msg.response_status = Some(response_status(h.code));
            msg.response_exception = h.remark.clone();
            msg.trace.x_request_id = h.ext("msgId").map(str::to_string);
            return Ok(msg);
        }
        msg.request_type = Some(request_code_name(h.code).map_or_else(|| h.code.to_string(), str::to_string));
        let v2 = matches!(h.code, 310 | 320);
        let pick = |long: &str, short: &str| if v2 { h.ext(short) } else { h.ext(long) };
        let group = if matches!(h.code, 10 | 310 | 320) { pick("producerGroup", "a") } else { h.ext("consumerGroup") };
        msg.request_domain = group.map(str::to_string);
        let topic = pick("topic", "b");
        msg.request_resource = topic.map(str::to_string);
        if let (Some(t), Some(q)) = (topic, pick("queueId", "e")) {
            msg.endpoint = Some(format!("{t}-{q}"));
        }
        let props = pick("properties", "i");
        let mut ex = TraceExtractor::new(&self.trace);
        let mut uniq = None;
        let mut key = None;
        for src in
            [props.map(str::as_bytes), (!body.is_empty() && props.is_none()).then_some(body)].into_iter().flatten()
        {
            let s = String::from_utf8_lossy(src);
            for (k, v) in properties(&s) {
                match k {
                    "UNIQ_KEY" => uniq = Some(v.to_string()),
                    "KEYS" | "KEY" => key = Some(v.to_string()),
                    "traceparent" | "sw8" => {
                        ex.header(k, v, &mut msg);
                    }
                    _ => {}
                }
            }
        }
        msg.trace.x_request_id = uniq.or(key);
        if kind == MessageKind::OneWay {
            msg.response_status = Some(ResponseStatus::Ok);
        }
        Ok(msg)
    }
}

impl L7Parser for RocketMqParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::RocketMq
    }

    fn port_hint(&self, port: u16) -> bool {
        matches!(port, 9876 | 10911 | 10909)
    }

    fn probe(&self, data: &[u8], _dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_frame(data)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(RocketMqParser { trace: Arc::clone(&self.trace), partial_limit: self.partial_limit, skip: [0; 2] })
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
        let Some(len) = data.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_be_bytes) else {
            return ParseOutcome::NeedMore(4 - data.len());
        };
        let len = len as usize;
        if !(4..=MAX_FRAME).contains(&len) {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let Some(ht) = data.get(4..8).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_be_bytes) else {
            return ParseOutcome::NeedMore(8 - data.len());
        };
        let hl = (ht & 0xff_ffff) as usize;
        if hl + 4 > len || hl > MAX_HEADER {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let total = len + 4;
        // the header must be complete; the body only as far as the buffer allows
        let need = total.min((8 + hl).max(self.partial_limit));
        if data.len() < need {
            return ParseOutcome::NeedMore(need - data.len());
        }
        let avail = total.min(data.len());
        match self.frame(data.get(4..avail).unwrap_or_default(), total) {
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
        Box::new(RocketMqParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "rocketmq", 10911, emit, segs)
    }

    fn json_frame(header: &str, body: &[u8]) -> Vec<u8> {
        let mut v = ((4 + header.len() + body.len()) as u32).to_be_bytes().to_vec();
        v.extend((header.len() as u32).to_be_bytes());
        v.extend(header.as_bytes());
        v.extend(body);
        v
    }
    fn bin_frame(code: i16, opaque: i32, flag: i32, remark: &str, ext: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut h = code.to_be_bytes().to_vec();
        h.push(0);
        h.extend(401i16.to_be_bytes());
        h.extend(opaque.to_be_bytes());
        h.extend(flag.to_be_bytes());
        h.extend((remark.len() as i32).to_be_bytes());
        h.extend(remark.as_bytes());
        let mut e = Vec::new();
        for (k, v) in ext {
            e.extend((k.len() as i16).to_be_bytes());
            e.extend(k.as_bytes());
            e.extend((v.len() as i32).to_be_bytes());
            e.extend(v.as_bytes());
        }
        h.extend((e.len() as i32).to_be_bytes());
        h.extend(e);
        let mut v = ((4 + h.len() + body.len()) as u32).to_be_bytes().to_vec();
        v.extend((h.len() as u32 | (1 << 24)).to_be_bytes());
        v.extend(h);
        v.extend(body);
        v
    }

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn exchange() -> Vec<(Direction, Vec<u8>)> {
        let props = format!("UNIQ_KEY\u{1}7F000001ABCD\u{2}traceparent\u{1}{TP}\u{2}WAIT\u{1}true\u{2}");
        let send_v2 = format!(
            r#"{{"code":310,"extFields":{{"a":"pg","b":"TopicTest","e":"2","i":"{}"}},"flag":0,"language":"JAVA","opaque":5,"serializeTypeCurrentRPC":"JSON","version":401}}"#,
            props.replace('\u{1}', "\\u0001").replace('\u{2}', "\\u0002")
        );
        vec![
            (
                C2S,
                json_frame(
                    r#"{"code":105,"extFields":{"topic":"TopicTest"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":401}"#,
                    b"",
                ),
            ),
            (
                S2C,
                json_frame(
                    r#"{"code":17,"flag":1,"language":"JAVA","opaque":1,"remark":"No topic route info in name server for the topic: TopicTest","serializeTypeCurrentRPC":"JSON","version":401}"#,
                    b"",
                ),
            ),
            (C2S, json_frame(&send_v2, b"hello")),
            (
                S2C,
                json_frame(
                    r#"{"code":0,"extFields":{"msgId":"7F000001ABCD","queueId":"2","queueOffset":"9"},"flag":1,"language":"JAVA","opaque":5,"serializeTypeCurrentRPC":"JSON","version":401}"#,
                    b"",
                ),
            ),
            (
                C2S,
                bin_frame(
                    11,
                    6,
                    0,
                    "",
                    &[("consumerGroup", "cg"), ("topic", "TopicTest"), ("queueId", "1"), ("queueOffset", "0")],
                    b"",
                ),
            ),
            (S2C, bin_frame(19, 6, 1, "no new message", &[], b"")),
            (
                C2S,
                json_frame(
                    r#"{"code":34,"flag":2,"language":"JAVA","opaque":7,"version":401}"#,
                    b"{\"clientID\":\"x\"}",
                ),
            ),
        ]
    }

    #[test]
    fn sessions() {
        let rows = run(EmitMode::Sessions, &exchange());
        let names: Vec<_> = rows.iter().map(|r| r.request_type.clone().unwrap_or_default()).collect();
        assert_eq!(names, ["GET_ROUTEINFO_BY_TOPIC", "SEND_MESSAGE_V2", "PULL_MESSAGE", "HEART_BEAT"], "{rows:#?}");
        let r = &rows[0];
        assert_eq!(r.response_code, Some(17));
        assert_eq!(r.response_status, ResponseStatus::ClientError);
        assert_eq!(r.request_resource.as_deref(), Some("TopicTest"));
        assert!(r.response_exception.as_deref().is_some_and(|e| e.starts_with("No topic route")));
        assert_eq!(r.version.as_deref(), Some("V4_9_4"));
        let r = &rows[1];
        assert_eq!(r.request_domain.as_deref(), Some("pg"));
        assert_eq!(r.endpoint.as_deref(), Some("TopicTest-2"));
        assert_eq!(r.request_id, Some(5));
        assert_eq!(r.x_request_id_0.as_deref(), Some("7F000001ABCD"));
        assert_eq!(r.x_request_id_1.as_deref(), Some("7F000001ABCD"));
        assert_eq!(r.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(r.response_status, ResponseStatus::Ok);
        let r = &rows[2];
        assert_eq!(r.request_domain.as_deref(), Some("cg"));
        assert_eq!(r.response_code, Some(19));
        assert_eq!(r.response_status, ResponseStatus::Ok);
        assert_eq!(r.response_exception.as_deref(), Some("no new message"));
        assert_eq!(rows[3].log_type, LogType::Session);
        assert_eq!(rows[3].response_status, ResponseStatus::Ok);
    }

    #[test]
    fn tables() {
        assert_eq!(version_name(373), "V4_8_0");
        assert_eq!(version_name(401), "V4_9_4");
        assert_eq!(version_name(11), "V3_0_0_FINAL");
        assert_eq!(version_name(12), "V3_0_1_SNAPSHOT");
        assert_eq!(response_status(1), ResponseStatus::ServerError);
        assert_eq!(response_status(604), ResponseStatus::ClientError);
        assert_eq!(response_status(-1001), ResponseStatus::ServerError);
        assert_eq!(response_status(9999), ResponseStatus::ParseFailed);
    }

    #[test]
    fn probe() {
        let f = flow(1);
        let p = RocketMqParser::new(&L7Config::default());
        let ex = exchange();
        assert_eq!(p.probe(&ex[0].1, C2S, &f), Probe::Match);
        assert_eq!(p.probe(&ex[4].1, C2S, &f), Probe::Match);
        assert_eq!(p.probe(&ex[0].1[..6], C2S, &f), Probe::NeedMore);
        assert_eq!(p.probe(b"GET / HTTP/1.1\r\n", C2S, &f), Probe::NotThis);
    }

    #[test]
    fn splits() {
        check_splits(&make, "rocketmq", 10911, &exchange());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &exchange());
    }

    #[test]
    fn fuzz_50k() {
        fuzz(&make, "rocketmq", &exchange(), 50_000);
    }
}
