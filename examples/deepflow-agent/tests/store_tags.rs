//! `analyze --format parquet --inventory FILE --out DIR` tags rows as they are written (ids only
//! in the files, dictionaries and labels in DIR/tags/), and `query DIR SQL` shows the names.
//! The capture is the bundled examples/data/demo.pcap (real traffic on 127.0.0.1).
#![cfg(feature = "store")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deepflow-agent")).args(args).output().expect("run deepflow-agent")
}

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/data/demo.pcap")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Every endpoint of demo.pcap is 127.0.0.1: one pod (behind a service) in a loopback subnet.
const INVENTORY: &str = r#"
regions: [{name: lab-region}]
vpcs: [{name: lab, region: lab-region}]
subnets: [{name: loopback, vpc: lab, cidr: 127.0.0.0/8}]
hosts: [{name: demo-host, vpc: lab, ips: [192.0.2.10], cmdb: {owner: sre-team}}]
pod_clusters: [{name: demo, vpc: lab}]
pod_namespaces: [{name: shop, cluster: demo}]
pod_nodes: [{name: node-1, cluster: demo, host: demo-host, ips: [192.0.2.10]}]
pod_groups: [{name: web, cluster: demo, namespace: shop, kind: Deployment}]
pods:
  - {name: web-0, cluster: demo, namespace: shop, node: node-1, group: web, group_kind: Deployment,
     ips: [127.0.0.1], labels: {app: web, tier: front}}
services:
  - {name: web-svc, cluster: demo, namespace: shop, cluster_ips: [10.96.0.10], selector: {app: web}}
"#;

fn n(csv: &str) -> i64 {
    csv.lines().nth(1).unwrap().trim().parse().unwrap()
}

#[test]
fn analyze_with_inventory_then_query_names() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    std::fs::write(&inv, INVENTORY).unwrap();
    let out_dir = dir.path().join("store");
    let (o, i, d) = (out_dir.to_str().unwrap(), inv.to_str().unwrap(), demo());
    let args =
        ["analyze", d.to_str().unwrap(), "--format", "parquet", "--out", o, "--inventory", i, "--emit", "sessions"];
    let out = agent(&args);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tagging with"), "{err}");
    assert!(out_dir.join("tags/dictionaries.txt").is_file());
    assert!(out_dir.join("tags/labels.parquet").is_file());

    let q = |sql: &str| ok(&agent(&["query", o, sql, "--format", "csv"]));
    let total = n(&q("SELECT count(*) FROM l7_flow_log"));
    assert!(total > 50, "demo.pcap has many sessions: {total}");
    // the names of both sides, through the views; the label from the labels table
    let csv = q("SELECT pod_0, pod_1, pod_ns_1, pod_cluster_1, pod_group_1, pod_node_1, host_1, service_1, \
                 subnet_1, l3_epc_1, region_1, label_value('pod', pod_id_1, 'app') AS app, count(*) AS n \
                 FROM l7_flow_log GROUP BY ALL");
    assert_eq!(
        csv,
        format!(
            "pod_0,pod_1,pod_ns_1,pod_cluster_1,pod_group_1,pod_node_1,host_1,service_1,subnet_1,l3_epc_1,region_1,app,n\n\
             web-0,web-0,shop,demo,web,node-1,demo-host,web-svc,loopback,lab,lab-region,web,{total}\n"
        )
    );
    // flows are tagged too
    let flows = n(&q("SELECT count(*) FROM l4_flow_log"));
    assert_eq!(n(&q("SELECT count(*) FROM l4_flow_log WHERE pod_0 = 'web-0' AND service_1 = 'web-svc'")), flows);
    // the files hold ids only: the stored columns are integers, names are not in the files
    let ids = q("SELECT DISTINCT pod_id_0, service_id_1 FROM l7_flow_log_ids");
    assert_eq!(ids, "pod_id_0,service_id_1\n1,1\n");
    for e in walk(&out_dir.join("table=l7_flow_log")) {
        let bytes = std::fs::read(&e).unwrap();
        assert!(!bytes.windows(7).any(|w| w == b"web-svc"), "{} holds a name", e.display());
    }
    // labels and dictionaries are tables too
    assert_eq!(q("SELECT key, value FROM labels WHERE kind = 'pod' ORDER BY key"), "key,value\napp,web\ntier,front\n");
    assert_eq!(q("SELECT value FROM labels WHERE kind = 'host' AND key = 'owner'"), "value\nsre-team\n");

    // a second run into the same directory keeps the same ids (dictionaries reused from DIR/tags)
    ok(&agent(&args));
    assert_eq!(n(&q("SELECT count(*) FROM l7_flow_log WHERE pod_1 = 'web-0'")), 2 * total);
    assert_eq!(q("SELECT DISTINCT pod_id_0 FROM l7_flow_log_ids"), "pod_id_0\n1\n");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { v.extend(walk(&p)) } else { v.push(p) }
    }
    v
}

#[test]
fn bad_inventory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("bad.yaml");
    std::fs::write(&inv, "subnets: [{name: x, vpc: nowhere, cidr: 10.0.0.0/33}]\n").unwrap();
    let o = dir.path().join("store");
    let out = agent(&[
        "analyze",
        demo().to_str().unwrap(),
        "--format",
        "parquet",
        "--out",
        o.to_str().unwrap(),
        "--inventory",
        inv.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml") && err.contains("10.0.0.0/33"), "{err}");
    // tagging is for the parquet output
    let out = agent(&["analyze", demo().to_str().unwrap(), "--inventory", inv.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--format parquet"));
}
