//! SkyWalking trace ingest: the OAP's HTTP receiver (`POST /v3/segment`, `POST /v3/segments`)
//! on the main HTTP port and `skywalking.v3.TraceSegmentReportService` over gRPC on its own port
//! (default 127.0.0.1:11800, SkyWalking's). Segments are decoded by
//! `deepflow_protocols::ingest::skywalking` into `l7_flow_log` rows (`signal_source =
//! skywalking`).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use deepflow_protocols::ingest::skywalking::{self as sw, proto};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::{Status, Streaming};

use crate::apm::ApmSink;

/// Path of `TraceSegmentReportService/collect` (client stream of segments).
pub const COLLECT_PATH: &str = "/skywalking.v3.TraceSegmentReportService/collect";
/// Path of `TraceSegmentReportService/collectInSync` (one `SegmentCollection`).
pub const COLLECT_IN_SYNC_PATH: &str = "/skywalking.v3.TraceSegmentReportService/collectInSync";

/// The HTTP routes (`/v3/segment`, `/v3/segments`, and the management calls the agents make).
pub fn routes<S: Clone + Send + Sync + 'static>(sink: Arc<ApmSink>) -> Router<S> {
    Router::new()
        .route("/v3/segment", post(segments))
        .route("/v3/segments", post(segments))
        // agents report their instance properties and heartbeats; accepted, not stored
        .route("/v3/management/reportProperties", post(accepted))
        .route("/v3/management/keepAlive", post(accepted))
        .with_state(sink)
}

async fn accepted() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}

async fn segments(State(sink): State<Arc<ApmSink>>, body: Bytes) -> Response {
    let segs = match sw::parse_json_segments(&body) {
        Ok(s) => s,
        Err(e) => return crate::json_error(StatusCode::BAD_REQUEST, "bad_data", &format!("skywalking: {e}")),
    };
    let rows: Vec<_> = segs.iter().flat_map(sw::segment_to_rows).collect();
    let n = rows.len();
    if let Err(r) = sink.append_l7(rows).await {
        return r;
    }
    let body = serde_json::json!({"status": "success", "segments": segs.len(), "spans": n});
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// `skywalking.v3.TraceSegmentReportService` for `tonic::transport::Server` (hand-written
/// glue, as `tonic-build` would generate it; no `protoc` needed).
#[derive(Clone)]
pub struct TraceSegmentReportServer {
    sink: Arc<ApmSink>,
}

impl TraceSegmentReportServer {
    /// Serves `sink`.
    pub fn new(sink: Arc<ApmSink>) -> Self {
        TraceSegmentReportServer { sink }
    }
}

impl tonic::server::NamedService for TraceSegmentReportServer {
    const NAME: &'static str = "skywalking.v3.TraceSegmentReportService";
}

async fn store(sink: &Arc<ApmSink>, segs: Vec<proto::SegmentObject>) -> Result<(), Status> {
    let mut rows = Vec::new();
    for s in segs {
        let seg = sw::Segment::from(s);
        seg.validate().map_err(|e| Status::invalid_argument(e.to_string()))?;
        rows.extend(sw::segment_to_rows(&seg));
    }
    sink.append_l7(rows).await.map_err(|_| Status::internal("store write failed"))
}

struct CollectSvc(Arc<ApmSink>);

impl tonic::server::ClientStreamingService<proto::SegmentObject> for CollectSvc {
    type Response = proto::Commands;
    type Future = BoxFuture<tonic::Response<proto::Commands>, Status>;
    fn call(&mut self, request: tonic::Request<Streaming<proto::SegmentObject>>) -> Self::Future {
        let sink = self.0.clone();
        Box::pin(async move {
            let mut stream = request.into_inner();
            let mut batch = Vec::new();
            // store every 64 segments, so that a long-lived stream's rows do not wait for its end
            while let Some(seg) = stream.message().await? {
                batch.push(seg);
                if batch.len() >= 64 {
                    store(&sink, std::mem::take(&mut batch)).await?;
                }
            }
            store(&sink, batch).await?;
            Ok(tonic::Response::new(proto::Commands::default()))
        })
    }
}

struct CollectInSyncSvc(Arc<ApmSink>);

impl tonic::server::UnaryService<proto::SegmentCollection> for CollectInSyncSvc {
    type Response = proto::Commands;
    type Future = BoxFuture<tonic::Response<proto::Commands>, Status>;
    fn call(&mut self, request: tonic::Request<proto::SegmentCollection>) -> Self::Future {
        let sink = self.0.clone();
        Box::pin(async move {
            store(&sink, request.into_inner().segments).await?;
            Ok(tonic::Response::new(proto::Commands::default()))
        })
    }
}

impl<B> Service<http::Request<B>> for TraceSegmentReportServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let sink = self.sink.clone();
        match req.uri().path() {
            COLLECT_PATH => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<proto::Commands, proto::SegmentObject>::default();
                Ok(tonic::server::Grpc::new(codec).client_streaming(CollectSvc(sink), req).await)
            }),
            COLLECT_IN_SYNC_PATH => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<proto::Commands, proto::SegmentCollection>::default();
                Ok(tonic::server::Grpc::new(codec).unary(CollectInSyncSvc(sink), req).await)
            }),
            _ => Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(Status::GRPC_STATUS, (tonic::Code::Unimplemented as i32).into());
                headers.insert(http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
                Ok(response)
            }),
        }
    }
}

/// Any request message, fields ignored (the management calls' `InstanceProperties` and
/// `InstancePingPkg`).
#[derive(Clone, PartialEq, prost::Message)]
struct Ignored {}

/// `skywalking.v3.ManagementService`: agents report instance properties and heartbeats
/// (`reportInstanceProperties`, `keepAlive`); accepted with an empty `Commands`, not stored.
#[derive(Clone, Default)]
pub struct ManagementServer;

impl tonic::server::NamedService for ManagementServer {
    const NAME: &'static str = "skywalking.v3.ManagementService";
}

struct AcceptSvc;

impl tonic::server::UnaryService<Ignored> for AcceptSvc {
    type Response = proto::Commands;
    type Future = BoxFuture<tonic::Response<proto::Commands>, Status>;
    fn call(&mut self, _request: tonic::Request<Ignored>) -> Self::Future {
        Box::pin(async move { Ok(tonic::Response::new(proto::Commands::default())) })
    }
}

impl<B> Service<http::Request<B>> for ManagementServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<proto::Commands, Ignored>::default();
            Ok(tonic::server::Grpc::new(codec).unary(AcceptSvc, req).await)
        })
    }
}

/// Serves the gRPC service on `addr` (a bound listener) until the process ends. The bearer
/// token, when set, is required as `authorization: Bearer TOKEN` metadata (SkyWalking agents
/// send `authentication: TOKEN` with `SW_AGENT_AUTHENTICATION`; both are accepted).
pub async fn serve_grpc(listener: tokio::net::TcpListener, sink: Arc<ApmSink>, token: Option<String>) {
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let svc = TraceSegmentReportServer::new(sink);
    let check = move |req: tonic::Request<()>| -> Result<tonic::Request<()>, Status> {
        let Some(tok) = &token else { return Ok(req) };
        let md = req.metadata();
        let bearer = md.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let plain = md.get("authentication").and_then(|v| v.to_str().ok());
        if bearer.or(plain).is_some_and(|t| crate::constant_eq(t.trim().as_bytes(), tok.as_bytes())) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("missing or wrong token"))
        }
    };
    let res = tonic::transport::Server::builder()
        .add_service(tonic::service::interceptor::InterceptedService::new(svc, check.clone()))
        .add_service(tonic::service::interceptor::InterceptedService::new(ManagementServer, check))
        .serve_with_incoming(incoming)
        .await;
    if let Err(e) = res {
        eprintln!("deepflow-server: SkyWalking gRPC: {e}");
    }
}
