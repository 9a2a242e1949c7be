//! # deepflow-protocols
//!
//! Application-layer (L7) protocol detection, parsing and request/response pairing for
//! deepflow-rs, producing DeepFlow-compatible `l7_flow_log` rows
//! ([`L7FlowLog`](deepflow_core::record::L7FlowLog)) and application RED metrics
//! ([`red::RedAggregator`]).
//!
//! * [`L7Engine`] is what the capture layer calls: per flow it is handed in-order TCP bytes
//!   (any chunking), UDP datagrams, gaps, ticks and the flow end, and it appends rows.
//! * [`l7::L7Parser`] is the parser trait (probe → parse → pairing), with built-in parsers for
//!   HTTP/1 ([`l7::http1`]), DNS ([`l7::dns`]) and TLS handshakes ([`l7::tls`]).
//! * [`trace`] decodes trace-context headers (W3C, SkyWalking, Jaeger, B3).
//! * [`red`] aggregates rows into 1 s / 1 min RED metrics with latency histograms.
//!
//! ```
//! use deepflow_core::{Direction, FlowInfo};
//! use deepflow_protocols::{L7Config, L7Engine, L7FlowState};
//! use std::net::{IpAddr, Ipv4Addr};
//!
//! let flow = FlowInfo {
//!     flow_id: 7, protocol: 17,
//!     client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), client_port: 5353,
//!     server_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 53)), server_port: 53,
//!     tunnel: Default::default(), start_time_us: 0,
//! };
//! // DNS query for "a.io" type A, id 0x1234
//! let q = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 2, b'i', b'o', 0, 0, 1, 0, 1];
//! let mut engine = L7Engine::new(L7Config::default());
//! let mut st = L7FlowState::default();
//! let mut rows = Vec::new();
//! engine.on_payload(&mut st, &flow, Direction::ClientToServer, 10, &q, &mut rows);
//! engine.on_flow_end(&mut st, &flow, 20, &mut rows);
//! assert_eq!(rows[0].request_resource.as_deref(), Some("a.io"));
//! assert_eq!(rows[0].response_status.name(), "timeout");
//! ```
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic))]
#![warn(missing_docs)]

#[cfg(feature = "capture")]
pub mod capture;
pub mod config;
mod engine;
pub mod error;
#[cfg(feature = "ingest")]
pub mod ingest;
pub mod l7;
pub mod red;
pub mod session;
pub mod trace;
#[cfg(feature = "wasm")]
pub mod wasm;

pub use config::{EmitMode, L7Config};
pub use engine::{L7Counters, L7Engine, L7FlowState};
pub use error::ParseErrorKind;
pub use l7::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};
