//! OpenTelemetry (OTLP) traces, metrics and logs → deepflow records.
//!
//! The messages are the `opentelemetry-proto` crate's prost types (re-exported as [`proto`]),
//! so a body of `POST /v1/traces` (protobuf or OTLP JSON) and a gRPC `TraceService/Export`
//! request decode to the same [`ExportTraceServiceRequest`]:
//! [`decode_traces`], [`decode_metrics`], [`decode_logs`] take the body and its [`Encoding`]
//! (OTLP JSON: hex trace/span ids, int64 as strings or numbers, enums as integers).
//!
//! # Spans → `l7_flow_log` ([`spans_to_rows`])
//!
//! One row per span, like DeepFlow's OTel import:
//!
//! | column | value |
//! |---|---|
//! | `signal_source` | `otel` ([`SIGNAL_SOURCE`]) |
//! | `type` | `session` |
//! | `tap_side` | `s-app` (SERVER and CONSUMER spans), `c-app` (CLIENT, PRODUCER), `app` (INTERNAL, unspecified) |
//! | `start_time`, `end_time` | `startTimeUnixNano`, `endTimeUnixNano` (ns → µs) |
//! | `rrt` | end − start, µs |
//! | `trace_id`, `span_id`, `parent_span_id` | lowercase hex; null when empty (a span without a parent is a root) |
//! | `endpoint` | span name |
//! | `l7_protocol` | `grpc` (`rpc.system=grpc`), `dubbo` (`rpc.system=apache_dubbo`), `http`/`http2` (`http.method` or `http.request.method`; `http2` when `http.flavor`/`network.protocol.version` is 2), `mysql`/`postgresql`/`redis`/`mongodb`/`memcached`/`oracle` (`db.system`), `kafka`/`amqp`/`rocketmq`/`pulsar`/`nats` (`messaging.system`), else `unknown` |
//! | `version` | `http.flavor`, else `network.protocol.version` |
//! | `request_type` | HTTP: `http.method`/`http.request.method`; RPC: `rpc.method`; DB: `db.operation`/`db.operation.name`, else the statement's first word; messaging: `messaging.operation` |
//! | `request_domain` | HTTP: `http.host`, else `server.address`, else `net.peer.name` (client spans) / `net.host.name` (server spans); RPC: `rpc.service`; DB: `db.name`/`db.namespace`; messaging: `messaging.destination(.name)` |
//! | `request_resource` | HTTP: `http.target`, else `url.path`(`?url.query`), else `http.url`/`url.full`; RPC: `<rpc.service>/<rpc.method>`; DB: `db.statement`/`db.query.text`; messaging: the destination |
//! | `response_code` | `http.status_code`/`http.response.status_code`, else `rpc.grpc.status_code` |
//! | `response_status` | status ERROR → `server_error`, or `client_error` when the HTTP code is 4xx; otherwise `ok` |
//! | `response_exception` | status message, else the `exception.message` of an `exception` event |
//! | `request_length`, `response_length` | `http.request_content_length`/`http.request.body.size`, `http.response_content_length`/`http.response.body.size` |
//! | `ip_1`, `server_port` | SERVER/CONSUMER spans: `net.host.ip`/`server.address`/`network.local.address` and `net.host.port`/`server.port`/`network.local.port`; other spans: `net.peer.ip`/`net.sock.peer.addr`/`server.address`/`network.peer.address` and `net.peer.port`/`server.port`/`network.peer.port` |
//! | `ip_0`, `client_port` | SERVER/CONSUMER spans: `net.sock.peer.addr`/`net.peer.ip`/`client.address`/`network.peer.address` and `net.peer.port`/`client.port`/`network.peer.port`; other spans: `net.host.ip`/`network.local.address` and `network.local.port` |
//! | `protocol` | `UDP` when `net.transport`/`network.transport` says udp, else `TCP` |
//! | `attribute_names`/`values` | every resource attribute (`service.name`, `service.instance.id`, `telemetry.sdk.*`, ...), then every span attribute, then `span_kind` (e.g. `SPAN_KIND_SERVER`) and `otel.scope.name` (when set); non-string values as text (arrays and maps as JSON) |
//!
//! Addresses are only used when they are IP literals (a host name stays in the attributes and
//! the domain); an unknown address is `0.0.0.0` and an unknown port 0.
//!
//! # Metrics → Prometheus samples ([`metrics_to_samples`])
//!
//! Samples for the `prometheus` table of `deepflow-store` (what remote_write writes, queried by
//! PromQL), following Prometheus's own OTLP translation:
//! - names: characters outside `[a-zA-Z0-9_:]` become `_`; a monotonic sum gets `_total`
//!   (unless it has it already);
//! - gauge and sum points: one sample each (`asInt` or `asDouble`);
//! - histogram points: cumulative `<name>_bucket{le="<bound>"}` per explicit bound plus
//!   `le="+Inf"` (= count), `<name>_count`, and `<name>_sum` when the sum is set;
//! - exponential histogram points: `<name>_count` and `<name>_sum` only;
//! - summary points: `<name>{quantile="q"}` per quantile, `<name>_count`, `<name>_sum`;
//! - labels: every resource attribute with its name sanitized (`service.name` → `service_name`),
//!   plus `job` = `service.name` (`<service.namespace>/<service.name>` with a namespace) and
//!   `instance` = `service.instance.id`, then the point attributes (which win on a clash);
//!   empty values are dropped;
//! - time: `timeUnixNano` in ms; points flagged "no recorded value" are skipped.
//!
//! Temporality is not converted: delta sums and histograms are stored as the deltas they are.
//!
//! # Logs → `log` rows ([`logs_to_records`])
//!
//! [`LogRecord`] per OTLP log record: `time` = `timeUnixNano` (else `observedTimeUnixNano`),
//! severity number and text (the text derived from the number when absent), body (a string as
//! is, other values as JSON), hex trace and span ids, `service_name` = `service.name`, and the
//! record attributes then the other resource attributes (plus `otel.scope.name` and
//! `event.name` when set) as attribute names/values.

use std::net::{IpAddr, Ipv4Addr};

use deepflow_core::FlowInfo;
use deepflow_core::record::{L7FlowLog, L7Protocol, LogRecord, LogType, ResponseStatus};

/// The OTLP prost messages (and, with `opentelemetry-proto`'s `gen-tonic` feature enabled by the
/// user, the tonic services), from the `opentelemetry-proto` crate.
pub use opentelemetry_proto::tonic as proto;

pub use proto::collector::logs::v1::ExportLogsServiceRequest;
pub use proto::collector::metrics::v1::ExportMetricsServiceRequest;
pub use proto::collector::trace::v1::ExportTraceServiceRequest;

use proto::common::v1::{AnyValue, KeyValue, any_value};
use proto::metrics::v1::{metric, number_data_point};
use proto::trace::v1::Span;

/// `signal_source` of the rows made from OTLP data.
pub const SIGNAL_SOURCE: &str = "otel";

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Binary protobuf (`application/x-protobuf`, gRPC).
    Protobuf,
    /// OTLP JSON (`application/json`).
    Json,
}

impl Encoding {
    /// The encoding for an HTTP `Content-Type` (parameters ignored), `None` for any other type.
    pub fn from_content_type(ct: &str) -> Option<Encoding> {
        let base = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match base.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }
}

/// Why a body was refused.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// Not a valid protobuf message of the expected type.
    #[error("invalid OTLP protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// Not valid OTLP JSON.
    #[error("invalid OTLP JSON: {0}")]
    Json(#[from] serde_json::Error),
}

fn decode<T: prost::Message + Default + serde::de::DeserializeOwned>(
    body: &[u8],
    enc: Encoding,
) -> Result<T, OtlpError> {
    Ok(match enc {
        Encoding::Protobuf => T::decode(body)?,
        Encoding::Json => serde_json::from_slice(body)?,
    })
}

/// Decodes an `ExportTraceServiceRequest` body.
pub fn decode_traces(body: &[u8], enc: Encoding) -> Result<ExportTraceServiceRequest, OtlpError> {
    decode(body, enc)
}

/// Decodes an `ExportMetricsServiceRequest` body.
pub fn decode_metrics(body: &[u8], enc: Encoding) -> Result<ExportMetricsServiceRequest, OtlpError> {
    decode(body, enc)
}

/// Decodes an `ExportLogsServiceRequest` body.
pub fn decode_logs(body: &[u8], enc: Encoding) -> Result<ExportLogsServiceRequest, OtlpError> {
    decode(body, enc)
}

// ---------- values ----------

/// Lowercase hex of an id; `None` when empty or all zero (an invalid id in OTLP).
pub fn hex_id(b: &[u8]) -> Option<String> {
    if b.iter().all(|x| *x == 0) {
        return None;
    }
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(b"0123456789abcdef".get(usize::from(x >> 4)).copied().unwrap_or(b'0')));
        s.push(char::from(b"0123456789abcdef".get(usize::from(x & 15)).copied().unwrap_or(b'0')));
    }
    Some(s)
}

fn any_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.value {
        Some(any_value::Value::StringValue(s)) => J::from(s.as_str()),
        Some(any_value::Value::BoolValue(b)) => J::from(*b),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(d)) => J::from(*d),
        Some(any_value::Value::ArrayValue(a)) => J::Array(a.values.iter().map(any_json).collect()),
        Some(any_value::Value::KvlistValue(kv)) => {
            J::Object(kv.values.iter().map(|k| (k.key.clone(), k.value.as_ref().map_or(J::Null, any_json))).collect())
        }
        Some(any_value::Value::BytesValue(b)) => J::from(hex_id(b).unwrap_or_else(|| "00".repeat(b.len()))),
        _ => J::Null,
    }
}

/// An attribute value as text: strings as they are, numbers and booleans as their literal,
/// bytes as hex, arrays and maps as JSON, absent as empty.
pub fn any_to_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(_) => v.map(any_json).map(|j| j.to_string()).unwrap_or_default(),
    }
}

/// Attribute lookup over several lists (first list first).
struct Attrs<'a>(&'a [&'a [KeyValue]]);

impl<'a> Attrs<'a> {
    fn raw(&self, key: &str) -> Option<&'a AnyValue> {
        self.0.iter().flat_map(|l| l.iter()).find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref())
    }
    fn str(&self, key: &str) -> Option<String> {
        let v = self.raw(key)?;
        v.value.as_ref()?;
        Some(any_to_string(Some(v))).filter(|s| !s.is_empty())
    }
    fn first(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| self.str(k))
    }
    fn int(&self, key: &str) -> Option<i64> {
        match self.raw(key)?.value.as_ref()? {
            any_value::Value::IntValue(i) => Some(*i),
            any_value::Value::DoubleValue(d) if d.is_finite() => Some(*d as i64),
            any_value::Value::StringValue(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    fn first_int(&self, keys: &[&str]) -> Option<i64> {
        keys.iter().find_map(|k| self.int(k))
    }
    fn ip(&self, keys: &[&str]) -> Option<IpAddr> {
        keys.iter().find_map(|k| self.str(k).and_then(|s| s.trim().trim_matches(['[', ']']).parse().ok()))
    }
    fn port(&self, keys: &[&str]) -> Option<u16> {
        keys.iter().find_map(|k| self.int(k).and_then(|p| u16::try_from(p).ok()))
    }
}

// ---------- traces ----------

fn span_kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "SPAN_KIND_INTERNAL",
        2 => "SPAN_KIND_SERVER",
        3 => "SPAN_KIND_CLIENT",
        4 => "SPAN_KIND_PRODUCER",
        5 => "SPAN_KIND_CONSUMER",
        _ => "SPAN_KIND_UNSPECIFIED",
    }
}

fn l7_protocol(a: &Attrs<'_>) -> L7Protocol {
    let lower = |k: &str| a.str(k).map(|s| s.to_ascii_lowercase());
    match lower("rpc.system").as_deref() {
        Some("grpc") => return L7Protocol::Grpc,
        Some("apache_dubbo" | "dubbo") => return L7Protocol::Dubbo,
        _ => {}
    }
    if a.str("http.method").or_else(|| a.str("http.request.method")).is_some() {
        let v = a.first(&["http.flavor", "network.protocol.version"]).unwrap_or_default();
        return if v == "2" || v == "2.0" { L7Protocol::Http2 } else { L7Protocol::Http1 };
    }
    if let Some(db) = lower("db.system").or_else(|| lower("db.system.name")) {
        match db.as_str() {
            "mysql" | "mariadb" => return L7Protocol::MySql,
            "postgresql" => return L7Protocol::PostgreSql,
            "redis" => return L7Protocol::Redis,
            "mongodb" => return L7Protocol::MongoDb,
            "memcached" => return L7Protocol::Memcached,
            "oracle" => return L7Protocol::Oracle,
            _ => {}
        }
    }
    match lower("messaging.system").as_deref() {
        Some("kafka") => L7Protocol::Kafka,
        Some("rabbitmq") => L7Protocol::Amqp,
        Some("rocketmq") => L7Protocol::RocketMq,
        Some("pulsar") => L7Protocol::Pulsar,
        Some("nats") => L7Protocol::Nats,
        _ => L7Protocol::Unknown,
    }
}

fn first_word(s: &str) -> Option<String> {
    s.split_whitespace().next().map(|w| w.to_ascii_uppercase())
}

/// One span as an `l7_flow_log` row (see the [module docs](self) for the mapping).
/// `resource` and `scope_name` are those of the span's `ResourceSpans` and `ScopeSpans`.
pub fn span_to_row(resource: &[KeyValue], scope_name: &str, span: &Span) -> L7FlowLog {
    let lists = [span.attributes.as_slice(), resource];
    let a = Attrs(&lists);
    let server_side = matches!(span.kind, 2 | 5);
    let udp = a.first(&["net.transport", "network.transport"]).is_some_and(|t| t.to_ascii_lowercase().contains("udp"));
    let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let (ip_0, port_0, ip_1, port_1) = if server_side {
        (
            a.ip(&["net.sock.peer.addr", "net.peer.ip", "client.address", "network.peer.address"]),
            a.port(&["net.sock.peer.port", "net.peer.port", "client.port", "network.peer.port"]),
            a.ip(&["net.host.ip", "server.address", "network.local.address", "net.sock.host.addr"]),
            a.port(&["net.host.port", "server.port", "network.local.port", "net.sock.host.port"]),
        )
    } else {
        (
            a.ip(&["net.host.ip", "network.local.address", "net.sock.host.addr"]),
            a.port(&["network.local.port", "net.sock.host.port"]),
            a.ip(&["net.peer.ip", "net.sock.peer.addr", "server.address", "network.peer.address"]),
            a.port(&["net.peer.port", "server.port", "net.sock.peer.port", "network.peer.port"]),
        )
    };
    let flow = FlowInfo {
        client_ip: ip_0.unwrap_or(unspecified),
        server_ip: ip_1.unwrap_or(unspecified),
        client_port: port_0.unwrap_or(0),
        server_port: port_1.unwrap_or(0),
        protocol: if udp { 17 } else { 6 },
        flow_id: 0,
        tunnel: Default::default(),
        start_time_us: span.start_time_unix_nano / 1000,
    };
    let proto = l7_protocol(&a);
    let mut row = L7FlowLog::new(&flow, proto, LogType::Session);
    row.signal_source = SIGNAL_SOURCE;
    row.tap_side = match span.kind {
        2 | 5 => "s-app",
        3 | 4 => "c-app",
        _ => "app",
    };
    row.start_time = span.start_time_unix_nano / 1000;
    row.end_time = span.end_time_unix_nano / 1000;
    row.rrt = Some(span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) / 1000);
    row.trace_id = hex_id(&span.trace_id);
    row.span_id = hex_id(&span.span_id);
    row.parent_span_id = hex_id(&span.parent_span_id);
    row.endpoint = Some(span.name.clone()).filter(|s| !s.is_empty());
    row.version = a.first(&["http.flavor", "network.protocol.version"]);
    let http_code = a.first_int(&["http.status_code", "http.response.status_code"]);
    match proto {
        L7Protocol::Http1 | L7Protocol::Http2 => {
            row.request_type = a.first(&["http.method", "http.request.method"]);
            row.request_domain = a
                .first(&["http.host", "server.address"])
                .or_else(|| if server_side { a.str("net.host.name") } else { a.str("net.peer.name") });
            row.request_resource = a
                .str("http.target")
                .or_else(|| {
                    a.str("url.path").map(|p| match a.str("url.query") {
                        Some(q) => format!("{p}?{q}"),
                        None => p,
                    })
                })
                .or_else(|| a.first(&["http.url", "url.full"]));
            row.request_length = a
                .first_int(&["http.request_content_length", "http.request.body.size"])
                .and_then(|v| u64::try_from(v).ok());
            row.response_length = a
                .first_int(&["http.response_content_length", "http.response.body.size"])
                .and_then(|v| u64::try_from(v).ok());
        }
        L7Protocol::Grpc | L7Protocol::Dubbo => {
            let (svc, method) = (a.str("rpc.service"), a.str("rpc.method"));
            row.request_type = method.clone();
            row.request_domain = svc.clone();
            row.request_resource = match (svc, method) {
                (Some(s), Some(m)) => Some(format!("{s}/{m}")),
                (s, m) => s.or(m),
            };
        }
        L7Protocol::Kafka | L7Protocol::Amqp | L7Protocol::RocketMq | L7Protocol::Pulsar | L7Protocol::Nats => {
            row.request_type = a.first(&["messaging.operation", "messaging.operation.type"]);
            row.request_domain = a.first(&["messaging.destination", "messaging.destination.name"]);
            row.request_resource = row.request_domain.clone();
        }
        L7Protocol::Unknown => {}
        _ => {
            let stmt = a.first(&["db.statement", "db.query.text"]);
            row.request_type =
                a.first(&["db.operation", "db.operation.name"]).or_else(|| stmt.as_deref().and_then(first_word));
            row.request_domain = a.first(&["db.name", "db.namespace"]);
            row.request_resource = stmt;
        }
    }
    row.response_code = http_code.or_else(|| a.int("rpc.grpc.status_code")).and_then(|c| i32::try_from(c).ok());
    let status = span.status.as_ref();
    let is_error = status.is_some_and(|s| s.code == 2);
    row.response_status = if is_error {
        if http_code.is_some_and(|c| (400..500).contains(&c)) {
            ResponseStatus::ClientError
        } else {
            ResponseStatus::ServerError
        }
    } else {
        ResponseStatus::Ok
    };
    row.response_exception = status.map(|s| s.message.clone()).filter(|m| !m.is_empty()).or_else(|| {
        span.events.iter().filter(|e| e.name == "exception").find_map(|e| {
            let l = [e.attributes.as_slice()];
            Attrs(&l).str("exception.message")
        })
    });
    for kv in resource.iter().chain(&span.attributes) {
        row.attribute_names.push(kv.key.clone());
        row.attribute_values.push(any_to_string(kv.value.as_ref()));
    }
    row.attribute_names.push("span_kind".into());
    row.attribute_values.push(span_kind_name(span.kind).into());
    if !scope_name.is_empty() {
        row.attribute_names.push("otel.scope.name".into());
        row.attribute_values.push(scope_name.into());
    }
    row
}

/// Every span of a request as `l7_flow_log` rows, in request order.
pub fn spans_to_rows(req: &ExportTraceServiceRequest) -> Vec<L7FlowLog> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let res = rs.resource.as_ref().map_or(&[][..], |r| r.attributes.as_slice());
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().map_or("", |s| s.name.as_str());
            out.extend(ss.spans.iter().map(|s| span_to_row(res, scope, s)));
        }
    }
    out
}

// ---------- metrics ----------

/// One Prometheus sample made from an OTLP data point (the fields of
/// `deepflow_store::prom::Sample`, which this crate does not depend on).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// Metric name (`__name__`), sanitized.
    pub metric: String,
    /// Labels sorted by name, without `__name__`, no empty values.
    pub labels: Vec<(String, String)>,
    /// Milliseconds since the epoch.
    pub time_ms: i64,
    /// The value.
    pub value: f64,
}

/// A name made Prometheus-safe: characters outside `[a-zA-Z0-9_:]` become `_`, and a leading
/// digit gets a `_` prefix.
pub fn sanitize_name(s: &str) -> String {
    let mut out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn label_name(s: &str) -> String {
    sanitize_name(s).replace(':', "_")
}

fn resource_labels(res: &[KeyValue]) -> Vec<(String, String)> {
    let l = [res];
    let a = Attrs(&l);
    let mut labels: Vec<(String, String)> =
        res.iter().map(|kv| (label_name(&kv.key), any_to_string(kv.value.as_ref()))).collect();
    if let Some(svc) = a.str("service.name") {
        let job = match a.str("service.namespace") {
            Some(ns) => format!("{ns}/{svc}"),
            None => svc,
        };
        labels.push(("job".into(), job));
    }
    if let Some(inst) = a.str("service.instance.id") {
        labels.push(("instance".into(), inst));
    }
    labels
}

fn point_labels(base: &[(String, String)], attrs: &[KeyValue], extra: Option<(&str, String)>) -> Vec<(String, String)> {
    let mut m: std::collections::BTreeMap<String, String> = base.iter().cloned().collect();
    for kv in attrs {
        m.insert(label_name(&kv.key), any_to_string(kv.value.as_ref()));
    }
    if let Some((k, v)) = extra {
        m.insert(k.to_string(), v);
    }
    m.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

fn ns_to_ms(ns: u64) -> i64 {
    i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
}

fn fmt_bound(b: f64) -> String {
    if b == f64::INFINITY {
        "+Inf".into()
    } else if b == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{b}")
    }
}

const NO_RECORDED_VALUE: u32 = 1;

/// Every data point of a request as Prometheus samples (see the [module docs](self)).
pub fn metrics_to_samples(req: &ExportMetricsServiceRequest) -> Vec<MetricSample> {
    let mut out = Vec::new();
    for rm in &req.resource_metrics {
        let base = resource_labels(rm.resource.as_ref().map_or(&[][..], |r| r.attributes.as_slice()));
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let name = sanitize_name(&m.name);
                let mut push = |metric: String, labels: Vec<(String, String)>, time_ms: i64, value: f64| {
                    out.push(MetricSample { metric, labels, time_ms, value })
                };
                let number = |p: &proto::metrics::v1::NumberDataPoint| match p.value {
                    Some(number_data_point::Value::AsDouble(d)) => Some(d),
                    Some(number_data_point::Value::AsInt(i)) => Some(i as f64),
                    None => None,
                };
                match &m.data {
                    Some(metric::Data::Gauge(g)) => {
                        for p in g.data_points.iter().filter(|p| p.flags & NO_RECORDED_VALUE == 0) {
                            if let Some(v) = number(p) {
                                push(
                                    name.clone(),
                                    point_labels(&base, &p.attributes, None),
                                    ns_to_ms(p.time_unix_nano),
                                    v,
                                );
                            }
                        }
                    }
                    Some(metric::Data::Sum(s)) => {
                        let n = if s.is_monotonic && !name.ends_with("_total") {
                            format!("{name}_total")
                        } else {
                            name.clone()
                        };
                        for p in s.data_points.iter().filter(|p| p.flags & NO_RECORDED_VALUE == 0) {
                            if let Some(v) = number(p) {
                                push(
                                    n.clone(),
                                    point_labels(&base, &p.attributes, None),
                                    ns_to_ms(p.time_unix_nano),
                                    v,
                                );
                            }
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        for p in h.data_points.iter().filter(|p| p.flags & NO_RECORDED_VALUE == 0) {
                            let t = ns_to_ms(p.time_unix_nano);
                            let mut cum = 0u64;
                            for (i, bound) in p.explicit_bounds.iter().enumerate() {
                                cum = cum.saturating_add(p.bucket_counts.get(i).copied().unwrap_or(0));
                                let l = point_labels(&base, &p.attributes, Some(("le", fmt_bound(*bound))));
                                push(format!("{name}_bucket"), l, t, cum as f64);
                            }
                            let l = point_labels(&base, &p.attributes, Some(("le", "+Inf".into())));
                            push(format!("{name}_bucket"), l, t, p.count as f64);
                            push(format!("{name}_count"), point_labels(&base, &p.attributes, None), t, p.count as f64);
                            if let Some(sum) = p.sum {
                                push(format!("{name}_sum"), point_labels(&base, &p.attributes, None), t, sum);
                            }
                        }
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        for p in h.data_points.iter().filter(|p| p.flags & NO_RECORDED_VALUE == 0) {
                            let t = ns_to_ms(p.time_unix_nano);
                            push(format!("{name}_count"), point_labels(&base, &p.attributes, None), t, p.count as f64);
                            if let Some(sum) = p.sum {
                                push(format!("{name}_sum"), point_labels(&base, &p.attributes, None), t, sum);
                            }
                        }
                    }
                    Some(metric::Data::Summary(s)) => {
                        for p in s.data_points.iter().filter(|p| p.flags & NO_RECORDED_VALUE == 0) {
                            let t = ns_to_ms(p.time_unix_nano);
                            for q in &p.quantile_values {
                                let l = point_labels(&base, &p.attributes, Some(("quantile", fmt_bound(q.quantile))));
                                push(name.clone(), l, t, q.value);
                            }
                            push(format!("{name}_count"), point_labels(&base, &p.attributes, None), t, p.count as f64);
                            push(format!("{name}_sum"), point_labels(&base, &p.attributes, None), t, p.sum);
                        }
                    }
                    None => {}
                }
            }
        }
    }
    out
}

// ---------- logs ----------

/// The name of an OpenTelemetry severity number (`INFO` for 9-12, ...), empty for 0.
pub fn severity_name(n: i32) -> &'static str {
    match n {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => "",
    }
}

/// Every log record of a request as `log` rows (see the [module docs](self)).
pub fn logs_to_records(req: &ExportLogsServiceRequest) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for rl in &req.resource_logs {
        let res = rl.resource.as_ref().map_or(&[][..], |r| r.attributes.as_slice());
        let l = [res];
        let service_name = Attrs(&l).str("service.name");
        for sl in &rl.scope_logs {
            let scope = sl.scope.as_ref().map_or("", |s| s.name.as_str());
            for r in &sl.log_records {
                let time_ns = if r.time_unix_nano != 0 { r.time_unix_nano } else { r.observed_time_unix_nano };
                let mut rec = LogRecord {
                    time: time_ns / 1000,
                    observed_time: r.observed_time_unix_nano / 1000,
                    severity_number: u8::try_from(r.severity_number.clamp(0, 255)).unwrap_or(0),
                    severity_text: if r.severity_text.is_empty() {
                        severity_name(r.severity_number).to_string()
                    } else {
                        r.severity_text.clone()
                    },
                    body: any_to_string(r.body.as_ref()),
                    trace_id: hex_id(&r.trace_id),
                    span_id: hex_id(&r.span_id),
                    service_name: service_name.clone(),
                    signal_source: SIGNAL_SOURCE,
                    attribute_names: Vec::new(),
                    attribute_values: Vec::new(),
                };
                for kv in r.attributes.iter().chain(res.iter().filter(|kv| kv.key != "service.name")) {
                    rec.attribute_names.push(kv.key.clone());
                    rec.attribute_values.push(any_to_string(kv.value.as_ref()));
                }
                if !scope.is_empty() {
                    rec.attribute_names.push("otel.scope.name".into());
                    rec.attribute_values.push(scope.into());
                }
                if !r.event_name.is_empty() {
                    rec.attribute_names.push("event.name".into());
                    rec.attribute_values.push(r.event_name.clone());
                }
                out.push(rec);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use proto::common::v1::{ArrayValue, InstrumentationScope};
    use proto::logs::v1::{LogRecord as PbLog, ResourceLogs, ScopeLogs};
    use proto::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    use proto::resource::v1::Resource;
    use proto::trace::v1::{ResourceSpans, ScopeSpans, Status, span};

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }
    fn s(k: &str, v: &str) -> KeyValue {
        kv(k, any_value::Value::StringValue(v.into()))
    }
    fn i(k: &str, v: i64) -> KeyValue {
        kv(k, any_value::Value::IntValue(v))
    }
    fn resource() -> Option<Resource> {
        Some(Resource {
            attributes: vec![s("service.name", "shop"), s("service.instance.id", "i-1")],
            ..Default::default()
        })
    }

    fn traces() -> ExportTraceServiceRequest {
        let tid: Vec<u8> = (1..=16).collect();
        let server = Span {
            trace_id: tid.clone(),
            span_id: vec![0xaa; 8],
            name: "GET /items/{id}".into(),
            kind: 2,
            start_time_unix_nano: 1_714_557_600_000_000_000,
            end_time_unix_nano: 1_714_557_600_002_500_000,
            attributes: vec![
                s("http.method", "GET"),
                s("http.target", "/items/7?x=1"),
                s("http.host", "shop.local:8080"),
                i("http.status_code", 404),
                s("net.peer.ip", "10.0.0.1"),
                i("net.peer.port", 40000),
                s("net.host.ip", "10.0.0.2"),
                i("net.host.port", 8080),
                s("http.flavor", "1.1"),
            ],
            status: Some(Status { code: 2, message: "not found".into() }),
            ..Default::default()
        };
        let db = Span {
            trace_id: tid.clone(),
            span_id: vec![0xbb; 8],
            parent_span_id: vec![0xaa; 8],
            name: "SELECT items".into(),
            kind: 3,
            start_time_unix_nano: 1_714_557_600_001_000_000,
            end_time_unix_nano: 1_714_557_600_001_300_000,
            attributes: vec![
                s("db.system", "mysql"),
                s("db.name", "shop"),
                s("db.statement", "select * from items where id = ?"),
                s("server.address", "10.0.0.3"),
                i("server.port", 3306),
            ],
            events: vec![span::Event {
                name: "exception".into(),
                attributes: vec![s("exception.message", "boom")],
                ..Default::default()
            }],
            ..Default::default()
        };
        let grpc = Span {
            trace_id: tid,
            span_id: vec![0xcc; 8],
            name: "shop.Cart/Add".into(),
            kind: 3,
            attributes: vec![
                s("rpc.system", "grpc"),
                s("rpc.service", "shop.Cart"),
                s("rpc.method", "Add"),
                i("rpc.grpc.status_code", 14),
                kv(
                    "tags",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue { value: Some(any_value::Value::StringValue("a".into())) }],
                    }),
                ),
            ],
            status: Some(Status { code: 2, message: String::new() }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope { name: "test-scope".into(), ..Default::default() }),
                    spans: vec![server, db, grpc],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn spans_map_to_rows() {
        let body = traces().encode_to_vec();
        let req = decode_traces(&body, Encoding::Protobuf).unwrap();
        let rows = spans_to_rows(&req);
        assert_eq!(rows.len(), 3);
        let r = &rows[0];
        assert_eq!(r.signal_source, "otel");
        assert_eq!(r.tap_side, "s-app");
        assert_eq!(r.l7_protocol, L7Protocol::Http1);
        assert_eq!(r.trace_id.as_deref(), Some("0102030405060708090a0b0c0d0e0f10"));
        assert_eq!(r.span_id.as_deref(), Some("aaaaaaaaaaaaaaaa"));
        assert_eq!(r.parent_span_id, None);
        assert_eq!(r.start_time, 1_714_557_600_000_000);
        assert_eq!(r.end_time, 1_714_557_600_002_500);
        assert_eq!(r.rrt, Some(2500));
        assert_eq!(r.endpoint.as_deref(), Some("GET /items/{id}"));
        assert_eq!(r.request_type.as_deref(), Some("GET"));
        assert_eq!(r.request_domain.as_deref(), Some("shop.local:8080"));
        assert_eq!(r.request_resource.as_deref(), Some("/items/7?x=1"));
        assert_eq!(r.version.as_deref(), Some("1.1"));
        assert_eq!(r.response_code, Some(404));
        assert_eq!(r.response_status, ResponseStatus::ClientError);
        assert_eq!(r.response_exception.as_deref(), Some("not found"));
        assert_eq!((r.ip_0.to_string(), r.client_port), ("10.0.0.1".to_string(), 40000));
        assert_eq!((r.ip_1.to_string(), r.server_port), ("10.0.0.2".to_string(), 8080));
        assert_eq!(r.protocol, "TCP");
        assert_eq!(r.attribute("service.name"), Some("shop"));
        assert_eq!(r.attribute("service.instance.id"), Some("i-1"));
        assert_eq!(r.attribute("span_kind"), Some("SPAN_KIND_SERVER"));
        assert_eq!(r.attribute("otel.scope.name"), Some("test-scope"));
        assert_eq!(r.attribute("http.status_code"), Some("404"));

        let d = &rows[1];
        assert_eq!(d.tap_side, "c-app");
        assert_eq!(d.l7_protocol, L7Protocol::MySql);
        assert_eq!(d.parent_span_id.as_deref(), Some("aaaaaaaaaaaaaaaa"));
        assert_eq!(d.request_type.as_deref(), Some("SELECT"));
        assert_eq!(d.request_domain.as_deref(), Some("shop"));
        assert_eq!(d.request_resource.as_deref(), Some("select * from items where id = ?"));
        assert_eq!(d.response_status, ResponseStatus::Ok);
        assert_eq!(d.response_exception.as_deref(), Some("boom"));
        assert_eq!((d.ip_1.to_string(), d.server_port), ("10.0.0.3".to_string(), 3306));
        assert_eq!(d.ip_0.to_string(), "0.0.0.0");

        let g = &rows[2];
        assert_eq!(g.l7_protocol, L7Protocol::Grpc);
        assert_eq!(g.request_resource.as_deref(), Some("shop.Cart/Add"));
        assert_eq!(g.request_type.as_deref(), Some("Add"));
        assert_eq!(g.response_code, Some(14));
        assert_eq!(g.response_status, ResponseStatus::ServerError);
        assert_eq!(g.attribute("tags"), Some("[\"a\"]"));
        assert_eq!(g.rrt, Some(0));
    }

    #[test]
    fn otlp_json_traces() {
        // OTLP JSON: hex ids, int64 as strings, enums as integers, camelCase names
        let j = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
          "scopeSpans":[{"scope":{"name":"s"},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C",
          "spanId":"EEE19B7EC3C1B174","parentSpanId":"EEE19B7EC3C1B173","name":"op","kind":2,
          "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
          "attributes":[{"key":"http.request.method","value":{"stringValue":"POST"}},
                        {"key":"http.response.status_code","value":{"intValue":"503"}},
                        {"key":"url.path","value":{"stringValue":"/a"}},{"key":"url.query","value":{"stringValue":"b=1"}}],
          "status":{"code":2,"message":"down"}}]}]}]}"#;
        let req = decode_traces(j.as_bytes(), Encoding::Json).unwrap();
        let rows = spans_to_rows(&req);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.trace_id.as_deref(), Some("5b8efff798038103d269b633813fc60c"));
        assert_eq!(r.span_id.as_deref(), Some("eee19b7ec3c1b174"));
        assert_eq!(r.parent_span_id.as_deref(), Some("eee19b7ec3c1b173"));
        assert_eq!(r.start_time, 1_544_712_660_000_000);
        assert_eq!(r.rrt, Some(1_000_000));
        assert_eq!(r.request_type.as_deref(), Some("POST"));
        assert_eq!(r.request_resource.as_deref(), Some("/a?b=1"));
        assert_eq!(r.response_code, Some(503));
        assert_eq!(r.response_status, ResponseStatus::ServerError);
        assert_eq!(r.attribute("service.name"), Some("web"));
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(decode_traces(b"\xff\xff\xff\xff", Encoding::Protobuf).is_err());
        assert!(decode_metrics(b"{\"resourceMetrics\":", Encoding::Json).is_err());
        assert!(decode_logs(b"[1,2]", Encoding::Json).is_err());
        assert!(
            decode_traces(
                b"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":\"zz\"}]}]}]}",
                Encoding::Json
            )
            .is_err()
        );
        // an empty body is an empty (valid) request in both encodings
        assert!(decode_traces(b"", Encoding::Protobuf).unwrap().resource_spans.is_empty());
        assert_eq!(Encoding::from_content_type("application/json; charset=utf-8"), Some(Encoding::Json));
        assert_eq!(Encoding::from_content_type("application/x-protobuf"), Some(Encoding::Protobuf));
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }

    #[test]
    fn metrics_map_to_samples() {
        let t = 1_714_557_600_000_000_000u64;
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        Metric {
                            name: "http.requests".into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: vec![NumberDataPoint {
                                    attributes: vec![s("route", "/a")],
                                    time_unix_nano: t,
                                    value: Some(number_data_point::Value::AsInt(7)),
                                    ..Default::default()
                                }],
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "temp".into(),
                            data: Some(metric::Data::Gauge(Gauge {
                                data_points: vec![
                                    NumberDataPoint {
                                        time_unix_nano: t,
                                        value: Some(number_data_point::Value::AsDouble(21.5)),
                                        ..Default::default()
                                    },
                                    NumberDataPoint { time_unix_nano: t, flags: 1, ..Default::default() },
                                ],
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "latency".into(),
                            data: Some(metric::Data::Histogram(Histogram {
                                data_points: vec![HistogramDataPoint {
                                    time_unix_nano: t,
                                    count: 6,
                                    sum: Some(12.5),
                                    bucket_counts: vec![1, 2, 3],
                                    explicit_bounds: vec![0.5, 10.0],
                                    ..Default::default()
                                }],
                                aggregation_temporality: 2,
                            })),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let req = decode_metrics(&req.encode_to_vec(), Encoding::Protobuf).unwrap();
        let out = metrics_to_samples(&req);
        let show: Vec<String> = out
            .iter()
            .map(|s| {
                let l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{}{{{}}} {} {}", s.metric, l.join(","), s.time_ms, s.value)
            })
            .collect();
        // labels sorted by name
        let (a, b) = ("instance=i-1,job=shop", "service_instance_id=i-1,service_name=shop");
        assert_eq!(
            show,
            vec![
                format!("http_requests_total{{{a},route=/a,{b}}} 1714557600000 7"),
                format!("temp{{{a},{b}}} 1714557600000 21.5"),
                format!("latency_bucket{{{a},le=0.5,{b}}} 1714557600000 1"),
                format!("latency_bucket{{{a},le=10,{b}}} 1714557600000 3"),
                format!("latency_bucket{{{a},le=+Inf,{b}}} 1714557600000 6"),
                format!("latency_count{{{a},{b}}} 1714557600000 6"),
                format!("latency_sum{{{a},{b}}} 1714557600000 12.5"),
            ]
        );
        assert_eq!(sanitize_name("1a.b-c:d"), "_1a_b_c:d");
    }

    #[test]
    fn logs_map_to_records() {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope { name: "app.logger".into(), ..Default::default() }),
                    log_records: vec![
                        PbLog {
                            time_unix_nano: 1_714_557_600_123_456_789,
                            observed_time_unix_nano: 1_714_557_601_000_000_000,
                            severity_number: 13,
                            severity_text: "WARNING".into(),
                            body: Some(AnyValue { value: Some(any_value::Value::StringValue("disk low".into())) }),
                            attributes: vec![i("free_mb", 12)],
                            trace_id: vec![0x11; 16],
                            span_id: vec![0x22; 8],
                            ..Default::default()
                        },
                        PbLog {
                            observed_time_unix_nano: 1_714_557_602_000_000_000,
                            severity_number: 17,
                            body: Some(AnyValue { value: Some(any_value::Value::IntValue(5)) }),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let req = decode_logs(&req.encode_to_vec(), Encoding::Protobuf).unwrap();
        let out = logs_to_records(&req);
        assert_eq!(out.len(), 2);
        let a = &out[0];
        assert_eq!(a.time, 1_714_557_600_123_456);
        assert_eq!(a.observed_time, 1_714_557_601_000_000);
        assert_eq!((a.severity_number, a.severity_text.as_str()), (13, "WARNING"));
        assert_eq!(a.body, "disk low");
        assert_eq!(a.trace_id.as_deref(), Some("11111111111111111111111111111111"));
        assert_eq!(a.span_id.as_deref(), Some("2222222222222222"));
        assert_eq!(a.service_name.as_deref(), Some("shop"));
        assert_eq!(a.attribute("free_mb"), Some("12"));
        assert_eq!(a.attribute("service.instance.id"), Some("i-1"));
        assert_eq!(a.attribute("service.name"), None);
        assert_eq!(a.attribute("otel.scope.name"), Some("app.logger"));
        let b = &out[1];
        assert_eq!(b.time, 1_714_557_602_000_000);
        assert_eq!(b.severity_text, "ERROR");
        assert_eq!(b.body, "5");
        assert_eq!(b.trace_id, None);
    }
}
