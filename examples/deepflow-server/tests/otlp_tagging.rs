#![allow(clippy::unwrap_used, clippy::panic)]
//! `--inventory`: spans ingested over OTLP (the OpenTelemetry Python SDK, tests/
//! otlp_tagged_emit.py) and SkyWalking (`/v3/segments`) get the inventory's resource ids; the
//! `l7_flow_log` view shows the names (`pod_0`, `service_1`, ...), `l7_flow_log_ids` integers
//! only; after a restart without `--inventory` the names still resolve from the dictionaries
//! saved under the data directory. A bad inventory stops the server with the reason.
//!
//! The SDK test skips with a message when the Python packages are missing
//! (scripts/install-python-deps.sh installs them into /opt/deepflow-venv).

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Server, free_port, start};

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
