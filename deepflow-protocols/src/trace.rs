//! Trace-context header decoding (L7_FIELDS.md "Trace-header decoding"), shared by HTTP/1 and
//! HTTP/2 (and any protocol with string headers).
//!
//! ```
//! use deepflow_protocols::trace::{TraceConfig, TraceExtractor};
//! use deepflow_protocols::l7::{L7Message, MessageKind};
//! use deepflow_core::record::L7Protocol;
//!
//! let cfg = TraceConfig::default();
//! let mut msg = L7Message::new(L7Protocol::Http1, MessageKind::Request);
//! let mut ex = TraceExtractor::new(&cfg);
//! ex.header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", &mut msg);
//! ex.header("X-Request-ID", "abc", &mut msg);
//! assert_eq!(msg.trace.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
//! assert_eq!(msg.trace.span_id.as_deref(), Some("b7ad6b7169203331"));
//! assert_eq!(msg.trace.x_request_id.as_deref(), Some("abc"));
//! ```
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use serde::Deserialize;

use crate::l7::L7Message;

/// Header names that carry trace context. Names compare case-insensitively; when several
/// configured headers are present, the one listed first wins.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TraceConfig {
    /// Headers a trace id is taken from.
    pub trace_id_headers: Vec<String>,
    /// Headers a span id is taken from.
    pub span_id_headers: Vec<String>,
    /// Headers a parent span id is taken from.
    pub parent_span_id_headers: Vec<String>,
    /// W3C `tracestate`-like headers kept verbatim as an attribute of the same name.
    pub keep_as_attribute: Vec<String>,
    /// Request/response id header (`x_request_id_0` / `x_request_id_1`).
    pub x_request_id_header: String,
    /// Proxy client header (`http_proxy_client`, requests only).
    pub proxy_client_header: String,
    /// Extra headers copied into attributes (name lower-cased, `-` → `_`).
    pub extra_headers: Vec<String>,
}

impl Default for TraceConfig {
    fn default() -> Self {
        let v = |a: &[&str]| a.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        TraceConfig {
            trace_id_headers: v(&["traceparent", "sw8", "uber-trace-id", "b3", "x-b3-traceid"]),
            span_id_headers: v(&["traceparent", "sw8", "uber-trace-id", "b3", "x-b3-spanid"]),
            parent_span_id_headers: v(&["b3", "x-b3-parentspanid"]),
            keep_as_attribute: v(&["tracestate"]),
            x_request_id_header: "x-request-id".to_string(),
            proxy_client_header: "x-forwarded-for".to_string(),
            extra_headers: Vec::new(),
        }
    }
}

/// Trace context and ids found in one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceInfo {
    /// Trace id.
    pub trace_id: Option<String>,
    /// Span id.
    pub span_id: Option<String>,
    /// Parent span id.
    pub parent_span_id: Option<String>,
    /// Value of the X-Request-ID header of this message.
    pub x_request_id: Option<String>,
    /// Value of the proxy-client header (requests).
    pub proxy_client: Option<String>,
}

#[derive(Clone, Copy)]
enum Want {
    Trace,
    Span,
    Parent,
}

/// A quick reject for header names no configured header can match (by length and first
/// letter): most headers of a message are none of them. Computed once per configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceFilter {
    /// Bit `n` set: some configured header name is `n` bytes long (63: 63 or longer).
    lengths: u64,
    /// Bit of the (ASCII-lowercased) first letter of every configured name; see [`first_bit`].
    firsts: u32,
}

impl TraceFilter {
    /// The filter of `cfg`'s header names.
    pub fn new(cfg: &TraceConfig) -> Self {
        let lists = [&cfg.trace_id_headers, &cfg.span_id_headers, &cfg.parent_span_id_headers];
        let names = lists.into_iter().flatten().chain(&cfg.keep_as_attribute).chain(&cfg.extra_headers);
        let names = names.chain([&cfg.x_request_id_header, &cfg.proxy_client_header]);
        let (mut lengths, mut firsts) = (0u64, 0u32);
        for n in names {
            lengths |= 1u64 << n.len().min(63);
            firsts |= first_bit(n);
        }
        TraceFilter { lengths, firsts }
    }

    /// False when no configured header can be named `name`.
    pub fn may_match(&self, name: &str) -> bool {
        self.may_match_bytes(name.as_bytes())
    }

    /// [`TraceFilter::may_match`] of a name not yet checked to be UTF-8.
    #[inline]
    pub fn may_match_bytes(&self, name: &[u8]) -> bool {
        self.lengths & (1u64 << name.len().min(63)) != 0 && self.firsts & first_bit(name) != 0
    }
}

/// Bit 0..=25 for a first letter a..=z (either case), bit 31 for anything else.
fn first_bit(name: impl AsRef<[u8]>) -> u32 {
    match name.as_ref().first() {
        Some(c) if c.is_ascii_alphabetic() => 1 << (c.to_ascii_lowercase() - b'a'),
        _ => 1 << 31,
    }
}

/// Applies configured header decoders to the headers of one message, keeping the
/// highest-priority match for each id.
pub struct TraceExtractor<'a> {
    cfg: &'a TraceConfig,
    best: [usize; 3],
    filter: TraceFilter,
}

impl<'a> TraceExtractor<'a> {
    /// A fresh extractor for one message.
    pub fn new(cfg: &'a TraceConfig) -> Self {
        Self::with_filter(cfg, TraceFilter::new(cfg))
    }

    /// [`TraceExtractor::new`] with the filter of `cfg` computed once by the caller (hot paths).
    pub fn with_filter(cfg: &'a TraceConfig, filter: TraceFilter) -> Self {
        TraceExtractor { cfg, best: [usize::MAX; 3], filter }
    }

    /// Looks at one header; returns true if it was used.
    pub fn header(&mut self, name: &str, value: &str, msg: &mut L7Message) -> bool {
        if !self.filter.may_match(name) {
            return false;
        }
        let mut used = false;
        let lists = [
            (&self.cfg.trace_id_headers, Want::Trace),
            (&self.cfg.span_id_headers, Want::Span),
            (&self.cfg.parent_span_id_headers, Want::Parent),
        ];
        for (slot, (list, want)) in lists.into_iter().enumerate() {
            let Some(pos) = list.iter().position(|h| h.eq_ignore_ascii_case(name)) else {
                continue;
            };
            let Some(best) = self.best.get_mut(slot) else { continue };
            if pos >= *best {
                continue;
            }
            if let Some(id) = decode(name, value, want) {
                *best = pos;
                let field = match want {
                    Want::Trace => &mut msg.trace.trace_id,
                    Want::Span => &mut msg.trace.span_id,
                    Want::Parent => &mut msg.trace.parent_span_id,
                };
                *field = Some(id);
                used = true;
            }
        }
        if self.cfg.keep_as_attribute.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            msg.attr(name.to_ascii_lowercase(), value.trim());
            used = true;
        }
        if self.cfg.x_request_id_header.eq_ignore_ascii_case(name) && msg.trace.x_request_id.is_none() {
            msg.trace.x_request_id = Some(value.trim().to_string());
            used = true;
        }
        if self.cfg.proxy_client_header.eq_ignore_ascii_case(name) && msg.trace.proxy_client.is_none() {
            msg.trace.proxy_client = Some(value.trim().to_string());
            used = true;
        }
        if self.cfg.extra_headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            msg.attr(name.to_ascii_lowercase().replace('-', "_"), value.trim());
            used = true;
        }
        used
    }
}

fn nonempty(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() { None } else { Some(s.to_string()) }
}

fn field(value: &str, sep: char, n: usize) -> Option<&str> {
    value.split(sep).nth(n)
}

/// Decodes a trace (`want` = 0), span (1) or parent span (2) id from a header value according
/// to the header name's format.
fn decode(name: &str, value: &str, want: Want) -> Option<String> {
    let value = value.trim();
    let lname = name.to_ascii_lowercase();
    match lname.as_str() {
        "traceparent" => match want {
            Want::Trace => field(value, '-', 1).and_then(nonempty),
            Want::Span => field(value, '-', 2).and_then(nonempty),
            Want::Parent => None,
        },
        "sw8" | "sw6" => match want {
            Want::Trace => field(value, '-', 1).map(b64_or_raw).and_then(|s| nonempty(&s)),
            Want::Span => {
                let seg = field(value, '-', 2)?;
                let idx = field(value, '-', 3)?;
                nonempty(&format!("{}-{}", b64_or_raw(seg), idx.trim()))
            }
            Want::Parent => None,
        },
        "sw3" => match want {
            Want::Trace => field(value, '|', 7).and_then(nonempty),
            Want::Span => {
                let a = field(value, '|', 0)?;
                let b = field(value, '|', 1)?;
                nonempty(&format!("{}-{}", a.trim(), b.trim()))
            }
            Want::Parent => None,
        },
        // L7_FIELDS.md: span = 3rd field (which in Jaeger's format is the parent span id).
        "uber-trace-id" => match want {
            Want::Trace => field(value, ':', 0).and_then(nonempty),
            Want::Span => field(value, ':', 2).and_then(nonempty),
            Want::Parent => None,
        },
        "b3" => match want {
            Want::Trace => field(value, '-', 0).and_then(nonempty),
            Want::Span => field(value, '-', 1).and_then(nonempty),
            Want::Parent => field(value, '-', 3).and_then(nonempty),
        },
        "new_rpc_trace_context" => {
            let key = match want {
                Want::Trace => "tcid",
                Want::Span => "spid",
                Want::Parent => "pspid",
            };
            value
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .and_then(|(_, v)| nonempty(v))
        }
        _ => nonempty(value),
    }
}

/// Base64-decodes `s` (standard or URL-safe alphabet, padding optional) if the result is
/// printable UTF-8; otherwise returns `s` unchanged.
pub fn b64_or_raw(s: &str) -> String {
    let s = s.trim();
    match b64_decode(s.as_bytes()) {
        Some(v) if !v.is_empty() && v.iter().all(|b| (0x20..0x7f).contains(b)) => {
            String::from_utf8(v).unwrap_or_else(|_| s.to_string())
        }
        _ => s.to_string(),
    }
}

fn b64_val(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    } as u32)
}

fn b64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let s = match s.iter().position(|&c| c == b'=') {
        Some(p) => {
            if !s.get(p..)?.iter().all(|&c| c == b'=') {
                return None;
            }
            s.get(..p)?
        }
        None => s,
    };
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in s {
        acc = (acc << 6) | b64_val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::l7::MessageKind;
    use deepflow_core::record::L7Protocol;

    fn run(cfg: &TraceConfig, headers: &[(&str, &str)]) -> L7Message {
        let mut m = L7Message::new(L7Protocol::Http1, MessageKind::Request);
        let mut ex = TraceExtractor::new(cfg);
        for (n, v) in headers {
            ex.header(n, v, &mut m);
        }
        m
    }

    #[test]
    fn traceparent_and_tracestate() {
        let m = run(
            &TraceConfig::default(),
            &[
                ("TraceParent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                ("tracestate", "rojo=00f067aa0ba902b7"),
            ],
        );
        assert_eq!(m.trace.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(m.trace.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(m.attributes, vec![("tracestate".into(), "rojo=00f067aa0ba902b7".into())]);
    }

    #[test]
    fn sw8_base64() {
        // trace "abc.123", segment "seg.1", span index 3
        let v = "1-YWJjLjEyMw==-c2VnLjE=-3-c2Vydg==-aW5zdA==-L2FwaQ==-bG9jYWxob3N0OjgwODA=";
        let m = run(&TraceConfig::default(), &[("sw8", v)]);
        assert_eq!(m.trace.trace_id.as_deref(), Some("abc.123"));
        assert_eq!(m.trace.span_id.as_deref(), Some("seg.1-3"));
        // not base64 → raw
        let m = run(&TraceConfig::default(), &[("sw8", "1-t!x-s!g-4-a-b")]);
        assert_eq!(m.trace.trace_id.as_deref(), Some("t!x"));
        assert_eq!(m.trace.span_id.as_deref(), Some("s!g-4"));
    }

    #[test]
    fn sw6_sw3_uber_b3_custom() {
        let cfg = TraceConfig {
            trace_id_headers: vec!["sw3".into(), "my-trace".into()],
            span_id_headers: vec!["sw3".into()],
            ..TraceConfig::default()
        };
        let m = run(&cfg, &[("sw3", "seg|7|a|b|c|d|e|TRACE3|x")]);
        assert_eq!(m.trace.trace_id.as_deref(), Some("TRACE3"));
        assert_eq!(m.trace.span_id.as_deref(), Some("seg-7"));
        let m = run(&cfg, &[("my-trace", "  tid  ")]);
        assert_eq!(m.trace.trace_id.as_deref(), Some("tid"));

        let m = run(&TraceConfig::default(), &[("uber-trace-id", "t1:s1:p1:1")]);
        assert_eq!(m.trace.trace_id.as_deref(), Some("t1"));
        assert_eq!(m.trace.span_id.as_deref(), Some("p1"));

        let m = run(&TraceConfig::default(), &[("b3", "tb-sb-1-pb")]);
        assert_eq!(m.trace.trace_id.as_deref(), Some("tb"));
        assert_eq!(m.trace.span_id.as_deref(), Some("sb"));
        assert_eq!(m.trace.parent_span_id.as_deref(), Some("pb"));

        let m =
            run(&TraceConfig::default(), &[("X-B3-TraceId", "t"), ("X-B3-SpanId", "s"), ("X-B3-ParentSpanId", "p")]);
        assert_eq!(m.trace.trace_id.as_deref(), Some("t"));
        assert_eq!(m.trace.span_id.as_deref(), Some("s"));
        assert_eq!(m.trace.parent_span_id.as_deref(), Some("p"));

        let cfg = TraceConfig {
            trace_id_headers: vec!["new_rpc_trace_context".into()],
            span_id_headers: vec!["new_rpc_trace_context".into()],
            parent_span_id_headers: vec!["new_rpc_trace_context".into()],
            ..TraceConfig::default()
        };
        let m = run(&cfg, &[("new_rpc_trace_context", "tcid=T&spid=S&pspid=P")]);
        assert_eq!(m.trace.trace_id.as_deref(), Some("T"));
        assert_eq!(m.trace.span_id.as_deref(), Some("S"));
        assert_eq!(m.trace.parent_span_id.as_deref(), Some("P"));
    }

    #[test]
    fn priority_is_list_position() {
        // b3 comes after traceparent in the default list, whatever the header order.
        let m = run(&TraceConfig::default(), &[("b3", "tb-sb"), ("traceparent", "00-tp-sp-01"), ("x-b3-traceid", "x")]);
        assert_eq!(m.trace.trace_id.as_deref(), Some("tp"));
        assert_eq!(m.trace.span_id.as_deref(), Some("sp"));
    }

    #[test]
    fn xrid_proxy_extra() {
        let cfg = TraceConfig { extra_headers: vec!["X-Tenant-Id".into()], ..Default::default() };
        let m = run(&cfg, &[("x-request-id", " r1 "), ("X-Forwarded-For", "1.2.3.4"), ("x-tenant-id", "t9")]);
        assert_eq!(m.trace.x_request_id.as_deref(), Some("r1"));
        assert_eq!(m.trace.proxy_client.as_deref(), Some("1.2.3.4"));
        assert_eq!(m.attributes, vec![("x_tenant_id".into(), "t9".into())]);
    }

    #[test]
    fn b64() {
        assert_eq!(b64_decode(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(b64_decode(b"aGVsbG8").unwrap(), b"hello");
        assert!(b64_decode(b"a").is_none());
        assert!(b64_decode(b"a=b=").is_none());
    }

    #[test]
    fn filter_rejects_only_names_that_cannot_match() {
        let cfg = TraceConfig { extra_headers: vec!["X-Tenant".into()], ..TraceConfig::default() };
        let f = TraceFilter::new(&cfg);
        for n in
            ["traceparent", "TraceParent", "sw8", "uber-trace-id", "b3", "X-B3-TraceId", "x-request-id", "x-tenant"]
        {
            assert!(f.may_match(n), "{n}");
        }
        for n in ["Host", "Content-Type", "Accept", "Connection", "", "1"] {
            assert!(!f.may_match(n), "{n}");
        }
        // a rejected name is never used; an accepted one still goes through the full check
        let mut msg = L7Message::new(L7Protocol::Http1, MessageKind::Request);
        let mut ex = TraceExtractor::with_filter(&cfg, f);
        assert!(!ex.header("Content-Type", "text/plain", &mut msg));
        assert!(!ex.header("x-b3-flags", "1", &mut msg));
        assert!(ex.header("X-Tenant", "t1", &mut msg));
        assert_eq!(msg.attributes, vec![("x_tenant".to_string(), "t1".to_string())]);
    }
}
