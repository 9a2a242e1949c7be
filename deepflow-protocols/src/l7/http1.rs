//! HTTP/1.0 and HTTP/1.1 (`http`).
//!
//! Parses request and status lines and headers, and skips bodies exactly: `Content-Length`,
//! chunked transfer coding (chunk extensions, trailers), bodiless responses (HEAD, 1xx, 204,
//! 304), close-delimited response bodies (emitted at flow end), `Expect: 100-continue`
//! (interim 1xx responses are skipped, a final response that rejects the body cancels it),
//! pipelining, and `Upgrade` (a `101` response is logged, then the flow is no longer parsed;
//! same for a successful `CONNECT`). A message is emitted when its body ends, so that
//! `rrt` spans until the end of the response.
//!
//! Fields follow L7_FIELDS.md "HTTP/1"; the user agent goes to attribute `http_user_agent`.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::Arc;

use deepflow_core::record::L7Protocol;
use deepflow_core::{Direction, FlowInfo};
use memchr::memchr;

use super::http2::{Http2Parser, UpgradeRequest};
use super::{L7Message, L7Parser, MessageKind, ParseCtx, ParseOutcome, Probe, http_status};
use crate::config::L7Config;
use crate::error::ParseErrorKind;
use crate::trace::{TraceConfig, TraceExtractor};

const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"HEAD",
    b"OPTIONS",
    b"PATCH",
    b"TRACE",
    b"CONNECT",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"PURGE",
    b"REPORT",
    b"SEARCH",
];

/// Request methods remembered for answering responses (HEAD / CONNECT body rules).
const MAX_REMEMBERED_REQUESTS: usize = 256;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 * 1024;

#[derive(Debug)]
struct Shared {
    trace: TraceConfig,
    trace_filter: crate::trace::TraceFilter,
    endpoint_segments: usize,
    max_header: usize,
}

/// What a response needs to know about the request it answers.
#[derive(Debug, Clone, Copy)]
struct ReqInfo {
    head: bool,
    connect: bool,
}

#[derive(Debug)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Expecting trailer lines up to the empty line.
    Trailers,
}

#[derive(Debug)]
enum DirState {
    /// Waiting for a start line + headers. `scan` = bytes already searched for the end.
    Headers { scan: usize, resync: bool },
    /// Skipping a `Content-Length` body.
    Body { msg: Box<L7Message>, remaining: u64, received: u64, expect_continue: bool },
    /// Skipping a chunked body.
    Chunked { msg: Box<L7Message>, chunk: Chunk },
    /// Response body delimited by the end of the connection.
    UntilClose { msg: Box<L7Message> },
}

impl Default for DirState {
    fn default() -> Self {
        DirState::Headers { scan: 0, resync: false }
    }
}

/// The HTTP/1 parser (prototype and per-flow instance).
#[derive(Debug)]
pub struct Http1Parser {
    shared: Arc<Shared>,
    dirs: [DirState; 2],
    requests: VecDeque<ReqInfo>,
    done: bool,
    /// The last request that asked for `Upgrade: h2c` (its HTTP/2 stream 1 continues it).
    h2c_request: Option<Box<UpgradeRequest>>,
    /// Set by a `101` that accepted `h2c`: handed to the HTTP/2 parser by [`L7Parser::upgrade`].
    h2c_upgraded: Option<Box<UpgradeRequest>>,
}

impl Http1Parser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        Http1Parser {
            shared: Arc::new(Shared {
                trace: cfg.trace.clone(),
                trace_filter: crate::trace::TraceFilter::new(&cfg.trace),
                endpoint_segments: cfg.http_endpoint_segments,
                max_header: cfg.max_buffered_bytes.max(1024),
            }),
            dirs: [DirState::default(), DirState::default()],
            requests: VecDeque::new(),
            done: false,
            h2c_request: None,
            h2c_upgraded: None,
        }
    }
}

/// Start-line check shared by probe and resync: `Match` for a known method + space or
/// `HTTP/1.`, `NeedMore` for a proper prefix of one.
fn start_line_probe(data: &[u8]) -> Probe {
    let mut need = false;
    let resp: &[u8] = b"HTTP/1.";
    if data.len() >= resp.len() {
        if data.starts_with(resp) {
            return Probe::Match;
        }
    } else if resp.starts_with(data) {
        need = true;
    }
    for m in METHODS {
        let n = m.len();
        match data.get(..n) {
            Some(p) if p == *m => match data.get(n) {
                Some(b' ') => return Probe::Match,
                Some(_) => {}
                None => need = true,
            },
            Some(_) => {}
            None => {
                if m.starts_with(data) {
                    need = true;
                }
            }
        }
    }
    if need { Probe::NeedMore } else { Probe::NotThis }
}

/// `/` + the first `n` non-empty segments of the path of `target` (query and fragment
/// dropped, absolute-form scheme and authority removed). `None` when `n` is 0.
pub fn http_endpoint(target: &str, n: usize) -> Option<String> {
    if n == 0 {
        return None;
    }
    let mut path = target;
    // origin-form (`/...`, nearly every request) has no scheme to look for
    if !path.starts_with('/')
        && let Some(p) = memchr::memmem::find(path.as_bytes(), b"://")
    {
        let after = path.get(p + 3..).unwrap_or("");
        path = after.find('/').and_then(|i| after.get(i..)).unwrap_or("/");
    }
    let end = memchr::memchr2(b'?', b'#', path.as_bytes()).unwrap_or(path.len());
    let path = path.get(..end).unwrap_or("");
    // Fast path: `/seg/seg...` without empty segments: the endpoint is a prefix of the path,
    // up to the end of segment `n`, without a trailing `/`.
    let b = path.as_bytes();
    if b.first() == Some(&b'/') {
        let mut seen = 0;
        let mut cut = b.len();
        let mut prev_slash = true;
        let mut plain = true;
        for (i, &c) in b.iter().enumerate().skip(1) {
            if c == b'/' {
                if prev_slash {
                    plain = false;
                    break;
                }
                seen += 1;
                if seen == n {
                    cut = i;
                    break;
                }
            }
            prev_slash = c == b'/';
        }
        if plain {
            let e = path.get(..cut).unwrap_or("/");
            let e = if e.len() > 1 { e.strip_suffix('/').unwrap_or(e) } else { "/" };
            return Some(e.to_owned());
        }
    }
    Some(endpoint_of_segments(path, n))
}

/// The general form of [`http_endpoint`] over a path without query: `/` + the first `n`
/// non-empty segments, joined by `/`.
fn endpoint_of_segments(path: &str, n: usize) -> String {
    let mut out = String::with_capacity(path.len().min(64));
    for seg in path.split('/').filter(|s| !s.is_empty()).take(n) {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(s, |e| e + 1);
    b.get(s..e.max(s)).unwrap_or_default()
}

fn lossy(b: &[u8]) -> String {
    // valid UTF-8 (nearly always ASCII) takes the fast validation and one copy
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Finds the end of the header block starting at 0, scanning from `scan`. Returns
/// `Ok(end)` (bytes including the empty line) or `Err(new_scan)`.
fn find_header_end(data: &[u8], mut scan: usize) -> Result<usize, usize> {
    loop {
        let rest = data.get(scan..).unwrap_or_default();
        let Some(nl) = memchr(b'\n', rest) else { return Err(scan) };
        let line_end = scan + nl + 1;
        let line = data.get(scan..line_end).unwrap_or_default();
        if scan > 0 && (line == b"\r\n" || line == b"\n") {
            return Ok(line_end);
        }
        scan = line_end;
    }
}

/// Iterates the lines (without CR/LF) of a header block (`memchr` finds each end).
fn lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(block);
    std::iter::from_fn(move || {
        let b = rest?;
        let line = match memchr(b'\n', b) {
            Some(p) => {
                rest = b.get(p + 1..);
                b.get(..p).unwrap_or_default()
            }
            None => {
                rest = None;
                b
            }
        };
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

struct Head {
    msg: Box<L7Message>,
    content_length: Option<u64>,
    chunked: bool,
    expect_continue: bool,
    upgrade: bool,
    /// `Upgrade` names `h2c`.
    upgrade_h2c: bool,
}

impl Http1Parser {
    fn parse_head(&self, block: &[u8], ctx: &ParseCtx<'_>) -> Result<(Head, Option<u16>), ParseErrorKind> {
        let mut it = lines(block);
        let start = it.next().ok_or(ParseErrorKind::Malformed)?;
        let mut parts = start.splitn(3, |&c| c == b' ');
        let a = parts.next().unwrap_or_default();
        let b = parts.next().ok_or(ParseErrorKind::Malformed)?;
        let c = parts.next();
        let mut msg;
        let mut code = None;
        if let Some(ver) = a.strip_prefix(b"HTTP/") {
            // status line
            let ver = match ver {
                b"1.1" => "1.1",
                b"1.0" => "1.0",
                _ => return Err(ParseErrorKind::Unsupported),
            };
            if b.len() != 3 || !b.iter().all(u8::is_ascii_digit) {
                return Err(ParseErrorKind::Malformed);
            }
            let n = b.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
            msg = Box::new(L7Message::new(L7Protocol::Http1, MessageKind::Response));
            msg.version = Some(ver.to_string());
            msg.response_code = Some(i32::from(n));
            msg.response_status = Some(http_status(n));
            code = Some(n);
        } else {
            if a.is_empty() || a.len() > 32 || !a.iter().all(|c| c.is_ascii_uppercase() || *c == b'-' || *c == b'_') {
                return Err(ParseErrorKind::Malformed);
            }
            let ver = match c.map(trim) {
                Some(b"HTTP/1.1") => "1.1",
                Some(b"HTTP/1.0") => "1.0",
                _ => return Err(ParseErrorKind::Malformed),
            };
            if b.is_empty() {
                return Err(ParseErrorKind::Malformed);
            }
            msg = Box::new(L7Message::new(L7Protocol::Http1, MessageKind::Request));
            msg.version = Some(ver.to_string());
            msg.request_type = Some(lossy(a));
            let target = lossy(b);
            msg.endpoint = http_endpoint(&target, self.shared.endpoint_segments);
            msg.request_resource = Some(target);
        }
        let _ = ctx;
        let mut head = Head {
            msg,
            content_length: None,
            chunked: false,
            expect_continue: false,
            upgrade: false,
            upgrade_h2c: false,
        };
        let mut tx = TraceExtractor::with_filter(&self.shared.trace, self.shared.trace_filter);
        for line in it {
            if line.is_empty() || line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
                continue;
            }
            let Some(colon) = memchr(b':', line) else { continue };
            let name = trim(line.get(..colon).unwrap_or_default());
            let value = trim(line.get(colon + 1..).unwrap_or_default());
            match name.len() {
                4 if name.eq_ignore_ascii_case(b"host") => {
                    if head.msg.kind() == MessageKind::Request {
                        head.msg.request_domain = Some(lossy(value));
                    }
                }
                14 if name.eq_ignore_ascii_case(b"content-length") => {
                    head.content_length = Some(parse_u64(value).ok_or(ParseErrorKind::Malformed)?);
                }
                17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                    head.chunked = value
                        .rsplit(|&c| c == b',')
                        .next()
                        .is_some_and(|last| trim(last).eq_ignore_ascii_case(b"chunked"));
                }
                10 if name.eq_ignore_ascii_case(b"user-agent") => {
                    head.msg.attr("http_user_agent", lossy(value));
                }
                6 if name.eq_ignore_ascii_case(b"expect") => {
                    head.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
                }
                7 if name.eq_ignore_ascii_case(b"upgrade") => {
                    head.upgrade = true;
                    head.upgrade_h2c = value.split(|&c| c == b',').any(|t| trim(t).eq_ignore_ascii_case(b"h2c"));
                }
                _ => {
                    // most names cannot be a configured trace header: rejected before UTF-8
                    if self.shared.trace_filter.may_match_bytes(name)
                        && let (Ok(n), Ok(v)) = (std::str::from_utf8(name), std::str::from_utf8(value))
                    {
                        tx.header(n, v, &mut head.msg);
                    }
                }
            }
        }
        head.msg.length = head.content_length;
        Ok((head, code))
    }

    fn parse_headers(
        &mut self,
        data: &[u8],
        ctx: &mut ParseCtx<'_>,
        d: usize,
        scan: usize,
        resync: bool,
    ) -> ParseOutcome {
        if resync {
            match start_line_probe(data) {
                Probe::Match => {}
                Probe::NeedMore => return ParseOutcome::NeedMore(1),
                Probe::NotThis => {
                    let skip = memchr(b'\n', data).map_or(data.len(), |p| p + 1);
                    return ParseOutcome::Skip(skip.max(1));
                }
            }
        }
        // tolerate stray CRLFs between messages (RFC 9112 §2.2)
        let lead = data.iter().take_while(|&&c| c == b'\r' || c == b'\n').count();
        if lead > 0 {
            return ParseOutcome::Skip(lead);
        }
        let end = match find_header_end(data, scan) {
            Ok(end) => end,
            Err(new_scan) => {
                if data.len() > self.shared.max_header {
                    return ParseOutcome::Error(ParseErrorKind::Oversize);
                }
                if let Some(st) = self.dirs.get_mut(d) {
                    *st = DirState::Headers { scan: new_scan, resync: false };
                }
                // fail fast on garbage: the start of the first line must look like HTTP
                if start_line_probe(data) == Probe::NotThis {
                    return ParseOutcome::Error(ParseErrorKind::Malformed);
                }
                return ParseOutcome::NeedMore(0);
            }
        };
        let block = data.get(..end).unwrap_or_default();
        let (head, code) = match self.parse_head(block, ctx) {
            Ok(h) => h,
            Err(e) => return ParseOutcome::Error(e),
        };
        let Head { mut msg, content_length, chunked, expect_continue, upgrade, upgrade_h2c } = head;
        let set = |dirs: &mut [DirState; 2], st: DirState| {
            if let Some(s) = dirs.get_mut(d) {
                *s = st;
            }
        };
        set(&mut self.dirs, DirState::default());
        match code {
            None => {
                // request
                let method = msg.request_type.as_deref().unwrap_or("");
                if self.requests.len() >= MAX_REMEMBERED_REQUESTS {
                    self.requests.pop_front();
                }
                self.requests.push_back(ReqInfo { head: method == "HEAD", connect: method == "CONNECT" });
                let _ = upgrade;
                self.h2c_request = upgrade_h2c.then(|| Box::new(upgrade_request(&msg, block, ctx.ts_us)));
                if chunked {
                    set(&mut self.dirs, DirState::Chunked { msg, chunk: Chunk::Size });
                    ParseOutcome::Skip(end)
                } else {
                    match content_length {
                        Some(n) if n > 0 => {
                            msg.start_us = 0;
                            if expect_continue {
                                msg.start_us = ctx.ts_us;
                            }
                            set(&mut self.dirs, DirState::Body { msg, remaining: n, received: 0, expect_continue });
                            ParseOutcome::Skip(end)
                        }
                        _ => ParseOutcome::Message(msg, end),
                    }
                }
            }
            Some(code) => {
                if (100..200).contains(&code) && code != 101 {
                    // interim response (100 Continue, 102, 103): not logged, not paired
                    return ParseOutcome::Skip(end);
                }
                // a final answer to a 100-continue request whose body never came cancels it
                let cd = Direction::ClientToServer.index();
                if let Some(DirState::Body { expect_continue: true, received: 0, .. }) = self.dirs.get(cd)
                    && let Some(DirState::Body { msg: mut req, .. }) = self.dirs.get_mut(cd).map(std::mem::take)
                {
                    req.end_us = req.start_us;
                    // re-parse this response on the next call
                    return ParseOutcome::Message(req, 0);
                }
                let req = self.requests.pop_front();
                let head_req = req.is_some_and(|r| r.head);
                if code == 101 || (req.is_some_and(|r| r.connect) && (200..300).contains(&code)) {
                    self.done = true;
                    if code == 101 && upgrade_h2c {
                        self.h2c_upgraded = self.h2c_request.take();
                    }
                    return ParseOutcome::Message(msg, end);
                }
                if head_req || code == 204 || code == 304 {
                    return ParseOutcome::Message(msg, end);
                }
                if chunked {
                    set(&mut self.dirs, DirState::Chunked { msg, chunk: Chunk::Size });
                    return ParseOutcome::Skip(end);
                }
                match content_length {
                    Some(0) => ParseOutcome::Message(msg, end),
                    Some(n) => {
                        set(&mut self.dirs, DirState::Body { msg, remaining: n, received: 0, expect_continue: false });
                        ParseOutcome::Skip(end)
                    }
                    None => {
                        set(&mut self.dirs, DirState::UntilClose { msg });
                        ParseOutcome::Skip(end)
                    }
                }
            }
        }
    }
}

/// A line (up to and including `\n`) at the start of `data`.
fn take_line(data: &[u8]) -> Result<Option<usize>, ParseErrorKind> {
    match memchr(b'\n', data) {
        Some(p) => Ok(Some(p + 1)),
        None if data.len() > MAX_LINE => Err(ParseErrorKind::Oversize),
        None => Ok(None),
    }
}

fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let hex_end = line.iter().position(|c| !c.is_ascii_hexdigit()).unwrap_or(line.len());
    let hex = line.get(..hex_end)?;
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    let rest = trim(line.get(hex_end..).unwrap_or_default());
    if !rest.is_empty() && rest.first() != Some(&b';') {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

impl L7Parser for Http1Parser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Http1
    }

    fn port_hint(&self, port: u16) -> bool {
        matches!(port, 80 | 8080 | 8000 | 8008 | 8088 | 3128 | 8081)
    }

    fn probe(&self, data: &[u8], _dir: Direction, _flow: &FlowInfo) -> Probe {
        start_line_probe(data)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(Http1Parser {
            shared: self.shared.clone(),
            dirs: [DirState::default(), DirState::default()],
            requests: VecDeque::new(),
            done: false,
            h2c_request: None,
            h2c_upgraded: None,
        })
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        if self.done {
            return ParseOutcome::Skip(data.len().max(1));
        }
        let d = ctx.dir.index();
        let Some(state) = self.dirs.get_mut(d) else {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        };
        match state {
            // no input (the engine asking for held-back messages): nothing to do, and the
            // resync flag must survive the call
            DirState::Headers { .. } if data.is_empty() => ParseOutcome::NeedMore(0),
            DirState::Headers { scan, resync } => {
                let (scan, resync) = (*scan, *resync);
                self.parse_headers(data, ctx, d, scan, resync)
            }
            DirState::Body { remaining, received, .. } => {
                let n = data.len() as u64;
                if n >= *remaining {
                    let take = *remaining as usize;
                    match std::mem::take(state) {
                        DirState::Body { msg, .. } => ParseOutcome::Message(msg, take),
                        _ => ParseOutcome::Error(ParseErrorKind::Malformed),
                    }
                } else {
                    *remaining -= n;
                    *received += n;
                    ParseOutcome::Skip(data.len())
                }
            }
            DirState::UntilClose { .. } => ParseOutcome::Skip(data.len().max(1)),
            DirState::Chunked { chunk, .. } => match chunk {
                Chunk::Size => match take_line(data) {
                    Err(e) => ParseOutcome::Error(e),
                    Ok(None) => ParseOutcome::NeedMore(0),
                    Ok(Some(len)) => match parse_chunk_size(data.get(..len).unwrap_or_default()) {
                        None => ParseOutcome::Error(ParseErrorKind::Malformed),
                        Some(0) => {
                            *chunk = Chunk::Trailers;
                            ParseOutcome::Skip(len)
                        }
                        Some(n) => {
                            *chunk = Chunk::Data(n);
                            ParseOutcome::Skip(len)
                        }
                    },
                },
                Chunk::Data(rem) => {
                    let n = data.len() as u64;
                    if n >= *rem {
                        let take = *rem as usize;
                        *chunk = Chunk::DataEnd;
                        if take == 0 {
                            // cannot happen (sizes are > 0) but never report a zero skip
                            return ParseOutcome::NeedMore(2);
                        }
                        ParseOutcome::Skip(take)
                    } else {
                        *rem -= n;
                        ParseOutcome::Skip(data.len())
                    }
                }
                Chunk::DataEnd => match data {
                    [b'\r', b'\n', ..] => {
                        *chunk = Chunk::Size;
                        ParseOutcome::Skip(2)
                    }
                    [b'\n', ..] => {
                        *chunk = Chunk::Size;
                        ParseOutcome::Skip(1)
                    }
                    [b'\r'] | [] => ParseOutcome::NeedMore(1),
                    _ => ParseOutcome::Error(ParseErrorKind::Malformed),
                },
                Chunk::Trailers => match take_line(data) {
                    Err(e) => ParseOutcome::Error(e),
                    Ok(None) => ParseOutcome::NeedMore(0),
                    Ok(Some(len)) => {
                        let line = data.get(..len).unwrap_or_default();
                        if line == b"\r\n" || line == b"\n" {
                            match std::mem::take(state) {
                                DirState::Chunked { msg, .. } => ParseOutcome::Message(msg, len),
                                _ => ParseOutcome::Error(ParseErrorKind::Malformed),
                            }
                        } else {
                            ParseOutcome::Skip(len)
                        }
                    }
                },
            },
        }
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(s) = self.dirs.get_mut(dir.index()) {
            *s = DirState::Headers { scan: 0, resync: true };
        }
    }

    fn on_close(&mut self, dir: Direction, _ctx: &mut ParseCtx<'_>) -> Option<L7Message> {
        let s = self.dirs.get_mut(dir.index())?;
        match std::mem::take(s) {
            DirState::UntilClose { msg } | DirState::Body { msg, .. } | DirState::Chunked { msg, .. } => Some(*msg),
            DirState::Headers { .. } => None,
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn upgrade(&mut self, cfg: &L7Config) -> Option<Box<dyn L7Parser>> {
        let req = self.h2c_upgraded.take()?;
        Some(Box::new(Http2Parser::after_upgrade(cfg, *req)))
    }
}

/// What the HTTP/2 parser needs of a request that asked for `Upgrade: h2c` (RFC 7540 3.2):
/// stream 1 of the upgraded connection is this request's response.
fn upgrade_request(msg: &L7Message, block: &[u8], ts_us: u64) -> UpgradeRequest {
    let mut headers = Vec::new();
    let mut http2_settings = None;
    for line in lines(block).skip(1) {
        let Some(colon) = memchr(b':', line) else { continue };
        let name = lossy(trim(line.get(..colon).unwrap_or_default()));
        let value = lossy(trim(line.get(colon + 1..).unwrap_or_default()));
        if name.eq_ignore_ascii_case("http2-settings") {
            http2_settings = Some(value);
        } else if !["connection", "upgrade", "host"].iter().any(|h| name.eq_ignore_ascii_case(h)) {
            headers.push((name, value));
        }
    }
    UpgradeRequest {
        method: msg.request_type.clone().unwrap_or_default(),
        path: msg.request_resource.clone().unwrap_or_default(),
        authority: msg.request_domain.clone(),
        headers,
        start_us: ts_us,
        http2_settings,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// The definition [`http_endpoint`] follows, written plainly (its earlier implementation,
    /// which also looked for a scheme inside origin-form targets: `/r?u=http://x/a` gave `/a`).
    fn reference(target: &str, n: usize) -> Option<String> {
        if n == 0 {
            return None;
        }
        let mut path = target;
        if !path.starts_with('/')
            && let Some(p) = path.find("://")
        {
            let after = path.get(p + 3..).unwrap_or("");
            path = after.find('/').and_then(|i| after.get(i..)).unwrap_or("/");
        }
        let end = path.find(['?', '#']).unwrap_or(path.len());
        Some(endpoint_of_segments(path.get(..end).unwrap_or(""), n))
    }

    #[test]
    fn endpoint_examples() {
        let cases = [
            ("/", 2, "/"),
            ("/a/b/c?x=1", 2, "/a/b"),
            ("/a/", 2, "/a"),
            ("/a//b/c", 2, "/a/b"),
            ("//a", 1, "/a"),
            ("http://h:80/x/y/z#f", 2, "/x/y"),
            ("http://h", 2, "/"),
            ("*", 2, "/*"),
            ("/é/ü/x", 2, "/é/ü"),
            // a URL in the query of an origin-form target is not its scheme
            ("/r?u=http://x/a/b", 2, "/r"),
        ];
        for (t, n, want) in cases {
            assert_eq!(http_endpoint(t, n).as_deref(), Some(want), "{t} {n}");
        }
        assert_eq!(http_endpoint("/a", 0), None);
    }

    /// Every string of up to 6 characters over an alphabet that covers the cases (segments,
    /// empty segments, query, fragment, scheme, non-ASCII), for 0..4 segments.
    #[test]
    fn endpoint_matches_its_definition() {
        let alphabet = ['/', 'a', '?', '#', ':', 'é'];
        let mut t = String::new();
        let mut idx: Vec<usize> = Vec::new();
        loop {
            t.clear();
            t.extend(idx.iter().map(|&i| alphabet[i]));
            for n in 0..4 {
                assert_eq!(http_endpoint(&t, n), reference(&t, n), "{t:?} {n}");
            }
            // next string: odometer over the alphabet, then one character longer
            let mut k = 0;
            loop {
                if k == idx.len() {
                    idx.push(0);
                    break;
                }
                idx[k] += 1;
                if idx[k] < alphabet.len() {
                    break;
                }
                idx[k] = 0;
                k += 1;
            }
            if idx.len() > 6 {
                break;
            }
        }
    }
}
