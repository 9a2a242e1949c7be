#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
//! SkyWalking ingest with the real SkyWalking Python agent (apache-skywalking 1.2.0): a frontend
//! process calls an instrumented `http.server` backend (two processes, so the backend's Entry
//! span references the frontend's Exit span across segments); both agents report to the
//! server over HTTP (`/v3/segment`) or gRPC (`TraceSegmentReportService/collect`), and the rows
//! are checked through `POST /v1/query`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Server;

fn python() -> Option<PathBuf> {
    let venv = std::env::var("DEEPFLOW_VENV").unwrap_or_else(|_| "/opt/deepflow-venv".into());
    let py = PathBuf::from(venv).join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import skywalking.agent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: apache-skywalking is not installed in the venv (run scripts/install-python-deps.sh)");
    }
    ok.then_some(py)
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/apm").join(name)
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs backend + frontend against `collector` and returns when the frontend exited.
fn drive(py: &PathBuf, collector: &str, protocol: &str, prefix: &str) -> Kill {
    let mut backend = Command::new(py)
        .arg(script("sw_backend.py"))
        .args([collector, protocol, &format!("{prefix}-backend")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(backend.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("backend printed {line:?}"));
    let backend = Kill(backend);
    let out = Command::new(py)
        .arg(script("sw_frontend.py"))
        .args([collector, protocol, &format!("{prefix}-frontend"), &port.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "frontend failed: {stdout}");
    assert!(stdout.contains("hello fail-seen"), "frontend: {stdout}");
    backend
}

fn rows(s: &Server, sql: &str) -> Vec<serde_json::Value> {
    s.sql(sql)["rows"].as_array().cloned().unwrap_or_default()
}

/// Waits for the 5 spans (frontend: local + 2 exits; backend: 2 entries) and checks them.
fn check_trace(s: &Server, prefix: &str) {
    let filter = format!("signal_source = 'skywalking' AND CAST(attribute_values AS VARCHAR) LIKE '%{prefix}-%'");
    let n =
        s.wait_sql(&format!("SELECT count(*) AS n FROM l7_flow_log WHERE {filter}"), Duration::from_secs(60), |v| {
            v >= 5.0
        });
    assert_eq!(n, 5.0, "spans stored for {prefix}");
    let all = rows(
        s,
        &format!(
            "SELECT trace_id, span_id, parent_span_id, tap_side, l7_protocol, endpoint, request_type, \
             request_resource, response_code, response_status, signal_source, server_port, \
             attribute_names, attribute_values FROM l7_flow_log WHERE {filter}"
        ),
    );
    // lists come back as text (`[a, b]`); the values compared here contain no ", "
    let list = |v: &serde_json::Value| -> Vec<String> {
        let t = v.as_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
        t.split(", ").map(str::to_string).collect()
    };
    let attr = |r: &serde_json::Value, k: &str| -> Option<String> {
        let i = list(&r["attribute_names"]).iter().position(|n| n == k)?;
        list(&r["attribute_values"]).get(i).cloned()
    };
    let svc = |r: &serde_json::Value| attr(r, "app_service").unwrap_or_default();
    let find = |service: &str, side: &str, resource: &str| -> serde_json::Value {
        all.iter()
            .find(|r| svc(r) == service && r["tap_side"] == side && r["request_resource"] == resource)
            .unwrap_or_else(|| panic!("no {side} span {resource} of {service} in {all:#?}"))
            .clone()
    };
    let (fe, be) = (format!("{prefix}-frontend"), format!("{prefix}-backend"));
    let local = find(&fe, "app", "client-work");
    let exit_ok = find(&fe, "c-app", "/hello?x=1");
    let exit_fail = find(&fe, "c-app", "/fail");
    let entry_ok = find(&be, "s-app", "/hello?x=1");
    let entry_fail = find(&be, "s-app", "/fail");
    // one trace
    let trace = local["trace_id"].as_str().unwrap();
    assert!(!trace.is_empty());
    for r in [&exit_ok, &exit_fail, &entry_ok, &entry_fail] {
        assert_eq!(r["trace_id"], trace, "{r:#?}");
        assert_eq!(r["l7_protocol"], "http");
        assert_eq!(r["request_type"], "GET");
    }
    // parent links: local is the root; exits under it (same segment); entries under the exits
    // (cross-segment refs)
    assert!(local["parent_span_id"].is_null(), "{local:#?}");
    assert_eq!(exit_ok["parent_span_id"], local["span_id"]);
    assert_eq!(exit_fail["parent_span_id"], local["span_id"]);
    assert_eq!(entry_ok["parent_span_id"], exit_ok["span_id"]);
    assert_eq!(entry_fail["parent_span_id"], exit_fail["span_id"]);
    assert_ne!(
        entry_ok["span_id"].as_str().unwrap().rsplit_once('-').unwrap().0,
        exit_ok["span_id"].as_str().unwrap().rsplit_once('-').unwrap().0,
        "entry and exit are in different segments"
    );
    // endpoints and status
    assert_eq!(entry_ok["endpoint"], "/hello");
    assert_eq!(entry_ok["response_code"], 200);
    assert_eq!(entry_ok["response_status"], "ok");
    assert_eq!(entry_fail["response_code"], 500);
    assert_eq!(entry_fail["response_status"], "server_error");
    assert_eq!(exit_fail["response_status"], "server_error");
    assert_eq!(attr(&entry_ok, "parent_service").as_deref(), Some(fe.as_str()));
    assert_eq!(entry_ok["server_port"], exit_ok["server_port"]);
    // no dangling parents among SkyWalking rows
    let dangling = s.sql(
        "SELECT count(*) AS n FROM l7_flow_log WHERE signal_source = 'skywalking' AND parent_span_id IS NOT NULL \
         AND parent_span_id NOT IN (SELECT span_id FROM l7_flow_log WHERE signal_source = 'skywalking')",
    );
    assert_eq!(dangling["rows"][0]["n"], 0, "{dangling}");
}

#[test]
fn python_agent_over_http() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = common::start(dir.path(), None, &["--skywalking-grpc", ""]);
    let _backend = drive(&py, &s.addr, "http", "swhttp");
    check_trace(&s, "swhttp");
}

#[test]
fn python_agent_over_grpc() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let grpc = format!("127.0.0.1:{}", common::free_port());
    let s = common::start(dir.path(), None, &["--skywalking-grpc", &grpc]);
    let _backend = drive(&py, &grpc, "grpc", "swgrpc");
    check_trace(&s, "swgrpc");
}

#[test]
fn bad_segments_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::start(dir.path(), Some("sekret"), &["--skywalking-grpc", ""]);
    for (path, body) in [
        ("/v3/segments", &b"not json"[..]),
        ("/v3/segments", br#"[{"traceId":"t"}]"#),
        ("/v3/segment", br#"{"traceId":"t","traceSegmentId":"s","spans":[{"spanType":"Sideways"}]}"#),
        ("/v3/segment", b"42"),
    ] {
        let r = s.post(path, "application/json", None, body);
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains("skywalking"), "{}", r.text());
    }
    // a good segment without the token: 401, nothing stored
    let good = br#"{"traceId":"t1","traceSegmentId":"s1","service":"svc","spans":[{"spanId":0,"parentSpanId":-1,
        "startTime":1700000000000,"endTime":1700000000003,"operationName":"/x","spanType":"Entry","spanLayer":"Http"}]}"#;
    let r =
        common::agent().post(s.url("/v3/segment")).header("Content-Type", "application/json").send(&good[..]).unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // with the token: stored
    let r = s.post("/v3/segments", "application/json", None, &[&b"["[..], good, b"]"].concat());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["spans"], 1);
    let n = s.wait_sql(
        "SELECT count(*) AS n FROM l7_flow_log WHERE signal_source = 'skywalking'",
        Duration::from_secs(30),
        |v| v >= 1.0,
    );
    assert_eq!(n, 1.0);
    let row = &s.sql("SELECT trace_id, span_id, parent_span_id FROM l7_flow_log")["rows"][0];
    assert_eq!(row["trace_id"], "t1");
    assert_eq!(row["span_id"], "s1-0");
    assert!(row["parent_span_id"].is_null());
    assert_eq!(s.get("/-/healthy").status, 200);
}

/// gRPC `collectInSync` from a tonic client: token checks (`authentication` metadata as
/// SkyWalking agents send it, or a bearer token), a segment without ids is `INVALID_ARGUMENT`.
#[test]
fn grpc_token_and_bad_segment() {
    use deepflow_protocols::ingest::skywalking::proto;
    let dir = tempfile::tempdir().unwrap();
    let grpc = format!("127.0.0.1:{}", common::free_port());
    let s = common::start(dir.path(), Some("sekret"), &["--skywalking-grpc", &grpc]);
    let seg = |trace: &str| proto::SegmentObject {
        trace_id: trace.into(),
        trace_segment_id: format!("{trace}-seg"),
        service: "grpc-svc".into(),
        spans: vec![proto::SpanObject {
            span_id: 0,
            parent_span_id: -1,
            start_time: 1_700_000_000_000,
            end_time: 1_700_000_000_002,
            operation_name: "/rpc".into(),
            span_type: 0,
            span_layer: 3,
            ..Default::default()
        }],
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let codes: Vec<tonic::Code> = rt.block_on(async {
        // the gRPC listener starts just after the HTTP one: retry the connection for a while
        let ep = tonic::transport::Endpoint::from_shared(format!("http://{grpc}")).unwrap();
        let mut ch = None;
        for _ in 0..120 {
            match ep.connect().await {
                Ok(c) => {
                    ch = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        let ch = ch.expect("SkyWalking gRPC port never accepted a connection");
        let mut out = Vec::new();
        for (meta, segs) in [
            (None, vec![seg("t-noauth")]),
            (Some(("authentication", "wrong")), vec![seg("t-wrong")]),
            (Some(("authentication", "sekret")), vec![seg("t-ok")]),
            (Some(("authorization", "Bearer sekret")), vec![seg("t-bearer")]),
            (Some(("authentication", "sekret")), vec![seg("")]),
        ] {
            let mut g = tonic::client::Grpc::new(ch.clone());
            g.ready().await.unwrap();
            let mut req = tonic::Request::new(proto::SegmentCollection { segments: segs });
            if let Some((k, v)) = meta {
                req.metadata_mut().insert(k, v.parse().unwrap());
            }
            let codec = tonic_prost::ProstCodec::<proto::SegmentCollection, proto::Commands>::default();
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                "/skywalking.v3.TraceSegmentReportService/collectInSync",
            );
            let res: Result<tonic::Response<proto::Commands>, tonic::Status> = g.unary(req, path, codec).await;
            out.push(res.map(|_| tonic::Code::Ok).unwrap_or_else(|e| e.code()));
        }
        out
    });
    assert_eq!(
        codes,
        [
            tonic::Code::Unauthenticated,
            tonic::Code::Unauthenticated,
            tonic::Code::Ok,
            tonic::Code::Ok,
            tonic::Code::InvalidArgument
        ]
    );
    let n = s.wait_sql("SELECT count(*) AS n FROM l7_flow_log", Duration::from_secs(30), |v| v >= 2.0);
    assert_eq!(n, 2.0);
    let ids = s.sql("SELECT trace_id FROM l7_flow_log ORDER BY trace_id");
    assert_eq!(ids["rows"], serde_json::json!([{"trace_id": "t-bearer"}, {"trace_id": "t-ok"}]));
}
