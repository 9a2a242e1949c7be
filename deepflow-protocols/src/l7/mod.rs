//! The parser trait every L7 protocol implements, the parsed message type, and detection.
//!
//! # The contract
//!
//! A parser is a per-flow state machine over in-order bytes (TCP) or whole datagrams (UDP),
//! modelled on Suricata's app-layer parsers:
//!
//! * [`L7Parser::probe`] looks at the first payload of a direction and answers
//!   [`Probe::Match`], [`Probe::NeedMore`] or [`Probe::NotThis`]. It must be cheap and must not
//!   allocate. A `Match` is only a candidate: the engine confirms a protocol after the first
//!   successful [`ParseOutcome::Message`].
//! * [`L7Parser::parse`] is called with the unconsumed bytes of one direction (the engine
//!   buffers partial messages, capped by `L7Config::max_buffered_bytes`) and returns
//!   - [`ParseOutcome::Message`]`(msg, consumed)`: one message ended after `consumed` bytes;
//!   - [`ParseOutcome::NeedMore`]`(hint)`: nothing can be consumed yet, call again with at
//!     least `hint` more bytes (0 = unknown);
//!   - [`ParseOutcome::Skip`]`(n)`: drop `n` bytes without emitting (body bytes, interim
//!     messages, garbage while resynchronising). `n` may be less than `data.len()`;
//!   - [`ParseOutcome::Error`]`(kind)`: the bytes are not valid; the engine counts it, drops the
//!     direction's buffer and calls [`L7Parser::on_gap`] so the parser resynchronises.
//!
//!   The engine calls `parse` in a loop while it returns `Message`/`Skip` with progress. A
//!   parser may keep a message back (e.g. until its body has been skipped) and return it from a
//!   later call; `consumed`/`Skip` counts are always relative to the `data` passed in.
//!   On UDP each datagram is one call; `NeedMore` on a datagram counts as a truncation error.
//! * [`L7Parser::on_gap`] tells that bytes were lost in one direction: drop partial state for
//!   that direction and resynchronise.
//! * [`L7Parser::on_close`] is called at flow end for each direction, to emit a message whose
//!   end is the end of the stream (HTTP/1 close-delimited bodies).
//!
//! Requests and responses are paired by the engine's session layer
//! ([`crate::session`]) according to [`L7Parser::pairing`] and [`L7Message::kind`].
//!
//! # Example: a tiny line protocol
//!
//! ```
//! use deepflow_core::{Direction, FlowInfo, record::L7Protocol};
//! use deepflow_protocols::l7::{L7Message, L7Parser, MessageKind, ParseCtx, ParseOutcome, Probe};
//!
//! /// "PING\n" requests answered by "PONG\n".
//! #[derive(Default)]
//! struct Ping;
//!
//! impl L7Parser for Ping {
//!     fn protocol(&self) -> L7Protocol { L7Protocol::Custom }
//!     fn probe(&self, data: &[u8], _dir: Direction, _flow: &FlowInfo) -> Probe {
//!         match data.get(..4) {
//!             Some(b"PING") | Some(b"PONG") => Probe::Match,
//!             Some(_) => Probe::NotThis,
//!             None => Probe::NeedMore,
//!         }
//!     }
//!     fn new_flow(&self) -> Box<dyn L7Parser> { Box::new(Ping) }
//!     fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
//!         let Some(end) = data.iter().position(|&b| b == b'\n') else {
//!             return ParseOutcome::NeedMore(0);
//!         };
//!         let kind = match ctx.dir {
//!             Direction::ClientToServer => MessageKind::Request,
//!             Direction::ServerToClient => MessageKind::Response,
//!         };
//!         let mut msg = L7Message::new(L7Protocol::Custom, kind);
//!         msg.request_type = data.get(..end).map(|l| String::from_utf8_lossy(l).into_owned());
//!         ParseOutcome::message(msg, end + 1)
//!     }
//! }
//!
//! // Registered with `L7Engine::register`, it gets probed like the built-in parsers.
//! let cfg = deepflow_protocols::L7Config::default();
//! let mut engine = deepflow_protocols::L7Engine::new(cfg);
//! engine.register(Box::new(Ping));
//! ```

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use crate::L7Counters;
use crate::config::L7Config;
use crate::error::ParseErrorKind;
use crate::trace::TraceInfo;

pub mod amqp;
pub mod brpc;
pub mod dns;
pub mod dubbo;
pub mod fastcgi;
pub mod grpc;
pub mod hessian;
pub mod hpack;
pub mod http1;
pub mod http2;
pub mod kafka;
pub mod memcached;
pub mod mongodb;
pub mod mqtt;
pub mod mysql;
pub mod nats;
pub mod openwire;
pub mod postgresql;
pub mod pulsar;
pub mod redis;
pub mod rocketmq;
pub mod sofarpc;
pub mod someip;
pub mod sql;
pub mod tars;
pub mod thrift;
pub mod tls;
pub mod zmtp;

/// Answer of [`L7Parser::probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The bytes look like this protocol (a candidate; confirmed by a successful parse).
    Match,
    /// Too few bytes to decide.
    NeedMore,
    /// Definitely not this protocol.
    NotThis,
}

/// Result of one [`L7Parser::parse`] call.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseOutcome {
    /// A complete message, which ended after `consumed` bytes of the input.
    Message(Box<L7Message>, usize),
    /// Nothing consumable yet; at least this many more bytes are needed (0 = unknown).
    NeedMore(usize),
    /// Drop this many bytes (≥ 1) without a message.
    Skip(usize),
    /// Invalid input; the engine counts it and resynchronises the direction.
    Error(ParseErrorKind),
}

impl ParseOutcome {
    /// Shorthand for `ParseOutcome::Message(Box::new(msg), consumed)`.
    pub fn message(msg: L7Message, consumed: usize) -> Self {
        ParseOutcome::Message(Box::new(msg), consumed)
    }
}

/// How the session layer pairs responses with requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// Responses answer requests in order (HTTP/1 pipelining, Redis, ...).
    InOrder,
    /// Responses carry the id of their request in [`L7Message::request_id`] (DNS, HTTP/2).
    ById,
}

/// Role of a parsed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Waits for a response.
    Request,
    /// Answers a request.
    Response,
    /// Stands alone (emitted directly as a `session` row).
    OneWay,
}

/// One parsed request, response or one-way message. Fields map onto
/// [`L7FlowLog`](deepflow_core::record::L7FlowLog) columns as described in L7_FIELDS.md.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct L7Message {
    /// Request, response or one-way.
    pub kind: Option<MessageKind>,
    /// Protocol of this message (lets one parser emit e.g. `http2` and `grpc`).
    pub protocol: L7Protocol,
    /// `version` column.
    pub version: Option<String>,
    /// `request_type` column.
    pub request_type: Option<String>,
    /// `request_domain` column.
    pub request_domain: Option<String>,
    /// `request_resource` column.
    pub request_resource: Option<String>,
    /// `endpoint` column.
    pub endpoint: Option<String>,
    /// `request_id` column; also the pairing key for [`Pairing::ById`].
    pub request_id: Option<u32>,
    /// `response_code` column.
    pub response_code: Option<i32>,
    /// `response_status` column (responses and one-way messages).
    pub response_status: Option<ResponseStatus>,
    /// `response_exception` column.
    pub response_exception: Option<String>,
    /// `response_result` column.
    pub response_result: Option<String>,
    /// `request_length` / `response_length` depending on the kind.
    pub length: Option<u64>,
    /// Trace context and X-Request-ID found in this message.
    pub trace: TraceInfo,
    /// Extra attributes (name, value).
    pub attributes: Vec<(String, String)>,
    /// Start of the message, µs (filled by the engine when 0).
    pub start_us: u64,
    /// End of the message, µs (filled by the engine when 0).
    pub end_us: u64,
}

impl L7Message {
    /// An empty message of the given protocol and kind.
    pub fn new(protocol: L7Protocol, kind: MessageKind) -> Self {
        L7Message { kind: Some(kind), protocol, ..Default::default() }
    }

    /// The message kind (`OneWay` when unset).
    pub fn kind(&self) -> MessageKind {
        self.kind.unwrap_or(MessageKind::OneWay)
    }

    /// Appends an attribute.
    pub fn attr(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.attributes.push((name.into(), value.into()));
    }
}

/// Context of a [`L7Parser::parse`] call.
pub struct ParseCtx<'a> {
    /// The flow the bytes belong to.
    pub flow: &'a FlowInfo,
    /// Direction of the bytes.
    pub dir: Direction,
    /// Packet time of the newest bytes, µs.
    pub ts_us: u64,
    /// True when the input is one UDP datagram (no buffering across calls).
    pub datagram: bool,
    /// Engine counters (parsers add protocol-specific events, e.g. encrypted TLS records).
    pub counters: &'a mut L7Counters,
}

/// An L7 protocol parser. See the [module docs](self) for the contract and an example.
///
/// One value serves as the *prototype* the engine probes with; [`L7Parser::new_flow`] creates
/// the per-flow instance that `parse` is called on.
pub trait L7Parser: Send {
    /// The protocol this parser detects.
    fn protocol(&self) -> L7Protocol;

    /// Whether the parser handles this IP protocol (6 TCP, 17 UDP). Default: TCP only.
    fn supports_transport(&self, ip_proto: u8) -> bool {
        ip_proto == deepflow_core::flow::ip_proto::TCP
    }

    /// True if `port` is a usual port of the protocol: probed first, never a proof.
    fn port_hint(&self, _port: u16) -> bool {
        false
    }

    /// Cheap check of the first payload of a direction.
    fn probe(&self, data: &[u8], dir: Direction, flow: &FlowInfo) -> Probe;

    /// A fresh per-flow instance (carrying the prototype's configuration).
    fn new_flow(&self) -> Box<dyn L7Parser>;

    /// How responses are paired with requests.
    fn pairing(&self) -> Pairing {
        Pairing::InOrder
    }

    /// Parses the unconsumed bytes of `ctx.dir`.
    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome;

    /// Bytes were lost in `dir` (or the engine dropped the buffer after an error/oversize):
    /// reset that direction's state and resynchronise.
    fn on_gap(&mut self, _dir: Direction) {}

    /// The stream in `dir` ended; return a message that ends with the stream, if any.
    fn on_close(&mut self, _dir: Direction, _ctx: &mut ParseCtx<'_>) -> Option<L7Message> {
        None
    }

    /// True once nothing more can be parsed on this flow (e.g. after a WebSocket upgrade):
    /// the engine then ignores further payload cheaply.
    fn is_done(&self) -> bool {
        false
    }

    /// Called once [`L7Parser::is_done`] turns true: the parser that continues the flow in
    /// another protocol, if the flow switched to one the engine can parse (HTTP/1.1
    /// `Upgrade: h2c` → HTTP/2). The engine feeds it the bytes after the switch.
    fn upgrade(&mut self, _cfg: &L7Config) -> Option<Box<dyn L7Parser>> {
        None
    }
}

/// The built-in parsers enabled in `cfg`, in registration order.
pub fn builtin_parsers(cfg: &L7Config) -> Vec<Box<dyn L7Parser>> {
    let all: Vec<Box<dyn L7Parser>> = vec![
        Box::new(http1::Http1Parser::new(cfg)),
        Box::new(dns::DnsParser::new(cfg)),
        Box::new(tls::TlsParser::new(cfg)),
        Box::new(http2::Http2Parser::new(cfg)),
        Box::new(kafka::KafkaParser::new(cfg)),
        Box::new(mqtt::MqttParser::new(cfg)),
        Box::new(nats::NatsParser::new(cfg)),
        Box::new(mysql::MysqlParser::new(cfg)),
        Box::new(postgresql::PostgresParser::new(cfg)),
        Box::new(redis::RedisParser::new(cfg)),
        Box::new(memcached::MemcachedParser::new(cfg)),
        Box::new(mongodb::MongoParser::new(cfg)),
        Box::new(amqp::AmqpParser::new(cfg)),
        Box::new(zmtp::ZmtpParser::new(cfg)),
        Box::new(pulsar::PulsarParser::new(cfg)),
        Box::new(rocketmq::RocketMqParser::new(cfg)),
        Box::new(openwire::OpenWireParser::new(cfg)),
        Box::new(dubbo::DubboParser::new(cfg)),
        Box::new(fastcgi::FastCgiParser::new(cfg)),
        Box::new(thrift::ThriftParser::new(cfg)),
        Box::new(sofarpc::SofaRpcParser::new(cfg)),
        Box::new(brpc::BrpcParser::new(cfg)),
        Box::new(tars::TarsParser::new(cfg)),
        Box::new(someip::SomeIpParser::new(cfg)),
    ];
    all.into_iter().filter(|p| cfg.is_enabled(p.protocol())).collect()
}

/// Maps a response status onto its code when the protocol's rule is the HTTP one:
/// 400–499 → client_error, 500–599 → server_error, anything else → ok.
pub fn http_status(code: u16) -> ResponseStatus {
    match code {
        400..=499 => ResponseStatus::ClientError,
        500..=599 => ResponseStatus::ServerError,
        _ => ResponseStatus::Ok,
    }
}
