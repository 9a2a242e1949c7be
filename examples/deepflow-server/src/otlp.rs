//! OpenTelemetry (OTLP) ingest: OTLP/HTTP (`POST /v1/traces`, `/v1/metrics`, `/v1/logs`, protobuf
//! or JSON, optionally gzip) and OTLP/gRPC (`TraceService`, `MetricsService`, `LogsService`).
//!
//! Decoding and mapping are `deepflow_protocols::ingest::otlp`: spans become `l7_flow_log` rows
//! (`signal_source = otel`), metric points samples of the `prometheus` table (queried by PromQL
//! like remote_write samples), log records rows of the `log` table. Rows are buffered and
//! written at least every `--flush-ms` (the same loss window as remote_write). With
//! `--inventory` all three are tagged ([`crate::tags`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use deepflow_protocols::ingest::otlp::{self, Encoding, OtlpError};
use deepflow_store::prom::{Sample, SampleWriter};
use deepflow_store::{Storage, StoreWriter, WriterOptions};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use tonic::codec::CompressionEncoding;

/// Default OTLP/HTTP address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:4318";
/// Default OTLP/gRPC address.
pub const DEFAULT_GRPC: &str = "127.0.0.1:4317";

/// OTLP command-line options (flattened into `run`).
#[derive(clap::Args, Debug, Clone)]
pub struct OtlpArgs {
    /// OTLP/HTTP listen address (POST /v1/traces, /v1/metrics, /v1/logs), or `off`.
    /// Default 127.0.0.1:4318; when the default is taken the server runs without it (a warning).
    #[arg(long, value_name = "ADDR|off")]
    pub otlp_http_listen: Option<String>,
    /// OTLP/gRPC listen address (TraceService, MetricsService, LogsService), or `off`.
    /// Default 127.0.0.1:4317; when the default is taken the server runs without it (a warning).
    #[arg(long, value_name = "ADDR|off")]
    pub otlp_grpc_listen: Option<String>,
}

/// The writers OTLP data goes to.
pub struct Otlp {
    store: Mutex<StoreWriter>,
    samples: Mutex<SampleWriter>,
    token: Option<String>,
    max_body: usize,
}

impl Otlp {
    /// Writers over `storage` flushing at least every `flush`.
    pub fn new(
        storage: Storage,
        token: Option<String>,
        max_body: usize,
        flush: Duration,
    ) -> Result<Arc<Otlp>, Box<dyn std::error::Error>> {
        let opts = crate::tags::writer_options(WriterOptions::default().with_flush(1 << 20, 256 << 20, flush));
        Ok(Arc::new(Otlp {
            store: Mutex::new(StoreWriter::open(storage.clone(), opts)?),
            samples: Mutex::new(SampleWriter::new(storage, 1 << 20, flush)?),
            token: token.filter(|t| !t.is_empty()),
            max_body,
        }))
    }

    fn authorized(&self, value: Option<&str>) -> bool {
        match &self.token {
            None => true,
            Some(tok) => value
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|t| super::constant_eq(t.trim().as_bytes(), tok.as_bytes())),
        }
    }

    fn store_spans(&self, req: &ExportTraceServiceRequest) -> Result<usize, String> {
        let rows = otlp::spans_to_rows(req);
        let n = rows.len();
        let mut w = self.store.lock().unwrap_or_else(|e| e.into_inner());
        crate::tags::append_l7(&mut w, rows).map_err(|e| e.to_string())?;
        Ok(n)
    }

    fn store_metrics(&self, req: &ExportMetricsServiceRequest) -> Result<usize, String> {
        let samples: Vec<Sample> = otlp::metrics_to_samples(req)
            .into_iter()
            .map(|s| Sample { metric: s.metric, labels: s.labels, time_ms: s.time_ms, value: s.value })
            .collect();
        let n = samples.len();
        let mut w = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        crate::tags::append_samples(&mut w, samples).map_err(|e| e.to_string())?;
        Ok(n)
    }

    fn store_logs(&self, req: &ExportLogsServiceRequest) -> Result<usize, String> {
        let rows = otlp::logs_to_records(req);
        let n = rows.len();
        let mut w = self.store.lock().unwrap_or_else(|e| e.into_inner());
        crate::tags::append_logs(&mut w, rows).map_err(|e| e.to_string())?;
        Ok(n)
    }

    /// Writes what the flush interval says is due.
    pub fn tick(&self) {
        if let Err(e) = self.store.lock().unwrap_or_else(|e| e.into_inner()).tick() {
            eprintln!("deepflow-server: otlp flush: {e}");
        }
        if let Err(e) = self.samples.lock().unwrap_or_else(|e| e.into_inner()).tick() {
            eprintln!("deepflow-server: otlp metrics flush: {e}");
        }
    }

    /// Writes everything buffered (at shutdown).
    pub fn flush(&self) {
        if let Err(e) = self.store.lock().unwrap_or_else(|e| e.into_inner()).flush() {
            eprintln!("deepflow-server: otlp flush: {e}");
        }
        if let Err(e) = self.samples.lock().unwrap_or_else(|e| e.into_inner()).flush() {
            eprintln!("deepflow-server: otlp metrics flush: {e}");
        }
    }
}

/// Binds the OTLP listeners and spawns their servers and the flush ticker on the current
/// runtime. An explicitly given address that cannot be bound is an error; a busy default
/// address only prints a warning.
pub async fn spawn(args: &OtlpArgs, otlp: Arc<Otlp>, flush: Duration) -> Result<(), Box<dyn std::error::Error>> {
    async fn bind(
        what: &str,
        arg: &Option<String>,
        default: &str,
    ) -> Result<Option<tokio::net::TcpListener>, Box<dyn std::error::Error>> {
        let (addr, explicit) = match arg.as_deref() {
            Some("off") => return Ok(None),
            Some(a) => (a.parse::<SocketAddr>().map_err(|e| format!("--otlp-{what}-listen {a}: {e}"))?, true),
            None => (default.parse::<SocketAddr>()?, false),
        };
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Ok(Some(l)),
            Err(e) if !explicit => {
                eprintln!("deepflow-server: OTLP/{what} disabled: cannot bind {addr}: {e}");
                Ok(None)
            }
            Err(e) => Err(format!("OTLP/{what} {addr}: {e}").into()),
        }
    }
    let http = bind("http", &args.otlp_http_listen, DEFAULT_HTTP).await?;
    let grpc = bind("grpc", &args.otlp_grpc_listen, DEFAULT_GRPC).await?;
    if let Some(l) = http {
        eprintln!("deepflow-server: OTLP/HTTP on http://{} (POST /v1/traces, /v1/metrics, /v1/logs)", l.local_addr()?);
        let app = http_routes(otlp.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).await {
                eprintln!("deepflow-server: OTLP/HTTP: {e}");
            }
        });
    }
    if let Some(l) = grpc {
        eprintln!("deepflow-server: OTLP/gRPC on {}", l.local_addr()?);
        let g = Grpc(otlp.clone());
        let max = otlp.max_body;
        let router = tonic::transport::Server::builder()
            .add_service(
                TraceServiceServer::new(g.clone())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .max_decoding_message_size(max),
            )
            .add_service(
                MetricsServiceServer::new(g.clone())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .max_decoding_message_size(max),
            )
            .add_service(
                LogsServiceServer::new(g).accept_compressed(CompressionEncoding::Gzip).max_decoding_message_size(max),
            );
        let incoming = tonic::transport::server::TcpIncoming::from(l);
        tokio::spawn(async move {
            if let Err(e) = router.serve_with_incoming(incoming).await {
                eprintln!("deepflow-server: OTLP/gRPC: {e}");
            }
        });
    }
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(flush);
        loop {
            iv.tick().await;
            let o = otlp.clone();
            let _ = tokio::task::spawn_blocking(move || o.tick()).await;
        }
    });
    Ok(())
}

// ---------- OTLP/HTTP ----------

/// `google.rpc.Status`, the OTLP/HTTP error body.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// An OTLP/HTTP error: a `google.rpc.Status` in the request's encoding (JSON when unknown).
fn otlp_error(status: StatusCode, enc: Option<Encoding>, msg: &str) -> Response {
    // gRPC codes: 3 INVALID_ARGUMENT, 16 UNAUTHENTICATED, 13 INTERNAL
    let code = match status {
        StatusCode::UNAUTHORIZED => 16,
        s if s.is_client_error() => 3,
        _ => 13,
    };
    match enc {
        Some(Encoding::Protobuf) => (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            RpcStatus { code, message: msg.to_string() }.encode_to_vec(),
        )
            .into_response(),
        _ => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"code": code, "message": msg}).to_string(),
        )
            .into_response(),
    }
}

fn http_routes(otlp: Arc<Otlp>) -> Router {
    let max = otlp.max_body;
    Router::new()
        .route("/v1/traces", post(http_traces))
        .route("/v1/metrics", post(http_metrics))
        .route("/v1/logs", post(http_logs))
        // the compressed body is limited here, the decompressed one in `body_of`
        .layer(DefaultBodyLimit::max(max))
        .with_state(otlp)
}

/// Checks auth, content type and encoding; returns the (decompressed) body and its encoding.
fn body_of(otlp: &Otlp, headers: &HeaderMap, body: &[u8]) -> Result<(Vec<u8>, Encoding), Response> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let enc = Encoding::from_content_type(ct);
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !otlp.authorized(auth) {
        let mut r = otlp_error(StatusCode::UNAUTHORIZED, enc, "missing or wrong bearer token");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return Err(r);
    }
    let Some(enc) = enc else {
        return Err(otlp_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            &format!("unsupported Content-Type {ct:?}: use application/x-protobuf or application/json"),
        ));
    };
    let ce = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("").trim();
    match ce.to_ascii_lowercase().as_str() {
        "" | "identity" => Ok((body.to_vec(), enc)),
        "gzip" => {
            use std::io::Read;
            let mut out = Vec::new();
            let limit = otlp.max_body as u64;
            let mut rd = flate2::read::GzDecoder::new(body).take(limit + 1);
            if let Err(e) = rd.read_to_end(&mut out) {
                return Err(otlp_error(StatusCode::BAD_REQUEST, Some(enc), &format!("invalid gzip body: {e}")));
            }
            if out.len() as u64 > limit {
                return Err(otlp_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some(enc),
                    &format!("decompressed body over the {limit} byte limit"),
                ));
            }
            Ok((out, enc))
        }
        other => Err(otlp_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some(enc),
            &format!("unsupported Content-Encoding {other:?}: use gzip or none"),
        )),
    }
}

fn success<M: Message>(enc: Encoding, resp: M, n: usize) -> Response {
    let count = [("x-deepflow-items", n.to_string())];
    match enc {
        Encoding::Protobuf => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-protobuf")], count, resp.encode_to_vec())
                .into_response()
        }
        Encoding::Json => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            count,
            // the responses carry nothing but an optional partial success, never set here
            "{}",
        )
            .into_response(),
    }
}

fn bad_body(enc: Encoding, e: OtlpError) -> Response {
    otlp_error(StatusCode::BAD_REQUEST, Some(enc), &e.to_string())
}

async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| otlp_error(StatusCode::INTERNAL_SERVER_ERROR, None, &e.to_string()))
}

async fn http_traces(State(o): State<Arc<Otlp>>, headers: HeaderMap, body: Bytes) -> Response {
    let (raw, enc) = match body_of(&o, &headers, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req = match otlp::decode_traces(&raw, enc) {
        Ok(r) => r,
        Err(e) => return bad_body(enc, e),
    };
    match run_blocking(move || o.store_spans(&req)).await {
        Ok(Ok(n)) => success(enc, ExportTraceServiceResponse::default(), n),
        Ok(Err(e)) => otlp_error(StatusCode::INTERNAL_SERVER_ERROR, Some(enc), &e),
        Err(r) => r,
    }
}

async fn http_metrics(State(o): State<Arc<Otlp>>, headers: HeaderMap, body: Bytes) -> Response {
    let (raw, enc) = match body_of(&o, &headers, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req = match otlp::decode_metrics(&raw, enc) {
        Ok(r) => r,
        Err(e) => return bad_body(enc, e),
    };
    match run_blocking(move || o.store_metrics(&req)).await {
        Ok(Ok(n)) => success(enc, ExportMetricsServiceResponse::default(), n),
        Ok(Err(e)) => otlp_error(StatusCode::INTERNAL_SERVER_ERROR, Some(enc), &e),
        Err(r) => r,
    }
}

async fn http_logs(State(o): State<Arc<Otlp>>, headers: HeaderMap, body: Bytes) -> Response {
    let (raw, enc) = match body_of(&o, &headers, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req = match otlp::decode_logs(&raw, enc) {
        Ok(r) => r,
        Err(e) => return bad_body(enc, e),
    };
    match run_blocking(move || o.store_logs(&req)).await {
        Ok(Ok(n)) => success(enc, ExportLogsServiceResponse::default(), n),
        Ok(Err(e)) => otlp_error(StatusCode::INTERNAL_SERVER_ERROR, Some(enc), &e),
        Err(r) => r,
    }
}

// ---------- OTLP/gRPC ----------

#[derive(Clone)]
struct Grpc(Arc<Otlp>);

impl Grpc {
    fn check<T>(&self, req: &tonic::Request<T>) -> Result<(), tonic::Status> {
        let auth = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        if self.0.authorized(auth) {
            Ok(())
        } else {
            Err(tonic::Status::unauthenticated("missing or wrong bearer token"))
        }
    }

    async fn store<T: Send + 'static>(
        &self,
        req: T,
        f: fn(&Otlp, &T) -> Result<usize, String>,
    ) -> Result<(), tonic::Status> {
        let o = self.0.clone();
        match tokio::task::spawn_blocking(move || f(&o, &req)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(tonic::Status::internal(e)),
            Err(e) => Err(tonic::Status::internal(e.to_string())),
        }
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.check(&req)?;
        self.store(req.into_inner(), Otlp::store_spans).await?;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.check(&req)?;
        self.store(req.into_inner(), Otlp::store_metrics).await?;
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.check(&req)?;
        self.store(req.into_inner(), Otlp::store_logs).await?;
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}
