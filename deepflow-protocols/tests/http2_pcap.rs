//! gRPC over h2c from a real capture (python grpcio client and server), compared with
//! tshark's HTTP/2 dissector: per (client port, stream id) `:method`, `:path` and
//! `grpc-status` (else `:status`) must match the parsed sessions.
//!
//! The capture pipeline's pcap → TCP plumbing is not used here (it was not available when this
//! was written): a minimal in-order Ethernet/IPv4/TCP reader feeds the engine directly, which
//! is enough for a loopback capture without loss.
use deepflow_core::record::{L7FlowLog, L7Protocol};
use deepflow_core::{Direction, FlowInfo};
use deepflow_protocols::{L7Config, L7Engine, L7FlowState};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

type Key = (u16, u32);

fn fixture(proto: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(proto).join(format!("{proto}.pcap"))
}

fn have_tshark() -> bool {
    Command::new("tshark").arg("-v").output().map(|o| o.status.success()).unwrap_or(false)
}

/// `tshark -Y FILTER -T fields` with multi-valued fields joined by `|`; port 50051 decoded
/// as HTTP/2 (h2c with prior knowledge is not detected by port otherwise).
fn tshark_fields(pcap: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(pcap).args(["-d", "tcp.port==50051,http2", "-Y", filter]);
    cmd.args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().expect("run tshark");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('\t').map(str::to_string).collect()).collect()
}

/// (src ip, src port, dst ip, dst port, seq, syn, ts µs, payload) of each IPv4/TCP packet.
type Seg = ([u8; 4], u16, [u8; 4], u16, u32, bool, u64, Vec<u8>);

fn read_tcp(pcap: &[u8]) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut off = 24;
    while let Some(rec) = pcap.get(off..off + 16) {
        let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let (sec, usec, caplen) = (le(&rec[0..4]), le(&rec[4..8]), le(&rec[8..12]) as usize);
        let Some(pkt) = pcap.get(off + 16..off + 16 + caplen) else { break };
        off += 16 + caplen;
        if pkt.len() < 14 + 20 || pkt[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &pkt[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ip[9] != 6 || ip.len() < total || total < ihl + 20 {
            continue;
        }
        let tcp = &ip[ihl..total];
        let doff = usize::from(tcp[12] >> 4) * 4;
        out.push((
            [ip[12], ip[13], ip[14], ip[15]],
            u16::from_be_bytes([tcp[0], tcp[1]]),
            [ip[16], ip[17], ip[18], ip[19]],
            u16::from_be_bytes([tcp[2], tcp[3]]),
            u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
            tcp[13] & 0x02 != 0 && tcp[13] & 0x10 == 0,
            u64::from(sec) * 1_000_000 + u64::from(usec),
            tcp.get(doff..).unwrap_or_default().to_vec(),
        ));
    }
    out
}

/// Sessions of every TCP connection of the capture (client = sender of the SYN).
fn sessions(pcap: &[u8]) -> Vec<L7FlowLog> {
    let mut engine = L7Engine::new(L7Config::default());
    let mut flows: HashMap<(u16, u16), (FlowInfo, L7FlowState, [Option<u32>; 2])> = HashMap::new();
    let mut rows = Vec::new();
    let mut last_ts = 0;
    for (sip, sport, dip, dport, seq, syn, ts, payload) in read_tcp(pcap) {
        last_ts = ts;
        if syn {
            let info = FlowInfo {
                flow_id: flows.len() as u64 + 1,
                protocol: 6,
                client_ip: IpAddr::V4(Ipv4Addr::from(sip)),
                server_ip: IpAddr::V4(Ipv4Addr::from(dip)),
                client_port: sport,
                server_port: dport,
                tunnel: Default::default(),
                start_time_us: ts,
            };
            flows.insert((sport, dport), (info, L7FlowState::default(), [None, None]));
            continue;
        }
        let (key, dir) = if flows.contains_key(&(sport, dport)) {
            ((sport, dport), Direction::ClientToServer)
        } else {
            ((dport, sport), Direction::ServerToClient)
        };
        let Some((info, st, next)) = flows.get_mut(&key) else { continue };
        let exp = &mut next[dir.index()];
        if payload.is_empty() || exp.is_some_and(|e| seq.wrapping_sub(e) as i32 != 0) {
            // Skip pure ACKs and anything not exactly in order (none expected on loopback).
            if !payload.is_empty() && exp.is_some_and(|e| (seq.wrapping_sub(e) as i32) > 0) {
                panic!("gap in capture: the simple reader needs lossless in-order TCP");
            }
            continue;
        }
        *exp = Some(seq.wrapping_add(payload.len() as u32));
        engine.on_payload(st, info, dir, ts, &payload, &mut rows);
    }
    for (info, st, _) in flows.values_mut() {
        engine.on_flow_end(st, info, last_ts, &mut rows);
    }
    rows
}

/// (method, path, grpc-status, :status) per stream, from tshark.
fn tshark_streams(pcap: &Path) -> BTreeMap<Key, [Option<String>; 4]> {
    let rows = tshark_fields(
        pcap,
        "http2.type == 1",
        &["tcp.srcport", "tcp.dstport", "http2.streamid", "http2.header.name", "http2.header.value"],
    );
    let mut out: BTreeMap<Key, [Option<String>; 4]> = BTreeMap::new();
    for r in rows {
        let get = |i: usize| r.get(i).cloned().unwrap_or_default();
        let names: Vec<String> = get(3).split('|').map(str::to_string).collect();
        let values: Vec<String> = get(4).split('|').map(str::to_string).collect();
        // The first non-zero stream id of the packet is its HEADERS frame's (one block per
        // packet in this capture).
        let Some(sid) = get(2).split('|').find_map(|s| s.parse::<u32>().ok().filter(|&s| s != 0)) else {
            continue;
        };
        let is_req = names.iter().any(|n| n == ":path");
        let port: u16 = get(if is_req { 0 } else { 1 }).parse().unwrap_or(0);
        let e = out.entry((port, sid)).or_default();
        for (n, v) in names.iter().zip(values.iter()) {
            let slot = match n.as_str() {
                ":method" => 0,
                ":path" => 1,
                "grpc-status" => 2,
                ":status" => 3,
                _ => continue,
            };
            e[slot] = Some(v.clone());
        }
    }
    out
}

#[test]
fn grpc_capture_matches_tshark() {
    let path = fixture("grpc");
    let Ok(bytes) = std::fs::read(&path) else {
        println!("SKIP: no fixture {}", path.display());
        return;
    };
    let rows = sessions(&bytes);
    let ours: BTreeMap<Key, &L7FlowLog> = rows
        .iter()
        .filter(|r| r.l7_protocol == L7Protocol::Grpc)
        .map(|r| ((r.client_port, r.request_id.unwrap_or(0)), r))
        .collect();
    assert!(ours.len() >= 5, "too few gRPC sessions: {rows:#?}");
    for r in ours.values() {
        let ep = r.endpoint.as_deref().unwrap_or_default();
        let svc = ep.trim_start_matches('/').split_once('/').map(|(s, _)| s);
        assert_eq!(r.request_resource.as_deref(), svc, "{r:#?}");
        assert_eq!(r.version.as_deref(), Some("2"));
    }
    if !have_tshark() {
        println!("SKIP: tshark not available; {} gRPC sessions parsed", ours.len());
        return;
    }
    let theirs = tshark_streams(&path);
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "streams differ: {rows:#?}");
    for (k, [method, path, gs, status]) in &theirs {
        let r = ours[k];
        assert_eq!(r.request_type, *method, "{k:?}");
        assert_eq!(r.endpoint, *path, "{k:?}");
        let code = gs.as_ref().or(status.as_ref()).and_then(|c| c.parse::<i32>().ok());
        assert_eq!(r.response_code, code, "{k:?}: {r:#?}");
    }
}
