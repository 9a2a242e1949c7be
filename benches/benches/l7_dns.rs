//! DNS parser throughput: 1000 UDP query/response pairs (A answers with compression) through
//! the L7 engine. Reports MB/s and messages/s.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_core::Direction::{ClientToServer as C, ServerToClient as S};

#[path = "l7_common.rs"]
mod l7_common;
use l7_common::*;

fn name(n: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for l in n.split('.') {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
    v
}

fn conversation() -> Vec<(deepflow_core::Direction, Vec<u8>)> {
    let mut v = Vec::new();
    for i in 0..1000u16 {
        let q = format!("svc{i}.default.svc.cluster.local");
        let mut m = [i, 0x0100, 1, 0, 0, 0].iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
        m.extend(name(&q));
        m.extend([0, 1, 0, 1]);
        v.push((C, m.clone()));
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 2;
        for ip in [[10, 0, 0, 1], [10, 0, 0, 2]] {
            m.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
            m.extend(ip);
        }
        v.push((S, m));
    }
    v
}

fn bench(c: &mut Criterion) {
    let conv = conversation();
    let bytes: usize = conv.iter().map(|(_, b)| b.len()).sum();
    let f = flow(17, 53);
    let mut e = engine();
    assert_eq!(feed(&mut e, &f, &conv, 1460), 1000);
    let mut g = c.benchmark_group("l7_dns");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("bytes", |b| b.iter(|| feed(&mut e, &f, &conv, 1460)));
    g.throughput(Throughput::Elements(conv.len() as u64));
    g.bench_function("messages", |b| b.iter(|| feed(&mut e, &f, &conv, 1460)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
