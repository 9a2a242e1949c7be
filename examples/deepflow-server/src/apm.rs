//! SkyWalking and Pyroscope ingest wiring: the `--skywalking-grpc` option, the HTTP routes
//! (`/v3/segment(s)`, `/ingest`, behind the same bearer token and body limit as the other
//! APIs), the SkyWalking gRPC listener, and their store writer: one `StoreWriter` behind a mutex,
//! appended to from blocking tasks and flushed at least every [`FLUSH`] by a ticker task (the
//! crash-loss window of acknowledged rows, like `--flush-ms` for remote_write samples).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use deepflow_store::{Storage, StoreWriter, WriterOptions};

use crate::AppState;

/// Command-line options of the SkyWalking/Pyroscope ingest.
#[derive(clap::Args, Debug, Clone)]
pub struct ApmArgs {
    /// SkyWalking gRPC listen address (`TraceSegmentReportService`); empty disables it. When
    /// the address is taken the server logs it and runs without the gRPC receiver.
    #[arg(long, default_value = "127.0.0.1:11800")]
    pub skywalking_grpc: String,
}

/// Opens the writer, starts the SkyWalking gRPC listener and returns the HTTP routes (already
/// wrapped in the bearer-token check and body limit of `state`). Call inside the runtime.
pub async fn start(args: &ApmArgs, state: &Arc<AppState>, max_body: usize) -> Result<Router, String> {
    let sink = ApmSink::open(state.sql.storage().clone()).await?;
    let addr = args.skywalking_grpc.trim();
    if !addr.is_empty() {
        let addr: SocketAddr = addr.parse().map_err(|e| format!("--skywalking-grpc {addr:?}: {e}"))?;
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let local = listener.local_addr().map_err(|e| e.to_string())?;
                eprintln!("deepflow-server: SkyWalking gRPC (TraceSegmentReportService) on {local}");
                tokio::spawn(crate::skywalking::serve_grpc(listener, sink.clone(), state.token.clone()));
            }
            Err(e) => eprintln!("deepflow-server: SkyWalking gRPC disabled: cannot listen on {addr}: {e}"),
        }
    }
    Ok(Router::new()
        .merge(crate::skywalking::routes(sink.clone()))
        .merge(crate::pyroscope::routes(sink))
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth))
        .layer(DefaultBodyLimit::max(max_body)))
}

/// Longest time an acknowledged row stays buffered before it is written to Parquet.
pub const FLUSH: Duration = Duration::from_secs(1);

/// A shared, periodically flushed writer.
pub struct ApmSink {
    writer: Mutex<StoreWriter>,
}

impl ApmSink {
    /// Opens a writer on `storage` (on a blocking thread: opening recovers interrupted
    /// compactions through the store's own runtime) and starts its flush ticker (which holds
    /// only a weak reference: dropping the sink flushes and stops it).
    pub async fn open(storage: Storage) -> Result<Arc<ApmSink>, String> {
        let opts = crate::tags::writer_options(WriterOptions::default().with_flush(1 << 20, 256 << 20, FLUSH));
        let writer = tokio::task::spawn_blocking(move || StoreWriter::open(storage, opts))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let sink = Arc::new(ApmSink { writer: Mutex::new(writer) });
        let weak = Arc::downgrade(&sink);
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(FLUSH);
            loop {
                iv.tick().await;
                let Some(s) = weak.upgrade() else { break };
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = s.lock().tick() {
                        eprintln!("deepflow-server: ingest flush: {e}");
                    }
                })
                .await;
            }
        });
        Ok(sink)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreWriter> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ApmSink {
    /// Appends span rows (on a blocking thread), tagged by `--inventory` ([`crate::tags`]).
    pub async fn append_l7(self: &Arc<Self>, rows: Vec<deepflow_core::record::L7FlowLog>) -> Result<(), Response> {
        if rows.is_empty() {
            return Ok(());
        }
        let s = self.clone();
        match tokio::task::spawn_blocking(move || crate::tags::append_l7(&mut s.lock(), rows)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(crate::json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string())),
            Err(e) => Err(crate::json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string())),
        }
    }
}

impl ApmSink {
    /// Appends profile rows (on a blocking thread), tagged by `--inventory` ([`crate::tags`]).
    pub async fn append_profiles(
        self: &Arc<Self>,
        rows: Vec<deepflow_core::record::ProfileSample>,
    ) -> Result<(), Response> {
        if rows.is_empty() {
            return Ok(());
        }
        let s = self.clone();
        match tokio::task::spawn_blocking(move || crate::tags::append_profiles(&mut s.lock(), rows)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(crate::json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string())),
            Err(e) => Err(crate::json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string())),
        }
    }
}

impl Drop for ApmSink {
    fn drop(&mut self) {
        if let Err(e) = self.lock().flush() {
            eprintln!("deepflow-server: ingest flush at exit: {e}");
        }
    }
}
