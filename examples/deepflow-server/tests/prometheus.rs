#![allow(clippy::unwrap_used, clippy::panic)]
//! The real Debian `prometheus` (2.42) scrapes itself on loopback under two job names and
//! remote_writes everything to the server (with a bearer token). Then the same PromQL suite
//! runs against Prometheus's own TSDB and against the server, through both HTTP APIs
//! (`/api/v1/query`, `/api/v1/query_range`), and the results must agree.
//!
//! Skips with a message when `prometheus` is not installed (scripts/install-deps.sh test
//! installs it).

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, free_port, start, urlenc};

struct Prom {
    child: std::process::Child,
    port: u16,
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_bin() -> Option<String> {
    ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|s| s.to_string())
}

fn start_prometheus(dir: &std::path::Path, server: &Server, token: &str) -> Prom {
    let port = free_port();
    let cfg = format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: a
    static_configs: [{{targets: ['127.0.0.1:{port}']}}]
  - job_name: b
    static_configs: [{{targets: ['127.0.0.1:{port}']}}]
remote_write:
  - url: http://{addr}/api/v1/write
    authorization: {{credentials: {token}}}
    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}
"#,
        addr = server.addr
    );
    let cfg_path = dir.join("prometheus.yml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(prometheus_bin().unwrap())
        .arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Prom { child, port }
}

fn http_json(url: &str) -> (u16, serde_json::Value) {
    let mut r = common::agent().get(url).header("Authorization", "Bearer tok3n").call().unwrap();
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}")))
}

/// labels (sorted JSON text) -> values, from a vector/matrix/scalar result.
fn normalize(data: &serde_json::Value) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out = BTreeMap::new();
    let pair = |p: &serde_json::Value| -> (f64, f64) {
        let t = p[0].as_f64().unwrap();
        let v = match p[1].as_str().unwrap() {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            s => s.parse().unwrap(),
        };
        (t, v)
    };
    match data["resultType"].as_str().unwrap() {
        "scalar" => {
            out.insert("scalar".into(), vec![pair(&data["result"])]);
        }
        "vector" => {
            for s in data["result"].as_array().unwrap() {
                out.insert(s["metric"].to_string(), vec![pair(&s["value"])]);
            }
        }
        "matrix" => {
            for s in data["result"].as_array().unwrap() {
                out.insert(s["metric"].to_string(), s["values"].as_array().unwrap().iter().map(pair).collect());
            }
        }
        t => panic!("result type {t}"),
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn same(expr: &str, ours: &serde_json::Value, theirs: &serde_json::Value) -> Result<usize, String> {
    let (o, t) = (normalize(ours), normalize(theirs));
    if expr.starts_with("topk") {
        // ties may pick different series: compare the values only
        let vals = |m: &BTreeMap<String, Vec<(f64, f64)>>| {
            let mut v: Vec<f64> = m.values().flatten().map(|p| p.1).collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v
        };
        let (a, b) = (vals(&o), vals(&t));
        if a.len() != b.len() || a.iter().zip(&b).any(|(x, y)| !close(*x, *y)) {
            return Err(format!("{expr}: values differ\nours:   {a:?}\ntheirs: {b:?}"));
        }
        return Ok(a.len());
    }
    if o.keys().ne(t.keys()) {
        return Err(format!(
            "{expr}: series differ\nours:   {:?}\ntheirs: {:?}",
            o.keys().collect::<Vec<_>>(),
            t.keys().collect::<Vec<_>>()
        ));
    }
    for (k, a) in &o {
        let b = &t[k];
        if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.0 != y.0 || !close(x.1, y.1)) {
            return Err(format!("{expr} {k}: values differ\nours:   {a:?}\ntheirs: {b:?}"));
        }
    }
    Ok(o.len())
}

const SUITE: &[&str] = &[
    "up",
    "up{job=\"a\"}",
    "prometheus_http_requests_total{handler=~\"/api/v1/.*\"}",
    "rate(prometheus_http_requests_total[5s])",
    "rate(prometheus_tsdb_head_samples_appended_total[10s])",
    "irate(process_cpu_seconds_total[5s])",
    "increase(prometheus_tsdb_head_samples_appended_total[10s])",
    "increase(scrape_samples_scraped[8s])",
    "sum by (job) (rate(prometheus_tsdb_head_samples_appended_total[10s]))",
    "sum without (instance) (scrape_samples_scraped)",
    "avg by (job) (scrape_duration_seconds)",
    "max by (job) (process_resident_memory_bytes)",
    "min by (job) (go_goroutines)",
    "count by (job) (prometheus_http_requests_total)",
    "count(up)",
    "topk(3, prometheus_tsdb_head_samples_appended_total)",
    "topk(2, scrape_duration_seconds)",
    "histogram_quantile(0.9, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[10s])))",
    "histogram_quantile(0.5, prometheus_http_response_size_bytes_bucket{handler=\"/metrics\"})",
    "histogram_quantile(0.99, sum by (job, le) (prometheus_tsdb_compaction_chunk_range_seconds_bucket))",
    "prometheus_tsdb_head_series offset 5s",
    "rate(prometheus_http_requests_total{handler=\"/metrics\"}[5s] offset 3s)",
    "scrape_samples_scraped{job=\"a\"} - on(instance) scrape_samples_scraped{job=\"b\"}",
    "scrape_duration_seconds{job=\"a\"} / ignoring(job) scrape_duration_seconds{job=\"b\"}",
    "prometheus_http_requests_total * on(job, instance) group_left up",
    "scrape_duration_seconds > 0",
    "up == bool 1",
    "2 * go_goroutines + 1",
    "go_goroutines > 1000000",
    "up and on(job) scrape_duration_seconds{job=\"a\"}",
    "up unless up{job=\"b\"}",
    "up{job=\"a\"} or go_goroutines{job=\"b\"}",
    "absent(up)",
    "absent(nonexistent_metric{job=\"x\", env=\"y\"})",
    "-up",
    "1 + 2 * 3",
    "sum(up) / count(up)",
];

#[test]
fn promql_agrees_with_real_prometheus() {
    let Some(_) = prometheus_bin() else {
        eprintln!(
            "SKIP promql_agrees_with_real_prometheus: the `prometheus` binary is not installed (apt-get install prometheus)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = "tok3n";
    let srv = start(&dir.path().join("store"), Some(token), &["--flush-ms", "200"]);
    let prom = start_prometheus(dir.path(), &srv, token);
    let prom_url = format!("http://127.0.0.1:{}", prom.port);

    // let it scrape ~25 times and remote_write what it scraped
    let t0 = Instant::now();
    let mut samples = 0.0;
    while t0.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_secs(1));
        samples = srv.sql("SELECT count(DISTINCT time) AS n FROM prometheus WHERE metric_name = 'up'")["rows"][0]["n"]
            .as_f64()
            .unwrap_or(0.0);
        if samples >= 25.0 {
            break;
        }
    }
    assert!(
        samples >= 25.0,
        "only {samples} scrapes arrived by remote_write; see {}/prometheus.log",
        dir.path().display()
    );
    // evaluate a few seconds behind the newest stored sample so that every shard has delivered
    let newest =
        srv.sql("SELECT CAST(max(time) AS BIGINT) AS t FROM prometheus WHERE metric_name = 'up'")["rows"][0]["t"]
            .as_i64()
            .unwrap();
    let t = (newest - 4_000) / 1000; // whole seconds
    std::thread::sleep(Duration::from_secs(4));

    let mut compared = 0;
    let mut failures = Vec::new();
    for expr in SUITE {
        let inst = format!("/api/v1/query?query={}&time={t}", urlenc(expr));
        let range = format!("/api/v1/query_range?query={}&start={}&end={t}&step=2", urlenc(expr), t - 10);
        for path in [inst, range] {
            let (s1, ours) = http_json(&srv.url(&path));
            let (s2, theirs) = http_json(&format!("{prom_url}{path}"));
            assert_eq!(s2, 200, "prometheus {path}: {theirs}");
            assert_eq!(s1, 200, "server {path}: {ours}");
            match same(expr, &ours["data"], &theirs["data"]) {
                Ok(n) => compared += n,
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} comparisons differ:\n{}",
        failures.len(),
        SUITE.len() * 2,
        failures.join("\n\n")
    );
    assert!(compared > 100, "compared only {compared} series");

    // metadata APIs agree on what both have
    let (_, ours) = http_json(&srv.url(&format!("/api/v1/label/job/values?start={}&end={t}", t - 10)));
    let (_, theirs) = http_json(&format!("{prom_url}/api/v1/label/job/values?start={}&end={t}", t - 10));
    assert_eq!(ours["data"], theirs["data"]);
    let sel = urlenc("up");
    let (_, ours) = http_json(&srv.url(&format!("/api/v1/series?match[]={sel}&start={}&end={t}", t - 10)));
    let (_, theirs) = http_json(&format!("{prom_url}/api/v1/series?match[]={sel}&start={}&end={t}", t - 10));
    assert_eq!(ours["data"], theirs["data"]);

    // bad PromQL: same status and error type as Prometheus
    for bad in ["sum(rate(up[5m])", "up{", "rate(up)"] {
        let path = format!("/api/v1/query?query={}&time={t}", urlenc(bad));
        let mut r = common::agent().get(srv.url(&path)).header("Authorization", "Bearer tok3n").call().unwrap();
        let ours: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        let s1 = r.status().as_u16();
        let mut r = common::agent().get(format!("{prom_url}{path}")).call().unwrap();
        let theirs: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(s1, r.status().as_u16(), "{bad}");
        assert_eq!(ours["errorType"], theirs["errorType"], "{bad}");
    }
    drop(prom);
}
