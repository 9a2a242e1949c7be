//! TLS handshake parser throughput: 100 TLS 1.2 handshakes (ClientHello with SNI/ALPN,
//! ServerHello + 1 KiB certificate + ServerHelloDone, CKE/CCS, CCS) followed by 16 KiB of
//! application data each, as separate flows. Reports MB/s and messages (flights)/s.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_core::Direction::{ClientToServer as C, ServerToClient as S};

#[path = "l7_common.rs"]
mod l7_common;
use l7_common::*;

fn record(ct: u8, body: &[u8]) -> Vec<u8> {
    [&[ct, 3, 3, (body.len() >> 8) as u8, body.len() as u8][..], body].concat()
}

fn hs(t: u8, body: &[u8]) -> Vec<u8> {
    let l = body.len();
    [&[t, (l >> 16) as u8, (l >> 8) as u8, l as u8][..], body].concat()
}

fn handshake() -> Vec<(deepflow_core::Direction, Vec<u8>)> {
    let sni = b"api.example.com";
    let mut ch = vec![3, 3];
    ch.extend([7u8; 32]);
    ch.extend([0, 0, 4, 0x13, 0x01, 0xc0, 0x2f, 1, 0]);
    let mut exts = vec![0, 0, 0, (sni.len() + 5) as u8, 0, (sni.len() + 3) as u8, 0, 0, sni.len() as u8];
    exts.extend(sni);
    exts.extend([0, 16, 0, 5, 0, 3, 2, b'h', b'2']);
    ch.extend([(exts.len() >> 8) as u8, exts.len() as u8]);
    ch.extend(exts);
    let mut sh = vec![3, 3];
    sh.extend([9u8; 32]);
    sh.extend([0, 0xc0, 0x2f, 0]);
    let cert = hs(11, &[0, 4, 3, 0, 4, 0].into_iter().chain(std::iter::repeat_n(0x30u8, 1024)).collect::<Vec<_>>());
    let mut app = Vec::new();
    for _ in 0..4 {
        app.extend(record(23, &[0xab; 4096]));
    }
    vec![
        (C, record(22, &hs(1, &ch))),
        (S, record(22, &[hs(2, &sh), cert, hs(14, &[])].concat())),
        (C, [record(22, &hs(16, &[1; 66])), record(20, &[1]), record(22, &[2; 40])].concat()),
        (S, [record(20, &[1]), record(22, &[3; 40])].concat()),
        (C, app.clone()),
        (S, app),
    ]
}

fn bench(c: &mut Criterion) {
    let conv = handshake();
    let bytes: usize = conv.iter().map(|(_, b)| b.len()).sum::<usize>() * 100;
    let f = flow(6, 443);
    let mut e = engine();
    assert_eq!(feed(&mut e, &f, &conv, 1460), 2);
    let mut g = c.benchmark_group("l7_tls");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("bytes", |b| b.iter(|| (0..100).map(|_| feed(&mut e, &f, &conv, 1460)).sum::<usize>()));
    g.throughput(Throughput::Elements(400));
    g.bench_function("messages", |b| b.iter(|| (0..100).map(|_| feed(&mut e, &f, &conv, 1460)).sum::<usize>()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
