//! AMQP 0-9-1 (`amqp`, RabbitMQ).
//!
//! After the 8-byte protocol header (`AMQP\0\0\x09\x01`) both sides exchange frames: type
//! (1 method, 2 content header, 3 content body, 8 heartbeat), channel, size, payload and the
//! frame-end octet 0xCE. Fields follow L7_FIELDS.md "AMQP": version `v0.9.1`,
//! `Class.Method` → `request_type`, Connection.Open vhost → `request_domain` (until
//! Connection.CloseOk), `exchange.routing_key` (or the queue when both are empty) →
//! `request_resource`/`endpoint`, reply code of Connection.Close / Channel.Close /
//! Basic.Return → `response_code` with the reply text as `response_result` (code 200) or
//! `response_exception`. Synchronous methods are requests paired with their `…Ok` on the same
//! channel (the pairing key, also the `request_id` column); methods sent with `no-wait`
//! expect no answer and are one-way. Channel.Close with an error answers the pending request
//! of its channel and is itself a request awaiting Channel.CloseOk. Trace context comes from
//! the `headers` table of Basic content headers (`traceparent`, `sw8`, `sw6`, `sw3`).
//!
//! Beyond L7_FIELDS.md: `request_type` is also filled on one-way and response frames (DeepFlow
//! fills it on request frames only), and `request_id` carries the channel number.
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

const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";
const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xce;
/// Frames larger than this are not AMQP (RabbitMQ's `frame_max` ceiling is 128 KiB by
/// default; the protocol allows up to 4 GiB but no broker negotiates that).
const MAX_FRAME: usize = 64 * 1024 * 1024;

const CONNECTION: u16 = 10;
const CHANNEL: u16 = 20;
const EXCHANGE: u16 = 40;
const QUEUE: u16 = 50;
const BASIC: u16 = 60;
const CONFIRM: u16 = 85;
const TX: u16 = 90;

/// Role of a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Synchronous request awaiting `…Ok`.
    Req,
    /// The `…Ok` (or GetEmpty) answer.
    Resp,
    /// Asynchronous.
    OneWay,
}

/// `Class.Method` name and role of a method.
fn method(class: u16, m: u16) -> Option<(&'static str, Role)> {
    use Role::*;
    Some(match (class, m) {
        (CONNECTION, 10) => ("Connection.Start", Req),
        (CONNECTION, 11) => ("Connection.StartOk", Resp),
        (CONNECTION, 20) => ("Connection.Secure", Req),
        (CONNECTION, 21) => ("Connection.SecureOk", Resp),
        (CONNECTION, 30) => ("Connection.Tune", Req),
        (CONNECTION, 31) => ("Connection.TuneOk", Resp),
        (CONNECTION, 40) => ("Connection.Open", Req),
        (CONNECTION, 41) => ("Connection.OpenOk", Resp),
        (CONNECTION, 50) => ("Connection.Close", Req),
        (CONNECTION, 51) => ("Connection.CloseOk", Resp),
        (CONNECTION, 60) => ("Connection.Blocked", OneWay),
        (CONNECTION, 61) => ("Connection.Unblocked", OneWay),
        (CONNECTION, 70) => ("Connection.UpdateSecret", Req),
        (CONNECTION, 71) => ("Connection.UpdateSecretOk", Resp),
        (CHANNEL, 10) => ("Channel.Open", Req),
        (CHANNEL, 11) => ("Channel.OpenOk", Resp),
        (CHANNEL, 20) => ("Channel.Flow", Req),
        (CHANNEL, 21) => ("Channel.FlowOk", Resp),
        (CHANNEL, 40) => ("Channel.Close", Req),
        (CHANNEL, 41) => ("Channel.CloseOk", Resp),
        (EXCHANGE, 10) => ("Exchange.Declare", Req),
        (EXCHANGE, 11) => ("Exchange.DeclareOk", Resp),
        (EXCHANGE, 20) => ("Exchange.Delete", Req),
        (EXCHANGE, 21) => ("Exchange.DeleteOk", Resp),
        (EXCHANGE, 30) => ("Exchange.Bind", Req),
        (EXCHANGE, 31) => ("Exchange.BindOk", Resp),
        (EXCHANGE, 40) => ("Exchange.Unbind", Req),
        (EXCHANGE, 51) => ("Exchange.UnbindOk", Resp),
        (QUEUE, 10) => ("Queue.Declare", Req),
        (QUEUE, 11) => ("Queue.DeclareOk", Resp),
        (QUEUE, 20) => ("Queue.Bind", Req),
        (QUEUE, 21) => ("Queue.BindOk", Resp),
        (QUEUE, 30) => ("Queue.Purge", Req),
        (QUEUE, 31) => ("Queue.PurgeOk", Resp),
        (QUEUE, 40) => ("Queue.Delete", Req),
        (QUEUE, 41) => ("Queue.DeleteOk", Resp),
        (QUEUE, 50) => ("Queue.Unbind", Req),
        (QUEUE, 51) => ("Queue.UnbindOk", Resp),
        (BASIC, 10) => ("Basic.Qos", Req),
        (BASIC, 11) => ("Basic.QosOk", Resp),
        (BASIC, 20) => ("Basic.Consume", Req),
        (BASIC, 21) => ("Basic.ConsumeOk", Resp),
        (BASIC, 30) => ("Basic.Cancel", Req),
        (BASIC, 31) => ("Basic.CancelOk", Resp),
        (BASIC, 40) => ("Basic.Publish", OneWay),
        (BASIC, 50) => ("Basic.Return", OneWay),
        (BASIC, 60) => ("Basic.Deliver", OneWay),
        (BASIC, 70) => ("Basic.Get", Req),
        (BASIC, 71) => ("Basic.GetOk", Resp),
        (BASIC, 72) => ("Basic.GetEmpty", Resp),
        (BASIC, 80) => ("Basic.Ack", OneWay),
        (BASIC, 90) => ("Basic.Reject", OneWay),
        (BASIC, 100) => ("Basic.RecoverAsync", OneWay),
        (BASIC, 110) => ("Basic.Recover", Req),
        (BASIC, 111) => ("Basic.RecoverOk", Resp),
        (BASIC, 120) => ("Basic.Nack", OneWay),
        (CONFIRM, 10) => ("Confirm.Select", Req),
        (CONFIRM, 11) => ("Confirm.SelectOk", Resp),
        (TX, 10) => ("Tx.Select", Req),
        (TX, 11) => ("Tx.SelectOk", Resp),
        (TX, 20) => ("Tx.Commit", Req),
        (TX, 21) => ("Tx.CommitOk", Resp),
        (TX, 30) => ("Tx.Rollback", Req),
        (TX, 31) => ("Tx.RollbackOk", Resp),
        _ => return None,
    })
}

/// Status of a reply code (L7_FIELDS.md): 200 ok; 320, 506, 541 server_error; other codes
/// client_error. Code 0 is also ok: pika closes channels with `0 Normal shutdown`.
pub fn reply_status(code: u16) -> ResponseStatus {
    match code {
        0 | 200 => ResponseStatus::Ok,
        320 | 506 | 541 => ResponseStatus::ServerError,
        _ => ResponseStatus::ClientError,
    }
}

// ---------------------------------------------------------------------------------------------
// byte reader

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
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn shortstr(&mut self) -> Option<&'a str> {
        let n = usize::from(self.u8()?);
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn longstr(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
    /// Skips one field value of type `t` (RabbitMQ's field-type letters); string values are
    /// returned.
    fn field_value(&mut self, t: u8, depth: u8) -> Option<Option<&'a [u8]>> {
        let n = match t {
            b't' | b'b' | b'B' => 1,
            b's' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'l' | b'L' | b'd' | b'T' => 8,
            b'D' => 5,
            b'V' => 0,
            b'S' | b'x' => return Some(Some(self.longstr()?)),
            b'F' | b'A' => {
                if depth > 8 {
                    return None;
                }
                let body = self.longstr()?;
                let mut inner = Rd { b: body, pos: 0 };
                if t == b'F' {
                    inner.table(depth + 1, &mut |_, _| {})?;
                }
                return Some(None);
            }
            _ => return None,
        };
        self.take(n)?;
        Some(None)
    }
    /// Walks a field table body (without its length), calling `f(name, string value)`.
    fn table(&mut self, depth: u8, f: &mut dyn FnMut(&str, &[u8])) -> Option<()> {
        while self.pos < self.b.len() {
            let name = self.shortstr()?;
            let t = self.u8()?;
            if let Some(v) = self.field_value(t, depth)? {
                f(name, v);
            }
        }
        Some(())
    }
}

/// Does `data` start an AMQP 0-9-1 connection (protocol header, or the server's
/// Connection.Start)?
pub fn probe_start(data: &[u8]) -> Probe {
    let n = data.len().min(8);
    if data.get(..n.min(4)) == PROTOCOL_HEADER.get(..n.min(4)) {
        return if n < 8 {
            Probe::NeedMore
        } else if data.get(..8) == Some(PROTOCOL_HEADER) {
            Probe::Match
        } else {
            Probe::NotThis
        };
    }
    // 01 0000 <size> 000a 000a: Connection.Start on channel 0
    let start = [FRAME_METHOD, 0, 0];
    let k = data.len().min(3);
    if data.get(..k) != start.get(..k) {
        return Probe::NotThis;
    }
    if data.len() < 11 {
        return Probe::NeedMore;
    }
    if data.get(7..11) == Some(&[0, 10, 0, 10]) { Probe::Match } else { Probe::NotThis }
}

// ---------------------------------------------------------------------------------------------
// parser

/// The AMQP 0-9-1 parser.
pub struct AmqpParser {
    trace: Arc<TraceConfig>,
    vhost: Option<String>,
    skip: [usize; 2],
    /// Second message of a Channel.Close with an error (the request awaiting CloseOk), with
    /// the frame length to consume when it is returned.
    held: Option<(Box<L7Message>, usize)>,
}

impl AmqpParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        AmqpParser { trace: Arc::new(cfg.trace.clone()), vhost: None, skip: [0; 2], held: None }
    }

    fn base(&self, kind: MessageKind, name: &str, channel: u16, len: usize) -> L7Message {
        let mut msg = L7Message::new(L7Protocol::Amqp, kind);
        msg.version = Some("v0.9.1".to_string());
        msg.request_type = Some(name.to_string());
        msg.request_domain = self.vhost.clone();
        msg.request_id = Some(u32::from(channel));
        msg.length = Some(len as u64);
        if kind != MessageKind::Request {
            msg.response_status = Some(ResponseStatus::Ok);
        }
        msg
    }

    /// Decodes a method frame payload. Returns the message and, for Channel.Close with an
    /// error, the second (request) message.
    fn method_frame(
        &mut self,
        p: &[u8],
        channel: u16,
        len: usize,
    ) -> Result<(L7Message, Option<L7Message>), ParseErrorKind> {
        let m = ParseErrorKind::Malformed;
        let mut r = Rd { b: p, pos: 0 };
        let class = r.u16().ok_or(m)?;
        let mid = r.u16().ok_or(m)?;
        let (name, mut role) = method(class, mid).ok_or(m)?;
        let mut exchange = "";
        let mut rkey = "";
        let mut queue = "";
        let mut reply: Option<(u16, String)> = None;
        // Each arm reads only what it reports; a short frame is malformed.
        match (class, mid) {
            (CONNECTION, 40) => {
                let vhost = r.shortstr().ok_or(m)?;
                self.vhost = Some(vhost.to_string());
            }
            (CONNECTION, 50) | (CHANNEL, 40) => {
                let code = r.u16().ok_or(m)?;
                let text = r.shortstr().ok_or(m)?;
                reply = Some((code, text.to_string()));
            }
            (EXCHANGE, 10) => {
                r.u16().ok_or(m)?;
                exchange = r.shortstr().ok_or(m)?;
                r.shortstr().ok_or(m)?; // type
                if r.u8().ok_or(m)? & 0x10 != 0 {
                    role = Role::OneWay; // no-wait
                }
            }
            (EXCHANGE, 20) => {
                r.u16().ok_or(m)?;
                exchange = r.shortstr().ok_or(m)?;
                if r.u8().ok_or(m)? & 0x02 != 0 {
                    role = Role::OneWay;
                }
            }
            (EXCHANGE, 30) | (EXCHANGE, 40) => {
                r.u16().ok_or(m)?;
                exchange = r.shortstr().ok_or(m)?; // destination
                r.shortstr().ok_or(m)?; // source
                rkey = r.shortstr().ok_or(m)?;
                if r.u8().ok_or(m)? & 0x01 != 0 {
                    role = Role::OneWay;
                }
            }
            (QUEUE, 10) => {
                r.u16().ok_or(m)?;
                queue = r.shortstr().ok_or(m)?;
                if r.u8().ok_or(m)? & 0x10 != 0 {
                    role = Role::OneWay;
                }
            }
            (QUEUE, 11) => queue = r.shortstr().ok_or(m)?,
            (QUEUE, 20) | (QUEUE, 50) => {
                r.u16().ok_or(m)?;
                queue = r.shortstr().ok_or(m)?;
                exchange = r.shortstr().ok_or(m)?;
                rkey = r.shortstr().ok_or(m)?;
                if mid == 20 && r.u8().ok_or(m)? & 0x01 != 0 {
                    role = Role::OneWay;
                }
            }
            (QUEUE, 30) | (QUEUE, 40) => {
                r.u16().ok_or(m)?;
                queue = r.shortstr().ok_or(m)?;
                let bit = if mid == 30 { 0x01 } else { 0x04 };
                if r.u8().ok_or(m)? & bit != 0 {
                    role = Role::OneWay;
                }
            }
            (BASIC, 20) => {
                r.u16().ok_or(m)?;
                queue = r.shortstr().ok_or(m)?;
                r.shortstr().ok_or(m)?; // consumer tag
                if r.u8().ok_or(m)? & 0x08 != 0 {
                    role = Role::OneWay;
                }
            }
            (BASIC, 30) => {
                r.shortstr().ok_or(m)?;
                if r.u8().ok_or(m)? & 0x01 != 0 {
                    role = Role::OneWay;
                }
            }
            (BASIC, 40) => {
                r.u16().ok_or(m)?;
                exchange = r.shortstr().ok_or(m)?;
                rkey = r.shortstr().ok_or(m)?;
            }
            (BASIC, 50) => {
                let code = r.u16().ok_or(m)?;
                let text = r.shortstr().ok_or(m)?;
                reply = Some((code, text.to_string()));
                exchange = r.shortstr().ok_or(m)?;
                rkey = r.shortstr().ok_or(m)?;
            }
            (BASIC, 60) => {
                r.shortstr().ok_or(m)?; // consumer tag
                r.take(9).ok_or(m)?; // delivery tag, redelivered
                exchange = r.shortstr().ok_or(m)?;
                rkey = r.shortstr().ok_or(m)?;
            }
            (BASIC, 70) => {
                r.u16().ok_or(m)?;
                queue = r.shortstr().ok_or(m)?;
            }
            (BASIC, 71) => {
                r.take(9).ok_or(m)?;
                exchange = r.shortstr().ok_or(m)?;
                rkey = r.shortstr().ok_or(m)?;
            }
            (CONFIRM, 10) => {
                if r.u8().ok_or(m)? & 0x01 != 0 {
                    role = Role::OneWay;
                }
            }
            _ => {}
        }
        if (class, mid) == (CONNECTION, 50)
            && reply.as_ref().is_some_and(|(c, _)| reply_status(*c) != ResponseStatus::Ok)
        {
            role = Role::Resp;
        }
        let kind = match role {
            Role::Req => MessageKind::Request,
            Role::Resp => MessageKind::Response,
            Role::OneWay => MessageKind::OneWay,
        };
        let mut msg = self.base(kind, name, channel, len);
        let resource = if exchange.is_empty() && rkey.is_empty() {
            (!queue.is_empty()).then(|| queue.to_string())
        } else {
            Some(format!("{exchange}.{rkey}"))
        };
        msg.endpoint = resource.clone();
        msg.request_resource = resource;
        let mut second = None;
        if let Some((code, text)) = reply {
            let st = reply_status(code);
            msg.response_code = Some(i32::from(code));
            if kind != MessageKind::Request {
                msg.response_status = Some(st);
            }
            if st == ResponseStatus::Ok {
                msg.response_result = Some(text);
            } else {
                msg.response_exception = Some(text);
            }
            if (class, mid) == (CHANNEL, 40) && st != ResponseStatus::Ok {
                // an error answers the channel's pending request, and awaits Channel.CloseOk
                let mut req = msg.clone();
                req.kind = Some(MessageKind::Request);
                req.response_status = None;
                msg.kind = Some(MessageKind::Response);
                msg.response_status = Some(st);
                second = Some(req);
            }
        }
        if (class, mid) == (CONNECTION, 51) {
            self.vhost = None;
        }
        Ok((msg, second))
    }

    fn header_frame(&self, p: &[u8], channel: u16, len: usize) -> L7Message {
        let mut msg = self.base(MessageKind::OneWay, "Content-Header", channel, len);
        let _ = self.header_trace(p, &mut msg);
        msg
    }

    fn header_trace(&self, p: &[u8], msg: &mut L7Message) -> Option<()> {
        let mut r = Rd { b: p, pos: 0 };
        if r.u16()? != BASIC {
            return None;
        }
        r.take(2 + 8)?;
        let flags = r.u16()?;
        if flags & 0x2000 == 0 {
            return None;
        }
        for bit in [0x8000u16, 0x4000] {
            if flags & bit != 0 {
                r.shortstr()?;
            }
        }
        let table = r.longstr()?;
        let mut t = Rd { b: table, pos: 0 };
        let mut ex = TraceExtractor::new(&self.trace);
        let _ = t.table(0, &mut |k, v| {
            if ["traceparent", "sw8", "sw6", "sw3"].iter().any(|n| n.eq_ignore_ascii_case(k))
                && let Ok(v) = std::str::from_utf8(v)
            {
                ex.header(k, v, msg);
            }
        });
        Some(())
    }
}

impl L7Parser for AmqpParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Amqp
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 5672
    }

    fn probe(&self, data: &[u8], _dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_start(data)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(AmqpParser { trace: Arc::clone(&self.trace), vhost: None, skip: [0; 2], held: None })
    }

    fn pairing(&self) -> Pairing {
        Pairing::ById
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        if let Some((msg, n)) = self.held.take() {
            return ParseOutcome::Message(msg, n.min(data.len()));
        }
        let d = ctx.dir.index();
        if let Some(skip) = self.skip.get_mut(d)
            && *skip > 0
        {
            let n = (*skip).min(data.len());
            *skip -= n;
            return ParseOutcome::Skip(n);
        }
        if data.first() == Some(&b'A') {
            let n = data.len().min(8);
            if data.get(..n) != PROTOCOL_HEADER.get(..n) && data.get(..4.min(n)) != b"AMQP".get(..4.min(n)) {
                return ParseOutcome::Error(ParseErrorKind::Malformed);
            }
            if n < 8 {
                return ParseOutcome::NeedMore(8 - n);
            }
            let mut msg = self.base(MessageKind::OneWay, "Protocol-Header", 0, 8);
            msg.request_id = None;
            return ParseOutcome::message(msg, 8);
        }
        if data.len() < 7 {
            return ParseOutcome::NeedMore(7 - data.len());
        }
        let mut r = Rd { b: data, pos: 0 };
        let (Some(t), Some(channel), Some(size)) = (r.u8(), r.u16(), r.u32()) else {
            return ParseOutcome::NeedMore(7);
        };
        let size = size as usize;
        if size > MAX_FRAME {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let total = 7 + size + 1;
        if t == FRAME_BODY {
            // report the body frame from its header, skip the payload and frame end
            let msg = self.base(MessageKind::OneWay, "Content-Body", channel, size);
            if let Some(s) = self.skip.get_mut(d) {
                *s = size + 1;
            }
            return ParseOutcome::message(msg, 7);
        }
        if data.len() < total {
            return ParseOutcome::NeedMore(total - data.len());
        }
        if data.get(total - 1) != Some(&FRAME_END) {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let payload = data.get(7..7 + size).unwrap_or_default();
        match t {
            FRAME_METHOD => match self.method_frame(payload, channel, size) {
                Ok((msg, None)) => ParseOutcome::message(msg, total),
                Ok((msg, Some(second))) => {
                    self.held = Some((Box::new(second), total));
                    ParseOutcome::message(msg, 0)
                }
                Err(e) => ParseOutcome::Error(e),
            },
            FRAME_HEADER => ParseOutcome::message(self.header_frame(payload, channel, size), total),
            FRAME_HEARTBEAT => ParseOutcome::message(self.base(MessageKind::OneWay, "Heartbeat", channel, size), total),
            _ => ParseOutcome::Error(ParseErrorKind::Malformed),
        }
    }

    fn on_gap(&mut self, dir: Direction) {
        self.held = None;
        if let Some(s) = self.skip.get_mut(dir.index()) {
            *s = 0;
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use crate::EmitMode;
    use crate::l7::kafka::testkit::*;
    use deepflow_core::record::{L7FlowLog, LogType};

    fn make(cfg: &L7Config) -> Box<dyn L7Parser> {
        Box::new(AmqpParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "amqp", 5672, emit, segs)
    }

    fn ss(s: &str) -> Vec<u8> {
        let mut v = vec![s.len() as u8];
        v.extend(s.as_bytes());
        v
    }
    fn frame(t: u8, ch: u16, payload: Vec<u8>) -> Vec<u8> {
        let mut v = vec![t];
        v.extend(ch.to_be_bytes());
        v.extend((payload.len() as u32).to_be_bytes());
        v.extend(payload);
        v.push(FRAME_END);
        v
    }
    fn meth(ch: u16, class: u16, m: u16, args: Vec<u8>) -> Vec<u8> {
        let mut p = class.to_be_bytes().to_vec();
        p.extend(m.to_be_bytes());
        p.extend(args);
        frame(FRAME_METHOD, ch, p)
    }
    fn content_header(ch: u16, body: u64, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut p = BASIC.to_be_bytes().to_vec();
        p.extend(0u16.to_be_bytes());
        p.extend(body.to_be_bytes());
        p.extend((0x8000u16 | 0x2000 | 0x1000).to_be_bytes());
        p.extend(ss("text/plain"));
        let mut t = Vec::new();
        t.extend(ss("n"));
        t.push(b'I');
        t.extend(7i32.to_be_bytes());
        t.extend(ss("nested"));
        t.push(b'F');
        t.extend(0u32.to_be_bytes());
        for (k, v) in headers {
            t.extend(ss(k));
            t.push(b'S');
            t.extend((v.len() as u32).to_be_bytes());
            t.extend(v.as_bytes());
        }
        p.extend((t.len() as u32).to_be_bytes());
        p.extend(t);
        p.push(2); // delivery mode
        frame(FRAME_HEADER, ch, p)
    }

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    pub(crate) fn exchange() -> Vec<(Direction, Vec<u8>)> {
        let start = [vec![0, 9], 0u32.to_be_bytes().to_vec(), 5u32.to_be_bytes().to_vec(), b"PLAIN".to_vec()].concat();
        let start = [start, 5u32.to_be_bytes().to_vec(), b"en_US".to_vec()].concat();
        let publish = [0u16.to_be_bytes().to_vec(), ss("amq.direct"), ss("rk.1"), vec![0]].concat();
        let mut seg_pub = meth(1, BASIC, 40, publish);
        seg_pub.extend(content_header(1, 5, &[("traceparent", TP)]));
        seg_pub.extend(frame(FRAME_BODY, 1, b"hello".to_vec()));
        vec![
            (C2S, PROTOCOL_HEADER.to_vec()),
            (S2C, meth(0, CONNECTION, 10, start)),
            (C2S, meth(0, CONNECTION, 11, [0u32.to_be_bytes().to_vec(), ss("PLAIN")].concat())),
            (S2C, meth(0, CONNECTION, 30, vec![0, 0, 0, 2, 0, 0, 0, 0, 0, 60])),
            (
                C2S,
                [
                    meth(0, CONNECTION, 31, vec![0, 0, 0, 2, 0, 0, 0, 0, 0, 60]),
                    meth(0, CONNECTION, 40, [ss("/prod"), ss(""), vec![0]].concat()),
                ]
                .concat(),
            ),
            (S2C, meth(0, CONNECTION, 41, ss(""))),
            (C2S, meth(1, CHANNEL, 10, ss(""))),
            (S2C, meth(1, CHANNEL, 11, 0u32.to_be_bytes().to_vec())),
            (C2S, meth(1, QUEUE, 10, [vec![0, 0], ss("jobs"), vec![0x02], 0u32.to_be_bytes().to_vec()].concat())),
            (S2C, meth(1, QUEUE, 11, [ss("jobs"), vec![0; 8]].concat())),
            (C2S, seg_pub),
            (C2S, meth(1, QUEUE, 10, [vec![0, 0], ss("missing"), vec![0x01], 0u32.to_be_bytes().to_vec()].concat())),
            (
                S2C,
                meth(
                    1,
                    CHANNEL,
                    40,
                    [404u16.to_be_bytes().to_vec(), ss("NOT_FOUND - no queue 'missing'"), vec![0, 50, 0, 10]].concat(),
                ),
            ),
            (C2S, meth(1, CHANNEL, 41, vec![])),
            (S2C, frame(FRAME_HEARTBEAT, 0, vec![])),
            (C2S, meth(0, CONNECTION, 50, [200u16.to_be_bytes().to_vec(), ss("Goodbye"), vec![0, 0, 0, 0]].concat())),
            (S2C, meth(0, CONNECTION, 51, vec![])),
        ]
    }

    #[test]
    fn sessions() {
        let rows = run(EmitMode::Sessions, &exchange());
        let names: Vec<_> = rows.iter().map(|r| r.request_type.clone().unwrap_or_default()).collect();
        assert_eq!(
            names,
            [
                "Protocol-Header",
                "Connection.Start",
                "Connection.Tune",
                "Connection.Open",
                "Channel.Open",
                "Queue.Declare",
                "Basic.Publish",
                "Content-Header",
                "Content-Body",
                "Queue.Declare",
                "Channel.Close",
                "Heartbeat",
                "Connection.Close"
            ],
            "{rows:#?}"
        );
        assert!(rows.iter().all(|r| r.version.as_deref() == Some("v0.9.1")));
        assert_eq!(rows[3].request_domain.as_deref(), Some("/prod"));
        assert_eq!(rows[5].request_resource.as_deref(), Some("jobs"));
        assert_eq!(rows[5].response_status, ResponseStatus::Ok);
        assert_eq!(rows[6].request_resource.as_deref(), Some("amq.direct.rk.1"));
        assert_eq!(rows[6].log_type, LogType::Session);
        assert_eq!(rows[7].trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(rows[8].request_length, Some(5));
        let r = &rows[9];
        assert_eq!(r.request_resource.as_deref(), Some("missing"));
        assert_eq!(r.response_code, Some(404));
        assert_eq!(r.response_status, ResponseStatus::ClientError);
        assert_eq!(r.response_exception.as_deref(), Some("NOT_FOUND - no queue 'missing'"));
        let r = &rows[10];
        assert_eq!(r.request_type.as_deref(), Some("Channel.Close"));
        assert_eq!(r.log_type, LogType::Session);
        let r = &rows[12];
        assert_eq!(r.response_result.as_deref(), None);
        assert_eq!(r.response_code, None);
        assert_eq!(r.response_status, ResponseStatus::Ok);
        assert!(rows.iter().all(|r| r.response_status != ResponseStatus::Timeout));
    }

    #[test]
    fn connection_close_error_and_return() {
        let segs = vec![
            (C2S, PROTOCOL_HEADER.to_vec()),
            (S2C, meth(0, CONNECTION, 50, [541u16.to_be_bytes().to_vec(), ss("INTERNAL_ERROR"), vec![0; 4]].concat())),
            (S2C, meth(1, BASIC, 50, [312u16.to_be_bytes().to_vec(), ss("NO_ROUTE"), ss("ex"), ss("rk")].concat())),
        ];
        let rows = run(EmitMode::Messages, &segs);
        assert_eq!(rows[1].log_type, LogType::Response);
        assert_eq!(rows[1].response_code, Some(541));
        assert_eq!(rows[1].response_status, ResponseStatus::ServerError);
        assert_eq!(rows[2].request_resource.as_deref(), Some("ex.rk"));
        assert_eq!(rows[2].response_status, ResponseStatus::ClientError);
        assert_eq!(rows[2].response_exception.as_deref(), Some("NO_ROUTE"));
    }

    #[test]
    fn probe() {
        let f = flow(1);
        let p = AmqpParser::new(&L7Config::default());
        assert_eq!(p.probe(PROTOCOL_HEADER, C2S, &f), Probe::Match);
        assert_eq!(p.probe(b"AMQ", C2S, &f), Probe::NeedMore);
        assert_eq!(p.probe(b"AMQP\x01\x01\x00\x0a", C2S, &f), Probe::NotThis);
        assert_eq!(p.probe(&exchange()[1].1, S2C, &f), Probe::Match);
        assert_eq!(p.probe(b"GET /", C2S, &f), Probe::NotThis);
    }

    #[test]
    fn splits() {
        check_splits(&make, "amqp", 5672, &exchange());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &exchange());
    }

    #[test]
    fn fuzz_50k() {
        fuzz(&make, "amqp", &exchange(), 50_000);
    }
}
