//! The server side: a group-commit writer of record batches and a duplicate filter.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::parquet::file::properties::WriterProperties;
use tokio::sync::oneshot;

use crate::error::{Result, StoreError};
use crate::schema::Table;
use crate::storage::{Hour, Storage};
use crate::writer::{encode_parquet, part_name, writer_properties};

/// Settings of a [`BatchWriter`].
#[derive(Debug, Clone)]
pub struct BatchWriterOptions {
    /// After the first batch of a commit arrives, wait this long for more before writing (the
    /// added ack latency; larger groups mean fewer, larger files).
    pub commit_interval: Duration,
    /// Write at once when a commit gathers this many rows.
    pub commit_rows: usize,
    /// Batches waiting for a commit before [`BatchWriter::write`] waits (backpressure).
    pub queue: usize,
    /// zstd level of the Parquet files.
    pub zstd_level: i32,
    /// Largest Parquet row group.
    pub row_group_rows: usize,
}

impl Default for BatchWriterOptions {
    fn default() -> Self {
        BatchWriterOptions {
            commit_interval: Duration::from_millis(100),
            commit_rows: 256 << 10,
            queue: 1024,
            zstd_level: 1,
            row_group_rows: 1 << 20,
        }
    }
}

/// Counters of a [`BatchWriter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchWriterStats {
    /// Rows written durably.
    pub rows: u64,
    /// Parquet files written.
    pub files: u64,
    /// Commits (each one fsync'd group of files).
    pub commits: u64,
    /// Failed commits (their batches were answered with the error).
    pub failed_commits: u64,
}

#[derive(Default)]
struct Counters {
    rows: AtomicU64,
    files: AtomicU64,
    commits: AtomicU64,
    failed: AtomicU64,
}

struct Job {
    table: Table,
    batches: Vec<RecordBatch>,
    done: oneshot::Sender<Result<u64, String>>,
}

/// Writes record batches of the four tables into a [`Storage`] with group commit: batches that
/// arrive within [`BatchWriterOptions::commit_interval`] of each other share one Parquet file per
/// table and hour, and [`BatchWriter::write`] returns only after that file is durable (written,
/// fsynced and renamed into place for a local directory; `put` for an object store). That is the
/// point at which a server may acknowledge the rows.
///
/// The files are the same as [`StoreWriter`](crate::StoreWriter)'s (same properties, same
/// `table=/date=/hour=` layout), so queries see them the same way. Rows are written as sent
/// (tag ids included); no tag dictionaries are written.
pub struct BatchWriter {
    tx: Option<mpsc::SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter").field("stats", &self.stats()).finish()
    }
}

impl BatchWriter {
    /// Starts the writer thread over `storage`.
    pub fn start(storage: Storage, opts: BatchWriterOptions) -> Result<BatchWriter> {
        let props = writer_properties(opts.row_group_rows, opts.zstd_level)?;
        let (tx, rx) = mpsc::sync_channel::<Job>(opts.queue.max(1));
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("batch-writer".into())
            .spawn(move || commit_loop(&storage, &opts, &props, &rx, &c))
            .map_err(|e| StoreError::Config(format!("cannot start the batch writer thread: {e}")))?;
        Ok(BatchWriter { tx: Some(tx), thread: Some(thread), counters })
    }

    /// Writes `batches` of `table` durably; returns the rows written. Waits for the commit
    /// (and, when the queue is full, for room in it).
    pub async fn write(&self, table: Table, batches: Vec<RecordBatch>) -> Result<u64, String> {
        let (done, rx) = oneshot::channel();
        let tx = self.tx.clone().ok_or_else(|| "batch writer closed".to_string())?;
        let job = Job { table, batches, done };
        // a full queue blocks: do it off the async worker threads
        tokio::task::spawn_blocking(move || tx.send(job))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "batch writer stopped".to_string())?;
        rx.await.map_err(|_| "batch writer stopped".to_string())?
    }

    /// Blocking [`BatchWriter::write`], for callers outside an async runtime.
    pub fn write_blocking(&self, table: Table, batches: Vec<RecordBatch>) -> Result<u64, String> {
        let (done, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or_else(|| "batch writer closed".to_string())?;
        tx.send(Job { table, batches, done }).map_err(|_| "batch writer stopped".to_string())?;
        rx.blocking_recv().map_err(|_| "batch writer stopped".to_string())?
    }

    /// Counters so far.
    pub fn stats(&self) -> BatchWriterStats {
        let c = &self.counters;
        BatchWriterStats {
            rows: c.rows.load(Ordering::Relaxed),
            files: c.files.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
            failed_commits: c.failed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for BatchWriter {
    fn drop(&mut self) {
        // the thread ends once the queue is drained and closed
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn commit_loop(
    storage: &Storage,
    opts: &BatchWriterOptions,
    props: &WriterProperties,
    rx: &mpsc::Receiver<Job>,
    c: &Counters,
) {
    while let Ok(first) = rx.recv() {
        let started = Instant::now();
        let mut rows: usize = first.batches.iter().map(|b| b.num_rows()).sum();
        let mut jobs = vec![first];
        while rows < opts.commit_rows {
            let left = opts.commit_interval.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left) {
                Ok(j) => {
                    rows += j.batches.iter().map(|b| b.num_rows()).sum::<usize>();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        match commit(storage, props, &jobs) {
            Ok(files) => {
                c.rows.fetch_add(rows as u64, Ordering::Relaxed);
                c.files.fetch_add(files, Ordering::Relaxed);
                c.commits.fetch_add(1, Ordering::Relaxed);
                for j in jobs {
                    let n = j.batches.iter().map(|b| b.num_rows() as u64).sum();
                    let _ = j.done.send(Ok(n));
                }
            }
            Err(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                let msg = format!("store write failed: {e}");
                for j in jobs {
                    let _ = j.done.send(Err(msg.clone()));
                }
            }
        }
    }
}

/// The partition column of a table: `start_time` for flow logs, `time` for metrics.
fn partition_column(batch: &RecordBatch) -> Option<&TimestampMicrosecondArray> {
    let s = batch.schema();
    let idx = s.index_of("start_time").or_else(|_| s.index_of("time")).ok()?;
    batch.column(idx).as_any().downcast_ref::<TimestampMicrosecondArray>()
}

/// Splits a batch by hourly partition.
fn by_hour(batch: &RecordBatch, out: &mut HashMap<i64, Vec<RecordBatch>>) -> Result<()> {
    let Some(times) = partition_column(batch) else {
        return Err(StoreError::Config("batch has no start_time/time column".into()));
    };
    let hour_of = |i: usize| Hour::from_us(if times.is_null(i) { 0 } else { times.value(i).max(0) as u64 }).0;
    let hours: BTreeSet<i64> = (0..batch.num_rows()).map(hour_of).collect();
    if hours.len() <= 1 {
        if let Some(h) = hours.first() {
            out.entry(*h).or_default().push(batch.clone());
        }
        return Ok(());
    }
    for h in hours {
        let mask = BooleanArray::from_iter((0..batch.num_rows()).map(|i| Some(hour_of(i) == h)));
        out.entry(h).or_default().push(filter_record_batch(batch, &mask)?);
    }
    Ok(())
}

/// Writes every job's rows: one file per table and hour. Returns the files written.
fn commit(storage: &Storage, props: &WriterProperties, jobs: &[Job]) -> Result<u64> {
    let mut groups: HashMap<(Table, i64), Vec<RecordBatch>> = HashMap::new();
    for j in jobs {
        let mut hours = HashMap::new();
        for b in &j.batches {
            by_hour(b, &mut hours)?;
        }
        for (h, bs) in hours {
            groups.entry((j.table, h)).or_default().extend(bs);
        }
    }
    let mut files = 0;
    let mut keys: Vec<_> = groups.keys().copied().collect();
    keys.sort();
    for key in keys {
        let Some(batches) = groups.get(&key) else { continue };
        // the Parquet writer gathers the batches into row groups itself: no concatenation
        let bytes = encode_parquet(batches, props)?;
        let rel = format!("table={}/{}/{}", key.0.name(), Hour(key.1).dir(), part_name());
        storage.put_atomic(&rel, bytes)?;
        files += 1;
    }
    Ok(files)
}

/// What [`Dedup::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen before: write it, then call [`Dedup::complete`] (or [`Dedup::release`]).
    New,
    /// Already written and acknowledged: acknowledge again, write nothing.
    Duplicate,
    /// Being written by another request right now: ask the sender to retry later.
    InFlight,
}

#[derive(Default)]
struct SessionSeqs {
    /// Every seq up to and including this one is done.
    low: u64,
    /// Done seqs above `low`.
    done: BTreeSet<u64>,
    /// Seqs being written.
    inflight: BTreeSet<u64>,
    last_seen: Option<Instant>,
}

/// Remembers which `(agent_id, session, seq)` batches were written, so that a batch sent again
/// (after a lost ack, a timeout, a reconnect) is acknowledged without being written twice.
///
/// Memory is bounded: per session, the seqs below the lowest gap are one number, and at most
/// [`Dedup::MAX_GAPS`] done seqs above a gap are kept (beyond that, the oldest gap is taken as
/// done, i.e. a batch that old would be treated as a duplicate); at most
/// [`Dedup::MAX_SESSIONS`] sessions are kept (the least recently seen is forgotten).
///
/// This is per server process: a batch that one server wrote but could not acknowledge (killed
/// between the fsync and the answer) is written again by the server the agent fails over to.
#[derive(Default)]
pub struct Dedup {
    sessions: Mutex<HashMap<(String, u64), SessionSeqs>>,
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedup").finish_non_exhaustive()
    }
}

impl Dedup {
    /// Done seqs kept above a gap, per session.
    pub const MAX_GAPS: usize = 1 << 16;
    /// Sessions remembered.
    pub const MAX_SESSIONS: usize = 1 << 14;

    /// A new, empty filter.
    pub fn new() -> Dedup {
        Dedup::default()
    }

    /// Claims a batch for writing.
    pub fn claim(&self, agent: &str, session: u64, seq: u64) -> Claim {
        let mut m = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= Self::MAX_SESSIONS && !m.contains_key(&(agent.to_string(), session)) {
            let oldest = m.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                m.remove(&k);
            }
        }
        let s = m.entry((agent.to_string(), session)).or_default();
        s.last_seen = Some(Instant::now());
        if seq <= s.low || s.done.contains(&seq) {
            Claim::Duplicate
        } else if !s.inflight.insert(seq) {
            Claim::InFlight
        } else {
            Claim::New
        }
    }

    /// Marks a claimed batch as written.
    pub fn complete(&self, agent: &str, session: u64, seq: u64) {
        let mut m = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let s = m.entry((agent.to_string(), session)).or_default();
        s.inflight.remove(&seq);
        if seq > s.low {
            s.done.insert(seq);
        }
        while s.done.remove(&(s.low + 1)) {
            s.low += 1;
        }
        while s.done.len() > Self::MAX_GAPS {
            let Some(first) = s.done.pop_first() else { break };
            s.low = first;
            while s.done.remove(&(s.low + 1)) {
                s.low += 1;
            }
        }
    }

    /// Gives up a claim (the write failed or the batch was refused): a retry writes it.
    pub fn release(&self, agent: &str, session: u64, seq: u64) {
        let mut m = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = m.get_mut(&(agent.to_string(), session)) {
            s.inflight.remove(&seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_claims() {
        let d = Dedup::new();
        assert_eq!(d.claim("a", 1, 1), Claim::New);
        assert_eq!(d.claim("a", 1, 1), Claim::InFlight);
        d.complete("a", 1, 1);
        assert_eq!(d.claim("a", 1, 1), Claim::Duplicate);
        assert_eq!(d.claim("a", 2, 1), Claim::New, "another session");
        d.release("a", 2, 1);
        assert_eq!(d.claim("a", 2, 1), Claim::New, "released claims can be retried");
        assert_eq!(d.claim("a", 1, 3), Claim::New);
        d.complete("a", 1, 3);
        assert_eq!(d.claim("a", 1, 2), Claim::New, "a gap stays claimable");
        d.complete("a", 1, 2);
        for s in 1..=3 {
            assert_eq!(d.claim("a", 1, s), Claim::Duplicate);
        }
        let m = d.sessions.lock().unwrap();
        let s = m.get(&("a".to_string(), 1)).unwrap();
        assert_eq!((s.low, s.done.len()), (3, 0));
    }
}
