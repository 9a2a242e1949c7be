//! HTTP/1 parser throughput: 1000 keep-alive request/response pairs (with bodies, one chunked)
//! through the L7 engine, in 1460-byte segments. Reports MB/s and messages/s.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_core::Direction::{ClientToServer as C, ServerToClient as S};

#[path = "l7_common.rs"]
mod l7_common;
use l7_common::*;

fn conversation() -> Vec<(deepflow_core::Direction, Vec<u8>)> {
    let mut v = Vec::new();
    for i in 0..1000 {
        let req = format!(
            "GET /api/v1/items/{i}?q=abc HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX-Request-ID: req-{i}\r\n\r\n"
        );
        v.push((C, req.into_bytes()));
        let resp = if i % 10 == 0 {
            let mut r = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..4 {
                r.extend_from_slice(b"100\r\n");
                r.extend(std::iter::repeat_n(b'x', 256));
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        } else {
            let mut r =
                b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\nContent-Length: 512\r\n\r\n"
                    .to_vec();
            r.extend(std::iter::repeat_n(b'{', 512));
            r
        };
        v.push((S, resp));
    }
    v
}

fn bench(c: &mut Criterion) {
    let conv = conversation();
    let bytes: usize = conv.iter().map(|(_, b)| b.len()).sum();
    let f = flow(6, 80);
    let mut e = engine();
    assert_eq!(feed(&mut e, &f, &conv, 1460), 1000);
    let mut g = c.benchmark_group("l7_http1");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("bytes", |b| b.iter(|| feed(&mut e, &f, &conv, 1460)));
    g.throughput(Throughput::Elements(conv.len() as u64));
    g.bench_function("messages", |b| b.iter(|| feed(&mut e, &f, &conv, 1460)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
