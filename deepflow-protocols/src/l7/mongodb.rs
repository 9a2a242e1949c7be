//! MongoDB wire protocol (`mongodb`).
//!
//! Every message starts with a 16-byte little-endian header (`messageLength`, `requestID`,
//! `responseTo`, `opCode`). OP_MSG (flag bits, section kind 0 body, kind 1 document
//! sequences, optional CRC-32C checksum), legacy OP_QUERY / OP_REPLY / OP_INSERT /
//! OP_UPDATE / OP_DELETE / OP_GET_MORE / OP_KILL_CURSORS, and OP_COMPRESSED (the `noop`
//! compressor's payload is decoded; snappy/zlib/zstd are named and skipped) are read. A small
//! BSON reader prints documents as relaxed JSON-like text (no BSON crate). Messages larger
//! than the parser's prefix limit are decoded from their prefix (documents end with `...`) and
//! the rest is skipped without buffering.
//!
//! Fields (L7_FIELDS.md "MongoDB"): `request_type` = opCode name, `request_resource` = the
//! section-0 / query document as text (kind-1 sequences appended as `identifier: [docs]`),
//! `request_id` = requestID (requests) / responseTo (responses, pairing by id),
//! `response_result` = reply document when it has no `errmsg`, `response_code` = `code`
//! (0 if absent), `response_exception` = `errmsg` (status client_error), OP_REPLY QueryFailure
//! → client_error with `$err`. Beyond L7_FIELDS.md: attributes `command` (first key of the
//! command document), `collection` (its string value, or the OP_QUERY namespace), `db`
//! (`$db` or the namespace's database), and `endpoint` = `<command> <collection>`; OP_MSG
//! with `moreToCome` from the client is a one-way row.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::fmt::Write as _;

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::sql::{StmtOptions, TRUNCATED, cap_string, cstr, le32, le64};
use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;

// ---------------------------------------------------------------------------------------------
// constants

const HEADER: usize = 16;
/// The server's maxMessageSizeBytes.
const MAX_MESSAGE: usize = 48_000_000;
const MAX_DEPTH: usize = 32;

const OP_REPLY: u32 = 1;
const OP_UPDATE: u32 = 2001;
const OP_INSERT: u32 = 2002;
const OP_QUERY: u32 = 2004;
const OP_GET_MORE: u32 = 2005;
const OP_DELETE: u32 = 2006;
const OP_KILL_CURSORS: u32 = 2007;
const OP_COMMAND: u32 = 2010;
const OP_COMMANDREPLY: u32 = 2011;
const OP_COMPRESSED: u32 = 2012;
const OP_MSG: u32 = 2013;

const MSG_CHECKSUM_PRESENT: u32 = 1;
const MSG_MORE_TO_COME: u32 = 2;
const REPLY_QUERY_FAILURE: u32 = 2;

/// Name of an opCode (`OP_UNKNOWN` otherwise).
pub fn opcode_name(op: u32) -> &'static str {
    match op {
        OP_REPLY => "OP_REPLY",
        OP_UPDATE => "OP_UPDATE",
        OP_INSERT => "OP_INSERT",
        OP_QUERY => "OP_QUERY",
        OP_GET_MORE => "OP_GET_MORE",
        OP_DELETE => "OP_DELETE",
        OP_KILL_CURSORS => "OP_KILL_CURSORS",
        OP_COMMAND => "OP_COMMAND",
        OP_COMMANDREPLY => "OP_COMMANDREPLY",
        OP_COMPRESSED => "OP_COMPRESSED",
        OP_MSG => "OP_MSG",
        _ => "OP_UNKNOWN",
    }
}

fn known(op: u32) -> bool {
    opcode_name(op) != "OP_UNKNOWN"
}

// ---------------------------------------------------------------------------------------------
// BSON

/// One element of a BSON document: (type, key, value bytes up to the end of the document).
struct Elements<'a> {
    b: &'a [u8],
    off: usize,
}

/// Elements of the document at the start of `b` (which may be a truncated prefix).
fn elements(b: &[u8]) -> Elements<'_> {
    let len = le32(b, 0).map_or(0, |l| l as usize);
    let end = len.min(b.len());
    Elements { b: b.get(..end).unwrap_or(b), off: 4 }
}

impl<'a> Iterator for Elements<'a> {
    type Item = (u8, &'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let t = *self.b.get(self.off)?;
        if t == 0 {
            return None;
        }
        let (key, vo) = cstr(self.b, self.off + 1)?;
        let rest = self.b.get(vo..)?;
        let n = value_len(t, rest);
        self.off = vo + n.unwrap_or(rest.len());
        if n.is_none() {
            // truncated value: report it once, then stop
            self.b = self.b.get(..self.off).unwrap_or_default();
        }
        Some((t, key, rest.get(..n.unwrap_or(rest.len()))?))
    }
}

/// Encoded size of a value of type `t` at the start of `b`, if complete.
fn value_len(t: u8, b: &[u8]) -> Option<usize> {
    let i32at = |o: usize| le32(b, o).map(|v| v as usize);
    let n = match t {
        0x01 | 0x09 | 0x11 | 0x12 => 8,
        0x02 | 0x0D | 0x0E => 4 + i32at(0)?,
        0x03 | 0x04 | 0x0F => i32at(0)?,
        0x05 => 5 + i32at(0)?,
        0x06 | 0x0A | 0xFF | 0x7F => 0,
        0x07 => 12,
        0x08 => 1,
        0x0B => {
            let (_, o) = cstr(b, 0)?;
            cstr(b, o)?.1
        }
        0x0C => 4 + i32at(0)? + 12,
        0x10 => 4,
        0x13 => 16,
        _ => return None,
    };
    (n <= b.len()).then_some(n)
}

/// Prints BSON as text, stopping at `cap` bytes of output.
struct Printer {
    out: String,
    cap: usize,
    full: bool,
}

impl Printer {
    fn new(cap: usize) -> Self {
        Printer { out: String::new(), cap: if cap == 0 { usize::MAX } else { cap }, full: false }
    }

    fn push(&mut self, s: &str) {
        if self.full {
            return;
        }
        if self.out.len() + s.len() > self.cap {
            let room = self.cap.saturating_sub(self.out.len());
            let mut end = room.min(s.len());
            while end > 0 && !s.is_char_boundary(end) {
                end -= 1;
            }
            self.out.push_str(s.get(..end).unwrap_or_default());
            self.out.push_str(TRUNCATED);
            self.full = true;
            return;
        }
        self.out.push_str(s);
    }

    fn string(&mut self, b: &[u8]) {
        let s = String::from_utf8_lossy(b);
        if !self.full
            && self.out.len() + s.len() + 2 <= self.cap
            && !s.chars().any(|c| c == '"' || c == '\\' || (c as u32) < 0x20)
        {
            self.out.push('"');
            self.out.push_str(&s);
            self.out.push('"');
            return;
        }
        let mut q = String::with_capacity(s.len() + 2);
        q.push('"');
        for c in s.chars() {
            match c {
                '"' => q.push_str("\\\""),
                '\\' => q.push_str("\\\\"),
                '\n' => q.push_str("\\n"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(q, "\\u{:04x}", c as u32);
                }
                c => q.push(c),
            }
        }
        q.push('"');
        self.push(&q);
    }

    /// A document (`array` prints `[v, ...]`). A truncated document ends with `...`.
    fn doc(&mut self, b: &[u8], array: bool, depth: usize) {
        if depth > MAX_DEPTH {
            self.push("{...}");
            return;
        }
        let declared = le32(b, 0).map_or(0, |l| l as usize);
        self.push(if array { "[" } else { "{" });
        let mut first = true;
        for (t, key, v) in elements(b) {
            if self.full {
                return;
            }
            if !first {
                self.push(", ");
            }
            first = false;
            if !array {
                self.string(key);
                self.push(": ");
            }
            self.value(t, v, depth);
        }
        if declared > b.len() && !self.full {
            // the input ends inside this document: the text ends here
            self.push(TRUNCATED);
            self.full = true;
        }
        self.push(if array { "]" } else { "}" });
    }

    /// One value. When the input ends inside it, what is there is printed, then `...`, and
    /// the printer stops.
    fn value(&mut self, t: u8, v: &[u8], depth: usize) {
        let complete = value_len(t, v).is_some();
        if !complete {
            match t {
                0x03 | 0x04 => self.doc(v, t == 0x04, depth + 1),
                0x02 | 0x0D | 0x0E => {
                    let s = String::from_utf8_lossy(v.get(4..).unwrap_or_default()).into_owned();
                    self.push("\"");
                    self.push(&s);
                }
                _ => {}
            }
            if !self.full {
                self.push(TRUNCATED);
                self.full = true;
            }
            return;
        }
        let f64at = |o: usize| le64(v, o).map(f64::from_bits).unwrap_or(0.0);
        match t {
            0x01 => self.push(&f64at(0).to_string()),
            0x02 | 0x0D | 0x0E => {
                let n = le32(v, 0).map_or(0, |n| n as usize);
                self.string(v.get(4..(4 + n).saturating_sub(1)).unwrap_or_default());
            }
            0x03 | 0x04 => self.doc(v, t == 0x04, depth + 1),
            0x05 => {
                let n = le32(v, 0).unwrap_or(0);
                self.push(&format!("BinData({}, {n} bytes)", v.get(4).copied().unwrap_or(0)));
            }
            0x06 => self.push("undefined"),
            0x07 => {
                let hex: String = v.iter().take(12).map(|b| format!("{b:02x}")).collect();
                self.push(&format!("ObjectId(\"{hex}\")"));
            }
            0x08 => self.push(if v.first() == Some(&0) { "false" } else { "true" }),
            0x09 => self.push(&format!("Date({})", le64(v, 0).unwrap_or(0) as i64)),
            0x0A => self.push("null"),
            0x0B => {
                let (p, o) = cstr(v, 0).unwrap_or_default();
                let (f, _) = cstr(v, o).unwrap_or_default();
                self.push(&format!("/{}/{}", String::from_utf8_lossy(p), String::from_utf8_lossy(f)));
            }
            0x0C => self.push("DBPointer(...)"),
            0x0F => self.push("Code(...)"),
            0x10 => self.push(&(le32(v, 0).unwrap_or(0) as i32).to_string()),
            0x11 => {
                let ts = le64(v, 0).unwrap_or(0);
                self.push(&format!("Timestamp({}, {})", ts >> 32, ts & 0xffff_ffff));
            }
            0x12 => self.push(&(le64(v, 0).unwrap_or(0) as i64).to_string()),
            0x13 => {
                let hex: String = v.iter().take(16).rev().map(|b| format!("{b:02x}")).collect();
                self.push(&format!("NumberDecimal(0x{hex})"));
            }
            0xFF => self.push("MinKey"),
            0x7F => self.push("MaxKey"),
            _ => self.push("?"),
        }
    }
}

/// A document as text, capped at `cap` bytes (0 = no cap).
pub fn bson_to_text(doc: &[u8], cap: usize) -> String {
    let mut p = Printer::new(cap);
    p.doc(doc, false, 0);
    p.out
}

/// Value of `key` in a document: (type, value bytes).
fn field<'a>(doc: &'a [u8], key: &str) -> Option<(u8, &'a [u8])> {
    elements(doc).find(|(_, k, _)| *k == key.as_bytes()).map(|(t, _, v)| (t, v))
}

fn field_str(doc: &[u8], key: &str) -> Option<String> {
    match field(doc, key)? {
        (0x02, v) => {
            let n = le32(v, 0)? as usize;
            Some(String::from_utf8_lossy(v.get(4..(4 + n).saturating_sub(1))?).into_owned())
        }
        _ => None,
    }
}

fn field_num(doc: &[u8], key: &str) -> Option<f64> {
    match field(doc, key)? {
        (0x10, v) => Some(f64::from(le32(v, 0)? as i32)),
        (0x12, v) => Some(le64(v, 0)? as i64 as f64),
        (0x01, v) => Some(f64::from_bits(le64(v, 0)?)),
        (0x08, v) => Some(f64::from(*v.first()?)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start with a plausible MongoDB message header?
pub fn probe_start(data: &[u8], dir: Direction) -> Probe {
    let (Some(len), Some(to), Some(op)) = (le32(data, 0), le32(data, 8), le32(data, 12)) else {
        return Probe::NeedMore;
    };
    let len = len as usize;
    if !(HEADER + 5..=MAX_MESSAGE).contains(&len) || !known(op) {
        return Probe::NotThis;
    }
    let ok = match dir {
        Direction::ClientToServer => to == 0 && matches!(op, OP_MSG | OP_QUERY | OP_COMPRESSED),
        Direction::ServerToClient => to != 0 && matches!(op, OP_MSG | OP_REPLY | OP_COMPRESSED),
    };
    if !ok {
        return Probe::NotThis;
    }
    // the first document (OP_MSG kind 0 / OP_REPLY / OP_QUERY) must have a sane length
    let doc_len = match op {
        OP_MSG if data.get(20) == Some(&0) => le32(data, 21),
        _ => return Probe::Match,
    };
    match doc_len {
        Some(d) if (5..=len).contains(&(d as usize)) => Probe::Match,
        Some(_) => Probe::NotThis,
        None => Probe::NeedMore,
    }
}

// ---------------------------------------------------------------------------------------------
// parser

/// The MongoDB parser.
pub struct MongoParser {
    opts: StmtOptions,
    partial_limit: usize,
    skip: [usize; 2],
    held: [Option<L7Message>; 2],
}

impl MongoParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        MongoParser {
            opts: StmtOptions::from_config(cfg),
            partial_limit: (cfg.max_buffered_bytes / 2).clamp(64, 16 * 1024),
            skip: [0; 2],
            held: [None, None],
        }
    }

    fn cap(&self) -> usize {
        self.opts.max_len
    }

    /// Decodes one message (`body` = bytes after the header, possibly a prefix).
    fn message(&self, op: u32, req_id: u32, resp_to: u32, body: &[u8], total: usize, depth: u8) -> Option<L7Message> {
        let response = resp_to != 0 || matches!(op, OP_REPLY | OP_COMMANDREPLY);
        let mut m =
            L7Message::new(L7Protocol::MongoDb, if response { MessageKind::Response } else { MessageKind::Request });
        m.request_type = Some(opcode_name(op).to_string());
        m.request_id = Some(if response { resp_to } else { req_id });
        let mut doc: Option<&[u8]> = None;
        let mut namespace: Option<String> = None;
        let mut text = String::new();
        match op {
            OP_MSG => {
                let flags = le32(body, 0)?;
                let end = if flags & MSG_CHECKSUM_PRESENT != 0 && body.len() + HEADER == total {
                    body.len().saturating_sub(4)
                } else {
                    body.len()
                };
                let mut o = 4;
                let mut seqs = String::new();
                while o < end {
                    let kind = *body.get(o)?;
                    match kind {
                        0 => {
                            let d = body.get(o + 1..end)?;
                            doc.get_or_insert(d);
                            let n = le32(d, 0)? as usize;
                            o += 1 + n.max(5);
                        }
                        1 => {
                            let size = le32(body, o + 1)? as usize;
                            let (id, mut p) = cstr(body, o + 5)?;
                            let send = (o + 1 + size).min(end);
                            let mut pr = Printer::new(self.cap());
                            pr.push(&format!(" {}: [", String::from_utf8_lossy(id)));
                            let mut first = true;
                            while p < send && !pr.full {
                                let d = body.get(p..send)?;
                                if !first {
                                    pr.push(", ");
                                }
                                first = false;
                                pr.doc(d, false, 0);
                                p += (le32(d, 0)? as usize).max(5);
                            }
                            pr.push("]");
                            seqs.push_str(&pr.out);
                            o += 1 + size.max(4);
                        }
                        _ => return None,
                    }
                }
                if let Some(d) = doc {
                    text = bson_to_text(d, self.cap());
                }
                text.push_str(&seqs);
                if flags & MSG_MORE_TO_COME != 0 && !response {
                    m.kind = Some(MessageKind::OneWay);
                    m.response_status = Some(ResponseStatus::Ok);
                }
                if flags & MSG_CHECKSUM_PRESENT != 0 {
                    m.attr("checksum", "present");
                }
            }
            OP_QUERY => {
                let (ns, o) = cstr(body, 4)?;
                namespace = Some(String::from_utf8_lossy(ns).into_owned());
                let d = body.get(o + 8..)?;
                doc = Some(d);
                text = bson_to_text(d, self.cap());
            }
            OP_REPLY => {
                let flags = le32(body, 0)?;
                let n = le32(body, 16)?;
                if let Some(d) = body.get(20..).filter(|d| d.len() >= 5) {
                    doc = Some(d);
                    text = bson_to_text(d, self.cap());
                }
                m.attr("number_returned", n.to_string());
                if flags & REPLY_QUERY_FAILURE != 0 {
                    m.response_status = Some(ResponseStatus::ClientError);
                    m.response_exception = doc.and_then(|d| field_str(d, "$err")).or(Some("QueryFailure".into()));
                    m.response_code = Some(doc.and_then(|d| field_num(d, "code")).unwrap_or(0.0) as i32);
                    return Some(m);
                }
            }
            OP_INSERT | OP_UPDATE | OP_DELETE | OP_GET_MORE => {
                let (ns, o) = cstr(body, 4)?;
                namespace = Some(String::from_utf8_lossy(ns).into_owned());
                let d = match op {
                    OP_INSERT => body.get(o..),
                    OP_UPDATE | OP_DELETE => body.get(o + 4..),
                    _ => None,
                };
                if let Some(d) = d.filter(|d| d.len() >= 5) {
                    text = bson_to_text(d, self.cap());
                }
            }
            OP_COMPRESSED => {
                let orig = le32(body, 0)?;
                let comp = *body.get(8)?;
                let name = match comp {
                    0 => "noop",
                    1 => "snappy",
                    2 => "zlib",
                    3 => "zstd",
                    _ => "unknown",
                };
                if comp == 0 && depth == 0 && orig != OP_COMPRESSED {
                    let mut inner = self.message(orig, req_id, resp_to, body.get(9..)?, total - 9, depth + 1)?;
                    inner.request_type = Some(opcode_name(op).to_string());
                    inner.attr("original_opcode", opcode_name(orig));
                    inner.attr("compressor", name);
                    return Some(inner);
                }
                m.attr("original_opcode", opcode_name(orig));
                m.attr("compressor", name);
                if response {
                    m.response_status = Some(ResponseStatus::Ok);
                }
                return Some(m);
            }
            _ => {}
        }
        if response {
            let d = doc.unwrap_or_default();
            match d.len().checked_sub(5).and_then(|_| field_str(d, "errmsg")) {
                Some(e) => {
                    m.response_status = Some(ResponseStatus::ClientError);
                    m.response_exception = Some(cap_string(e, self.cap()));
                }
                None => {
                    m.response_status = Some(ResponseStatus::Ok);
                    m.response_result = Some(text);
                }
            }
            m.response_code = Some(if d.len() >= 5 { field_num(d, "code").unwrap_or(0.0) as i32 } else { 0 });
            return Some(m);
        }
        // request: command name, collection, database
        let first = doc.and_then(|d| elements(d).next());
        let command = first.map(|(_, k, _)| String::from_utf8_lossy(k).into_owned());
        let mut collection = doc.and_then(|d| command.as_deref().and_then(|c| field_str(d, c)));
        let mut db = doc.and_then(|d| field_str(d, "$db"));
        if let Some(ns) = &namespace {
            let (d, c) = ns.split_once('.').unwrap_or((ns, ""));
            db.get_or_insert_with(|| d.to_string());
            if !c.is_empty() && c != "$cmd" {
                collection = Some(c.to_string());
            }
        }
        if (op == OP_QUERY || op == OP_MSG)
            && let Some(c) = &command
        {
            m.attr("command", c.clone());
        }
        if let Some(c) = &collection {
            m.attr("collection", c.clone());
        }
        if let Some(d) = &db {
            m.attr("db", d.clone());
        }
        m.endpoint = match (&command, &collection) {
            (Some(c), Some(t)) if op == OP_QUERY || op == OP_MSG => Some(format!("{c} {t}")),
            (Some(c), None) if op == OP_QUERY || op == OP_MSG => Some(c.clone()),
            (_, Some(t)) => Some(format!("{} {t}", opcode_name(op))),
            _ => None,
        };
        m.request_resource = Some(text);
        Some(m)
    }
}

impl L7Parser for MongoParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::MongoDb
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 27017
    }

    fn probe(&self, data: &[u8], dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_start(data, dir)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        let mut p = MongoParser::new(&L7Config::default());
        p.opts = self.opts;
        p.partial_limit = self.partial_limit;
        Box::new(p)
    }

    fn pairing(&self) -> Pairing {
        Pairing::ById
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        let d = ctx.dir.index();
        if let Some(s) = self.skip.get_mut(d)
            && *s > 0
        {
            let n = (*s).min(data.len());
            *s -= n;
            if *s == 0
                && let Some(m) = self.held.get_mut(d).and_then(Option::take)
            {
                return ParseOutcome::message(m, n);
            }
            return ParseOutcome::Skip(n.max(1));
        }
        let (Some(len), Some(req_id), Some(resp_to), Some(op)) =
            (le32(data, 0), le32(data, 4), le32(data, 8), le32(data, 12))
        else {
            return ParseOutcome::NeedMore(HEADER.saturating_sub(data.len()));
        };
        let len = len as usize;
        if !(HEADER..=MAX_MESSAGE).contains(&len) || !known(op) {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let want = len.min(HEADER + self.partial_limit);
        if data.len() < want {
            return ParseOutcome::NeedMore(want - data.len());
        }
        let avail = data.len().min(len);
        let body = data.get(HEADER..avail).unwrap_or_default();
        let Some(m) = self.message(op, req_id, resp_to, body, len, 0) else {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        };
        if avail < len {
            if let Some(s) = self.skip.get_mut(d) {
                *s = len - avail;
            }
            if let Some(h) = self.held.get_mut(d) {
                *h = Some(m);
            }
            return ParseOutcome::Skip(avail);
        }
        ParseOutcome::message(m, len)
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(s) = self.skip.get_mut(dir.index()) {
            *s = 0;
        }
        if let Some(h) = self.held.get_mut(dir.index()) {
            *h = None;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tests

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use crate::l7::sql::testutil::*;
    use deepflow_core::record::LogType;

    /// A tiny BSON writer for the tests.
    pub enum V<'a> {
        Str(&'a str),
        I(i32),
        L(i64),
        F(f64),
        B(bool),
        D(Vec<(&'a str, V<'a>)>),
        A(Vec<V<'a>>),
        Oid([u8; 12]),
        Null,
    }

    pub fn doc(items: &[(&str, V<'_>)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (k, v) in items {
            elem(&mut b, k, v);
        }
        let mut out = ((b.len() + 5) as u32).to_le_bytes().to_vec();
        out.extend(b);
        out.push(0);
        out
    }

    fn elem(b: &mut Vec<u8>, k: &str, v: &V<'_>) {
        let (t, body): (u8, Vec<u8>) = match v {
            V::Str(s) => {
                let mut x = ((s.len() + 1) as u32).to_le_bytes().to_vec();
                x.extend_from_slice(s.as_bytes());
                x.push(0);
                (2, x)
            }
            V::I(i) => (0x10, i.to_le_bytes().to_vec()),
            V::L(i) => (0x12, i.to_le_bytes().to_vec()),
            V::F(f) => (1, f.to_le_bytes().to_vec()),
            V::B(x) => (8, vec![u8::from(*x)]),
            V::D(items) => {
                let mut inner = Vec::new();
                for (k, v) in items {
                    elem(&mut inner, k, v);
                }
                let mut x = ((inner.len() + 5) as u32).to_le_bytes().to_vec();
                x.extend(inner);
                x.push(0);
                (3, x)
            }
            V::A(items) => {
                let mut inner = Vec::new();
                for (i, v) in items.iter().enumerate() {
                    elem(&mut inner, &i.to_string(), v);
                }
                let mut x = ((inner.len() + 5) as u32).to_le_bytes().to_vec();
                x.extend(inner);
                x.push(0);
                (4, x)
            }
            V::Oid(o) => (7, o.to_vec()),
            V::Null => (0x0a, vec![]),
        };
        b.push(t);
        b.extend_from_slice(k.as_bytes());
        b.push(0);
        b.extend(body);
    }

    fn header(len: usize, id: u32, to: u32, op: u32) -> Vec<u8> {
        let mut v = (len as u32 + 16).to_le_bytes().to_vec();
        v.extend_from_slice(&id.to_le_bytes());
        v.extend_from_slice(&to.to_le_bytes());
        v.extend_from_slice(&op.to_le_bytes());
        v
    }

    pub fn op_msg(id: u32, to: u32, flags: u32, body: &[u8], seq: Option<(&str, Vec<Vec<u8>>)>) -> Vec<u8> {
        let mut p = flags.to_le_bytes().to_vec();
        p.push(0);
        p.extend_from_slice(body);
        if let Some((name, docs)) = seq {
            let total: usize = docs.iter().map(Vec::len).sum::<usize>() + 4 + name.len() + 1;
            p.push(1);
            p.extend_from_slice(&(total as u32).to_le_bytes());
            p.extend_from_slice(name.as_bytes());
            p.push(0);
            for d in docs {
                p.extend(d);
            }
        }
        if flags & MSG_CHECKSUM_PRESENT != 0 {
            p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        }
        let mut v = header(p.len(), id, to, OP_MSG);
        v.extend(p);
        v
    }

    fn op_query(id: u32, ns: &str, q: &[u8]) -> Vec<u8> {
        let mut p = 0u32.to_le_bytes().to_vec();
        p.extend_from_slice(ns.as_bytes());
        p.push(0);
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(q);
        let mut v = header(p.len(), id, 0, OP_QUERY);
        v.extend(p);
        v
    }

    fn op_reply(id: u32, to: u32, flags: u32, d: &[u8]) -> Vec<u8> {
        let mut p = flags.to_le_bytes().to_vec();
        p.extend_from_slice(&0u64.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(d);
        let mut v = header(p.len(), id, to, OP_REPLY);
        v.extend(p);
        v
    }

    fn conversation() -> Vec<(Direction, Vec<u8>)> {
        use V::*;
        let find = doc(&[
            ("find", Str("users")),
            ("filter", D(vec![("age", D(vec![("$gt", I(30))]))])),
            ("limit", L(2)),
            ("$db", Str("shop")),
        ]);
        let cursor = doc(&[
            (
                "cursor",
                D(vec![
                    ("firstBatch", A(vec![D(vec![("_id", Oid([1; 12])), ("age", F(31.5)), ("vip", B(true))])])),
                    ("id", L(0)),
                    ("ns", Str("shop.users")),
                ]),
            ),
            ("ok", F(1.0)),
        ]);
        let insert = doc(&[("insert", Str("users")), ("ordered", B(true)), ("$db", Str("shop"))]);
        let docs = vec![doc(&[("name", Str("a"))]), doc(&[("name", Str("b")), ("x", Null)])];
        let err = doc(&[
            ("ok", F(0.0)),
            ("errmsg", Str("unknown operator: $foo")),
            ("code", I(2)),
            ("codeName", Str("BadValue")),
        ]);
        vec![
            (
                C,
                op_query(1, "admin.$cmd", &doc(&[("isMaster", I(1)), ("client", D(vec![("driver", Str("pymongo"))]))])),
            ),
            (S, op_reply(100, 1, 8, &doc(&[("ismaster", B(true)), ("maxWireVersion", I(17)), ("ok", F(1.0))]))),
            (C, op_msg(2, 0, 0, &find, None)),
            (S, op_msg(101, 2, 0, &cursor, None)),
            (C, op_msg(3, 0, MSG_CHECKSUM_PRESENT, &insert, Some(("documents", docs)))),
            (S, op_msg(102, 3, 0, &doc(&[("n", I(2)), ("ok", F(1.0))]), None)),
            (
                C,
                op_msg(
                    4,
                    0,
                    0,
                    &doc(&[("find", Str("users")), ("filter", D(vec![("$foo", I(1))])), ("$db", Str("shop"))]),
                    None,
                ),
            ),
            (S, op_msg(103, 4, 0, &err, None)),
            (C, op_query(5, "shop.users", &doc(&[("$where", Str("x"))]))),
            (S, op_reply(104, 5, REPLY_QUERY_FAILURE, &doc(&[("$err", Str("bad query")), ("code", I(16722))]))),
            (C, op_msg(6, 0, MSG_MORE_TO_COME, &doc(&[("insert", Str("logs")), ("$db", Str("shop"))]), None)),
        ]
    }

    #[test]
    fn full_conversation() {
        let rows = run(27017, &conversation());
        let t: Vec<_> =
            rows.iter().map(|r| (r.request_type.clone().unwrap(), r.request_id, r.response_status)).collect();
        use ResponseStatus::*;
        assert_eq!(
            t,
            [
                ("OP_QUERY".to_string(), Some(1), Ok),
                ("OP_MSG".to_string(), Some(2), Ok),
                ("OP_MSG".to_string(), Some(3), Ok),
                ("OP_MSG".to_string(), Some(4), ClientError),
                ("OP_QUERY".to_string(), Some(5), ClientError),
                ("OP_MSG".to_string(), Some(6), Ok),
            ]
        );
        assert_eq!(
            rows[1].request_resource.as_deref(),
            Some(r#"{"find": "users", "filter": {"age": {"$gt": 30}}, "limit": 2, "$db": "shop"}"#)
        );
        assert_eq!(rows[1].endpoint.as_deref(), Some("find users"));
        assert_eq!(rows[1].attribute_values, ["find", "users", "shop"]);
        assert_eq!(
            rows[1].response_result.as_deref(),
            Some(
                r#"{"cursor": {"firstBatch": [{"_id": ObjectId("010101010101010101010101"), "age": 31.5, "vip": true}], "id": 0, "ns": "shop.users"}, "ok": 1}"#
            )
        );
        assert_eq!(rows[1].response_code, Some(0));
        assert_eq!(
            rows[2].request_resource.as_deref(),
            Some(
                r#"{"insert": "users", "ordered": true, "$db": "shop"} documents: [{"name": "a"}, {"name": "b", "x": null}]"#
            )
        );
        assert_eq!(rows[3].response_code, Some(2));
        assert_eq!(rows[3].response_exception.as_deref(), Some("unknown operator: $foo"));
        assert_eq!(rows[0].endpoint.as_deref(), Some("isMaster"));
        assert!(rows[0].attribute_values.contains(&"admin".to_string()));
        assert_eq!(rows[4].response_exception.as_deref(), Some("bad query"));
        assert_eq!(rows[4].endpoint.as_deref(), Some("$where users"));
        assert_eq!(rows[5].log_type, LogType::Session);
    }

    #[test]
    fn compressed_and_large() {
        use V::*;
        // noop-compressed OP_MSG ping
        let inner = op_msg(9, 0, 0, &doc(&[("ping", I(1)), ("$db", Str("admin"))]), None);
        let mut body = OP_MSG.to_le_bytes().to_vec();
        body.extend_from_slice(&((inner.len() - 16) as u32).to_le_bytes());
        body.push(0);
        body.extend_from_slice(&inner[16..]);
        let mut comp = header(body.len(), 9, 0, OP_COMPRESSED);
        comp.extend(body);
        let mut snappy = header(9 + 4, 10, 0, OP_COMPRESSED);
        snappy.extend_from_slice(&OP_MSG.to_le_bytes());
        snappy.extend_from_slice(&100u32.to_le_bytes());
        snappy.extend_from_slice(&[1, 0xaa, 0xbb, 0xcc, 0xdd]);
        let big = "z".repeat(200_000);
        let big_insert =
            op_msg(11, 0, 0, &doc(&[("insert", Str("blobs")), ("data", Str(&big)), ("$db", Str("shop"))]), None);
        let ok = doc(&[("ok", F(1.0))]);
        let segs: Vec<_> =
            [(C, comp), (S, op_msg(200, 9, 0, &ok, None)), (C, snappy), (S, op_msg(201, 10, 0, &ok, None))]
                .into_iter()
                .chain(big_insert.chunks(1460).map(|c| (C, c.to_vec())))
                .chain([(S, op_msg(202, 11, 0, &ok, None))])
                .collect();
        let cfg = L7Config { max_statement_length: 100, ..L7Config::default() };
        let (rows, counters) = run_cfg(cfg, 27017, &segs);
        assert_eq!(counters.oversize, 0);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].request_type.as_deref(), Some("OP_COMPRESSED"));
        assert_eq!(rows[0].request_resource.as_deref(), Some(r#"{"ping": 1, "$db": "admin"}"#));
        assert!(rows[1].attribute_values.contains(&"snappy".to_string()));
        assert_eq!(rows[2].endpoint.as_deref(), Some("insert blobs"));
        assert!(rows[2].request_resource.as_deref().unwrap().ends_with("..."));
        assert_eq!(rows[2].response_status, ResponseStatus::Ok);
    }

    #[test]
    fn bson_truncated_prefix() {
        use V::*;
        let d = doc(&[("a", Str("hello")), ("b", D(vec![("c", I(1)), ("d", Str("world"))]))]);
        for k in 0..d.len() {
            let _ = bson_to_text(&d[..k], 0);
        }
        assert_eq!(bson_to_text(&d[..d.len() - 6], 0), r#"{"a": "hello", "b": {"c": 1, "d": "wo..."#);
    }

    #[test]
    fn split_and_truncation() {
        assert_split_invariant(L7Config::default(), 27017, &conversation());
        assert_truncation_safe(27017, &conversation());
    }

    #[test]
    fn fuzz_50k() {
        fuzz(27017, &[conversation()], 50_000, 0x5eed_27017);
    }
}
