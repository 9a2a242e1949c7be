//! Per-flow packet, byte, retransmission and out-of-order counts on every committed fixture
//! must equal tshark's, computed from tshark's own decode of the same file.
//! Skips (with a message) when tshark is not installed; `scripts/install-deps.sh test` installs it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use deepflow_capture::flow::NoL7;
use deepflow_capture::pipeline::{Pipeline, PipelineConfig};
use deepflow_capture::source::{Next, open_file};
use deepflow_core::record::L4FlowLog;

/// This crate's fixtures plus the real protocol captures of deepflow-protocols.
fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("tests/fixtures")];
    if let Ok(d) = std::fs::read_dir(root.join("../deepflow-protocols/tests/fixtures")) {
        dirs.extend(d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()));
    }
    let mut v: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().filter_map(|e| e.ok().map(|e| e.path())))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pcap" | "pcapng")))
        .collect();
    v.sort();
    v
}

fn have_tshark() -> bool {
    Command::new("tshark").arg("-v").output().map(|o| o.status.success()).unwrap_or(false)
}

pub fn analyze(path: &Path) -> (Vec<L4FlowLog>, Pipeline<NoL7>) {
    let mut src = open_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut pipe = Pipeline::new(PipelineConfig::default(), NoL7);
    loop {
        match src.next_packet().unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
            Next::Packet(p) => pipe.process_raw(&p),
            Next::Idle => {}
            Next::End => break,
        }
    }
    pipe.finish();
    (pipe.drain_flows(), pipe)
}

/// Runs tshark with `-T fields` and returns the rows split on tabs.
fn tshark_fields(path: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(path).arg("-Y").arg(filter).arg("-T").arg("fields").arg("-E").arg("occurrence=l");
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().expect("run tshark");
    assert!(out.status.success(), "tshark failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('\t').map(str::to_string).collect()).collect()
}

fn frames(path: &Path, filter: &str) -> HashSet<u64> {
    tshark_fields(path, filter, &["frame.number"]).iter().filter_map(|r| r.first()?.parse().ok()).collect()
}

/// Per-direction counts keyed by (src ip, src port, dst ip, dst port).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Dir {
    packets: u64,
    bytes: u64,
    retrans: u64,
    ooo: u64,
}

type Endpoint = (IpAddr, u16);

/// tshark's view: per (proto, stream): per source endpoint counts.
fn tshark_flows(path: &Path, proto: &str) -> BTreeMap<u64, HashMap<(Endpoint, Endpoint), Dir>> {
    let retrans = if proto == "tcp" {
        frames(path, "tcp.analysis.retransmission || tcp.analysis.spurious_retransmission")
    } else {
        HashSet::new()
    };
    let ooo = if proto == "tcp" { frames(path, "tcp.analysis.out_of_order") } else { HashSet::new() };
    let stream = format!("{proto}.stream");
    let sport = format!("{proto}.srcport");
    let dport = format!("{proto}.dstport");
    let rows = tshark_fields(
        path,
        proto,
        &["frame.number", &stream, "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", &sport, &dport, "frame.len"],
    );
    let mut m: BTreeMap<u64, HashMap<(Endpoint, Endpoint), Dir>> = BTreeMap::new();
    for r in rows {
        let get = |i: usize| r.get(i).map(String::as_str).unwrap_or("");
        let (Ok(frame), Ok(s)) = (get(0).parse::<u64>(), get(1).parse::<u64>()) else { continue };
        // The innermost address: IPv6 when present (6in4), else IPv4.
        let src: IpAddr = if !get(3).is_empty() { get(3).parse().unwrap() } else { get(2).parse().unwrap() };
        let dst: IpAddr = if !get(5).is_empty() { get(5).parse().unwrap() } else { get(4).parse().unwrap() };
        let (sp, dp): (u16, u16) = (get(6).parse().unwrap(), get(7).parse().unwrap());
        let len: u64 = get(8).parse().unwrap();
        let d = m.entry(s).or_default().entry(((src, sp), (dst, dp))).or_default();
        d.packets += 1;
        d.bytes += len;
        d.retrans += u64::from(retrans.contains(&frame));
        d.ooo += u64::from(ooo.contains(&frame));
    }
    m
}

fn check_file(path: &Path) -> usize {
    let mut checked = 0;

    let (flows, _) = analyze(path);
    for proto in ["tcp", "udp"] {
        let proto_name = proto.to_ascii_uppercase();
        let ours: Vec<&L4FlowLog> = flows.iter().filter(|f| f.protocol == proto_name).collect();
        let theirs = tshark_flows(path, proto);
        // Every tshark stream must be one of our flows with the same per-direction counts.
        let mut unmatched: Vec<&L4FlowLog> = ours.clone();
        for (stream, dirs) in &theirs {
            // Tunnel carriers (VXLAN, Geneve) are decapsulated: their inner flows are checked.
            if proto == "udp"
                && dirs.keys().any(|(a, b)| [4789, 8472, 6081].contains(&a.1) || [4789, 8472, 6081].contains(&b.1))
            {
                continue;
            }
            let pos = unmatched.iter().position(|f| {
                let c: Endpoint = (f.ip_0.unwrap(), f.client_port);
                let s: Endpoint = (f.ip_1.unwrap(), f.server_port);
                let tx = dirs.get(&(c, s)).copied().unwrap_or_default();
                let rx = dirs.get(&(s, c)).copied().unwrap_or_default();
                tx.packets + rx.packets > 0 && (tx.packets, rx.packets) == (f.packet_tx, f.packet_rx) && dirs.len() <= 2
            });
            let Some(pos) = pos else {
                panic!(
                    "{}: tshark {proto}.stream {stream} {dirs:?} has no matching flow; ours: {:#?}",
                    path.display(),
                    ours.iter()
                        .map(|f| (f.ip_0, f.client_port, f.ip_1, f.server_port, f.packet_tx, f.packet_rx))
                        .collect::<Vec<_>>()
                )
            };
            let f = unmatched.remove(pos);
            let c: Endpoint = (f.ip_0.unwrap(), f.client_port);
            let s: Endpoint = (f.ip_1.unwrap(), f.server_port);
            let tx = dirs.get(&(c, s)).copied().unwrap_or_default();
            let rx = dirs.get(&(s, c)).copied().unwrap_or_default();
            let what = format!("{} {proto}.stream {stream} ({:?} -> {:?})", path.display(), c, s);
            assert_eq!((f.byte_tx, f.byte_rx), (tx.bytes, rx.bytes), "bytes of {what}");
            assert_eq!(
                (u64::from(f.retrans_tx), u64::from(f.retrans_rx)),
                (tx.retrans, rx.retrans),
                "retransmissions of {what}"
            );
            assert_eq!((u64::from(f.ooo_tx), u64::from(f.ooo_rx)), (tx.ooo, rx.ooo), "out-of-order of {what}");
            checked += 1;
        }
        assert!(
            unmatched.is_empty(),
            "{}: flows tshark does not have: {:?}",
            path.display(),
            unmatched.iter().map(|f| (f.ip_0, f.client_port, f.ip_1, f.server_port)).collect::<Vec<_>>()
        );
    }
    checked
}

#[test]
fn flows_match_tshark_on_every_fixture() {
    if !have_tshark() {
        eprintln!("SKIP flows_match_tshark_on_every_fixture: tshark not installed (scripts/install-deps.sh test)");
        return;
    }
    let files = fixtures();
    assert!(!files.is_empty(), "no fixtures found");
    // Four workers: each fixture costs a few tshark runs.
    let checked: usize = std::thread::scope(|sc| {
        let handles: Vec<_> = files
            .chunks(files.len().div_ceil(4))
            .map(|chunk| sc.spawn(move || chunk.iter().map(|p| check_file(p)).sum::<usize>()))
            .collect();
        handles.into_iter().map(|h| h.join().expect("fixture check failed")).sum()
    });
    eprintln!("checked {checked} flows in {} fixtures against tshark", files.len());
}
