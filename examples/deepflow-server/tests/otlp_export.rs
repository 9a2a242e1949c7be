#![allow(clippy::unwrap_used, clippy::panic)]
//! `deepflow-otlp-export`: spans stored by one deepflow-server (OTLP/HTTP protobuf and a
//! SkyWalking segment) are exported over OTLP/HTTP to a second deepflow-server's receiver; what
//! arrives has the same spans, names and kinds, and every parent id names a span of the same
//! trace that arrived too (spans whose parent was never stored, or that name themselves, arrive
//! as roots). Bad arguments, a bad `--where` and a refused request (wrong token) exit non-zero
//! with the reason.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Server, free_port, start};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

const TOKEN: &str = "export-s3cret";
const T1: &str = "0af7651916cd43dd8448eb211c80319c";
const T2: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SW_TRACE: &str = "sw.trace.1";
const INVENTORY: &str = "
pod_clusters: [{name: c1}]
pod_namespaces: [{name: shop, cluster: c1}]
pods:
  - {name: web-1, cluster: c1, namespace: shop, ips: [10.1.0.5]}
  - {name: cart-1, cluster: c1, namespace: shop, ips: [10.1.0.6]}
";

fn wait_port(port: u16) {
    for _ in 0..400 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("port {port} never opened");
}

fn start_otlp(dir: &std::path::Path, extra: &[&str]) -> (Server, u16) {
    let (http, sw) = (free_port(), free_port());
    let (h, w) = (format!("127.0.0.1:{http}"), format!("127.0.0.1:{sw}"));
    let mut args =
        vec!["--flush-ms", "100", "--otlp-http-listen", &h, "--otlp-grpc-listen", "off", "--skywalking-grpc", &w];
    args.extend_from_slice(extra);
    let s = start(dir, Some(TOKEN), &args);
    wait_port(http);
    wait_port(sw);
    (s, http)
}

/// Rows of `sql` once there are `n` of them (bounded wait).
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

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}

fn span(trace: &str, id: &str, parent: Option<&str>, name: &str, kind: SpanKind, t0: u64) -> Span {
    Span {
        trace_id: hex(trace),
        span_id: hex(id),
        parent_span_id: parent.map(hex).unwrap_or_default(),
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: t0,
        end_time_unix_nano: t0 + 2_000_000,
        ..Default::default()
    }
}

fn traces() -> ExportTraceServiceRequest {
    let t0 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let spans = vec![
        span(T1, "00f067aa0ba902b7", None, "root", SpanKind::Server, t0),
        span(T1, "1111111111111111", Some("00f067aa0ba902b7"), "child", SpanKind::Client, t0 + 1000),
        span(T1, "2222222222222222", Some("1111111111111111"), "grandchild", SpanKind::Internal, t0 + 2000),
        // parent never sent
        span(T1, "3333333333333333", Some("0102030405060708"), "orphan", SpanKind::Server, t0 + 3000),
        // its own parent
        span(T1, "4444444444444444", Some("4444444444444444"), "self", SpanKind::Internal, t0 + 4000),
        span(T2, "5555555555555555", None, "other-trace", SpanKind::Server, t0 + 5000),
    ];
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue("shop".into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn skywalking_segment() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    serde_json::json!([{
        "traceId": SW_TRACE, "traceSegmentId": "seg-a", "service": "cart", "serviceInstance": "cart-1",
        "spans": [
            {"spanId": 0, "parentSpanId": -1, "startTime": now, "endTime": now + 3, "operationName": "/cart",
             "peer": "10.1.0.5:41000", "spanType": "Entry", "spanLayer": "Http", "componentId": 7000,
             "isError": false, "tags": [{"key": "http.method", "value": "GET"}],
             "refs": [{"refType": 0, "traceId": SW_TRACE, "parentTraceSegmentId": "seg-up", "parentSpanId": 1,
                       "parentService": "web", "parentServiceInstance": "web-1", "parentEndpoint": "/",
                       "networkAddressUsedAtPeer": "10.1.0.6:8080"}]},
            {"spanId": 1, "parentSpanId": 0, "startTime": now, "endTime": now + 1, "operationName": "price",
             "spanType": "Local", "spanLayer": "Unknown", "componentId": 0, "isError": false, "tags": [], "refs": []}
        ]
    }])
    .to_string()
}

fn export(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deepflow-otlp-export")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const COLS: &str = "trace_id, span_id, parent_span_id, endpoint, tap_side, signal_source, attribute_names, \
                    attribute_values";

#[test]
fn export_to_a_second_server_keeps_valid_links() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A tags the SkyWalking spans' addresses (10.1.0.5 → 10.1.0.6) with an inventory
    let inv = da.path().join("inventory.yaml");
    std::fs::write(&inv, INVENTORY).unwrap();
    let data_a = da.path().join("data");
    let (a, a_port) = start_otlp(&data_a, &["--inventory", inv.to_str().unwrap()]);
    let (b, b_http) = start_otlp(db.path(), &[]);
    // what A stores: 6 OTLP spans and 2 SkyWalking spans
    let body = traces().encode_to_vec();
    let r = common::agent()
        .post(format!("http://127.0.0.1:{a_port}/v1/traces"))
        .header("Content-Type", "application/x-protobuf")
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .send(&body[..])
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = a.post("/v3/segments", "application/json", None, skywalking_segment().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let stored = rows(&a, &format!("SELECT {COLS} FROM l7_flow_log ORDER BY start_time"), 8);
    assert_eq!(stored.iter().filter(|r| r["signal_source"] == "otel").count(), 6);

    // bad arguments and a refused request: non-zero, with the reason
    let data_a = data_a.to_str().unwrap();
    let ep = format!("http://127.0.0.1:{b_http}");
    let (ok, _, err) = export(&["--data", data_a, "--endpoint", &ep, "--token", "wrong"]);
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, _, err) = export(&["--data", data_a, "--endpoint", &ep, "--where", "no_such_column = 1"]);
    assert!(!ok && err.contains("--where"), "{err}");
    let (ok, _, err) = export(&["--data", data_a, "--endpoint", "127.0.0.1:1"]);
    assert!(!ok && err.contains("--endpoint"), "{err}");
    let (ok, _, err) = export(&["--data", "/nonexistent/dir", "--endpoint", &ep]);
    assert!(!ok && err.contains("not a directory"), "{err}");
    assert_eq!(b.sql("SELECT count(*) AS n FROM l7_flow_log")["rows"][0]["n"], 0, "nothing arrived yet");

    // the export: batches of 3 spans, so links cross request boundaries
    let (ok, out, err) = export(&["--data", data_a, "--endpoint", &ep, "--token", TOKEN, "--batch", "3"]);
    assert!(ok, "{out}\n{err}");
    let st: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(st["spans"], 8, "{st}");
    assert_eq!(st["traces"], 3, "{st}");
    assert_eq!(st["requests"], 3, "{st}");
    assert_eq!(st["duplicates"], 0, "{st}");

    let got = rows(&b, &format!("SELECT {COLS} FROM l7_flow_log ORDER BY start_time"), 8);
    // every parent id names a span of the same trace that arrived
    let ids: HashSet<(String, String)> = got
        .iter()
        .map(|r| (r["trace_id"].as_str().unwrap().to_string(), r["span_id"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(ids.len(), 8, "span ids unique: {got:?}");
    for r in &got {
        assert_eq!(r["signal_source"], "otel", "{r}");
        if let Some(p) = r["parent_span_id"].as_str() {
            assert!(ids.contains(&(r["trace_id"].as_str().unwrap().to_string(), p.to_string())), "dangling: {r}");
            assert_ne!(r["span_id"], r["parent_span_id"], "{r}");
        }
    }
    let by: HashMap<&str, &serde_json::Value> = got.iter().map(|r| (r["endpoint"].as_str().unwrap(), r)).collect();
    let get = |n: &str| *by.get(n).unwrap_or_else(|| panic!("no span {n}: {got:?}"));
    // OTLP spans keep their ids, names, kinds and links
    assert_eq!(get("root")["trace_id"], T1);
    assert_eq!(get("root")["span_id"], "00f067aa0ba902b7");
    assert!(get("root")["parent_span_id"].is_null());
    assert_eq!(get("root")["tap_side"], "s-app");
    assert_eq!(get("child")["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(get("child")["tap_side"], "c-app");
    assert_eq!(get("grandchild")["parent_span_id"], "1111111111111111");
    assert_eq!(get("grandchild")["tap_side"], "app");
    assert!(get("orphan")["parent_span_id"].is_null(), "unknown parent → root");
    assert_eq!(get("orphan")["span_id"], "3333333333333333");
    assert!(get("self")["parent_span_id"].is_null(), "own parent → root");
    assert_eq!(get("other-trace")["trace_id"], T2);
    let attr = |r: &serde_json::Value, k: &str| -> Option<String> {
        let list = |c: &str| -> Vec<String> {
            let t = r[c].as_str().unwrap_or("");
            t.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .map(|t| t.split(", ").map(str::to_string).collect())
                .unwrap_or_default()
        };
        let i = list("attribute_names").iter().position(|n| n == k)?;
        list("attribute_values").get(i).cloned()
    };
    assert_eq!(attr(get("root"), "service.name").as_deref(), Some("shop"), "{}", get("root"));
    // SkyWalking: hashed ids, the Local span still under the Entry span, whose parent (in a
    // segment never stored) is dropped
    let (entry, local) = (get("/cart"), get("price"));
    assert_eq!(entry["trace_id"], local["trace_id"]);
    assert_eq!(entry["trace_id"].as_str().unwrap().len(), 32);
    assert_eq!(local["parent_span_id"], entry["span_id"]);
    assert!(entry["parent_span_id"].is_null(), "{entry}");
    assert_eq!(entry["tap_side"], "s-app");
    assert_eq!(attr(entry, "service.name").as_deref(), Some("cart"), "{entry}");
    assert_eq!(attr(entry, "net.peer.ip").as_deref(), Some("10.1.0.5"), "{entry}");
    // A's inventory tags of the span's own (server) side became resource attributes
    assert_eq!(attr(entry, "k8s.pod.name").as_deref(), Some("cart-1"), "{entry}");
    assert_eq!(attr(entry, "k8s.namespace.name").as_deref(), Some("shop"), "{entry}");
    assert_eq!(attr(entry, "k8s.cluster.name").as_deref(), Some("c1"), "{entry}");
    assert_eq!(attr(get("root"), "k8s.pod.name"), None, "untagged span: {}", get("root"));
    let roots = got.iter().filter(|r| r["parent_span_id"].is_null()).count();
    assert_eq!(st["roots"], roots, "{st}");
    assert_eq!(roots, 5, "root, orphan, self, other-trace, /cart");

    // --where selects: only the child of trace T1 → exported as a root
    let db2 = tempfile::tempdir().unwrap();
    let (c, c_http) = start_otlp(db2.path(), &[]);
    let ep2 = format!("http://127.0.0.1:{c_http}/v1/traces");
    let (ok, out, err) =
        export(&["--data", data_a, "--endpoint", &ep2, "--token", TOKEN, "--where", "endpoint = 'child'"]);
    assert!(ok, "{out}\n{err}");
    let one = rows(&c, &format!("SELECT {COLS} FROM l7_flow_log"), 1);
    assert_eq!(one[0]["span_id"], "1111111111111111");
    assert!(one[0]["parent_span_id"].is_null(), "{:?}", one[0]);
}

/// A listener that cannot be bound stops the server with the reason and a non-zero status, not
/// a panic (the state's own store runtime used to be dropped on a runtime worker thread).
#[test]
fn busy_otlp_port_is_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deepflow-server"))
        .args(["run", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--otlp-http-listen", &format!("127.0.0.1:{port}"), "--otlp-grpc-listen", "off"])
        .args(["--skywalking-grpc", "off"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("OTLP/http 127.0.0.1:{port}")) && err.contains("in use"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
