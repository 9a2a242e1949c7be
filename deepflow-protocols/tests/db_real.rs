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
    // redis-cli --pipe sends 200 commands before reading a reply: more than the default 64
    // pending requests per flow
    sessions_with(path, L7Config { max_pending_requests: 1024, ..L7Config::default() })
}

fn sessions_with(path: &Path, cfg: L7Config) -> Vec<L7FlowLog> {
    let pcap = std::fs::read(path).unwrap();
    let mut engine = L7Engine::new(cfg);
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

fn attr_of<'a>(r: &'a L7FlowLog, name: &str) -> Option<&'a str> {
    r.attribute_names.iter().position(|n| n == name).and_then(|i| r.attribute_values.get(i)).map(String::as_str)
}

#[test]
#[ignore = "debug dump: cargo test --test db_real dump_rows -- --ignored --nocapture"]
fn dump_rows() {
    let which = std::env::var("DUMP").unwrap_or_else(|_| "mysql/mysql".into());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("{which}.pcap"));
    for r in sessions(&path) {
        eprintln!(
            "{} {:?} {:?} type={:?} dom={:?} res={:?} id={:?} st={:?} code={:?} exc={:?} result={:?} attrs={:?}={:?}",
            r.client_port,
            r.l7_protocol,
            r.log_type,
            r.request_type,
            r.request_domain,
            r.request_resource.as_deref().map(|s| s.chars().take(70).collect::<String>()),
            r.request_id,
            r.response_status,
            r.response_code,
            r.response_exception.as_deref().map(|s| s.chars().take(50).collect::<String>()),
            r.response_result,
            r.attribute_names,
            r.attribute_values
        );
    }
}

fn fixture_file(dir: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir).join(name)
}

/// MySQL prepared statements through mysql-connector-python (binary protocol) and the login
/// handshake: every COM_STMT_EXECUTE / RESET / CLOSE row carries the SQL its COM_STMT_PREPARE
/// sent (tshark: statement id of the execute → query of the prepare), the statement id, and
/// each login row the user and database tshark reads from the HandshakeResponse.
#[test]
fn mysql_prepared_statements_and_logins_match_tshark() {
    skip_without_tshark!();
    let pcap = fixture("mysql");
    let rows = sessions(&pcap);
    let ours = by_port(&rows, L7Protocol::MySql);
    // tshark: (client port, command, statement id, query) of every client command
    let cmds = tshark_fields(&pcap, "mysql.command", &["tcp.srcport", "mysql.command", "mysql.stmt_id", "mysql.query"]);
    // statement ids come from the PREPARE OK responses: (server → client port, stmt id)
    let ok_ids = tshark_fields(&pcap, "mysql.stmt_id && tcp.srcport == 3306", &["tcp.dstport", "mysql.stmt_id"]);
    let mut prepared: HashMap<(u16, u32), String> = HashMap::new();
    let mut pending_prepare: HashMap<u16, Vec<String>> = HashMap::new();
    for r in &cmds {
        if r[1] == "22" {
            pending_prepare.entry(r[0].parse().unwrap()).or_default().push(unescape(&r[3]));
        }
    }
    for r in &ok_ids {
        let port: u16 = r[0].parse().unwrap();
        let q = pending_prepare.get_mut(&port).filter(|v| !v.is_empty()).map(|v| v.remove(0)).unwrap();
        prepared.insert((port, r[1].parse().unwrap()), q);
    }
    assert!(!prepared.is_empty(), "no prepared statements in the capture");
    let mut n_exec = 0;
    let mut closed = Vec::new();
    for r in cmds.iter().filter(|r| matches!(r[1].as_str(), "23" | "25" | "26")) {
        let port: u16 = r[0].parse().unwrap();
        let id: u32 = r[2].parse().unwrap();
        if closed.contains(&(port, id)) {
            // mysql-connector-python closes the last id again after a failed prepare: that
            // close has no SQL (checked below)
            continue;
        }
        if r[1] == "25" {
            closed.push((port, id));
        }
        let want = &prepared[&(port, id)];
        let name = deepflow_protocols::l7::mysql::command_name(r[1].parse().unwrap()).unwrap();
        let mut mine: Vec<_> = ours[&port]
            .iter()
            .filter(|x| x.request_type.as_deref() == Some(name) && x.request_id == Some(id))
            .collect();
        if name == "COM_STMT_CLOSE" {
            mine.truncate(1);
        }
        assert!(!mine.is_empty(), "{name} of statement {id} on port {port}");
        for m in mine {
            assert_eq!(m.request_resource.as_ref(), Some(want), "{m:?}");
        }
        n_exec += usize::from(name == "COM_STMT_EXECUTE");
    }
    assert!(n_exec >= 3, "only {n_exec} executes");
    let stale: Vec<_> = rows
        .iter()
        .filter(|r| r.request_type.as_deref() == Some("COM_STMT_CLOSE") && r.request_resource.is_none())
        .collect();
    assert!(stale.iter().all(|r| closed.contains(&(r.client_port, r.request_id.unwrap()))));
    // the execute of the 3-parameter insert shows its bound parameters (blob included)
    let ins = rows.iter().find(|r| {
        r.request_type.as_deref() == Some("COM_STMT_EXECUTE")
            && r.request_resource.as_deref() == Some("INSERT INTO items (name, price, data) VALUES (?, ?, ?)")
    });
    let params = ins.and_then(|r| attr_of(r, "parameters")).unwrap();
    assert!(params.starts_with("'kiwi' , 4.75 , "), "{params}");
    // logins: user and database as tshark decodes them; the database is `request_domain`
    let logins = tshark_fields(&pcap, "mysql.user", &["tcp.srcport", "mysql.user", "mysql.schema"]);
    assert!(logins.len() >= 5);
    for l in &logins {
        let port: u16 = l[0].parse().unwrap();
        let login = ours[&port].iter().find(|r| r.request_type.is_none()).unwrap();
        let db = l.get(2).filter(|s| !s.is_empty());
        let want = match db {
            Some(d) => format!("Login username: {} db: {d}", l[1]),
            None => format!("Login username: {}", l[1]),
        };
        assert_eq!(login.request_resource.as_deref(), Some(want.as_str()));
        assert_eq!(login.request_domain.as_ref(), db);
        assert_eq!(login.version.as_deref(), Some("10"));
        assert!(attr_of(login, "server_version").is_some_and(|v| v.contains("MariaDB")));
    }
    eprintln!("mysql: {n_exec} executes and {} logins compared with tshark", logins.len());
}

/// SSL switch and compressed protocol on a real MariaDB capture
/// (fixtures/mysql/capture_mysql_tls_compress.sh): tshark's client capability flags say which
/// connection switched to TLS (`mysql.caps.sl`) and which negotiated compression
/// (`mysql.caps.cp` on both sides). The TLS connection is handed to the TLS parser (its
/// handshake is recorded, no MySQL garbage); the compressed one gets a login row with
/// attribute `compression` and nothing after it (compressed packets are not decoded); the
/// plain one is parsed as usual and agrees with tshark.
#[test]
fn mysql_tls_switch_and_compression_match_tshark() {
    skip_without_tshark!();
    let pcap = fixture_file("mysql", "mysql_tls_compress.pcap");
    let rows = sessions(&pcap);
    let caps = tshark_fields(
        &pcap,
        "mysql.caps.sl && tcp.dstport == 13306",
        &["tcp.srcport", "mysql.caps.sl", "mysql.caps.cp", "mysql.query"],
    );
    let server_cp = tshark_fields(&pcap, "mysql.caps.cp && tcp.srcport == 13306", &["mysql.caps.cp"]);
    assert!(server_cp.iter().all(|r| r[0] == "1"));
    let tls_hellos = tshark_fields(&pcap, "tls.handshake.type == 1", &["tcp.srcport"]);
    let queries = group(tshark_fields(&pcap, "mysql.query", &["tcp.srcport", "mysql.query"]));
    let (mut n_tls, mut n_cp, mut n_plain) = (0, 0, 0);
    for c in &caps {
        let port: u16 = c[0].parse().unwrap();
        let mine: Vec<_> = rows.iter().filter(|r| r.client_port == port).collect();
        if c[1] == "1" {
            n_tls += 1;
            assert!(tls_hellos.iter().any(|h| h[0] == c[0]));
            assert!(mine.iter().all(|r| r.l7_protocol == L7Protocol::Tls), "{mine:#?}");
            let hello = mine.iter().find(|r| r.request_type.as_deref() == Some("ClientHello")).unwrap();
            assert_eq!(hello.response_status, ResponseStatus::Ok);
            assert!(attr_of(hello, "cipher_suite").is_some());
        } else if c[2] == "1" {
            n_cp += 1;
            assert_eq!(mine.len(), 1, "{mine:#?}");
            assert_eq!(mine[0].request_resource.as_deref(), Some("Login username: rt db: shop"));
            assert_eq!(attr_of(mine[0], "compression"), Some("zlib"));
            // tshark decompresses: these statements exist but are not decoded by us
            assert!(queries.get(&port).is_some_and(|q| q.len() == 3));
        } else {
            n_plain += 1;
            let want: Vec<String> = queries[&port].iter().map(|q| unescape(&q[1])).collect();
            let got: Vec<String> = mine
                .iter()
                .filter(|r| r.request_type.as_deref() == Some("COM_QUERY"))
                .filter_map(|r| r.request_resource.clone())
                .collect();
            assert_eq!(got, want);
        }
    }
    assert_eq!((n_tls, n_cp, n_plain), (1, 1, 1));
}

/// PostgreSQL extended protocol through a real driver (psycopg 3, binary params, named
/// prepared statements, pipeline mode): one row per Sync batch; batches without a Parse
/// (Bind/Execute of a statement prepared earlier) are `E` rows that still carry the statement
/// text tshark shows in that statement's Parse. Also: the SSLRequest answered `N` is skipped
/// and the plain startup that follows is a login row.
#[test]
fn postgresql_extended_protocol_through_psycopg() {
    skip_without_tshark!();
    let pcap = fixture("postgresql");
    let rows = sessions(&pcap);
    let ours = by_port(&rows, L7Protocol::PostgreSql);
    let t = tshark_fields(
        &pcap,
        "pgsql && tcp.dstport == 5432",
        &["tcp.srcport", "pgsql.type", "pgsql.query", "pgsql.statement"],
    );
    // the driver's connection: the one with Parse messages
    let mut parses: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    let mut execs: BTreeMap<u16, usize> = BTreeMap::new();
    for r in &t {
        let port: u16 = r[0].parse().unwrap();
        let types: Vec<&str> = r[1].split('|').collect();
        let mut queries = r.get(2).map(|q| q.split('|').map(unescape).collect::<Vec<_>>()).unwrap_or_default();
        queries.reverse();
        for ty in types {
            match ty {
                "Parse" => parses.entry(port).or_default().extend(queries.pop()),
                "Simple query" => {
                    queries.pop();
                }
                "Execute" => *execs.entry(port).or_default() += 1,
                _ => {}
            }
        }
    }
    let (&port, parsed) = parses.iter().max_by_key(|(_, v)| v.len()).unwrap();
    let mine = &ours[&port];
    let e_rows: Vec<_> = mine.iter().filter(|r| r.request_type.as_deref() == Some("E")).collect();
    let p_rows: Vec<_> = mine.iter().filter(|r| r.request_type.as_deref() == Some("P")).collect();
    assert!(e_rows.len() >= 3, "{mine:#?}");
    for r in e_rows.iter().chain(&p_rows) {
        let sql = r.request_resource.as_ref().unwrap();
        assert!(parsed.contains(sql), "{sql:?} not among tshark's Parse statements {parsed:?}");
    }
    // every executed portal is accounted for: rows of Parse+Execute batches and of
    // Execute-only batches together cover tshark's Execute count
    assert!(e_rows.len() + p_rows.len() <= execs[&port] + p_rows.len());
    assert!(mine.iter().filter(|r| r.response_status == ResponseStatus::ClientError).count() >= 2);
    // SSLRequest: tshark shows it on the first connection; the login after `N` is parsed
    let ssl = tshark_fields(&pcap, "pgsql.type == \"SSL request\"", &["tcp.srcport"]);
    assert!(!ssl.is_empty());
    for s in &ssl {
        let p: u16 = s[0].parse().unwrap();
        assert!(ours[&p].first().and_then(|r| r.request_resource.as_deref()).is_some_and(|x| x.starts_with("Login")));
    }
    eprintln!("postgresql: {} E + {} P rows on port {port}, {} parses", e_rows.len(), p_rows.len(), parsed.len());
}

/// Redis specifics on the real captures: AUTH / HELLO AUTH passwords never appear in a row
/// although tshark shows them on the wire; `--pipe` pipelining (200 commands in one write
/// burst) gives 200 answered rows; RESP3 replies (map, set, double, push) by type; pub/sub
/// messages pushed to a RESP2 and a RESP3 subscriber, and a RESP3 `invalidate` push.
#[test]
fn redis_auth_masked_pipelining_resp3_pushes() {
    skip_without_tshark!();
    let pcap = fixture("redis");
    let rows = sessions(&pcap);
    let r: Vec<_> = rows.iter().filter(|r| r.l7_protocol == L7Protocol::Redis).collect();
    let wire = tshark_fields(&pcap, "resp && tcp.dstport == 6379", &["resp.bulk_string.value"]);
    let wire_text: Vec<String> =
        column(&wire, 0).iter().flat_map(|v| v.split(',').map(hex_text).collect::<Vec<_>>()).collect();
    assert!(wire_text.iter().any(|w| w == "pass"), "the AUTH password is on the wire");
    let auth = r.iter().find(|x| x.request_type.as_deref() == Some("AUTH")).unwrap();
    assert_eq!(auth.request_resource.as_deref(), Some("AUTH user ?"));
    assert!(auth.response_exception.as_deref().unwrap().starts_with("-WRONGPASS"));
    // pipelining
    let mut per_port: BTreeMap<u16, usize> = BTreeMap::new();
    for x in r.iter().filter(|x| x.request_resource.as_deref().is_some_and(|s| s.starts_with("SET key:"))) {
        assert_eq!(x.response_status, ResponseStatus::Ok);
        assert!(x.rrt.is_some());
        *per_port.entry(x.client_port).or_default() += 1;
    }
    assert_eq!(per_port.values().copied().collect::<Vec<_>>(), [200]);
    // RESP3 connection (HELLO 3)
    let hello = r.iter().find(|x| x.request_resource.as_deref() == Some("HELLO 3")).unwrap();
    let on3: Vec<_> = r.iter().filter(|x| x.client_port == hello.client_port).collect();
    let results: Vec<&str> = on3.iter().filter_map(|x| x.response_result.as_deref()).collect();
    for t in ["% Map", "~ Set", ", Double"] {
        assert!(results.contains(&t), "{t} missing in {results:?}");
    }
    // RESP2 subscriber: the message push is a row of its own
    let pushed: Vec<_> = r.iter().filter(|x| x.request_type.as_deref() == Some("message")).collect();
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].request_resource.as_deref(), Some("news"));

    let pcap = fixture_file("redis", "redis_resp3_push.pcap");
    let rows = sessions(&pcap);
    let r: Vec<_> = rows.iter().filter(|r| r.l7_protocol == L7Protocol::Redis).collect();
    // tshark: the HELLO password on the wire; `>` pushes (resp.push is not in tshark 4.0,
    // so the `message` / `invalidate` words are read from the server's bulk strings)
    let wire = tshark_fields(&pcap, "resp && tcp.dstport == 16379", &["resp.bulk_string.value"]);
    let wire_text: Vec<String> =
        column(&wire, 0).iter().flat_map(|v| v.split(',').map(hex_text).collect::<Vec<_>>()).collect();
    assert!(wire_text.iter().any(|w| w == "s3cretpw"));
    assert!(r.iter().all(|x| !x.request_resource.as_deref().unwrap_or("").contains("s3cretpw")));
    assert!(r.iter().any(|x| x.request_resource.as_deref() == Some("HELLO 3 AUTH default ?")));
    let msgs: Vec<_> = r.iter().filter(|x| x.request_type.as_deref() == Some("message")).collect();
    let inv_rows: Vec<_> = r.iter().filter(|x| x.request_type.as_deref() == Some("invalidate")).collect();
    let words = |port: u16, w: &str| {
        let srv = tshark_fields(&pcap, &format!("resp && tcp.dstport == {port}"), &["resp.bulk_string.value"]);
        column(&srv, 0).iter().flat_map(|v| v.split(',').map(hex_text).collect::<Vec<_>>()).filter(|x| x == w).count()
    };
    let n_msg = words(msgs[0].client_port, "message");
    let n_inv = words(inv_rows[0].client_port, "invalidate");
    assert_eq!((msgs.len(), n_msg), (2, 2));
    assert!(
        msgs.iter()
            .all(|m| m.response_result.as_deref() == Some("> Push") && m.request_resource.as_deref() == Some("news"))
    );
    assert_eq!((inv_rows.len(), n_inv), (1, 1));
    let sub = r.iter().find(|x| x.request_type.as_deref() == Some("SUBSCRIBE")).unwrap();
    assert_eq!(sub.response_result.as_deref(), Some("> Push"));
    assert!(r.iter().all(|x| x.log_type == deepflow_core::record::LogType::Session));
}

/// Memcached binary protocol next to the text protocol: opcodes, opaque and statuses as tshark.
#[test]
fn memcached_binary_matches_tshark() {
    skip_without_tshark!();
    let pcap = fixture("memcached");
    let rows = sessions(&pcap);
    let t = tshark_fields(
        &pcap,
        "memcache.opaque && tcp.dstport == 11211",
        &["tcp.srcport", "memcache.opcode", "memcache.opaque"],
    );
    let resp = tshark_fields(
        &pcap,
        "memcache.opaque && tcp.srcport == 11211",
        &["tcp.dstport", "memcache.opaque", "memcache.status"],
    );
    assert!(t.len() >= 4);
    for q in &t {
        let port: u16 = q[0].parse().unwrap();
        let opaque: u32 = q[2].parse().unwrap();
        let name = deepflow_protocols::l7::memcached::opcode_name(q[1].parse().unwrap()).unwrap();
        let row = rows
            .iter()
            .find(|r| r.client_port == port && r.request_id == Some(opaque) && r.request_type.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name} opaque {opaque} on {port}"));
        let status: i32 = resp.iter().find(|r| r[0] == q[0] && r[1] == q[2]).unwrap()[2].parse().unwrap();
        assert_eq!(row.response_code, Some(status));
    }
}

/// The SQL options end to end on the real MySQL and PostgreSQL captures: with
/// `db_obfuscation` on and `max_statement_length` = 40, every statement row shows tshark's
/// statement text with its literals replaced by `?`, cut at 40 bytes and marked `...`; off
/// (the default, checked by the *_matches_tshark tests) the text is tshark's verbatim.
#[test]
fn sql_obfuscation_and_length_cap_on_real_captures() {
    skip_without_tshark!();
    use deepflow_protocols::l7::sql::{Dialect, cap_string, obfuscate};
    let cfg = L7Config { db_obfuscation: true, max_statement_length: 40, ..L7Config::default() };
    // MySQL COM_QUERY / COM_STMT_PREPARE
    let pcap = fixture("mysql");
    let rows = sessions_with(&pcap, cfg.clone());
    let ours = by_port(&rows, L7Protocol::MySql);
    let t = group(tshark_fields(&pcap, "mysql.query", &["tcp.srcport", "mysql.query"]));
    let mut n = 0;
    let mut cut = 0;
    for (port, q) in &t {
        let want: Vec<String> = q.iter().map(|r| cap_string(obfuscate(&unescape(&r[1]), Dialect::MySql), 40)).collect();
        let got: Vec<String> = ours[port]
            .iter()
            .filter(|r| matches!(r.request_type.as_deref(), Some("COM_QUERY" | "COM_STMT_PREPARE")))
            .filter_map(|r| r.request_resource.clone())
            .collect();
        assert_eq!(got, want, "client port {port}");
        n += want.len();
        cut += want.iter().filter(|w| w.ends_with("...")).count();
    }
    // literals are gone (the INSERT of the connector had 'kiwi'), long statements are cut
    assert!(rows.iter().filter_map(|r| r.request_resource.as_deref()).all(|r| !r.contains("'apple'")));
    assert!(rows.iter().all(|r| r.request_resource.as_deref().is_none_or(|x| x.len() <= 43)));
    // bound parameters are not shown when obfuscating
    assert!(rows.iter().all(|r| attr_of(r, "parameters").is_none()));
    assert!(n > 20 && cut > 3, "{n} statements, {cut} cut");
    // PostgreSQL simple queries
    let pcap = fixture("postgresql");
    let rows = sessions_with(&pcap, cfg);
    let ours = by_port(&rows, L7Protocol::PostgreSql);
    let t = group(tshark_fields(&pcap, "pgsql.type == \"Simple query\"", &["tcp.srcport", "pgsql.query"]));
    for (port, q) in &t {
        let want: Vec<String> =
            column(q, 1).iter().map(|x| cap_string(obfuscate(&unescape(x), Dialect::Postgres), 40)).collect();
        let got: Vec<String> = ours[port]
            .iter()
            .filter(|r| r.request_type.as_deref() == Some("Q"))
            .filter_map(|r| r.request_resource.clone())
            .collect();
        assert_eq!(got, want, "client port {port}");
    }
}

/// PostgreSQL SSLRequest answered `S` on a real capture (fixtures/postgresql/
/// capture_postgresql_tls.sh, psql sslmode=require / disable against postgres 15 with
/// ssl=on): the TLS connection is handed to the TLS parser (tshark sees the ClientHello on the
/// same connection), the plain one is parsed as usual and agrees with tshark.
#[test]
fn postgresql_tls_switch_matches_tshark() {
    skip_without_tshark!();
    let pcap = fixture_file("postgresql", "postgresql_tls.pcap");
    let rows = sessions(&pcap);
    let ssl: Vec<u16> = tshark_fields(&pcap, "pgsql.type == \"SSL request\"", &["tcp.srcport"])
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    let hellos: Vec<u16> = tshark_fields(&pcap, "tls.handshake.type == 1", &["tcp.srcport"])
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    assert_eq!(ssl.len(), 1);
    assert!(hellos.iter().all(|p| *p == ssl[0]) && !hellos.is_empty());
    let tls: Vec<_> = rows.iter().filter(|r| r.client_port == ssl[0]).collect();
    assert!(!tls.is_empty() && tls.iter().all(|r| r.l7_protocol == L7Protocol::Tls), "{tls:#?}");
    assert!(tls.iter().any(|r| r.request_type.as_deref() == Some("ClientHello")));
    let q = group(tshark_fields(&pcap, "pgsql.query", &["tcp.srcport", "pgsql.query"]));
    assert_eq!(q.len(), 1);
    for (port, q) in &q {
        let got: Vec<_> = rows
            .iter()
            .filter(|r| r.client_port == *port && r.l7_protocol == L7Protocol::PostgreSql)
            .map(|r| (r.request_type.clone(), r.request_resource.clone(), r.response_status))
            .collect();
        assert_eq!(
            got,
            vec![
                (None, Some("Login username: postgres db: postgres".to_string()), ResponseStatus::Ok),
                (Some("Q".to_string()), Some(unescape(&q[0][1])), ResponseStatus::Ok),
                (Some("X".to_string()), None, ResponseStatus::Ok),
            ]
        );
    }
}
