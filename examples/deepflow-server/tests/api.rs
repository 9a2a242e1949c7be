#![allow(clippy::unwrap_used, clippy::panic)]
//! SQL over HTTP, auth, remote_write ingest and the Prometheus query API, against the real
//! server binary on loopback.

mod common;

use std::time::Duration;

use common::{Server, start, urlenc};
use deepflow_core::FlowInfo;
use deepflow_core::record::{L7FlowLog, L7Protocol, LogType, ResponseStatus};
use deepflow_store::arrow::ipc::reader::StreamReader;
use deepflow_store::prom::Sample;
use deepflow_store::prom::remote_write;
use deepflow_store::{Storage, StoreWriter, WriterOptions};

fn seed_l7(dir: &std::path::Path) {
    let storage = Storage::local(dir).unwrap();
    let mut w = StoreWriter::open(storage, WriterOptions::default()).unwrap();
    let flow = FlowInfo {
        client_ip: "10.0.0.1".parse().unwrap(),
        server_ip: "10.0.0.2".parse().unwrap(),
        client_port: 40000,
        server_port: 80,
        protocol: 6,
        flow_id: 1,
        tunnel: Default::default(),
        start_time_us: 0,
    };
    for i in 0..5u64 {
        let mut row = L7FlowLog::new(&flow, L7Protocol::Http1, LogType::Session);
        row.start_time = 1_714_557_600_000_000 + i;
        row.end_time = row.start_time + 1000;
        row.rrt = Some(1000 * (i + 1));
        row.response_status = ResponseStatus::Ok;
        w.append(row).unwrap();
    }
    w.close().unwrap();
}

#[test]
fn sql_json_arrow_bad_sql_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    seed_l7(dir.path());
    let srv = start(dir.path(), Some("s3cret"), &[]);
    let anon =
        Server { child: std::process::Command::new("true").spawn().unwrap(), addr: srv.addr.clone(), token: None };
    let wrong = Server {
        child: std::process::Command::new("true").spawn().unwrap(),
        addr: srv.addr.clone(),
        token: Some("nope".into()),
    };
    let q = "SELECT l7_protocol, count(*) AS n, sum(rrt) AS rrt FROM l7_flow_log GROUP BY l7_protocol";

    // no or wrong token: 401 with a message, and remote_write stores nothing
    for s in [&anon, &wrong] {
        let r = s.post("/v1/query", "application/x-www-form-urlencoded", None, format!("sql={}", urlenc(q)).as_bytes());
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.json()["errorType"], "unauthorized");
        let body =
            remote_write::encode(&[Sample { metric: "intruder".into(), labels: vec![], time_ms: 1, value: 1.0 }]);
        assert_eq!(s.post("/api/v1/write", "application/x-protobuf", None, &body).status, 401);
        assert_eq!(s.get("/api/v1/labels").status, 401);
    }

    // form field
    let r = srv.post("/v1/query", "application/x-www-form-urlencoded", None, format!("sql={}", urlenc(q)).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["row_count"], 1);
    assert_eq!(v["rows"][0]["l7_protocol"], "http");
    assert_eq!(v["rows"][0]["n"], 5);
    assert_eq!(v["rows"][0]["rrt"], 15000);
    assert_eq!(v["columns"][1]["name"], "n");

    // JSON body
    let v = srv.sql("SELECT count(*) AS n FROM l7_flow_log WHERE rrt > 2000");
    assert_eq!(v["rows"][0]["n"], 3);

    // Arrow IPC stream
    let r = srv.post(
        "/v1/query",
        "application/json",
        Some("application/vnd.apache.arrow.stream"),
        serde_json::json!({ "sql": q }).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/vnd.apache.arrow.stream");
    let reader = StreamReader::try_new(std::io::Cursor::new(r.body), None).unwrap();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    assert_eq!(batches[0].schema().field(0).name(), "l7_protocol");

    // bad SQL, unknown table, missing field, malformed JSON: 400 with a message; server stays up
    for body in [
        serde_json::json!({"sql": "SELEC nonsense"}).to_string(),
        serde_json::json!({"sql": "SELECT * FROM no_such_table"}).to_string(),
        serde_json::json!({"query": "SELECT 1"}).to_string(),
        "{not json".to_string(),
    ] {
        let r = srv.post("/v1/query", "application/json", None, body.as_bytes());
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e = r.json();
        assert_eq!(e["status"], "error");
        assert!(!e["error"].as_str().unwrap().is_empty());
    }
    let v = srv.sql("SELECT count(*) AS n FROM prometheus");
    assert_eq!(v["rows"][0]["n"], 0, "nothing stored by unauthenticated writes");
    drop(anon);
    drop(wrong);
}

fn rw(metric: &str, labels: &[(&str, &str)], t: i64, v: f64) -> Sample {
    let mut l: Vec<(String, String)> = labels.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    l.sort();
    Sample { metric: metric.into(), labels: l, time_ms: t, value: v }
}

#[test]
fn remote_write_then_promql_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), None, &["--flush-ms", "100"]);
    let t0: i64 = 1_714_557_600_000; // 2024-05-01T10:00:00Z
    let mut s = Vec::new();
    for i in 0..=20i64 {
        let t = t0 + i * 15_000;
        s.push(rw("http_requests_total", &[("job", "api"), ("code", "200")], t, (i * 30) as f64));
        s.push(rw("http_requests_total", &[("job", "api"), ("code", "500")], t, (i * 3) as f64));
        // a counter reset at i = 10
        s.push(rw("http_requests_total", &[("job", "web"), ("code", "200")], t, ((i % 10) * 10) as f64));
        for (le, c) in [("0.1", 1), ("0.5", 3), ("1", 4), ("+Inf", 4)] {
            s.push(rw("lat_bucket", &[("job", "api"), ("le", le)], t, (i * c) as f64));
        }
    }
    let r = srv.post("/api/v1/write", "application/x-protobuf", None, &remote_write::encode(&s));
    assert_eq!(r.status, 204, "{}", r.text());
    // malformed payloads: 400, server stays up
    for bad in [&b"garbage"[..], &snap::raw::Encoder::new().compress_vec(&[0x0a, 0xff, 0x01]).unwrap()[..]] {
        let r = srv.post("/api/v1/write", "application/x-protobuf", None, bad);
        assert_eq!(r.status, 400, "{}", r.text());
    }
    let n = srv.wait_sql("SELECT count(*) AS n FROM prometheus", Duration::from_secs(30), |n| n as usize == s.len());
    assert_eq!(n as usize, s.len());

    let t_end = t0 + 300_000;
    let q = |expr: &str| {
        let r = srv.get(&format!("/api/v1/query?query={}&time={}", urlenc(expr), t_end as f64 / 1000.0));
        assert_eq!(r.status, 200, "{expr}: {}", r.text());
        let v = r.json();
        assert_eq!(v["status"], "success");
        v["data"].clone()
    };
    let d = q("http_requests_total{code=\"200\"}");
    assert_eq!(d["resultType"], "vector");
    assert_eq!(d["result"].as_array().unwrap().len(), 2);
    let d = q("sum by (job) (rate(http_requests_total[1m]))");
    let res = d["result"].as_array().unwrap();
    let api = res.iter().find(|x| x["metric"]["job"] == "api").unwrap();
    // 30+3 per 15 s
    assert!((api["value"][1].as_str().unwrap().parse::<f64>().unwrap() - 33.0 / 15.0).abs() < 1e-9, "{api}");
    assert_eq!(api["value"][0], serde_json::json!(t_end / 1000));
    let d = q("increase(http_requests_total{job=\"web\"}[5m])");
    // 0..90 then reset to 0..? : i=0..20 with (i%10)*10 over 300 s, counter-aware
    let inc: f64 = d["result"][0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(inc > 150.0, "{inc}");
    let d = q("histogram_quantile(0.5, lat_bucket)");
    assert!((d["result"][0]["value"][1].as_str().unwrap().parse::<f64>().unwrap() - 0.3).abs() < 1e-9, "{d}");
    let d = q("absent(nope{job=\"x\"})");
    assert_eq!(d["result"][0]["metric"], serde_json::json!({"job": "x"}));
    let d = q("1 + 2");
    assert_eq!(d["resultType"], "scalar");
    assert_eq!(d["result"][1], "3");

    let r = srv.get(&format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=60",
        urlenc("sum(http_requests_total)"),
        t0 / 1000,
        t_end / 1000
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["data"]["resultType"], "matrix");
    assert_eq!(v["data"]["result"][0]["values"].as_array().unwrap().len(), 6);

    // metadata
    let v = srv
        .get(&format!(
            "/api/v1/series?match[]={}&start={}&end={}",
            urlenc("http_requests_total{job=\"api\"}"),
            t0 / 1000,
            t_end / 1000
        ))
        .json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["__name__"], "http_requests_total");
    let v = srv.get("/api/v1/labels").json();
    assert_eq!(v["data"], serde_json::json!(["__name__", "code", "job", "le"]));
    let v = srv.get("/api/v1/label/job/values").json();
    assert_eq!(v["data"], serde_json::json!(["api", "web"]));
    let v = srv.get("/api/v1/label/__name__/values").json();
    assert_eq!(v["data"], serde_json::json!(["http_requests_total", "lat_bucket"]));

    // bad PromQL: 400 with Prometheus's error JSON
    for bad in ["sum(rate(x[5m])", "http_requests_total{", "rate(http_requests_total)", "1 >"] {
        let r = srv.get(&format!("/api/v1/query?query={}&time={}", urlenc(bad), t_end / 1000));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        let e = r.json();
        assert_eq!(e["status"], "error");
        assert_eq!(e["errorType"], "bad_data");
    }
    let r = srv.get(&format!("/api/v1/query_range?query=up&start={}&end={}&step=0", t0 / 1000, t_end / 1000));
    assert_eq!(r.status, 400);
    // the server is still up
    assert_eq!(srv.get("/-/healthy").status, 200);
}
