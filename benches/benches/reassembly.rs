//! TCP reassembly: in-order delivery and out-of-order buffering, through the flow table.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_benches::tcp_packet;
use deepflow_capture::budget::MemoryBudget;
use deepflow_capture::flow::{FlowConfig, FlowObserver, FlowTable};
use deepflow_core::packet::TcpFlags;
use deepflow_core::record::L4FlowLog;
use deepflow_core::{Direction, FlowInfo};

/// Counts delivered bytes so the work cannot be optimized away.
#[derive(Default)]
struct Count(u64);

impl FlowObserver for Count {
    type State = ();
    fn on_payload(&mut self, _: &mut (), _: &FlowInfo, _: Direction, _: u64, d: &[u8]) {
        self.0 += d.len() as u64;
    }
    fn on_gap(&mut self, _: &mut (), _: &FlowInfo, _: Direction, _: u64, _: u64) {}
    fn on_close(&mut self, _: &mut (), _: &FlowInfo, _: u64, _: &mut L4FlowLog) {}
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("reassembly");
    let seg = vec![b'y'; 1448];
    let n = 1000u32;
    for (name, swap) in [("in_order_1448B", false), ("pairwise_swapped_1448B", true)] {
        g.throughput(Throughput::Bytes(u64::from(n) * 1448));
        g.bench_function(name, |b| {
            let mut t = FlowTable::new(FlowConfig::default(), Arc::new(MemoryBudget::unlimited()), Count::default());
            let mut now = 1_700_000_000_000_000u64;
            t.process(&tcp_packet(0, now, true, TcpFlags::SYN, 0, 0, b""));
            let mut seq = 1u32;
            b.iter(|| {
                let mut i = 0;
                while i < n {
                    now += 5;
                    let (a, bb) = (seq, seq.wrapping_add(1448));
                    let order = if swap { [bb, a] } else { [a, bb] };
                    for s in order {
                        t.process(&tcp_packet(0, now, true, TcpFlags::ACK | TcpFlags::PSH, s, 1, &seg));
                    }
                    seq = seq.wrapping_add(2 * 1448);
                    i += 2;
                }
            });
            assert!(t.observer().0 > 0);
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
