//! RPC parsers (dubbo, sofarpc, brpc, tars, thrift, fastcgi, someip): the payload of each
//! protocol's fixture captures (deepflow-protocols/tests/fixtures/<proto>/; `<proto>.pcap` is
//! real traffic for fastcgi and thrift and spec-generated for the others, `<proto>_real.pcap`
//! real traffic from npm/PyPI peers for dubbo, sofarpc, tars and someip) replayed through the L7 engine per flow
//! in its captured segments (UDP: datagrams). Throughput is payload bytes.
//!
//! Run: `cargo bench -p deepflow-benches --bench l7_rpc`.

#[path = "l7_common.rs"]
mod l7_common;

use std::collections::HashMap;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_core::{Direction, FlowInfo};

/// TCP and UDP flows of a little-endian/big-endian pcap (Ethernet, Linux cooked v1/v2 or raw IPv4):
/// per flow the in-order payload segments with their direction (retransmissions dropped).
fn flows(path: &Path) -> Vec<(FlowInfo, Vec<(Direction, Vec<u8>)>)> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let le = b[0] == 0xd4;
    let rd = |s: &[u8]| {
        let a: [u8; 4] = s.try_into().unwrap();
        if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) }
    };
    let link = rd(&b[20..24]);
    let mut off = 24;
    let mut order: Vec<(u16, u16)> = Vec::new();
    let mut map: HashMap<(u16, u16), (FlowInfo, Vec<(Direction, Vec<u8>)>, [u32; 2])> = HashMap::new();
    while off + 16 <= b.len() {
        let cap = rd(&b[off + 8..off + 12]) as usize;
        let pkt = &b[off + 16..off + 16 + cap];
        off += 16 + cap;
        let ip = match link {
            1 => &pkt[14..],
            113 => &pkt[16..],
            276 => &pkt[20..],
            _ => pkt,
        };
        if ip[0] >> 4 != 4 || (ip[9] != 6 && ip[9] != 17) {
            continue;
        }
        let ihl = usize::from(ip[0] & 0xf) * 4;
        let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let tcp = &ip[ihl..tot];
        if ip[9] == 17 {
            let (sp, dp) = (u16::from_be_bytes([tcp[0], tcp[1]]), u16::from_be_bytes([tcp[2], tcp[3]]));
            let key = if map.contains_key(&(dp, sp)) { (dp, sp) } else { (sp, dp) };
            let e = map.entry(key).or_insert_with(|| {
                let mut f = l7_common::flow(17, dp);
                f.client_port = sp;
                f.flow_id = order.len() as u64 + 1;
                order.push(key);
                (f, Vec::new(), [0; 2])
            });
            let dir = if sp == e.0.client_port && key == (sp, dp) {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            };
            e.1.push((dir, tcp[8..].to_vec()));
            continue;
        }
        let (sp, dp) = (u16::from_be_bytes([tcp[0], tcp[1]]), u16::from_be_bytes([tcp[2], tcp[3]]));
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let flags = tcp[13];
        let payload = &tcp[usize::from(tcp[12] >> 4) * 4..];
        let key = if map.contains_key(&(sp, dp)) {
            (sp, dp)
        } else if map.contains_key(&(dp, sp)) {
            (dp, sp)
        } else {
            if flags & 0x12 != 0x02 {
                continue;
            }
            let mut f = l7_common::flow(6, dp);
            f.client_port = sp;
            f.flow_id = order.len() as u64 + 1;
            order.push((sp, dp));
            map.insert((sp, dp), (f, Vec::new(), [0; 2]));
            (sp, dp)
        };
        let (f, segs, next) = map.get_mut(&key).unwrap();
        let dir = if sp == f.client_port { Direction::ClientToServer } else { Direction::ServerToClient };
        let d = dir.index();
        if flags & 0x02 != 0 {
            next[d] = seq.wrapping_add(1);
            continue;
        }
        if payload.is_empty() || seq != next[d] {
            continue;
        }
        next[d] = seq.wrapping_add(payload.len() as u32);
        segs.push((dir, payload.to_vec()));
    }
    order.into_iter().filter_map(|k| map.remove(&k)).map(|(f, s, _)| (f, s)).collect()
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deepflow-protocols/tests/fixtures");
    let mut g = c.benchmark_group("l7_rpc");
    // `<proto>.pcap` (spec-generated for dubbo/sofarpc/brpc/tars/someip) and the real-peer
    // captures `<proto>_real.pcap` (npm/PyPI peers, see the fixtures README)
    for (proto, file) in [
        ("dubbo", "dubbo"),
        ("dubbo", "dubbo_real"),
        ("sofarpc", "sofarpc"),
        ("sofarpc", "sofarpc_real"),
        ("brpc", "brpc"),
        ("tars", "tars"),
        ("tars", "tars_real"),
        ("thrift", "thrift"),
        ("fastcgi", "fastcgi"),
        ("someip", "someip"),
        ("someip", "someip_real"),
    ] {
        let path = root.join(proto).join(format!("{file}.pcap"));
        let proto = file;
        if !path.exists() {
            eprintln!("skip {proto}: {} missing", path.display());
            continue;
        }
        let fl = flows(&path);
        let bytes: usize = fl.iter().flat_map(|(_, s)| s.iter().map(|(_, b)| b.len())).sum();
        let msgs = {
            let mut engine = l7_common::engine();
            let rows: usize = fl.iter().map(|(f, s)| l7_common::feed(&mut engine, f, s, usize::MAX)).sum();
            assert!(rows > 0, "{proto}: no rows");
            engine.counters().messages
        };
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function(format!("{proto}/bytes"), |b| {
            let mut engine = l7_common::engine();
            b.iter(|| fl.iter().map(|(f, s)| l7_common::feed(&mut engine, f, s, usize::MAX)).sum::<usize>());
        });
        g.throughput(Throughput::Elements(msgs));
        g.bench_function(format!("{proto}/messages"), |b| {
            let mut engine = l7_common::engine();
            b.iter(|| fl.iter().map(|(f, s)| l7_common::feed(&mut engine, f, s, usize::MAX)).sum::<usize>());
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
