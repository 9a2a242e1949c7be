//! Message hooks: a wrapper around a built-in (or plugin) parser that keeps an excerpt of
//! each message's bytes and hands every emitted message of a subscribed protocol to the
//! plugin's `df_on_message`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use deepflow_core::record::L7Protocol;
use deepflow_core::{Direction, FlowInfo};

use super::PluginInfo;
use super::guest::{Failure, Guest};
use super::parser::lock;
use super::records::{Records, put, put_opt};
use crate::l7::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};

/// Attributes a hook may add per message.
const MAX_ATTRS: usize = 32;
/// Longest value a hook may set, bytes.
const MAX_VALUE: usize = 1024;

/// One hook instance (shared by the flows of one engine).
#[derive(Clone)]
pub(crate) struct HookRef {
    guest: Arc<Mutex<Guest>>,
    info: Arc<PluginInfo>,
}

impl HookRef {
    pub(crate) fn new(guest: Arc<Mutex<Guest>>, info: Arc<PluginInfo>) -> Self {
        HookRef { guest, info }
    }

    fn wants(&self, p: L7Protocol) -> bool {
        self.info.subscribe.contains(&p)
    }

    /// Whether a parser of protocol `p` may emit messages this hook wants (HTTP/2 emits gRPC
    /// and Triple too).
    fn wants_parser(&self, p: L7Protocol) -> bool {
        self.wants(p) || (p == L7Protocol::Http2 && (self.wants(L7Protocol::Grpc) || self.wants(L7Protocol::Triple)))
    }

    fn enabled(&self) -> bool {
        !lock(&self.guest).stats.disabled.load(Ordering::Relaxed)
    }

    fn run(&self, m: &mut L7Message, excerpt: &[u8]) {
        if !self.wants(m.protocol) {
            return;
        }
        let mut g = lock(&self.guest);
        if g.stats.disabled.load(Ordering::Relaxed) {
            return;
        }
        g.stats.calls.fetch_add(1, Ordering::Relaxed);
        g.stats.messages.fetch_add(1, Ordering::Relaxed);
        let input = encode(m, excerpt);
        match g.call_on_message(&input) {
            Ok(1) => {
                if apply(m, g.output()) {
                    g.stats.changed.fetch_add(1, Ordering::Relaxed);
                } else {
                    g.fail(Failure::BadOutput, "df_on_message output");
                }
            }
            Ok(_) => {}
            Err(f) => g.fail(f, "df_on_message"),
        }
    }
}

/// Wraps `p` with hook `h` when `p` can emit a protocol `h` subscribes to.
pub(crate) fn wrap(p: Box<dyn L7Parser>, h: &HookRef) -> Box<dyn L7Parser> {
    if !h.wants_parser(p.protocol()) {
        return p;
    }
    let max = h.info.max_excerpt;
    Box::new(Hooked { inner: p, hook: h.clone(), bufs: [Vec::new(), Vec::new()], max })
}

struct Hooked {
    inner: Box<dyn L7Parser>,
    hook: HookRef,
    /// Bytes of the message being parsed, per direction (capped at `max`).
    bufs: [Vec<u8>; 2],
    max: usize,
}

fn append(buf: &mut Vec<u8>, data: &[u8], max: usize) {
    let room = max.saturating_sub(buf.len());
    buf.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
}

impl L7Parser for Hooked {
    fn protocol(&self) -> L7Protocol {
        self.inner.protocol()
    }
    fn supports_transport(&self, ip_proto: u8) -> bool {
        self.inner.supports_transport(ip_proto)
    }
    fn port_hint(&self, port: u16) -> bool {
        self.inner.port_hint(port)
    }
    fn probe(&self, data: &[u8], dir: Direction, flow: &FlowInfo) -> Probe {
        self.inner.probe(data, dir, flow)
    }
    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(Hooked {
            inner: self.inner.new_flow(),
            hook: self.hook.clone(),
            bufs: Default::default(),
            max: self.max,
        })
    }
    fn pairing(&self) -> Pairing {
        self.inner.pairing()
    }
    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        let mut out = self.inner.parse(data, ctx);
        let Some(buf) = self.bufs.get_mut(ctx.dir.index()) else { return out };
        match &mut out {
            ParseOutcome::Skip(n) => append(buf, data.get(..*n).unwrap_or(data), self.max),
            ParseOutcome::Message(m, n) => {
                if self.hook.enabled() {
                    append(buf, data.get(..*n).unwrap_or(data), self.max);
                    self.hook.run(m, buf);
                }
                buf.clear();
            }
            ParseOutcome::Error(_) => buf.clear(),
            ParseOutcome::NeedMore(_) => {}
        }
        out
    }
    fn on_gap(&mut self, dir: Direction) {
        if let Some(b) = self.bufs.get_mut(dir.index()) {
            b.clear();
        }
        self.inner.on_gap(dir);
    }
    fn on_close(&mut self, dir: Direction, ctx: &mut ParseCtx<'_>) -> Option<L7Message> {
        let mut m = self.inner.on_close(dir, ctx)?;
        let buf = self.bufs.get_mut(dir.index()).map(std::mem::take).unwrap_or_default();
        self.hook.run(&mut m, &buf);
        Some(m)
    }
    fn is_done(&self) -> bool {
        self.inner.is_done()
    }
}

/// The records handed to `df_on_message`: the message's fields, then `header:NAME` records
/// and `body` (HTTP/1) or `payload` (other protocols) from the excerpt.
fn encode(m: &L7Message, excerpt: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(256 + excerpt.len());
    put(&mut b, b"protocol", m.protocol.name().as_bytes());
    let kind = match m.kind() {
        MessageKind::Request => "request",
        MessageKind::Response => "response",
        MessageKind::OneWay => "oneway",
    };
    put(&mut b, b"kind", kind.as_bytes());
    put_opt(&mut b, "version", m.version.as_deref());
    put_opt(&mut b, "request_type", m.request_type.as_deref());
    put_opt(&mut b, "request_domain", m.request_domain.as_deref());
    put_opt(&mut b, "request_resource", m.request_resource.as_deref());
    put_opt(&mut b, "endpoint", m.endpoint.as_deref());
    put_opt(&mut b, "response_exception", m.response_exception.as_deref());
    put_opt(&mut b, "response_result", m.response_result.as_deref());
    put_opt(&mut b, "trace_id", m.trace.trace_id.as_deref());
    put_opt(&mut b, "span_id", m.trace.span_id.as_deref());
    put_opt(&mut b, "x_request_id", m.trace.x_request_id.as_deref());
    if let Some(v) = m.request_id {
        put(&mut b, b"request_id", v.to_string().as_bytes());
    }
    if let Some(v) = m.response_code {
        put(&mut b, b"response_code", v.to_string().as_bytes());
    }
    if let Some(s) = m.response_status {
        put(&mut b, b"response_status", s.name().as_bytes());
    }
    for (n, v) in &m.attributes {
        put(&mut b, format!("attr:{n}").as_bytes(), v.as_bytes());
    }
    if m.protocol == L7Protocol::Http1 {
        http1_excerpt(&mut b, excerpt);
    } else if !excerpt.is_empty() {
        put(&mut b, b"payload", excerpt);
    }
    b
}

/// Splits an HTTP/1 message excerpt into `header:NAME` records and a `body` record.
fn http1_excerpt(b: &mut Vec<u8>, excerpt: &[u8]) {
    let start = excerpt.iter().position(|c| *c != b'\r' && *c != b'\n').unwrap_or(excerpt.len());
    let msg = excerpt.get(start..).unwrap_or_default();
    let (head, body) = match memchr::memmem::find(msg, b"\r\n\r\n") {
        Some(i) => (msg.get(..i).unwrap_or_default(), msg.get(i + 4..).unwrap_or_default()),
        None => (msg, &[][..]),
    };
    for line in head.split(|c| *c == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|c| *c == b':') else { continue };
        let (name, value) = (line.get(..colon).unwrap_or_default(), line.get(colon + 1..).unwrap_or_default());
        let mut key = b"header:".to_vec();
        key.extend_from_slice(name.trim_ascii());
        put(b, &key, value.trim_ascii());
    }
    if !body.is_empty() {
        put(b, b"body", body);
    }
}

/// Applies the changes in `out`; false when the output is invalid.
fn apply(m: &mut L7Message, out: &[u8]) -> bool {
    let mut recs = Records::new(out);
    let mut attrs = 0;
    for (k, v) in recs.by_ref() {
        let Ok(v) = std::str::from_utf8(v) else { return false };
        if v.len() > MAX_VALUE {
            return false;
        }
        let s = Some(v.to_string());
        match k {
            b"endpoint" => m.endpoint = s,
            b"trace_id" => m.trace.trace_id = s,
            b"span_id" => m.trace.span_id = s,
            b"response_exception" => m.response_exception = s,
            b"response_result" => m.response_result = s,
            _ => {
                let Some(n) = k.strip_prefix(b"attr:") else { continue };
                let Ok(n) = std::str::from_utf8(n) else { return false };
                attrs += 1;
                if attrs > MAX_ATTRS || n.is_empty() || n.len() > 64 {
                    return false;
                }
                m.attr(n, v);
            }
        }
    }
    !recs.truncated
}
