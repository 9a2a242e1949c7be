//! Agent ingest over gRPC: `deepflow.ingest.v1.Ingest/Send` (deepflow-core's
//! `proto/deepflow/ingest/v1/ingest.proto`) on `--grpc-listen` (default 127.0.0.1:30033).
//!
//! Each call carries one batch of rows of one table as an Arrow IPC stream. The server checks
//! the token (`authorization: Bearer <token>` metadata when `--token` is set: UNAUTHENTICATED
//! otherwise, nothing stored), skips batches it already stored (same agent id, session and
//! seq: acknowledged with `duplicate = true`), decodes and validates the payload against the
//! table schema (INVALID_ARGUMENT with the reason otherwise), writes it with the other batches
//! that arrived within the commit interval (one Parquet file per table and hour, fsynced and
//! renamed into place) and only then answers with the Ack.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deepflow_store::Storage;
use deepflow_store::transport::grpc::{Ingest, IngestServer};
use deepflow_store::transport::tonic::{self, Request, Response, Status};
use deepflow_store::transport::{Ack, Batch, BatchWriter, BatchWriterOptions, Claim, Dedup, payload};

/// The default agent port.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:30033";

/// Command-line options of the agent ingest.
#[derive(clap::Args, Debug, Clone)]
pub struct IngestArgs {
    /// Agent gRPC ingest address (deepflow.ingest.v1.Ingest) [default: 127.0.0.1:30033; when
    /// not given and that port is taken, the server runs without agent ingest and says so].
    #[arg(long)]
    pub grpc_listen: Option<SocketAddr>,
    /// Group commit of agent batches: wait this long after a batch for more before writing
    /// them together (milliseconds; the ack comes after the write).
    #[arg(long, default_value_t = 100)]
    pub commit_ms: u64,
}

/// Counters of the agent ingest.
#[derive(Default)]
pub struct IngestCounters {
    /// Batches stored.
    pub batches: AtomicU64,
    /// Rows stored.
    pub rows: AtomicU64,
    /// Batches acknowledged as duplicates (not stored again).
    pub duplicates: AtomicU64,
    /// Batches refused as malformed.
    pub invalid: AtomicU64,
    /// Calls refused for a missing or wrong token.
    pub unauthenticated: AtomicU64,
    /// Batches whose write failed (the agent retries them).
    pub write_errors: AtomicU64,
}

/// The `Ingest` service: auth, dedup, validation, group-commit writes.
pub struct AgentIngest {
    writer: BatchWriter,
    dedup: Dedup,
    token: Option<String>,
    counters: std::sync::Arc<IngestCounters>,
}

impl AgentIngest {
    /// Starts the batch writer over `storage`. `commit_ms` is the group-commit interval.
    pub fn start(storage: Storage, token: Option<String>, commit_ms: u64) -> Result<AgentIngest, String> {
        let opts = BatchWriterOptions { commit_interval: Duration::from_millis(commit_ms), ..Default::default() };
        let writer = BatchWriter::start(storage, opts).map_err(|e| e.to_string())?;
        Ok(AgentIngest {
            writer,
            dedup: Dedup::new(),
            token: token.filter(|t| !t.is_empty()),
            counters: Default::default(),
        })
    }

    fn authorized<T>(&self, req: &Request<T>) -> bool {
        let Some(tok) = &self.token else { return true };
        req.metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| crate::constant_eq(t.trim().as_bytes(), tok.as_bytes()))
    }
}

impl Ingest for AgentIngest {
    async fn send(&self, request: Request<Batch>) -> Result<Response<Ack>, Status> {
        let c = &self.counters;
        if !self.authorized(&request) {
            c.unauthenticated.fetch_add(1, Ordering::Relaxed);
            return Err(Status::unauthenticated("missing or wrong token (metadata authorization: Bearer <token>)"));
        }
        let b = request.into_inner();
        if b.agent_id.is_empty() || b.seq == 0 {
            c.invalid.fetch_add(1, Ordering::Relaxed);
            return Err(Status::invalid_argument("agent_id must be set and seq must start at 1"));
        }
        let (agent, session, seq) = (b.agent_id.clone(), b.session, b.seq);
        // a resend of a batch still being written (the agent timed out) waits for that write:
        // answering at once would only make the agent send the payload again and again
        let mut waits = 0;
        loop {
            match self.dedup.claim(&agent, session, seq) {
                Claim::Duplicate => {
                    c.duplicates.fetch_add(1, Ordering::Relaxed);
                    return Ok(Response::new(Ack { seq, rows_written: 0, duplicate: true }));
                }
                Claim::InFlight if waits < 1200 => {
                    waits += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Claim::InFlight => return Err(Status::aborted("this batch is being written right now; retry")),
                Claim::New => break,
            }
        }
        // decoding is CPU work on untrusted bytes: off the async threads, and a panic in the
        // IPC reader is a refused batch, not a dead server
        let decoded = tokio::task::spawn_blocking(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                payload::decode(&b.table, &b.payload, b.row_count)
            }))
        })
        .await;
        let (table, batches) = match decoded {
            Ok(Ok(Ok(x))) => x,
            Ok(Ok(Err(e))) => {
                self.dedup.release(&agent, session, seq);
                c.invalid.fetch_add(1, Ordering::Relaxed);
                return Err(Status::invalid_argument(e.to_string()));
            }
            Ok(Err(_)) | Err(_) => {
                self.dedup.release(&agent, session, seq);
                c.invalid.fetch_add(1, Ordering::Relaxed);
                return Err(Status::invalid_argument("payload is not a valid Arrow IPC stream"));
            }
        };
        match self.writer.write(table, batches).await {
            Ok(n) => {
                self.dedup.complete(&agent, session, seq);
                c.batches.fetch_add(1, Ordering::Relaxed);
                c.rows.fetch_add(n, Ordering::Relaxed);
                Ok(Response::new(Ack { seq, rows_written: n, duplicate: false }))
            }
            Err(e) => {
                self.dedup.release(&agent, session, seq);
                c.write_errors.fetch_add(1, Ordering::Relaxed);
                Err(Status::unavailable(e))
            }
        }
    }
}

/// Binds the agent port and serves `ingest` on it in the background; returns the bound
/// address. With no address given the default port is tried and a failure to bind it is a
/// warning (`None`); a given address that cannot be bound is an error.
pub async fn spawn(
    addr: Option<SocketAddr>,
    ingest: AgentIngest,
    max_message: usize,
) -> Result<Option<SocketAddr>, Box<dyn std::error::Error>> {
    let explicit = addr.is_some();
    let addr = match addr {
        Some(a) => a,
        None => DEFAULT_GRPC_LISTEN.parse()?,
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if !explicit => {
            eprintln!("deepflow-server: warning: agent gRPC ingest not started: {addr}: {e} (set --grpc-listen)");
            return Ok(None);
        }
        Err(e) => return Err(format!("--grpc-listen {addr}: {e}").into()),
    };
    let bound = listener.local_addr()?;
    eprintln!("deepflow-server: agent gRPC ingest on {bound} (deepflow.ingest.v1.Ingest)");
    let counters = ingest.counters.clone();
    tokio::spawn(async move {
        let mut last = [0u64; 6];
        let mut iv = tokio::time::interval(Duration::from_secs(10));
        loop {
            iv.tick().await;
            let c = &counters;
            let now = [&c.batches, &c.rows, &c.duplicates, &c.invalid, &c.unauthenticated, &c.write_errors]
                .map(|a| a.load(Ordering::Relaxed));
            if now != last {
                eprintln!(
                    "deepflow-server: agent ingest: {} batches, {} rows stored, {} duplicates, {} invalid, {} unauthenticated, {} write errors",
                    now[0], now[1], now[2], now[3], now[4], now[5]
                );
                last = now;
            }
        }
    });
    let svc = IngestServer::new(ingest).max_decoding_message_size(max_message);
    tokio::spawn(async move {
        let res = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
        if let Err(e) = res {
            eprintln!("deepflow-server: agent gRPC ingest stopped: {e}");
        }
    });
    Ok(Some(bound))
}
