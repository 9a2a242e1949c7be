//! HPACK and HTTP/2 parsing throughput (MB/s of input bytes).
//!
//! `cargo bench -p deepflow-benches --bench l7_http2`
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_core::Direction;
use deepflow_protocols::l7::hpack::{self, Decoder, DecoderConfig};
use deepflow_protocols::l7::http2::{FrameHeader, H2Config, H2Connection, PREFACE, flags, frame_type};

fn int(out: &mut Vec<u8>, first: u8, prefix: u8, v: usize) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    let mut v = v - max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    let mut enc = Vec::new();
    hpack::huffman_encode(s, &mut enc);
    int(out, 0x80, 7, enc.len());
    out.extend_from_slice(&enc);
}

/// Literal without indexing, indexed name (`name_idx` > 0) or literal name.
fn literal(out: &mut Vec<u8>, name_idx: usize, name: &[u8], value: &[u8]) {
    int(out, 0x00, 4, name_idx);
    if name_idx == 0 {
        string(out, name);
    }
    string(out, value);
}

fn frame(kind: u8, fl: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader { length: payload.len() as u32, kind, flags: fl, stream_id: sid, reserved: false };
    let mut v = h.encode().to_vec();
    v.extend_from_slice(payload);
    v
}

/// A typical gRPC request header block, all literals without indexing (stateless).
fn request_block(sid: u32) -> Vec<u8> {
    let mut b = vec![0x83, 0x86];
    literal(&mut b, 4, b"", b"/helloworld.Greeter/SayHello");
    literal(&mut b, 1, b"", b"greeter.default.svc.cluster.local:50051");
    literal(&mut b, 31, b"", b"application/grpc");
    literal(&mut b, 0, b"te", b"trailers");
    literal(&mut b, 58, b"", b"grpc-python/1.62.0 grpc-c/39.0.0 (linux; chttp2)");
    literal(&mut b, 0, b"grpc-accept-encoding", b"identity,deflate,gzip");
    literal(&mut b, 0, b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    literal(&mut b, 0, b"x-request-id", format!("req-{sid:08}").as_bytes());
    b
}

fn conversation(calls: u32) -> (Vec<u8>, Vec<u8>) {
    let mut c = PREFACE.to_vec();
    c.extend(frame(frame_type::SETTINGS, 0, 0, &[]));
    let mut s = frame(frame_type::SETTINGS, 0, 0, &[]);
    s.extend(frame(frame_type::SETTINGS, flags::ACK, 0, &[]));
    c.extend(frame(frame_type::SETTINGS, flags::ACK, 0, &[]));
    let body = {
        let mut m = vec![0, 0, 0, 0, 200];
        m.extend(std::iter::repeat_n(0x5a, 200));
        m
    };
    for i in 0..calls {
        let sid = 2 * i + 1;
        c.extend(frame(frame_type::HEADERS, flags::END_HEADERS, sid, &request_block(sid)));
        c.extend(frame(frame_type::DATA, flags::END_STREAM, sid, &body));
        let mut h = vec![0x88];
        literal(&mut h, 31, b"", b"application/grpc");
        s.extend(frame(frame_type::HEADERS, flags::END_HEADERS, sid, &h));
        s.extend(frame(frame_type::DATA, 0, sid, &body));
        let mut t = Vec::new();
        literal(&mut t, 0, b"grpc-status", b"0");
        literal(&mut t, 0, b"grpc-message", b"");
        s.extend(frame(frame_type::HEADERS, flags::END_STREAM | flags::END_HEADERS, sid, &t));
    }
    (c, s)
}

fn bench_hpack(c: &mut Criterion) {
    let mut g = c.benchmark_group("hpack");
    let block = request_block(7);
    g.throughput(Throughput::Bytes(block.len() as u64));
    let mut dec = Decoder::new(DecoderConfig::default());
    g.bench_function("decode_grpc_request_block", |b| {
        b.iter(|| {
            let mut n = 0usize;
            dec.decode_block(black_box(&block), |f| n += f.value.len()).ok();
            n
        })
    });
    let text: Vec<u8> = b"Mon, 21 Oct 2013 20:13:21 GMT https://www.example.com/api/v1/users?id=42&x=y "
        .iter()
        .cycle()
        .take(4096)
        .copied()
        .collect();
    let mut enc = Vec::new();
    hpack::huffman_encode(&text, &mut enc);
    g.throughput(Throughput::Bytes(enc.len() as u64));
    let mut out = Vec::with_capacity(8192);
    g.bench_function("huffman_decode_4k", |b| {
        b.iter(|| {
            out.clear();
            hpack::huffman_decode(black_box(&enc), &mut out).ok();
            out.len()
        })
    });
    g.finish();
}

fn bench_h2(c: &mut Criterion) {
    let mut g = c.benchmark_group("http2");
    let (cli, srv) = conversation(200);
    g.throughput(Throughput::Bytes((cli.len() + srv.len()) as u64));
    let cfg = Arc::new(H2Config::default());
    g.bench_function("grpc_unary_x200_1460B_chunks", |b| {
        b.iter(|| {
            let mut conn = H2Connection::new(Arc::clone(&cfg));
            let (mut ci, mut si) = (cli.chunks(1460), srv.chunks(1460));
            let mut n = 0;
            loop {
                let a = ci.next();
                let z = si.next();
                if a.is_none() && z.is_none() {
                    break;
                }
                if let Some(a) = a {
                    conn.feed_all(Direction::ClientToServer, a, 1);
                }
                if let Some(z) = z {
                    conn.feed_all(Direction::ServerToClient, z, 2);
                }
                while conn.pop_message().is_some() {
                    n += 1;
                }
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench_hpack, bench_h2);
criterion_main!(benches);
