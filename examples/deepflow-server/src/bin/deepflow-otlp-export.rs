//! `deepflow-otlp-export`: exports request-log spans (`l7_flow_log` rows) of a deepflow-store
//! directory to an OpenTelemetry collector endpoint as OTLP/HTTP protobuf
//! (`ExportTraceServiceRequest` POSTed to `<endpoint>/v1/traces`).
//!
//! ```text
//! deepflow-otlp-export --data ./data --endpoint http://127.0.0.1:4318 \
//!     [--where "signal_source = 'otel'"] [--limit 100000] [--batch 512] [--token T]
//! ```
//!
//! Span ids: 32-hex trace ids and 16-hex span ids are kept as they are; any other id text
//! (SkyWalking's `segment-N` span ids, non-hex trace ids) becomes a stable hash of the text (16
//! or 8 bytes), the same for a span id and the parent ids that name it, so links survive. A row
//! without a trace id gets a trace of its own; without a span id, an id hashed from the row.
//!
//! Parent links are always valid within what is exported: a span whose parent is not among the
//! exported spans of its trace (not stored, filtered out by `--where`/`--limit`, or its own id)
//! is exported as a root, never with a dangling `parent_span_id`; a span on a parent cycle is
//! made a root too, and a second row with the span id of an earlier row of the same trace is
//! not exported (counted as `duplicates`).
//!
//! Prints one JSON object on stdout: spans, traces, roots, `orphans_made_roots`, duplicates,
//! requests. Exits 1 (with the collector's answer) when a POST fails.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use deepflow_store::QueryEngine;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::Value;

#[derive(Parser)]
#[command(name = "deepflow-otlp-export", about = "export l7_flow_log spans to an OTLP/HTTP collector")]
struct Args {
    /// Store directory to read.
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// Collector base URL (`/v1/traces` is appended unless the URL already ends with it).
    #[arg(long)]
    endpoint: String,
    /// SQL condition on `l7_flow_log` selecting the rows to export (default: all).
    #[arg(long = "where", default_value = "true")]
    filter: String,
    /// At most this many rows (the earliest by `start_time`).
    #[arg(long, default_value_t = 1_000_000)]
    limit: usize,
    /// Spans per request.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Send `Authorization: Bearer TOKEN`.
    #[arg(long)]
    token: Option<String>,
}

/// Export counters (printed as JSON).
#[derive(Debug, Default, serde::Serialize)]
struct Stats {
    spans: usize,
    traces: usize,
    roots: usize,
    orphans_made_roots: usize,
    duplicates: usize,
    requests: usize,
}

const COLUMNS: &str = "trace_id, span_id, parent_span_id, CAST(start_time AS BIGINT) AS start_us, \
    CAST(end_time AS BIGINT) AS end_us, endpoint, request_type, request_domain, request_resource, l7_protocol, \
    version, tap_side, signal_source, response_status, response_code, response_exception, ip_0, ip_1, \
    client_port, server_port, attribute_names, attribute_values, pod_0, pod_1, pod_ns_0, pod_ns_1, \
    pod_cluster_0, pod_cluster_1, pod_group_0, pod_group_1, service_0, service_1";

fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a) {
        Ok(st) => {
            println!("{}", serde_json::to_string(&st).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("deepflow-otlp-export: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Result<Stats, String> {
    if !a.data.is_dir() {
        return Err(format!("--data {}: not a directory", a.data.display()));
    }
    let url = traces_url(&a.endpoint)?;
    let engine = QueryEngine::open_local(&a.data).map_err(|e| e.to_string())?;
    let sql = format!("SELECT {COLUMNS} FROM l7_flow_log WHERE {} ORDER BY start_time LIMIT {}", a.filter, a.limit);
    let batches = engine.query(&sql).map_err(|e| format!("--where: {e}"))?;
    let mut buf = Vec::new();
    {
        let mut w = deepflow_store::arrow::json::LineDelimitedWriter::new(&mut buf);
        for b in &batches {
            w.write(b).map_err(|e| e.to_string())?;
        }
        w.finish().map_err(|e| e.to_string())?;
    }
    let rows: Vec<Value> = buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let (spans, mut st) = to_spans(&rows);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    for chunk in spans.chunks(a.batch.max(1)) {
        let body = request(chunk).encode_to_vec();
        let mut req = agent.post(&url).header("Content-Type", "application/x-protobuf");
        if let Some(t) = &a.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req.send(&body[..]).map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            return Err(format!("{url}: HTTP {status}: {}", text.trim()));
        }
        st.requests += 1;
    }
    Ok(st)
}

fn traces_url(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim();
    if !(e.starts_with("http://") || e.starts_with("https://")) {
        return Err(format!("--endpoint {e:?}: expected http:// or https://"));
    }
    Ok(if e.trim_end_matches('/').ends_with("/v1/traces") {
        e.to_string()
    } else {
        format!("{}/v1/traces", e.trim_end_matches('/'))
    })
}

/// A span with the resource attributes it is exported under.
struct Out {
    resource: Vec<(String, String)>,
    span: Span,
}

fn s<'a>(r: &'a Value, k: &str) -> Option<&'a str> {
    r.get(k).and_then(Value::as_str).filter(|v| !v.is_empty())
}

fn fnv(seed: u64, text: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// 16-byte trace id: 32 hex digits as they are, any other text hashed.
fn trace_bytes(t: &str) -> Vec<u8> {
    match hex(t, 16) {
        Some(b) => b,
        None => {
            let mut v = fnv(1, t).to_be_bytes().to_vec();
            v.extend(fnv(2, t).to_be_bytes());
            v
        }
    }
}

/// 8-byte span id: 16 hex digits as they are, any other text hashed (never all zero).
fn span_bytes(t: &str) -> Vec<u8> {
    hex(t, 8).unwrap_or_else(|| fnv(3, t).max(1).to_be_bytes().to_vec())
}

fn hex(t: &str, n: usize) -> Option<Vec<u8>> {
    if t.len() != 2 * n || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let v: Vec<u8> = (0..n).filter_map(|i| u8::from_str_radix(t.get(2 * i..2 * i + 2)?, 16).ok()).collect();
    (v.len() == n && v.iter().any(|b| *b != 0)).then_some(v)
}

fn kv(k: &str, v: impl Into<AnyV>) -> KeyValue {
    let value = match v.into() {
        AnyV::S(s) => any_value::Value::StringValue(s),
        AnyV::I(i) => any_value::Value::IntValue(i),
    };
    KeyValue { key: k.to_string(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

enum AnyV {
    S(String),
    I(i64),
}
impl From<&str> for AnyV {
    fn from(s: &str) -> Self {
        AnyV::S(s.to_string())
    }
}
impl From<i64> for AnyV {
    fn from(i: i64) -> Self {
        AnyV::I(i)
    }
}

/// Rows (JSON objects of [`COLUMNS`]) to spans with valid parent links.
fn to_spans(rows: &[Value]) -> (Vec<Out>, Stats) {
    let mut st = Stats::default();
    // (trace bytes, span bytes) already taken
    let mut seen: HashSet<(Vec<u8>, Vec<u8>)> = HashSet::new();
    let mut outs: Vec<Out> = Vec::new();
    let mut parents: Vec<Option<Vec<u8>>> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let start_ns = r.get("start_us").and_then(Value::as_u64).unwrap_or(0).saturating_mul(1000);
        let end_ns = r.get("end_us").and_then(Value::as_u64).unwrap_or(0).saturating_mul(1000).max(start_ns);
        let row_key = format!("{i}/{start_ns}/{}", r);
        let trace_id = match s(r, "trace_id") {
            Some(t) => trace_bytes(t),
            None => trace_bytes(&format!("row/{row_key}")),
        };
        let span_id = match s(r, "span_id") {
            Some(t) => span_bytes(t),
            None => span_bytes(&format!("row/{row_key}")),
        };
        if !seen.insert((trace_id.clone(), span_id.clone())) {
            st.duplicates += 1;
            continue;
        }
        let parent = s(r, "parent_span_id").map(span_bytes);
        let tap_side = s(r, "tap_side").unwrap_or("");
        let kind = match tap_side {
            "app" => SpanKind::Internal,
            t if t.starts_with('c') => SpanKind::Client,
            t if t.starts_with('s') => SpanKind::Server,
            _ => SpanKind::Unspecified,
        };
        let client = kind == SpanKind::Client;
        let proto = s(r, "l7_protocol").unwrap_or("");
        let name = s(r, "endpoint")
            .or(s(r, "request_resource"))
            .map(str::to_string)
            .or_else(|| s(r, "request_type").map(|t| format!("{proto} {t}").trim().to_string()))
            .unwrap_or_else(|| if proto.is_empty() { "l7_flow_log".into() } else { proto.to_string() });
        let status_text = s(r, "response_status").unwrap_or("");
        let error = status_text == "server_error" || (client && status_text == "client_error");
        let status = Status {
            code: if error { StatusCode::Error as i32 } else { StatusCode::Unset as i32 },
            message: if error { s(r, "response_exception").unwrap_or("").to_string() } else { String::new() },
        };
        // the row's own attributes (service.name goes to the resource)
        let names: Vec<&str> = r
            .get("attribute_names")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let values: Vec<&str> = r
            .get("attribute_values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let attr = |k: &str| names.iter().position(|n| *n == k).and_then(|i| values.get(i).copied());
        let mut attributes: Vec<KeyValue> = Vec::new();
        let mut set = HashSet::new();
        for (k, v) in names.iter().zip(&values) {
            if *k != "service.name" && *k != "span_kind" && set.insert(k.to_string()) {
                attributes.push(kv(k, *v));
            }
        }
        let mut add = |k: &str, v: AnyV| {
            if set.insert(k.to_string()) {
                attributes.push(kv(k, v));
            }
        };
        let ip = |k: &str| s(r, k).filter(|ip| !matches!(*ip, "0.0.0.0" | "::"));
        let port = |k: &str| r.get(k).and_then(Value::as_i64).filter(|p| *p > 0);
        let (local, peer) = if client {
            ((ip("ip_0"), None), (ip("ip_1"), port("server_port")))
        } else {
            ((ip("ip_1"), port("server_port")), (ip("ip_0"), port("client_port")))
        };
        if let Some(v) = local.0 {
            add("net.host.ip", v.into());
        }
        if let Some(p) = local.1 {
            add("net.host.port", p.into());
        }
        if let Some(v) = peer.0 {
            add("net.peer.ip", v.into());
        }
        if let Some(p) = peer.1 {
            add("net.peer.port", p.into());
        }
        if proto.starts_with("http") {
            if let Some(m) = s(r, "request_type") {
                add("http.method", m.into());
            }
            if let Some(t) = s(r, "request_resource") {
                add("http.target", t.into());
            }
            if let Some(h) = s(r, "request_domain") {
                add("http.host", h.into());
            }
            if let Some(c) = r.get("response_code").and_then(Value::as_i64) {
                add("http.status_code", c.into());
            }
        } else if let Some(c) = r.get("response_code").and_then(Value::as_i64) {
            add("df.response_code", c.into());
        }
        for (k, col) in
            [("df.l7_protocol", "l7_protocol"), ("df.tap_side", "tap_side"), ("df.signal_source", "signal_source")]
        {
            if let Some(v) = s(r, col) {
                add(k, v.into());
            }
        }
        // resource: the span's own side (server side of server/internal spans)
        let side = if client { "0" } else { "1" };
        let own = |c: &str| s(r, &format!("{c}_{side}"));
        let service = attr("service.name")
            .or(attr("app_service"))
            .or(own("service"))
            .or(own("pod_group"))
            .unwrap_or("deepflow")
            .to_string();
        let mut resource = vec![("service.name".to_string(), service)];
        for (k, c) in [("k8s.pod.name", "pod"), ("k8s.namespace.name", "pod_ns"), ("k8s.cluster.name", "pod_cluster")] {
            if let Some(v) = own(c) {
                resource.push((k.to_string(), v.to_string()));
            }
        }
        parents.push(parent);
        outs.push(Out {
            resource,
            span: Span {
                trace_id,
                span_id,
                name,
                kind: kind as i32,
                start_time_unix_nano: start_ns,
                end_time_unix_nano: end_ns,
                attributes,
                status: Some(status),
                ..Default::default()
            },
        });
    }
    // parent links: only to a span exported in the same trace, and never around a cycle
    let index: HashMap<(&[u8], &[u8]), usize> =
        outs.iter().enumerate().map(|(i, o)| ((o.span.trace_id.as_slice(), o.span.span_id.as_slice()), i)).collect();
    let link: Vec<Option<usize>> = outs
        .iter()
        .zip(&parents)
        .enumerate()
        .map(|(i, (o, p))| {
            let j = *index.get(&(o.span.trace_id.as_slice(), p.as_deref()?))?;
            (j != i).then_some(j)
        })
        .collect();
    let mut link = link;
    for i in 0..outs.len() {
        let mut visited = HashSet::from([i]);
        let mut cur = i;
        while let Some(Some(next)) = link.get(cur).copied() {
            if !visited.insert(next) {
                // cur's link closes a cycle: cut it there
                if let Some(l) = link.get_mut(cur) {
                    *l = None;
                }
                break;
            }
            cur = next;
        }
    }
    for (i, (o, p)) in outs.iter_mut().zip(&parents).enumerate() {
        match link.get(i).copied().flatten() {
            Some(_) => o.span.parent_span_id = p.clone().unwrap_or_default(),
            None => {
                st.roots += 1;
                if p.is_some() {
                    st.orphans_made_roots += 1;
                }
            }
        }
    }
    st.spans = outs.len();
    st.traces = outs.iter().map(|o| o.span.trace_id.as_slice()).collect::<HashSet<_>>().len();
    (outs, st)
}

/// One request: spans grouped by their resource.
fn request(spans: &[Out]) -> ExportTraceServiceRequest {
    let mut by_res: BTreeMap<&[(String, String)], Vec<Span>> = BTreeMap::new();
    for o in spans {
        by_res.entry(o.resource.as_slice()).or_default().push(o.span.clone());
    }
    ExportTraceServiceRequest {
        resource_spans: by_res
            .into_iter()
            .map(|(res, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: res.iter().map(|(k, v)| kv(k, v.as_str())).collect(),
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "deepflow-otlp-export".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn row(trace: &str, span: &str, parent: Option<&str>) -> Value {
        serde_json::json!({"trace_id": trace, "span_id": span, "parent_span_id": parent, "start_us": 1, "end_us": 2,
                           "endpoint": span, "tap_side": "s-app"})
    }

    fn parent_of(outs: &[Out], name: &str) -> Vec<u8> {
        outs.iter().find(|o| o.span.name == name).unwrap().span.parent_span_id.clone()
    }

    #[test]
    fn cycles_duplicates_and_hashed_ids() {
        let t = "0af7651916cd43dd8448eb211c80319c";
        let rows = vec![
            row(t, "a000000000000001", None),
            row(t, "a000000000000002", Some("a000000000000001")),
            // a 2-cycle: one link is cut, the other kept
            row(t, "b000000000000001", Some("b000000000000002")),
            row(t, "b000000000000002", Some("b000000000000001")),
            // the same span twice
            row(t, "a000000000000002", Some("a000000000000001")),
            // SkyWalking-style text ids
            row("sw.1", "seg-0", None),
            row("sw.1", "seg-1", Some("seg-0")),
            // the same parent text in another trace does not link across traces
            row("sw.2", "seg-2", Some("seg-0")),
            // no ids at all: a trace of its own
            serde_json::json!({"start_us": 5, "end_us": 6, "endpoint": "bare"}),
        ];
        let (outs, st) = to_spans(&rows);
        assert_eq!(st.spans, 8);
        assert_eq!(st.duplicates, 1);
        assert_eq!(st.traces, 4);
        assert_eq!(parent_of(&outs, "a000000000000002"), hex("a000000000000001", 8).unwrap());
        let cyc = [parent_of(&outs, "b000000000000001"), parent_of(&outs, "b000000000000002")];
        assert_eq!(cyc.iter().filter(|p| p.is_empty()).count(), 1, "{cyc:?}");
        assert_eq!(parent_of(&outs, "seg-1"), span_bytes("seg-0"));
        assert_eq!(span_bytes("seg-0").len(), 8);
        assert!(parent_of(&outs, "seg-2").is_empty());
        let bare = outs.iter().find(|o| o.span.name == "bare").unwrap();
        assert_eq!((bare.span.trace_id.len(), bare.span.span_id.len()), (16, 8));
        // roots: a1, one of the cycle, seg-0, seg-2, bare
        assert_eq!(st.roots, 5);
        assert_eq!(st.orphans_made_roots, 2);
        // every parent is an exported span of the same trace
        for o in &outs {
            if !o.span.parent_span_id.is_empty() {
                assert!(
                    outs.iter().any(|p| p.span.trace_id == o.span.trace_id && p.span.span_id == o.span.parent_span_id)
                );
            }
        }
        assert_eq!(traces_url("http://c:4318/").unwrap(), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/v1/traces").unwrap(), "http://c:4318/v1/traces");
        assert!(traces_url("c:4318").is_err());
    }
}
