//! tonic glue for `deepflow.ingest.v1.Ingest` (what `tonic-build` would generate, written by
//! hand so that no `protoc` is needed): [`IngestServer`] wraps an [`Ingest`] implementation into
//! a service for `tonic::transport::Server::add_service`, [`IngestClient`] calls it.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use deepflow_core::proto::{Ack, Batch, INGEST_SEND_PATH, INGEST_SERVICE};
use tonic::codegen::{Body, BoxFuture, GrpcMethod, Service, StdError, http};
use tonic::{Request, Response, Status};

/// The server side of `deepflow.ingest.v1.Ingest`.
pub trait Ingest: Send + Sync + 'static {
    /// `Send`: store a batch and acknowledge it once durable.
    fn send(&self, request: Request<Batch>) -> impl Future<Output = Result<Response<Ack>, Status>> + Send;
}

/// A tonic service serving an [`Ingest`] implementation.
pub struct IngestServer<T> {
    inner: Arc<T>,
    max_decoding_message_size: Option<usize>,
}

impl<T> Clone for IngestServer<T> {
    fn clone(&self) -> Self {
        IngestServer { inner: self.inner.clone(), max_decoding_message_size: self.max_decoding_message_size }
    }
}

impl<T: Ingest> IngestServer<T> {
    /// Serves `inner`.
    pub fn new(inner: T) -> Self {
        IngestServer { inner: Arc::new(inner), max_decoding_message_size: None }
    }

    /// Largest request accepted, bytes (tonic's default is 4 MiB; larger requests get
    /// `OUT_OF_RANGE`).
    pub fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.max_decoding_message_size = Some(limit);
        self
    }
}

impl<T> tonic::server::NamedService for IngestServer<T> {
    const NAME: &'static str = INGEST_SERVICE;
}

struct SendSvc<T>(Arc<T>);

impl<T: Ingest> tonic::server::UnaryService<Batch> for SendSvc<T> {
    type Response = Ack;
    type Future = BoxFuture<Response<Ack>, Status>;
    fn call(&mut self, request: Request<Batch>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.send(request).await })
    }
}

impl<T, B> Service<http::Request<B>> for IngestServer<T>
where
    T: Ingest,
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
        if req.uri().path() == INGEST_SEND_PATH {
            let inner = self.inner.clone();
            let max = self.max_decoding_message_size;
            return Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<Ack, Batch>::default();
                let mut grpc = tonic::server::Grpc::new(codec).apply_max_message_size_config(max, None);
                Ok(grpc.unary(SendSvc(inner), req).await)
            });
        }
        Box::pin(async move {
            let mut response = http::Response::new(tonic::body::Body::default());
            let headers = response.headers_mut();
            headers.insert(Status::GRPC_STATUS, (tonic::Code::Unimplemented as i32).into());
            headers.insert(http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
            Ok(response)
        })
    }
}

/// A client of `deepflow.ingest.v1.Ingest` over a tonic channel.
#[derive(Clone, Debug)]
pub struct IngestClient {
    inner: tonic::client::Grpc<tonic::transport::Channel>,
}

impl IngestClient {
    /// A client over `channel`.
    pub fn new(channel: tonic::transport::Channel) -> Self {
        IngestClient { inner: tonic::client::Grpc::new(channel).max_decoding_message_size(1 << 20) }
    }

    /// Calls `Send`.
    pub async fn send(&mut self, mut request: Request<Batch>) -> Result<Response<Ack>, Status> {
        self.inner.ready().await.map_err(|e| Status::unavailable(format!("server not ready: {e}")))?;
        let codec = tonic_prost::ProstCodec::<Batch, Ack>::default();
        request.extensions_mut().insert(GrpcMethod::new(INGEST_SERVICE, "Send"));
        self.inner.unary(request, http::uri::PathAndQuery::from_static(INGEST_SEND_PATH), codec).await
    }
}
