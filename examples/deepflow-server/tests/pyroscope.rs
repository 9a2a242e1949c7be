#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
//! Pyroscope `/ingest`: the real pyroscope-io Python client (0.8.x, pprof uploads) profiling a
//! CPU-busy function, folded and pprof (gzip, multipart) uploads built here, and bad input.

mod common;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use deepflow_protocols::ingest::pyroscope::pprof;
use prost::Message as _;

fn python() -> Option<PathBuf> {
    let venv = std::env::var("DEEPFLOW_VENV").unwrap_or_else(|_| "/opt/deepflow-venv".into());
    let py = PathBuf::from(venv).join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import pyroscope"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: pyroscope-io is not installed in the venv (run scripts/install-python-deps.sh)");
    }
    ok.then_some(py)
}

#[test]
fn pyroscope_io_client() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = common::start(dir.path(), None, &["--skywalking-grpc", ""]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/apm/pyroscope_busy.py");
    let out = Command::new(&py)
        .arg(script)
        .args([&s.url(""), "deepflow-test.busy", "12"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let sql = "SELECT sum(value) AS v FROM profile WHERE app_service = 'deepflow-test.busy' \
               AND stack LIKE '%busy_work_deepflow%'";
    let v = s.wait_sql(sql, Duration::from_secs(30), |v| v > 0.0);
    assert!(v > 0.0, "no busy_work_deepflow samples: {}", s.sql("SELECT * FROM profile"));
    // the flame-graph query, and what the client sent with the samples
    let flame = s.sql(
        "SELECT stack, sum(value) AS v FROM profile WHERE app_service = 'deepflow-test.busy' \
         GROUP BY stack ORDER BY v DESC",
    );
    let top = &flame["rows"][0];
    assert!(top["stack"].as_str().unwrap().ends_with("busy_work_deepflow"), "{flame}");
    let meta = &s.sql(
        "SELECT profile_type, unit, spy_name, signal_source, label_names, label_values FROM profile \
         WHERE app_service = 'deepflow-test.busy' LIMIT 1",
    )["rows"][0];
    assert_eq!(meta["profile_type"], "cpu", "{meta}");
    assert_eq!(meta["spy_name"], "pyspy", "{meta}");
    assert_eq!(meta["signal_source"], "pyroscope", "{meta}");
    // lists come back as text in the JSON result
    assert_eq!(meta["label_names"], "[env]", "{meta}");
    assert_eq!(meta["label_values"], "[test]", "{meta}");
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// main -> handler -> (parse | render): 7 + 3 cpu samples of 10 ms.
fn profile() -> pprof::Profile {
    let strings = ["", "cpu", "nanoseconds", "main", "handler", "parse", "render", "route", "/a"];
    let line = |f: u64| pprof::Line { function_id: f, line: 1 };
    pprof::Profile {
        sample_type: vec![pprof::ValueType { r#type: 1, unit: 2 }],
        sample: vec![
            pprof::Sample { location_id: vec![3, 2, 1], value: vec![70_000_000], label: vec![] },
            pprof::Sample {
                location_id: vec![4, 2, 1],
                value: vec![30_000_000],
                label: vec![pprof::Label { key: 7, str: 8, ..Default::default() }],
            },
        ],
        location: (1..=4).map(|i| pprof::Location { id: i, line: vec![line(i)], ..Default::default() }).collect(),
        function: (1..=4).map(|i| pprof::Function { id: i, name: 2 + i as i64, ..Default::default() }).collect(),
        string_table: strings.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn folded_pprof_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::start(dir.path(), Some("tok"), &["--skywalking-grpc", "", "--max-body", "200000"]);
    let q = "/ingest?name=shop.cpu%7Benv%3Dprod%7D&from=1700000000&until=1700000010&sampleRate=100&spyName=gospy&format=folded";
    let r = s.post(q, "text/plain", None, b"main;serve;handle 40\nmain;gc 2\n");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["rows"], 2);
    // pprof: gzip body, and multipart with sample_type_config
    let body = gzip(&profile().encode_to_vec());
    let r =
        s.post("/ingest?name=api&from=1700000000&until=1700000010&format=pprof", "binary/octet-stream", None, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut mp = Vec::new();
    for (name, data) in [("profile", &body[..]), ("sample_type_config", br#"{"cpu":{"units":"nanoseconds"}}"#)] {
        mp.extend_from_slice(format!("--BND\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        mp.extend_from_slice(data);
        mp.extend_from_slice(b"\r\n");
    }
    mp.extend_from_slice(b"--BND--\r\n");
    let r = s.post("/ingest?name=api&from=1700000060&until=1700000070", "multipart/form-data; boundary=BND", None, &mp);
    assert_eq!(r.status, 200, "{}", r.text());
    let n = s.wait_sql("SELECT count(*) AS n FROM profile", Duration::from_secs(30), |v| v >= 6.0);
    assert_eq!(n, 6.0);
    let flame =
        s.sql("SELECT stack, sum(value) AS v FROM profile WHERE app_service = 'api' GROUP BY stack ORDER BY stack");
    assert_eq!(
        flame["rows"],
        serde_json::json!([
            {"stack": "main;handler;parse", "v": 140_000_000},
            {"stack": "main;handler;render", "v": 60_000_000},
        ]),
        "{flame}"
    );
    let shop = s.sql("SELECT stack, value, profile_type, unit, label_values FROM profile WHERE app_service = 'shop' ORDER BY value DESC");
    assert_eq!(shop["rows"][0]["stack"], "main;serve;handle");
    assert_eq!(shop["rows"][0]["value"], 40);
    assert_eq!(shop["rows"][0]["profile_type"], "cpu");
    assert_eq!(shop["rows"][0]["unit"], "samples");
    assert_eq!(shop["rows"][0]["label_values"], "[prod]");
    let labelled = s.sql(
        "SELECT count(*) AS n FROM profile WHERE app_service = 'api' AND CAST(label_values AS VARCHAR) LIKE '%/a%'",
    );
    assert_eq!(labelled["rows"][0]["n"], 2);

    // bad input: 400 with a message, nothing stored, server up
    for (path, ct, body) in [
        ("/ingest?name=x&format=folded", "text/plain", &b"main;work"[..]),
        ("/ingest?name=x", "text/plain", b"main;work lots"),
        ("/ingest?name=x&format=pprof", "binary/octet-stream", b"\x1f\x8b\x08garbage"),
        ("/ingest?name=x&format=pprof", "binary/octet-stream", b"\xff\xff\xff\xff"),
        ("/ingest?name=x&format=jfr", "binary/octet-stream", b"x"),
        ("/ingest?format=folded", "text/plain", b"a 1"),
        ("/ingest?name=x&from=yesterday", "text/plain", b"a 1"),
        ("/ingest?name=x", "multipart/form-data; boundary=zz", b"--zz\r\nno headers"),
    ] {
        let r = s.post(path, ct, None, body);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(r.text().contains("pyroscope"), "{}", r.text());
    }
    let r = common::agent().post(s.url("/ingest?name=x")).send(&b"a 1"[..]).unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // over --max-body: 413
    let big = "main;work 1\n".repeat(20_000);
    assert_eq!(s.post("/ingest?name=x", "text/plain", None, big.as_bytes()).status, 413);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(s.sql("SELECT count(*) AS n FROM profile")["rows"][0]["n"], 6);
    assert_eq!(s.get("/-/healthy").status, 200);
}
