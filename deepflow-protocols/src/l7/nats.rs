//! NATS client protocol (`nats`).
//!
//! A text protocol of `\r\n`-terminated control lines (verbs are case-insensitive); `PUB`,
//! `HPUB`, `MSG` and `HMSG` are followed by a payload whose size the control line announces,
//! which is skipped exactly (`HPUB`/`HMSG` headers are read first, for trace context). Fields
//! follow L7_FIELDS.md "NATS": verb → `request_type` (`+OK` → `OK`, `-ERR` → `ERR`), INFO
//! `version` → `version` and `server_name` → `request_domain` (both remembered per flow),
//! subject → `request_resource`, subject up to the first `.` → `endpoint`. INFO/CONNECT and
//! PING/PONG pair in order; everything else is one-way. No response code and no status (the
//! agent leaves it unset). Beyond L7_FIELDS.md: the `-ERR` text is kept as
//! `response_exception`, and the reply-to subject as attribute `reply_to`.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use deepflow_core::record::L7Protocol;
use deepflow_core::{Direction, FlowInfo};

use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;
use crate::trace::{TraceConfig, TraceExtractor};

// ---------------------------------------------------------------------------------------------
// constants

/// nats-server's default `max_control_line`.
const MAX_CONTROL_LINE: usize = 4096;
/// nats-server's hard payload ceiling (`max_payload` up to 64 MiB).
const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Info,
    Connect,
    Pub,
    Hpub,
    Sub,
    Unsub,
    Msg,
    Hmsg,
    Ping,
    Pong,
    Ok,
    Err,
}

impl Verb {
    fn from_word(w: &[u8]) -> Option<Verb> {
        const ALL: [(&[u8], Verb); 12] = [
            (b"INFO", Verb::Info),
            (b"CONNECT", Verb::Connect),
            (b"PUB", Verb::Pub),
            (b"HPUB", Verb::Hpub),
            (b"SUB", Verb::Sub),
            (b"UNSUB", Verb::Unsub),
            (b"MSG", Verb::Msg),
            (b"HMSG", Verb::Hmsg),
            (b"PING", Verb::Ping),
            (b"PONG", Verb::Pong),
            (b"+OK", Verb::Ok),
            (b"-ERR", Verb::Err),
        ];
        ALL.iter().find(|(n, _)| n.eq_ignore_ascii_case(w)).map(|(_, v)| *v)
    }

    fn name(self) -> &'static str {
        match self {
            Verb::Info => "INFO",
            Verb::Connect => "CONNECT",
            Verb::Pub => "PUB",
            Verb::Hpub => "HPUB",
            Verb::Sub => "SUB",
            Verb::Unsub => "UNSUB",
            Verb::Msg => "MSG",
            Verb::Hmsg => "HMSG",
            Verb::Ping => "PING",
            Verb::Pong => "PONG",
            Verb::Ok => "OK",
            Verb::Err => "ERR",
        }
    }
}

/// String value of `"key": "value"` in a flat JSON object (escapes are kept verbatim).
fn json_str<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\"");
    let mut from = 0;
    while let Some(i) = json.get(from..)?.find(&pat) {
        let after = json.get(from + i + pat.len()..)?.trim_start();
        from += i + pat.len();
        let Some(v) = after.strip_prefix(':') else { continue };
        let v = v.trim_start().strip_prefix('"')?;
        let mut esc = false;
        for (j, c) in v.char_indices() {
            match c {
                '\\' if !esc => esc = true,
                '"' if !esc => return v.get(..j),
                _ => esc = false,
            }
        }
        return None;
    }
    None
}

fn parse_usize(w: &[u8]) -> Option<usize> {
    if w.is_empty() || w.len() > 12 || !w.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(w).ok()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start with a server INFO or a client CONNECT?
pub fn probe_start(data: &[u8], dir: Direction) -> Probe {
    let want: &[u8] = match dir {
        Direction::ServerToClient => b"INFO {",
        Direction::ClientToServer => b"CONNECT {",
    };
    let n = data.len().min(want.len());
    match (data.get(..n), want.get(..n)) {
        (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => {
            if n < want.len() {
                Probe::NeedMore
            } else {
                Probe::Match
            }
        }
        _ => Probe::NotThis,
    }
}

// ---------------------------------------------------------------------------------------------
// parser

/// The NATS parser.
pub struct NatsParser {
    trace: Arc<TraceConfig>,
    partial_limit: usize,
    version: Option<String>,
    server_name: Option<String>,
    skip: [usize; 2],
}

impl NatsParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        NatsParser {
            trace: Arc::new(cfg.trace.clone()),
            partial_limit: (cfg.max_buffered_bytes / 2).max(64),
            version: None,
            server_name: None,
            skip: [0; 2],
        }
    }

    /// One control line (without `\r\n`) plus whatever of its header block is present.
    /// Returns the message, the bytes of the header block consumed and the bytes to skip.
    fn line(&mut self, line: &[u8], after: &[u8]) -> Result<(L7Message, usize, usize), ParseErrorKind> {
        let m = ParseErrorKind::Malformed;
        let (verb_w, args) = match line.iter().position(|c| *c == b' ' || *c == b'\t') {
            Some(i) => (line.get(..i).unwrap_or_default(), line.get(i + 1..).unwrap_or_default()),
            None => (line, &[][..]),
        };
        let verb = Verb::from_word(verb_w).ok_or(m)?;
        let words: Vec<&[u8]> = args.split(|c| *c == b' ' || *c == b'\t').filter(|w| !w.is_empty()).collect();
        let kind = match verb {
            Verb::Info | Verb::Ping => MessageKind::Request,
            Verb::Connect | Verb::Pong => MessageKind::Response,
            _ => MessageKind::OneWay,
        };
        let mut msg = L7Message::new(L7Protocol::Nats, kind);
        msg.request_type = Some(verb.name().to_string());
        let mut subject: Option<&[u8]> = None;
        let mut reply: Option<&[u8]> = None;
        let (mut hdr_len, mut total) = (0usize, 0usize);
        match verb {
            Verb::Info => {
                let json = std::str::from_utf8(args).map_err(|_| m)?;
                if let Some(v) = json_str(json, "version") {
                    self.version = Some(v.to_string());
                }
                if let Some(v) = json_str(json, "server_name") {
                    self.server_name = Some(v.to_string());
                }
            }
            Verb::Pub | Verb::Msg => {
                // PUB subject [reply] n / MSG subject sid [reply] n
                let fixed = if verb == Verb::Pub { 2 } else { 3 };
                if words.len() != fixed && words.len() != fixed + 1 {
                    return Err(m);
                }
                subject = words.first().copied();
                if words.len() == fixed + 1 {
                    reply = words.get(fixed - 1).copied();
                }
                total = parse_usize(words.last().ok_or(m)?).ok_or(m)?;
            }
            Verb::Hpub | Verb::Hmsg => {
                let fixed = if verb == Verb::Hpub { 3 } else { 4 };
                if words.len() != fixed && words.len() != fixed + 1 {
                    return Err(m);
                }
                subject = words.first().copied();
                if words.len() == fixed + 1 {
                    reply = words.get(fixed - 2).copied();
                }
                hdr_len = parse_usize(words.get(words.len().saturating_sub(2)).ok_or(m)?).ok_or(m)?;
                total = parse_usize(words.last().ok_or(m)?).ok_or(m)?;
                if hdr_len > total {
                    return Err(m);
                }
            }
            Verb::Sub => {
                if words.len() != 2 && words.len() != 3 {
                    return Err(m);
                }
                subject = words.first().copied();
            }
            Verb::Unsub => {
                if words.is_empty() || words.len() > 2 {
                    return Err(m);
                }
            }
            Verb::Err => {
                let text = String::from_utf8_lossy(args);
                msg.response_exception = Some(text.trim().trim_matches('\'').to_string());
            }
            Verb::Connect | Verb::Ping | Verb::Pong | Verb::Ok => {}
        }
        if total > MAX_PAYLOAD {
            return Err(m);
        }
        if let Some(s) = subject {
            let s = std::str::from_utf8(s).map_err(|_| m)?;
            msg.request_resource = Some(s.to_string());
            msg.endpoint = Some(s.split('.').next().unwrap_or(s).to_string());
        }
        if let Some(r) = reply {
            msg.attr("reply_to", String::from_utf8_lossy(r));
        }
        msg.version = self.version.clone();
        msg.request_domain = self.server_name.clone();
        if matches!(verb, Verb::Pub | Verb::Hpub | Verb::Msg | Verb::Hmsg) {
            msg.length = Some(total as u64);
        }
        let hdr = after.get(..hdr_len.min(after.len())).unwrap_or_default();
        if hdr_len > 0 {
            self.headers(hdr, &mut msg);
        }
        Ok((msg, hdr.len(), total + 2 - hdr.len()))
    }

    fn headers(&self, hdr: &[u8], msg: &mut L7Message) {
        let text = String::from_utf8_lossy(hdr);
        let mut lines = text.split("\r\n");
        let _status_line = lines.next();
        let mut ex = TraceExtractor::new(&self.trace);
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                ex.header(k.trim(), v.trim(), msg);
            }
        }
    }
}

impl L7Parser for NatsParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Nats
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 4222
    }

    fn probe(&self, data: &[u8], dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_start(data, dir)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(NatsParser {
            trace: Arc::clone(&self.trace),
            partial_limit: self.partial_limit,
            version: None,
            server_name: None,
            skip: [0; 2],
        })
    }

    fn pairing(&self) -> Pairing {
        Pairing::InOrder
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
        let Some(nl) = memchr::memchr(b'\n', data.get(..MAX_CONTROL_LINE.min(data.len())).unwrap_or_default()) else {
            return if data.len() >= MAX_CONTROL_LINE {
                ParseOutcome::Error(ParseErrorKind::Oversize)
            } else {
                ParseOutcome::NeedMore(1)
            };
        };
        let line = data.get(..nl).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return ParseOutcome::Skip(nl + 1);
        }
        // HPUB/HMSG: wait for the header block (or as much of it as the buffer may hold)
        let after = data.get(nl + 1..).unwrap_or_default();
        match self.line(line, after) {
            Ok((msg, hdr_used, skip)) => {
                let hdr_want = hdr_needed(line).min(self.partial_limit);
                if hdr_used < hdr_want && after.len() < hdr_want {
                    return ParseOutcome::NeedMore(hdr_want - after.len());
                }
                if let Some(s) = self.skip.get_mut(d) {
                    *s = if msg.length.is_some() { skip } else { 0 };
                }
                ParseOutcome::message(msg, nl + 1 + hdr_used)
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

/// Header bytes announced by an HPUB/HMSG line (0 for other verbs).
fn hdr_needed(line: &[u8]) -> usize {
    let mut words = line.split(|c| *c == b' ' || *c == b'\t').filter(|w| !w.is_empty());
    let Some(v) = words.next() else { return 0 };
    if !v.eq_ignore_ascii_case(b"HPUB") && !v.eq_ignore_ascii_case(b"HMSG") {
        return 0;
    }
    let w: Vec<&[u8]> = words.collect();
    w.len().checked_sub(2).and_then(|i| w.get(i)).and_then(|x| parse_usize(x)).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::EmitMode;
    use crate::l7::kafka::testkit::*;
    use deepflow_core::record::{L7FlowLog, LogType, ResponseStatus};

    fn make(cfg: &L7Config) -> Box<dyn L7Parser> {
        Box::new(NatsParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "nats", 4222, emit, segs)
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn exchange() -> Vec<(Direction, Vec<u8>)> {
        let hdrs = format!("NATS/1.0\r\ntraceparent: {TP}\r\nX-Request-ID: r-1\r\n\r\n");
        let hpub = format!("HPUB orders.new INBOX.1 {} {}\r\n{hdrs}hello\r\n", hdrs.len(), hdrs.len() + 5);
        let hmsg = format!("HMSG orders.new 1 {} {}\r\n{hdrs}hello\r\n", hdrs.len(), hdrs.len() + 5);
        vec![
            (
                S2C,
                b"INFO {\"server_id\":\"NABC\",\"server_name\":\"n1\",\"version\":\"2.9.15\",\"max_payload\":1048576}\r\n"
                    .to_vec(),
            ),
            (C2S, b"CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"x\"}\r\nPING\r\n".to_vec()),
            (S2C, b"PONG\r\n".to_vec()),
            (C2S, b"SUB orders.* q1 1\r\nPUB orders.new 5\r\nhello\r\n".to_vec()),
            (S2C, b"MSG orders.new 1 5\r\nhello\r\n".to_vec()),
            (C2S, hpub.into_bytes()),
            (S2C, hmsg.into_bytes()),
            (C2S, b"pub secret.x 3\r\nabc\r\nUNSUB 1\r\n".to_vec()),
            (S2C, b"-ERR 'Permissions Violation for Publish to \"secret.x\"'\r\n+OK\r\nPING\r\n".to_vec()),
            (C2S, b"PONG\r\n".to_vec()),
        ]
    }

    #[test]
    fn session_rows() {
        let rows = run(EmitMode::Sessions, &exchange());
        let names: Vec<_> = rows.iter().map(|r| r.request_type.clone().unwrap_or_default()).collect();
        assert_eq!(
            names,
            ["INFO", "PING", "SUB", "PUB", "MSG", "HPUB", "HMSG", "PUB", "UNSUB", "ERR", "OK", "PING"],
            "{rows:#?}"
        );
        let r = &rows[0];
        assert_eq!(r.log_type, LogType::Session);
        assert_eq!(r.version.as_deref(), Some("2.9.15"));
        assert_eq!(r.request_domain.as_deref(), Some("n1"));
        assert_eq!(r.response_status, ResponseStatus::Unknown);
        assert_eq!(rows[2].request_resource.as_deref(), Some("orders.*"));
        assert_eq!(rows[2].endpoint.as_deref(), Some("orders"));
        assert_eq!(rows[3].request_resource.as_deref(), Some("orders.new"));
        assert_eq!(rows[3].request_length, Some(5));
        let r = &rows[5];
        assert_eq!(r.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(r.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(r.x_request_id_0.as_deref(), Some("r-1"));
        assert_eq!(r.attribute_names, vec!["reply_to".to_string()]);
        assert_eq!(rows[6].trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(rows[7].request_resource.as_deref(), Some("secret.x"));
        assert_eq!(rows[9].response_exception.as_deref(), Some("Permissions Violation for Publish to \"secret.x\""));
        assert_eq!(rows[11].log_type, LogType::Session);
    }

    #[test]
    fn big_payload_skipped_exactly() {
        let payload = vec![b'P'; 50_000];
        let mut pubm = b"PUB big 50000\r\n".to_vec();
        pubm.extend(&payload);
        pubm.extend(b"\r\nPING\r\n");
        let mut segs = vec![(S2C, b"INFO {\"version\":\"2.9.0\"}\r\n".to_vec()), (C2S, b"CONNECT {}\r\n".to_vec())];
        for c in pubm.chunks(1000) {
            segs.push((C2S, c.to_vec()));
        }
        segs.push((S2C, b"PONG\r\n".to_vec()));
        let rows = run(EmitMode::Sessions, &segs);
        let names: Vec<_> = rows.iter().map(|r| r.request_type.clone().unwrap_or_default()).collect();
        assert_eq!(names, ["INFO", "PUB", "PING"]);
        // payload that looks like a verb is not parsed
        let segs = vec![(S2C, b"INFO {}\r\n".to_vec()), (C2S, b"PUB a 6\r\nPING\r\n\r\n".to_vec())];
        let rows = run(EmitMode::Messages, &segs);
        assert_eq!(rows.iter().filter(|r| r.request_type.as_deref() == Some("PING")).count(), 0);
    }

    #[test]
    fn probe() {
        let f = flow(1);
        let p = NatsParser::new(&L7Config::default());
        assert_eq!(p.probe(b"INFO {\"a\":1}\r\n", S2C, &f), Probe::Match);
        assert_eq!(p.probe(b"INF", S2C, &f), Probe::NeedMore);
        assert_eq!(p.probe(b"connect {}", C2S, &f), Probe::Match);
        assert_eq!(p.probe(b"GET / HTTP/1.1", C2S, &f), Probe::NotThis);
    }

    #[test]
    fn json() {
        assert_eq!(json_str(r#"{"a":"x","version" : "1.2"}"#, "version"), Some("1.2"));
        assert_eq!(json_str(r#"{"v":"\"version\"","version":"3"}"#, "version"), Some("3"));
        assert_eq!(json_str(r#"{"version":1}"#, "version"), None);
    }

    #[test]
    fn splits() {
        check_splits(&make, "nats", 4222, &exchange());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &exchange());
    }

    #[test]
    fn fuzz_50k() {
        fuzz(&make, "nats", &exchange(), 50_000);
    }
}
