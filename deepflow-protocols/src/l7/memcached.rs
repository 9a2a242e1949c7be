//! Memcached text and binary protocols (`memcached`).
//!
//! Text: `\r\n`-terminated command lines; storage commands (and meta `ms`) carry a data block
//! whose size the line announces, skipped exactly; retrieval answers (`VALUE ...` blocks,
//! `STAT` lines, meta `VA`) run until `END` (or the single meta line) and are consumed
//! without buffering. `noreply` (and meta `q`) commands are one-way rows; `quit` too.
//! Binary: 24-byte headers (magic 0x80 request / 0x81 response), value bodies skipped;
//! quiet opcodes (GetQ, SetQ, ...) are one-way rows and so are their (error or hit) replies;
//! the Stat series ends at the empty-key reply.
//!
//! Fields (L7_FIELDS.md "Memcached"): `request_type` = command word (lowercase; binary
//! opcodes named like the text commands), `request_resource` = the whole first command line
//! (binary: `<command> <key>`), `response_result` = the whole first response line (binary:
//! status name), `response_exception` = the first token after `ERROR`/`CLIENT_ERROR`/
//! `SERVER_ERROR` (the keyword itself when nothing follows; the full text is attribute
//! `error_message`). Status: `SERVER_ERROR` → server_error; `ERROR`, `CLIENT_ERROR` →
//! client_error; `NOT_FOUND` → unknown; anything else → ok. Binary (beyond L7_FIELDS.md):
//! `response_code` = status, `request_id` = opaque, same status rules by meaning.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::collections::VecDeque;

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::sql::{StmtOptions, be16, be32};
use super::{L7Message, L7Parser, MessageKind, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;

// ---------------------------------------------------------------------------------------------
// constants

/// memcached's own key line limit is 2048; meta commands with many flags stay below this.
const MAX_LINE: usize = 8192;
const BIN_HEADER: usize = 24;
/// Largest binary body accepted (memcached's default item size limit is 1 MB; allow 64 MB).
const MAX_BODY: usize = 64 << 20;

const STORAGE: [&str; 6] = ["set", "add", "replace", "append", "prepend", "cas"];
const RETRIEVAL: [&str; 4] = ["get", "gets", "gat", "gats"];
const COMMANDS: [&str; 27] = [
    "set",
    "add",
    "replace",
    "append",
    "prepend",
    "cas",
    "get",
    "gets",
    "gat",
    "gats",
    "delete",
    "incr",
    "decr",
    "touch",
    "stats",
    "version",
    "flush_all",
    "verbosity",
    "quit",
    "mg",
    "ms",
    "md",
    "ma",
    "mn",
    "me",
    "shutdown",
    "cache_memlimit",
];

/// Binary opcode → command name (text-protocol spelling where one exists).
pub fn opcode_name(op: u8) -> Option<&'static str> {
    Some(match op {
        0x00 => "get",
        0x01 => "set",
        0x02 => "add",
        0x03 => "replace",
        0x04 => "delete",
        0x05 => "incr",
        0x06 => "decr",
        0x07 => "quit",
        0x08 => "flush",
        0x09 => "getq",
        0x0a => "noop",
        0x0b => "version",
        0x0c => "getk",
        0x0d => "getkq",
        0x0e => "append",
        0x0f => "prepend",
        0x10 => "stat",
        0x11 => "setq",
        0x12 => "addq",
        0x13 => "replaceq",
        0x14 => "deleteq",
        0x15 => "incrq",
        0x16 => "decrq",
        0x17 => "quitq",
        0x18 => "flushq",
        0x19 => "appendq",
        0x1a => "prependq",
        0x1b => "verbosity",
        0x1c => "touch",
        0x1d => "gat",
        0x1e => "gatq",
        0x20 => "sasl_list_mechs",
        0x21 => "sasl_auth",
        0x22 => "sasl_step",
        _ => return None,
    })
}

fn is_quiet(op: u8) -> bool {
    matches!(op, 0x09 | 0x0d | 0x11..=0x1a | 0x1e)
}

/// Binary status → (name, response status).
fn bin_status(s: u16) -> (&'static str, ResponseStatus) {
    match s {
        0x00 => ("No error", ResponseStatus::Ok),
        0x01 => ("Key not found", ResponseStatus::Unknown),
        0x02 => ("Key exists", ResponseStatus::Ok),
        0x03 => ("Value too large", ResponseStatus::ClientError),
        0x04 => ("Invalid arguments", ResponseStatus::ClientError),
        0x05 => ("Item not stored", ResponseStatus::Ok),
        0x06 => ("Incr/Decr on non-numeric value", ResponseStatus::ClientError),
        0x07 => ("The vbucket belongs to another server", ResponseStatus::ServerError),
        0x08 => ("Authentication error", ResponseStatus::ClientError),
        0x09 => ("Authentication continue", ResponseStatus::Ok),
        0x20 => ("Authentication required", ResponseStatus::ClientError),
        0x21 => ("Further authentication steps required", ResponseStatus::Ok),
        0x81 => ("Unknown command", ResponseStatus::ClientError),
        0x82 => ("Out of memory", ResponseStatus::ServerError),
        0x83 => ("Not supported", ResponseStatus::ClientError),
        0x84 => ("Internal error", ResponseStatus::ServerError),
        0x85 => ("Busy", ResponseStatus::ServerError),
        0x86 => ("Temporary failure", ResponseStatus::ServerError),
        _ => ("Unknown status", ResponseStatus::ServerError),
    }
}

fn parse_usize(w: &[u8]) -> Option<usize> {
    if w.is_empty() || w.len() > 12 {
        return None;
    }
    std::str::from_utf8(w).ok()?.parse().ok()
}

fn words(line: &[u8]) -> Vec<&[u8]> {
    line.split(|c| *c == b' ').filter(|w| !w.is_empty()).collect()
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start like a memcached request (text command word or binary request header)
/// or, on port 11211, a reply?
pub fn probe_start(data: &[u8], dir: Direction, port: u16) -> Probe {
    let Some(&first) = data.first() else { return Probe::NeedMore };
    let magic = if dir == Direction::ClientToServer { 0x80 } else { 0x81 };
    if first == magic {
        if data.len() < BIN_HEADER {
            return Probe::NeedMore;
        }
        let ok = data.get(1).is_some_and(|op| opcode_name(*op).is_some())
            && data.get(5) == Some(&0)
            && be32(data, 8).is_some_and(|t| {
                let t = t as usize;
                t <= MAX_BODY
                    && t >= usize::from(be16(data, 2).unwrap_or(0)) + usize::from(data.get(4).copied().unwrap_or(0))
            });
        return if ok { Probe::Match } else { Probe::NotThis };
    }
    let word: Vec<u8> = data.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').copied().collect();
    let Some(&after) = data.get(word.len()) else {
        return if word.len() < 16 { Probe::NeedMore } else { Probe::NotThis };
    };
    if after != b' ' && after != b'\r' {
        return Probe::NotThis;
    }
    let w = std::str::from_utf8(&word).unwrap_or_default();
    match dir {
        Direction::ClientToServer if COMMANDS.contains(&w) => Probe::Match,
        // on the usual port any text line will do (a connection may start with a bad command)
        Direction::ClientToServer if port == 11211 && !word.is_empty() => match memchr::memchr(b'\n', data) {
            Some(n) if data.get(..n).is_some_and(|l| l.iter().all(|c| *c >= 0x20 || *c == b'\r')) => Probe::Match,
            None if data.len() < 256 => Probe::NeedMore,
            _ => Probe::NotThis,
        },
        Direction::ServerToClient
            if port == 11211
                && matches!(w, "VALUE" | "STORED" | "END" | "VERSION" | "STAT" | "DELETED" | "NOT_FOUND") =>
        {
            Probe::Match
        }
        _ => Probe::NotThis,
    }
}

// ---------------------------------------------------------------------------------------------
// parser

/// What the next text reply looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// One line.
    Line,
    /// `VALUE` blocks / `STAT` lines until `END`.
    UntilEnd,
    /// Meta `mg`: one line, plus a data block after `VA n`.
    Meta,
}

/// The memcached parser.
pub struct MemcachedParser {
    opts: StmtOptions,
    binary: Option<bool>,
    skip: [usize; 2],
    pending: VecDeque<Expect>,
    /// First line of a multi-line reply in progress.
    multi: Option<String>,
    /// Opaques of quiet binary requests (their replies are one-way).
    quiet: VecDeque<u32>,
    /// A binary Stat series is in progress.
    stat: bool,
    /// A message held back until its data block / value has been skipped.
    held: [Option<L7Message>; 2],
}

impl MemcachedParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        MemcachedParser {
            opts: StmtOptions::from_config(cfg),
            binary: None,
            skip: [0; 2],
            pending: VecDeque::new(),
            multi: None,
            quiet: VecDeque::new(),
            stat: false,
            held: [None, None],
        }
    }

    fn line_of(data: &[u8]) -> Result<Option<(&[u8], usize)>, ParseErrorKind> {
        let Some(nl) = memchr::memchr(b'\n', data.get(..data.len().min(MAX_LINE + 2)).unwrap_or_default()) else {
            return if data.len() > MAX_LINE { Err(ParseErrorKind::Oversize) } else { Ok(None) };
        };
        let line = data.get(..nl).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().any(|c| *c < 0x20 && *c != b'\t') {
            return Err(ParseErrorKind::Malformed);
        }
        Ok(Some((line, nl + 1)))
    }

    fn text_request(&mut self, line: &[u8]) -> Result<(L7Message, usize), ParseErrorKind> {
        let w = words(line);
        let cmd = String::from_utf8_lossy(w.first().ok_or(ParseErrorKind::Malformed)?).to_ascii_lowercase();
        if !cmd.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return Err(ParseErrorKind::Malformed);
        }
        let mut data_block = 0;
        let mut expect = Expect::Line;
        let last = w.last().copied().unwrap_or_default();
        let mut one_way = last == b"noreply" || cmd == "quit";
        if STORAGE.contains(&cmd.as_str()) {
            let n = w.get(4).and_then(|b| parse_usize(b)).ok_or(ParseErrorKind::Malformed)?;
            data_block = n + 2;
        } else if RETRIEVAL.contains(&cmd.as_str()) || cmd == "stats" {
            expect = Expect::UntilEnd;
        } else if cmd == "ms" {
            let n = w.get(2).and_then(|b| parse_usize(b)).ok_or(ParseErrorKind::Malformed)?;
            data_block = n + 2;
        } else if cmd == "mg" {
            expect = Expect::Meta;
        }
        if matches!(cmd.as_str(), "mg" | "ms" | "md" | "ma" | "mn") && w.iter().skip(1).any(|f| *f == b"q") {
            one_way = true;
        }
        let mut m =
            L7Message::new(L7Protocol::Memcached, if one_way { MessageKind::OneWay } else { MessageKind::Request });
        m.request_resource = Some(self.resource(line, &w));
        m.request_type = Some(cmd);
        if one_way {
            m.response_status = Some(ResponseStatus::Ok);
        } else {
            self.pending.push_back(expect);
        }
        Ok((m, data_block))
    }

    /// The command line as shown (storage values are never in it; with obfuscation the
    /// numeric arguments of incr/decr are hidden).
    fn resource(&self, line: &[u8], w: &[&[u8]]) -> String {
        if self.opts.obfuscate && w.len() > 2 && matches!(w.first().copied(), Some(b"incr" | b"decr")) {
            let mut v: Vec<String> = w.iter().map(|x| String::from_utf8_lossy(x).into_owned()).collect();
            if let Some(x) = v.get_mut(2) {
                *x = "?".into();
            }
            return self.opts.text(v.join(" ").as_bytes());
        }
        self.opts.text(line)
    }

    /// One reply line: (message if the reply is complete, data block bytes to skip).
    fn text_reply(&mut self, line: &[u8]) -> Result<(Option<L7Message>, usize), ParseErrorKind> {
        let w = words(line);
        let first = w.first().copied().unwrap_or_default();
        let expect = self.pending.front().copied();
        let text = self.opts.text(line);
        let is_error = matches!(first, b"ERROR" | b"CLIENT_ERROR" | b"SERVER_ERROR");
        if !is_error {
            match (first, expect) {
                (b"VALUE", _) => {
                    let n = w.get(3).and_then(|b| parse_usize(b)).ok_or(ParseErrorKind::Malformed)?;
                    self.multi.get_or_insert(text);
                    return Ok((None, n + 2));
                }
                (b"STAT", _) => {
                    self.multi.get_or_insert(text);
                    return Ok((None, 0));
                }
                (b"VA", _) => {
                    let n = w.get(1).and_then(|b| parse_usize(b)).ok_or(ParseErrorKind::Malformed)?;
                    let m = self.finish(text, ResponseStatus::Ok);
                    return Ok((Some(m), n + 2));
                }
                (b"END", _) => {
                    let first_line = self.multi.take().unwrap_or(text);
                    return Ok((Some(self.finish(first_line, ResponseStatus::Ok)), 0));
                }
                (_, Some(Expect::UntilEnd)) if self.multi.is_some() => return Err(ParseErrorKind::Malformed),
                _ => {}
            }
        }
        let status = match first {
            b"SERVER_ERROR" => ResponseStatus::ServerError,
            b"ERROR" | b"CLIENT_ERROR" => ResponseStatus::ClientError,
            b"NOT_FOUND" | b"NF" => ResponseStatus::Unknown,
            _ => ResponseStatus::Ok,
        };
        self.multi = None;
        let mut m = self.finish(text, status);
        if is_error {
            let tok = w.get(1).copied().unwrap_or(first);
            m.response_exception = Some(String::from_utf8_lossy(tok).into_owned());
            if let Some(rest) = line.get(first.len()..).map(<[u8]>::trim_ascii).filter(|r| !r.is_empty()) {
                m.attr("error_message", self.opts.text(rest));
            }
        }
        Ok((Some(m), 0))
    }

    fn finish(&mut self, first_line: String, status: ResponseStatus) -> L7Message {
        self.pending.pop_front();
        let mut m = L7Message::new(L7Protocol::Memcached, MessageKind::Response);
        m.response_result = Some(first_line);
        m.response_status = Some(status);
        m
    }

    /// One binary packet header (+ extras + key): (message or none, bytes consumed, to skip).
    fn binary(
        &mut self,
        data: &[u8],
        dir: Direction,
    ) -> Result<Option<(Option<L7Message>, usize, usize)>, ParseErrorKind> {
        let m = ParseErrorKind::Malformed;
        if data.len() < BIN_HEADER {
            return Ok(None);
        }
        let magic = *data.first().ok_or(m)?;
        let want_magic = if dir == Direction::ClientToServer { 0x80 } else { 0x81 };
        if magic != want_magic {
            return Err(m);
        }
        let op = *data.get(1).ok_or(m)?;
        let key_len = usize::from(be16(data, 2).ok_or(m)?);
        let extras = usize::from(*data.get(4).ok_or(m)?);
        let status = be16(data, 6).ok_or(m)?;
        let total = be32(data, 8).ok_or(m)? as usize;
        let opaque = be32(data, 12).ok_or(m)?;
        if total > MAX_BODY || total < key_len + extras {
            return Err(m);
        }
        let head = BIN_HEADER + extras + key_len;
        if data.len() < head {
            return Ok(None);
        }
        let key = data.get(BIN_HEADER + extras..head).unwrap_or_default();
        let avail = data.len().min(BIN_HEADER + total);
        let skip = BIN_HEADER + total - avail;
        let name = opcode_name(op).unwrap_or("unknown");
        let msg = if dir == Direction::ClientToServer {
            let quiet = is_quiet(op);
            let mut msg =
                L7Message::new(L7Protocol::Memcached, if quiet { MessageKind::OneWay } else { MessageKind::Request });
            msg.request_type = Some(name.to_string());
            msg.request_resource =
                Some(if key.is_empty() { name.to_string() } else { format!("{name} {}", self.opts.text(key)) });
            msg.request_id = Some(opaque);
            if quiet {
                msg.response_status = Some(ResponseStatus::Ok);
                if self.quiet.len() >= 256 {
                    self.quiet.pop_front();
                }
                self.quiet.push_back(opaque);
            }
            if op == 0x10 {
                self.stat = true;
            }
            Some(msg)
        } else {
            if op == 0x10 && self.stat && !key.is_empty() {
                return Ok(Some((None, avail, skip))); // one entry of the Stat series
            }
            if op == 0x10 {
                self.stat = false;
            }
            let quiet = self.quiet.iter().position(|o| *o == opaque).map(|i| self.quiet.remove(i)).is_some();
            let (sname, st) = bin_status(status);
            let mut msg =
                L7Message::new(L7Protocol::Memcached, if quiet { MessageKind::OneWay } else { MessageKind::Response });
            if quiet {
                msg.request_type = Some(name.to_string());
            }
            msg.request_id = Some(opaque);
            msg.response_code = Some(i32::from(status));
            msg.response_status = Some(st);
            msg.response_result = Some(sname.to_string());
            if st != ResponseStatus::Ok {
                msg.response_exception = Some(sname.to_string());
            }
            Some(msg)
        };
        Ok(Some((msg, avail, skip)))
    }
}

impl L7Parser for MemcachedParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Memcached
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 11211
    }

    fn probe(&self, data: &[u8], dir: Direction, flow: &FlowInfo) -> Probe {
        probe_start(data, dir, flow.server_port)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        let mut p = MemcachedParser::new(&L7Config::default());
        p.opts = self.opts;
        Box::new(p)
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
        let Some(&first) = data.first() else { return ParseOutcome::NeedMore(1) };
        let binary = *self.binary.get_or_insert(first == 0x80 || first == 0x81);
        let set_skip = |s: &mut [usize; 2], n: usize| {
            if let Some(x) = s.get_mut(d) {
                *x = n;
            }
        };
        if binary {
            return match self.binary(data, ctx.dir) {
                Ok(None) => ParseOutcome::NeedMore(BIN_HEADER.saturating_sub(data.len()).max(1)),
                Ok(Some((msg, consumed, skip))) => {
                    set_skip(&mut self.skip, skip);
                    match msg {
                        Some(m) if skip > 0 => {
                            if let Some(h) = self.held.get_mut(d) {
                                *h = Some(m);
                            }
                            ParseOutcome::Skip(consumed)
                        }
                        Some(m) => ParseOutcome::message(m, consumed),
                        None => ParseOutcome::Skip(consumed),
                    }
                }
                Err(e) => ParseOutcome::Error(e),
            };
        }
        let (line, n) = match Self::line_of(data) {
            Ok(Some(x)) => x,
            Ok(None) => return ParseOutcome::NeedMore(0),
            Err(e) => return ParseOutcome::Error(e),
        };
        if line.is_empty() {
            return ParseOutcome::Skip(n);
        }
        let res = match ctx.dir {
            Direction::ClientToServer => self.text_request(line).map(|(m, skip)| (Some(m), skip)),
            Direction::ServerToClient => self.text_reply(line),
        };
        match res {
            Ok((msg, skip)) => {
                // the data block is skipped (values are never shown)
                let here = skip.min(data.len() - n);
                set_skip(&mut self.skip, skip - here);
                match msg {
                    // held back until the rest of its data block has been skipped
                    Some(m) if skip > here => {
                        if let Some(h) = self.held.get_mut(d) {
                            *h = Some(m);
                        }
                        ParseOutcome::Skip(n + here)
                    }
                    Some(m) => ParseOutcome::message(m, n + here),
                    None => ParseOutcome::Skip(n + here),
                }
            }
            Err(e) => ParseOutcome::Error(e),
        }
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(s) = self.skip.get_mut(dir.index()) {
            *s = 0;
        }
        if let Some(h) = self.held.get_mut(dir.index()) {
            *h = None;
        }
        if dir == Direction::ServerToClient && self.multi.take().is_some() {
            self.pending.pop_front();
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
    use deepflow_core::record::LogType;

    fn text_conversation() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C, b"set user:1 0 60 5\r\nhello\r\n".to_vec()),
            (S, b"STORED\r\n".to_vec()),
            (C, b"get user:1 user:2 user:3\r\n".to_vec()),
            (S, b"VALUE user:1 0 5\r\nhello\r\nVALUE user:3 3 2\r\nab\r\nEND\r\n".to_vec()),
            (C, b"gets nope\r\n".to_vec()),
            (S, b"END\r\n".to_vec()),
            (C, b"cas user:1 0 0 3 12345\r\nxyz\r\nappend user:1 0 0 1 noreply\r\n!\r\n".to_vec()),
            (S, b"EXISTS\r\n".to_vec()),
            (C, b"incr counter 5\r\ndelete gone\r\n".to_vec()),
            (S, b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\nNOT_FOUND\r\n".to_vec()),
            (C, b"touch user:1 10\r\ngat 100 user:1\r\n".to_vec()),
            (S, b"TOUCHED\r\nVALUE user:1 0 3\r\nxyz\r\nEND\r\n".to_vec()),
            (C, b"stats\r\n".to_vec()),
            (S, b"STAT pid 1\r\nSTAT uptime 9\r\nEND\r\n".to_vec()),
            (C, b"bogus\r\n".to_vec()),
            (S, b"ERROR\r\n".to_vec()),
            (C, b"set big 0 0 3\r\nabc\r\n".to_vec()),
            (S, b"SERVER_ERROR out of memory storing object\r\n".to_vec()),
            (C, b"mg user:1 v\r\nversion\r\n".to_vec()),
            (S, b"VA 3\r\nxyz\r\nVERSION 1.6.21\r\n".to_vec()),
            (C, b"quit\r\n".to_vec()),
        ]
    }

    #[test]
    fn text_protocol() {
        let rows = run(11211, &text_conversation());
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.request_type.clone().unwrap_or_default(),
                    r.response_result.clone().unwrap_or_default(),
                    r.response_status,
                )
            })
            .collect();
        let s = |a: &str, b: &str, st| (a.to_string(), b.to_string(), st);
        use ResponseStatus::*;
        assert_eq!(
            got,
            [
                s("set", "STORED", Ok),
                s("get", "VALUE user:1 0 5", Ok),
                s("gets", "END", Ok),
                s("append", "", Ok),
                s("cas", "EXISTS", Ok),
                s("incr", "CLIENT_ERROR cannot increment or decrement non-numeric value", ClientError),
                s("delete", "NOT_FOUND", Unknown),
                s("touch", "TOUCHED", Ok),
                s("gat", "VALUE user:1 0 3", Ok),
                s("stats", "STAT pid 1", Ok),
                s("bogus", "ERROR", ClientError),
                s("set", "SERVER_ERROR out of memory storing object", ServerError),
                s("mg", "VA 3", Ok),
                s("version", "VERSION 1.6.21", Ok),
                s("quit", "", Ok),
            ]
        );
        assert_eq!(rows[1].request_resource.as_deref(), Some("get user:1 user:2 user:3"));
        assert_eq!(rows[3].log_type, LogType::Session);
        assert_eq!(rows[5].response_exception.as_deref(), Some("cannot"));
        assert_eq!(rows[11].response_exception.as_deref(), Some("out"));
        assert_eq!(rows[11].attribute_values, ["out of memory storing object"]);
        assert_eq!(rows[10].response_exception.as_deref(), Some("ERROR"));
    }

    fn bin(magic: u8, op: u8, key: &[u8], extras: &[u8], value: &[u8], status: u16, opaque: u32) -> Vec<u8> {
        let mut v = vec![magic, op];
        v.extend_from_slice(&(key.len() as u16).to_be_bytes());
        v.push(extras.len() as u8);
        v.push(0);
        v.extend_from_slice(&status.to_be_bytes());
        v.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
        v.extend_from_slice(&opaque.to_be_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(extras);
        v.extend_from_slice(key);
        v.extend_from_slice(value);
        v
    }

    fn binary_conversation() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C, bin(0x80, 0x01, b"k1", &[0; 8], b"value", 0, 1)),
            (S, bin(0x81, 0x01, b"", &[], b"", 0, 1)),
            (
                C,
                [
                    bin(0x80, 0x09, b"a", &[], b"", 0, 2),
                    bin(0x80, 0x09, b"k1", &[], b"", 0, 3),
                    bin(0x80, 0x0a, b"", &[], b"", 0, 4),
                ]
                .concat(),
            ),
            (S, [bin(0x81, 0x09, b"", &[0; 4], b"value", 0, 3), bin(0x81, 0x0a, b"", &[], b"", 0, 4)].concat()),
            (C, bin(0x80, 0x00, b"missing", &[], b"", 0, 5)),
            (S, bin(0x81, 0x00, b"", &[], b"Not found", 1, 5)),
            (C, bin(0x80, 0x05, b"k1", &[0; 20], b"", 0, 6)),
            (S, bin(0x81, 0x05, b"", &[], b"Non-numeric server-side value for incr or decr", 6, 6)),
            (C, bin(0x80, 0x10, b"", &[], b"", 0, 7)),
            (S, [bin(0x81, 0x10, b"pid", &[], b"42", 0, 7), bin(0x81, 0x10, b"", &[], b"", 0, 7)].concat()),
        ]
    }

    #[test]
    fn binary_protocol() {
        let rows = run(11211, &binary_conversation());
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.request_type.clone().unwrap_or_default(),
                    r.request_id,
                    r.response_code,
                    r.response_status,
                    r.log_type,
                )
            })
            .collect();
        use ResponseStatus::*;
        assert_eq!(
            got,
            [
                ("set".to_string(), Some(1), Some(0), Ok, LogType::Session),
                ("getq".to_string(), Some(2), None, Ok, LogType::Session),
                ("getq".to_string(), Some(3), None, Ok, LogType::Session),
                ("getq".to_string(), Some(3), Some(0), Ok, LogType::Session),
                ("noop".to_string(), Some(4), Some(0), Ok, LogType::Session),
                ("get".to_string(), Some(5), Some(1), Unknown, LogType::Session),
                ("incr".to_string(), Some(6), Some(6), ClientError, LogType::Session),
                ("stat".to_string(), Some(7), Some(0), Ok, LogType::Session),
            ]
        );
        assert_eq!(rows[0].request_resource.as_deref(), Some("set k1"));
        assert_eq!(rows[6].response_exception.as_deref(), Some("Incr/Decr on non-numeric value"));
    }

    #[test]
    fn big_values_skipped() {
        let value = vec![b'v'; 500_000];
        let mut req = b"set big 0 0 500000\r\n".to_vec();
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\n");
        let mut resp = b"VALUE big 0 500000\r\n".to_vec();
        resp.extend_from_slice(&value);
        resp.extend_from_slice(b"\r\nEND\r\n");
        let segs: Vec<_> = req
            .chunks(1460)
            .map(|c| (C, c.to_vec()))
            .chain([(S, b"STORED\r\n".to_vec()), (C, b"get big\r\n".to_vec())])
            .chain(resp.chunks(1460).map(|c| (S, c.to_vec())))
            .collect();
        let (rows, counters) = run_cfg(L7Config::default(), 11211, &segs);
        assert_eq!(counters.oversize, 0);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].response_result.as_deref(), Some("VALUE big 0 500000"));
        let bsegs: Vec<_> = bin(0x80, 0x01, b"big", &[0; 8], &value, 0, 9)
            .chunks(1460)
            .map(|c| (C, c.to_vec()))
            .chain([(S, bin(0x81, 0x01, b"", &[], b"", 0, 9))])
            .collect();
        let (rows, counters) = run_cfg(L7Config::default(), 11211, &bsegs);
        assert_eq!(counters.oversize, 0);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].response_status, ResponseStatus::Ok);
    }

    #[test]
    fn split_and_truncation() {
        assert_split_invariant(L7Config::default(), 11211, &text_conversation());
        assert_split_invariant(L7Config::default(), 11211, &binary_conversation());
        assert_truncation_safe(11211, &text_conversation());
        assert_truncation_safe(11211, &binary_conversation());
    }

    #[test]
    fn fuzz_50k() {
        let t = text_conversation();
        fuzz(11211, &[t[..10].to_vec(), t[10..].to_vec(), binary_conversation()], 50_000, 0x5eed_11211);
    }
}
