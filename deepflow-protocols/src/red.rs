//! RED (rate, errors, duration) metrics from `l7_flow_log` rows.
//!
//! [`RedAggregator`] folds rows into [`ApplicationMetrics`] per window (1 s and 1 min by
//! default), server ip, server port, protocol and endpoint. Windows are keyed by the row's
//! `end_time`; a row for a window already flushed goes to the oldest open window (counted as
//! `late_rows`). The number of endpoints per server and window is capped: beyond it the
//! endpoint becomes `other` (counted). Optional route normalization turns numeric, UUID and
//! long hex path segments into `{id}`.
//!
//! Counting rules: a `session` row is one request and (unless it timed out) one response; a
//! `request` row is one request; a `response` row is one response (with status `timeout` it
//! is the synthetic timeout marker of per-message mode and only counts a timeout). Errors and
//! response times are counted on rows that carry a response.
//!
//! ```
//! use deepflow_protocols::red::{RedAggregator, RedConfig};
//! let mut agg = RedAggregator::new(RedConfig::default());
//! let mut out = Vec::new();
//! agg.finish(&mut out);
//! assert!(out.is_empty());
//! ```
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

// seeded foldhash (hashbrown's default) instead of SipHash: these maps are updated per message
use hashbrown::{HashMap, HashSet};
use std::net::IpAddr;

use deepflow_core::record::{ApplicationMetrics, L7FlowLog, L7Protocol, LatencyHistogram, LogType, ResponseStatus};
use serde::Deserialize;

/// Configuration of [`RedAggregator`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedConfig {
    /// Window lengths in seconds.
    pub windows_secs: Vec<u32>,
    /// Distinct endpoints per (server ip, port) and window before overflowing into `other`.
    pub max_endpoints_per_server: usize,
    /// Replace numeric / UUID / hex path segments of the endpoint by `{id}`.
    pub normalize_routes: bool,
}

impl Default for RedConfig {
    fn default() -> Self {
        RedConfig { windows_secs: vec![1, 60], max_endpoints_per_server: 1000, normalize_routes: false }
    }
}

/// What the aggregator dropped or folded.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RedCounters {
    /// Rows added.
    pub rows: u64,
    /// Rows whose endpoint was replaced by `other` (cardinality cap).
    pub endpoint_overflow: u64,
    /// Rows for windows already flushed (added to the oldest open window).
    pub late_rows: u64,
}

type Key = (IpAddr, u16, L7Protocol, String);

/// A [`Key`] with a borrowed endpoint: hashes like the tuple (same fields, same order; a
/// `String` hashes as its `str`), so a row finds its metrics without allocating a key.
#[derive(Hash)]
struct KeyRef<'a>(IpAddr, u16, L7Protocol, &'a str);

impl hashbrown::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, k: &Key) -> bool {
        self.0 == k.0 && self.1 == k.1 && self.2 == k.2 && self.3 == k.3
    }
}

#[derive(Default)]
struct Window {
    rows: HashMap<Key, ApplicationMetrics>,
    endpoints: HashMap<(IpAddr, u16), HashSet<String>>,
}

/// Folds rows into RED metrics windows.
pub struct RedAggregator {
    cfg: RedConfig,
    /// (interval, window start s) → window.
    windows: BTreeMap<(u32, u64), Window>,
    /// Per interval: windows starting before this were flushed.
    watermark: HashMap<u32, u64>,
    counters: RedCounters,
}

/// True for a path segment that looks like an id: all digits, a UUID, or ≥ 8 hex digits with
/// at least one digit.
pub fn is_id_segment(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    if s.bytes().all(|c| c.is_ascii_digit()) {
        return true;
    }
    let b = s.as_bytes();
    if b.len() == 36
        && b.iter().enumerate().all(
            |(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) { *c == b'-' } else { c.is_ascii_hexdigit() }
            },
        )
    {
        return true;
    }
    b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit) && b.iter().any(u8::is_ascii_digit)
}

/// Replaces id-like path segments by `{id}` (`/users/42/orders` → `/users/{id}/orders`).
pub fn normalize_route(endpoint: &str) -> String {
    endpoint.split('/').map(|s| if is_id_segment(s) { "{id}" } else { s }).collect::<Vec<_>>().join("/")
}

impl RedAggregator {
    /// A new aggregator.
    pub fn new(cfg: RedConfig) -> Self {
        RedAggregator { cfg, windows: BTreeMap::new(), watermark: HashMap::new(), counters: RedCounters::default() }
    }

    /// Counters.
    pub fn counters(&self) -> &RedCounters {
        &self.counters
    }

    /// Adds one row to every window length.
    pub fn add(&mut self, row: &L7FlowLog) {
        self.counters.rows += 1;
        let normalized;
        let mut endpoint: &str = row.endpoint.as_deref().unwrap_or_default();
        if self.cfg.normalize_routes {
            normalized = normalize_route(endpoint);
            endpoint = &normalized;
        }
        let ts = row.end_time.max(row.start_time) / 1_000_000;
        let (mut req, mut resp, mut timeout) = (0u64, 0u64, 0u64);
        let st = row.response_status;
        match row.log_type {
            LogType::Session => {
                req = 1;
                if st == ResponseStatus::Timeout { timeout = 1 } else { resp = 1 }
            }
            LogType::Request => {
                req = 1;
                if st == ResponseStatus::Timeout {
                    timeout = 1;
                }
            }
            LogType::Response => {
                if st == ResponseStatus::Timeout {
                    timeout = 1
                } else {
                    resp = 1
                }
            }
        }
        for &interval in &self.cfg.windows_secs {
            let interval = interval.max(1);
            let mut start = ts - ts % u64::from(interval);
            let wm = self.watermark.get(&interval).copied().unwrap_or(0);
            if start < wm {
                start = wm;
                self.counters.late_rows += 1;
            }
            let w = self.windows.entry((interval, start)).or_default();
            let apply = |m: &mut ApplicationMetrics| {
                m.request += req;
                m.response += resp;
                m.timeout += timeout;
                if resp > 0 {
                    match st {
                        ResponseStatus::ClientError => m.client_error += 1,
                        ResponseStatus::ServerError => m.server_error += 1,
                        _ => {}
                    }
                    if let Some(rrt) = row.rrt {
                        m.rrt_sum += rrt;
                        m.rrt_count += 1;
                        m.rrt_max = m.rrt_max.max(rrt);
                        m.rrt_histogram.record(rrt);
                    }
                }
            };
            // fast path, one lookup: metrics for this endpoint exist, so the endpoint is
            // already counted in the server's set
            if let Some(m) = w.rows.get_mut(&KeyRef(row.ip_1, row.server_port, row.l7_protocol, endpoint)) {
                apply(m);
                continue;
            }
            let server = (row.ip_1, row.server_port);
            let set = w.endpoints.entry(server).or_default();
            let ep: &str = if set.contains(endpoint) {
                endpoint
            } else if set.len() < self.cfg.max_endpoints_per_server {
                set.insert(endpoint.to_string());
                endpoint
            } else {
                self.counters.endpoint_overflow += 1;
                "other"
            };
            if let Some(m) = w.rows.get_mut(&KeyRef(row.ip_1, row.server_port, row.l7_protocol, ep)) {
                apply(m);
                continue;
            }
            let mut m = ApplicationMetrics {
                time: start,
                interval,
                ip_1: row.ip_1,
                server_port: row.server_port,
                l7_protocol: row.l7_protocol,
                endpoint: ep.to_string(),
                request: 0,
                response: 0,
                client_error: 0,
                server_error: 0,
                timeout: 0,
                rrt_sum: 0,
                rrt_count: 0,
                rrt_max: 0,
                rrt_histogram: LatencyHistogram::default(),
                rrt_p50: None,
                rrt_p90: None,
                rrt_p99: None,
            };
            apply(&mut m);
            w.rows.insert((row.ip_1, row.server_port, row.l7_protocol, ep.to_string()), m);
        }
    }

    /// Emits every window that ended at or before `now_us` (packet time).
    pub fn flush(&mut self, now_us: u64, out: &mut Vec<ApplicationMetrics>) {
        let now = now_us / 1_000_000;
        let done: Vec<(u32, u64)> = self.windows.keys().filter(|(i, s)| s + u64::from(*i) <= now).copied().collect();
        for k in done {
            if let Some(w) = self.windows.remove(&k) {
                let wm = self.watermark.entry(k.0).or_insert(0);
                *wm = (*wm).max(k.1 + u64::from(k.0));
                emit(w, out);
            }
        }
    }

    /// Emits every open window.
    pub fn finish(&mut self, out: &mut Vec<ApplicationMetrics>) {
        for (k, w) in std::mem::take(&mut self.windows) {
            let wm = self.watermark.entry(k.0).or_insert(0);
            *wm = (*wm).max(k.1 + u64::from(k.0));
            emit(w, out);
        }
    }
}

fn emit(w: Window, out: &mut Vec<ApplicationMetrics>) {
    let mut rows: Vec<ApplicationMetrics> = w.rows.into_values().collect();
    rows.sort_by(|a, b| {
        (a.ip_1, a.server_port, a.l7_protocol, &a.endpoint).cmp(&(b.ip_1, b.server_port, b.l7_protocol, &b.endpoint))
    });
    for mut m in rows {
        m.rrt_p50 = m.rrt_histogram.quantile(0.5);
        m.rrt_p90 = m.rrt_histogram.quantile(0.9);
        m.rrt_p99 = m.rrt_histogram.quantile(0.99);
        out.push(m);
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use deepflow_core::FlowInfo;
    use std::net::Ipv4Addr;

    fn row(t: LogType, st: ResponseStatus, ep: &str, end_s: u64, rrt: Option<u64>) -> L7FlowLog {
        let flow = FlowInfo {
            flow_id: 1,
            protocol: 6,
            client_ip: IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)),
            server_ip: IpAddr::V4(Ipv4Addr::new(2, 2, 2, 2)),
            client_port: 1000,
            server_port: 80,
            tunnel: Default::default(),
            start_time_us: 0,
        };
        let mut r = L7FlowLog::new(&flow, L7Protocol::Http1, t);
        r.response_status = st;
        r.endpoint = Some(ep.to_string());
        r.start_time = end_s * 1_000_000;
        r.end_time = end_s * 1_000_000;
        r.rrt = rrt;
        r
    }

    #[test]
    fn counts_windows_and_quantiles() {
        let mut a = RedAggregator::new(RedConfig::default());
        for i in 0..100 {
            a.add(&row(LogType::Session, ResponseStatus::Ok, "/a", 10, Some(1000 + i)));
        }
        a.add(&row(LogType::Session, ResponseStatus::ClientError, "/a", 10, Some(5)));
        a.add(&row(LogType::Session, ResponseStatus::ServerError, "/a", 11, Some(5)));
        a.add(&row(LogType::Request, ResponseStatus::Timeout, "/a", 11, None));
        let mut out = Vec::new();
        a.flush(11_000_000, &mut out);
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!((m.interval, m.time, m.request, m.response, m.client_error), (1, 10, 101, 101, 1));
        assert_eq!(m.rrt_count, 101);
        assert_eq!(m.rrt_max, 1099);
        let p50 = m.rrt_p50.unwrap();
        assert!((900..1200).contains(&p50), "{p50}");
        out.clear();
        a.finish(&mut out);
        let one_s: Vec<_> = out.iter().filter(|m| m.interval == 1).collect();
        assert_eq!(one_s.len(), 1);
        assert_eq!((one_s[0].server_error, one_s[0].timeout, one_s[0].request), (1, 1, 2));
        let one_m: Vec<_> = out.iter().filter(|m| m.interval == 60).collect();
        assert_eq!(one_m[0].request, 103);
        // late row goes to an open window and is counted
        a.add(&row(LogType::Session, ResponseStatus::Ok, "/a", 5, Some(1)));
        assert_eq!(a.counters().late_rows, 2);
    }

    #[test]
    fn cardinality_cap_and_normalization() {
        let cfg = RedConfig { max_endpoints_per_server: 2, normalize_routes: true, ..Default::default() };
        let mut a = RedAggregator::new(cfg);
        for ep in ["/u/1", "/u/2", "/v/x", "/w/y", "/u/3"] {
            a.add(&row(LogType::Session, ResponseStatus::Ok, ep, 1, Some(1)));
        }
        let mut out = Vec::new();
        a.finish(&mut out);
        let eps: Vec<_> = out.iter().filter(|m| m.interval == 1).map(|m| (m.endpoint.as_str(), m.request)).collect();
        assert_eq!(eps, vec![("/u/{id}", 3), ("/v/x", 1), ("other", 1)]);
        assert_eq!(a.counters().endpoint_overflow, 2); // once per window length
    }

    #[test]
    fn id_segments() {
        assert!(is_id_segment("123"));
        assert!(is_id_segment("550e8400-e29b-41d4-a716-446655440000"));
        assert!(is_id_segment("deadbeef01"));
        assert!(!is_id_segment("deadbeef"));
        assert!(!is_id_segment("users"));
        assert_eq!(normalize_route("/api/v1/items/42"), "/api/v1/items/{id}");
    }
}
