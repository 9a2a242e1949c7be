#![allow(clippy::unwrap_used, clippy::panic)]
//! `--inventory`: spans ingested over OTLP (the OpenTelemetry Python SDK, tests/
//! otlp_tagged_emit.py) and SkyWalking (`/v3/segments`) get the inventory's resource ids; the
//! `l7_flow_log` view shows the names (`pod_0`, `service_1`, ...), `l7_flow_log_ids` integers
//! only; after a restart without `--inventory` the names still resolve from the dictionaries
//! saved under the data directory. A bad inventory stops the server with the reason.
//!
//! The rows about one resource are tagged too: OTLP metrics and logs (the Python SDK again,
//! tests/otlp_tagged_signals.py), remote_write samples (a body built with the crate's own
//! encoder, `deepflow_store::prom::remote_write::encode`, not a real Prometheus: the resolution
//! reads only the labels, which the encoder sends as Prometheus would) and Pyroscope `/ingest`
//! uploads (folded stacks, and the real pyroscope-io client with pod/namespace tags): the `log`, `prometheus` and `profile` views show the names (`pod`,
//! `service`, ...), their `*_ids` tables integers (0 when nothing matched), and PromQL adds
//! `df_pod`, `df_service`, ... to tagged series only. A real Prometheus (Debian `prometheus`,
//! scraping itself under three jobs) remote_writing to the server gets its series tagged by the
//! scrape address and by target labels; skipped with a message when it is not installed.
//!
//! The SDK tests skip with a message when the Python packages are missing
//! (scripts/install-python-deps.sh installs them into /opt/deepflow-venv).

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Server, free_port, start};
use deepflow_store::prom::{Sample, remote_write};

const TOKEN: &str = "tag-s3cret";

const INVENTORY: &str = r#"
vpcs: [{name: prod}]
pod_clusters: [{name: c1, vpc: prod}]
pod_namespaces: [{name: shop, cluster: c1}]
pod_groups:
  - {name: web, cluster: c1, namespace: shop, kind: Deployment}
  - {name: cart, cluster: c1, namespace: shop, kind: Deployment}
pods:
  - {name: web-1, cluster: c1, namespace: shop, group: web, group_kind: Deployment, ips: [10.1.0.5], labels: {app: web}}
  - {name: cart-1, cluster: c1, namespace: shop, group: cart, group_kind: Deployment, ips: [10.1.0.6], labels: {app: cart}}
services:
  - {name: web-svc, cluster: c1, namespace: shop, cluster_ips: [10.96.0.10], selector: {app: web}}
  - {name: cart-svc, cluster: c1, namespace: shop, cluster_ips: [10.96.0.11], selector: {app: cart}}
  - {name: db, cluster: c1, namespace: shop, cluster_ips: [10.96.0.20]}
  - {name: payments, cluster: c1, namespace: shop}
"#;

fn python() -> Option<String> {
    let venv = std::env::var("DEEPFLOW_VENV").unwrap_or_else(|_| "/opt/deepflow-venv".into());
    let py = format!("{venv}/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http"])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(py)
}

fn wait_port(port: u16) {
    for _ in 0..400 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("port {port} never opened");
}

/// Rows of `sql` once there are `n` of them (bounded wait: the writers flush every 100 ms / 1 s).
fn rows(s: &Server, sql: &str, n: usize) -> Vec<serde_json::Value> {
    let t0 = Instant::now();
    loop {
        let v = s.sql(sql);
        let r = v["rows"].as_array().cloned().unwrap_or_default();
        if r.len() >= n || t0.elapsed() > Duration::from_secs(30) {
            assert_eq!(r.len(), n, "{sql}: {r:?}");
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

const NAMES: &str = "pod_0, pod_group_0, service_0, pod_ns_0, pod_cluster_0, l3_epc_0, \
                     pod_1, pod_group_1, service_1, pod_ns_1, pod_cluster_1, l3_epc_1";

/// The name columns of the row of `trace_id`.
fn names_of(s: &Server, trace_id: &str) -> serde_json::Value {
    rows(s, &format!("SELECT {NAMES} FROM l7_flow_log WHERE trace_id = '{trace_id}'"), 1).remove(0)
}

/// Expected names: `(pod, workload, service)` per side, all in c1/shop/prod when any is set
/// (the SQL API leaves out null columns).
fn expect(client: Side, server: Side) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (side, (pod, group, svc)) in [(0, client), (1, server)] {
        let placed = pod.is_some() || group.is_some() || svc.is_some();
        let place = if placed { [Some("shop"), Some("c1"), Some("prod")] } else { [None; 3] };
        let cols = ["pod", "pod_group", "service", "pod_ns", "pod_cluster", "l3_epc"];
        for (col, v) in cols.iter().zip([pod, group, svc].into_iter().chain(place)) {
            if let Some(v) = v {
                m.insert(format!("{col}_{side}"), v.into());
            }
        }
    }
    serde_json::Value::Object(m)
}

type Side = (Option<&'static str>, Option<&'static str>, Option<&'static str>);

fn skywalking_segment(trace: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    serde_json::json!([{
        "traceId": trace, "traceSegmentId": format!("{trace}-seg"), "service": "cart-svc",
        "serviceInstance": "cart-1", "isSizeLimited": false,
        "spans": [
            {"spanId": 0, "parentSpanId": -1, "startTime": now, "endTime": now + 2, "operationName": "/cart",
             "peer": "10.1.0.5:41000", "spanType": "Entry", "spanLayer": "Http", "componentId": 7000,
             "isError": false, "logs": [], "tags": [{"key": "http.method", "value": "GET"}],
             "refs": [{"refType": 0, "traceId": trace, "parentTraceSegmentId": "up", "parentSpanId": 1,
                       "parentService": "web", "parentServiceInstance": "web-1", "parentEndpoint": "/",
                       "networkAddressUsedAtPeer": "10.1.0.6:8080"}]},
            {"spanId": 1, "parentSpanId": 0, "startTime": now, "endTime": now + 1, "operationName": "price",
             "peer": null, "spanType": "Local", "spanLayer": "Unknown", "componentId": 0, "isError": false,
             "logs": [], "tags": [], "refs": []}
        ]
    }])
    .to_string()
}

#[test]
fn ingested_spans_carry_inventory_tags() {
    let Some(py) = python() else {
        eprintln!(
            "SKIP ingested_spans_carry_inventory_tags: the OpenTelemetry Python SDK is not installed \
             (run scripts/install-python-deps.sh)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let inv = dir.path().join("inventory.yaml");
    std::fs::write(&inv, INVENTORY).unwrap();
    let (http, grpc, sw) = (free_port(), free_port(), free_port());
    let (h, g, w) = (format!("127.0.0.1:{http}"), format!("127.0.0.1:{grpc}"), format!("127.0.0.1:{sw}"));
    let inv_s = inv.to_str().unwrap();
    let s = start(
        &data,
        Some(TOKEN),
        &[
            "--flush-ms",
            "100",
            "--otlp-http-listen",
            &h,
            "--otlp-grpc-listen",
            &g,
            "--skywalking-grpc",
            &w,
            "--inventory",
            inv_s,
        ],
    );
    wait_port(http);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp_tagged_emit.py");
    let out = Command::new(&py)
        .args([script, "--endpoint", &format!("http://127.0.0.1:{http}"), "--token", TOKEN])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let sent: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let tid = |k: &str| sent[k].as_str().unwrap().to_string();

    let sw_trace = "5a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let r = s.post("/v3/segments", "application/json", None, skywalking_segment(sw_trace).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());

    let web = (Some("web-1"), Some("web"), Some("web-svc"));
    let cart = (Some("cart-1"), Some("cart"), Some("cart-svc"));
    let none = (None, None, None);
    // server span: both sides by pod IP (pods take the service whose selector matches them)
    assert_eq!(names_of(&s, &tid("server")), expect(web, cart));
    // client span to a ClusterIP: the server side is the service; the client (no address) is
    // "web" by service.name: the workload of that name
    assert_eq!(names_of(&s, &tid("client")), expect((None, Some("web"), None), (None, None, Some("db"))));
    // no address at all: the server side by service.name only
    assert_eq!(names_of(&s, &tid("by_name")), expect(none, (None, None, Some("payments"))));
    // an address and a name the inventory does not know: nothing
    assert_eq!(names_of(&s, &tid("unknown")), expect(none, none));

    // SkyWalking: the Entry span by its addresses, the Local span by the segment's service
    let sw_rows = rows(
        &s,
        &format!("SELECT tap_side, {NAMES} FROM l7_flow_log WHERE trace_id = '{sw_trace}' ORDER BY tap_side DESC"),
        2,
    );
    let mut entry = expect(web, cart);
    entry["tap_side"] = "s-app".into();
    assert_eq!(sw_rows[0], entry);
    let mut local = expect(none, (None, None, Some("cart-svc")));
    local["tap_side"] = "app".into();
    assert_eq!(sw_rows[1], local);

    // the stored rows hold ids only: integers, 0 where nothing matched
    let ids = rows(
        &s,
        "SELECT trace_id, pod_id_0, pod_id_1, service_id_0, service_id_1, pod_group_id_1, l3_epc_id_1 \
         FROM l7_flow_log_ids WHERE signal_source = 'otel' ORDER BY trace_id",
        4,
    );
    for r in &ids {
        for (k, v) in r.as_object().unwrap() {
            if k != "trace_id" {
                assert!(v.is_u64(), "{k} = {v} in {r}");
            }
        }
    }
    let server_ids = ids.iter().find(|r| r["trace_id"] == tid("server")).unwrap();
    assert!(server_ids["pod_id_0"].as_u64().unwrap() > 0 && server_ids["pod_id_1"].as_u64().unwrap() > 0);
    assert_ne!(server_ids["pod_id_0"], server_ids["pod_id_1"]);
    let unknown_ids = ids.iter().find(|r| r["trace_id"] == tid("unknown")).unwrap();
    assert_eq!(unknown_ids["pod_id_1"], 0);
    assert_eq!(unknown_ids["service_id_1"], 0);
    // the dictionary ids are the store's: pod_map has the names
    let m = rows(&s, &format!("SELECT name FROM pod_map WHERE id = {}", server_ids["pod_id_1"]), 1);
    assert_eq!(m[0]["name"], "cart-1");

    // restart without --inventory: the saved dictionaries still name the stored ids
    drop(s);
    assert!(data.join("tags/dictionaries.txt").is_file());
    let s =
        start(&data, Some(TOKEN), &["--otlp-http-listen", "off", "--otlp-grpc-listen", "off", "--skywalking-grpc", ""]);
    assert_eq!(names_of(&s, &tid("server")), expect(web, cart));
    assert_eq!(names_of(&s, &tid("by_name")), expect(none, (None, None, Some("payments"))));
}

#[test]
fn bad_inventory_stops_the_server_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    std::fs::write(&inv, "pods: [{name: p, cluster: nowhere, namespace: ns, ips: [10.0.0.1]}]\n").unwrap();
    for (file, want) in [(inv.clone(), "nowhere"), (dir.path().join("missing.yaml"), "missing.yaml")] {
        let out = Command::new(env!("CARGO_BIN_EXE_deepflow-server"))
            .args(["run", "--data"])
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0", "--otlp-http-listen", "off", "--otlp-grpc-listen", "off"])
            .args(["--skywalking-grpc", "", "--inventory"])
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("--inventory") && err.contains(want), "{err}");
    }
}

const NAMES1: &str = "pod, pod_group, service, pod_ns, pod_cluster, l3_epc";

/// Expected names of a one-resource row: `(pod, workload, service)`, all in c1/shop/prod when
/// any is set (null columns are left out by the SQL API).
fn expect1((pod, group, svc): Side) -> serde_json::Value {
    let v = expect((None, None, None), (pod, group, svc));
    serde_json::Value::Object(
        v.as_object().unwrap().iter().map(|(k, v)| (k.trim_end_matches("_1").to_string(), v.clone())).collect(),
    )
}

fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn ingested_metrics_logs_samples_profiles_carry_inventory_tags() {
    let Some(py) = python() else {
        eprintln!(
            "SKIP ingested_metrics_logs_samples_profiles_carry_inventory_tags: the OpenTelemetry Python SDK is \
             not installed (run scripts/install-python-deps.sh)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let inv = dir.path().join("inventory.yaml");
    std::fs::write(&inv, INVENTORY).unwrap();
    let http = free_port();
    let h = format!("127.0.0.1:{http}");
    let s = start(
        &data,
        Some(TOKEN),
        &[
            "--flush-ms",
            "100",
            "--otlp-http-listen",
            &h,
            "--otlp-grpc-listen",
            "off",
            "--skywalking-grpc",
            "",
            "--inventory",
            inv.to_str().unwrap(),
        ],
    );
    wait_port(http);

    // OTLP metrics and logs from the SDK
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp_tagged_signals.py");
    let out = Command::new(&py)
        .args([script, "--endpoint", &format!("http://127.0.0.1:{http}"), "--token", TOKEN])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // remote_write
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let rw = |case: &str, labels: &[(&str, &str)]| {
        let mut l: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        l.push(("case".into(), case.into()));
        l.sort();
        Sample { metric: "rw_tag".into(), labels: l, time_ms: now, value: 1.0 }
    };
    let samples = [
        rw("ip", &[("instance", "10.1.0.6:8080"), ("job", "shop")]),
        rw("pod", &[("pod", "web-1"), ("namespace", "shop"), ("instance", "web-1:9100")]),
        rw("service", &[("service", "db"), ("instance", "db:9187")]),
        rw("unknown", &[("instance", "192.0.2.9:80"), ("job", "nobody")]),
    ];
    let r = s.post("/api/v1/write", "application/x-protobuf", None, &remote_write::encode(&samples));
    assert_eq!(r.status, 204, "{}", r.text());

    // Pyroscope
    for (name, body) in [
        ("cartapp.cpu{pod=cart-1,namespace=shop}", "main;work 5\n"),
        ("ipapp.cpu{ip=10.1.0.6}", "main;work 5\n"),
        ("webapp.cpu{hostname=web-1}", "main;serve 3\n"),
        ("payments.cpu", "main;charge 2\n"),
        ("ghost.cpu{hostname=ghost}", "main;boo 1\n"),
    ] {
        let q = format!("/ingest?name={}&from=1700000000&until=1700000010&format=folded", urlenc(name));
        let r = s.post(&q, "text/plain", None, body.as_bytes());
        assert_eq!(r.status, 200, "{name}: {}", r.text());
    }

    let cart = (Some("cart-1"), Some("cart"), Some("cart-svc"));
    let web = (Some("web-1"), Some("web"), Some("web-svc"));
    let payments = (None, None, Some("payments"));
    let none = (None, None, None);
    let one = |sql: String| rows(&s, &sql, 1).remove(0);

    // OTLP logs: by pod name + namespace, by IP, by service name, by host name (a pod), nothing
    for (case, want) in [("pod", cart), ("ip", web), ("name", payments), ("host", web), ("unknown", none)] {
        let got = one(format!("SELECT {NAMES1} FROM log WHERE body = 'tagging {case}'"));
        assert_eq!(got, expect1(want), "log {case}");
    }
    // OTLP metrics (the same resources)
    for (case, want) in [("pod", cart), ("ip", web), ("name", payments), ("host", web), ("unknown", none)] {
        let got = one(format!(
            "SELECT DISTINCT {NAMES1} FROM prometheus WHERE metric_name = 'tag_test_requests_total' \
             AND labels LIKE '%\"case\":\"{case}\"%'"
        ));
        assert_eq!(got, expect1(want), "OTLP metric {case}");
    }
    // remote_write: instance IP, pod/namespace labels, service label, nothing
    let db = (None, None, Some("db"));
    for (case, want) in [("ip", cart), ("pod", web), ("service", db), ("unknown", none)] {
        let got = one(format!(
            "SELECT {NAMES1} FROM prometheus WHERE metric_name = 'rw_tag' AND labels LIKE '%\"case\":\"{case}\"%'"
        ));
        assert_eq!(got, expect1(want), "remote_write {case}");
    }
    // Pyroscope: pod/namespace labels, ip label, hostname (a pod), application name, nothing
    for (app, want) in [("cartapp", cart), ("ipapp", cart), ("webapp", web), ("payments", payments), ("ghost", none)] {
        let got = one(format!("SELECT DISTINCT {NAMES1} FROM profile WHERE app_service = '{app}'"));
        assert_eq!(got, expect1(want), "profile {app}");
    }

    // stored: integers only, 0 where nothing matched
    for (sql, n) in [
        ("SELECT pod_id, service_id, pod_ns_id FROM log_ids ORDER BY body", 5),
        ("SELECT pod_id, service_id, pod_ns_id FROM profile_ids ORDER BY app_service", 5),
        // the SDK may export its cumulative counter more than once: one row per series
        ("SELECT DISTINCT labels, pod_id, service_id, pod_ns_id FROM prometheus_ids", 9),
    ] {
        let r = rows(&s, sql, n);
        for row in &r {
            for (k, v) in row.as_object().unwrap().iter().filter(|(k, _)| k.ends_with("_id")) {
                assert!(v.is_u64(), "{sql}: {k} = {v} in {row}");
            }
        }
        assert!(r.iter().any(|x| x["pod_id"] == 0 && x["service_id"] == 0), "{sql}: {r:?}");
        assert!(r.iter().any(|x| x["pod_id"].as_u64().unwrap() > 0), "{sql}: {r:?}");
    }
    let unknown = one("SELECT pod_id, service_id FROM log_ids WHERE body = 'tagging unknown'".into());
    assert_eq!(unknown, serde_json::json!({"pod_id": 0, "service_id": 0}));

    // PromQL: tagged series get df_ labels with the names, the untagged one exactly its own
    let r = s.get(&format!("/api/v1/query?query={}", urlenc("rw_tag")));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let res = v["data"]["result"].as_array().unwrap();
    assert_eq!(res.len(), 4, "{v}");
    let metric = |case: &str| res.iter().find(|x| x["metric"]["case"] == case).unwrap()["metric"].clone();
    let ip = metric("ip");
    assert_eq!(ip["df_pod"], "cart-1", "{ip}");
    assert_eq!(ip["df_pod_ns"], "shop", "{ip}");
    assert_eq!(ip["df_service"], "cart-svc", "{ip}");
    assert_eq!(ip["instance"], "10.1.0.6:8080", "{ip}");
    assert_eq!(
        metric("unknown"),
        serde_json::json!({"__name__": "rw_tag", "case": "unknown", "instance": "192.0.2.9:80", "job": "nobody"})
    );
    let r = s.get(&format!("/api/v1/query?query={}", urlenc("sum by (df_pod) (tag_test_requests_total)")));
    assert_eq!(r.status, 200, "{}", r.text());
    let pods: Vec<String> =
        r.json()["data"]["result"].as_array().unwrap().iter().map(|x| x["metric"]["df_pod"].to_string()).collect();
    assert!(pods.contains(&"\"cart-1\"".to_string()) && pods.contains(&"\"web-1\"".to_string()), "{pods:?}");

    // the real pyroscope-io client (pprof uploads) with pod/namespace tags
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pyroscope_tagged.py");
    let ok = Command::new(&py).args(["-c", "import pyroscope"]).status().is_ok_and(|x| x.success());
    if ok {
        // the client samples its own busy loop: on a loaded machine a short run can end with no
        // sample and nothing to upload, so run it again (at most 3 times) until a profile is stored
        let sql = "SELECT count(*) AS n FROM profile WHERE app_service = 'tagged.busy'";
        for attempt in 1..=3 {
            let out = Command::new(&py).args([script, &s.url(""), "tagged.busy", "4", TOKEN]).output().unwrap();
            assert!(
                out.status.success(),
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let stored = (0..25).any(|_| {
                let n = s.sql(sql)["rows"][0]["n"].as_u64().unwrap_or(0);
                n > 0 || {
                    std::thread::sleep(Duration::from_millis(200));
                    false
                }
            });
            if stored {
                break;
            }
            eprintln!("pyroscope-io run {attempt}: no profile stored yet");
        }
        let got = one(format!("SELECT DISTINCT {NAMES1} FROM profile WHERE app_service = 'tagged.busy'"));
        assert_eq!(got, expect1(cart), "pyroscope-io");
    } else {
        eprintln!("SKIP pyroscope-io part: pyroscope-io is not installed (run scripts/install-python-deps.sh)");
    }

    // restart without --inventory: the saved dictionaries still name the stored ids
    drop(s);
    let s =
        start(&data, Some(TOKEN), &["--otlp-http-listen", "off", "--otlp-grpc-listen", "off", "--skywalking-grpc", ""]);
    let got = rows(&s, &format!("SELECT {NAMES1} FROM log WHERE body = 'tagging pod'"), 1).remove(0);
    assert_eq!(got, expect1(cart));
    let got = rows(&s, &format!("SELECT DISTINCT {NAMES1} FROM profile WHERE app_service = 'webapp'"), 1).remove(0);
    assert_eq!(got, expect1(web));
}

struct Prom(std::process::Child);

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn real_prometheus_remote_write_is_tagged() {
    let Some(bin) =
        ["/usr/bin/prometheus", "/usr/local/bin/prometheus"].into_iter().find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("SKIP real_prometheus_remote_write_is_tagged: prometheus is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    // a pod at the loopback address Prometheus scrapes itself on
    let inventory =
        INVENTORY.replace("services:", "  - {name: prom-0, cluster: c1, namespace: shop, ips: [127.0.0.1]}\nservices:");
    std::fs::write(&inv, inventory).unwrap();
    let s = start(
        &dir.path().join("data"),
        Some(TOKEN),
        &[
            "--flush-ms",
            "100",
            "--otlp-http-listen",
            "off",
            "--otlp-grpc-listen",
            "off",
            "--skywalking-grpc",
            "",
            "--inventory",
            inv.to_str().unwrap(),
        ],
    );
    let port = free_port();
    // job a: by the scrape address; job b: by target labels (localhost is not an address);
    // job c: nothing to go by
    let cfg = format!(
        r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: a
    static_configs: [{{targets: ['127.0.0.1:{port}']}}]
  - job_name: b
    static_configs: [{{targets: ['localhost:{port}'], labels: {{pod: web-1, namespace: shop}}}}]
  - job_name: c
    static_configs: [{{targets: ['localhost:{port}']}}]
remote_write:
  - url: http://{addr}/api/v1/write
    authorization: {{credentials: {TOKEN}}}
    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}
"#,
        addr = s.addr
    );
    let cfg_path = dir.path().join("prometheus.yml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let _prom = Prom(
        Command::new(bin)
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let prom0 = (Some("prom-0"), None, None);
    let web = (Some("web-1"), Some("web"), Some("web-svc"));
    for (job, want) in [("a", prom0), ("b", web), ("c", (None, None, None))] {
        let sql = format!(
            "SELECT DISTINCT pod, service, pod_ns, pod_cluster, l3_epc FROM prometheus \
             WHERE metric_name = 'up' AND labels LIKE '%\"job\":\"{job}\"%'"
        );
        let mut want = expect1(want);
        want.as_object_mut().unwrap().remove("pod_group");
        assert_eq!(rows(&s, &sql, 1).remove(0), want, "job {job}");
    }
    // PromQL: the tagged series carry df_ labels, the untagged one exactly Prometheus's labels
    let r = s.get(&format!("/api/v1/query?query={}", urlenc("up")));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let res = v["data"]["result"].as_array().unwrap();
    let metric = |job: &str| res.iter().find(|x| x["metric"]["job"] == job).unwrap()["metric"].clone();
    assert_eq!(metric("a")["df_pod"], "prom-0", "{v}");
    assert_eq!(metric("b")["df_pod"], "web-1", "{v}");
    assert_eq!(metric("b")["df_service"], "web-svc", "{v}");
    assert_eq!(
        metric("c"),
        serde_json::json!({"__name__": "up", "instance": format!("localhost:{port}"), "job": "c"}),
        "{v}"
    );
}
