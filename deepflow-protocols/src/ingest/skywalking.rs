//! SkyWalking trace segments (`skywalking.v3.SegmentObject`) → `l7_flow_log` rows.
//!
//! Accepts the two shapes SkyWalking agents send:
//! - JSON, as posted to the OAP's HTTP receiver (`POST /v3/segment` with one segment object,
//!   `POST /v3/segments` with an array): [`parse_json_segments`]. Numbers may be JSON numbers or
//!   strings (protobuf's JSON mapping writes int64 as strings) and enums names (`"Entry"`) or
//!   numbers (`0`).
//! - protobuf, as streamed to `TraceSegmentReportService/collect` over gRPC:
//!   [`proto::SegmentObject`] (prost), converted with `Segment::from`.
//!
//! Each span becomes one row ([`segment_to_rows`]):
//!
//! | column | value |
//! |---|---|
//! | `signal_source` | `skywalking` ([`SIGNAL_SOURCE`]; DeepFlow itself stores SkyWalking spans it converted to OpenTelemetry as `otel`) |
//! | `type` | `session` |
//! | `tap_side` | `s-app` (Entry span), `c-app` (Exit), `app` (Local): DeepFlow's names for application spans |
//! | `start_time`, `end_time`, `rrt` | `startTime`, `endTime` (ms → µs), their difference |
//! | `trace_id` | `traceId` |
//! | `span_id` | `<traceSegmentId>-<spanId>` |
//! | `parent_span_id` | `<traceSegmentId>-<parentSpanId>` when that span is in the segment; else the first reference's `<parentTraceSegmentId>-<parentSpanId>` (cross-process or cross-thread parent, same trace); else null (a root: never a parent that cannot exist) |
//! | `l7_protocol` | `http` for the Http layer; Database/Cache from the `db.type`/`cache.type` tag; MQ/RPC from the component id (Kafka, RabbitMQ → `amqp`, RocketMQ, Pulsar, gRPC, Dubbo); `unknown` otherwise |
//! | `request_type` | `http.method`; for databases the statement's first keyword |
//! | `request_domain` | host[:port] of `http.url`, else `db.instance`, else the Exit span's `peer` |
//! | `request_resource` | path and query of `http.url`, else `db.statement`, else `mq.topic`/`mq.queue`, else `operationName` |
//! | `endpoint` | `operationName` |
//! | `response_code` | `http.status_code` (or `status_code`, `rpc.status_code`) |
//! | `response_status` | from the code (4xx client_error, 5xx server_error), else `isError` → server_error, else ok |
//! | `response_exception` | the `error.kind`/`message` of the span's logs |
//! | `ip_0`/`client_port` | Entry span: `peer` (the caller's address) |
//! | `ip_1`/`server_port` | Exit span: `peer`; Entry span: the reference's `networkAddressUsedAtPeer` |
//! | `attribute_names/values` | `app_service`, `app_instance`, `span_kind`, `span_layer`, `component_id`, `peer`, `parent_service`, `parent_endpoint`, then every tag as sent |
//!
//! Addresses that are not `ip:port` (host names) leave the IP unspecified (`0.0.0.0`).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use deepflow_core::FlowInfo;
use deepflow_core::record::{L7FlowLog, L7Protocol, LogType, ResponseStatus};
use serde_json::Value;

/// `signal_source` of the rows made from SkyWalking segments.
pub const SIGNAL_SOURCE: &str = "skywalking";

/// Why a payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The body is not a `SegmentObject` protobuf.
    #[error("invalid protobuf: {0}")]
    Protobuf(String),
    /// Valid JSON/protobuf that is not a segment (missing ids, wrong types, ...).
    #[error("invalid segment: {0}")]
    Segment(String),
}

/// Span type (`skywalking.v3.SpanType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpanType {
    /// A server span: the process received a request.
    #[default]
    Entry,
    /// A client span: the process sent a request.
    Exit,
    /// In-process work.
    Local,
}

impl SpanType {
    fn from_code(v: i64) -> Option<SpanType> {
        Some(match v {
            0 => SpanType::Entry,
            1 => SpanType::Exit,
            2 => SpanType::Local,
            _ => return None,
        })
    }

    fn from_name(s: &str) -> Option<SpanType> {
        Some(match s {
            "Entry" | "ENTRY" | "entry" => SpanType::Entry,
            "Exit" | "EXIT" | "exit" => SpanType::Exit,
            "Local" | "LOCAL" | "local" => SpanType::Local,
            _ => return None,
        })
    }

    /// `Entry`, `Exit` or `Local`.
    pub fn name(self) -> &'static str {
        match self {
            SpanType::Entry => "Entry",
            SpanType::Exit => "Exit",
            SpanType::Local => "Local",
        }
    }
}

/// Span layer (`skywalking.v3.SpanLayer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpanLayer {
    /// Not set.
    #[default]
    Unknown,
    /// A database call.
    Database,
    /// An RPC framework (gRPC, Dubbo, ...).
    RpcFramework,
    /// HTTP.
    Http,
    /// A message queue.
    Mq,
    /// A cache (Redis, Memcached, ...).
    Cache,
    /// Function as a service.
    Faas,
}

impl SpanLayer {
    fn from_code(v: i64) -> Option<SpanLayer> {
        Some(match v {
            0 => SpanLayer::Unknown,
            1 => SpanLayer::Database,
            2 => SpanLayer::RpcFramework,
            3 => SpanLayer::Http,
            4 => SpanLayer::Mq,
            5 => SpanLayer::Cache,
            6 => SpanLayer::Faas,
            _ => return None,
        })
    }

    fn from_name(s: &str) -> Option<SpanLayer> {
        Some(match s {
            "Unknown" => SpanLayer::Unknown,
            "Database" => SpanLayer::Database,
            "RPCFramework" => SpanLayer::RpcFramework,
            "Http" => SpanLayer::Http,
            "MQ" => SpanLayer::Mq,
            "Cache" => SpanLayer::Cache,
            "FAAS" => SpanLayer::Faas,
            _ => return None,
        })
    }

    /// SkyWalking's name (`Http`, `Database`, `RPCFramework`, `MQ`, `Cache`, `FAAS`, `Unknown`).
    pub fn name(self) -> &'static str {
        match self {
            SpanLayer::Unknown => "Unknown",
            SpanLayer::Database => "Database",
            SpanLayer::RpcFramework => "RPCFramework",
            SpanLayer::Http => "Http",
            SpanLayer::Mq => "MQ",
            SpanLayer::Cache => "Cache",
            SpanLayer::Faas => "FAAS",
        }
    }
}

/// A reference from a span to its parent in another segment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentRef {
    /// True for `CrossThread` (same process), false for `CrossProcess`.
    pub cross_thread: bool,
    /// Trace of the parent (normally the segment's own trace).
    pub trace_id: String,
    /// Segment of the parent span.
    pub parent_segment_id: String,
    /// Parent span id within that segment.
    pub parent_span_id: i32,
    /// Service of the parent.
    pub parent_service: String,
    /// Service instance of the parent.
    pub parent_service_instance: String,
    /// Endpoint (operation) of the parent.
    pub parent_endpoint: String,
    /// The address the caller used to reach this process (`ip:port` or host).
    pub network_address_used_at_peer: String,
}

/// One span of a segment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Span {
    /// Id within the segment (0 = the segment's first span).
    pub span_id: i32,
    /// Parent span id within the segment, -1 for none.
    pub parent_span_id: i32,
    /// Start, ms since the epoch.
    pub start_time_ms: i64,
    /// End, ms since the epoch.
    pub end_time_ms: i64,
    /// References to parents in other segments.
    pub refs: Vec<SegmentRef>,
    /// Operation (endpoint) name.
    pub operation_name: String,
    /// The remote address (`ip:port` or host), empty if none.
    pub peer: String,
    /// Entry, Exit or Local.
    pub span_type: SpanType,
    /// Layer.
    pub span_layer: SpanLayer,
    /// SkyWalking component id (`component-libraries.yml`).
    pub component_id: i32,
    /// The span failed.
    pub is_error: bool,
    /// Tags in the order sent.
    pub tags: Vec<(String, String)>,
    /// Logs: time (ms) and key/value pairs.
    pub logs: Vec<(i64, Vec<(String, String)>)>,
}

impl Span {
    /// The value of tag `key` (the first one).
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A trace segment: the spans one process (thread) recorded for one trace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Segment {
    /// Trace id.
    pub trace_id: String,
    /// Segment id (unique).
    pub segment_id: String,
    /// Service name.
    pub service: String,
    /// Service instance name.
    pub service_instance: String,
    /// Spans.
    pub spans: Vec<Span>,
}

// ---------- JSON ----------

fn field<'a>(o: &'a serde_json::Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| o.get(*n)).filter(|v| !v.is_null())
}

fn str_of(o: &serde_json::Map<String, Value>, names: &[&str], what: &str) -> Result<String, DecodeError> {
    match field(o, names) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(v) => Err(DecodeError::Segment(format!("{what}: expected a string, got {v}"))),
    }
}

fn int_of(o: &serde_json::Map<String, Value>, names: &[&str], default: i64, what: &str) -> Result<i64, DecodeError> {
    let bad = |v: &Value| DecodeError::Segment(format!("{what}: expected an integer, got {v}"));
    match field(o, names) {
        None => Ok(default),
        Some(v @ Value::Number(n)) => n.as_i64().ok_or_else(|| bad(v)),
        Some(v @ Value::String(s)) => s.trim().parse::<i64>().map_err(|_| bad(v)),
        Some(v) => Err(bad(v)),
    }
}

fn i32_of(o: &serde_json::Map<String, Value>, names: &[&str], default: i32, what: &str) -> Result<i32, DecodeError> {
    let v = int_of(o, names, i64::from(default), what)?;
    i32::try_from(v).map_err(|_| DecodeError::Segment(format!("{what}: {v} is out of range")))
}

fn bool_of(o: &serde_json::Map<String, Value>, names: &[&str], what: &str) -> Result<bool, DecodeError> {
    match field(o, names) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(v) => Err(DecodeError::Segment(format!("{what}: expected a boolean, got {v}"))),
    }
}

fn enum_of<T>(
    o: &serde_json::Map<String, Value>,
    names: &[&str],
    default: T,
    from_code: fn(i64) -> Option<T>,
    from_name: fn(&str) -> Option<T>,
    what: &str,
) -> Result<T, DecodeError> {
    let bad = |v: &Value| DecodeError::Segment(format!("{what}: unknown value {v}"));
    match field(o, names) {
        None => Ok(default),
        Some(v @ Value::Number(n)) => n.as_i64().and_then(from_code).ok_or_else(|| bad(v)),
        Some(v @ Value::String(s)) => {
            from_name(s).or_else(|| s.parse::<i64>().ok().and_then(from_code)).ok_or_else(|| bad(v))
        }
        Some(v) => Err(bad(v)),
    }
}

fn array_of<'a>(o: &'a serde_json::Map<String, Value>, names: &[&str], what: &str) -> Result<&'a [Value], DecodeError> {
    match field(o, names) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(DecodeError::Segment(format!("{what}: expected an array, got {v}"))),
    }
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a serde_json::Map<String, Value>, DecodeError> {
    v.as_object().ok_or_else(|| DecodeError::Segment(format!("{what}: expected an object, got {v}")))
}

fn pairs(list: &[Value], what: &str) -> Result<Vec<(String, String)>, DecodeError> {
    list.iter()
        .map(|p| {
            let o = object(p, what)?;
            Ok((str_of(o, &["key"], what)?, str_of(o, &["value"], what)?))
        })
        .collect()
}

fn ref_from_json(v: &Value) -> Result<SegmentRef, DecodeError> {
    let o = object(v, "refs[]")?;
    let cross_thread = enum_of(
        o,
        &["refType", "ref_type"],
        false,
        |c| match c {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        },
        |s| match s {
            "CrossProcess" => Some(false),
            "CrossThread" => Some(true),
            _ => None,
        },
        "refType",
    )?;
    Ok(SegmentRef {
        cross_thread,
        trace_id: str_of(o, &["traceId", "trace_id"], "refs.traceId")?,
        parent_segment_id: str_of(o, &["parentTraceSegmentId", "parent_trace_segment_id"], "parentTraceSegmentId")?,
        parent_span_id: i32_of(o, &["parentSpanId", "parent_span_id"], -1, "refs.parentSpanId")?,
        parent_service: str_of(o, &["parentService", "parent_service"], "parentService")?,
        parent_service_instance: str_of(
            o,
            &["parentServiceInstance", "parent_service_instance"],
            "parentServiceInstance",
        )?,
        parent_endpoint: str_of(o, &["parentEndpoint", "parent_endpoint"], "parentEndpoint")?,
        network_address_used_at_peer: str_of(
            o,
            &["networkAddressUsedAtPeer", "network_address_used_at_peer"],
            "networkAddressUsedAtPeer",
        )?,
    })
}

fn span_from_json(v: &Value) -> Result<Span, DecodeError> {
    let o = object(v, "spans[]")?;
    let logs = array_of(o, &["logs"], "logs")?
        .iter()
        .map(|l| {
            let lo = object(l, "logs[]")?;
            Ok((int_of(lo, &["time"], 0, "logs.time")?, pairs(array_of(lo, &["data"], "logs.data")?, "logs.data[]")?))
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    Ok(Span {
        span_id: i32_of(o, &["spanId", "span_id"], 0, "spanId")?,
        parent_span_id: i32_of(o, &["parentSpanId", "parent_span_id"], -1, "parentSpanId")?,
        start_time_ms: int_of(o, &["startTime", "start_time"], 0, "startTime")?,
        end_time_ms: int_of(o, &["endTime", "end_time"], 0, "endTime")?,
        refs: array_of(o, &["refs"], "refs")?.iter().map(ref_from_json).collect::<Result<_, _>>()?,
        operation_name: str_of(o, &["operationName", "operation_name"], "operationName")?,
        peer: str_of(o, &["peer"], "peer")?,
        span_type: enum_of(
            o,
            &["spanType", "span_type"],
            SpanType::Entry,
            SpanType::from_code,
            SpanType::from_name,
            "spanType",
        )?,
        span_layer: enum_of(
            o,
            &["spanLayer", "span_layer"],
            SpanLayer::Unknown,
            SpanLayer::from_code,
            SpanLayer::from_name,
            "spanLayer",
        )?,
        component_id: i32_of(o, &["componentId", "component_id"], 0, "componentId")?,
        is_error: bool_of(o, &["isError", "is_error"], "isError")?,
        tags: pairs(array_of(o, &["tags"], "tags")?, "tags[]")?,
        logs,
    })
}

/// One segment from a JSON object.
pub fn segment_from_json(v: &Value) -> Result<Segment, DecodeError> {
    let o = object(v, "segment")?;
    let seg = Segment {
        trace_id: str_of(o, &["traceId", "trace_id"], "traceId")?,
        segment_id: str_of(o, &["traceSegmentId", "trace_segment_id"], "traceSegmentId")?,
        service: str_of(o, &["service"], "service")?,
        service_instance: str_of(o, &["serviceInstance", "service_instance"], "serviceInstance")?,
        spans: array_of(o, &["spans"], "spans")?.iter().map(span_from_json).collect::<Result<_, _>>()?,
    };
    seg.validate()?;
    Ok(seg)
}

/// Segments from a JSON body: an array of segment objects (`/v3/segments`) or one object
/// (`/v3/segment`).
pub fn parse_json_segments(body: &[u8]) -> Result<Vec<Segment>, DecodeError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    match &v {
        Value::Array(a) => a.iter().map(segment_from_json).collect(),
        Value::Object(_) => Ok(vec![segment_from_json(&v)?]),
        other => Err(DecodeError::Segment(format!("expected a segment object or an array of them, got {other}"))),
    }
}

/// Rows from a JSON body (see [`parse_json_segments`]).
pub fn decode_json(body: &[u8]) -> Result<Vec<L7FlowLog>, DecodeError> {
    Ok(parse_json_segments(body)?.iter().flat_map(segment_to_rows).collect())
}

impl Segment {
    /// Checks the ids the rows need.
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.trace_id.is_empty() {
            return Err(DecodeError::Segment("missing traceId".into()));
        }
        if self.segment_id.is_empty() {
            return Err(DecodeError::Segment("missing traceSegmentId".into()));
        }
        Ok(())
    }
}

// ---------- protobuf ----------

/// prost messages of `skywalking/v3` (`language-agent/Tracing.proto`, `common/Common.proto`,
/// `common/Command.proto`): what the gRPC reporter sends to `TraceSegmentReportService`.
pub mod proto {
    /// `skywalking.v3.SegmentObject`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SegmentObject {
        /// Trace id.
        #[prost(string, tag = "1")]
        pub trace_id: String,
        /// Segment id.
        #[prost(string, tag = "2")]
        pub trace_segment_id: String,
        /// Spans.
        #[prost(message, repeated, tag = "3")]
        pub spans: Vec<SpanObject>,
        /// Service name.
        #[prost(string, tag = "4")]
        pub service: String,
        /// Service instance.
        #[prost(string, tag = "5")]
        pub service_instance: String,
        /// The agent dropped spans over its limit.
        #[prost(bool, tag = "6")]
        pub is_size_limited: bool,
    }

    /// `skywalking.v3.SegmentReference`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SegmentReference {
        /// 0 CrossProcess, 1 CrossThread.
        #[prost(int32, tag = "1")]
        pub ref_type: i32,
        /// Trace id.
        #[prost(string, tag = "2")]
        pub trace_id: String,
        /// Parent segment.
        #[prost(string, tag = "3")]
        pub parent_trace_segment_id: String,
        /// Parent span in that segment.
        #[prost(int32, tag = "4")]
        pub parent_span_id: i32,
        /// Parent service.
        #[prost(string, tag = "5")]
        pub parent_service: String,
        /// Parent service instance.
        #[prost(string, tag = "6")]
        pub parent_service_instance: String,
        /// Parent endpoint.
        #[prost(string, tag = "7")]
        pub parent_endpoint: String,
        /// Address the caller used.
        #[prost(string, tag = "8")]
        pub network_address_used_at_peer: String,
    }

    /// `skywalking.v3.SpanObject`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SpanObject {
        /// Span id.
        #[prost(int32, tag = "1")]
        pub span_id: i32,
        /// Parent span id (-1 none).
        #[prost(int32, tag = "2")]
        pub parent_span_id: i32,
        /// Start, ms.
        #[prost(int64, tag = "3")]
        pub start_time: i64,
        /// End, ms.
        #[prost(int64, tag = "4")]
        pub end_time: i64,
        /// Cross-segment parents.
        #[prost(message, repeated, tag = "5")]
        pub refs: Vec<SegmentReference>,
        /// Operation name.
        #[prost(string, tag = "6")]
        pub operation_name: String,
        /// Peer address.
        #[prost(string, tag = "7")]
        pub peer: String,
        /// 0 Entry, 1 Exit, 2 Local.
        #[prost(int32, tag = "8")]
        pub span_type: i32,
        /// 0 Unknown, 1 Database, 2 RPCFramework, 3 Http, 4 MQ, 5 Cache, 6 FAAS.
        #[prost(int32, tag = "9")]
        pub span_layer: i32,
        /// Component id.
        #[prost(int32, tag = "10")]
        pub component_id: i32,
        /// Failed.
        #[prost(bool, tag = "11")]
        pub is_error: bool,
        /// Tags.
        #[prost(message, repeated, tag = "12")]
        pub tags: Vec<KeyStringValuePair>,
        /// Logs.
        #[prost(message, repeated, tag = "13")]
        pub logs: Vec<Log>,
        /// Skip analysis in the OAP.
        #[prost(bool, tag = "14")]
        pub skip_analysis: bool,
    }

    /// `skywalking.v3.KeyStringValuePair`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyStringValuePair {
        /// Key.
        #[prost(string, tag = "1")]
        pub key: String,
        /// Value.
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `skywalking.v3.Log`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Log {
        /// Time, ms.
        #[prost(int64, tag = "1")]
        pub time: i64,
        /// Data.
        #[prost(message, repeated, tag = "2")]
        pub data: Vec<KeyStringValuePair>,
    }

    /// `skywalking.v3.SegmentCollection` (`collectInSync`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SegmentCollection {
        /// Segments.
        #[prost(message, repeated, tag = "1")]
        pub segments: Vec<SegmentObject>,
    }

    /// `skywalking.v3.Commands`: the reply (empty: no commands for the agent).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Commands {
        /// Commands.
        #[prost(message, repeated, tag = "1")]
        pub commands: Vec<Command>,
    }

    /// `skywalking.v3.Command`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Command {
        /// Command name.
        #[prost(string, tag = "1")]
        pub command: String,
        /// Arguments.
        #[prost(message, repeated, tag = "2")]
        pub args: Vec<KeyStringValuePair>,
    }
}

fn kv(p: proto::KeyStringValuePair) -> (String, String) {
    (p.key, p.value)
}

impl From<proto::SegmentObject> for Segment {
    fn from(s: proto::SegmentObject) -> Segment {
        Segment {
            trace_id: s.trace_id,
            segment_id: s.trace_segment_id,
            service: s.service,
            service_instance: s.service_instance,
            spans: s
                .spans
                .into_iter()
                .map(|sp| Span {
                    span_id: sp.span_id,
                    parent_span_id: sp.parent_span_id,
                    start_time_ms: sp.start_time,
                    end_time_ms: sp.end_time,
                    refs: sp
                        .refs
                        .into_iter()
                        .map(|r| SegmentRef {
                            cross_thread: r.ref_type == 1,
                            trace_id: r.trace_id,
                            parent_segment_id: r.parent_trace_segment_id,
                            parent_span_id: r.parent_span_id,
                            parent_service: r.parent_service,
                            parent_service_instance: r.parent_service_instance,
                            parent_endpoint: r.parent_endpoint,
                            network_address_used_at_peer: r.network_address_used_at_peer,
                        })
                        .collect(),
                    operation_name: sp.operation_name,
                    peer: sp.peer,
                    span_type: SpanType::from_code(i64::from(sp.span_type)).unwrap_or(SpanType::Local),
                    span_layer: SpanLayer::from_code(i64::from(sp.span_layer)).unwrap_or_default(),
                    component_id: sp.component_id,
                    is_error: sp.is_error,
                    tags: sp.tags.into_iter().map(kv).collect(),
                    logs: sp.logs.into_iter().map(|l| (l.time, l.data.into_iter().map(kv).collect())).collect(),
                })
                .collect(),
        }
    }
}

/// One segment from its protobuf encoding.
pub fn decode_proto_segment(bytes: &[u8]) -> Result<Segment, DecodeError> {
    let s =
        <proto::SegmentObject as prost::Message>::decode(bytes).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    let seg = Segment::from(s);
    seg.validate()?;
    Ok(seg)
}

// ---------- rows ----------

fn socket(s: &str) -> Option<SocketAddr> {
    s.trim().parse::<SocketAddr>().ok()
}

/// `(authority, path?query)` of an absolute URL; a URL without scheme is all path.
fn split_url(url: &str) -> (Option<&str>, &str) {
    match url.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => (rest.get(..i), rest.get(i..).unwrap_or("/")),
            None => (Some(rest), "/"),
        },
        None => (None, url),
    }
}

/// l7_protocol of a span from its layer, tags and component id.
fn protocol_of(sp: &Span) -> L7Protocol {
    let by_tag = |keys: &[&str]| {
        keys.iter().find_map(|k| sp.tag(k)).and_then(|v| {
            let v = v.to_ascii_lowercase();
            match v.as_str() {
                "postgres" | "postgresql" | "psycopg" => Some(L7Protocol::PostgreSql),
                "mongo" | "mongodb" => Some(L7Protocol::MongoDb),
                other => L7Protocol::from_name(other),
            }
        })
    };
    match sp.span_layer {
        SpanLayer::Http => L7Protocol::Http1,
        SpanLayer::Database => by_tag(&["db.type", "db.system"]).unwrap_or_default(),
        SpanLayer::Cache => by_tag(&["cache.type", "db.type"]).unwrap_or(L7Protocol::Redis),
        SpanLayer::Mq | SpanLayer::RpcFramework | SpanLayer::Unknown | SpanLayer::Faas => {
            // component ids from SkyWalking's component-libraries.yml
            match sp.component_id {
                40 | 41 | 7014 => L7Protocol::Kafka,
                51 | 52 | 7015 => L7Protocol::Amqp,
                38 | 39 => L7Protocol::RocketMq,
                73 | 74 => L7Protocol::Pulsar,
                23 | 7016 => L7Protocol::Grpc,
                3 => L7Protocol::Dubbo,
                _ => L7Protocol::Unknown,
            }
        }
    }
}

fn status_of(code: Option<i32>, is_error: bool) -> ResponseStatus {
    match code {
        Some(c) if (500..600).contains(&c) => ResponseStatus::ServerError,
        Some(c) if (400..500).contains(&c) => ResponseStatus::ClientError,
        _ if is_error => ResponseStatus::ServerError,
        _ => ResponseStatus::Ok,
    }
}

fn exception_of(sp: &Span) -> Option<String> {
    let find = |k: &str| sp.logs.iter().flat_map(|(_, d)| d).find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    match (find("error.kind"), find("message")) {
        (Some(k), Some(m)) => Some(format!("{k}: {m}")),
        (Some(x), None) | (None, Some(x)) => Some(x.to_string()),
        (None, None) => None,
    }
}

/// The rows of one segment: one `session` row per span (see the [module docs](self)).
pub fn segment_to_rows(seg: &Segment) -> Vec<L7FlowLog> {
    let ids: HashSet<i32> = seg.spans.iter().map(|s| s.span_id).collect();
    let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let flow = FlowInfo {
        flow_id: 0,
        protocol: 6,
        client_ip: unspecified,
        server_ip: unspecified,
        client_port: 0,
        server_port: 0,
        tunnel: Default::default(),
        start_time_us: 0,
    };
    seg.spans
        .iter()
        .map(|sp| {
            let proto = protocol_of(sp);
            let mut r = L7FlowLog::new(&flow, proto, LogType::Session);
            r.signal_source = SIGNAL_SOURCE;
            r.tap_side = match sp.span_type {
                SpanType::Entry => "s-app",
                SpanType::Exit => "c-app",
                SpanType::Local => "app",
            };
            let start = u64::try_from(sp.start_time_ms).unwrap_or(0).saturating_mul(1000);
            let end = u64::try_from(sp.end_time_ms).unwrap_or(0).saturating_mul(1000).max(start);
            r.start_time = start;
            r.end_time = end;
            r.rrt = Some(end - start);
            r.trace_id = Some(seg.trace_id.clone());
            r.span_id = Some(format!("{}-{}", seg.segment_id, sp.span_id));
            let first_ref = sp.refs.iter().find(|x| !x.parent_segment_id.is_empty() && x.parent_span_id >= 0);
            r.parent_span_id =
                if sp.parent_span_id >= 0 && sp.parent_span_id != sp.span_id && ids.contains(&sp.parent_span_id) {
                    Some(format!("{}-{}", seg.segment_id, sp.parent_span_id))
                } else {
                    first_ref
                        .filter(|x| x.trace_id.is_empty() || x.trace_id == seg.trace_id)
                        .map(|x| format!("{}-{}", x.parent_segment_id, x.parent_span_id))
                };
            // addresses
            match sp.span_type {
                SpanType::Exit => {
                    if let Some(a) = socket(&sp.peer) {
                        r.ip_1 = a.ip();
                        r.server_port = a.port();
                    }
                }
                SpanType::Entry => {
                    if let Some(a) = socket(&sp.peer) {
                        r.ip_0 = a.ip();
                        r.client_port = a.port();
                    }
                    if let Some(a) = sp.refs.first().and_then(|x| socket(&x.network_address_used_at_peer)) {
                        r.ip_1 = a.ip();
                        r.server_port = a.port();
                    }
                }
                SpanType::Local => {}
            }
            // request
            let url = sp.tag("http.url").or_else(|| sp.tag("url"));
            let (authority, path) = match url {
                Some(u) => {
                    let (a, p) = split_url(u);
                    (a, Some(p))
                }
                None => (None, None),
            };
            let statement = sp.tag("db.statement");
            r.request_type = sp
                .tag("http.method")
                .map(str::to_string)
                .or_else(|| statement.and_then(|s| s.split_whitespace().next()).map(|w| w.to_ascii_uppercase()));
            r.request_domain = authority
                .map(str::to_string)
                .or_else(|| sp.tag("db.instance").map(str::to_string))
                .or_else(|| (sp.span_type == SpanType::Exit && !sp.peer.is_empty()).then(|| sp.peer.clone()));
            r.request_resource = path
                .or(statement)
                .or_else(|| sp.tag("mq.topic"))
                .or_else(|| sp.tag("mq.queue"))
                .map(str::to_string)
                .or_else(|| (!sp.operation_name.is_empty()).then(|| sp.operation_name.clone()));
            r.endpoint = (!sp.operation_name.is_empty()).then(|| sp.operation_name.clone());
            r.response_code = ["http.status_code", "status_code", "rpc.status_code"]
                .iter()
                .find_map(|k| sp.tag(k))
                .and_then(|v| v.trim().parse::<i32>().ok());
            r.response_status = status_of(r.response_code, sp.is_error);
            r.response_exception = exception_of(sp);
            if proto == L7Protocol::Http1 {
                r.version = Some("1.1".into());
            }
            // attributes
            let mut attr = |k: &str, v: &str| {
                r.attribute_names.push(k.to_string());
                r.attribute_values.push(v.to_string());
            };
            attr("app_service", &seg.service);
            attr("app_instance", &seg.service_instance);
            attr("span_kind", sp.span_type.name());
            attr("span_layer", sp.span_layer.name());
            attr("component_id", &sp.component_id.to_string());
            if !sp.peer.is_empty() {
                attr("peer", &sp.peer);
            }
            if let Some(x) = sp.refs.first() {
                if !x.parent_service.is_empty() {
                    attr("parent_service", &x.parent_service);
                }
                if !x.parent_endpoint.is_empty() {
                    attr("parent_endpoint", &x.parent_endpoint);
                }
                if !x.trace_id.is_empty() && x.trace_id != seg.trace_id {
                    attr("link_trace_id", &x.trace_id);
                }
            }
            for (k, v) in &sp.tags {
                attr(k, v);
            }
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What apache-skywalking 1.2.0 (Python, protocol http) posted to `/v3/segment` for a
    /// `urllib` request from `sw-frontend` to an `http.server` in `sw-backend`.
    const BACKEND: &str = r#"{"traceId": "ef9853c8e8bb11f1998c02fc00000001", "traceSegmentId": "ef989f0ee8bb11f1a06a02fc00000001", "service": "sw-backend", "serviceInstance": "backend-1", "isSizeLimited": false, "spans": [{"spanId": 0, "parentSpanId": -1, "startTime": 1795602930148, "endTime": 1795602930148, "operationName": "/hello", "peer": "127.0.0.1:40580", "spanType": "Entry", "spanLayer": "Http", "componentId": 7000, "isError": false, "logs": [], "tags": [{"key": "http.method", "value": "GET"}, {"key": "http.url", "value": "http://127.0.0.1:38027/hello?x=1"}, {"key": "http.status_code", "value": "200"}], "refs": [{"refType": 0, "traceId": "ef9853c8e8bb11f1998c02fc00000001", "parentTraceSegmentId": "ef98529ce8bb11f1998c02fc00000001", "parentSpanId": 1, "parentService": "sw-frontend", "parentServiceInstance": "frontend-1", "parentEndpoint": "/hello", "networkAddressUsedAtPeer": "127.0.0.1:38027"}]}]}"#;
    const FRONTEND: &str = r#"{"traceId": "ef9853c8e8bb11f1998c02fc00000001", "traceSegmentId": "ef98529ce8bb11f1998c02fc00000001", "service": "sw-frontend", "serviceInstance": "frontend-1", "isSizeLimited": false, "spans": [{"spanId": 1, "parentSpanId": 0, "startTime": 1795602930146, "endTime": 1795602930148, "operationName": "/hello", "peer": "127.0.0.1:38027", "spanType": "Exit", "spanLayer": "Http", "componentId": 7000, "isError": false, "logs": [], "tags": [{"key": "http.method", "value": "GET"}, {"key": "http.url", "value": "http://127.0.0.1:38027/hello?x=1"}, {"key": "http.status_code", "value": "200"}], "refs": []}, {"spanId": 0, "parentSpanId": -1, "startTime": 1795602930146, "endTime": 1795602930149, "operationName": "client-work", "peer": null, "spanType": "Local", "spanLayer": "Unknown", "componentId": 0, "isError": false, "logs": [], "tags": [], "refs": []}]}"#;

    #[test]
    fn python_agent_segments() {
        let back = decode_json(BACKEND.as_bytes()).unwrap();
        let front = decode_json(format!("[{FRONTEND}]").as_bytes()).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(front.len(), 2);
        let entry = &back[0];
        assert_eq!(entry.signal_source, "skywalking");
        assert_eq!(entry.tap_side, "s-app");
        assert_eq!(entry.trace_id.as_deref(), Some("ef9853c8e8bb11f1998c02fc00000001"));
        assert_eq!(entry.span_id.as_deref(), Some("ef989f0ee8bb11f1a06a02fc00000001-0"));
        // cross-segment: the frontend's exit span
        assert_eq!(entry.parent_span_id.as_deref(), Some("ef98529ce8bb11f1998c02fc00000001-1"));
        assert_eq!(entry.l7_protocol, L7Protocol::Http1);
        assert_eq!(entry.request_type.as_deref(), Some("GET"));
        assert_eq!(entry.request_domain.as_deref(), Some("127.0.0.1:38027"));
        assert_eq!(entry.request_resource.as_deref(), Some("/hello?x=1"));
        assert_eq!(entry.endpoint.as_deref(), Some("/hello"));
        assert_eq!(entry.response_code, Some(200));
        assert_eq!(entry.response_status, ResponseStatus::Ok);
        assert_eq!(entry.ip_0.to_string(), "127.0.0.1");
        assert_eq!(entry.client_port, 40580);
        assert_eq!(entry.server_port, 38027);
        assert_eq!(entry.start_time, 1_795_602_930_148_000);
        assert_eq!(entry.attribute("app_service"), Some("sw-backend"));
        assert_eq!(entry.attribute("parent_service"), Some("sw-frontend"));
        let exit = &front[0];
        assert_eq!(exit.tap_side, "c-app");
        assert_eq!(exit.span_id.as_deref(), Some("ef98529ce8bb11f1998c02fc00000001-1"));
        assert_eq!(exit.parent_span_id.as_deref(), Some("ef98529ce8bb11f1998c02fc00000001-0"));
        assert_eq!(exit.rrt, Some(2000));
        assert_eq!(exit.server_port, 38027);
        let local = &front[1];
        assert_eq!(local.tap_side, "app");
        assert_eq!(local.parent_span_id, None);
        assert_eq!(local.l7_protocol, L7Protocol::Unknown);
        assert_eq!(local.request_resource.as_deref(), Some("client-work"));
    }

    #[test]
    fn protobuf_json_mapping_and_parents() {
        // int64 as strings, enums as names; a parent that is not in the segment and no refs
        let body = r#"{"traceId":"t1","traceSegmentId":"s1","service":"db-svc","spans":[
            {"spanId":0,"parentSpanId":-1,"startTime":"1000","endTime":"1005","operationName":"Mysql/query",
             "spanType":"Exit","spanLayer":"Database","componentId":"33","isError":true,"peer":"db:3306",
             "tags":[{"key":"db.type","value":"mysql"},{"key":"db.statement","value":"select 1"}],
             "logs":[{"time":"1004","data":[{"key":"error.kind","value":"OperationalError"},{"key":"message","value":"gone"}]}]},
            {"spanId":1,"parentSpanId":7,"startTime":1001,"endTime":1002,"operationName":"x","spanType":2,"spanLayer":0},
            {"spanId":2,"parentSpanId":-1,"startTime":1001,"endTime":1002,"operationName":"y","spanType":"Entry",
             "refs":[{"refType":"CrossThread","traceId":"other","parentTraceSegmentId":"s0","parentSpanId":3}]}
        ]}"#;
        let rows = decode_json(body.as_bytes()).unwrap();
        assert_eq!(rows.len(), 3);
        let db = &rows[0];
        assert_eq!(db.l7_protocol, L7Protocol::MySql);
        assert_eq!(db.request_type.as_deref(), Some("SELECT"));
        assert_eq!(db.request_resource.as_deref(), Some("select 1"));
        assert_eq!(db.request_domain.as_deref(), Some("db:3306"));
        assert_eq!(db.response_status, ResponseStatus::ServerError);
        assert_eq!(db.response_exception.as_deref(), Some("OperationalError: gone"));
        assert_eq!(db.rrt, Some(5000));
        // unknown in-segment parent: a root, not a dangling reference
        assert_eq!(rows[1].parent_span_id, None);
        // a reference into another trace: a root too (kept as link_trace_id)
        assert_eq!(rows[2].parent_span_id, None);
        assert_eq!(rows[2].attribute("link_trace_id"), Some("other"));
    }

    #[test]
    fn protobuf_segment() {
        use prost::Message as _;
        let seg = proto::SegmentObject {
            trace_id: "t".into(),
            trace_segment_id: "s".into(),
            service: "svc".into(),
            spans: vec![proto::SpanObject {
                span_id: 0,
                parent_span_id: -1,
                start_time: 10,
                end_time: 12,
                span_type: 0,
                span_layer: 3,
                operation_name: "/a".into(),
                tags: vec![proto::KeyStringValuePair { key: "http.status_code".into(), value: "404".into() }],
                refs: vec![proto::SegmentReference {
                    trace_id: "t".into(),
                    parent_trace_segment_id: "p".into(),
                    parent_span_id: 2,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let s = decode_proto_segment(&seg.encode_to_vec()).unwrap();
        let rows = segment_to_rows(&s);
        assert_eq!(rows[0].parent_span_id.as_deref(), Some("p-2"));
        assert_eq!(rows[0].response_status, ResponseStatus::ClientError);
        assert_eq!(rows[0].l7_protocol, L7Protocol::Http1);
        assert!(decode_proto_segment(b"\xff\xff\xff").is_err());
        assert!(decode_proto_segment(&proto::SegmentObject::default().encode_to_vec()).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            &b"not json"[..],
            b"42",
            b"{}",
            br#"{"traceId":"t"}"#,
            br#"{"traceId":"t","traceSegmentId":"s","spans":{}}"#,
            br#"{"traceId":"t","traceSegmentId":"s","spans":[{"spanType":"Sideways"}]}"#,
            br#"{"traceId":"t","traceSegmentId":"s","spans":[{"startTime":"soon"}]}"#,
            br#"[{"traceId":"t","traceSegmentId":"s"}, 5]"#,
        ] {
            assert!(decode_json(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(decode_json(b"[]").unwrap(), vec![]);
    }
}
