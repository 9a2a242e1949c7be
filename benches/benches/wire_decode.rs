//! `deepflow_core::wire::decode` on representative frames: the per-packet cost of the agent's
//! hottest path (link layer to innermost transport header, tunnels included).
//!
//! Needs in benches/Cargo.toml: `[[bench]] name = "wire_decode" harness = false`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_core::wire::{DecodeConfig, LinkType, decode};

const MAC: [u8; 12] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = MAC.to_vec();
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).expect("fits");
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

fn ipv6(nh: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&u16::try_from(payload.len()).expect("fits").to_be_bytes());
    p.extend_from_slice(&[nh, 64]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(payload);
    p
}

/// TCP with the options of a typical established-connection segment (NOP NOP timestamps),
/// plus the given extra options (padded to 4 bytes).
fn tcp(extra_opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut opts = vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    opts.extend_from_slice(extra_opts);
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    let off = u8::try_from((20 + opts.len()) / 4).expect("fits");
    let mut s = vec![0x9c, 0x40, 0x01, 0xbb, 0, 0, 0x10, 0, 0, 0, 0x20, 0, off << 4, 0x18, 0x01, 0xf5, 0, 0, 0, 0];
    s.extend_from_slice(&opts);
    s.extend_from_slice(payload);
    s
}

fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = 50000u16.to_be_bytes().to_vec();
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&u16::try_from(8 + payload.len()).expect("fits").to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    d
}

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let body = [b'x'; 200];
    // MSS, window scale, SACK permitted, one SACK block, on top of the timestamps.
    let opts = [2, 4, 0x05, 0xb4, 3, 3, 7, 4, 2, 1, 1, 5, 10, 0, 0, 0, 10, 0, 0, 0, 20];
    let eth_v4_tcp = eth(0x0800, &ipv4(6, [10, 0, 0, 1], [10, 0, 0, 2], &tcp(&[], &body)));
    let eth_v4_tcp_syn = eth(0x0800, &ipv4(6, [10, 0, 0, 1], [10, 0, 0, 2], &tcp(&opts, &[])));
    let mut vlan_v6_udp = vec![0x00, 0x64, 0x86, 0xdd];
    vlan_v6_udp.extend_from_slice(&ipv6(17, &udp(53, &body[..60])));
    let eth_vlan_v6_udp = eth(0x8100, &vlan_v6_udp);
    let inner = eth(0x0800, &ipv4(6, [10, 0, 0, 1], [10, 0, 0, 2], &tcp(&[], &body)));
    let mut vx = vec![0x08, 0, 0, 0, 0, 0x13, 0x89, 0];
    vx.extend_from_slice(&inner);
    let vxlan_tcp = eth(0x0800, &ipv4(17, [192, 168, 0, 1], [192, 168, 0, 2], &udp(4789, &vx)));
    vec![
        ("eth_ipv4_tcp_ts", eth_v4_tcp),
        ("eth_vlan_ipv6_udp", eth_vlan_v6_udp),
        ("vxlan_eth_ipv4_tcp_ts", vxlan_tcp),
        ("eth_ipv4_tcp_syn_all_opts", eth_v4_tcp_syn),
    ]
}

fn bench(c: &mut Criterion) {
    let cfg = DecodeConfig::default();
    let frames = frames();
    for (_, f) in &frames {
        assert!(decode(LinkType::Ethernet, f, &cfg).is_ok());
    }
    let mut g = c.benchmark_group("wire_decode");
    g.throughput(Throughput::Elements(1));
    for (name, f) in &frames {
        g.bench_function(*name, |b| b.iter(|| decode(LinkType::Ethernet, black_box(f), black_box(&cfg))));
    }
    // A mixed batch (mostly plain TCP, as on a typical host), for a packets/s figure.
    let batch: Vec<&[u8]> = (0..1024)
        .map(|i| match i % 8 {
            6 => frames[1].1.as_slice(),
            7 => frames[2].1.as_slice(),
            _ => frames[0].1.as_slice(),
        })
        .collect();
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("mixed_batch_1024", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            for f in &batch {
                if let Ok(p) = decode(LinkType::Ethernet, black_box(f), &cfg) {
                    bytes += p.payload.len();
                }
            }
            bytes
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
