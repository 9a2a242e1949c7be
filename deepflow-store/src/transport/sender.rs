//! The agent side: a buffering, retrying, failing-over sender of batches.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use deepflow_core::proto::{Batch, Compression};
use deepflow_tagging::TaggedRow;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message;
use tonic::Code;
use tonic::transport::Endpoint;

use super::grpc::IngestClient;
use super::payload;
use crate::error::{Result, StoreError};
use crate::schema::{Record, Table};

/// What [`Sender::send_batches`] does when the buffer (memory, and the spill directory when
/// there is one) is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFull {
    /// Wait for acknowledgements to make room (counted in [`SenderStats::blocked`] and
    /// [`SenderStats::blocked_ms`]): nothing is lost, the producer slows down to what the
    /// servers take. The default.
    #[default]
    Block,
    /// Drop the oldest batch that is not in flight (counted in [`SenderStats::batches_dropped`]
    /// and [`SenderStats::rows_dropped`]): the producer never waits.
    DropOldest,
}

/// Settings of a [`Sender`].
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Server URLs (`http://host:30033`), in order of preference: the sender uses the first
    /// and moves to the next one when a call fails for a reason other than the batch itself.
    /// May be empty: batches then wait (memory, spill) until [`Sender::set_servers`] gives one.
    pub servers: Vec<String>,
    /// Shared token, sent as `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The agent's id (`Batch.agent_id`).
    pub agent_id: String,
    /// Unacknowledged batches kept in memory.
    pub buffer_batches: usize,
    /// Unacknowledged payload bytes kept in memory.
    pub buffer_bytes: usize,
    /// Where batches go when the memory buffer is full, and where unacknowledged batches are
    /// left at [`Sender::close`] (a later sender with the same directory sends them first).
    pub spill_dir: Option<PathBuf>,
    /// Largest total size of the spill directory.
    pub spill_bytes: u64,
    /// What to do when everything is full.
    pub on_full: OnFull,
    /// Batches sent without waiting for their acknowledgement.
    pub max_in_flight: usize,
    /// Largest batch, rows ([`Sender::send_records`] splits larger inputs).
    pub max_batch_rows: usize,
    /// Time limit of one call (a server that takes longer is treated as gone).
    pub request_timeout: Duration,
    /// Time limit of connecting.
    pub connect_timeout: Duration,
    /// First retry delay after every server failed; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Arrow IPC body compression.
    pub compression: Compression,
    /// Keep a list of acknowledged batches for [`Sender::take_acked`] (tests, load tools).
    pub record_acks: bool,
}

impl SenderConfig {
    /// Defaults for these servers: 256 batches / 64 MiB in memory, no spill, block when full,
    /// 4 in flight, 8192 rows a batch, zstd.
    pub fn new(servers: Vec<String>) -> SenderConfig {
        SenderConfig {
            servers,
            token: None,
            agent_id: default_agent_id(),
            buffer_batches: 256,
            buffer_bytes: 64 << 20,
            spill_dir: None,
            spill_bytes: 1 << 30,
            on_full: OnFull::Block,
            max_in_flight: 4,
            max_batch_rows: 8192,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(3),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            compression: Compression::Zstd,
            record_acks: false,
        }
    }
}

/// The host name (`/etc/hostname`, `$HOSTNAME`), or `agent`.
pub fn default_agent_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "agent".to_string())
}

/// Counters of a [`Sender`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Batches handed to the sender.
    pub batches_queued: u64,
    /// Rows handed to the sender.
    pub rows_queued: u64,
    /// Batches acknowledged by a server (durably stored).
    pub batches_acked: u64,
    /// Rows acknowledged by a server.
    pub rows_acked: u64,
    /// Acknowledgements of batches the server had already stored (resent after a lost ack).
    pub duplicate_acks: u64,
    /// Batches a server refused as malformed (`INVALID_ARGUMENT`, too large): dropped.
    pub batches_rejected: u64,
    /// Rows of refused batches.
    pub rows_rejected: u64,
    /// Batches dropped because the buffer was full ([`OnFull::DropOldest`]).
    pub batches_dropped: u64,
    /// Rows of dropped batches.
    pub rows_dropped: u64,
    /// Times a send waited for room ([`OnFull::Block`]).
    pub blocked: u64,
    /// Milliseconds spent waiting for room.
    pub blocked_ms: u64,
    /// Batches written to the spill directory.
    pub batches_spilled: u64,
    /// Batches found in the spill directory at start (left by an earlier run).
    pub batches_restored: u64,
    /// Calls that failed and were retried.
    pub retries: u64,
    /// Moves to the next server.
    pub failovers: u64,
    /// Calls refused for a missing or wrong token.
    pub auth_failures: u64,
    /// Batches not acknowledged yet.
    pub buffered_batches: u64,
    /// Rows not acknowledged yet.
    pub buffered_rows: u64,
    /// Index in [`SenderConfig::servers`] of the server in use.
    pub server: usize,
    /// The last error a server returned.
    pub last_error: Option<String>,
}

/// One acknowledged batch (see [`SenderConfig::record_acks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedBatch {
    /// Agent id of the batch.
    pub agent_id: String,
    /// Session of the batch.
    pub session: u64,
    /// Sequence number.
    pub seq: u64,
    /// Table.
    pub table: String,
    /// Rows.
    pub rows: u64,
    /// The server had stored it before.
    pub duplicate: bool,
}

struct Item {
    id: u64,
    agent_id: String,
    session: u64,
    seq: u64,
    table: String,
    rows: u64,
    bytes: usize,
    /// None when the batch is in the spill directory only.
    batch: Option<Batch>,
    spill: Option<PathBuf>,
    inflight: bool,
}

#[derive(Default)]
struct State {
    /// The server URLs in use ([`SenderConfig::servers`], then [`Sender::set_servers`]).
    servers: Vec<String>,
    /// Bumped by every [`Sender::set_servers`].
    servers_gen: u64,
    queue: VecDeque<Item>,
    next_id: u64,
    next_seq: u64,
    mem_batches: usize,
    mem_bytes: usize,
    spill_bytes: u64,
    closing: bool,
    stop: bool,
    stats: SenderStats,
    acked: Vec<AckedBatch>,
}

impl State {
    fn remove(&mut self, id: u64) -> Option<Item> {
        let pos = self.queue.iter().position(|i| i.id == id)?;
        let item = self.queue.remove(pos)?;
        if item.batch.is_some() {
            self.mem_batches -= 1;
            self.mem_bytes -= item.bytes;
        }
        if let Some(p) = &item.spill {
            self.spill_bytes = self.spill_bytes.saturating_sub(item.bytes as u64);
            let _ = std::fs::remove_file(p);
        }
        self.stats.buffered_batches = self.queue.len() as u64;
        self.stats.buffered_rows = self.stats.buffered_rows.saturating_sub(item.rows);
        Some(item)
    }
}

struct Shared {
    st: Mutex<State>,
    cv: Condvar,
    wake: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sends rows to deepflow servers: encodes them as Arrow IPC [`Batch`]es, keeps every batch
/// until a server acknowledges it (in memory, then in an optional spill directory), sends up to
/// [`SenderConfig::max_in_flight`] at once, retries failed calls with exponential backoff, and
/// moves to the next server URL when one fails. See [`OnFull`] for what happens when the buffer
/// is full.
///
/// A batch is acknowledged only once its rows are durable on the server, so that what
/// [`SenderStats::rows_acked`] counts survives a server crash. A batch the server refuses as
/// malformed is dropped and counted ([`SenderStats::batches_rejected`]), never retried.
///
/// The calls run on a thread of the sender's own (a single-threaded tokio runtime), so the
/// methods are plain blocking functions.
pub struct Sender {
    shared: Arc<Shared>,
    cfg: Arc<SenderConfig>,
    session: u64,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("session", &self.session).field("stats", &self.stats()).finish()
    }
}

fn check_urls(servers: &[String]) -> Result<()> {
    for s in servers {
        Endpoint::from_shared(s.clone())
            .map_err(|e| StoreError::Config(format!("server URL {s:?}: {e} (expected http://host:port)")))?;
    }
    Ok(())
}

fn spill_name(session: u64, seq: u64) -> String {
    format!("{session:016x}-{seq:020}.batch")
}

fn write_spill(dir: &Path, b: &Batch) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(spill_name(b.session, b.seq));
    let tmp = dir.join(format!(".tmp-{}", spill_name(b.session, b.seq)));
    std::fs::write(&tmp, b.encode_to_vec())?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

impl Sender {
    /// Checks the settings, loads batches left in the spill directory, and starts sending.
    pub fn start(cfg: SenderConfig) -> Result<Sender> {
        check_urls(&cfg.servers)?;
        if let Some(t) = &cfg.token {
            tonic::metadata::MetadataValue::try_from(format!("Bearer {t}"))
                .map_err(|_| StoreError::Config("the token must be printable ASCII".into()))?;
        }
        let session = uuid::Uuid::new_v4().as_u64_pair().0;
        let mut st = State { next_seq: 1, servers: cfg.servers.clone(), ..Default::default() };
        if let Some(dir) = &cfg.spill_dir {
            restore_spill(dir, &mut st)?;
        }
        let shared = Arc::new(Shared { st: Mutex::new(st), cv: Condvar::new(), wake: tokio::sync::Notify::new() });
        let cfg = Arc::new(cfg);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Config(format!("cannot start the sender runtime: {e}")))?;
        let (sh, c) = (shared.clone(), cfg.clone());
        let thread = std::thread::Builder::new()
            .name("deepflow-sender".into())
            .spawn(move || rt.block_on(run(sh, c)))
            .map_err(|e| StoreError::Config(format!("cannot start the sender thread: {e}")))?;
        Ok(Sender { shared, cfg, session, thread: Some(thread) })
    }

    /// This sender's session id (`Batch.session`).
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Replaces the server URLs (in order of preference), e.g. when a controller assigns this
    /// agent to another ingester. Calls already in flight finish on the old connection (their
    /// acknowledgements count); every later call goes to the first new URL, then fails over
    /// along the new list. An empty list holds the batches until the next call. Invalid URLs:
    /// an error and nothing changes. Setting the list in use again changes nothing.
    pub fn set_servers(&self, servers: Vec<String>) -> Result<()> {
        check_urls(&servers)?;
        let mut st = self.shared.lock();
        if st.servers == servers {
            return Ok(());
        }
        st.servers = servers;
        st.servers_gen += 1;
        st.stats.server = 0;
        drop(st);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// The server URLs in use and the index of the one calls go to now.
    pub fn servers(&self) -> (Vec<String>, usize) {
        let st = self.shared.lock();
        (st.servers.clone(), st.stats.server)
    }

    /// Queues batches of `table` as one [`Batch`]; returns its sequence number. May wait or
    /// drop the oldest batch when the buffer is full ([`SenderConfig::on_full`]).
    pub fn send_batches(&self, table: Table, batches: &[RecordBatch]) -> Result<u64> {
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let payload = payload::encode_batches(batches, self.cfg.compression)?;
        self.push(table, payload, rows)
    }

    /// Queues tagged records, [`SenderConfig::max_batch_rows`] a batch; returns the sequence
    /// numbers.
    pub fn send_records<R: Record>(&self, rows: &[TaggedRow<R>]) -> Result<Vec<u64>> {
        rows.chunks(self.cfg.max_batch_rows.max(1))
            .map(|c| self.push(R::TABLE, payload::encode_records(c, self.cfg.compression)?, c.len() as u64))
            .collect()
    }

    fn push(&self, table: Table, payload: Vec<u8>, rows: u64) -> Result<u64> {
        let cfg = &self.cfg;
        let size = payload.len();
        let mut st = self.shared.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        let mut batch = Batch {
            agent_id: cfg.agent_id.clone(),
            session: self.session,
            seq,
            table: table.name().to_string(),
            compression: cfg.compression as i32,
            payload,
            row_count: rows,
        };
        st.stats.batches_queued += 1;
        st.stats.rows_queued += rows;
        let mut waited: Option<Instant> = None;
        let (in_mem, spill) = loop {
            if st.stop {
                return Err(StoreError::Config("sender closed".into()));
            }
            if st.mem_batches == 0 || (st.mem_batches < cfg.buffer_batches && st.mem_bytes + size <= cfg.buffer_bytes) {
                break (true, None);
            }
            if let Some(dir) = &cfg.spill_dir
                && st.spill_bytes + size as u64 <= cfg.spill_bytes
            {
                match write_spill(dir, &batch) {
                    Ok(p) => {
                        st.stats.batches_spilled += 1;
                        break (false, Some(p));
                    }
                    Err(e) => st.stats.last_error = Some(format!("spill {}: {e}", dir.display())),
                }
            }
            match cfg.on_full {
                OnFull::DropOldest => {
                    let oldest = st.queue.iter().find(|i| !i.inflight && i.batch.is_some()).map(|i| i.id);
                    if let Some(id) = oldest
                        && let Some(item) = st.remove(id)
                    {
                        st.stats.batches_dropped += 1;
                        st.stats.rows_dropped += item.rows;
                        continue;
                    }
                }
                OnFull::Block => {}
            }
            if waited.is_none() {
                waited = Some(Instant::now());
                st.stats.blocked += 1;
            }
            st = self.shared.cv.wait_timeout(st, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        };
        if let Some(t) = waited {
            st.stats.blocked_ms += t.elapsed().as_millis() as u64;
        }
        let id = st.next_id;
        st.next_id += 1;
        if in_mem {
            st.mem_batches += 1;
            st.mem_bytes += size;
        } else {
            st.spill_bytes += size as u64;
            batch.payload = Vec::new();
        }
        st.queue.push_back(Item {
            id,
            agent_id: cfg.agent_id.clone(),
            session: self.session,
            seq,
            table: table.name().to_string(),
            rows,
            bytes: size,
            batch: in_mem.then_some(batch),
            spill,
            inflight: false,
        });
        st.stats.buffered_batches = st.queue.len() as u64;
        st.stats.buffered_rows += rows;
        drop(st);
        self.shared.wake.notify_one();
        Ok(seq)
    }

    /// Counters so far.
    pub fn stats(&self) -> SenderStats {
        self.shared.lock().stats.clone()
    }

    /// The batches acknowledged since the last call (with [`SenderConfig::record_acks`]).
    pub fn take_acked(&self) -> Vec<AckedBatch> {
        std::mem::take(&mut self.shared.lock().acked)
    }

    /// Waits until every queued batch is acknowledged (or dropped), at most `timeout`; true
    /// when nothing is left.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while !st.queue.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Waits up to `timeout` for the acknowledgements, stops, and returns the final counters.
    /// Batches still unacknowledged are written to the spill directory when there is one (the
    /// next sender over it sends them) and are lost otherwise: see
    /// [`SenderStats::buffered_batches`].
    pub fn close(mut self, timeout: Duration) -> SenderStats {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        self.flush(timeout);
        self.stop()
    }

    fn stop(&mut self) -> SenderStats {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut st = self.shared.lock();
        if let Some(dir) = &self.cfg.spill_dir {
            let mut spilled = 0;
            for item in st.queue.iter_mut() {
                if let Some(b) = item.batch.take() {
                    match write_spill(dir, &b) {
                        Ok(p) => {
                            item.spill = Some(p);
                            spilled += 1;
                        }
                        Err(_) => item.batch = Some(b),
                    }
                }
            }
            st.stats.batches_spilled += spilled;
        }
        st.stats.clone()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

fn restore_spill(dir: &Path, st: &mut State) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    let mut files: Vec<PathBuf> =
        rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "batch")).collect();
    files.sort();
    for p in files {
        let Ok(bytes) = std::fs::read(&p) else { continue };
        let Ok(b) = Batch::decode(bytes.as_slice()) else {
            // a torn file from a crash: nothing to send
            let _ = std::fs::remove_file(&p);
            continue;
        };
        let id = st.next_id;
        st.next_id += 1;
        st.spill_bytes += bytes.len() as u64;
        st.stats.batches_restored += 1;
        st.stats.buffered_rows += b.row_count;
        st.queue.push_back(Item {
            id,
            agent_id: b.agent_id,
            session: b.session,
            seq: b.seq,
            table: b.table,
            rows: b.row_count,
            bytes: bytes.len(),
            batch: None,
            spill: Some(p),
            inflight: false,
        });
    }
    st.stats.buffered_batches = st.queue.len() as u64;
    Ok(())
}

/// Takes the next batch to send: marks it in flight and returns (id, batch).
fn next_item(shared: &Shared) -> Option<(u64, Batch)> {
    let mut st = shared.lock();
    loop {
        let item = st.queue.iter_mut().find(|i| !i.inflight)?;
        let batch = match (&item.batch, &item.spill) {
            (Some(b), _) => Some(b.clone()),
            (None, Some(p)) => std::fs::read(p).ok().and_then(|b| Batch::decode(b.as_slice()).ok()),
            (None, None) => None,
        };
        let id = item.id;
        match batch {
            Some(b) => {
                item.inflight = true;
                return Some((id, b));
            }
            None => {
                // the spill file is gone or torn: count it as dropped
                if let Some(item) = st.remove(id) {
                    st.stats.batches_dropped += 1;
                    st.stats.rows_dropped += item.rows;
                    st.stats.last_error = Some("unreadable spill file dropped".into());
                }
            }
        }
    }
}

fn connect(cfg: &SenderConfig, servers: &[String], idx: usize) -> Option<IngestClient> {
    let url = servers.get(idx)?;
    let ep = Endpoint::from_shared(url.clone())
        .ok()?
        .connect_timeout(cfg.connect_timeout)
        .timeout(cfg.request_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10));
    Some(IngestClient::new(ep.connect_lazy()))
}

async fn run(shared: Arc<Shared>, cfg: Arc<SenderConfig>) {
    let mut servers = cfg.servers.clone();
    let mut servers_gen = 0u64;
    let mut n = servers.len().max(1);
    let auth = cfg.token.as_ref().and_then(|t| tonic::metadata::MetadataValue::try_from(format!("Bearer {t}")).ok());
    let mut endpoint = 0usize;
    let mut generation = 0u64;
    let mut client: Option<IngestClient> = None;
    let mut inflight = FuturesUnordered::new();
    let mut backoff = cfg.backoff_min;
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut fails = 0usize;
    loop {
        {
            let mut st = shared.lock();
            if st.stop || (st.closing && st.queue.is_empty() && inflight.is_empty()) {
                break;
            }
            if st.servers_gen != servers_gen {
                // new servers (set_servers): start over at the first one; calls in flight
                // finish on the old connection and their failures no longer fail over
                servers_gen = st.servers_gen;
                servers = st.servers.clone();
                n = servers.len().max(1);
                endpoint = 0;
                st.stats.server = 0;
                generation += 1;
                client = None;
                fails = 0;
                backoff = cfg.backoff_min;
                retry_at = None;
            }
        }
        let now = tokio::time::Instant::now();
        if retry_at.is_none_or(|t| now >= t) {
            retry_at = None;
            while inflight.len() < cfg.max_in_flight.max(1) {
                // a client first: an item taken without one would stay in flight forever
                if client.is_none() {
                    client = connect(&cfg, &servers, endpoint);
                }
                let Some(mut c) = client.clone() else { break };
                let Some((id, batch)) = next_item(&shared) else { break };
                let mut req = tonic::Request::new(batch);
                if let Some(a) = &auth {
                    req.metadata_mut().insert("authorization", a.clone());
                }
                let g = generation;
                inflight.push(async move { (id, g, c.send(req).await) });
            }
        }
        let wait = retry_at.unwrap_or(now + Duration::from_millis(200));
        let done = tokio::select! {
            r = inflight.next(), if !inflight.is_empty() => r,
            _ = shared.wake.notified() => None,
            _ = tokio::time::sleep_until(wait) => None,
        };
        let Some((id, g, res)) = done else { continue };
        let mut st = shared.lock();
        match res {
            Ok(resp) => {
                let ack = resp.into_inner();
                if let Some(item) = st.remove(id) {
                    st.stats.batches_acked += 1;
                    st.stats.rows_acked += item.rows;
                    if ack.duplicate {
                        st.stats.duplicate_acks += 1;
                    }
                    if cfg.record_acks {
                        st.acked.push(AckedBatch {
                            agent_id: item.agent_id,
                            session: item.session,
                            seq: item.seq,
                            table: item.table,
                            rows: item.rows,
                            duplicate: ack.duplicate,
                        });
                    }
                }
                fails = 0;
                backoff = cfg.backoff_min;
            }
            Err(status) => {
                st.stats.last_error = Some(format!("{}: {}", servers.get(endpoint).map_or("", |s| s), status));
                match status.code() {
                    Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
                        if let Some(item) = st.remove(id) {
                            st.stats.batches_rejected += 1;
                            st.stats.rows_rejected += item.rows;
                        }
                    }
                    code => {
                        if let Some(item) = st.queue.iter_mut().find(|i| i.id == id) {
                            item.inflight = false;
                        }
                        st.stats.retries += 1;
                        let t = tokio::time::Instant::now();
                        if matches!(code, Code::Unauthenticated | Code::PermissionDenied) {
                            st.stats.auth_failures += 1;
                            retry_at = Some(t + backoff);
                            backoff = (backoff * 2).min(cfg.backoff_max);
                        } else if code == Code::Aborted {
                            // the server is still writing this batch (a resend raced it)
                            retry_at = Some(t + backoff);
                            backoff = (backoff * 2).min(cfg.backoff_max);
                        } else if g == generation {
                            fails += 1;
                            if n > 1 {
                                endpoint = (endpoint + 1) % n;
                                st.stats.failovers += 1;
                                st.stats.server = endpoint;
                            }
                            generation += 1;
                            client = None;
                            if fails >= n {
                                retry_at = Some(t + backoff);
                                backoff = (backoff * 2).min(cfg.backoff_max);
                            }
                        }
                    }
                }
            }
        }
        drop(st);
        shared.cv.notify_all();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use deepflow_core::proto::Ack;
    use deepflow_core::record::L4FlowLog;

    /// An in-process Ingest server that records the sequence numbers it acknowledges.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<u64>>>);

    impl super::super::grpc::Ingest for Recorder {
        async fn send(&self, req: tonic::Request<Batch>) -> std::result::Result<tonic::Response<Ack>, tonic::Status> {
            let b = req.into_inner();
            self.0.lock().unwrap().push(b.seq);
            Ok(tonic::Response::new(Ack { seq: b.seq, rows_written: b.row_count, duplicate: false }))
        }
    }

    fn serve(rt: &tokio::runtime::Runtime, rec: Recorder) -> String {
        super::super::serve_in_process(rt, rec)
    }

    fn rows(n: u64) -> Vec<TaggedRow<L4FlowLog>> {
        (0..n)
            .map(|i| TaggedRow {
                row: L4FlowLog {
                    flow_id: i,
                    start_time: 1_714_557_600_000_000 + i,
                    protocol: "TCP",
                    ..Default::default()
                },
                tags_0: Default::default(),
                tags_1: Default::default(),
            })
            .collect()
    }

    /// No server at first: batches wait; `set_servers` moves every later call to the new list
    /// (and fails over along it); an invalid URL changes nothing.
    #[test]
    fn set_servers_switches_the_destination() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (a, b) = (Recorder::default(), Recorder::default());
        let (url_a, url_b) = (serve(&rt, a.clone()), serve(&rt, b.clone()));
        let mut cfg = SenderConfig::new(Vec::new());
        cfg.backoff_min = Duration::from_millis(10);
        cfg.backoff_max = Duration::from_millis(50);
        let s = Sender::start(cfg).unwrap();
        s.send_records(&rows(3)).unwrap();
        assert!(!s.flush(Duration::from_millis(300)), "nowhere to send yet");
        assert!(s.set_servers(vec!["not a url".into()]).is_err());
        s.set_servers(vec![url_a.clone()]).unwrap();
        assert!(s.flush(Duration::from_secs(30)));
        assert_eq!(*a.0.lock().unwrap(), vec![1]);
        // a dead first URL: the sender fails over to b
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        s.set_servers(vec![dead, url_b.clone()]).unwrap();
        s.send_records(&rows(2)).unwrap();
        assert!(s.flush(Duration::from_secs(30)));
        assert_eq!(*b.0.lock().unwrap(), vec![2]);
        assert_eq!(s.servers(), (vec![s.servers().0[0].clone(), url_b], 1));
        let st = s.close(Duration::from_secs(1));
        assert_eq!((st.batches_acked, st.rows_acked), (2, 5), "{st:?}");
    }
}
