//! Redis serialization protocol, RESP2 and RESP3 (`redis`).
//!
//! A streaming RESP reader consumes values of any size and nesting (aggregates, maps, sets,
//! attributes `|`, pushes `>`, big numbers, verbatim strings, streamed strings `$?`/`;` and
//! streamed aggregates `*?`/`.`) without buffering them: bulk payloads are skipped as they
//! arrive and only what a row shows is kept (command arguments, the first elements of a
//! reply, error text). Inline commands (`PING\r\n`) are accepted from clients. Pipelined
//! commands are answered in order.
//!
//! Fields (L7_FIELDS.md "Redis"): `request_type` = command as sent, `request_resource` = the
//! command and its arguments joined with spaces (capped; `AUTH`, `HELLO ... AUTH`, `MIGRATE
//! ... AUTH/AUTH2`, `CONFIG SET requirepass|masterauth` and `ACL SETUSER` passwords are always
//! replaced by `?`; with `db_obfuscation` every argument after the key is `?`),
//! `response_result` = RESP type of the reply (`+ Simple string`, `* Array`, ...),
//! `response_exception` = error line with its `-` (or the `!` bulk error), status
//! `server_error` for errors and `ok` otherwise. Pub/sub: messages pushed by the server
//! (`message`/`pmessage`/`smessage` arrays in subscribed RESP2 connections, any RESP3 push
//! except a subscription confirmation that answers a pending SUBSCRIBE) are one-way rows with
//! `request_type` = push kind and `request_resource` = channel; additional confirmations of a
//! multi-channel SUBSCRIBE are one-way too.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::collections::VecDeque;

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::sql::{StmtOptions, cap_string};
use super::{L7Message, L7Parser, MessageKind, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;

// ---------------------------------------------------------------------------------------------
// constants

/// Longest header / simple-string line accepted.
const MAX_LINE: usize = 64 * 1024;
/// Deepest aggregate nesting accepted.
const MAX_DEPTH: usize = 64;
/// Arguments kept per command (the rest are counted).
const MAX_ARGS: usize = 256;
/// Error text kept in `response_exception`.
const MAX_EXCEPTION: usize = 256;

/// `response_result` text of a RESP type byte.
pub fn type_name(t: u8) -> &'static str {
    match t {
        b'+' => "+ Simple string",
        b'-' => "- Simple error",
        b':' => ": Integer",
        b'$' => "$ Bulk string",
        b'*' => "* Array",
        b'_' => "_ Nulls",
        b'#' => "# Boolean",
        b',' => ", Double",
        b'(' => "( Big number",
        b'!' => "! Bulk error",
        b'=' => "= Verbatim string",
        b'%' => "% Map",
        b'~' => "~ Set",
        b'>' => "> Push",
        _ => "Unknown",
    }
}

const CONFIRMATIONS: [&str; 6] =
    ["subscribe", "unsubscribe", "psubscribe", "punsubscribe", "ssubscribe", "sunsubscribe"];

/// A RESP length or integer: what `str::parse::<i64>` accepts (optional sign, decimal digits,
/// no overflow), without the UTF-8 check and the generic parser.
fn parse_len(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let (neg, digits) = match b.split_first() {
        Some((b'-', d)) => (true, d),
        Some((b'+', d)) => (false, d),
        _ => (false, b),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        // accumulate on the sign's side, so that i64::MIN parses
        v = v.checked_mul(10)?;
        v = if neg { v.checked_sub(i64::from(d))? } else { v.checked_add(i64::from(d))? };
    }
    Some(v)
}

// ---------------------------------------------------------------------------------------------
// streaming RESP reader

#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Elements still expected (unused for streamed strings and aggregates).
    left: usize,
    /// An attribute map: it precedes a value and does not count as an element itself.
    attr: bool,
    /// A streamed string (`$?`): `;n` chunks until `;0`.
    chunks: bool,
    /// A streamed aggregate (`*?`): elements until `.`.
    streamed: bool,
}

/// Element buffers a reader keeps for the next value, and the largest capacity kept.
const SPARE_BUFFERS: usize = 4;
const SPARE_BUFFER_CAP: usize = 256;

/// Incremental reader of one RESP value.
#[derive(Debug, Default)]
struct Reader {
    stack: Vec<Frame>,
    /// Bytes left of the current bulk payload, including its CRLF.
    bulk_left: usize,
    /// The current bulk is being kept (into `cur`).
    keep: bool,
    cur: Vec<u8>,
    /// Type byte of the top-level value (attributes skipped).
    top: Option<u8>,
    /// First elements of a top-level aggregate (or the top-level string), capped.
    elems: Vec<Vec<u8>>,
    /// Number of depth-1 elements seen.
    count: usize,
    /// Error text of a top-level `-` / `!`.
    error: Option<Vec<u8>>,
    /// How much of each kept element is stored.
    keep_cap: usize,
    /// How many elements are kept.
    keep_n: usize,
    /// Emptied element buffers of earlier values, reused (no allocation per element).
    spare: Vec<Vec<u8>>,
}

enum Step {
    /// The value is complete after this many bytes.
    Done(usize),
    /// This many bytes were consumed; the value continues.
    More(usize),
}

impl Reader {
    /// Ready for the next value; the buffers stay allocated for it.
    fn reset(&mut self) {
        let Reader { stack, bulk_left, keep, cur, top, elems, count, error, keep_cap: _, keep_n, spare } = self;
        stack.clear();
        *bulk_left = 0;
        *keep = false;
        cur.clear();
        *top = None;
        for mut e in elems.drain(..) {
            // a few small buffers per reader: an idle flow keeps little
            if spare.len() < (*keep_n).min(SPARE_BUFFERS) && e.capacity() <= SPARE_BUFFER_CAP {
                e.clear();
                spare.push(e);
            }
        }
        *count = 0;
        *error = None;
    }

    /// Gives back the elements taken out of [`Reader::elems`] (for reuse), then resets.
    fn recycle(&mut self, elems: Vec<Vec<u8>>) {
        if self.elems.is_empty() {
            self.elems = elems;
        }
        self.reset();
    }

    fn depth(&self) -> usize {
        self.stack.iter().filter(|f| !f.attr).count()
    }

    /// Is the element about to be read a depth-1 element (or the top-level value) we keep?
    fn keeps_next(&self) -> bool {
        let in_attr = self.stack.iter().any(|f| f.attr);
        !in_attr && self.depth() <= 1 && self.elems.len() < self.keep_n
    }

    /// One element finished: unwind completed aggregates. Returns true when the top-level
    /// value is complete.
    fn element_done(&mut self) -> bool {
        if self.keep && self.depth() <= 1 {
            let next = self.spare.pop().unwrap_or_default();
            let v = std::mem::replace(&mut self.cur, next);
            self.elems.push(v);
        }
        self.keep = false;
        if self.depth() == 1 {
            self.count += 1;
        }
        loop {
            let Some(f) = self.stack.last_mut() else { return true };
            if f.chunks || f.streamed {
                return false;
            }
            f.left = f.left.saturating_sub(1);
            if f.left > 0 {
                return false;
            }
            let attr = f.attr;
            self.stack.pop();
            if attr {
                return false;
            }
        }
    }

    fn keep_bytes(&mut self, b: &[u8]) {
        let room = self.keep_cap.saturating_sub(self.cur.len());
        self.cur.extend_from_slice(b.get(..room.min(b.len())).unwrap_or_default());
    }

    /// Consumes as much of `data` as possible.
    fn feed(&mut self, data: &[u8]) -> Result<Step, ParseErrorKind> {
        let m = ParseErrorKind::Malformed;
        let mut off = 0;
        loop {
            let rest = data.get(off..).unwrap_or_default();
            if self.bulk_left > 0 {
                if rest.is_empty() {
                    return Ok(Step::More(off));
                }
                let n = self.bulk_left.min(rest.len());
                if self.keep {
                    let payload = n.min(self.bulk_left.saturating_sub(2));
                    self.keep_bytes(rest.get(..payload).unwrap_or_default());
                }
                self.bulk_left -= n;
                off += n;
                if self.bulk_left == 0 && self.element_done() {
                    return Ok(Step::Done(off));
                }
                continue;
            }
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                if rest.len() > MAX_LINE {
                    return Err(ParseErrorKind::Oversize);
                }
                return Ok(Step::More(off));
            };
            let line = rest.get(..nl).unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            off += nl + 1;
            let (&t, body) = line.split_first().ok_or(m)?;
            if self.stack.is_empty() && t != b'|' {
                self.top = Some(t);
            }
            let keep = self.keeps_next();
            let done = match t {
                b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {
                    if self.stack.is_empty() && t == b'-' {
                        self.error = Some(line.to_vec());
                    }
                    if keep {
                        self.keep = true;
                        self.keep_bytes(body);
                    }
                    self.element_done()
                }
                b'$' | b'!' | b'=' => {
                    if body == b"?" {
                        self.push(Frame { left: 0, attr: false, chunks: true, streamed: false })?;
                        self.keep = keep;
                        false
                    } else {
                        let n = parse_len(body).ok_or(m)?;
                        if n < 0 {
                            self.element_done()
                        } else {
                            self.bulk_left = usize::try_from(n).map_err(|_| m)?.checked_add(2).ok_or(m)?;
                            self.keep = keep;
                            false
                        }
                    }
                }
                b';' => {
                    let n = parse_len(body).ok_or(m)?;
                    if !self.stack.last().is_some_and(|f| f.chunks) {
                        return Err(m);
                    }
                    if n <= 0 {
                        self.stack.pop();
                        self.element_done()
                    } else {
                        self.bulk_left = usize::try_from(n).map_err(|_| m)?.checked_add(2).ok_or(m)?;
                        false
                    }
                }
                b'*' | b'%' | b'~' | b'>' | b'|' => {
                    if body == b"?" {
                        self.push(Frame { left: 0, attr: t == b'|', chunks: false, streamed: true })?;
                        false
                    } else {
                        let n = parse_len(body).ok_or(m)?;
                        let pairs = if matches!(t, b'%' | b'|') { 2 } else { 1 };
                        if n <= 0 {
                            if t == b'|' { false } else { self.element_done() }
                        } else {
                            let left = usize::try_from(n).map_err(|_| m)?.checked_mul(pairs).ok_or(m)?;
                            self.push(Frame { left, attr: t == b'|', chunks: false, streamed: false })?;
                            false
                        }
                    }
                }
                b'.' => {
                    if !self.stack.last().is_some_and(|f| f.streamed) {
                        return Err(m);
                    }
                    self.stack.pop();
                    self.element_done()
                }
                _ => return Err(m),
            };
            if done {
                return Ok(Step::Done(off));
            }
        }
    }

    fn push(&mut self, f: Frame) -> Result<(), ParseErrorKind> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(ParseErrorKind::Malformed);
        }
        self.stack.push(f);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start like a RESP command array (client) or, on the usual port, a reply?
pub fn probe_start(data: &[u8], dir: Direction, port: u16) -> Probe {
    let Some(&first) = data.first() else { return Probe::NeedMore };
    match dir {
        Direction::ClientToServer if first == b'*' => {
            // *N\r\n$M\r\n<letters>
            let mut i = 1;
            while data.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == 1 && data.len() > 1 {
                return Probe::NotThis;
            }
            for want in [b'\r', b'\n', b'$'] {
                match data.get(i) {
                    None => return Probe::NeedMore,
                    Some(c) if *c == want => i += 1,
                    Some(_) => return Probe::NotThis,
                }
            }
            while data.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            match (data.get(i), data.get(i + 1), data.get(i + 2)) {
                (Some(b'\r'), Some(b'\n'), Some(c)) if c.is_ascii_alphabetic() => Probe::Match,
                (Some(b'\r'), Some(b'\n'), None) | (Some(b'\r'), None, _) | (None, _, _) => Probe::NeedMore,
                _ => Probe::NotThis,
            }
        }
        Direction::ClientToServer if port == 6379 => {
            let word: Vec<u8> = data.iter().take_while(|c| c.is_ascii_alphabetic()).copied().collect();
            match data.get(word.len()) {
                Some(b' ' | b'\r' | b'\n') if (2..=16).contains(&word.len()) => Probe::Match,
                None if word.len() < 16 => Probe::NeedMore,
                _ => Probe::NotThis,
            }
        }
        Direction::ServerToClient if port == 6379 && b"+-:$*%>_".contains(&first) => Probe::Match,
        _ => Probe::NotThis,
    }
}

// ---------------------------------------------------------------------------------------------
// parser

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    /// A (P/S)SUBSCRIBE / UNSUBSCRIBE family command.
    sub: bool,
    /// Its first confirmation (the response) was seen.
    answered: bool,
    /// Further confirmations expected (one-way rows).
    extra: usize,
}

/// The Redis parser.
pub struct RedisParser {
    opts: StmtOptions,
    req: Reader,
    resp: Reader,
    /// Partial inline command line.
    pending: VecDeque<Pending>,
    subscribed: bool,
}

impl RedisParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        let opts = StmtOptions::from_config(cfg);
        let cap = if opts.max_len == 0 { 4096 } else { opts.max_len };
        RedisParser {
            opts,
            req: Reader { keep_cap: cap, keep_n: MAX_ARGS, ..Reader::default() },
            resp: Reader { keep_cap: MAX_EXCEPTION, keep_n: 2, ..Reader::default() },
            pending: VecDeque::new(),
            subscribed: false,
        }
    }

    fn request(&mut self, args: &[Vec<u8>], total: usize) -> L7Message {
        let mut m = L7Message::new(L7Protocol::Redis, MessageKind::Request);
        // valid UTF-8 (the common case) borrows after the fast validation
        let words: Vec<std::borrow::Cow<'_, str>> = args
            .iter()
            .map(|a| std::str::from_utf8(a).map_or_else(|_| String::from_utf8_lossy(a), std::borrow::Cow::Borrowed))
            .collect();
        let cmd = words.first().map_or_else(String::new, |w| w.to_string());
        let upper: std::borrow::Cow<'_, str> = if cmd.bytes().any(|c| c.is_ascii_lowercase()) {
            cmd.to_ascii_uppercase().into()
        } else {
            cmd.as_str().into()
        };
        let hidden = mask(&upper, &words, self.opts.obfuscate);
        let mut shown = String::with_capacity(words.iter().map(|w| w.len() + 1).sum::<usize>());
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                shown.push(' ');
            }
            shown.push_str(if hidden.get(i).copied().unwrap_or(false) { "?" } else { w });
        }
        if total > args.len() {
            if !shown.is_empty() {
                shown.push(' ');
            }
            shown.push_str(super::sql::TRUNCATED);
        }
        m.request_resource = Some(cap_string(shown, self.opts.max_len));
        let sub = matches!(
            &*upper,
            "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE"
        );
        if sub && upper.ends_with("SUBSCRIBE") && !upper.contains("UN") {
            self.subscribed = true;
        }
        m.request_type = Some(cmd);
        self.pending.push_back(Pending { sub, answered: false, extra: total.saturating_sub(2) });
        m
    }

    /// The reply just read, as a message; the reader is reset for the next one.
    fn response(&mut self) -> L7Message {
        let r = std::mem::take(&mut self.resp.elems);
        let top = self.resp.top.unwrap_or(b'?');
        let error = if top == b'!' { r.first().cloned() } else { self.resp.error.take() };
        let is_push_shape = top == b'>' || (self.subscribed && top == b'*');
        // the first element names a pushed message (only looked at for push-shaped replies)
        let kind0 = r.first().filter(|_| is_push_shape).map(|k| String::from_utf8_lossy(k).to_ascii_lowercase());
        let front = self.pending.front().copied();
        let mut kind = MessageKind::Response;
        if is_push_shape && let Some(k) = &kind0 {
            if CONFIRMATIONS.contains(&k.as_str()) {
                match front {
                    Some(p) if p.sub && !p.answered => {
                        if p.extra == 0 {
                            self.pending.pop_front();
                        } else if let Some(f) = self.pending.front_mut() {
                            f.answered = true;
                        }
                    }
                    Some(p) if p.sub => {
                        kind = MessageKind::OneWay;
                        if p.extra <= 1 {
                            self.pending.pop_front();
                        } else if let Some(f) = self.pending.front_mut() {
                            f.extra -= 1;
                        }
                    }
                    _ => kind = MessageKind::OneWay,
                }
            } else if top == b'>' || matches!(k.as_str(), "message" | "pmessage" | "smessage") {
                kind = MessageKind::OneWay;
            } else {
                self.pending.pop_front();
            }
        } else {
            self.pending.pop_front();
        }
        let mut m = L7Message::new(L7Protocol::Redis, kind);
        m.response_result = Some(type_name(top).to_string());
        if kind == MessageKind::OneWay {
            m.request_type = kind0;
            m.request_resource = r.get(1).map(|c| self.opts.text(c));
        }
        match error {
            Some(e) => {
                m.response_status = Some(ResponseStatus::ServerError);
                let mut s = String::from_utf8_lossy(&e).into_owned();
                if top == b'!' {
                    s.insert(0, '!');
                }
                m.response_exception = Some(cap_string(s, MAX_EXCEPTION));
            }
            None => m.response_status = Some(ResponseStatus::Ok),
        }
        self.resp.recycle(r);
        m
    }
}

/// Which words of a command are shown as `?` (passwords; every argument after the key when
/// `obfuscate`).
fn mask(upper: &str, words: &[std::borrow::Cow<'_, str>], obfuscate: bool) -> Vec<bool> {
    let mut out = vec![false; words.len()];
    let is = |i: usize, w: &str| words.get(i).is_some_and(|x| x.eq_ignore_ascii_case(w));
    let mut hide = |i: usize| {
        if let Some(h) = out.get_mut(i) {
            *h = true;
        }
    };
    match upper {
        "AUTH" => {
            // AUTH password | AUTH username password
            if let Some(last) = words.len().checked_sub(1).filter(|l| *l >= 1) {
                hide(last);
            }
        }
        "HELLO" | "MIGRATE" => {
            let mut i = 1;
            while i < words.len() {
                if is(i, "AUTH") && upper == "HELLO" {
                    hide(i + 2);
                    i += 3;
                } else if is(i, "AUTH") {
                    hide(i + 1);
                    i += 2;
                } else if is(i, "AUTH2") {
                    hide(i + 2);
                    i += 3;
                } else {
                    i += 1;
                }
            }
        }
        "CONFIG" if is(1, "SET") => {
            let mut i = 2;
            while i + 1 < words.len() {
                if is(i, "REQUIREPASS") || is(i, "MASTERAUTH") || is(i, "MASTERUSER") {
                    hide(i + 1);
                }
                i += 2;
            }
        }
        "ACL" if is(1, "SETUSER") => {
            for (i, w) in words.iter().enumerate().skip(3) {
                if w.starts_with(['>', '<', '#', '!']) {
                    hide(i);
                }
            }
        }
        _ => {}
    }
    if obfuscate {
        for i in 2..words.len() {
            hide(i);
        }
    }
    out
}

impl L7Parser for RedisParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Redis
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 6379
    }

    fn probe(&self, data: &[u8], dir: Direction, flow: &FlowInfo) -> Probe {
        probe_start(data, dir, flow.server_port)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        let mut p = RedisParser::new(&L7Config::default());
        p.opts = self.opts;
        p.req.keep_cap = self.req.keep_cap;
        Box::new(p)
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        let client = ctx.dir == Direction::ClientToServer;
        let fresh = if client { self.req.top.is_none() && self.req.stack.is_empty() } else { false };
        if client && fresh && self.req.bulk_left == 0 && data.first().is_some_and(|c| *c != b'*') {
            // inline command
            let Some(nl) = memchr::memchr(b'\n', data) else {
                return if data.len() > MAX_LINE {
                    ParseOutcome::Error(ParseErrorKind::Oversize)
                } else {
                    ParseOutcome::NeedMore(0)
                };
            };
            let line = data.get(..nl).unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().any(|c| *c == 0 || (*c < 0x20 && *c != b'\t')) {
                return ParseOutcome::Error(ParseErrorKind::Malformed);
            }
            let args: Vec<Vec<u8>> =
                line.split(|c| *c == b' ' || *c == b'\t').filter(|w| !w.is_empty()).map(<[u8]>::to_vec).collect();
            if args.is_empty() {
                return ParseOutcome::Skip(nl + 1);
            }
            let n = args.len();
            return ParseOutcome::message(self.request(&args, n), nl + 1);
        }
        let reader = if client { &mut self.req } else { &mut self.resp };
        match reader.feed(data) {
            Ok(Step::Done(n)) => {
                let m = if client {
                    let args = std::mem::take(&mut self.req.elems);
                    let total = self.req.count;
                    let top = self.req.top;
                    if top != Some(b'*') || args.is_empty() {
                        self.req.recycle(args);
                        return ParseOutcome::Skip(n.max(1));
                    }
                    let m = self.request(&args, total);
                    self.req.recycle(args);
                    m
                } else {
                    self.response()
                };
                ParseOutcome::message(m, n)
            }
            Ok(Step::More(0)) => ParseOutcome::NeedMore(0),
            Ok(Step::More(n)) => ParseOutcome::Skip(n),
            Err(e) => {
                reader.reset();
                ParseOutcome::Error(e)
            }
        }
    }

    fn on_gap(&mut self, dir: Direction) {
        match dir {
            Direction::ClientToServer => self.req.reset(),
            Direction::ServerToClient => self.resp.reset(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tests

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::l7::sql::testutil::*;

    #[test]
    fn parse_len_is_str_parse() {
        let mut inputs: Vec<String> = [
            "",
            "-",
            "+",
            "0",
            "-0",
            "+7",
            "007",
            "1 ",
            " 1",
            "1a",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "+-1",
            "--1",
            "12345678901234567890",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for i in 0..2000u32 {
            inputs.push(i.to_string());
            inputs.push(format!("-{i}"));
            inputs.push(format!("{}", u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        }
        for s in &inputs {
            let want = if s.is_empty() || s.len() > 20 { None } else { s.parse::<i64>().ok() };
            assert_eq!(parse_len(s.as_bytes()), want, "{s:?}");
        }
        assert_eq!(parse_len(&[0xff, b'1']), None);
    }
    use deepflow_core::record::LogType;

    fn cmd(args: &[&str]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend(format!("${}\r\n{a}\r\n", a.len()).into_bytes());
        }
        v
    }

    fn conversation() -> Vec<(Direction, Vec<u8>)> {
        let pipeline = [cmd(&["SET", "k", "v"]), cmd(&["GET", "k"]), cmd(&["LPUSH", "l", "a", "b"])].concat();
        vec![
            (C, cmd(&["HELLO", "3", "AUTH", "default", "s3cret"])),
            (S, b"%1\r\n+server\r\n+redis\r\n".to_vec()),
            (C, cmd(&["AUTH", "hunter2"])),
            (S, b"+OK\r\n".to_vec()),
            (C, pipeline),
            (S, b"+OK\r\n$1\r\nv\r\n:2\r\n".to_vec()),
            (C, cmd(&["HGETALL", "h"])),
            (S, b"|1\r\n+ttl\r\n:3\r\n%2\r\n$1\r\na\r\n,1.5\r\n$1\r\nb\r\n(12345678901234567890\r\n".to_vec()),
            (C, cmd(&["INCR", "l"])),
            (S, b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n".to_vec()),
            (C, b"PING\r\n".to_vec()),
            (S, b"+PONG\r\n".to_vec()),
            (C, cmd(&["SMEMBERS", "s"])),
            (S, b"~2\r\n$1\r\nx\r\n#t\r\n".to_vec()),
            (C, cmd(&["LRANGE", "l", "0", "-1"])),
            (S, b"*?\r\n$1\r\na\r\n=7\r\ntxt:abc\r\n_\r\n.\r\n".to_vec()),
            (C, cmd(&["GET", "big"])),
            (S, b"$?\r\n;3\r\nabc\r\n;2\r\nde\r\n;0\r\n".to_vec()),
            (C, cmd(&["FCALL", "f", "0"])),
            (S, b"!21\r\nSYNTAX invalid syntax\r\n".to_vec()),
            (C, cmd(&["SUBSCRIBE", "c1", "c2"])),
            (S, b">3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n>3\r\n$9\r\nsubscribe\r\n$2\r\nc2\r\n:2\r\n".to_vec()),
            (S, b">3\r\n$7\r\nmessage\r\n$2\r\nc1\r\n$5\r\nhello\r\n".to_vec()),
            (C, cmd(&["PING"])),
            (S, b"+PONG\r\n".to_vec()),
        ]
    }

    #[test]
    fn full_conversation() {
        let rows = run(6379, &conversation());
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.request_type.clone().unwrap_or_default(),
                    r.request_resource.clone().unwrap_or_default(),
                    r.response_result.clone().unwrap_or_default(),
                )
            })
            .collect();
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            got,
            [
                s("HELLO", "HELLO 3 AUTH default ?", "% Map"),
                s("AUTH", "AUTH ?", "+ Simple string"),
                s("SET", "SET k v", "+ Simple string"),
                s("GET", "GET k", "$ Bulk string"),
                s("LPUSH", "LPUSH l a b", ": Integer"),
                s("HGETALL", "HGETALL h", "% Map"),
                s("INCR", "INCR l", "- Simple error"),
                s("PING", "PING", "+ Simple string"),
                s("SMEMBERS", "SMEMBERS s", "~ Set"),
                s("LRANGE", "LRANGE l 0 -1", "* Array"),
                s("GET", "GET big", "$ Bulk string"),
                s("FCALL", "FCALL f 0", "! Bulk error"),
                s("SUBSCRIBE", "SUBSCRIBE c1 c2", "> Push"),
                s("subscribe", "c2", "> Push"),
                s("message", "c1", "> Push"),
                s("PING", "PING", "+ Simple string"),
            ]
        );
        assert_eq!(rows[6].response_status, ResponseStatus::ServerError);
        assert_eq!(
            rows[6].response_exception.as_deref(),
            Some("-WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(rows[11].response_exception.as_deref(), Some("!SYNTAX invalid syntax"));
        assert_eq!(rows[14].log_type, LogType::Session);
        assert!(rows.iter().all(|r| r.response_status != ResponseStatus::Timeout));
        assert!(!rows.iter().any(|r| r.request_resource.as_deref().unwrap_or("").contains("s3cret")));
    }

    #[test]
    fn resp2_pubsub_and_obfuscation() {
        let segs = vec![
            (C, cmd(&["PSUBSCRIBE", "news.*"])),
            (S, b"*3\r\n$10\r\npsubscribe\r\n$6\r\nnews.*\r\n:1\r\n".to_vec()),
            (S, b"*4\r\n$8\r\npmessage\r\n$6\r\nnews.*\r\n$7\r\nnews.uk\r\n$2\r\nhi\r\n".to_vec()),
            (C, cmd(&["PING"])),
            (S, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n".to_vec()),
        ];
        let rows = run(6379, &segs);
        let t: Vec<_> = rows.iter().map(|r| (r.request_type.clone().unwrap(), r.log_type)).collect();
        assert_eq!(
            t,
            [
                ("PSUBSCRIBE".to_string(), LogType::Session),
                ("pmessage".to_string(), LogType::Session),
                ("PING".to_string(), LogType::Session)
            ]
        );
        assert!(rows[1].rrt.is_none() && rows[0].rrt.is_some() && rows[2].rrt.is_some());
        let cfg = L7Config { db_obfuscation: true, ..L7Config::default() };
        let (rows, _) = run_cfg(cfg, 6379, &[(C, cmd(&["HSET", "user:1", "name", "bob"])), (S, b":1\r\n".to_vec())]);
        assert_eq!(rows[0].request_resource.as_deref(), Some("HSET user:1 ? ?"));
        let m = |w: &[&str]| {
            let words: Vec<std::borrow::Cow<'_, str>> = w.iter().map(|s| std::borrow::Cow::Borrowed(*s)).collect();
            let hidden = mask(&w[0].to_ascii_uppercase(), &words, false);
            words.iter().zip(hidden).map(|(w, h)| if h { "?" } else { w }).collect::<Vec<_>>().join(" ")
        };
        assert_eq!(m(&["auth", "user", "pw"]), "auth user ?");
        assert_eq!(
            m(&["MIGRATE", "h", "1", "k", "0", "5", "AUTH2", "u", "pw", "KEYS", "a"]),
            "MIGRATE h 1 k 0 5 AUTH2 u ? KEYS a"
        );
        assert_eq!(m(&["CONFIG", "SET", "requirepass", "pw"]), "CONFIG SET requirepass ?");
        assert_eq!(m(&["ACL", "SETUSER", "bob", "on", ">pw", "~*"]), "ACL SETUSER bob on ? ~*");
    }

    #[test]
    fn big_values_are_streamed() {
        let big = "x".repeat(1 << 20);
        let req = cmd(&["SET", "k", &big]);
        let mut resp = b"*100000\r\n".to_vec();
        for i in 0..100_000 {
            resp.extend(format!("${}\r\n{i}\r\n", i.to_string().len()).into_bytes());
        }
        let segs: Vec<_> = req
            .chunks(1460)
            .map(|c| (C, c.to_vec()))
            .chain([(S, b"+OK\r\n".to_vec()), (C, cmd(&["LRANGE", "l", "0", "-1"]))])
            .chain(resp.chunks(1460).map(|c| (S, c.to_vec())))
            .collect();
        let cfg = L7Config { max_statement_length: 64, ..L7Config::default() };
        let (rows, counters) = run_cfg(cfg, 6379, &segs);
        assert_eq!(counters.oversize, 0);
        assert_eq!(rows.len(), 2);
        assert!(rows[0].request_resource.as_deref().unwrap().ends_with("..."));
        assert_eq!(rows[1].response_result.as_deref(), Some("* Array"));
    }

    #[test]
    fn split_and_truncation() {
        assert_split_invariant(L7Config::default(), 6379, &conversation());
        assert_truncation_safe(6379, &conversation());
    }

    #[test]
    fn fuzz_50k() {
        // two halves of the conversation keep the (debug-build) run short
        let c = conversation();
        fuzz(6379, &[c[..12].to_vec(), c[12..].to_vec()], 50_000, 0x5eed_6379);
    }
}
