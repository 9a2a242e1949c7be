//! Engine configuration ([`L7Config`]), deserializable from any serde format.

use deepflow_core::record::L7Protocol;
use serde::Deserialize;

use crate::trace::TraceConfig;

/// How paired messages are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmitMode {
    /// One row per request/response pair (`type` = `session`); unanswered requests become a
    /// `request` row with status `timeout`, unsolicited responses a `response` row.
    #[default]
    Sessions,
    /// One row per message (`type` = `request` / `response`); responses carry `rrt`. A request
    /// that times out adds a synthetic `response` row with status `timeout`.
    Messages,
}

/// Configuration of [`L7Engine`](crate::L7Engine). Every bound has a counter in
/// [`L7Counters`](crate::L7Counters).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct L7Config {
    /// Unanswered requests kept per flow; the oldest is dropped (and counted) beyond it.
    pub max_pending_requests: usize,
    /// Bytes buffered per flow direction for a partial message header / record. Exceeding it
    /// counts an `oversize` error and resynchronises.
    pub max_buffered_bytes: usize,
    /// A request without a response after this long (packet time) is emitted as `timeout`.
    pub response_timeout_ms: u64,
    /// Lowercase protocol names to detect (`http`, `dns`, `tls`, ...); empty = all built-in.
    pub enabled_protocols: Vec<String>,
    /// Payloads probed per flow without a confirmed protocol before the flow is ignored.
    pub max_detect_attempts: u32,
    /// Trace-context, X-Request-ID and proxy-client header names.
    pub trace: TraceConfig,
    /// HTTP endpoint = the first N non-empty path segments (0 = empty endpoint).
    pub http_endpoint_segments: usize,
    /// Session (merged) or per-message rows.
    pub emit: EmitMode,
    /// DNS names ending with one of these suffixes are `ok` even on NXDOMAIN.
    pub dns_unconcerned_nxdomain_suffixes: Vec<String>,
    /// Replace literals in captured statements with `?`: SQL strings/numbers/hex (MySQL,
    /// PostgreSQL), Redis values after the key, Memcached keys stay. Off by default.
    pub db_obfuscation: bool,
    /// Cap on captured statement text (SQL, Redis command, MongoDB document) in bytes;
    /// longer text is cut on a char boundary and ends with `...`.
    pub max_statement_length: usize,
}

impl Default for L7Config {
    fn default() -> Self {
        L7Config {
            max_pending_requests: 64,
            max_buffered_bytes: 64 * 1024,
            response_timeout_ms: 30_000,
            enabled_protocols: Vec::new(),
            max_detect_attempts: 8,
            trace: TraceConfig::default(),
            http_endpoint_segments: 2,
            emit: EmitMode::Sessions,
            dns_unconcerned_nxdomain_suffixes: Vec::new(),
            db_obfuscation: false,
            max_statement_length: 4096,
        }
    }
}

impl L7Config {
    /// True if `p` is enabled (all are when `enabled_protocols` is empty).
    pub fn is_enabled(&self, p: L7Protocol) -> bool {
        self.enabled_protocols.is_empty() || self.enabled_protocols.iter().any(|n| L7Protocol::from_name(n) == Some(p))
    }
}
