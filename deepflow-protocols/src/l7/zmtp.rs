//! ZeroMQ Message Transport Protocol 3.0/3.1 (`zmtp`).
//!
//! Each side sends a 64-byte greeting (signature `FF … 7F`, version, 20-byte mechanism name,
//! as-server flag), then frames: a flags byte (bit 0 MORE, bit 1 LONG, bit 2 COMMAND), a
//! 1- or 8-byte size and the body. Commands carry a name (`READY`, `ERROR`, `HELLO`,
//! `WELCOME`, `INITIATE`, `SUBSCRIBE`, `CANCEL`, `PING`, `PONG`) and data; READY/INITIATE
//! metadata carries the `Socket-Type`. A message is one or more data frames (the last without
//! MORE). Fields follow L7_FIELDS.md "ZMTP": greeting `major.minor` → `version`, frame kind
//! (`Greeting`, `Command`, `Message`) → `request_type`, subscription topic →
//! `request_domain`/`request_resource` (PUB/SUB/XPUB/XSUB only: SUBSCRIBE/CANCEL commands of
//! 3.1, subscription messages `\x01topic`/`\x00topic` of 3.0, and the first frame of a
//! published message), ERROR reason → `response_exception` with client_error (from the
//! client) or server_error (from the server). Greeting and commands are one-way; messages are
//! requests/responses (paired in order) when a side is REQ or REP, otherwise one-way.
//! Beyond L7_FIELDS.md: the command name is kept as attribute `command`, the mechanism of the
//! greeting as attribute `mechanism`, socket types as `socket_type`.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;

// ---------------------------------------------------------------------------------------------
// constants

const GREETING_LEN: usize = 64;
const FLAG_MORE: u8 = 0x01;
const FLAG_LONG: u8 = 0x02;
const FLAG_COMMAND: u8 = 0x04;
/// Commands are handshake/control data: larger ones are not ZMTP.
const MAX_COMMAND: usize = 1024 * 1024;
/// Longest topic reported.
const MAX_TOPIC: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Socket {
    Req,
    Rep,
    Dealer,
    Router,
    Pub,
    Sub,
    XPub,
    XSub,
    Other,
}

impl Socket {
    fn from_name(n: &[u8]) -> Socket {
        match n {
            b"REQ" => Socket::Req,
            b"REP" => Socket::Rep,
            b"DEALER" => Socket::Dealer,
            b"ROUTER" => Socket::Router,
            b"PUB" => Socket::Pub,
            b"SUB" => Socket::Sub,
            b"XPUB" => Socket::XPub,
            b"XSUB" => Socket::XSub,
            _ => Socket::Other,
        }
    }
    fn pubsub(self) -> bool {
        matches!(self, Socket::Pub | Socket::Sub | Socket::XPub | Socket::XSub)
    }
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start with a ZMTP 3.x greeting?
pub fn probe_greeting(data: &[u8]) -> Probe {
    match data.first() {
        None => return Probe::NeedMore,
        Some(0xff) => {}
        Some(_) => return Probe::NotThis,
    }
    match (data.get(9), data.get(10)) {
        (Some(0x7f), Some(3..)) => Probe::Match,
        (Some(0x7f), None) | (None, _) => Probe::NeedMore,
        _ => Probe::NotThis,
    }
}

/// Metadata properties (READY/INITIATE): `(name, value)` pairs.
fn metadata(mut b: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    while let Some((&nl, rest)) = b.split_first() {
        let nl = usize::from(nl);
        let (Some(name), Some(len)) = (rest.get(..nl), rest.get(nl..nl + 4)) else { break };
        let vl = u32::from_be_bytes([
            len.first().copied().unwrap_or(0),
            len.get(1).copied().unwrap_or(0),
            len.get(2).copied().unwrap_or(0),
            len.get(3).copied().unwrap_or(0),
        ]) as usize;
        let Some(v) = rest.get(nl + 4..(nl + 4).saturating_add(vl)) else { break };
        out.push((name, v));
        b = rest.get(nl + 4 + vl..).unwrap_or_default();
    }
    out
}

fn topic_str(t: &[u8]) -> String {
    String::from_utf8_lossy(t.get(..t.len().min(MAX_TOPIC)).unwrap_or_default()).into_owned()
}

// ---------------------------------------------------------------------------------------------
// parser

#[derive(Debug, Default, Clone)]
struct Dir {
    greeted: bool,
    socket: Option<Socket>,
    /// Inside a multi-frame message: its first frame (topic candidate) and size so far.
    in_message: bool,
    first_frame: Option<Vec<u8>>,
    msg_len: u64,
    skip: usize,
}

/// The ZMTP parser.
pub struct ZmtpParser {
    partial_limit: usize,
    version: Option<String>,
    dirs: [Dir; 2],
}

impl ZmtpParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        ZmtpParser { partial_limit: (cfg.max_buffered_bytes / 2).max(64), version: None, dirs: Default::default() }
    }

    fn base(&self, kind: MessageKind, name: &str) -> L7Message {
        let mut m = L7Message::new(L7Protocol::Zmtp, kind);
        m.version = self.version.clone();
        m.request_type = Some(name.to_string());
        if kind != MessageKind::Request {
            m.response_status = Some(ResponseStatus::Ok);
        }
        m
    }

    fn sockets(&self, dir: Direction) -> (Option<Socket>, Option<Socket>) {
        let d = dir.index();
        (self.dirs.get(d).and_then(|x| x.socket), self.dirs.get(1 - d).and_then(|x| x.socket))
    }

    fn pubsub(&self) -> bool {
        self.dirs.iter().any(|d| d.socket.is_some_and(Socket::pubsub))
    }

    fn greeting(&mut self, data: &[u8]) -> ParseOutcome {
        if data.len() < GREETING_LEN {
            if probe_greeting(data) == Probe::NotThis {
                return ParseOutcome::Error(ParseErrorKind::Malformed);
            }
            return ParseOutcome::NeedMore(GREETING_LEN - data.len());
        }
        if probe_greeting(data) != Probe::Match {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let major = data.get(10).copied().unwrap_or(0);
        let minor = data.get(11).copied().unwrap_or(0);
        let v = format!("{major}.{minor}");
        self.version = Some(match &self.version {
            Some(old) if old.as_str() < v.as_str() => old.clone(),
            _ => v,
        });
        let mech = data.get(12..32).unwrap_or_default();
        let mech = String::from_utf8_lossy(mech.split(|c| *c == 0).next().unwrap_or_default()).into_owned();
        let mut m = self.base(MessageKind::OneWay, "Greeting");
        m.length = Some(GREETING_LEN as u64);
        m.attr("mechanism", mech);
        ParseOutcome::message(m, GREETING_LEN)
    }

    fn command(&mut self, body: &[u8], dir: Direction, len: usize) -> L7Message {
        let nl = usize::from(body.first().copied().unwrap_or(0));
        let (name, data): (&[u8], &[u8]) = match body.get(1..1 + nl) {
            Some(n) if !n.is_empty() && n.iter().all(u8::is_ascii_alphabetic) => {
                (n, body.get(1 + nl..).unwrap_or_default())
            }
            // libzmq 4.3.5 (as bundled by pyzmq) PLAIN servers reject credentials with the
            // 9-byte body `^RROR\x03400`: recognise it as ERROR
            _ if body.get(1..5) == Some(b"RROR") => (b"ERROR", body.get(5..).unwrap_or_default()),
            _ => (body.get(1..1 + nl).unwrap_or_default(), body.get(1 + nl..).unwrap_or_default()),
        };
        let mut m = self.base(MessageKind::OneWay, "Command");
        m.length = Some(len as u64);
        m.attr("command", String::from_utf8_lossy(name));
        match name {
            b"READY" | b"INITIATE" => {
                for (k, v) in metadata(data) {
                    if k.eq_ignore_ascii_case(b"Socket-Type") {
                        if let Some(d) = self.dirs.get_mut(dir.index()) {
                            d.socket = Some(Socket::from_name(v));
                        }
                        m.attr("socket_type", String::from_utf8_lossy(v));
                    }
                }
            }
            b"ERROR" => {
                let rl = usize::from(data.first().copied().unwrap_or(0));
                let reason = data.get(1..1 + rl).unwrap_or_default();
                m.response_exception = Some(String::from_utf8_lossy(reason).into_owned());
                m.response_status = Some(match dir {
                    Direction::ClientToServer => ResponseStatus::ClientError,
                    Direction::ServerToClient => ResponseStatus::ServerError,
                });
            }
            b"SUBSCRIBE" | b"CANCEL" => {
                let t = topic_str(data);
                m.request_domain = Some(t.clone());
                m.request_resource = Some(t);
            }
            _ => {}
        }
        m
    }

    fn message(&mut self, dir: Direction) -> L7Message {
        let (me, peer) = self.sockets(dir);
        let kind = match (me, peer) {
            (Some(Socket::Req), _) | (Some(Socket::Dealer), Some(Socket::Rep)) => MessageKind::Request,
            (Some(Socket::Rep), _) | (Some(Socket::Router), Some(Socket::Req)) => MessageKind::Response,
            _ => MessageKind::OneWay,
        };
        let pubsub = self.pubsub();
        let mut m = self.base(kind, "Message");
        let Some(d) = self.dirs.get_mut(dir.index()) else { return m };
        m.length = Some(d.msg_len);
        if pubsub && let Some(first) = d.first_frame.take() {
            // 3.0 subscriptions travel as messages \x01topic / \x00topic from the subscriber
            let topic = match (me, first.split_first()) {
                (Some(Socket::Sub | Socket::XSub), Some((0 | 1, t))) => t.to_vec(),
                _ => first,
            };
            let t = topic_str(&topic);
            m.request_domain = Some(t.clone());
            m.request_resource = Some(t);
        }
        d.in_message = false;
        d.first_frame = None;
        d.msg_len = 0;
        m
    }
}

impl L7Parser for ZmtpParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Zmtp
    }

    fn probe(&self, data: &[u8], _dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_greeting(data)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(ZmtpParser { partial_limit: self.partial_limit, version: None, dirs: Default::default() })
    }

    fn pairing(&self) -> Pairing {
        Pairing::InOrder
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        let dir = ctx.dir;
        let di = dir.index();
        let Some(d) = self.dirs.get_mut(di) else { return ParseOutcome::Error(ParseErrorKind::Malformed) };
        if d.skip > 0 {
            let n = d.skip.min(data.len());
            d.skip -= n;
            return ParseOutcome::Skip(n);
        }
        if !d.greeted {
            let out = self.greeting(data);
            if matches!(out, ParseOutcome::Message(..))
                && let Some(d) = self.dirs.get_mut(di)
            {
                d.greeted = true;
            }
            return out;
        }
        let Some(&flags) = data.first() else { return ParseOutcome::NeedMore(1) };
        if flags & !0x07 != 0 {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let (hl, size) = if flags & FLAG_LONG != 0 {
            let Some(b) = data.get(1..9) else { return ParseOutcome::NeedMore(9 - data.len()) };
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            (9, u64::from_be_bytes(a))
        } else {
            let Some(&b) = data.get(1) else { return ParseOutcome::NeedMore(1) };
            (2, u64::from(b))
        };
        let Ok(size) = usize::try_from(size) else { return ParseOutcome::Error(ParseErrorKind::Malformed) };
        let Some(total) = size.checked_add(hl) else { return ParseOutcome::Error(ParseErrorKind::Malformed) };
        if flags & FLAG_COMMAND != 0 {
            if size > MAX_COMMAND || flags & FLAG_MORE != 0 {
                return ParseOutcome::Error(ParseErrorKind::Malformed);
            }
            if data.len() < total {
                return ParseOutcome::NeedMore(total - data.len());
            }
            let body = data.get(hl..total).unwrap_or_default();
            let m = self.command(body, dir, size);
            return ParseOutcome::message(m, total);
        }
        // data frame: keep the first frame (topic) prefix, skip bodies
        let want = total.min(hl + MAX_TOPIC).min(self.partial_limit.max(hl));
        if data.len() < want {
            return ParseOutcome::NeedMore(want - data.len());
        }
        let avail = total.min(data.len());
        let Some(d) = self.dirs.get_mut(di) else { return ParseOutcome::Error(ParseErrorKind::Malformed) };
        if !d.in_message {
            d.in_message = true;
            d.first_frame = Some(data.get(hl..avail.min(hl + MAX_TOPIC)).unwrap_or_default().to_vec());
        }
        d.msg_len += size as u64;
        d.skip = total - avail;
        if flags & FLAG_MORE != 0 {
            return ParseOutcome::Skip(avail.max(1));
        }
        let m = self.message(dir);
        ParseOutcome::message(m, avail)
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(d) = self.dirs.get_mut(dir.index()) {
            d.skip = 0;
            d.in_message = false;
            d.first_frame = None;
            d.msg_len = 0;
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
        Box::new(ZmtpParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "zmtp", 5555, emit, segs)
    }

    fn greeting(mech: &str, server: bool) -> Vec<u8> {
        let mut g = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 1];
        let mut m = mech.as_bytes().to_vec();
        m.resize(20, 0);
        g.extend(m);
        g.push(u8::from(server));
        g.resize(64, 0);
        g
    }
    fn cmd(name: &str, data: &[u8]) -> Vec<u8> {
        let mut body = vec![name.len() as u8];
        body.extend(name.as_bytes());
        body.extend(data);
        let mut v = vec![FLAG_COMMAND, body.len() as u8];
        v.extend(body);
        v
    }
    fn ready(socket: &str) -> Vec<u8> {
        let mut md = vec![11];
        md.extend(b"Socket-Type");
        md.extend((socket.len() as u32).to_be_bytes());
        md.extend(socket.as_bytes());
        cmd("READY", &md)
    }
    fn frame(more: bool, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        if body.len() > 255 {
            v.push(FLAG_LONG | u8::from(more));
            v.extend((body.len() as u64).to_be_bytes());
        } else {
            v.push(u8::from(more));
            v.push(body.len() as u8);
        }
        v.extend(body);
        v
    }

    fn reqrep() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C2S, greeting("NULL", false)),
            (S2C, greeting("NULL", true)),
            (C2S, ready("REQ")),
            (S2C, ready("REP")),
            (C2S, [frame(true, b""), frame(false, b"hello")].concat()),
            (S2C, [frame(true, b""), frame(false, &[b'w'; 300])].concat()),
        ]
    }

    fn pubsub() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C2S, greeting("PLAIN", false)),
            (S2C, greeting("PLAIN", true)),
            (C2S, cmd("HELLO", b"\x04user\x04pass")),
            (S2C, cmd("WELCOME", b"")),
            (C2S, ready("SUB")),
            (S2C, ready("PUB")),
            (C2S, [cmd("SUBSCRIBE", b"weather"), frame(false, b"\x01news")].concat()),
            (S2C, [frame(true, b"weather.paris"), frame(false, b"20C")].concat()),
            (S2C, cmd("ERROR", b"\x0bbad thing!!")),
        ]
    }

    #[test]
    fn req_rep() {
        let rows = run(EmitMode::Sessions, &reqrep());
        let names: Vec<_> = rows.iter().map(|r| r.request_type.clone().unwrap_or_default()).collect();
        assert_eq!(names, ["Greeting", "Greeting", "Command", "Command", "Message"], "{rows:#?}");
        assert_eq!(rows[0].version.as_deref(), Some("3.1"));
        let r = &rows[4];
        assert_eq!(r.log_type, LogType::Session);
        assert_eq!(r.request_length, Some(5));
        assert_eq!(r.response_length, Some(300));
        assert_eq!(r.response_status, ResponseStatus::Ok);
        assert!(r.request_domain.is_none());
    }

    #[test]
    fn pub_sub_and_error() {
        let rows = run(EmitMode::Sessions, &pubsub());
        let names: Vec<_> = rows.iter().map(|r| r.request_type.clone().unwrap_or_default()).collect();
        assert_eq!(
            names,
            [
                "Greeting", "Greeting", "Command", "Command", "Command", "Command", "Command", "Message", "Message",
                "Command"
            ]
        );
        assert_eq!(rows[6].request_resource.as_deref(), Some("weather"));
        assert_eq!(rows[7].request_domain.as_deref(), Some("news"));
        assert_eq!(rows[8].request_resource.as_deref(), Some("weather.paris"));
        assert_eq!(rows[8].log_type, LogType::Session);
        assert_eq!(rows[9].response_exception.as_deref(), Some("bad thing!!"));
        assert_eq!(rows[9].response_status, ResponseStatus::ServerError);
        assert_eq!(rows[0].attribute_values, vec!["PLAIN".to_string()]);
    }

    #[test]
    fn probe() {
        let f = flow(1);
        let p = ZmtpParser::new(&L7Config::default());
        assert_eq!(p.probe(&greeting("NULL", false), C2S, &f), Probe::Match);
        assert_eq!(p.probe(&[0xff, 0, 0], C2S, &f), Probe::NeedMore);
        assert_eq!(p.probe(&[0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7e, 3], C2S, &f), Probe::NotThis);
        assert_eq!(p.probe(b"GET / HTTP/1.1", C2S, &f), Probe::NotThis);
    }

    #[test]
    fn splits() {
        check_splits(&make, "zmtp", 5555, &reqrep());
        check_splits(&make, "zmtp", 5555, &pubsub());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &reqrep());
        check_truncations(make(&L7Config::default()).as_ref(), &pubsub());
    }

    #[test]
    fn fuzz_50k() {
        let mut seeds = reqrep();
        seeds.extend(pubsub());
        fuzz(&make, "zmtp", &seeds, 50_000);
    }
}
