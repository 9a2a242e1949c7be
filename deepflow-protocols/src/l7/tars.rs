//! Tencent Tars RPC (`tars`).
//!
//! A packet is a 4-byte total length (including itself) and a Tars-encoded RequestPacket
//! (1 iVersion, 2 cPacketType, 3 iMessageType, 4 iRequestId, 5 sServantName, 6 sFuncName,
//! 7 sBuffer, 8 iTimeout, 9 context, 10 status) or ResponsePacket (1 iVersion, 2
//! cPacketType, 3 iRequestId, 4 iMessageType, 5 iRet, 6 sBuffer, 7 status, 8 sResultDesc,
//! 9 context). Each Tars field has a head byte (tag in the high nibble, 15 = tag in the next
//! byte; type in the low nibble: int8/16/32/64, float, double, string1/4, map, list, struct
//! begin/end, zero, simple list). The two are told apart by the type of field 5 (string in a
//! request, int in a response).
//!
//! Fields follow L7_FIELDS.md "Tars": iVersion → `version`, sFuncName → `request_type`,
//! sServantName → `request_resource`, `servant/func` → `endpoint`, iRequestId →
//! `request_id` (pairing key), iRet → `response_code` (values outside the Tars error table
//! become -99): 0 ok, -10/-11/-12 client_error, -1…-9 and -99 server_error, no iRet unknown.
//! Additionally sResultDesc → `response_exception` when the status is not ok. cPacketType 1
//! (TARSONEWAY) requests are one-way rows (ok). No trace context.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;

// ---------------------------------------------------------------------------------------------
// constants

const MAX_PACKET: usize = 64 * 1024 * 1024;
const MIN_PACKET: usize = 4 + 2;
const MAX_DEPTH: u8 = 16;
const ONEWAY: i64 = 1;

const T_INT8: u8 = 0;
const T_INT16: u8 = 1;
const T_INT32: u8 = 2;
const T_INT64: u8 = 3;
const T_FLOAT: u8 = 4;
const T_DOUBLE: u8 = 5;
const T_STRING1: u8 = 6;
const T_STRING4: u8 = 7;
const T_MAP: u8 = 8;
const T_LIST: u8 = 9;
const T_STRUCT_BEGIN: u8 = 10;
const T_STRUCT_END: u8 = 11;
const T_ZERO: u8 = 12;
const T_SIMPLE_LIST: u8 = 13;

/// `response_code` for an iRet: itself if in the Tars error table, else -99.
pub fn normalize_ret(ret: i64) -> i32 {
    match ret {
        0 | -12..=-1 | -99 => ret as i32,
        _ => -99,
    }
}

/// Status of a (normalized) iRet (L7_FIELDS.md "Tars").
pub fn ret_status(ret: i32) -> ResponseStatus {
    match ret {
        0 => ResponseStatus::Ok,
        -12..=-10 => ResponseStatus::ClientError,
        _ => ResponseStatus::ServerError,
    }
}

// ---------------------------------------------------------------------------------------------
// Tars decoding

struct Rd<'a> {
    b: &'a [u8],
    pos: usize,
}

enum Val<'a> {
    Int(i64),
    Str(&'a [u8]),
    Other,
}

impl<'a> Rd<'a> {
    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn be(&mut self, n: usize) -> Option<u64> {
        Some(self.take(n)?.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
    }
    fn head(&mut self) -> Option<(u8, u8)> {
        let h = self.u8()?;
        let tag = if h >> 4 == 15 { self.u8()? } else { h >> 4 };
        Some((tag, h & 0x0f))
    }
    fn int(&mut self, ty: u8) -> Option<i64> {
        Some(match ty {
            T_INT8 => i64::from(self.u8()? as i8),
            T_INT16 => i64::from(self.be(2)? as u16 as i16),
            T_INT32 => i64::from(self.be(4)? as u32 as i32),
            T_INT64 => self.be(8)? as i64,
            T_ZERO => 0,
            _ => return None,
        })
    }
    /// A length: an int field (any tag).
    fn count(&mut self) -> Option<usize> {
        let (_, ty) = self.head()?;
        usize::try_from(self.int(ty)?).ok()
    }
    fn value(&mut self, ty: u8, depth: u8) -> Option<Val<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        Some(match ty {
            T_INT8 | T_INT16 | T_INT32 | T_INT64 | T_ZERO => Val::Int(self.int(ty)?),
            T_FLOAT => {
                self.take(4)?;
                Val::Other
            }
            T_DOUBLE => {
                self.take(8)?;
                Val::Other
            }
            T_STRING1 => {
                let n = usize::from(self.u8()?);
                Val::Str(self.take(n)?)
            }
            T_STRING4 => {
                let n = self.be(4)? as usize;
                Val::Str(self.take(n)?)
            }
            T_MAP => {
                let n = self.count()?;
                for _ in 0..n.saturating_mul(2) {
                    let (_, t) = self.head()?;
                    self.value(t, depth + 1)?;
                }
                Val::Other
            }
            T_LIST => {
                let n = self.count()?;
                for _ in 0..n {
                    let (_, t) = self.head()?;
                    self.value(t, depth + 1)?;
                }
                Val::Other
            }
            T_STRUCT_BEGIN => {
                loop {
                    let (_, t) = self.head()?;
                    if t == T_STRUCT_END {
                        break;
                    }
                    self.value(t, depth + 1)?;
                }
                Val::Other
            }
            T_STRUCT_END => Val::Other,
            T_SIMPLE_LIST => {
                let (_, elem) = self.head()?;
                if elem != T_INT8 {
                    return None;
                }
                let n = self.count()?;
                self.take(n)?;
                Val::Other
            }
            _ => return None,
        })
    }
}

/// The top-level fields of a packet that matter: (tag, int) and (tag, string).
#[derive(Debug, Default)]
struct Packet {
    ints: Vec<(u8, i64)>,
    strs: Vec<(u8, String)>,
    /// Field 5 is a string (RequestPacket).
    request: Option<bool>,
    /// The first field was read.
    started: bool,
}

impl Packet {
    fn int(&self, tag: u8) -> Option<i64> {
        self.ints.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v)
    }
    fn str(&self, tag: u8) -> Option<String> {
        self.strs.iter().find(|(t, _)| *t == tag).map(|(_, v)| v.clone())
    }
}

/// Decodes what it can of `b` (a prefix may end anywhere); `None` if the first field is bad.
fn packet(b: &[u8]) -> Option<Packet> {
    let mut p = Packet::default();
    let mut r = Rd { b, pos: 0 };
    while r.pos < b.len() {
        let Some((tag, ty)) = r.head() else { break };
        let Some(v) = r.value(ty, 0) else { break };
        if !p.started && (tag != 1 || !matches!(v, Val::Int(_))) {
            return None;
        }
        p.started = true;
        match v {
            Val::Int(i) => {
                if tag == 5 {
                    p.request.get_or_insert(false);
                }
                p.ints.push((tag, i));
            }
            Val::Str(s) => {
                if tag == 5 {
                    p.request.get_or_insert(true);
                }
                p.strs.push((tag, String::from_utf8_lossy(s).into_owned()));
            }
            Val::Other => {}
        }
    }
    p.started.then_some(p)
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start with a Tars packet (length, then iVersion 1..=3 in field 1)?
pub fn probe_packet(data: &[u8]) -> Probe {
    let Some(len) = data.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_be_bytes) else {
        return Probe::NeedMore;
    };
    let len = len as usize;
    if !(MIN_PACKET..=MAX_PACKET).contains(&len) {
        return Probe::NotThis;
    }
    let (Some(&h), Some(&v)) = (data.get(4), data.get(5)) else { return Probe::NeedMore };
    let version_ok = match h {
        0x10 => (1..=3).contains(&v),
        0x11 => v == 0 && data.get(6).is_some_and(|x| (1..=3).contains(x)),
        _ => false,
    };
    if !version_ok {
        return Probe::NotThis;
    }
    let next = if h == 0x10 { 6 } else { 7 };
    match data.get(next) {
        None => Probe::NeedMore,
        // field 2 cPacketType (int8 or zero)
        Some(0x20 | 0x2c) => Probe::Match,
        Some(_) => Probe::NotThis,
    }
}

// ---------------------------------------------------------------------------------------------
// parser

/// The Tars parser.
pub struct TarsParser {
    partial_limit: usize,
    skip: [usize; 2],
}

impl TarsParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        TarsParser { partial_limit: (cfg.max_buffered_bytes / 2).max(64), skip: [0; 2] }
    }

    fn message(p: Packet, dir: Direction, total: usize) -> L7Message {
        let is_req = p.request.unwrap_or(dir == Direction::ClientToServer);
        let kind = match (is_req, p.int(2)) {
            (false, _) => MessageKind::Response,
            (true, Some(ONEWAY)) => MessageKind::OneWay,
            (true, _) => MessageKind::Request,
        };
        let mut msg = L7Message::new(L7Protocol::Tars, kind);
        msg.version = p.int(1).map(|v| v.to_string());
        msg.length = Some(total as u64);
        if is_req {
            msg.request_id = p.int(4).map(|v| v as u32);
            msg.request_resource = p.str(5);
            msg.request_type = p.str(6);
            if let (Some(s), Some(f)) = (&msg.request_resource, &msg.request_type) {
                msg.endpoint = Some(format!("{s}/{f}"));
            }
            if kind == MessageKind::OneWay {
                msg.response_status = Some(ResponseStatus::Ok);
            }
        } else {
            msg.request_id = p.int(3).map(|v| v as u32);
            match p.int(5) {
                Some(ret) => {
                    let code = normalize_ret(ret);
                    msg.response_code = Some(code);
                    msg.response_status = Some(ret_status(code));
                    if code != 0 {
                        msg.response_exception = p.str(8).filter(|s| !s.is_empty());
                    }
                }
                None => msg.response_status = Some(ResponseStatus::Unknown),
            }
        }
        msg
    }
}

impl L7Parser for TarsParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Tars
    }

    fn probe(&self, data: &[u8], _dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_packet(data)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(TarsParser { partial_limit: self.partial_limit, skip: [0; 2] })
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
        let total = len as usize;
        if !(MIN_PACKET..=MAX_PACKET).contains(&total) {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let take = total.min(4 + self.partial_limit);
        if data.len() < take {
            return ParseOutcome::NeedMore(take - data.len());
        }
        let Some(p) = data.get(4..take).and_then(packet) else {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        };
        if let Some(s) = self.skip.get_mut(d) {
            *s = total - take;
        }
        ParseOutcome::message(Self::message(p, ctx.dir, total), take)
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(s) = self.skip.get_mut(dir.index()) {
            *s = 0;
        }
    }
}

/// Test helpers: Tars packets.
#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(crate) mod build {
    fn head(v: &mut Vec<u8>, tag: u8, ty: u8) {
        if tag < 15 {
            v.push(tag << 4 | ty);
        } else {
            v.push(0xf0 | ty);
            v.push(tag);
        }
    }
    /// An int field in its smallest form.
    pub fn int(v: &mut Vec<u8>, tag: u8, x: i64) {
        if x == 0 {
            head(v, tag, 12);
        } else if (-128..128).contains(&x) {
            head(v, tag, 0);
            v.push(x as i8 as u8);
        } else if (-32768..32768).contains(&x) {
            head(v, tag, 1);
            v.extend((x as i16).to_be_bytes());
        } else {
            head(v, tag, 2);
            v.extend((x as i32).to_be_bytes());
        }
    }
    /// A string field.
    pub fn string(v: &mut Vec<u8>, tag: u8, s: &str) {
        if s.len() < 256 {
            head(v, tag, 6);
            v.push(s.len() as u8);
        } else {
            head(v, tag, 7);
            v.extend((s.len() as u32).to_be_bytes());
        }
        v.extend(s.as_bytes());
    }
    /// A vector<byte> field (simple list).
    pub fn bytes(v: &mut Vec<u8>, tag: u8, b: &[u8]) {
        head(v, tag, 13);
        v.push(0);
        int(v, 0, b.len() as i64);
        v.extend(b);
    }
    /// A map<string,string> field.
    pub fn map(v: &mut Vec<u8>, tag: u8, kv: &[(&str, &str)]) {
        head(v, tag, 8);
        int(v, 0, kv.len() as i64);
        for (k, val) in kv {
            string(v, 0, k);
            string(v, 1, val);
        }
    }
    fn frame(body: Vec<u8>) -> Vec<u8> {
        let mut v = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        v.extend(body);
        v
    }
    /// A RequestPacket.
    pub fn request(version: i64, ptype: i64, id: i64, servant: &str, func: &str, buf: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        int(&mut v, 1, version);
        int(&mut v, 2, ptype);
        int(&mut v, 3, 0);
        int(&mut v, 4, id);
        string(&mut v, 5, servant);
        string(&mut v, 6, func);
        bytes(&mut v, 7, buf);
        int(&mut v, 8, 3000);
        map(&mut v, 9, &[("k", "v")]);
        map(&mut v, 10, &[]);
        frame(v)
    }
    /// A ResponsePacket.
    pub fn response(version: i64, id: i64, ret: i64, buf: &[u8], desc: &str) -> Vec<u8> {
        let mut v = Vec::new();
        int(&mut v, 1, version);
        int(&mut v, 2, 0);
        int(&mut v, 3, id);
        int(&mut v, 4, 0);
        int(&mut v, 5, ret);
        bytes(&mut v, 6, buf);
        map(&mut v, 7, &[]);
        string(&mut v, 8, desc);
        frame(v)
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
        Box::new(TarsParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "tars", 10015, emit, segs)
    }

    fn exchange() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C2S, request(1, 0, 1, "TestApp.HelloServer.HelloObj", "sayHello", b"\x06\x05world")),
            (S2C, response(1, 1, 0, b"\x06\x0bhello world", "")),
            (C2S, request(3, 0, 2, "TestApp.HelloServer.HelloObj", "missing", b"")),
            (S2C, response(3, 2, -3, b"", "no such function")),
            (C2S, request(1, 1, 3, "TestApp.HelloServer.HelloObj", "fire", b"")),
            (C2S, request(1, 0, 300, "TestApp.HelloServer.HelloObj", "odd", b"")),
            (S2C, response(1, 300, 12, b"", "app error")),
            (C2S, request(1, 0, 301, "TestApp.HelloServer.HelloObj", "bad", b"")),
            (S2C, response(1, 301, -12, b"", "decode")),
        ]
    }

    #[test]
    fn sessions() {
        let rows = run(EmitMode::Sessions, &exchange());
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.request_type.clone().unwrap_or_default(), r.request_id, r.response_code, r.response_status))
            .collect();
        assert_eq!(
            got,
            vec![
                ("sayHello".into(), Some(1), Some(0), ResponseStatus::Ok),
                ("missing".into(), Some(2), Some(-3), ResponseStatus::ServerError),
                ("fire".into(), Some(3), None, ResponseStatus::Ok),
                ("odd".into(), Some(300), Some(-99), ResponseStatus::ServerError),
                ("bad".into(), Some(301), Some(-12), ResponseStatus::ClientError),
            ],
            "{rows:#?}"
        );
        let r = &rows[0];
        assert_eq!(r.version.as_deref(), Some("1"));
        assert_eq!(r.request_resource.as_deref(), Some("TestApp.HelloServer.HelloObj"));
        assert_eq!(r.endpoint.as_deref(), Some("TestApp.HelloServer.HelloObj/sayHello"));
        assert_eq!(rows[1].version.as_deref(), Some("3"));
        assert_eq!(rows[1].response_exception.as_deref(), Some("no such function"));
        assert_eq!(rows[2].log_type, LogType::Session);
    }

    #[test]
    fn tables() {
        assert_eq!(normalize_ret(-7), -7);
        assert_eq!(normalize_ret(-13), -99);
        assert_eq!(normalize_ret(5), -99);
        assert_eq!(ret_status(-10), ResponseStatus::ClientError);
        assert_eq!(ret_status(-99), ResponseStatus::ServerError);
    }

    #[test]
    fn probe() {
        let f = flow(1);
        let p = TarsParser::new(&L7Config::default());
        let ex = exchange();
        assert_eq!(p.probe(&ex[0].1, C2S, &f), Probe::Match);
        assert_eq!(p.probe(&ex[1].1, S2C, &f), Probe::Match);
        assert_eq!(p.probe(&ex[0].1[..5], C2S, &f), Probe::NeedMore);
        assert_eq!(p.probe(b"GET / HTTP/1.1\r\n\r\n", C2S, &f), Probe::NotThis);
    }

    #[test]
    fn splits() {
        check_splits(&make, "tars", 10015, &exchange());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &exchange());
    }

    #[test]
    fn fuzz_50k() {
        fuzz(&make, "tars", &exchange(), 50_000);
    }
}
