//! Apache Thrift RPC (`thrift`): binary protocol (strict and old non-strict) and compact
//! protocol, each framed (4-byte length) or unframed (buffered transport), plus THeader
//! (`0x0fff` magic, no transforms) with its key-value info headers.
//!
//! L7_FIELDS.md has no Thrift section; the mapping is: message name → `request_type` and
//! `endpoint` (with TMultiplexedProtocol's `Service:method`, `request_type` is the method and
//! `request_resource` the service; `endpoint` keeps the full name), seqid → `request_id`
//! (pairing key), message type CALL → request, ONEWAY → one-way row (ok), REPLY → response
//! (ok, or `server_error` when the result struct holds a declared exception: its first string
//! field → `response_exception`), EXCEPTION → response with the TApplicationException message
//! → `response_exception`, its type → `response_code`, `server_error`. Attribute
//! `thrift_protocol` = `binary`/`compact` + `-framed`/`-unframed`/`-theader`. Trace context:
//! THeader info headers with the configured names.
//!
//! An unframed message is only complete when its whole argument/result struct has been
//! walked, so unframed messages are buffered until they end (capped by the engine's buffer);
//! framed messages are decoded from a prefix and the rest of the frame is skipped.
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

const MAX_FRAME: usize = 256 * 1024 * 1024;
const MAX_NAME: usize = 256;
const MAX_DEPTH: u8 = 32;
const STRICT_MASK: u32 = 0xffff_0000;
const VERSION_1: u32 = 0x8001_0000;
const COMPACT_ID: u8 = 0x82;
const COMPACT_VERSION: u8 = 1;
const THEADER_MAGIC: [u8; 2] = [0x0f, 0xff];

const CALL: u8 = 1;
const REPLY: u8 = 2;
const EXCEPTION: u8 = 3;
const ONEWAY: u8 = 4;

/// TApplicationException type name.
pub fn app_exception_name(t: i32) -> &'static str {
    match t {
        0 => "UNKNOWN",
        1 => "UNKNOWN_METHOD",
        2 => "INVALID_MESSAGE_TYPE",
        3 => "WRONG_METHOD_NAME",
        4 => "BAD_SEQUENCE_ID",
        5 => "MISSING_RESULT",
        6 => "INTERNAL_ERROR",
        7 => "PROTOCOL_ERROR",
        8 => "INVALID_TRANSFORM",
        9 => "INVALID_PROTOCOL",
        10 => "UNSUPPORTED_CLIENT_TYPE",
        _ => "UNKNOWN",
    }
}

// ---------------------------------------------------------------------------------------------
// value reader (binary and compact)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Binary,
    Compact,
}

/// Thrift types, with binary protocol ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Bool,
    /// A compact-protocol field bool: the value is in the field header.
    BoolInHeader,
    Byte,
    Double,
    I16,
    I32,
    I64,
    Str,
    Struct,
    Map,
    Set,
    List,
    Uuid,
}

fn binary_ty(t: u8) -> Option<Ty> {
    Some(match t {
        2 => Ty::Bool,
        3 => Ty::Byte,
        4 => Ty::Double,
        6 => Ty::I16,
        8 => Ty::I32,
        10 => Ty::I64,
        11 => Ty::Str,
        12 => Ty::Struct,
        13 => Ty::Map,
        14 => Ty::Set,
        15 => Ty::List,
        16 => Ty::Uuid,
        _ => return None,
    })
}

fn compact_ty(t: u8) -> Option<Ty> {
    Some(match t {
        1 | 2 => Ty::Bool,
        3 => Ty::Byte,
        4 => Ty::I16,
        5 => Ty::I32,
        6 => Ty::I64,
        7 => Ty::Double,
        8 => Ty::Str,
        9 => Ty::List,
        10 => Ty::Set,
        11 => Ty::Map,
        12 => Ty::Struct,
        13 => Ty::Uuid,
        _ => return None,
    })
}

struct Rd<'a> {
    b: &'a [u8],
    pos: usize,
    codec: Codec,
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
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn zigzag(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }
    fn i32(&mut self) -> Option<i32> {
        match self.codec {
            Codec::Binary => Some(self.be(4)? as u32 as i32),
            Codec::Compact => i32::try_from(self.zigzag()?).ok(),
        }
    }
    fn len(&mut self) -> Option<usize> {
        match self.codec {
            Codec::Binary => usize::try_from(self.be(4)? as u32 as i32).ok(),
            Codec::Compact => usize::try_from(self.varint()?).ok(),
        }
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    /// A field header: `Some(None)` at STOP.
    fn field(&mut self, last_id: &mut i16) -> Option<Option<(i16, Ty)>> {
        let b = self.u8()?;
        if b == 0 {
            return Some(None);
        }
        match self.codec {
            Codec::Binary => {
                let ty = binary_ty(b)?;
                let id = self.be(2)? as u16 as i16;
                Some(Some((id, ty)))
            }
            Codec::Compact => {
                let ty = match b & 0x0f {
                    1 | 2 => Ty::BoolInHeader,
                    t => compact_ty(t)?,
                };
                let delta = b >> 4;
                let id = if delta == 0 {
                    i16::try_from(self.zigzag()?).ok()?
                } else {
                    last_id.wrapping_add(i16::from(delta))
                };
                *last_id = id;
                Some(Some((id, ty)))
            }
        }
    }

    /// Element type and count of a list/set.
    fn list_header(&mut self) -> Option<(Ty, usize)> {
        match self.codec {
            Codec::Binary => {
                let t = binary_ty(self.u8()?)?;
                Some((t, self.len()?))
            }
            Codec::Compact => {
                let b = self.u8()?;
                let t = compact_ty(b & 0x0f)?;
                let n = if b >> 4 == 15 { self.len()? } else { usize::from(b >> 4) };
                Some((t, n))
            }
        }
    }

    fn skip(&mut self, ty: Ty, depth: u8) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match (ty, self.codec) {
            (Ty::BoolInHeader, _) => {}
            (Ty::Bool | Ty::Byte, _) => {
                self.take(1)?;
            }
            (Ty::Double, _) | (Ty::I64, Codec::Binary) => {
                self.take(8)?;
            }
            (Ty::I16, Codec::Binary) => {
                self.take(2)?;
            }
            (Ty::I32, Codec::Binary) => {
                self.take(4)?;
            }
            (Ty::I16 | Ty::I32 | Ty::I64, Codec::Compact) => {
                self.varint()?;
            }
            (Ty::Uuid, _) => {
                self.take(16)?;
            }
            (Ty::Str, _) => {
                self.bytes()?;
            }
            (Ty::Struct, _) => {
                let mut last = 0;
                while let Some((_, t)) = self.field(&mut last)? {
                    self.skip(t, depth + 1)?;
                }
            }
            (Ty::List | Ty::Set, _) => {
                let (t, n) = self.list_header()?;
                for _ in 0..n {
                    self.skip(t, depth + 1)?;
                }
            }
            (Ty::Map, Codec::Binary) => {
                let k = binary_ty(self.u8()?)?;
                let v = binary_ty(self.u8()?)?;
                let n = self.len()?;
                for _ in 0..n {
                    self.skip(k, depth + 1)?;
                    self.skip(v, depth + 1)?;
                }
            }
            (Ty::Map, Codec::Compact) => {
                let n = self.len()?;
                if n > 0 {
                    let kv = self.u8()?;
                    let k = compact_ty(kv >> 4)?;
                    let v = compact_ty(kv & 0x0f)?;
                    for _ in 0..n {
                        self.skip(k, depth + 1)?;
                        self.skip(v, depth + 1)?;
                    }
                }
            }
        }
        Some(())
    }
}

// ---------------------------------------------------------------------------------------------
// message header

#[derive(Debug)]
struct MsgHeader {
    name: String,
    ty: u8,
    seqid: i32,
    codec: Codec,
}

fn identifier(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-' | b'$'))
}

/// Reads a message header at the start of `b`; returns it and its length.
/// `Err(true)`: incomplete, `Err(false)`: not a message header.
fn msg_header(b: &[u8]) -> Result<(MsgHeader, usize), bool> {
    const MORE: bool = true;
    let mut r = Rd { b, pos: 0, codec: Codec::Binary };
    let first = *b.first().ok_or(MORE)?;
    if first == COMPACT_ID {
        r.codec = Codec::Compact;
        r.u8().ok_or(MORE)?;
        let tv = r.u8().ok_or(MORE)?;
        let ty = tv >> 5;
        if tv & 0x1f != COMPACT_VERSION || !(CALL..=ONEWAY).contains(&ty) {
            return Err(false);
        }
        let seqid = r.varint().ok_or(MORE)? as u32 as i32;
        let n = r.len().ok_or(MORE)?;
        if n > MAX_NAME {
            return Err(false);
        }
        let name = String::from_utf8_lossy(r.take(n).ok_or(MORE)?).into_owned();
        return Ok((MsgHeader { name, ty, seqid, codec: Codec::Compact }, r.pos));
    }
    let v = r.be(4).ok_or(MORE)? as u32;
    if v & STRICT_MASK == VERSION_1 {
        let ty = (v & 0xff) as u8;
        if !(CALL..=ONEWAY).contains(&ty) || v & 0xff00 != 0 {
            return Err(false);
        }
        let n = r.len().ok_or(MORE)?;
        if n > MAX_NAME {
            return Err(false);
        }
        let name = String::from_utf8_lossy(r.take(n).ok_or(MORE)?).into_owned();
        let seqid = r.i32().ok_or(MORE)?;
        return Ok((MsgHeader { name, ty, seqid, codec: Codec::Binary }, r.pos));
    }
    // old non-strict binary: name length, name, type byte, seqid
    let n = usize::try_from(v).map_err(|_| false)?;
    if n == 0 || n > MAX_NAME {
        return Err(false);
    }
    let name = r.take(n).ok_or(MORE)?;
    if !identifier(name) {
        return Err(false);
    }
    let ty = r.u8().ok_or(MORE)?;
    if !(CALL..=ONEWAY).contains(&ty) {
        return Err(false);
    }
    let seqid = r.i32().ok_or(MORE)?;
    let name = String::from_utf8_lossy(name).into_owned();
    Ok((MsgHeader { name, ty, seqid, codec: Codec::Binary }, r.pos))
}

/// What the first bytes of a message look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Unframed,
    Framed(usize),
    THeader(usize),
}

/// Classifies the bytes at a message start; `Err(true)` = need more bytes, `Err(false)` = not
/// Thrift.
fn shape(b: &[u8]) -> Result<Shape, bool> {
    let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else { return Err(true) };
    if b0 == 0x80 && b1 == 0x01 {
        return Ok(Shape::Unframed);
    }
    if b0 == COMPACT_ID {
        return if b1 & 0x1f == COMPACT_VERSION && (CALL..=ONEWAY).contains(&(b1 >> 5)) {
            Ok(Shape::Unframed)
        } else {
            Err(false)
        };
    }
    let Some(l) = b.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_be_bytes) else {
        return Err(true);
    };
    let l = l as usize;
    // old non-strict unframed: the 4 bytes are a name length and a name follows
    let unframed_name = (1..=MAX_NAME).contains(&l) && b.get(4..4 + l).is_some_and(identifier);
    let (Some(&f0), Some(&f1)) = (b.get(4), b.get(5)) else {
        return if unframed_name { Ok(Shape::Unframed) } else { Err(true) };
    };
    if !(8..=MAX_FRAME).contains(&l) {
        return if unframed_name { Ok(Shape::Unframed) } else { Err(false) };
    }
    if [f0, f1] == THEADER_MAGIC {
        return Ok(Shape::THeader(l));
    }
    let framed_msg = (f0 == 0x80 && f1 == 0x01) || (f0 == COMPACT_ID && f1 & 0x1f == COMPACT_VERSION) || {
        // framed non-strict: another length then a name
        let n = b.get(4..8).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_be_bytes).unwrap_or(0) as usize;
        (1..=MAX_NAME).contains(&n) && n + 4 <= l && b.get(8..8 + n).is_some_and(identifier)
    };
    if unframed_name && !framed_msg {
        return Ok(Shape::Unframed);
    }
    if framed_msg {
        return Ok(Shape::Framed(l));
    }
    if b.len() < 8 + 8 { Err(true) } else { Err(false) }
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start with a Thrift message (any protocol/transport)?
pub fn probe_message(data: &[u8]) -> Probe {
    let (off, limit) = match shape(data) {
        Err(true) => return Probe::NeedMore,
        Err(false) => return Probe::NotThis,
        Ok(Shape::Unframed) => (0, data.len()),
        Ok(Shape::Framed(l)) => (4, 4 + l),
        Ok(Shape::THeader(_)) => return if data.len() >= 14 { Probe::Match } else { Probe::NeedMore },
    };
    let body = data.get(off..limit.min(data.len())).unwrap_or_default();
    match msg_header(body) {
        Ok(_) => Probe::Match,
        Err(true) => Probe::NeedMore,
        Err(false) => Probe::NotThis,
    }
}

// ---------------------------------------------------------------------------------------------
// parser

/// The Thrift parser.
pub struct ThriftParser {
    trace: Arc<TraceConfig>,
    partial_limit: usize,
    skip: [usize; 2],
}

impl ThriftParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        ThriftParser {
            trace: Arc::new(cfg.trace.clone()),
            partial_limit: (cfg.max_buffered_bytes / 2).max(64),
            skip: [0; 2],
        }
    }

    /// Decodes a message from `b`; with `whole`, the struct must end inside `b` and the
    /// message length is returned.
    fn message(&self, b: &[u8], whole: bool, transport: &str, msg: &mut L7Message) -> Result<usize, bool> {
        let (h, hl) = msg_header(b).map_err(|more| more && whole)?;
        let mut r = Rd { b, pos: hl, codec: h.codec };
        let codec = match h.codec {
            Codec::Binary => "binary",
            Codec::Compact => "compact",
        };
        msg.attr("thrift_protocol", format!("{codec}-{transport}"));
        msg.kind = Some(match h.ty {
            CALL => MessageKind::Request,
            ONEWAY => MessageKind::OneWay,
            _ => MessageKind::Response,
        });
        msg.request_id = Some(h.seqid as u32);
        match h.name.split_once(':') {
            Some((svc, method)) if !svc.is_empty() && !method.is_empty() => {
                msg.request_type = Some(method.to_string());
                msg.request_resource = Some(svc.to_string());
            }
            _ => msg.request_type = Some(h.name.clone()),
        }
        msg.endpoint = Some(h.name);
        match h.ty {
            ONEWAY => msg.response_status = Some(ResponseStatus::Ok),
            REPLY => {
                msg.response_status = Some(ResponseStatus::Ok);
                // result struct: field 0 = success, others = declared exceptions
                let mut last = 0;
                if let Some(Some((id, ty))) = r.field(&mut last) {
                    if id != 0 {
                        msg.response_status = Some(ResponseStatus::ServerError);
                        let mut text = None;
                        if ty == Ty::Struct {
                            text = first_string(&mut r);
                        } else {
                            let _ = r.skip(ty, 1);
                        }
                        msg.response_exception = Some(text.unwrap_or_else(|| format!("exception field {id}")));
                    } else {
                        let _ = r.skip(ty, 1);
                    }
                }
                r = Rd { b, pos: hl, codec: r.codec };
            }
            EXCEPTION => {
                msg.response_status = Some(ResponseStatus::ServerError);
                let mut last = 0;
                let mut p = Rd { b, pos: hl, codec: r.codec };
                while let Some(Some((id, ty))) = p.field(&mut last) {
                    match (id, ty) {
                        (1, Ty::Str) => match p.bytes() {
                            Some(s) => msg.response_exception = Some(String::from_utf8_lossy(s).into_owned()),
                            None => break,
                        },
                        (2, Ty::I32) => match p.i32() {
                            Some(t) => {
                                msg.response_code = Some(t);
                                if msg.response_exception.is_none() {
                                    msg.response_exception = Some(app_exception_name(t).to_string());
                                }
                            }
                            None => break,
                        },
                        _ => {
                            if p.skip(ty, 1).is_none() {
                                break;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        if whole {
            r.skip(Ty::Struct, 0).ok_or(true)?;
        }
        Ok(r.pos)
    }

    /// THeader frame body (after the length): info headers, then the payload message.
    fn theader(&self, b: &[u8], msg: &mut L7Message) -> Option<()> {
        let mut r = Rd { b, pos: 0, codec: Codec::Compact };
        r.take(2 + 2 + 4)?; // magic, flags, sequence
        let words = r.be(2)? as usize;
        let hdr = r.take(words * 4)?;
        let payload = b.get(r.pos..)?;
        let mut h = Rd { b: hdr, pos: 0, codec: Codec::Compact };
        let proto = h.varint()?;
        let transforms = h.varint()?;
        if transforms != 0 || !matches!(proto, 0 | 2) {
            return None;
        }
        let mut ex = TraceExtractor::new(&self.trace);
        let mut kv = Vec::new();
        while let Some(info) = h.varint() {
            if info != 1 {
                break; // padding (0) or unknown info type
            }
            let n = h.varint()?;
            for _ in 0..n.min(1024) {
                let k = String::from_utf8_lossy(h.bytes()?).into_owned();
                let v = String::from_utf8_lossy(h.bytes()?).into_owned();
                kv.push((k, v));
            }
        }
        self.message(payload, false, "theader", msg).ok()?;
        for (k, v) in &kv {
            ex.header(k, v, msg);
        }
        Some(())
    }
}

/// The first string field of a struct (exception message).
fn first_string(r: &mut Rd<'_>) -> Option<String> {
    let mut last = 0;
    while let Some((_, ty)) = r.field(&mut last)? {
        if ty == Ty::Str {
            return Some(String::from_utf8_lossy(r.bytes()?).into_owned());
        }
        r.skip(ty, 2)?;
    }
    None
}

impl L7Parser for ThriftParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Thrift
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 9090
    }

    fn probe(&self, data: &[u8], _dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_message(data)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(ThriftParser { trace: Arc::clone(&self.trace), partial_limit: self.partial_limit, skip: [0; 2] })
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
        let mut msg = L7Message::new(L7Protocol::Thrift, MessageKind::Request);
        match shape(data) {
            Err(true) => ParseOutcome::NeedMore(0),
            Err(false) => ParseOutcome::Error(ParseErrorKind::Malformed),
            Ok(Shape::Unframed) => match self.message(data, true, "unframed", &mut msg) {
                Ok(n) => {
                    msg.length = Some(n as u64);
                    ParseOutcome::message(msg, n)
                }
                Err(true) => ParseOutcome::NeedMore(0),
                Err(false) => ParseOutcome::Error(ParseErrorKind::Malformed),
            },
            Ok(Shape::Framed(l) | Shape::THeader(l)) => {
                let total = 4 + l;
                let take = total.min(4 + self.partial_limit);
                if data.len() < take {
                    return ParseOutcome::NeedMore(take - data.len());
                }
                let body = data.get(4..take).unwrap_or_default();
                let ok = if body.starts_with(&THEADER_MAGIC) {
                    self.theader(body, &mut msg).is_some()
                } else {
                    self.message(body, false, "framed", &mut msg).is_ok()
                };
                if let Some(s) = self.skip.get_mut(d) {
                    *s = total - take;
                }
                msg.length = Some(l as u64);
                // a THeader frame with transforms (compression) is skipped without a row
                if ok { ParseOutcome::message(msg, take) } else { ParseOutcome::Skip(take) }
            }
        }
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(s) = self.skip.get_mut(dir.index()) {
            *s = 0;
        }
    }
}

/// Test helpers: Thrift messages built from the wire format.
#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(crate) mod build {
    /// Strict binary message with a struct body.
    pub fn binary(ty: u8, name: &str, seqid: i32, body: &[u8]) -> Vec<u8> {
        let mut v = (0x8001_0000u32 | u32::from(ty)).to_be_bytes().to_vec();
        v.extend((name.len() as u32).to_be_bytes());
        v.extend(name.as_bytes());
        v.extend(seqid.to_be_bytes());
        v.extend(body);
        v
    }
    /// Old non-strict binary message.
    pub fn old_binary(ty: u8, name: &str, seqid: i32, body: &[u8]) -> Vec<u8> {
        let mut v = (name.len() as u32).to_be_bytes().to_vec();
        v.extend(name.as_bytes());
        v.push(ty);
        v.extend(seqid.to_be_bytes());
        v.extend(body);
        v
    }
    /// Compact message.
    pub fn compact(ty: u8, name: &str, seqid: i32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0x82, (ty << 5) | 1];
        varint(&mut v, seqid as u32 as u64);
        varint(&mut v, name.len() as u64);
        v.extend(name.as_bytes());
        v.extend(body);
        v
    }
    /// Varint.
    pub fn varint(v: &mut Vec<u8>, mut x: u64) {
        while x >= 0x80 {
            v.push((x as u8) | 0x80);
            x >>= 7;
        }
        v.push(x as u8);
    }
    /// 4-byte frame.
    pub fn framed(m: &[u8]) -> Vec<u8> {
        let mut v = (m.len() as u32).to_be_bytes().to_vec();
        v.extend(m);
        v
    }
    /// Binary struct { 1: string s, 2: i32 i, 3: list<i64> l, 4: map<string,bool> m } STOP.
    pub fn binary_args(s: &str, i: i32) -> Vec<u8> {
        let mut v = vec![11, 0, 1];
        v.extend((s.len() as u32).to_be_bytes());
        v.extend(s.as_bytes());
        v.extend([8, 0, 2]);
        v.extend(i.to_be_bytes());
        v.extend([15, 0, 3, 10, 0, 0, 0, 2]);
        v.extend([0; 16]);
        v.extend([13, 0, 4, 11, 2, 0, 0, 0, 1, 0, 0, 0, 1, b'k', 1]);
        v.push(0);
        v
    }
    /// TApplicationException { 1: message, 2: type } (binary).
    pub fn binary_app_exception(text: &str, t: i32) -> Vec<u8> {
        let mut v = vec![11, 0, 1];
        v.extend((text.len() as u32).to_be_bytes());
        v.extend(text.as_bytes());
        v.extend([8, 0, 2]);
        v.extend(t.to_be_bytes());
        v.push(0);
        v
    }
    /// Compact struct { 1: string s, 2: i32 i, 3: bool b, 5: list<i32> } STOP.
    pub fn compact_args(s: &str, i: i32) -> Vec<u8> {
        let mut v = vec![0x18];
        varint(&mut v, s.len() as u64);
        v.extend(s.as_bytes());
        v.push(0x15);
        varint(&mut v, ((i << 1) ^ (i >> 31)) as u32 as u64);
        v.push(0x11); // bool true in header
        v.extend([0x29, 0x25, 2, 4]); // field 5 list of 2 i32
        v.push(0);
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
        Box::new(ThriftParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "thrift", 9090, emit, segs)
    }

    fn user_exception_reply(seq: i32) -> Vec<u8> {
        // result { 1: InvalidOperation { 1: i32 what, 2: string why } }
        let mut body = vec![12, 0, 1, 8, 0, 1, 0, 0, 0, 4, 11, 0, 2, 0, 0, 0, 9];
        body.extend(b"bad input");
        body.extend([0, 0]);
        binary(REPLY, "calculate", seq, &body)
    }

    fn exchange_binary_unframed() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C2S, binary(CALL, "ping", 0, &[0])),
            (S2C, binary(REPLY, "ping", 0, &[0])),
            (
                C2S,
                [binary(CALL, "add", 1, &binary_args("x", 5)), binary(CALL, "calculate", 2, &binary_args("y", 1))]
                    .concat(),
            ),
            (S2C, binary(REPLY, "add", 1, &[8, 0, 0, 0, 0, 0, 3, 0])),
            (S2C, user_exception_reply(2)),
            (C2S, binary(ONEWAY, "zip", 3, &[0])),
            (C2S, binary(CALL, "nope", 4, &[0])),
            (S2C, binary(EXCEPTION, "nope", 4, &binary_app_exception("Invalid method name: 'nope'", 1))),
        ]
    }

    fn exchange_compact_framed() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C2S, framed(&compact(CALL, "Calc:add", 7, &compact_args("abc", -3)))),
            (S2C, framed(&compact(REPLY, "Calc:add", 7, &[0x05, 0x00, 4, 0]))),
            (C2S, framed(&old_binary(CALL, "legacy", 8, &binary_args("z", 9)))),
            (S2C, framed(&old_binary(REPLY, "legacy", 8, &[0]))),
            (C2S, framed(&compact(ONEWAY, "fire", 9, &[0]))),
        ]
    }

    fn theader(payload: &[u8], kv: &[(&str, &str)]) -> Vec<u8> {
        let mut h = vec![0, 0]; // binary protocol, no transforms
        h.push(1);
        varint(&mut h, kv.len() as u64);
        for (k, v) in kv {
            varint(&mut h, k.len() as u64);
            h.extend(k.as_bytes());
            varint(&mut h, v.len() as u64);
            h.extend(v.as_bytes());
        }
        while h.len() % 4 != 0 {
            h.push(0);
        }
        let mut b = vec![0x0f, 0xff, 0, 0, 0, 0, 0, 1];
        b.extend(((h.len() / 4) as u16).to_be_bytes());
        b.extend(h);
        b.extend(payload);
        framed(&b)
    }

    #[test]
    fn binary_unframed() {
        let rows = run(EmitMode::Sessions, &exchange_binary_unframed());
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.request_type.clone().unwrap_or_default(), r.request_id, r.response_status, r.log_type))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ping".into(), Some(0), ResponseStatus::Ok, LogType::Session),
                ("add".into(), Some(1), ResponseStatus::Ok, LogType::Session),
                ("calculate".into(), Some(2), ResponseStatus::ServerError, LogType::Session),
                ("zip".into(), Some(3), ResponseStatus::Ok, LogType::Session),
                ("nope".into(), Some(4), ResponseStatus::ServerError, LogType::Session),
            ],
            "{rows:#?}"
        );
        assert_eq!(rows[2].response_exception.as_deref(), Some("bad input"));
        assert_eq!(rows[3].rrt, None);
        assert_eq!(rows[4].response_exception.as_deref(), Some("Invalid method name: 'nope'"));
        assert_eq!(rows[4].response_code, Some(1));
        assert_eq!(rows[0].endpoint.as_deref(), Some("ping"));
        // request and response both say the protocol: the session row keeps it once
        assert_eq!(rows[0].attribute_values, vec!["binary-unframed"]);
    }

    #[test]
    fn compact_framed_and_old_binary() {
        let rows = run(EmitMode::Sessions, &exchange_compact_framed());
        assert_eq!(rows.len(), 3, "{rows:#?}");
        let r = &rows[0];
        assert_eq!(r.request_type.as_deref(), Some("add"));
        assert_eq!(r.request_resource.as_deref(), Some("Calc"));
        assert_eq!(r.endpoint.as_deref(), Some("Calc:add"));
        assert_eq!(r.request_id, Some(7));
        assert_eq!(r.response_status, ResponseStatus::Ok);
        assert_eq!(attr(r), "compact-framed");
        assert_eq!(rows[1].request_type.as_deref(), Some("legacy"));
        assert_eq!(attr(&rows[1]), "binary-framed");
        assert_eq!(rows[2].log_type, LogType::Session);
    }

    fn attr(r: &L7FlowLog) -> &str {
        r.attribute_values.first().map(String::as_str).unwrap_or("")
    }

    #[test]
    fn theader_trace() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let rows = run(
            EmitMode::Sessions,
            &[
                (C2S, theader(&binary(CALL, "get", 11, &[0]), &[("traceparent", tp), ("x-request-id", "r1")])),
                (S2C, theader(&binary(REPLY, "get", 11, &[0]), &[])),
            ],
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(rows[0].x_request_id_0.as_deref(), Some("r1"));
        assert_eq!(attr(&rows[0]), "binary-theader");
    }

    #[test]
    fn probe() {
        let f = flow(1);
        let p = ThriftParser::new(&L7Config::default());
        for ex in [exchange_binary_unframed(), exchange_compact_framed()] {
            for (dir, b) in &ex {
                assert_eq!(p.probe(b, *dir, &f), Probe::Match, "{b:?}");
            }
        }
        assert_eq!(p.probe(&[0x80], C2S, &f), Probe::NeedMore);
        assert_eq!(p.probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", C2S, &f), Probe::NotThis);
        assert_eq!(
            p.probe(&[0x16, 3, 1, 0, 0xa5, 1, 0, 0, 0xa1, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0], C2S, &f),
            Probe::NotThis
        );
    }

    #[test]
    fn splits() {
        check_splits(&make, "thrift", 9090, &exchange_binary_unframed());
        check_splits(&make, "thrift", 9090, &exchange_compact_framed());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &exchange_binary_unframed());
        check_truncations(make(&L7Config::default()).as_ref(), &exchange_compact_framed());
    }

    #[test]
    fn fuzz_50k() {
        fuzz(&make, "thrift", &exchange_binary_unframed(), 30_000);
        fuzz(&make, "thrift", &exchange_compact_framed(), 30_000);
    }
}
