#![allow(clippy::unwrap_used, clippy::panic)]
//! OTLP ingest with real clients: the OpenTelemetry Python SDK with its proto-http and
//! proto-grpc exporters (tests/otlp_emit.py, gzip, bearer token) sends spans, metrics and
//! logs; what it printed must be exactly what the SQL API (`l7_flow_log`, `log`) and the
//! Prometheus API return. Plus OTLP JSON and gzip protobuf posted by hand, a tonic gRPC client,
//! and bad input (garbage protobuf/JSON, wrong content type, no token, oversized bodies) that
//! gets a clean 4xx while the server stays up.
//!
//! The SDK test skips with a message when the Python packages are missing
//! (scripts/install-python-deps.sh installs them into /opt/deepflow-venv).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, agent, free_port, start, urlenc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

const TOKEN: &str = "otlp-s3cret";

fn python() -> Option<String> {
    let venv = std::env::var("DEEPFLOW_VENV").unwrap_or_else(|_| "/opt/deepflow-venv".into());
    let py = format!("{venv}/bin/python");
    let ok = Command::new(&py)
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, opentelemetry.exporter.otlp.proto.grpc",
        ])
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

struct Otlp {
    server: Server,
    http: u16,
    grpc: u16,
}

fn start_otlp(dir: &std::path::Path, extra: &[&str]) -> Otlp {
    let (http, grpc) = (free_port(), free_port());
    let (h, g) = (format!("127.0.0.1:{http}"), format!("127.0.0.1:{grpc}"));
    let mut args = vec!["--flush-ms", "100", "--otlp-http-listen", &h, "--otlp-grpc-listen", &g];
    args.extend_from_slice(extra);
    let server = start(dir, Some(TOKEN), &args);
    wait_port(http);
    wait_port(grpc);
    Otlp { server, http, grpc }
}

/// Rows of `sql` once there are `n` of them (bounded wait: the writer flushes every 100 ms).
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

fn prom_value(s: &Server, q: &str) -> (serde_json::Value, f64) {
    let t0 = Instant::now();
    loop {
        let r = s.get(&format!("/api/v1/query?query={}", urlenc(q)));
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        let v = r.json();
        let res = v["data"]["result"].as_array().cloned().unwrap_or_default();
        if res.len() == 1 {
            let val = res[0]["value"][1].as_str().unwrap().parse::<f64>().unwrap();
            return (res[0]["metric"].clone(), val);
        }
        assert!(res.len() < 2, "{q}: several series {res:?}");
        assert!(t0.elapsed() < Duration::from_secs(30), "{q}: no result: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of attribute `name` of a row with `attribute_names`/`attribute_values` (the SQL
/// API shows lists as `[a, b]` text).
fn attr<'a>(row: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    let list = |k: &str| -> Option<Vec<&'a str>> {
        let s = row.get(k)?.as_str()?;
        Some(s.strip_prefix('[')?.strip_suffix(']')?.split(", ").collect())
    };
    let i = list("attribute_names")?.iter().position(|n| *n == name)?;
    list("attribute_values")?.get(i).copied()
}

fn check_sdk_run(s: &Server, sent: &serde_json::Value) {
    let svc = sent["service"].as_str().unwrap();
    let tid = sent["trace_id"].as_str().unwrap();
    let eid = sent["error_trace_id"].as_str().unwrap();
    let hid = sent["http_trace_id"].as_str().unwrap();
    // exactly the four spans, once each
    let all = rows(
        s,
        &format!(
            "SELECT trace_id, span_id, parent_span_id, endpoint, tap_side, signal_source, type, response_status, \
             response_exception, rrt, attribute_names, attribute_values \
             FROM l7_flow_log WHERE trace_id IN ('{tid}', '{eid}', '{hid}') ORDER BY start_time"
        ),
        4,
    );
    for r in &all {
        assert_eq!(r["signal_source"], "otel", "{r}");
        assert_eq!(r["type"], "session", "{r}");
        assert_eq!(attr(r, "service.name"), Some(svc), "{r}");
        assert_eq!(attr(r, "service.instance.id"), Some(format!("{svc}-1").as_str()), "{r}");
        assert!(r["rrt"].as_u64().is_some(), "{r}");
    }
    let by_name = |n: &str| all.iter().find(|r| r["endpoint"] == n).unwrap_or_else(|| panic!("no {n} in {all:?}"));
    let parent = by_name("parent-op");
    assert_eq!(parent["trace_id"], tid);
    assert_eq!(parent["span_id"], sent["parent_span_id"]);
    assert!(parent["parent_span_id"].is_null(), "{parent}");
    assert_eq!(parent["tap_side"], "app");
    assert_eq!(parent["response_status"], "ok");
    let child = by_name("child-op");
    assert_eq!(child["trace_id"], tid);
    assert_eq!(child["span_id"], sent["child_span_id"]);
    assert_eq!(child["parent_span_id"], sent["parent_span_id"]);
    assert_eq!(child["tap_side"], "c-app");
    let err = by_name("error-op");
    assert_eq!(err["trace_id"], eid);
    assert_eq!(err["span_id"], sent["error_span_id"]);
    assert_eq!(err["response_status"], "server_error");
    assert_eq!(err["response_exception"], "boom");

    let http = rows(
        s,
        &format!(
            "SELECT span_id, l7_protocol, version, request_type, request_domain, request_resource, response_code, \
             response_status, ip_0, client_port, ip_1, server_port, tap_side, endpoint \
             FROM l7_flow_log WHERE trace_id = '{hid}'"
        ),
        1,
    );
    let h = &http[0];
    let expect = serde_json::json!({
        "span_id": sent["http_span_id"], "l7_protocol": "http", "version": "1.1", "request_type": "GET",
        "request_domain": "shop.local", "request_resource": "/items/7?full=1", "response_code": 200,
        "response_status": "ok", "ip_0": "10.1.2.3", "client_port": 40000, "ip_1": "127.0.0.1",
        "server_port": 8080, "tap_side": "s-app", "endpoint": "GET /items/{id}",
    });
    assert_eq!(h, &expect);

    // logs: the WARNING inside parent-op carries its trace context, the ERROR none
    let logs = rows(
        s,
        &format!(
            "SELECT severity_number, body, trace_id, span_id, service_name, signal_source, \
             attribute_names, attribute_values \
             FROM log WHERE service_name = '{svc}' ORDER BY time"
        ),
        2,
    );
    assert_eq!(logs[0]["severity_number"], 13, "{logs:?}");
    assert_eq!(logs[0]["body"], "disk almost full: 12 MB left");
    assert_eq!(logs[0]["trace_id"], tid);
    assert_eq!(logs[0]["span_id"], sent["parent_span_id"]);
    assert_eq!(attr(&logs[0], "disk"), Some("sda"), "{logs:?}");
    assert_eq!(logs[0]["signal_source"], "otel");
    assert_eq!(logs[1]["severity_number"], 17, "{logs:?}");
    assert_eq!(logs[1]["body"], "payment failed");
    assert!(logs[1]["trace_id"].is_null(), "{logs:?}");

    // metrics through PromQL
    let (labels, v) = prom_value(s, &format!("otlp_test_requests_total{{job=\"{svc}\"}}"));
    assert_eq!(v, 7.0);
    assert_eq!(labels["route"], "/a");
    assert_eq!(labels["service_name"], svc);
    assert_eq!(labels["instance"], format!("{svc}-1"));
    assert_eq!(prom_value(s, &format!("otlp_test_latency_count{{job=\"{svc}\"}}")).1, 3.0);
    assert!((prom_value(s, &format!("otlp_test_latency_sum{{job=\"{svc}\"}}")).1 - 127.3).abs() < 1e-9);
    for (le, n) in [("0", 0.0), ("5", 1.0), ("10", 2.0), ("100", 2.0), ("250", 3.0), ("+Inf", 3.0)] {
        let q = format!("otlp_test_latency_bucket{{job=\"{svc}\",le=\"{le}\"}}");
        assert_eq!(prom_value(s, &q).1, n, "{q}");
    }
    let q = format!("sum by (job) (otlp_test_requests_total{{job=\"{svc}\"}}) * 2");
    assert_eq!(prom_value(s, &q).1, 14.0);
}

#[test]
fn python_sdk_over_http_and_grpc() {
    let Some(py) = python() else {
        eprintln!(
            "SKIP python_sdk_over_http_and_grpc: the OpenTelemetry Python SDK and OTLP exporters are not installed \
             in /opt/deepflow-venv (run scripts/install-python-deps.sh)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let o = start_otlp(dir.path(), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp_emit.py");
    for (transport, endpoint) in
        [("http", format!("http://127.0.0.1:{}", o.http)), ("grpc", format!("127.0.0.1:{}", o.grpc))]
    {
        let svc = format!("otlp-test-{transport}");
        let out = Command::new(&py)
            .args([script, "--transport", transport, "--endpoint", &endpoint, "--service", &svc, "--token", TOKEN])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{transport}: {}\n{stdout}\n{stderr}", out.status);
        let sent: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        eprintln!("{transport} sent {sent}");
        assert_eq!(sent["failures"], 0);
        check_sdk_run(&o.server, &sent);
    }
    // the two runs did not mix
    let v = o
        .server
        .sql("SELECT count(*) AS n, count(DISTINCT trace_id) AS t FROM l7_flow_log WHERE signal_source = 'otel'");
    assert_eq!(v["rows"][0]["n"], 8, "{v}");
    assert_eq!(v["rows"][0]["t"], 6, "{v}");
}

fn otlp_post(port: u16, path: &str, ct: &str, headers: &[(&str, &str)], body: &[u8]) -> common::Resp {
    let mut req = agent().post(format!("http://127.0.0.1:{port}{path}")).header("Content-Type", ct);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.send(body).unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = r.body_mut().read_to_vec().unwrap();
    common::Resp { status, content_type, body }
}

const AUTH: (&str, &str) = ("Authorization", "Bearer otlp-s3cret");

fn json_span(trace_id: &str, name: &str) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"json-svc"}}}}]}},
        "scopeSpans":[{{"scope":{{"name":"hand"}},"spans":[{{"traceId":"{trace_id}","spanId":"00f067aa0ba902b7",
        "name":"{name}","kind":3,"startTimeUnixNano":"1714557600000000000","endTimeUnixNano":"1714557600004000000",
        "attributes":[{{"key":"rpc.system","value":{{"stringValue":"grpc"}}}},{{"key":"rpc.service","value":{{"stringValue":"shop.Cart"}}}},
        {{"key":"rpc.method","value":{{"stringValue":"Add"}}}},{{"key":"rpc.grpc.status_code","value":{{"intValue":"0"}}}}],
        "status":{{}}}}]}}]}}]}}"#
    )
}

fn pb_span(trace: u8, name: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue("pb-svc".into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![trace; 16],
                    span_id: vec![7; 8],
                    name: name.into(),
                    kind: 2,
                    start_time_unix_nano: 1_714_557_600_000_000_000,
                    end_time_unix_nano: 1_714_557_600_001_000_000,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn count(s: &Server, where_: &str) -> u64 {
    s.sql(&format!("SELECT count(*) AS n FROM l7_flow_log WHERE {where_}"))["rows"][0]["n"].as_u64().unwrap()
}

#[test]
fn json_gzip_grpc_client_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let o = start_otlp(dir.path(), &["--max-body", "65536"]);
    let s = &o.server;

    // no token: 401, nothing stored (HTTP and gRPC)
    let tid_noauth = "11111111111111111111111111111111";
    let r = otlp_post(o.http, "/v1/traces", "application/json", &[], json_span(tid_noauth, "no-auth").as_bytes());
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("bearer token"), "{}", r.text());
    let r = otlp_post(
        o.http,
        "/v1/traces",
        "application/json",
        &[("Authorization", "Bearer wrong")],
        json_span(tid_noauth, "bad-auth").as_bytes(),
    );
    assert_eq!(r.status, 401);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let grpc_url = format!("http://127.0.0.1:{}", o.grpc);
    let code = rt.block_on(async {
        let mut c = TraceServiceClient::connect(grpc_url.clone()).await.unwrap();
        c.export(pb_span(0x22, "grpc-no-auth")).await.unwrap_err().code()
    });
    assert_eq!(code, tonic::Code::Unauthenticated);

    // OTLP JSON
    let tid_json = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = otlp_post(o.http, "/v1/traces", "application/json", &[AUTH], json_span(tid_json, "json-op").as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type, "application/json");
    assert_eq!(r.text(), "{}");
    // gzip protobuf
    let r = otlp_post(
        o.http,
        "/v1/traces",
        "application/x-protobuf",
        &[AUTH, ("Content-Encoding", "gzip")],
        &gzip(&pb_span(0x33, "gzip-op").encode_to_vec()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type, "application/x-protobuf");
    // tonic gRPC client with the token
    rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(grpc_url.clone()).unwrap().connect().await.unwrap();
        let mut c = TraceServiceClient::with_interceptor(ch, |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", "Bearer otlp-s3cret".parse().unwrap());
            Ok(req)
        });
        c.export(pb_span(0x44, "grpc-op")).await.unwrap();
        // over the 64 KiB limit
        let mut big = pb_span(0x55, "grpc-big");
        big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(100_000);
        let st = c.export(big).await.unwrap_err();
        assert!(
            matches!(st.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted | tonic::Code::Internal),
            "{st:?}"
        );
    });

    let got = rows(
        s,
        "SELECT trace_id, endpoint, l7_protocol, request_resource, rrt, tap_side FROM l7_flow_log \
         WHERE signal_source = 'otel' ORDER BY endpoint",
        3,
    );
    assert_eq!(
        serde_json::Value::from(got),
        serde_json::json!([
            // (null columns are left out of the rows)
            {"trace_id": "44444444444444444444444444444444", "endpoint": "grpc-op", "l7_protocol": "unknown", "rrt": 1000, "tap_side": "s-app"},
            {"trace_id": "33333333333333333333333333333333", "endpoint": "gzip-op", "l7_protocol": "unknown", "rrt": 1000, "tap_side": "s-app"},
            {"trace_id": tid_json, "endpoint": "json-op", "l7_protocol": "grpc", "request_resource": "shop.Cart/Add", "rrt": 4000, "tap_side": "c-app"},
        ])
    );

    // bad input: clean 4xx with a message
    let bad: Vec<(&str, &str, Vec<(&str, &str)>, Vec<u8>, u16, &str)> = vec![
        (
            "/v1/traces",
            "application/x-protobuf",
            vec![AUTH],
            b"\xff\xff\xff\xff\x0f garbage".to_vec(),
            400,
            "invalid OTLP protobuf",
        ),
        ("/v1/metrics", "application/x-protobuf", vec![AUTH], vec![0x0a, 0x20, 1, 2], 400, "invalid OTLP protobuf"),
        ("/v1/logs", "application/json", vec![AUTH], b"{\"resourceLogs\": [".to_vec(), 400, "invalid OTLP JSON"),
        (
            "/v1/traces",
            "application/json",
            vec![AUTH],
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}"#.to_vec(),
            400,
            "invalid OTLP JSON",
        ),
        ("/v1/traces", "text/plain", vec![AUTH], b"hello".to_vec(), 415, "unsupported Content-Type"),
        (
            "/v1/traces",
            "application/x-protobuf",
            vec![AUTH, ("Content-Encoding", "br")],
            b"x".to_vec(),
            415,
            "Content-Encoding",
        ),
        (
            "/v1/traces",
            "application/x-protobuf",
            vec![AUTH, ("Content-Encoding", "gzip")],
            b"not gzip".to_vec(),
            400,
            "gzip",
        ),
        (
            "/v1/traces",
            "application/x-protobuf",
            vec![AUTH, ("Content-Encoding", "gzip")],
            gzip(&vec![0u8; 1 << 20]),
            413,
            "limit",
        ),
        ("/v1/traces", "application/x-protobuf", vec![AUTH], vec![0u8; 100_000], 413, ""),
    ];
    for (path, ct, h, body, status, msg) in bad {
        let r = otlp_post(o.http, path, ct, &h, &body);
        assert_eq!(r.status, status, "{path} {ct} {h:?}: {}", r.text());
        assert!(r.text().contains(msg), "{path} {ct}: {:?} lacks {msg:?}", r.text());
    }
    // protobuf errors are a google.rpc.Status message with the text in field 2
    let r = otlp_post(o.http, "/v1/traces", "application/x-protobuf", &[AUTH], b"\xff\xff");
    assert_eq!((r.status, r.content_type.as_str()), (400, "application/x-protobuf"));
    assert_eq!(r.body[0], 0x08); // field 1 (code), varint
    assert_eq!(r.body[1], 3); // INVALID_ARGUMENT

    // garbage protobuf over gRPC (raw bytes from Python's grpcio): an error status, not a crash
    if let Some(py) = python() {
        let script = r#"
import sys, grpc
ch = grpc.insecure_channel(sys.argv[1])
call = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
try:
    call(b"\xff\xff\xff\xff\x0f garbage", metadata=[("authorization", "Bearer otlp-s3cret")], timeout=10)
    print("OK")
except grpc.RpcError as e:
    print(e.code().name, e.details())
"#;
        let out = Command::new(py).args(["-c", script, &format!("127.0.0.1:{}", o.grpc)]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("grpc garbage: {text} {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.starts_with("INTERNAL") || text.starts_with("INVALID_ARGUMENT"), "{text}");
        assert!(text.contains("decode"), "{text}");
    }

    // still up, still writing, and the refused requests stored nothing
    assert_eq!(s.get("/-/healthy").status, 200);
    let r =
        otlp_post(o.http, "/v1/traces", "application/json", &[AUTH], json_span(&"6".repeat(32), "after").as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    rows(s, "SELECT endpoint FROM l7_flow_log WHERE endpoint = 'after'", 1);
    assert_eq!(count(s, &format!("trace_id = '{tid_noauth}'")), 0);
    assert_eq!(count(s, "trace_id IN ('22222222222222222222222222222222', '55555555555555555555555555555555')"), 0);
    assert_eq!(count(s, "signal_source = 'otel'"), 4);
}
