#![allow(clippy::unwrap_used, clippy::panic)]
//! PromQL over the native metrics tables: `deepflow-agent analyze examples/data/demo.pcap
//! --format parquet` writes real `network` and `application` rows into the server's data
//! directory, then the Prometheus API (`flow_metrics__<table>__<column>__<1s|1m>`) must give
//! exactly the sums that SQL (`POST /v1/query`) gives over the same tables, and the metadata
//! APIs must list the metric names and labels.
//!
//! The agent binary is taken from the same target directory as the server binary; the test
//! skips with a message when it has not been built (`cargo build --workspace` builds it).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use common::{Server, start, urlenc};

fn agent_bin() -> Option<PathBuf> {
    let exe = format!("deepflow-agent{}", std::env::consts::EXE_SUFFIX);
    let mut cands = vec![PathBuf::from(env!("CARGO_BIN_EXE_deepflow-server")).with_file_name(&exe)];
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        cands.push(PathBuf::from(t).join("debug").join(&exe));
    }
    cands.into_iter().find(|p| p.exists())
}

fn pcap() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/demo.pcap")
}

/// First row's column `c` of a SQL result, as a number.
fn num(v: &serde_json::Value, c: &str) -> f64 {
    v["rows"][0][c].as_f64().unwrap_or_else(|| panic!("{c} in {v}"))
}

/// SQL rows `k`, `n` as a map.
fn sql_map(srv: &Server, sql: &str) -> BTreeMap<String, f64> {
    let v = srv.sql(sql);
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["k"].as_str().map_or_else(|| r["k"].to_string(), str::to_string), r["n"].as_f64().unwrap()))
        .collect()
}

fn prom(srv: &Server, path: &str, params: &[(&str, String)]) -> serde_json::Value {
    let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", urlenc(v))).collect();
    let r = srv.get(&format!("{path}?{}", q.join("&")));
    assert_eq!(r.status, 200, "{path} {params:?}: {}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "success", "{v}");
    v["data"].clone()
}

/// Instant query: label `by` -> value.
fn instant(srv: &Server, q: &str, t: i64, by: &str) -> BTreeMap<String, f64> {
    let d = prom(srv, "/api/v1/query", &[("query", q.to_string()), ("time", t.to_string())]);
    assert_eq!(d["resultType"], "vector", "{d}");
    d["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let k = s["metric"][by].as_str().unwrap_or("").to_string();
            (k, s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
        })
        .collect()
}

/// `deepflow-agent analyze demo.pcap --format parquet --out DIR [--inventory FILE]`; `false`
/// (after a SKIP message) when the agent is not built.
fn analyze(test: &str, out_dir: &std::path::Path, inventory: Option<&std::path::Path>) -> bool {
    let Some(agent) = agent_bin() else {
        eprintln!("SKIP {test}: deepflow-agent is not built (run cargo build --workspace)");
        return false;
    };
    let mut cmd = Command::new(&agent);
    cmd.arg("analyze").arg(pcap()).args(["--format", "parquet", "--out"]).arg(out_dir);
    if let Some(i) = inventory {
        cmd.arg("--inventory").arg(i);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "agent: {}", String::from_utf8_lossy(&out.stderr));
    true
}

#[test]
fn native_metrics_match_sql() {
    let dir = tempfile::tempdir().unwrap();
    if !analyze("native_metrics_match_sql", dir.path(), None) {
        return;
    }
    let srv = start(dir.path(), None, &[]);

    // the data's span, per table and interval (window starts, seconds)
    let span = |table: &str, iv: u32| -> (i64, i64, f64) {
        let v = srv.sql(&format!(
            "SELECT CAST(to_unixtime(min(\"time\")) AS BIGINT) AS lo, CAST(to_unixtime(max(\"time\")) AS BIGINT) AS hi, \
             count(*) AS n FROM {table} WHERE \"interval\" = {iv}"
        ));
        (num(&v, "lo") as i64, num(&v, "hi") as i64, num(&v, "n"))
    };

    // --- application, 1 min: requests per l7_protocol ---
    let (lo, hi, n) = span("application", 60);
    assert!(n > 0.0, "demo.pcap gives 1 min application rows");
    let end = hi + 60; // the last window's end
    let range = end - lo; // (lo, end] holds every window end
    let want = sql_map(
        &srv,
        "SELECT l7_protocol AS k, CAST(sum(request) AS DOUBLE) AS n FROM application WHERE \"interval\" = 60 GROUP BY l7_protocol",
    );
    assert!(want.values().sum::<f64>() > 0.0, "{want:?}");
    let got = instant(
        &srv,
        &format!("sum by (l7_protocol) (increase(flow_metrics__application__request__1m[{range}s]))"),
        end,
        "l7_protocol",
    );
    assert_eq!(got, want, "increase over the whole span = SQL sum");
    // sum_over_time and delta are the same sums; rate = sum / range
    let got = instant(
        &srv,
        &format!("sum by (l7_protocol) (sum_over_time(flow_metrics__application__request__1m[{range}s]))"),
        end,
        "l7_protocol",
    );
    assert_eq!(got, want, "sum_over_time");
    let got = instant(
        &srv,
        &format!("sum by (l7_protocol) (rate(flow_metrics__application__request__1m[{range}s])) * {range}"),
        end,
        "l7_protocol",
    );
    for (k, v) in &want {
        assert!((got[k] - v).abs() < 1e-6 * v.max(1.0), "rate * range for {k}: {} vs {v}", got[k]);
    }

    // the plain selector at a window end is that window (SQL: time = end - 60)
    let want_w = sql_map(
        &srv,
        &format!(
            "SELECT l7_protocol AS k, CAST(sum(request) AS DOUBLE) AS n FROM application WHERE \"interval\" = 60 \
             AND \"time\" = to_timestamp({hi}) GROUP BY l7_protocol"
        ),
    );
    let got = instant(&srv, "sum by (l7_protocol) (flow_metrics__application__request__1m)", end, "l7_protocol");
    assert_eq!(got, want_w, "instant selector = the window that just ended");
    // ... and nothing once the window is more than an interval old (no 5 min lookback)
    let got = instant(&srv, "sum by (l7_protocol) (flow_metrics__application__request__1m)", end + 60, "l7_protocol");
    assert!(got.is_empty(), "{got:?}");

    // a range query with a 60 s step visits every window once: its points add up to the SQL sums
    let d = prom(
        &srv,
        "/api/v1/query_range",
        &[
            ("query", "sum by (l7_protocol) (flow_metrics__application__request__1m)".into()),
            ("start", (lo + 60).to_string()),
            ("end", end.to_string()),
            ("step", "60".into()),
        ],
    );
    assert_eq!(d["resultType"], "matrix");
    let mut got: BTreeMap<String, f64> = BTreeMap::new();
    for s in d["result"].as_array().unwrap() {
        let k = s["metric"]["l7_protocol"].as_str().unwrap_or("").to_string();
        let sum: f64 =
            s["values"].as_array().unwrap().iter().map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap()).sum();
        got.insert(k, sum);
    }
    assert_eq!(got, want, "range query points add up to the SQL sums");

    // label matchers (pushed down and not) and a name regex
    let (proto, _) = want.iter().find(|(_, v)| **v > 0.0).unwrap();
    let got = instant(
        &srv,
        &format!("sum(increase(flow_metrics__application__request__1m{{l7_protocol=\"{proto}\"}}[{range}s]))"),
        end,
        "l7_protocol",
    );
    assert_eq!(got.get(""), want.get(proto));
    let got = instant(
        &srv,
        &format!("sum(increase(flow_metrics__application__request__1m{{l7_protocol!=\"{proto}\"}}[{range}s]))"),
        end,
        "x",
    );
    let others: f64 = want.iter().filter(|(k, _)| *k != proto).map(|(_, v)| v).sum();
    assert_eq!(got.get("").copied().unwrap_or(0.0), others);
    let want_rr = sql_map(
        &srv,
        "SELECT 'x' AS k, CAST(sum(request) + sum(response) AS DOUBLE) AS n FROM application WHERE \"interval\" = 60",
    );
    let got = instant(
        &srv,
        &format!("sum(sum_over_time({{__name__=~\"flow_metrics__application__(request|response)__1m\"}}[{range}s]))"),
        end,
        "x",
    );
    assert_eq!(got.get(""), want_rr.get("x"), "name regex selects both metrics");

    // the response-time histogram as cumulative buckets: +Inf = every recorded value, and a
    // quantile within the recorded range
    let hist_n = num(
        &srv.sql(
            "SELECT CAST(sum(x) AS DOUBLE) AS n FROM (SELECT unnest(rrt_histogram) AS x FROM application \
             WHERE \"interval\" = 60)",
        ),
        "n",
    );
    assert!(hist_n > 0.0);
    let got = instant(
        &srv,
        &format!("sum(increase(flow_metrics__application__rrt_bucket__1m{{le=\"+Inf\"}}[{range}s]))"),
        end,
        "x",
    );
    assert_eq!(got.get(""), Some(&hist_n));
    let max = num(&srv.sql("SELECT CAST(max(rrt_max) AS DOUBLE) AS n FROM application WHERE \"interval\" = 60"), "n");
    let q = instant(
        &srv,
        &format!(
            "histogram_quantile(0.5, sum by (le) (increase(flow_metrics__application__rrt_bucket__1m[{range}s])))"
        ),
        end,
        "x",
    );
    let median = q[""];
    assert!(median > 0.0 && median <= max, "median {median}, max {max}");

    let (lo1, hi1, n1) = span("network", 1);
    assert!(n1 > 0.0, "demo.pcap gives 1 s network rows");
    let end1 = hi1 + 1;
    let r1 = end1 - lo1;
    let want = sql_map(
        &srv,
        "SELECT CAST(server_port AS VARCHAR) AS k, CAST(sum(byte_tx) AS DOUBLE) AS n FROM network WHERE \"interval\" = 1 \
         GROUP BY server_port",
    );
    let got = instant(
        &srv,
        &format!("sum by (server_port) (rate(flow_metrics__network__byte_tx__1s[{r1}s]))"),
        end1,
        "server_port",
    );
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (k, v) in &want {
        let bytes = got[k] * r1 as f64;
        assert!((bytes - v).abs() < 1e-6 * v.max(1.0), "rate * range for port {k}: {bytes} vs {v}");
    }
    let want_all =
        sql_map(&srv, "SELECT 'x' AS k, CAST(sum(byte_tx) AS DOUBLE) AS n FROM network WHERE \"interval\" = 1");
    let got = instant(&srv, &format!("sum(increase(flow_metrics__network__byte_tx__1s[{r1}s]))"), end1, "x");
    assert_eq!(got.get(""), want_all.get("x"), "increase of 1 s byte_tx = SQL sum");
    // 1 min network: RTT average = rtt_sum / rtt_count, as SQL computes it
    let (nlo, nhi, _) = span("network", 60);
    let nend = nhi + 60;
    let want_rtt = sql_map(
        &srv,
        "SELECT 'x' AS k, CAST(sum(rtt_sum) AS DOUBLE) / CAST(sum(rtt_count) AS DOUBLE) AS n FROM network WHERE \"interval\" = 60",
    );
    let got = instant(
        &srv,
        &format!(
            "sum(increase(flow_metrics__network__rtt_sum__1m[{r}s])) / sum(increase(flow_metrics__network__rtt_count__1m[{r}s]))",
            r = nend - nlo
        ),
        nend,
        "x",
    );
    assert!((got[""] - want_rtt["x"]).abs() < 1e-9, "{got:?} {want_rtt:?}");

    // --- metadata: what Grafana's metric browser asks ---
    let (s, e) = ((lo - 3600).to_string(), (end + 3600).to_string());
    let names = prom(&srv, "/api/v1/label/__name__/values", &[("start", s.clone()), ("end", e.clone())]);
    let names: Vec<&str> = names.as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    for n in [
        "flow_metrics__application__request__1m",
        "flow_metrics__application__server_error__1s",
        "flow_metrics__network__byte_tx__1s",
        "flow_metrics__network__tcp_rst_fail__1m",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let labels = prom(&srv, "/api/v1/labels", &[("start", s.clone()), ("end", e.clone())]);
    let labels: Vec<&str> = labels.as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    for l in ["__name__", "ip_0", "ip_1", "server_port", "protocol", "l7_protocol"] {
        assert!(labels.contains(&l), "{l} in {labels:?}");
    }
    assert!(!labels.contains(&"pod_id_1"), "tag id 0 (unknown) is not a label: {labels:?}");
    let vals = prom(&srv, "/api/v1/label/l7_protocol/values", &[("start", s.clone()), ("end", e.clone())]);
    let mut want_p: Vec<String> =
        sql_map(&srv, "SELECT DISTINCT l7_protocol AS k, 0.0 AS n FROM application WHERE l7_protocol <> ''")
            .into_keys()
            .collect();
    want_p.sort();
    let got_p: Vec<String> = vals.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    assert_eq!(got_p, want_p);
    let series = prom(
        &srv,
        "/api/v1/series",
        &[("match[]", "flow_metrics__application__request__1m".into()), ("start", s.clone()), ("end", e.clone())],
    );
    let want_n = srv.sql(
        "SELECT count(*) AS n FROM (SELECT DISTINCT ip_1, server_port, l7_protocol, endpoint FROM application WHERE \"interval\" = 60)",
    );
    let series = series.as_array().unwrap();
    assert_eq!(series.len() as f64, num(&want_n, "n"), "{series:?}");
    assert!(series.iter().all(|x| x["__name__"] == "flow_metrics__application__request__1m" && x["ip_1"].is_string()));
    // label values restricted by match[]
    let vals = prom(
        &srv,
        "/api/v1/label/server_port/values",
        &[("match[]", "flow_metrics__network__byte_tx__1s".into()), ("start", s.clone()), ("end", e.clone())],
    );
    let mut want_ports: Vec<String> = sql_map(
        &srv,
        "SELECT DISTINCT CAST(server_port AS VARCHAR) AS k, 0.0 AS n FROM network WHERE \"interval\" = 1",
    )
    .into_keys()
    .collect();
    want_ports.sort();
    let got_ports: Vec<String> = vals.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    assert_eq!(got_ports, want_ports);

    // unknown native columns are just unknown metrics (empty), bad PromQL is a 400
    let got = instant(&srv, "flow_metrics__network__nope__1m", end, "x");
    assert!(got.is_empty());
    let r = srv.get(&format!("/api/v1/query?query={}", urlenc("sum(flow_metrics__network__byte_tx__1s")));
    assert_eq!(r.status, 400, "{}", r.text());
    // the server is still serving
    assert!(!instant(&srv, &format!("sum(increase(flow_metrics__network__byte_tx__1s[{r1}s]))"), end1, "x").is_empty());
}

/// Every endpoint of demo.pcap is 127.0.0.1: one pod behind a service (as in the agent's
/// tests/store_tags.rs).
const INVENTORY: &str = r#"
regions: [{name: lab-region}]
vpcs: [{name: lab, region: lab-region}]
subnets: [{name: loopback, vpc: lab, cidr: 127.0.0.0/8}]
hosts: [{name: demo-host, vpc: lab, ips: [192.0.2.10]}]
pod_clusters: [{name: demo, vpc: lab}]
pod_namespaces: [{name: shop, cluster: demo}]
pod_nodes: [{name: node-1, cluster: demo, host: demo-host, ips: [192.0.2.10]}]
pod_groups: [{name: web, cluster: demo, namespace: shop, kind: Deployment}]
pods:
  - {name: web-0, cluster: demo, namespace: shop, node: node-1, group: web, group_kind: Deployment,
     ips: [127.0.0.1], labels: {app: web}}
services:
  - {name: web-svc, cluster: demo, namespace: shop, cluster_ips: [10.96.0.10], selector: {app: web}}
"#;

#[test]
fn native_metrics_carry_tag_ids_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    std::fs::write(&inv, INVENTORY).unwrap();
    let data = dir.path().join("store");
    if !analyze("native_metrics_carry_tag_ids_and_names", &data, Some(&inv)) {
        return;
    }
    let srv = start(&data, None, &[]);
    let v = srv.sql(
        "SELECT CAST(to_unixtime(min(\"time\")) AS BIGINT) AS lo, CAST(to_unixtime(max(\"time\")) AS BIGINT) AS hi, \
         CAST(sum(request) AS DOUBLE) AS n FROM application WHERE \"interval\" = 60",
    );
    let (lo, hi, total) = (num(&v, "lo") as i64, num(&v, "hi") as i64, num(&v, "n"));
    let end = hi + 60;
    let r = end - lo;
    // names resolved by the store's views, and the ids, are labels
    let d = prom(
        &srv,
        "/api/v1/query",
        &[
            (
                "query",
                format!(
                    "sum by (pod_1, service_1, pod_ns_1, pod_id_1) (increase(flow_metrics__application__request__1m[{r}s]))"
                ),
            ),
            ("time", end.to_string()),
        ],
    );
    let res = d["result"].as_array().unwrap();
    assert_eq!(res.len(), 1, "{d}");
    let m = &res[0]["metric"];
    assert_eq!(
        (m["pod_1"].as_str(), m["service_1"].as_str(), m["pod_ns_1"].as_str()),
        (Some("web-0"), Some("web-svc"), Some("shop")),
        "{d}"
    );
    assert!(m["pod_id_1"].as_str().is_some_and(|x| x != "0"), "{d}");
    assert_eq!(res[0]["value"][1].as_str().unwrap().parse::<f64>().unwrap(), total);
    // a matcher on a name (filtered after loading, not pushed down) and on the client side of network
    let got = instant(
        &srv,
        &format!("sum(increase(flow_metrics__application__request__1m{{pod_1=\"web-0\"}}[{r}s]))"),
        end,
        "x",
    );
    assert_eq!(got.get(""), Some(&total));
    let got = instant(
        &srv,
        &format!("sum(increase(flow_metrics__application__request__1m{{pod_1=\"nope\"}}[{r}s]))"),
        end,
        "x",
    );
    assert!(got.is_empty(), "{got:?}");
    let bytes = num(
        &srv.sql("SELECT CAST(sum(byte_tx) AS DOUBLE) AS n FROM network WHERE \"interval\" = 60 AND pod_0 = 'web-0'"),
        "n",
    );
    assert!(bytes > 0.0);
    let got =
        instant(&srv, &format!("sum by (pod_0) (increase(flow_metrics__network__byte_tx__1m[{r}s]))"), end, "pod_0");
    assert_eq!(got.get("web-0"), Some(&bytes));
    // the metadata APIs know the name labels
    let (s, e) = ((lo - 3600).to_string(), (end + 3600).to_string());
    let labels = prom(&srv, "/api/v1/labels", &[("start", s.clone()), ("end", e.clone())]);
    let labels: Vec<&str> = labels.as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    for l in ["pod_0", "pod_1", "pod_id_1", "service_1", "pod_ns_1", "subnet_1"] {
        assert!(labels.contains(&l), "{l} in {labels:?}");
    }
    let vals = prom(&srv, "/api/v1/label/pod_1/values", &[("start", s), ("end", e)]);
    assert_eq!(vals, serde_json::json!(["web-0"]));
}
