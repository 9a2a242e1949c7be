//! Measures the memory of idle TCP flows: creates N flows (SYN, SYN-ACK, ACK each) in one
//! flow table and reports peak RSS and the table's budget accounting.
//!
//! `cargo run --release -p deepflow-benches --bin flow_memory -- 1000000`

use std::sync::Arc;

use deepflow_benches::{peak_rss_kib, tcp_packet};
use deepflow_capture::budget::MemoryBudget;
use deepflow_capture::flow::{FlowConfig, FlowTable, NoL7};
use deepflow_core::packet::TcpFlags;

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let base_rss = peak_rss_kib().unwrap_or(0);
    let budget = Arc::new(MemoryBudget::new(4 << 30));
    let mut t = FlowTable::new(FlowConfig { max_flows: n as usize + 1, ..FlowConfig::default() }, budget.clone(), NoL7);
    let ts = 1_700_000_000_000_000u64;
    for f in 0..n {
        let t0 = ts + u64::from(f);
        t.process(&tcp_packet(f, t0, true, TcpFlags::SYN, 1000, 0, b""));
        t.process(&tcp_packet(f, t0, false, TcpFlags::SYN | TcpFlags::ACK, 5000, 1001, b""));
        t.process(&tcp_packet(f, t0, true, TcpFlags::ACK, 1001, 5001, b""));
    }
    let peak = peak_rss_kib().unwrap_or(0);
    let used = budget.used();
    println!(
        "flows {} live {}: peak RSS {} MiB (baseline {} MiB) -> {:.0} bytes/flow measured, {:.0} bytes/flow budgeted",
        n,
        t.len(),
        peak / 1024,
        base_rss / 1024,
        (peak.saturating_sub(base_rss) * 1024) as f64 / f64::from(n),
        used as f64 / f64::from(n)
    );
}
