//! Flow table lookup/insert and per-packet processing.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_benches::tcp_packet;
use deepflow_capture::budget::MemoryBudget;
use deepflow_capture::flow::{FlowConfig, FlowTable, NoL7};
use deepflow_core::packet::TcpFlags;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_table");
    // Existing flows: 10k live connections, packets spread across them (lookup + update).
    let flows = 10_000u32;
    let payload = [b'x'; 100];
    g.throughput(Throughput::Elements(u64::from(flows)));
    g.bench_function("lookup_update_10k_flows", |b| {
        let mut t = FlowTable::new(FlowConfig::default(), Arc::new(MemoryBudget::unlimited()), NoL7);
        let ts = 1_700_000_000_000_000u64;
        for f in 0..flows {
            t.process(&tcp_packet(f, ts, true, TcpFlags::SYN, 0, 0, b""));
        }
        let mut seq = [1u32; 10_000];
        let mut now = ts;
        b.iter(|| {
            now += 10;
            for f in 0..flows {
                let s = &mut seq[f as usize];
                t.process(&tcp_packet(f, now, true, TcpFlags::ACK | TcpFlags::PSH, *s, 1, &payload));
                *s = s.wrapping_add(100);
            }
        });
    });
    // New flows: insert + close (SYN, SYN-ACK, ACK, FIN, FIN, ACK) churn.
    g.throughput(Throughput::Elements(6 * 1000));
    g.bench_function("create_close_1k_flows", |b| {
        let mut t = FlowTable::new(FlowConfig::default(), Arc::new(MemoryBudget::unlimited()), NoL7);
        let mut now = 1_700_000_000_000_000u64;
        let mut base = 0u32;
        b.iter(|| {
            for f in base..base + 1000 {
                now += 1;
                t.process(&tcp_packet(f, now, true, TcpFlags::SYN, 0, 0, b""));
                t.process(&tcp_packet(f, now, false, TcpFlags::SYN | TcpFlags::ACK, 0, 1, b""));
                t.process(&tcp_packet(f, now, true, TcpFlags::ACK, 1, 1, b""));
                t.process(&tcp_packet(f, now, true, TcpFlags::FIN | TcpFlags::ACK, 1, 1, b""));
                t.process(&tcp_packet(f, now, false, TcpFlags::FIN | TcpFlags::ACK, 1, 2, b""));
                t.process(&tcp_packet(f, now, true, TcpFlags::ACK, 2, 2, b""));
            }
            base = base.wrapping_add(1000) % 60_000;
            t.advance(now + 3_000_000);
            now += 3_000_000;
            t.drain_records().for_each(drop);
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
