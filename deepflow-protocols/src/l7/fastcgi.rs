//! FastCGI (`fastcgi`), as spoken between a web server (client) and an application server.
//!
//! The stream is a sequence of records: `version u8, type u8, request id u16, content length
//! u16, padding length u8, reserved u8`, content, padding. Records are consumed as they arrive
//! (content is never buffered whole): PARAMS content is collected per request id until the
//! empty PARAMS record that ends it, which emits the request; the first bytes of STDOUT are
//! collected per request id until the end of the CGI header block; END_REQUEST emits the
//! response. Request ids are kept apart, so multiplexed connections pair correctly.
//!
//! Fields follow L7_FIELDS.md "FastCGI": record version → `version`, `REQUEST_METHOD` →
//! `request_type`, `HTTP_HOST` → `request_domain`, `REQUEST_URI` (else `SCRIPT_NAME`) →
//! `request_resource`, `DOCUMENT_URI` → `endpoint`, record request id → `request_id`
//! (pairing key), `CONTENT_LENGTH` → `request_length`, CGI `Status:` of STDOUT (else 200) →
//! `response_code` with the HTTP status rules, STDOUT `Content-Length` → `response_length`.
//! Trace context / x-request-id: `HTTP_*` params (name without the prefix, lower-cased, `_` →
//! `-`) and the STDOUT headers, with the configured names. An END_REQUEST whose protocol
//! status is not REQUEST_COMPLETE is a `server_error` with the status name as exception.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe, http_status};
use crate::config::L7Config;
use crate::error::ParseErrorKind;
use crate::trace::{TraceConfig, TraceExtractor};

// ---------------------------------------------------------------------------------------------
// constants

const HEADER_LEN: usize = 8;
const VERSION_1: u8 = 1;
const BEGIN_REQUEST: u8 = 1;
const ABORT_REQUEST: u8 = 2;
const END_REQUEST: u8 = 3;
const PARAMS: u8 = 4;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;
const UNKNOWN_TYPE: u8 = 11;
/// PARAMS bytes kept per request (the rest is dropped).
const MAX_PARAMS: usize = 64 * 1024;
/// STDOUT bytes searched for the end of the CGI headers.
const MAX_CGI_HEAD: usize = 8 * 1024;
/// Requests in flight per flow (multiplexing); the oldest is dropped beyond it.
const MAX_IN_FLIGHT: usize = 32;

/// Record type name.
pub fn record_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        1 => "BEGIN_REQUEST",
        2 => "ABORT_REQUEST",
        3 => "END_REQUEST",
        4 => "PARAMS",
        5 => "STDIN",
        6 => "STDOUT",
        7 => "STDERR",
        8 => "DATA",
        9 => "GET_VALUES",
        10 => "GET_VALUES_RESULT",
        11 => "UNKNOWN_TYPE",
        _ => return None,
    })
}

fn protocol_status_name(s: u8) -> &'static str {
    match s {
        0 => "REQUEST_COMPLETE",
        1 => "CANT_MPX_CONN",
        2 => "OVERLOADED",
        3 => "UNKNOWN_ROLE",
        _ => "UNKNOWN_PROTOCOL_STATUS",
    }
}

// ---------------------------------------------------------------------------------------------
// records and name-value pairs

#[derive(Debug, Clone, Copy)]
struct RecHeader {
    version: u8,
    ty: u8,
    id: u16,
    content: usize,
    padding: usize,
}

fn rec_header(b: &[u8]) -> Option<RecHeader> {
    let h: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
    let [version, ty, i0, i1, c0, c1, padding, _reserved] = *h;
    Some(RecHeader {
        version,
        ty,
        id: u16::from_be_bytes([i0, i1]),
        content: usize::from(u16::from_be_bytes([c0, c1])),
        padding: usize::from(padding),
    })
}

/// Iterates the name-value pairs of PARAMS content (1- or 4-byte lengths).
pub fn name_values(mut b: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        fn len(b: &mut &[u8]) -> Option<usize> {
            let first = *b.first()?;
            if first & 0x80 == 0 {
                *b = b.get(1..)?;
                return Some(usize::from(first));
            }
            let v: [u8; 4] = b.get(..4)?.try_into().ok()?;
            *b = b.get(4..)?;
            Some((u32::from_be_bytes(v) & 0x7fff_ffff) as usize)
        }
        let nl = len(&mut b)?;
        let vl = len(&mut b)?;
        let name = b.get(..nl)?;
        let value = b.get(nl..nl.checked_add(vl)?)?;
        b = b.get(nl + vl..)?;
        Some((name, value))
    })
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start with a FastCGI record a web server (BEGIN_REQUEST) or an application
/// (STDOUT/STDERR/END_REQUEST) would send first?
pub fn probe_record(data: &[u8], dir: Direction) -> Probe {
    if data.first().is_some_and(|&v| v != VERSION_1) || data.get(1).is_some_and(|&t| !(1..=UNKNOWN_TYPE).contains(&t)) {
        return Probe::NotThis;
    }
    let Some(h) = rec_header(data) else { return Probe::NeedMore };
    if data.get(7) != Some(&0) {
        return Probe::NotThis;
    }
    let ok = match dir {
        Direction::ClientToServer => {
            h.ty == BEGIN_REQUEST && h.content == 8 && {
                match data.get(8..10) {
                    None => return Probe::NeedMore,
                    Some(role) => matches!(role, [0, 1..=3]),
                }
            }
        }
        Direction::ServerToClient => matches!(h.ty, STDOUT | STDERR | END_REQUEST) && h.id != 0,
    };
    if ok { Probe::Match } else { Probe::NotThis }
}

// ---------------------------------------------------------------------------------------------
// parser

/// The record being consumed in one direction.
#[derive(Debug, Clone, Copy)]
struct Cur {
    h: RecHeader,
    content_left: usize,
    pad_left: usize,
}

#[derive(Debug, Default)]
struct ReqState {
    id: u16,
    params: Vec<u8>,
}

#[derive(Debug, Default)]
struct RespState {
    id: u16,
    head: Vec<u8>,
    head_done: bool,
}

/// The FastCGI parser.
pub struct FastCgiParser {
    trace: Arc<TraceConfig>,
    cur: [Option<Cur>; 2],
    small: [Vec<u8>; 2],
    reqs: Vec<ReqState>,
    resps: Vec<RespState>,
}

fn slot<T: Default>(v: &mut Vec<T>, id: u16, get_id: fn(&T) -> u16, make: fn(u16) -> T) -> Option<&mut T> {
    if let Some(i) = v.iter().position(|x| get_id(x) == id) {
        return v.get_mut(i);
    }
    if v.len() >= MAX_IN_FLIGHT {
        v.remove(0);
    }
    v.push(make(id));
    v.last_mut()
}

impl FastCgiParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        FastCgiParser::new_with(Arc::new(cfg.trace.clone()))
    }

    fn req(&mut self, id: u16) -> Option<&mut ReqState> {
        slot(&mut self.reqs, id, |r| r.id, |id| ReqState { id, ..Default::default() })
    }

    fn resp(&mut self, id: u16) -> Option<&mut RespState> {
        slot(&mut self.resps, id, |r| r.id, |id| RespState { id, ..Default::default() })
    }

    /// Content bytes of the current record.
    fn content(&mut self, d: usize, h: RecHeader, bytes: &[u8]) {
        match h.ty {
            PARAMS => {
                if let Some(r) = self.req(h.id) {
                    let room = MAX_PARAMS.saturating_sub(r.params.len());
                    r.params.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
                }
            }
            STDOUT => {
                if let Some(r) = self.resp(h.id)
                    && !r.head_done
                {
                    let room = MAX_CGI_HEAD.saturating_sub(r.head.len());
                    r.head.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
                    if memchr::memmem::find(&r.head, b"\r\n\r\n").is_some()
                        || memchr::memmem::find(&r.head, b"\n\n").is_some()
                        || r.head.len() >= MAX_CGI_HEAD
                    {
                        r.head_done = true;
                    }
                }
            }
            BEGIN_REQUEST | END_REQUEST => {
                if let Some(s) = self.small.get_mut(d) {
                    let room = 8usize.saturating_sub(s.len());
                    s.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
                }
            }
            _ => {}
        }
    }

    /// The current record ended: maybe a message.
    fn record_end(&mut self, d: usize, h: RecHeader) -> Option<L7Message> {
        let small = self.small.get_mut(d).map(std::mem::take).unwrap_or_default();
        match h.ty {
            BEGIN_REQUEST => {
                // a new request on this id: forget a stale one
                self.reqs.retain(|r| r.id != h.id);
                self.req(h.id);
                None
            }
            ABORT_REQUEST => None,
            PARAMS if h.content == 0 => {
                let params = self.reqs.iter().position(|r| r.id == h.id).map(|i| self.reqs.remove(i).params);
                Some(self.request(h, &params.unwrap_or_default()))
            }
            END_REQUEST => {
                let st = self.resps.iter().position(|r| r.id == h.id).map(|i| self.resps.remove(i));
                Some(self.response(h, st.unwrap_or_default(), &small))
            }
            _ => None,
        }
    }

    fn request(&self, h: RecHeader, params: &[u8]) -> L7Message {
        let mut msg = L7Message::new(L7Protocol::FastCgi, MessageKind::Request);
        msg.version = Some(h.version.to_string());
        msg.request_id = Some(u32::from(h.id));
        let mut ex = TraceExtractor::new(&self.trace);
        let mut script_name = None;
        for (k, v) in name_values(params) {
            let v = String::from_utf8_lossy(v);
            match k {
                b"REQUEST_METHOD" => msg.request_type = Some(v.into_owned()),
                b"HTTP_HOST" => msg.request_domain = Some(v.into_owned()),
                b"REQUEST_URI" => msg.request_resource = Some(v.into_owned()),
                b"SCRIPT_NAME" => script_name = Some(v.into_owned()),
                b"DOCUMENT_URI" => msg.endpoint = Some(v.into_owned()),
                b"CONTENT_LENGTH" => msg.length = v.trim().parse().ok(),
                _ => {
                    if let Some(name) = k.strip_prefix(b"HTTP_") {
                        let name: String = name
                            .iter()
                            .map(|&c| if c == b'_' { '-' } else { char::from(c.to_ascii_lowercase()) })
                            .collect();
                        ex.header(&name, &v, &mut msg);
                    }
                }
            }
        }
        if msg.request_resource.is_none() {
            msg.request_resource = script_name;
        }
        msg
    }

    fn response(&self, h: RecHeader, st: RespState, end: &[u8]) -> L7Message {
        let mut msg = L7Message::new(L7Protocol::FastCgi, MessageKind::Response);
        msg.version = Some(h.version.to_string());
        msg.request_id = Some(u32::from(h.id));
        let mut code = 200u16;
        let mut ex = TraceExtractor::new(&self.trace);
        let head = match memchr::memmem::find(&st.head, b"\r\n\r\n").or_else(|| memchr::memmem::find(&st.head, b"\n\n"))
        {
            Some(p) => st.head.get(..p).unwrap_or_default(),
            None if st.head_done => &[][..],
            None => &st.head[..],
        };
        for line in head.split(|&c| c == b'\n') {
            let line = String::from_utf8_lossy(line);
            let Some((name, value)) = line.trim_end_matches('\r').split_once(':') else { continue };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("status") {
                if let Some(c) = value.split_whitespace().next().and_then(|c| c.parse().ok()) {
                    code = c;
                }
            } else if name.eq_ignore_ascii_case("content-length") {
                msg.length = value.parse().ok();
            } else {
                ex.header(name, value, &mut msg);
            }
        }
        msg.response_code = Some(i32::from(code));
        msg.response_status = Some(http_status(code));
        if let Some(&ps) = end.get(4)
            && ps != 0
        {
            msg.response_status = Some(ResponseStatus::ServerError);
            msg.response_exception = Some(protocol_status_name(ps).to_string());
        }
        msg
    }
}

impl L7Parser for FastCgiParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::FastCgi
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 9000
    }

    fn probe(&self, data: &[u8], dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_record(data, dir)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(FastCgiParser::new_with(Arc::clone(&self.trace)))
    }

    fn pairing(&self) -> Pairing {
        Pairing::ById
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        let d = ctx.dir.index();
        let Some(cur) = self.cur.get(d).copied() else { return ParseOutcome::Error(ParseErrorKind::Malformed) };
        let (mut cur, used_header) = match cur {
            Some(c) => (c, 0),
            None => {
                if data.first().is_some_and(|&v| v != VERSION_1) {
                    return ParseOutcome::Error(ParseErrorKind::Malformed);
                }
                let Some(h) = rec_header(data) else { return ParseOutcome::NeedMore(HEADER_LEN - data.len()) };
                if !(1..=UNKNOWN_TYPE).contains(&h.ty) {
                    return ParseOutcome::Error(ParseErrorKind::Malformed);
                }
                if let Some(s) = self.small.get_mut(d) {
                    s.clear();
                }
                (Cur { h, content_left: h.content, pad_left: h.padding }, HEADER_LEN)
            }
        };
        let rest = data.get(used_header..).unwrap_or_default();
        let c = cur.content_left.min(rest.len());
        self.content(d, cur.h, rest.get(..c).unwrap_or_default());
        cur.content_left -= c;
        let p = cur.pad_left.min(rest.len() - c);
        cur.pad_left -= p;
        let consumed = used_header + c + p;
        if cur.content_left > 0 || cur.pad_left > 0 {
            if let Some(s) = self.cur.get_mut(d) {
                *s = Some(cur);
            }
            return if consumed == 0 { ParseOutcome::NeedMore(1) } else { ParseOutcome::Skip(consumed) };
        }
        if let Some(s) = self.cur.get_mut(d) {
            *s = None;
        }
        match self.record_end(d, cur.h) {
            Some(msg) => ParseOutcome::message(msg, consumed),
            None => ParseOutcome::Skip(consumed),
        }
    }

    fn on_gap(&mut self, dir: Direction) {
        let d = dir.index();
        if let Some(c) = self.cur.get_mut(d) {
            *c = None;
        }
        if let Some(s) = self.small.get_mut(d) {
            s.clear();
        }
        match dir {
            Direction::ClientToServer => self.reqs.clear(),
            Direction::ServerToClient => self.resps.clear(),
        }
    }
}

impl FastCgiParser {
    fn new_with(trace: Arc<TraceConfig>) -> Self {
        FastCgiParser { trace, cur: [None, None], small: [Vec::new(), Vec::new()], reqs: Vec::new(), resps: Vec::new() }
    }
}

/// Test helpers: records built from the wire format.
#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(crate) mod build {
    /// One record, padded to a multiple of 8.
    pub fn record(ty: u8, id: u16, content: &[u8]) -> Vec<u8> {
        let pad = (8 - content.len() % 8) % 8;
        let mut v = vec![1, ty];
        v.extend(id.to_be_bytes());
        v.extend((content.len() as u16).to_be_bytes());
        v.push(pad as u8);
        v.push(0);
        v.extend(content);
        v.extend(std::iter::repeat_n(0, pad));
        v
    }
    /// PARAMS content.
    pub fn nv(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut v = Vec::new();
        for (n, val) in pairs {
            for l in [n.len(), val.len()] {
                if l < 128 {
                    v.push(l as u8);
                } else {
                    v.extend((l as u32 | 0x8000_0000).to_be_bytes());
                }
            }
            v.extend(n.as_bytes());
            v.extend(val.as_bytes());
        }
        v
    }
    /// BEGIN_REQUEST + PARAMS (split in two records) + empty PARAMS + STDIN body + empty STDIN.
    pub fn request(id: u16, pairs: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut v = record(1, id, &[0, 1, 1, 0, 0, 0, 0, 0]);
        let p = nv(pairs);
        let (a, b) = p.split_at(p.len() / 2);
        v.extend(record(4, id, a));
        v.extend(record(4, id, b));
        v.extend(record(4, id, &[]));
        if !body.is_empty() {
            v.extend(record(5, id, body));
        }
        v.extend(record(5, id, &[]));
        v
    }
    /// STDOUT (headers + body) + empty STDOUT + END_REQUEST.
    pub fn response(id: u16, stdout: &[u8], protocol_status: u8) -> Vec<u8> {
        let mut v = record(6, id, stdout);
        v.extend(record(6, id, &[]));
        v.extend(record(3, id, &[0, 0, 0, 0, protocol_status, 0, 0, 0]));
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
    use deepflow_core::record::L7FlowLog;

    fn make(cfg: &L7Config) -> Box<dyn L7Parser> {
        Box::new(FastCgiParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "fastcgi", 9000, emit, segs)
    }

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn get(id: u16, uri: &str) -> Vec<u8> {
        request(
            id,
            &[
                ("REQUEST_METHOD", "GET"),
                ("SCRIPT_NAME", "/index.php"),
                ("REQUEST_URI", uri),
                ("DOCUMENT_URI", "/index.php"),
                ("HTTP_HOST", "example.com"),
                ("CONTENT_LENGTH", ""),
                ("HTTP_TRACEPARENT", TP),
                ("HTTP_X_REQUEST_ID", "req-1"),
                ("LONG", &"v".repeat(300)),
            ],
            b"",
        )
    }

    fn exchange() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C2S, get(1, "/index.php?a=1")),
            (S2C, response(1, b"Content-Type: text/plain\r\n\r\nhello", 0)),
            (
                C2S,
                request(
                    1,
                    &[("REQUEST_METHOD", "POST"), ("SCRIPT_NAME", "/post.php"), ("CONTENT_LENGTH", "5")],
                    b"a=b&c",
                ),
            ),
            (S2C, response(1, b"Status: 404 Not Found\r\nContent-Length: 3\r\nX-Request-ID: resp-9\r\n\r\nno\n", 0)),
            (C2S, get(1, "/x")),
            (S2C, response(1, b"Status: 503 Busy\r\n\r\n", 2)),
        ]
    }

    #[test]
    fn sessions() {
        let rows = run(EmitMode::Sessions, &exchange());
        assert_eq!(rows.len(), 3, "{rows:#?}");
        let r = &rows[0];
        assert_eq!(r.version.as_deref(), Some("1"));
        assert_eq!(r.request_type.as_deref(), Some("GET"));
        assert_eq!(r.request_domain.as_deref(), Some("example.com"));
        assert_eq!(r.request_resource.as_deref(), Some("/index.php?a=1"));
        assert_eq!(r.endpoint.as_deref(), Some("/index.php"));
        assert_eq!(r.request_id, Some(1));
        assert_eq!(r.response_code, Some(200));
        assert_eq!(r.response_status, ResponseStatus::Ok);
        assert_eq!(r.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(r.x_request_id_0.as_deref(), Some("req-1"));
        let r = &rows[1];
        assert_eq!(r.request_type.as_deref(), Some("POST"));
        assert_eq!(r.request_resource.as_deref(), Some("/post.php"));
        assert_eq!(r.request_length, Some(5));
        assert_eq!(r.response_length, Some(3));
        assert_eq!(r.response_code, Some(404));
        assert_eq!(r.response_status, ResponseStatus::ClientError);
        assert_eq!(r.x_request_id_1.as_deref(), Some("resp-9"));
        let r = &rows[2];
        assert_eq!(r.response_code, Some(503));
        assert_eq!(r.response_status, ResponseStatus::ServerError);
        assert_eq!(r.response_exception.as_deref(), Some("OVERLOADED"));
    }

    #[test]
    fn multiplexed() {
        // two requests interleaved record by record, answered in reverse order
        let a = get(1, "/a");
        let b = get(2, "/b");
        let mut c2s = Vec::new();
        let (mut ia, mut ib) = (0, 0);
        while ia < a.len() || ib < b.len() {
            for (src, i) in [(&a, &mut ia), (&b, &mut ib)] {
                if *i < src.len() {
                    let len =
                        8 + usize::from(u16::from_be_bytes([src[*i + 4], src[*i + 5]])) + usize::from(src[*i + 6]);
                    c2s.extend(&src[*i..*i + len]);
                    *i += len;
                }
            }
        }
        let rows = run(
            EmitMode::Sessions,
            &[(C2S, c2s), (S2C, response(2, b"Status: 500\r\n\r\n", 0)), (S2C, response(1, b"\r\n", 0))],
        );
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].request_resource.as_deref(), rows[0].response_code), (Some("/b"), Some(500)));
        assert_eq!((rows[1].request_resource.as_deref(), rows[1].response_code), (Some("/a"), Some(200)));
    }

    #[test]
    fn large_stdout_streams() {
        let body = vec![b'x'; 200_000];
        let mut out = Vec::new();
        out.extend(record(6, 1, b"Status: 201 Created\r\nContent-Type: a/b\r\n\r\n"));
        for c in body.chunks(65535) {
            out.extend(record(6, 1, c));
        }
        out.extend(record(6, 1, &[]));
        out.extend(record(3, 1, &[0; 8]));
        let rows = run(EmitMode::Sessions, &[(C2S, get(1, "/big")), (S2C, out)]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].response_code, Some(201));
    }

    #[test]
    fn probe() {
        let f = flow(1);
        let p = FastCgiParser::new(&L7Config::default());
        let ex = exchange();
        assert_eq!(p.probe(&ex[0].1, C2S, &f), Probe::Match);
        assert_eq!(p.probe(&ex[1].1, S2C, &f), Probe::Match);
        assert_eq!(p.probe(&ex[0].1[..8], C2S, &f), Probe::NeedMore);
        assert_eq!(p.probe(b"GET / HTTP/1.1\r\n\r\n", C2S, &f), Probe::NotThis);
        assert_eq!(p.probe(&[1, 6, 0, 1, 0, 0, 0, 0], C2S, &f), Probe::NotThis);
    }

    #[test]
    fn splits() {
        check_splits(&make, "fastcgi", 9000, &exchange());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &exchange());
    }

    #[test]
    fn fuzz_50k() {
        fuzz(&make, "fastcgi", &exchange(), 50_000);
    }
}
