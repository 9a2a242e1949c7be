//! IPv4 defragmentation: fragments per second through `Defragmenter::push`, in order and
//! with the last fragment first, and with many datagrams interleaved.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_capture::budget::MemoryBudget;
use deepflow_capture::defrag::{DefragConfig, Defragmenter};
use deepflow_core::packet::{Fragment, Packet};

/// Datagram payload size and fragment size (a 4000-byte UDP datagram over a 1500 MTU).
const DATAGRAM: usize = 4000;
const FRAG: usize = 1480;

fn fragments(id: u32, data: &[u8]) -> Vec<Packet<'_>> {
    (0..data.len())
        .step_by(FRAG)
        .map(|off| {
            let chunk = &data[off..(off + FRAG).min(data.len())];
            Packet {
                src: IpAddr::V4(Ipv4Addr::new(10, 0, (id >> 8) as u8, id as u8)),
                dst: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)),
                ip_proto: 17,
                l4_len: chunk.len() as u32,
                fragment: Some(Fragment { id, offset: off as u32, more: off + chunk.len() < data.len(), protocol: 17 }),
                payload: chunk,
                ..Packet::default()
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("defrag");
    let data: Vec<u8> = (0..DATAGRAM).map(|i| i as u8).collect();
    let datagrams = 1000u32;
    let per = DATAGRAM.div_ceil(FRAG) as u64;
    g.throughput(Throughput::Elements(u64::from(datagrams) * per));
    let all: Vec<Vec<Packet<'_>>> = (0..datagrams).map(|id| fragments(id, &data)).collect();
    for (name, reverse) in [("in_order_4000B", false), ("last_first_4000B", true)] {
        g.bench_function(name, |b| {
            let mut d = Defragmenter::new(DefragConfig::default(), Arc::new(MemoryBudget::unlimited()));
            let mut now = 1_700_000_000_000_000u64;
            b.iter(|| {
                let mut bytes = 0usize;
                for frags in &all {
                    now += 10;
                    let mut push = |p: &Packet<'_>| {
                        if let Some(r) = d.push(p, now) {
                            bytes += r.data.len();
                        }
                    };
                    if reverse {
                        frags.iter().rev().for_each(&mut push);
                    } else {
                        frags.iter().for_each(&mut push);
                    }
                }
                assert_eq!(bytes, datagrams as usize * DATAGRAM);
                black_box(bytes)
            })
        });
    }
    // All first fragments, then all second ones, then all last ones: 1000 datagrams held.
    g.bench_function("interleaved_1000_datagrams", |b| {
        let mut d = Defragmenter::new(DefragConfig::default(), Arc::new(MemoryBudget::unlimited()));
        let mut now = 1_700_000_000_000_000u64;
        b.iter(|| {
            let mut done = 0;
            for k in 0..per as usize {
                now += 10;
                for frags in &all {
                    done += usize::from(d.push(&frags[k], now).is_some());
                }
            }
            assert_eq!(done, datagrams as usize);
            black_box(done)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
