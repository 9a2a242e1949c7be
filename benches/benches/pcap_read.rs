//! pcap / pcapng file reading: packets per second through `PacketSource::next_packet`, from
//! memory (parsing only) and from a temporary file in the page cache (with `read` calls).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_capture::source::{Next, PacketSource, from_reader, open_file};

const PACKETS: usize = 100_000;

/// Frame sizes cycled through: mostly small (ACKs, DNS), some full-size segments.
const SIZES: [usize; 8] = [60, 66, 60, 1514, 74, 60, 590, 60];

fn frame(i: usize) -> Vec<u8> {
    (0..SIZES[i % SIZES.len()]).map(|j| (i + j) as u8).collect()
}

/// A little-endian microsecond pcap of `PACKETS` Ethernet frames.
fn pcap_image() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&65535u32.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..PACKETS {
        let f = frame(i);
        v.extend_from_slice(&(1_700_000_000 + (i / 1000) as u32).to_le_bytes());
        v.extend_from_slice(&((i % 1000) as u32 * 1000).to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(&f);
    }
    v
}

/// A little-endian pcapng of `PACKETS` enhanced packet blocks on one Ethernet interface with
/// nanosecond timestamps.
fn pcapng_image() -> Vec<u8> {
    let mut v = Vec::new();
    let block = |v: &mut Vec<u8>, t: u32, body: &[u8]| {
        let len = (12 + body.len().next_multiple_of(4)) as u32;
        v.extend_from_slice(&t.to_le_bytes());
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(body);
        v.resize(v.len() + (body.len().next_multiple_of(4) - body.len()), 0);
        v.extend_from_slice(&len.to_le_bytes());
    };
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    block(&mut v, 0x0a0d_0d0a, &shb);
    let idb = [1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0];
    block(&mut v, 1, &idb);
    for i in 0..PACKETS {
        let f = frame(i);
        let ts = 1_700_000_000_000_000_000u64 + i as u64 * 1000;
        let mut b = Vec::with_capacity(20 + f.len());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(ts as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&f);
        block(&mut v, 6, &b);
    }
    v
}

/// Reads every packet; returns a checksum so the work is not optimized away.
fn drain(src: &mut dyn PacketSource) -> u64 {
    let mut sum = 0u64;
    loop {
        match src.next_packet() {
            Ok(Next::Packet(p)) => sum = sum.wrapping_add(p.timestamp_us ^ p.data.len() as u64),
            Ok(Next::Idle) => {}
            Ok(Next::End) => return sum,
            Err(e) => panic!("{e}"),
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pcap_read");
    g.throughput(Throughput::Elements(PACKETS as u64));
    let images = [("pcap", pcap_image()), ("pcapng", pcapng_image())];
    for (name, bytes) in &images {
        g.bench_function(format!("{name}_memory_100k"), |b| {
            b.iter(|| {
                let mut src = from_reader(&bytes[..], "memory").unwrap();
                black_box(drain(&mut src))
            })
        });
    }
    let dir = std::env::temp_dir();
    for (name, bytes) in &images {
        let path = dir.join(format!("deepflow-bench-{}-{name}.{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        g.bench_function(format!("{name}_file_100k"), |b| {
            b.iter(|| {
                let mut src = open_file(&path).unwrap();
                black_box(drain(&mut src))
            })
        });
        let _ = std::fs::remove_file(&path);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
