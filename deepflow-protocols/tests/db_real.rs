//! Database protocols on real captures (tests/fixtures/{mysql,postgresql,redis,memcached}),
//! run through the L7 engine and compared with tshark's dissectors: every command /
//! statement, its status and error code, per client connection and in order.
//!
//! The captures are lossless loopback recordings; a small in-order Ethernet/IPv4/TCP reader
//! feeds the engine directly (tests/common's pipeline helper depends on capture modules that
//! were being reworked when this was written).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use deepflow_core::record::{L7FlowLog, L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};
use deepflow_protocols::{L7Config, L7Engine, L7FlowState};

fn fixture(proto: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(proto).join(format!("{proto}.pcap"))
}

fn have_tshark() -> bool {
    Command::new("tshark").arg("-v").output().map(|o| o.status.success()).unwrap_or(false)
}

/// `tshark -Y FILTER -T fields` (with the fixture's recorded `-d` arguments), multi-valued
/// fields joined by `|`.
fn tshark_fields(pcap: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let args = std::fs::read_to_string(pcap.with_extension("tshark.args")).unwrap_or_default();
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(pcap);
    cmd.args(args.lines().map(str::trim).filter(|l| !l.is_empty()));
    cmd.args(["-Y", filter, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().expect("run tshark");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('\t').map(str::to_string).collect()).collect()
}

/// Undoes tshark's escaping of field text (`\\n`, `\\"`, ...).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

/// All `|`-separated values of column `i`, flattened.
fn column(rows: &[Vec<String>], i: usize) -> Vec<String> {
    rows.iter()
        .filter_map(|r| r.get(i))
        .flat_map(|v| v.split('|').filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>())
        .collect()
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

/// Session rows of every TCP connection of the capture (client = sender of the SYN).
fn sessions(path: &Path) -> Vec<L7FlowLog> {
    let pcap = std::fs::read(path).unwrap();
    // redis-cli --pipe sends 200 commands before reading a reply: more than the default 64
    // pending requests per flow
    let mut engine = L7Engine::new(L7Config { max_pending_requests: 1024, ..L7Config::default() });
    let mut flows: HashMap<(u16, u16), (FlowInfo, L7FlowState, [Option<u32>; 2])> = HashMap::new();
    let mut rows = Vec::new();
    let mut last_ts = 0;
    for (sip, sport, dip, dport, seq, syn, ts, payload) in read_tcp(&pcap) {
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
            assert!(
                payload.is_empty() || !exp.is_some_and(|e| (seq.wrapping_sub(e) as i32) > 0),
                "gap in capture: the simple reader needs lossless in-order TCP"
            );
            continue;
        }
        *exp = Some(seq.wrapping_add(payload.len() as u32));
        engine.on_payload(st, info, dir, ts, &payload, &mut rows);
    }
    for (info, st, _) in flows.values_mut() {
        engine.on_flow_end(st, info, last_ts, &mut rows);
    }
    let c = engine.counters();
    eprintln!(
        "{}: parse_errors={} stalls={} oversize={} unmatched={}",
        path.display(),
        c.parse_errors,
        c.stalls,
        c.oversize,
        c.unmatched_responses
    );
    rows
}

/// Rows of `proto` grouped by client port, in start-time order.
fn by_port(rows: &[L7FlowLog], proto: L7Protocol) -> BTreeMap<u16, Vec<&L7FlowLog>> {
    let mut m: BTreeMap<u16, Vec<&L7FlowLog>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.l7_protocol == proto) {
        m.entry(r.client_port).or_default().push(r);
    }
    for v in m.values_mut() {
        v.sort_by_key(|r| (r.start_time, r.end_time));
    }
    m
}

/// tshark rows grouped by the port in column 0.
fn group(rows: Vec<Vec<String>>) -> BTreeMap<u16, Vec<Vec<String>>> {
    let mut m: BTreeMap<u16, Vec<Vec<String>>> = BTreeMap::new();
    for r in rows {
        let Some(port) = r.first().and_then(|p| p.parse().ok()) else { continue };
        m.entry(port).or_default().push(r);
    }
    m
}

macro_rules! skip_without_tshark {
    () => {
        if !have_tshark() {
            eprintln!("SKIP: tshark not installed");
            return;
        }
    };
}

#[test]
fn mysql_matches_tshark() {
    skip_without_tshark!();
    let pcap = fixture("mysql");
    let rows = sessions(&pcap);
    let ours = by_port(&rows, L7Protocol::MySql);
    assert!(!ours.is_empty());
    // commands (one packet each in this capture)
    let cmds = group(tshark_fields(&pcap, "mysql.command", &["tcp.srcport", "mysql.command", "mysql.query"]));
    assert!(!cmds.is_empty());
    let mut compared = 0;
    for (port, pk) in &cmds {
        let mine: Vec<_> =
            ours.get(port).map(|v| v.iter().filter(|r| r.request_type.is_some()).collect()).unwrap_or_default();
        let want: Vec<(String, String)> = pk
            .iter()
            .map(|r| {
                let cmd: u8 = r[1].parse().unwrap();
                let name = deepflow_protocols::l7::mysql::command_name(cmd).unwrap().to_string();
                (name, unescape(r.get(2).map_or("", String::as_str)))
            })
            .collect();
        let got: Vec<(String, String)> = mine
            .iter()
            .map(|r| {
                let t = r.request_type.clone().unwrap_or_default();
                let q = if t == "COM_QUERY" || t == "COM_STMT_PREPARE" {
                    r.request_resource.clone().unwrap_or_default()
                } else {
                    String::new()
                };
                (t, q)
            })
            .collect();
        let want: Vec<_> = want
            .into_iter()
            .map(|(n, q)| {
                let q = if n == "COM_QUERY" || n == "COM_STMT_PREPARE" { q } else { String::new() };
                (n, q)
            })
            .collect();
        assert_eq!(got, want, "client port {port}");
        compared += want.len();
    }
    // error codes and statuses of every response
    let errs = group(tshark_fields(&pcap, "mysql.error_code", &["tcp.dstport", "mysql.error_code"]));
    for (port, e) in &errs {
        let want: Vec<i32> = e.iter().map(|r| r[1].parse().unwrap()).collect();
        let got: Vec<i32> = ours[port].iter().filter_map(|r| r.response_code).collect();
        assert_eq!(got, want, "error codes, client port {port}");
        for r in ours[port].iter().filter(|r| r.response_code.is_some()) {
            assert_eq!(r.response_status, ResponseStatus::ServerError);
            assert!(r.response_exception.is_some());
        }
    }
    let n_err: usize = errs.values().map(Vec::len).sum();
    let n_ok = rows.iter().filter(|r| r.response_status == ResponseStatus::Ok).count();
    assert!(
        rows.iter()
            .all(|r| r.response_status != ResponseStatus::Timeout || r.request_type.as_deref() == Some("COM_QUIT"))
    );
    eprintln!("mysql: {compared} commands, {n_err} errors, {n_ok} ok rows compared with tshark");
}

#[test]
fn postgresql_matches_tshark() {
    skip_without_tshark!();
    let pcap = fixture("postgresql");
    let rows = sessions(&pcap);
    let ours = by_port(&rows, L7Protocol::PostgreSql);
    assert!(!ours.is_empty());
    // simple queries and Parse statements in client order
    let q = group(tshark_fields(&pcap, "pgsql.query", &["tcp.srcport", "pgsql.type", "pgsql.query"]));
    let mut compared = 0;
    for (port, pk) in &q {
        let want: Vec<String> = pk
            .iter()
            .flat_map(|r| {
                // several messages per packet: types and queries aligned only for Q/P
                let types: Vec<&str> = r[1].split('|').collect();
                let queries: Vec<&str> = r[2].split('|').collect();
                let mut qi = 0;
                let mut out = Vec::new();
                for t in types {
                    if t == "Simple query" || t == "Parse" {
                        if let Some(q) = queries.get(qi) {
                            out.push(unescape(q));
                        }
                        qi += 1;
                    }
                }
                out
            })
            .collect();
        let got: Vec<String> = ours
            .get(port)
            .map(|v| {
                v.iter()
                    .filter(|r| matches!(r.request_type.as_deref(), Some("Q" | "P")))
                    .filter_map(|r| r.request_resource.clone())
                    .collect()
            })
            .unwrap_or_default();
        // a batch row shows the executed statement; Parse-only batches show the parsed one
        let mut want_dedup = want.clone();
        want_dedup.retain(|w| got.contains(w));
        assert_eq!(want_dedup.len(), want.len(), "client port {port}: tshark {want:?} ours {got:?}");
        compared += want.len();
    }
    // SQLSTATEs
    let codes = group(tshark_fields(&pcap, "pgsql.code", &["tcp.dstport", "pgsql.code"]));
    let mut n_err = 0;
    for (port, c) in &codes {
        // NoticeResponse codes (classes 00/01) are not errors
        let want: Vec<String> =
            column(c, 1).into_iter().filter(|c| !c.starts_with("00") && !c.starts_with("01")).collect();
        let got: Vec<String> = ours[port]
            .iter()
            .filter(|r| !matches!(r.response_status, ResponseStatus::Ok | ResponseStatus::Timeout))
            .filter_map(|r| r.response_result.clone())
            .collect();
        assert_eq!(got, want, "SQLSTATEs, client port {port}");
        n_err += want.len();
    }
    // CommandComplete tags
    let tags = group(tshark_fields(&pcap, "pgsql.tag", &["tcp.dstport", "pgsql.tag"]));
    for (port, t) in &tags {
        let want = column(t, 1);
        for r in ours[port].iter().filter(|r| r.response_status == ResponseStatus::Ok) {
            if let Some(res) = &r.response_result {
                assert!(want.contains(res), "tag {res} not in tshark's {want:?}");
            }
        }
    }
    eprintln!("postgresql: {compared} statements, {n_err} errors compared with tshark");
}

fn hex_text(h: &str) -> String {
    let b: Vec<u8> = (0..h.len() / 2).filter_map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()).collect();
    String::from_utf8_lossy(&b).into_owned()
}

/// True if `sub` appears in `all` in order (not necessarily contiguous).
fn is_subsequence(sub: &[String], all: &[String]) -> bool {
    let mut it = all.iter();
    sub.iter().all(|s| it.any(|a| a == s))
}

#[test]
fn redis_matches_tshark() {
    skip_without_tshark!();
    let pcap = fixture("redis");
    let rows = sessions(&pcap);
    let ours = by_port(&rows, L7Protocol::Redis);
    assert!(!ours.is_empty());
    // client side: one top-level array per command; its first bulk string is the command
    let client = group(tshark_fields(
        &pcap,
        "resp && tcp.dstport == 6379 && !resp.reassembled_in_next_frame",
        &["tcp.srcport", "resp.array.length", "resp.bulk_string.value"],
    ));
    let mut compared = 0;
    for (port, pk) in &client {
        let n_arrays = column(pk, 1).len();
        let bulks: Vec<String> = pk
            .iter()
            .flat_map(|r| r.get(2).map(|v| v.split([',', '|']).map(hex_text).collect::<Vec<_>>()).unwrap_or_default())
            .collect();
        let mine: Vec<&&L7FlowLog> = ours
            .get(port)
            .map(|v| v.iter().filter(|r| r.rrt.is_some() || r.response_status == ResponseStatus::Timeout).collect())
            .unwrap_or_default();
        // inline commands (redis-cli --pipe) are not arrays: tshark does not count them
        assert!(mine.len() >= n_arrays, "commands on client port {port}: {} < {n_arrays}", mine.len());
        let unmatched: Vec<_> =
            ours[port].iter().filter(|r| r.log_type == deepflow_core::record::LogType::Response).collect();
        assert!(unmatched.is_empty(), "client port {port}: unmatched {unmatched:?}");
        let types: Vec<String> = mine.iter().filter_map(|r| r.request_type.clone()).collect();
        if mine.len() == n_arrays {
            assert!(is_subsequence(&types, &bulks), "client port {port}: {types:?} not in {bulks:?}");
        }
        compared += n_arrays;
    }
    // server side: error replies in order
    let errs = group(tshark_fields(&pcap, "resp.error", &["tcp.dstport", "resp.error"]));
    let mut n_err = 0;
    for (port, e) in &errs {
        let want: Vec<String> = column(e, 1);
        let got: Vec<String> = ours[port]
            .iter()
            .filter(|r| r.response_status == ResponseStatus::ServerError)
            .filter_map(|r| r.response_exception.as_deref().map(|x| x.trim_start_matches('-').to_string()))
            .collect();
        assert_eq!(got, want, "errors, client port {port}");
        n_err += want.len();
    }
    assert!(
        rows.iter()
            .filter(|r| r.l7_protocol == L7Protocol::Redis)
            .all(|r| r.response_status != ResponseStatus::Timeout)
    );
    eprintln!("redis: {compared} commands, {n_err} errors compared with tshark");
}

#[test]
fn memcached_matches_tshark() {
    skip_without_tshark!();
    let pcap = fixture("memcached");
    let rows = sessions(&pcap);
    let ours = by_port(&rows, L7Protocol::Memcached);
    assert!(!ours.is_empty());
    let cmds = group(tshark_fields(
        &pcap,
        "memcache && tcp.dstport == 11211",
        &["tcp.srcport", "memcache.command", "memcache.opcode"],
    ));
    let mut compared = 0;
    for (port, pk) in &cmds {
        let mut want = column(pk, 1);
        want.extend(
            column(pk, 2)
                .iter()
                .filter_map(|o| o.parse::<u8>().ok())
                .filter_map(deepflow_protocols::l7::memcached::opcode_name)
                .map(str::to_string),
        );
        let got: Vec<String> =
            ours.get(port).map(|v| v.iter().filter_map(|r| r.request_type.clone()).collect()).unwrap_or_default();
        // tshark 4.0 shows some commands as "Continuation" (see the fixtures README)
        assert!(is_subsequence(&want, &got), "client port {port}: tshark {want:?} ours {got:?}");
        compared += want.len();
    }
    // responses tshark names, and binary statuses
    let resp = group(tshark_fields(
        &pcap,
        "memcache && tcp.srcport == 11211",
        &["tcp.dstport", "memcache.response", "memcache.status"],
    ));
    for (port, pk) in &resp {
        // our first line of a hit is `VALUE ...` / `STAT ...`, where tshark names the `END`
        let want_lines: Vec<String> = column(pk, 1).into_iter().filter(|l| l != "END").collect();
        let Some(mine) = ours.get(port) else { panic!("no rows for client port {port}; ours: {:?}", ours.keys()) };
        let got: Vec<String> = mine
            .iter()
            .filter_map(|r| r.response_result.clone())
            .map(|l| l.split(' ').next().unwrap_or("").to_string())
            .collect();
        assert!(is_subsequence(&want_lines, &got), "client port {port}: tshark {want_lines:?} ours {got:?}");
        let want_status: Vec<i32> = column(pk, 2).iter().filter_map(|s| s.parse().ok()).collect();
        let got_status: Vec<i32> = mine.iter().filter_map(|r| r.response_code).collect();
        assert_eq!(got_status, want_status, "binary statuses, client port {port}");
    }
    let bad: Vec<_> = rows.iter().filter(|r| r.response_status == ResponseStatus::Timeout).collect();
    assert!(bad.is_empty(), "{bad:?}");
    eprintln!("memcached: {compared} commands compared with tshark");
}

/// MongoDB: generated from the wire-format specification (no server in the package
/// registries; see tests/fixtures/mongodb/gen_mongodb_pcap.py), compared with tshark's mongo
/// dissector: opcode and requestID of every request, responseTo of every reply.
#[test]
fn mongodb_generated_matches_tshark() {
    skip_without_tshark!();
    let pcap = fixture("mongodb");
    let rows = sessions(&pcap);
    let ours: Vec<_> = rows.iter().filter(|r| r.l7_protocol == L7Protocol::MongoDb).collect();
    let t = tshark_fields(&pcap, "mongo", &["mongo.opcode", "mongo.request_id", "mongo.response_to"]);
    let num = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let reqs: Vec<(String, u32)> = t
        .iter()
        .filter(|r| num(&r[2]) == 0)
        .map(|r| (deepflow_protocols::l7::mongodb::opcode_name(r[0].parse().unwrap()).to_string(), num(&r[1])))
        .collect();
    let replies: Vec<u32> = t.iter().map(|r| num(&r[2])).filter(|to| *to != 0).collect();
    let got: Vec<(String, u32)> =
        ours.iter().map(|r| (r.request_type.clone().unwrap(), r.request_id.unwrap())).collect();
    assert_eq!(got, reqs);
    for r in &ours {
        let answered = replies.contains(&r.request_id.unwrap());
        assert_eq!(r.rrt.is_some(), answered, "{r:?}");
        if !answered {
            assert_eq!(r.log_type, deepflow_core::record::LogType::Session); // moreToCome
        }
    }
    let errors: Vec<(u32, Option<i32>)> = ours
        .iter()
        .filter(|r| r.response_status == ResponseStatus::ClientError)
        .map(|r| (r.request_id.unwrap(), r.response_code))
        .collect();
    assert_eq!(errors, [(5, Some(2)), (8, Some(139)), (12, Some(43))]);
    let big = ours.iter().find(|r| r.request_id == Some(11)).unwrap();
    assert_eq!(big.endpoint.as_deref(), Some("insert blobs"));
    eprintln!("mongodb: {} requests, {} replies compared with tshark", reqs.len(), replies.len());
}
