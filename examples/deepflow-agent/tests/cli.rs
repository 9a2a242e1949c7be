//! The agent's command line on real captures and on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deepflow-agent")).args(args).output().expect("run deepflow-agent")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn demo() -> PathBuf {
    repo().join("examples/data/demo.pcap")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("deepflow-agent-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn missing_file_is_one_line_error_naming_it() {
    let out = agent(&["analyze", "/nonexistent/x.pcap"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/x.pcap"), "{err}");
}

#[test]
fn non_pcap_file_is_rejected_with_its_name() {
    let p = tmp("notes.txt");
    std::fs::write(&p, b"this is not a capture file at all\n").unwrap();
    let out = agent(&["analyze", p.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("notes.txt"), "{err}");
}

#[test]
fn truncated_last_record_keeps_the_rest_and_says_so() {
    let data = std::fs::read(demo()).unwrap();
    let p = tmp("cut.pcap");
    std::fs::write(&p, &data[..data.len() - 7]).unwrap();
    let out = agent(&["analyze", p.to_str().unwrap(), "--format", "jsonl"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("truncated") && err.contains("offset"), "{err}");
    assert!(!out.stdout.is_empty());
}

#[test]
fn jsonl_flows_use_the_record_contract_names() {
    let out = agent(&["analyze", demo().to_str().unwrap(), "--format", "jsonl", "--emit", "flows"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut n = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for k in ["ip_0", "ip_1", "client_port", "server_port", "protocol", "packet_tx", "byte_rx", "rtt", "close_type"]
        {
            assert!(v.get(k).is_some(), "missing {k} in {line}");
        }
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn sessions_and_messages_are_emitted() {
    for (emit, types) in [("sessions", &["session"][..]), ("messages", &["request", "response"][..])] {
        let out = agent(&["analyze", demo().to_str().unwrap(), "--format", "jsonl", "--emit", emit]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rows: Vec<serde_json::Value> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(!rows.is_empty(), "no {emit} rows");
        for t in types {
            assert!(rows.iter().any(|r| r["type"] == *t), "no row of type {t} with --emit {emit}");
        }
        assert!(rows.iter().any(|r| r["l7_protocol"] == "http"), "no http rows");
    }
}

#[test]
fn table_has_flows_red_and_summary() {
    let out = agent(&["analyze", demo().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("client -> server"));
    assert!(text.contains("L7 RED by endpoint"));
    assert!(text.contains("summary of"));
}

#[test]
fn bad_memory_setting_is_a_clear_error() {
    let out = agent(&["analyze", demo().to_str().unwrap(), "--max-memory", "lots"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-memory"));
}

#[test]
fn metrics_include_network_and_application_rows() {
    let out = agent(&["analyze", demo().to_str().unwrap(), "--format", "jsonl", "--emit", "metrics"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let net: Vec<_> = rows.iter().filter(|r| r.get("new_flow").is_some()).collect();
    let app: Vec<_> = rows.iter().filter(|r| r.get("rrt_p99").is_some()).collect();
    assert!(net.iter().any(|r| r["interval"] == 1) && net.iter().any(|r| r["interval"] == 60));
    assert!(app.iter().any(|r| r["interval"] == 1) && app.iter().any(|r| r["interval"] == 60));
    // Every HTTP request of the capture is counted once per interval.
    let http_1m: u64 = app
        .iter()
        .filter(|r| r["interval"] == 60 && r["l7_protocol"] == "http")
        .map(|r| r["request"].as_u64().unwrap())
        .sum();
    let http_1s: u64 = app
        .iter()
        .filter(|r| r["interval"] == 1 && r["l7_protocol"] == "http")
        .map(|r| r["request"].as_u64().unwrap())
        .sum();
    assert!(http_1m > 40);
    assert_eq!(http_1m, http_1s);
}
