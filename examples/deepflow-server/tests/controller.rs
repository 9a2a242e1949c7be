#![allow(clippy::unwrap_used, clippy::panic)]
//! The controller against the real binaries on loopback: an agent registers and reports its
//! counters, a config PUT reaches it (and a bad one is refused, the old config kept), wrong
//! tokens get 401; two servers over one store spread agents over both ingesters, and after
//! kill -9 of one its agents move to the other with every acknowledged batch in the store.
//!
//! Runs `deepflow-agent` and `deepflow-loadgen`, found next to the server binary: run it after
//! `cargo build --workspace` (`cargo test --workspace` builds them).

mod common;

use common::{GrpcServer as Srv, bin, demo_pcap, run_loadgen, start_with_grpc as start};

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

impl Srv {
    fn agents(&self) -> BTreeMap<String, serde_json::Value> {
        let r = self.http.get("/v1/agents");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["agent_id"].as_str().unwrap().to_string(), a.clone()))
            .collect()
    }
    fn put_config(&self, content_type: &str, body: &str) -> common::Resp {
        let mut req = common::agent().put(self.http.url("/v1/agents/config")).header("Content-Type", content_type);
        if let Some(t) = &self.http.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut r = req.send(body.as_bytes()).unwrap();
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_vec().unwrap();
        common::Resp { status, content_type: String::new(), body }
    }
}

fn run_agent(srv: &Srv, id: &str, token: &str) -> String {
    let out = Command::new(bin("deepflow-agent"))
        .args(["analyze"])
        .arg(demo_pcap())
        .args(["--no-progress", "--controller", &srv.http_url(), "--token", token, "--agent-id", id])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stderr}");
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn total_rows(srv: &Srv) -> u64 {
    ["l4_flow_log", "l7_flow_log", "network", "application"]
        .iter()
        .map(|t| srv.count(&format!("SELECT count(*) FROM {t}")))
        .sum()
}

/// (a) An agent registers (its first sync picks the ingester, no `--server` needed) and shows
/// up in GET /v1/agents with its counters; the config from `--agent-config` (YAML) reaches it,
/// a PUT makes a new version that its next run applies (rows of a protocol switched off are not
/// stored, sampling drops flow logs) and reports; a bad PUT is a 400 with a message and the
/// previous config stays; wrong or missing tokens get 401 on every controller endpoint.
#[test]
fn agent_registers_reports_counters_and_applies_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agents.yaml");
    std::fs::write(&cfg, "default:\n  l7_protocols: {dns: false}\n").unwrap();
    let data = dir.path().join("data");
    let srv = start(&data, Some("tok"), &["--agent-config", cfg.to_str().unwrap(), "--agent-heartbeat-ms", "300"]);

    // auth: 401 without or with a wrong token, nothing registered
    let sync_body = br#"{"agent_id":"intruder"}"#;
    for tok in [None, Some("wrong")] {
        let a = common::agent();
        let auth = tok.map(|t| format!("Bearer {t}")).unwrap_or_default();
        for path in ["/v1/agents", "/v1/ingesters", "/v1/agents/config"] {
            let r = a.get(srv.http.url(path)).header("Authorization", &auth).call().unwrap();
            assert_eq!(r.status().as_u16(), 401, "{path}");
        }
        let r = a.post(srv.http.url("/v1/agents/sync")).header("Authorization", &auth).send(&sync_body[..]).unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let r = a.put(srv.http.url("/v1/agents/config")).header("Authorization", &auth).send("{}").unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    assert!(srv.agents().is_empty());

    let c = srv.http.get("/v1/agents/config").json();
    assert_eq!(c["version"], 1);
    assert_eq!(c["config"]["default"]["l7_protocols"]["dns"], false);
    let ing = srv.http.get("/v1/ingesters").json();
    assert_eq!(ing["data"][0]["grpc"], srv.grpc_url(), "{ing}");
    assert_eq!(ing["data"][0]["status"], "alive");

    // first run: registers, sends to the assigned ingester, applies v1, reports its counters
    let stderr = run_agent(&srv, "a1", "tok");
    assert!(stderr.contains(&format!("controller assigned ingester {}", srv.grpc_url())), "{stderr}");
    assert!(stderr.contains("config v1 applied: L7 protocols off: dns"), "{stderr}");
    let a1 = &srv.agents()["a1"];
    eprintln!("registry: {a1:#}");
    assert_eq!(a1["status"], "alive");
    assert_eq!(a1["config_version"], 1);
    assert_eq!(a1["assigned_ingester"], srv.grpc_url());
    assert_eq!(a1["current_ingester"], srv.grpc_url());
    assert!(a1["first_seen_ms"].as_u64().unwrap() > 0);
    let acked = a1["counters"]["rows_acked"].as_u64().unwrap();
    assert!(acked > 0);
    assert_eq!(a1["counters"]["rows_sent"].as_u64().unwrap(), acked, "{a1}");
    assert_eq!(total_rows(&srv), acked, "every acknowledged row is stored");
    assert_eq!(srv.count("SELECT count(*) FROM l7_flow_log WHERE l7_protocol = 'dns'"), 0);
    let http_rows = srv.count("SELECT count(*) FROM l7_flow_log WHERE l7_protocol = 'http'");
    assert!(http_rows > 0, "demo.pcap has HTTP");
    let flows_1 = srv.count("SELECT count(*) FROM l4_flow_log");

    // a new config: http off for everyone, a1 samples 1 flow in 2 and wants a plugin (restart)
    let r = srv.put_config(
        "application/json",
        r#"{"default": {"l7_protocols": {"http": false}},
            "agents": {"a1": {"flow_sampling": 2, "wasm_plugins": ["/opt/plugins/x.wasm"]}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 2);
    // bad documents: 400 with a message, version 2 kept
    for (ct, bad, want) in [
        ("application/json", r#"{"default": {"l7_protocols": {"nosuch": false}}}"#, "unknown protocol"),
        ("application/json", r#"{"default": {"flow_sampling": 0}}"#, "flow_sampling"),
        ("application/json", r#"{"default": {"sampling": 2}}"#, "unknown field"),
        ("application/json", "{not json", "invalid JSON"),
        ("application/yaml", "default: [1, 2", "invalid YAML"),
    ] {
        let r = srv.put_config(ct, bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(want) && msg.contains("previous config is kept"), "{bad}: {msg}");
    }
    let c = srv.http.get("/v1/agents/config").json();
    assert_eq!(c["version"], 2, "{c}");
    assert_eq!(c["config"]["agents"]["a1"]["flow_sampling"], 2, "{c}");
    // the same document again: no new version
    let r = srv.put_config(
        "application/json",
        r#"{"default": {"l7_protocols": {"http": false}},
            "agents": {"a1": {"flow_sampling": 2, "wasm_plugins": ["/opt/plugins/x.wasm"]}}}"#,
    );
    assert_eq!((r.json()["version"].as_u64(), r.json()["changed"].as_bool()), (Some(2), Some(false)));

    // the agent's next sync gets v2, applies it and reports it
    let stderr = run_agent(&srv, "a1", "tok");
    assert!(stderr.contains("config v2 applied: L7 protocols off: http; flow sampling 1 in 2"), "{stderr}");
    assert!(stderr.contains("config v2 needs restart for: wasm_plugins"), "{stderr}");
    let a1 = &srv.agents()["a1"];
    eprintln!("registry: {a1:#}");
    assert_eq!(a1["config_version"], 2);
    assert_eq!(a1["config_current"], true);
    assert!(a1["restart_needed"][0].as_str().unwrap().starts_with("wasm_plugins"), "{a1}");
    assert!(a1["syncs"].as_u64().unwrap() >= 4, "two runs, at least two syncs each: {a1}");
    let c = &a1["counters"];
    assert!(c["flows_sampled_out"].as_u64().unwrap() > 0, "{c}");
    assert_eq!(srv.count("SELECT count(*) FROM l7_flow_log WHERE l7_protocol = 'http'"), http_rows, "no new HTTP rows");
    let flows_2 = srv.count("SELECT count(*) FROM l4_flow_log") - flows_1;
    assert!(flows_2 > 0 && flows_2 < flows_1, "sampling: {flows_2} of {flows_1} flows");
    assert_eq!(flows_2 + c["flows_sampled_out"].as_u64().unwrap(), flows_1);
    assert_eq!(c["rows_acked"], c["rows_sent"], "{c}");

    // a bad sync body: 400, the registry unchanged
    let r = srv.http.post("/v1/agents/sync", "application/json", None, br#"{"agent_id": ""}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = srv.http.post("/v1/agents/sync", "application/json", None, b"\xff\x00");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(srv.agents().len(), 1);
    let c = srv.http.get("/v1/agents").json()["controller"].clone();
    assert_eq!(
        (c["bad_requests"].as_u64(), c["config_rejected"].as_u64(), c["config_updates"].as_u64()),
        (Some(2), Some(5), Some(1)),
        "{c}"
    );

    // an agent whose controller is unreachable keeps working: rows go to --server
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let out = Command::new(bin("deepflow-agent"))
        .args(["analyze"])
        .arg(demo_pcap())
        .args(["--no-progress", "--controller", &dead, "--server", &srv.grpc_url(), "--token", "tok"])
        .args(["--agent-id", "a2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("controller unreachable"), "{stderr}");
    let a2: u64 = stderr.split("server acknowledged ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(a2 > 0);
    assert_eq!(total_rows(&srv), acked + a1["counters"]["rows_acked"].as_u64().unwrap() + a2);
}

/// Polls `f` every 100 ms, at most `n` times; the last value.
fn poll<T>(n: usize, mut f: impl FnMut() -> (bool, T)) -> T {
    let mut last = f();
    for _ in 0..n {
        if last.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        last = f();
    }
    last.1
}

/// (b) Two servers share one store; 4 simulated agents (deepflow-loadgen running the agent's
/// controller client) register with the first and are spread over both ingesters. A config
/// PUT mid-stream reaches all of them. kill -9 of the second: its agents move to the first,
/// every batch an agent saw acknowledged is in the store, and every row sent is stored. A
/// clean shutdown removes the ingester's heartbeat file.
#[test]
fn agents_spread_over_two_ingesters_and_move_on_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let hb = ["--agent-heartbeat-ms", "300"];
    // rendezvous hashing is deterministic: with these ids loadgen-1..4 split 2/2
    let a = start(dir.path(), None, &[&hb[..], &["--ingester-id", "alpha"]].concat());
    let b = start(dir.path(), None, &[&hb[..], &["--ingester-id", "beta"]].concat());
    let ings = poll(100, || {
        let v = a.http.get("/v1/ingesters").json();
        let alive = v["data"].as_array().unwrap().iter().filter(|i| i["status"] == "alive").count();
        (alive == 2, v)
    });
    assert_eq!(ings["data"].as_array().unwrap().len(), 2, "{ings}");
    assert!(dir.path().join("_cluster/ingesters/alpha.json").exists());

    let acked_file = dir.path().join("acked.txt");
    let (mut loadgen, summary) = run_loadgen(&[
        "--controller",
        &a.http_url(),
        "--agents",
        "4",
        "--rate",
        "4000",
        "--seconds",
        "10",
        "--batch-rows",
        "200",
        "--acked-out",
        acked_file.to_str().unwrap(),
    ]);
    // all registered, spread over both ingesters, both storing
    let agents = poll(100, || {
        let ags = a.agents();
        (ags.len() == 4 && ags.values().all(|g| g["current_ingester"].is_string()), ags)
    });
    assert_eq!(agents.len(), 4, "{agents:?}");
    let on: BTreeMap<String, String> =
        agents.iter().map(|(k, v)| (k.clone(), v["assigned_ingester"].as_str().unwrap().to_string())).collect();
    eprintln!("assignment: {on:?}");
    let used: HashSet<&String> = on.values().collect();
    assert_eq!(used, HashSet::from([&a.grpc_url(), &b.grpc_url()]), "agents spread over both ingesters");
    let per = a.http.get("/v1/ingesters").json();
    for i in per["data"].as_array().unwrap() {
        assert!(i["agents"].as_u64().unwrap() >= 1, "{per}");
    }
    let moved: Vec<String> = on.iter().filter(|(_, g)| **g == b.grpc_url()).map(|(k, _)| k.clone()).collect();

    // a config change reaches every running agent at its next sync
    let r = a.put_config("application/json", r#"{"default": {"flow_sampling": 3}}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let version = r.json()["version"].as_u64().unwrap();
    let agents = poll(100, || {
        let ags = a.agents();
        (ags.values().all(|g| g["config_version"] == version), ags)
    });
    assert!(agents.values().all(|g| g["config_version"] == version), "{agents:?}");

    // b stores something, then dies hard
    let stored_before = poll(200, || {
        let n = a.count("SELECT count(*) FROM l4_flow_log");
        (n >= 4000, n)
    });
    assert!(stored_before > 0, "nothing stored before the kill");
    let Srv { http: mut b_http, grpc: b_grpc } = b;
    b_http.child.kill().unwrap(); // SIGKILL
    b_http.child.wait().unwrap();
    let b_url = format!("http://{b_grpc}");

    // its agents move to a: the controller reassigns them once b's heartbeat is stale
    let agents = poll(150, || {
        let ags = a.agents();
        let ok = ags.values().all(|g| g["assigned_ingester"] == a.grpc_url() && g["current_ingester"] == a.grpc_url());
        (ok, ags)
    });
    for (id, g) in &agents {
        assert_eq!(g["assigned_ingester"], a.grpc_url(), "{id}: {g}");
        assert_eq!(g["current_ingester"], a.grpc_url(), "{id}: {g}");
    }
    let ings = a.http.get("/v1/ingesters").json();
    let gone = ings["data"].as_array().unwrap().iter().find(|i| i["grpc"] == b_url.as_str()).cloned();
    assert_eq!(gone.map(|g| g["status"].clone()), Some("gone".into()), "{ings}");

    let status = loadgen.wait().unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary.recv().unwrap()).unwrap();
    eprintln!("loadgen: {summary}");
    assert!(status.success());
    let sent = summary["rows_sent"].as_u64().unwrap();
    let acked = summary["rows_acked"].as_u64().unwrap();
    assert_eq!(acked, sent, "the remaining ingester took everything: {summary}");
    for g in summary["per_agent"].as_array().unwrap() {
        let id = g["agent_id"].as_str().unwrap();
        assert_eq!(g["ingesters"][0], a.grpc_url(), "{g}");
        assert_eq!(g["config_version"], version, "{g}");
        if moved.iter().any(|m| m == id) {
            assert!(g["reassignments"].as_u64().unwrap() >= 2, "{id} moved: {g}");
        }
    }

    // every acknowledged batch is in the store (rows written by b but not acknowledged before
    // it died may be stored twice: allowed and reported)
    let v = a.http.sql("SELECT flow_id FROM l4_flow_log");
    let rows = v["rows"].as_array().unwrap();
    let stored: HashSet<u64> = rows.iter().map(|r| r["flow_id"].as_u64().unwrap()).collect();
    let mut checked = 0u64;
    for line in std::fs::read_to_string(&acked_file).unwrap().lines() {
        let f: Vec<u64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        let (first, n) = (f[1], f[2]);
        for id in first..first + n {
            assert!(stored.contains(&id), "acknowledged flow {id:#x} is not in the store");
        }
        checked += n;
    }
    assert_eq!(checked, acked);
    assert_eq!(stored.len() as u64, sent, "every row sent is stored");
    eprintln!(
        "kill -9: {stored_before} rows stored before, {acked} acknowledged, all present; {} stored twice; agents moved: {moved:?}",
        rows.len() - stored.len()
    );

    // the agents stopped syncing: lost after 3 missed heartbeats
    let agents = poll(100, || {
        let ags = a.agents();
        (ags.values().all(|g| g["status"] == "lost"), ags)
    });
    assert!(agents.values().all(|g| g["status"] == "lost"), "{agents:?}");

    // a clean shutdown (SIGINT) removes the heartbeat file
    let pid = a.http.child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let Srv { http: mut a_http, .. } = a;
    let _ = a_http.child.wait();
    assert!(!dir.path().join("_cluster/ingesters/alpha.json").exists());
    assert!(dir.path().join("_cluster/ingesters/beta.json").exists(), "kill -9 leaves b's file (stale)");
}

/// `deepflow-agent run --interface lo --controller URL`: a config version that switches HTTP
/// off applies while the agent captures: HTTP requests before it are stored, those after it
/// (once the agent reports the version) are not. Skips when libpcap cannot capture on `lo`.
#[test]
fn live_agent_applies_a_config_change_while_capturing() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), None, &["--agent-heartbeat-ms", "200"]);
    let port = srv.http.addr.rsplit(':').next().unwrap().to_string();
    let agent = Command::new(bin("deepflow-agent"))
        .args(["run", "--interface", "lo", "--filter", &format!("tcp port {port}"), "--duration", "8"])
        .args(["--controller", &srv.http_url(), "--agent-id", "live"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let registered = poll(100, || {
        let ags = srv.agents();
        (ags.get("live").is_some_and(|a| a["config_version"] == 1), ags.contains_key("live"))
    });
    if !registered {
        let out = agent.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("ermission") || stderr.contains("Operation not permitted") {
            eprintln!("SKIP: cannot capture on lo here: {stderr}");
            return;
        }
        panic!("the agent did not register: {stderr}");
    }
    std::thread::sleep(Duration::from_millis(500)); // the capture is running
    for _ in 0..5 {
        assert_eq!(srv.http.get("/-/healthy").status, 200);
    }
    let r = srv.put_config("application/json", r#"{"default": {"l7_protocols": {"http": false}}}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let v2 = poll(100, || {
        let ags = srv.agents();
        let ok = ags["live"]["config_version"] == 2;
        (ok, ok)
    });
    assert!(v2, "the agent did not report config v2");
    for _ in 0..5 {
        assert_eq!(srv.http.get("/api/v1/status/buildinfo").status, 200);
    }
    let out = agent.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("config v2 applied: L7 protocols off: http"), "{stderr}");
    let before = srv.count("SELECT count(*) FROM l7_flow_log WHERE request_resource = '/-/healthy'");
    let after = srv.count("SELECT count(*) FROM l7_flow_log WHERE request_resource = '/api/v1/status/buildinfo'");
    assert!(before >= 5, "HTTP rows before the change: {before}");
    assert_eq!(after, 0, "HTTP rows after the change");
    let a = &srv.agents()["live"];
    assert_eq!(a["interfaces"][0], "lo", "{a}");
    assert_eq!(a["counters"]["rows_acked"], a["counters"]["rows_sent"], "{a}");
}
