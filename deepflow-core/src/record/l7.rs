//! `l7_flow_log` rows (application request logs) and application RED metrics.
//!
//! Absent values are `Option::None` and serialize as JSON `null`, where DeepFlow uses sentinels
//! (`response_code` = i16::MIN, lengths = -1, empty strings). `None` is simpler to produce and
//! to consume, and a sink that must write DeepFlow's sentinels can map them in one place.
use std::net::IpAddr;

use serde::{Serialize, Serializer};

/// Application protocols with DeepFlow's numeric ids and lowercase names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
#[non_exhaustive]
pub enum L7Protocol {
    /// 0: not (yet) identified.
    #[default]
    Unknown = 0,
    Http1 = 20,
    Http2 = 21,
    Dubbo = 40,
    Grpc = 41,
    SofaRpc = 43,
    FastCgi = 44,
    Brpc = 45,
    Tars = 46,
    SomeIp = 47,
    Iso8583 = 48,
    Triple = 49,
    NetSign = 50,
    /// Apache Thrift: not in DeepFlow's table; 51 is an id DeepFlow leaves unassigned.
    Thrift = 51,
    MySql = 60,
    PostgreSql = 61,
    Oracle = 62,
    Dameng = 63,
    Redis = 80,
    MongoDb = 81,
    Memcached = 82,
    Kafka = 100,
    Mqtt = 101,
    Amqp = 102,
    OpenWire = 103,
    Nats = 104,
    Pulsar = 105,
    Zmtp = 106,
    RocketMq = 107,
    WebSphereMq = 108,
    Dns = 120,
    Tls = 121,
    Ping = 122,
    Custom = 127,
}

impl L7Protocol {
    /// Every known protocol (excluding `Unknown`), in id order.
    pub const ALL: [L7Protocol; 33] = [
        L7Protocol::Http1,
        L7Protocol::Http2,
        L7Protocol::Dubbo,
        L7Protocol::Grpc,
        L7Protocol::SofaRpc,
        L7Protocol::FastCgi,
        L7Protocol::Brpc,
        L7Protocol::Tars,
        L7Protocol::SomeIp,
        L7Protocol::Iso8583,
        L7Protocol::Triple,
        L7Protocol::NetSign,
        L7Protocol::Thrift,
        L7Protocol::MySql,
        L7Protocol::PostgreSql,
        L7Protocol::Oracle,
        L7Protocol::Dameng,
        L7Protocol::Redis,
        L7Protocol::MongoDb,
        L7Protocol::Memcached,
        L7Protocol::Kafka,
        L7Protocol::Mqtt,
        L7Protocol::Amqp,
        L7Protocol::OpenWire,
        L7Protocol::Nats,
        L7Protocol::Pulsar,
        L7Protocol::Zmtp,
        L7Protocol::RocketMq,
        L7Protocol::WebSphereMq,
        L7Protocol::Dns,
        L7Protocol::Tls,
        L7Protocol::Ping,
        L7Protocol::Custom,
    ];

    /// DeepFlow's numeric id.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The protocol with DeepFlow id `id`, `Unknown` for unassigned ids.
    pub fn from_id(id: u8) -> L7Protocol {
        Self::ALL.iter().copied().find(|p| p.id() == id).unwrap_or(L7Protocol::Unknown)
    }

    /// The lowercase name used in the `l7_protocol` column (`http`, `http2`, `grpc`, `dns`, ...).
    pub fn name(self) -> &'static str {
        match self {
            L7Protocol::Unknown => "unknown",
            L7Protocol::Http1 => "http",
            L7Protocol::Http2 => "http2",
            L7Protocol::Dubbo => "dubbo",
            L7Protocol::Grpc => "grpc",
            L7Protocol::SofaRpc => "sofarpc",
            L7Protocol::FastCgi => "fastcgi",
            L7Protocol::Brpc => "brpc",
            L7Protocol::Tars => "tars",
            L7Protocol::SomeIp => "someip",
            L7Protocol::Iso8583 => "iso8583",
            L7Protocol::Triple => "triple",
            L7Protocol::NetSign => "netsign",
            L7Protocol::Thrift => "thrift",
            L7Protocol::MySql => "mysql",
            L7Protocol::PostgreSql => "postgresql",
            L7Protocol::Oracle => "oracle",
            L7Protocol::Dameng => "dameng",
            L7Protocol::Redis => "redis",
            L7Protocol::MongoDb => "mongodb",
            L7Protocol::Memcached => "memcached",
            L7Protocol::Kafka => "kafka",
            L7Protocol::Mqtt => "mqtt",
            L7Protocol::Amqp => "amqp",
            L7Protocol::OpenWire => "openwire",
            L7Protocol::Nats => "nats",
            L7Protocol::Pulsar => "pulsar",
            L7Protocol::Zmtp => "zmtp",
            L7Protocol::RocketMq => "rocketmq",
            L7Protocol::WebSphereMq => "webspheremq",
            L7Protocol::Dns => "dns",
            L7Protocol::Tls => "tls",
            L7Protocol::Ping => "ping",
            L7Protocol::Custom => "custom",
        }
    }

    /// Parses a lowercase name (also accepts `http1` and `some/ip`); `None` if unknown.
    pub fn from_name(name: &str) -> Option<L7Protocol> {
        let n = name.trim().to_ascii_lowercase();
        match n.as_str() {
            "http1" => return Some(L7Protocol::Http1),
            "some/ip" => return Some(L7Protocol::SomeIp),
            _ => {}
        }
        Self::ALL.iter().copied().find(|p| p.name() == n)
    }
}

impl std::fmt::Display for L7Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for L7Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// The `type` column: a request, a response, or a merged request+response (`session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogType {
    Request,
    Response,
    /// A merged request+response pair, or a one-way message.
    #[default]
    Session,
}

impl LogType {
    /// The lowercase name written in the `type` column.
    pub fn name(self) -> &'static str {
        match self {
            LogType::Request => "request",
            LogType::Response => "response",
            LogType::Session => "session",
        }
    }
}

/// The `response_status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    Ok,
    ClientError,
    ServerError,
    /// The request got no response within the configured timeout (or before the flow ended).
    Timeout,
    /// Never set (e.g. a request row emitted before its response).
    #[default]
    Unknown,
    /// The response could not be parsed.
    ParseFailed,
}

impl ResponseStatus {
    /// The lowercase name written in the `response_status` column.
    pub fn name(self) -> &'static str {
        match self {
            ResponseStatus::Ok => "ok",
            ResponseStatus::ClientError => "client_error",
            ResponseStatus::ServerError => "server_error",
            ResponseStatus::Timeout => "timeout",
            ResponseStatus::Unknown => "unknown",
            ResponseStatus::ParseFailed => "parse_failed",
        }
    }
}

/// One `l7_flow_log` row. Field names follow DeepFlow's `flow_log.l7_flow_log` table.
/// Absent values are `None` (JSON `null`) instead of DeepFlow's sentinels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct L7FlowLog {
    /// Start of the request (or of the response for response-only rows), µs since the epoch.
    pub start_time: u64,
    /// End of the response (or of the request for request-only rows), µs since the epoch.
    pub end_time: u64,
    /// Response end minus request start, µs; `None` without a matched request and response.
    pub rrt: Option<u64>,
    /// The flow this row belongs to.
    pub flow_id: u64,
    /// Client IP.
    pub ip_0: IpAddr,
    /// Server IP.
    pub ip_1: IpAddr,
    /// Client port.
    pub client_port: u16,
    /// Server port.
    pub server_port: u16,
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
    /// Where the traffic was observed (`c`, `s`, `local`, `rest`, ...).
    pub tap_side: &'static str,
    /// Where the row came from: `packet`, `ebpf`, `otel`, ...
    pub signal_source: &'static str,
    /// Application protocol, serialized as its lowercase name.
    pub l7_protocol: L7Protocol,
    /// Protocol version (`1.1`, `2`, `1.3`, ...).
    pub version: Option<String>,
    /// `request`, `response` or `session`.
    #[serde(rename = "type")]
    pub log_type: LogType,
    /// Method / command / opcode / query type.
    pub request_type: Option<String>,
    /// Host / authority / database / topic / SNI.
    pub request_domain: Option<String>,
    /// Path / query / key / SQL.
    pub request_resource: Option<String>,
    /// Aggregation key for RED metrics (e.g. the first path segments).
    pub endpoint: Option<String>,
    /// Stream / transaction / correlation id.
    pub request_id: Option<u32>,
    /// `ok`, `client_error`, `server_error`, `timeout`, `unknown`.
    pub response_status: ResponseStatus,
    /// Status code / rcode / error code.
    pub response_code: Option<i32>,
    /// Error text.
    pub response_exception: Option<String>,
    /// Result summary (e.g. DNS answers).
    pub response_result: Option<String>,
    /// Request size as announced by the protocol (e.g. `Content-Length`).
    pub request_length: Option<u64>,
    /// Response size as announced by the protocol.
    pub response_length: Option<u64>,
    /// Distributed-tracing trace id.
    pub trace_id: Option<String>,
    /// Distributed-tracing span id.
    pub span_id: Option<String>,
    /// Distributed-tracing parent span id.
    pub parent_span_id: Option<String>,
    /// Request-side X-Request-ID.
    pub x_request_id_0: Option<String>,
    /// Response-side X-Request-ID.
    pub x_request_id_1: Option<String>,
    /// Original client from the configured proxy header (`X-Forwarded-For`).
    pub http_proxy_client: Option<String>,
    /// Names of extra attributes (parallel to `attribute_values`).
    pub attribute_names: Vec<String>,
    /// Values of extra attributes.
    pub attribute_values: Vec<String>,
    /// Client-side process id (eBPF rows seen from the client process; absent otherwise and
    /// then not serialized).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_id_0: Option<u32>,
    /// Server-side process id (eBPF rows seen from the server process).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_id_1: Option<u32>,
    /// Client-side process kernel name (`comm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_kname_0: Option<String>,
    /// Server-side process kernel name (`comm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_kname_1: Option<String>,
    /// eBPF thread correlation id of the request's syscall (see deepflow-capture's README).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall_trace_id_request: Option<u64>,
    /// eBPF thread correlation id of the response's syscall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall_trace_id_response: Option<u64>,
}

impl L7FlowLog {
    /// A row with the flow columns filled and every application column absent.
    pub fn new(flow: &crate::FlowInfo, l7_protocol: L7Protocol, log_type: LogType) -> Self {
        L7FlowLog {
            start_time: 0,
            end_time: 0,
            rrt: None,
            flow_id: flow.flow_id,
            ip_0: flow.client_ip,
            ip_1: flow.server_ip,
            client_port: flow.client_port,
            server_port: flow.server_port,
            protocol: crate::flow::ip_proto::name(flow.protocol),
            tap_side: "rest",
            signal_source: "packet",
            l7_protocol,
            version: None,
            log_type,
            request_type: None,
            request_domain: None,
            request_resource: None,
            endpoint: None,
            request_id: None,
            response_status: ResponseStatus::Unknown,
            response_code: None,
            response_exception: None,
            response_result: None,
            request_length: None,
            response_length: None,
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            x_request_id_0: None,
            x_request_id_1: None,
            http_proxy_client: None,
            attribute_names: Vec::new(),
            attribute_values: Vec::new(),
            process_id_0: None,
            process_id_1: None,
            process_kname_0: None,
            process_kname_1: None,
            syscall_trace_id_request: None,
            syscall_trace_id_response: None,
        }
    }

    /// The value of attribute `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attribute_names
            .iter()
            .position(|n| n == name)
            .and_then(|i| self.attribute_values.get(i))
            .map(String::as_str)
    }
}

/// Number of buckets of a [`LatencyHistogram`].
pub const LATENCY_BUCKETS: usize = 4 * 40;

/// A mergeable log-bucket latency histogram (µs): 4 buckets per power of two (≤ 19 % relative
/// error), covering 1 µs .. 2^40 µs. Bucket `i` holds values `v` with `bucket_of(v) == i`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct LatencyHistogram {
    /// Counts per bucket; empty until the first value (then `LATENCY_BUCKETS` long).
    pub buckets: Vec<u32>,
    /// Number of recorded values.
    pub count: u64,
}

impl LatencyHistogram {
    /// Bucket index of value `v` (µs).
    pub fn bucket_of(v: u64) -> usize {
        if v < 1 {
            return 0;
        }
        let log2 = 63 - v.leading_zeros() as usize; // floor(log2 v)
        // two mantissa bits below the leading one give the quarter-octave
        let sub = if log2 >= 2 { ((v >> (log2 - 2)) & 3) as usize } else { ((v << (2 - log2)) & 3) as usize };
        (log2 * 4 + sub).min(LATENCY_BUCKETS - 1)
    }

    /// Lower bound (µs) of bucket `i`.
    pub fn bucket_low(i: usize) -> u64 {
        let log2 = (i / 4) as u32;
        let sub = (i % 4) as u64;
        if log2 >= 2 {
            (1u64 << log2) + (sub << (log2 - 2))
        } else {
            // small values: buckets are sparse, return the exact value it represents
            ((4 + sub) << log2) >> 2
        }
    }

    /// Records one value (µs).
    pub fn record(&mut self, v: u64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; LATENCY_BUCKETS];
        }
        if let Some(b) = self.buckets.get_mut(Self::bucket_of(v)) {
            *b = b.saturating_add(1);
        }
        self.count += 1;
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if other.buckets.is_empty() {
            return;
        }
        if self.buckets.is_empty() {
            self.buckets = vec![0; LATENCY_BUCKETS];
        }
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a = a.saturating_add(*b);
        }
        self.count += other.count;
    }

    /// The `q` quantile (0..=1) as the midpoint of its bucket, µs; `None` if empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                let lo = Self::bucket_low(i);
                let hi = Self::bucket_low(i + 1).max(lo + 1);
                return Some(lo + (hi - lo) / 2);
            }
        }
        None
    }
}

/// One application RED metrics row (`flow_metrics.application*`): per time window, server
/// endpoint (ip, port), protocol and endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplicationMetrics {
    /// Window start, seconds since the epoch.
    pub time: u64,
    /// Window length in seconds (1 or 60).
    pub interval: u32,
    /// Server IP.
    pub ip_1: IpAddr,
    /// Server port.
    pub server_port: u16,
    /// Application protocol.
    pub l7_protocol: L7Protocol,
    /// Endpoint (possibly normalized, or `other` once the cardinality cap is reached).
    pub endpoint: String,
    /// Requests seen.
    pub request: u64,
    /// Responses seen.
    pub response: u64,
    /// Responses with status `client_error`.
    pub client_error: u64,
    /// Responses with status `server_error`.
    pub server_error: u64,
    /// Requests that timed out.
    pub timeout: u64,
    /// Sum of response times, µs.
    pub rrt_sum: u64,
    /// Number of response times summed.
    pub rrt_count: u64,
    /// Largest response time, µs.
    pub rrt_max: u64,
    /// Response-time distribution.
    pub rrt_histogram: LatencyHistogram,
    /// Median response time (bucket midpoint), µs.
    pub rrt_p50: Option<u64>,
    /// 90th percentile response time, µs.
    pub rrt_p90: Option<u64>,
    /// 99th percentile response time, µs.
    pub rrt_p99: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_ids_and_names() {
        assert_eq!(L7Protocol::Http1.name(), "http");
        assert_eq!(L7Protocol::from_id(121), L7Protocol::Tls);
        assert_eq!(L7Protocol::from_name("dns"), Some(L7Protocol::Dns));
        for p in L7Protocol::ALL {
            assert_eq!(L7Protocol::from_id(p.id()), p);
            assert_eq!(L7Protocol::from_name(p.name()), Some(p));
        }
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = LatencyHistogram::default();
        for v in 1..=1000u64 {
            h.record(v * 100);
        }
        let p50 = h.quantile(0.5).unwrap() as f64;
        assert!((p50 - 50_000.0).abs() / 50_000.0 < 0.2, "{p50}");
        let p99 = h.quantile(0.99).unwrap() as f64;
        assert!((p99 - 99_000.0).abs() / 99_000.0 < 0.2, "{p99}");
        let mut h2 = LatencyHistogram::default();
        h2.merge(&h);
        h2.merge(&h);
        assert_eq!(h2.count, 2000);
        // buckets are monotonic
        for i in 0..LATENCY_BUCKETS - 1 {
            assert!(LatencyHistogram::bucket_low(i) <= LatencyHistogram::bucket_low(i + 1));
        }
        for v in [1u64, 2, 3, 5, 7, 100, 12345, 1 << 30] {
            let b = LatencyHistogram::bucket_of(v);
            assert!(LatencyHistogram::bucket_low(b) <= v, "{v}");
        }
    }
}
