//! Network metrics per (ip_0, ip_1, server_port, protocol) in 1 s and 1 min windows, with
//! DeepFlow's names (`flow_metrics.network.1s` / `network.1m`). Windows close on packet time.

// hashbrown's seeded foldhash: SipHash on the (window, interval, key) tuple per packet was ~28 % of the
// L4-only analyze path (perf, 2026-12-07)
use hashbrown::HashMap;
use std::net::IpAddr;

use deepflow_core::flow::ip_proto;
use deepflow_core::record::{CloseType, NetworkMetrics};

/// Which windows to produce.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub per_second: bool,
    pub per_minute: bool,
    /// Most distinct keys per window; more are folded into one overflow row (counted).
    pub max_keys: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { per_second: true, per_minute: true, max_keys: 100_000 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct MeterKey {
    pub ip_0: IpAddr,
    pub ip_1: IpAddr,
    pub server_port: u16,
    pub protocol: u8,
}

const OVERFLOW: MeterKey = MeterKey {
    ip_0: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    ip_1: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    server_port: 0,
    protocol: 0,
};

/// Aggregates network metrics. Fed by the flow table.
#[derive(Debug)]
pub struct NetworkMeter {
    cfg: MetricsConfig,
    /// Open windows: (window start in seconds, interval) and key.
    windows: HashMap<(u64, u32, MeterKey), NetworkMetrics>,
    per_window_keys: HashMap<(u64, u32), usize>,
    /// Everything before this second is closed.
    closed_before: u64,
    out: Vec<NetworkMetrics>,
    /// Keys folded into the overflow row.
    pub overflowed: u64,
}

impl NetworkMeter {
    pub fn new(cfg: MetricsConfig) -> Self {
        NetworkMeter {
            cfg,
            windows: HashMap::new(),
            per_window_keys: HashMap::new(),
            closed_before: 0,
            out: Vec::new(),
            overflowed: 0,
        }
    }

    fn enabled(&self) -> bool {
        self.cfg.per_second || self.cfg.per_minute
    }

    /// Applies `f` to the 1 s and 1 min rows of `key` at second `sec`.
    fn with(&mut self, key: &MeterKey, sec: u64, mut f: impl FnMut(&mut NetworkMetrics)) {
        if !self.enabled() {
            return;
        }
        let sec = sec.max(self.closed_before);
        let second = self.cfg.per_second.then_some((sec, 1u32));
        let minute = self.cfg.per_minute.then_some((sec / 60 * 60, 60u32));
        for (start, interval) in second.into_iter().chain(minute) {
            // the common case, a key already in the window: one lookup
            if let Some(row) = self.windows.get_mut(&(start, interval, *key)) {
                f(row);
                continue;
            }
            let mut k = *key;
            let count = self.per_window_keys.entry((start, interval)).or_insert(0);
            if *count >= self.cfg.max_keys {
                self.overflowed += 1;
                k = OVERFLOW;
            } else {
                *count += 1;
            }
            let row = self.windows.entry((start, interval, k)).or_insert_with(|| NetworkMetrics {
                time: start,
                interval,
                ip_0: Some(k.ip_0),
                ip_1: Some(k.ip_1),
                server_port: k.server_port,
                protocol: ip_proto::name(k.protocol),
                ..Default::default()
            });
            f(row);
        }
    }

    pub(crate) fn flow_opened(&mut self, key: &MeterKey, ts_us: u64) {
        self.with(key, ts_us / 1_000_000, |r| r.new_flow += 1);
    }

    pub(crate) fn flow_closed(&mut self, key: &MeterKey, ts_us: u64, ct: CloseType) {
        self.with(key, ts_us / 1_000_000, |r| {
            r.closed_flow += 1;
            if ct.is_establish_fail() {
                r.tcp_establish_fail += 1;
            }
            if ct.is_client_establish_fail() {
                r.client_establish_fail += 1;
            }
            if ct.is_server_establish_fail() {
                r.server_establish_fail += 1;
            }
            if ct.is_transfer_fail() {
                r.tcp_transfer_fail += 1;
            }
            if ct.is_rst() {
                r.tcp_rst_fail += 1;
            }
            if ct == CloseType::Timeout && key.protocol == ip_proto::TCP {
                r.tcp_timeout += 1;
            }
        });
    }

    /// Traffic of one flow during second `sec` (the flow counts as active in that window).
    pub(crate) fn add_traffic(&mut self, key: &MeterKey, sec: u64, ptx: u64, prx: u64, btx: u64, brx: u64) {
        self.with(key, sec, |r| {
            r.flow += 1;
            r.packet_tx += ptx;
            r.packet_rx += prx;
            r.byte_tx += btx;
            r.byte_rx += brx;
        });
    }

    pub(crate) fn add_retrans(&mut self, key: &MeterKey, sec: u64, dir: usize) {
        self.with(key, sec, |r| if dir == 0 { r.retrans_tx += 1 } else { r.retrans_rx += 1 });
    }

    pub(crate) fn add_zero_win(&mut self, key: &MeterKey, sec: u64, dir: usize) {
        self.with(key, sec, |r| if dir == 0 { r.zero_win_tx += 1 } else { r.zero_win_rx += 1 });
    }

    pub(crate) fn add_rtt(&mut self, key: &MeterKey, sec: u64, v: u64) {
        self.with(key, sec, |r| {
            r.rtt_sum += v;
            r.rtt_count += 1;
            r.rtt_max = r.rtt_max.max(v);
        });
    }

    pub(crate) fn add_srt(&mut self, key: &MeterKey, sec: u64, v: u64) {
        self.with(key, sec, |r| {
            r.srt_sum += v;
            r.srt_count += 1;
            r.srt_max = r.srt_max.max(v);
        });
    }

    pub(crate) fn add_art(&mut self, key: &MeterKey, sec: u64, v: u64) {
        self.with(key, sec, |r| {
            r.art_sum += v;
            r.art_count += 1;
            r.art_max = r.art_max.max(v);
        });
    }

    /// Closes every window that ends at or before second `sec`.
    pub(crate) fn close_before(&mut self, sec: u64) {
        if sec <= self.closed_before || self.windows.is_empty() {
            self.closed_before = self.closed_before.max(sec);
            return;
        }
        self.closed_before = sec;
        let mut done: Vec<(u64, u32, MeterKey)> =
            self.windows.keys().filter(|(start, iv, _)| start.saturating_add(u64::from(*iv)) <= sec).copied().collect();
        done.sort_unstable_by_key(|a| (a.1, a.0, a.2));
        for k in done {
            if let Some(r) = self.windows.remove(&k) {
                self.per_window_keys.remove(&(k.0, k.1));
                self.out.push(r);
            }
        }
    }

    pub(crate) fn drain(&mut self) -> Vec<NetworkMetrics> {
        std::mem::take(&mut self.out)
    }
}
