//! Decoders of third-party ingest payloads into deepflow records (feature `ingest`): the same
//! `l7_flow_log` rows and profile samples the agent produces, from what other agents send.
//!
//! - [`skywalking`]: SkyWalking trace segments (JSON over HTTP, protobuf over gRPC) →
//!   `L7FlowLog` rows with `signal_source = skywalking`.
//! - [`otlp`]: OpenTelemetry traces, metrics and logs (protobuf or OTLP JSON) → `L7FlowLog` rows
//!   with `signal_source = otel`, Prometheus samples and `log` rows.
//! - [`pyroscope`]: Pyroscope `/ingest` uploads (folded text, pprof) → `ProfileSample` rows.

pub mod otlp;
pub mod pyroscope;
pub mod skywalking;
