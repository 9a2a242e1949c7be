//! The Parquet writer: records in, immutable hourly-partitioned zstd Parquet files out.
//!
//! # Layout
//! `<root>/table=<table>/date=YYYY-MM-DD/hour=HH/part-<unix ms>-<uuid>.parquet`, where the hour
//! is taken from `start_time` (flow logs) or `time` (metrics), in UTC. File names are unique
//! across writers (uuid v4), so several ingesters can share one root or bucket. The tag
//! dictionaries, when a [`Tagger`] is given, go to `<root>/tags/dictionaries.txt` and the custom
//! labels to `<root>/tags/labels.parquet` (rewritten atomically when they change).
//!
//! # Files
//! zstd (level 1 by default), dictionary encoding on every column but the (nearly) unique ones
//! ([`PLAIN_COLUMNS`]: random ids, µs times; the growing ones [`DELTA_COLUMNS`] delta encoded)
//! and the tag-id columns (`BYTE_STREAM_SPLIT`, see [`is_tag_id_column`]),
//! page-level statistics (min/max per page and row group, so time filters skip row groups) on
//! every column but the strings, row groups of at most [`WriterOptions::row_group_rows`] rows.
//! Rows of one flush and partition form one file. See [`writer_properties`].
//!
//! # Crash safety and the loss window
//! Rows are buffered in memory per table and written by [`StoreWriter::flush`]; as they arrive
//! they are encoded, [`WriterOptions::encode_batch_rows`] at a time (default [`ENCODE_BATCH_ROWS`]), into one in-memory Parquet file per
//! (table, hour), which the flush closes and stores (about 51 bytes per `l7_flow_log` row held
//! instead of the ~760-byte row). A file becomes
//! visible only complete: local files are written under a hidden temporary name
//! (`.tmp-<pid>-part-...`, never matched by `*.parquet`), fsynced, renamed into place, and the
//! directory is fsynced; on an object store the `put` itself is atomic. So a crash (kill -9,
//! power loss after `flush` returned) never leaves a partial visible file, and loses exactly the
//! rows appended since the last completed flush. That window is bounded by the flush policy,
//! whichever comes first:
//! - [`WriterOptions::flush_rows`] rows buffered in one table (default 1 M),
//! - [`WriterOptions::flush_bytes`] estimated bytes buffered over all tables (default 256 MiB),
//! - [`WriterOptions::flush_interval`] since the last flush (default 10 s), checked on append
//!   and on [`StoreWriter::tick`] (call it when idle).
//!
//! Temporary files of dead writers are removed when a writer opens the same root.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use datafusion::arrow::array::{RecordBatch, StringArray, UInt8Array, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use deepflow_core::record::{ApplicationMetrics, L4FlowLog, L7FlowLog, LogRecord, NetworkMetrics, ProfileSample};
use deepflow_tagging::{Endpoint, ResourceKind, RowContext, Snapshot, TaggedRow, Tagger, UniversalTags};

use crate::error::{Result, StoreError};
use crate::schema::{Record, Table};
use crate::storage::{Hour, Storage, TEMP_PREFIX};

/// Writer settings. See the [module docs](self) for what the flush settings bound.
#[derive(Clone)]
pub struct WriterOptions {
    /// Flush when one table buffers this many rows.
    pub flush_rows: usize,
    /// Flush when all tables together buffer about this many bytes.
    pub flush_bytes: usize,
    /// Flush when this much time passed since the last flush.
    pub flush_interval: Duration,
    /// Largest Parquet row group.
    pub row_group_rows: usize,
    /// zstd level (1 = fastest; 3 is zstd's default).
    pub zstd_level: i32,
    /// Tags rows with ids (`*_id_0`/`*_id_1`) when set; otherwise every tag id is 0.
    pub tagger: Option<Arc<Tagger>>,
    /// VPC of the capture point, for tagging (None = the tagger's default VPC).
    pub vpc: Option<u32>,
    /// Rows of one table and hour turned into one Arrow batch and encoded at a time
    /// (default [`ENCODE_BATCH_ROWS`]); at least 1.
    pub encode_batch_rows: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            flush_rows: 1 << 20,
            flush_bytes: 256 << 20,
            flush_interval: Duration::from_secs(10),
            row_group_rows: 1 << 20,
            zstd_level: 1,
            tagger: None,
            vpc: None,
            encode_batch_rows: ENCODE_BATCH_ROWS,
        }
    }
}

impl std::fmt::Debug for WriterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterOptions")
            .field("flush_rows", &self.flush_rows)
            .field("flush_bytes", &self.flush_bytes)
            .field("flush_interval", &self.flush_interval)
            .field("row_group_rows", &self.row_group_rows)
            .field("zstd_level", &self.zstd_level)
            .field("tagger", &self.tagger.is_some())
            .field("vpc", &self.vpc)
            .field("encode_batch_rows", &self.encode_batch_rows)
            .finish()
    }
}

impl WriterOptions {
    /// Sets the flush thresholds.
    pub fn with_flush(mut self, rows: usize, bytes: usize, interval: Duration) -> Self {
        self.flush_rows = rows.max(1);
        self.flush_bytes = bytes.max(1);
        self.flush_interval = interval;
        self
    }

    /// Tags rows with this tagger.
    pub fn with_tagger(mut self, tagger: Arc<Tagger>) -> Self {
        self.tagger = Some(tagger);
        self
    }
}

/// Counters of a writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Rows written to files, per table in [`Table::ALL`] order.
    pub rows: [u64; 6],
    /// Files written.
    pub files: u64,
    /// Bytes of Parquet written.
    pub bytes: u64,
    /// Completed flushes.
    pub flushes: u64,
    /// Stale temporary files removed at open.
    pub temp_files_removed: u64,
    /// Rows lost because their file could not be finished (a Parquet error at close; never
    /// expected: the file is in memory).
    pub rows_lost: u64,
}

/// Rows of one table since the last flush, encoded as they arrive: per hour, an open Parquet
/// writer (in memory) that takes an Arrow batch each time [`ENCODE_BATCH_ROWS`] rows of that
/// hour have arrived, plus the rows of the batch being filled. Files whose `put` failed wait
/// in `retry` for the next flush.
#[doc(hidden)]
pub struct Buffer<R> {
    parts: Vec<Part<R>>,
    /// index in `parts` of the hour the last row went to
    last: usize,
    /// encoded files whose `put` failed: hour, bytes, rows
    retry: Vec<(Hour, Bytes, usize)>,
    /// rows buffered (pending, encoded, or in `retry`)
    rows: usize,
    /// estimated memory of the buffered rows: row sizes of the pending ones, the Parquet
    /// writers' buffers and output, the bytes of the files waiting for a retry
    bytes: usize,
}

impl<R> Default for Buffer<R> {
    fn default() -> Self {
        Buffer { parts: Vec::new(), last: 0, retry: Vec::new(), rows: 0, bytes: 0 }
    }
}

/// The rows of one hour in a [`Buffer`].
struct Part<R> {
    hour: Hour,
    /// rows not yet encoded (fewer than [`ENCODE_BATCH_ROWS`])
    pending: Vec<TaggedRow<R>>,
    /// `approx_size` of the pending rows
    pending_bytes: usize,
    /// the file so far (created with the first batch)
    writer: Option<ArrowWriter<Vec<u8>>>,
    /// rows in the part, pending ones included
    rows: usize,
    /// memory of the writer after its last batch
    encoded_bytes: usize,
}

impl<R: Record> Part<R> {
    fn new(hour: Hour) -> Part<R> {
        Part { hour, pending: Vec::new(), pending_bytes: 0, writer: None, rows: 0, encoded_bytes: 0 }
    }

    /// Encodes the pending rows into the part's file. On error the rows stay pending.
    fn encode(&mut self, props: &WriterProperties) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = R::to_batch(&self.pending)?;
        let w = match &mut self.writer {
            Some(w) => w,
            None => self.writer.insert(ArrowWriter::try_new(Vec::new(), R::schema(), Some(props.clone()))?),
        };
        w.write(&batch)?;
        self.encoded_bytes = w.memory_size() + w.inner().capacity();
        // dropped while still in cache; the Vec keeps its room for the next batch
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Encodes the pending rows and closes the file: its bytes, None when the part is empty.
    fn finish(&mut self, props: &WriterProperties) -> Result<Option<Bytes>> {
        self.encode(props)?;
        match self.writer.take() {
            Some(w) => Ok(Some(Bytes::from(w.into_inner()?))),
            None => Ok(None),
        }
    }
}

impl<R: Record> Buffer<R> {
    /// Adds a row of `hour` whose `approx_size` is `size`; encodes a batch once `batch_rows` (at
    /// least 1, see [`StoreWriter::open`]) rows of that hour are pending.
    fn push(
        &mut self,
        row: TaggedRow<R>,
        size: usize,
        hour: Hour,
        batch_rows: usize,
        props: &WriterProperties,
    ) -> Result<()> {
        if self.parts.get(self.last).is_none_or(|p| p.hour != hour) {
            self.last = match self.parts.iter().position(|p| p.hour == hour) {
                Some(i) => i,
                None => {
                    self.parts.push(Part::new(hour));
                    self.parts.len() - 1
                }
            };
        }
        let Some(p) = self.parts.get_mut(self.last) else { return Ok(()) };
        p.pending.push(row);
        p.pending_bytes += size;
        p.rows += 1;
        self.rows += 1;
        self.bytes += size;
        if p.pending.len() >= batch_rows {
            let before = p.pending_bytes + p.encoded_bytes;
            let res = p.encode(props);
            let after = p.pending_bytes + p.encoded_bytes;
            self.bytes = (self.bytes + after).saturating_sub(before);
            res?;
        }
        Ok(())
    }

    fn recount_bytes(&mut self) {
        self.bytes = self.parts.iter().map(|p| p.pending_bytes + p.encoded_bytes).sum::<usize>()
            + self.retry.iter().map(|(_, b, _)| b.len()).sum::<usize>();
    }
}

#[derive(Default)]
#[doc(hidden)]
pub struct Buffers {
    l4: Buffer<L4FlowLog>,
    l7: Buffer<L7FlowLog>,
    network: Buffer<NetworkMetrics>,
    application: Buffer<ApplicationMetrics>,
    log: Buffer<LogRecord>,
    profile: Buffer<ProfileSample>,
}

/// Records the writer accepts: the tables' row types.
pub trait Storable: Record {
    #[doc(hidden)]
    fn buffer(b: &mut Buffers) -> &mut Buffer<Self>;
    #[doc(hidden)]
    fn tag(&self, snap: &Snapshot, vpc: Option<u32>) -> (UniversalTags, UniversalTags);
}

impl Storable for L4FlowLog {
    fn buffer(b: &mut Buffers) -> &mut Buffer<Self> {
        &mut b.l4
    }
    fn tag(&self, snap: &Snapshot, vpc: Option<u32>) -> (UniversalTags, UniversalTags) {
        snap.tag_l4(self, vpc)
    }
}

impl Storable for L7FlowLog {
    fn buffer(b: &mut Buffers) -> &mut Buffer<Self> {
        &mut b.l7
    }
    fn tag(&self, snap: &Snapshot, vpc: Option<u32>) -> (UniversalTags, UniversalTags) {
        snap.tag_l7(self, &RowContext { vpc, ..Default::default() })
    }
}

impl Storable for NetworkMetrics {
    fn buffer(b: &mut Buffers) -> &mut Buffer<Self> {
        &mut b.network
    }
    fn tag(&self, snap: &Snapshot, vpc: Option<u32>) -> (UniversalTags, UniversalTags) {
        let side = |ip| Endpoint { ip, vpc, ..Default::default() };
        snap.tag_pair(&side(self.ip_0), &side(self.ip_1))
    }
}

impl Storable for ApplicationMetrics {
    fn buffer(b: &mut Buffers) -> &mut Buffer<Self> {
        &mut b.application
    }
    fn tag(&self, snap: &Snapshot, vpc: Option<u32>) -> (UniversalTags, UniversalTags) {
        (UniversalTags::default(), snap.tag(&Endpoint { ip: Some(self.ip_1), vpc, ..Default::default() }))
    }
}

impl Storable for ProfileSample {
    fn buffer(b: &mut Buffers) -> &mut Buffer<Self> {
        &mut b.profile
    }
    fn tag(&self, _snap: &Snapshot, _vpc: Option<u32>) -> (UniversalTags, UniversalTags) {
        // profiles carry no addresses to tag
        Default::default()
    }
}

impl Storable for LogRecord {
    fn buffer(b: &mut Buffers) -> &mut Buffer<Self> {
        &mut b.log
    }
    fn tag(&self, _snap: &Snapshot, _vpc: Option<u32>) -> (UniversalTags, UniversalTags) {
        // log records carry no addresses to tag
        Default::default()
    }
}

/// Writes records to partitioned Parquet files. See the [module docs](self).
///
/// Not `Sync`: one writer per thread (or behind a mutex). Dropping the writer flushes (errors are
/// ignored then; call [`StoreWriter::close`] to see them).
pub struct StoreWriter {
    storage: Storage,
    opts: WriterOptions,
    props: WriterProperties,
    buf: Buffers,
    buffered_bytes: usize,
    appends_since_check: u32,
    last_flush: Instant,
    snapshot: Option<Arc<Snapshot>>,
    tags_written: Option<(u64, usize)>,
    stats: WriterStats,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter").field("storage", &self.storage).field("stats", &self.stats).finish()
    }
}

/// Columns (of any table) whose values are (nearly) all distinct: random ids, microsecond
/// times, URLs/SQL with ids in them. They are written without a dictionary, which would be
/// abandoned at its size limit anyway after hashing every value for nothing.
pub const PLAIN_COLUMNS: [&str; 13] = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "x_request_id_0",
    "x_request_id_1",
    "request_resource",
    "start_time",
    "end_time",
    "duration",
    "rrt",
    "flow_id",
    "syscall_trace_id_request",
    "syscall_trace_id_response",
];

/// Columns among [`PLAIN_COLUMNS`] that grow with the row order (times, flow ids): delta
/// encoded (`DELTA_BINARY_PACKED`), smaller and cheaper than plain + zstd alone.
pub const DELTA_COLUMNS: [&str; 3] = ["start_time", "end_time", "flow_id"];

/// Parquet writer properties used for every file of the store.
///
/// Min/max statistics (page level, so also per row group) are kept on every column but the
/// strings (`Utf8` and lists of it): time columns prune row groups and pages, integer ids are
/// cheap; string min/max costs a comparison per value (all statistics together were ~20 % of
/// encoding time for `l7_flow_log`) and never prunes the store's unsorted string columns.
pub fn writer_properties(row_group_rows: usize, zstd_level: i32) -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(zstd_level)?;
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_write_batch_size(WRITE_BATCH_SIZE)
        .set_created_by(format!("deepflow-store {}", env!("CARGO_PKG_VERSION")));
    for c in PLAIN_COLUMNS {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    for c in DELTA_COLUMNS {
        b = b.set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
    }
    for t in Table::ALL {
        for f in t.schema().fields() {
            let path = ColumnPath::from(f.name().as_str());
            if is_tag_id_column(f.name(), f.data_type()) {
                b = b
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
                continue;
            }
            let path = match f.data_type() {
                DataType::Utf8 => path,
                DataType::List(_) => ColumnPath::new(vec![f.name().clone(), "list".into(), "item".into()]),
                _ => continue,
            };
            b = b.set_column_statistics_enabled(path, EnabledStatistics::None);
        }
    }
    Ok(b.build())
}

/// Whether a column holds SmartEncoding tag ids (`pod_id_0`, `service_id_1`, the suffix-less
/// `pod_id` of one-resource tables, ...): `UInt32` written `BYTE_STREAM_SPLIT` without a
/// dictionary. Ids are small integers, so the split puts their (mostly zero) high bytes in
/// streams zstd all but removes, and the result is within 1.5 % of the dictionary's size
/// (50.8 → 51.5 bytes per generated `l7_flow_log` row) while the encoder skips the dictionary's
/// hash and probe per value (one `l7_flow_log` batch: 1.45 → 1.70–1.82 M rows per CPU second;
/// BENCHMARKS.md). pyarrow, DuckDB and ClickHouse read it (`tests/interop.rs`).
pub fn is_tag_id_column(name: &str, ty: &DataType) -> bool {
    *ty == DataType::UInt32
        && deepflow_tagging::TAG_COLUMNS
            .iter()
            .any(|t| name.strip_prefix(t).is_some_and(|rest| rest.is_empty() || rest == "_0" || rest == "_1"))
}

/// Values the Parquet column writers take at a time (parquet's default is 1024; each step has a
/// fixed cost per column).
const WRITE_BATCH_SIZE: usize = 8192;

/// Encodes batches as one Parquet file in memory.
pub fn encode_parquet(batches: &[RecordBatch], props: &WriterProperties) -> Result<Bytes> {
    let schema = batches.first().map(|b| b.schema()).ok_or_else(|| StoreError::Config("no batches".into()))?;
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema, Some(props.clone()))?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(Bytes::from(out))
}

/// Rows per Arrow batch handed to the Parquet writer by [`encode_rows`]. Row groups still hold
/// up to [`WriterOptions::row_group_rows`] rows (the Parquet writer accumulates batches); small
/// batches keep the Arrow buffers in cache and let the allocator reuse them, where one batch of
/// a whole row group (hundreds of MB for 1 M `l7_flow_log` rows) is mapped fresh, page by page,
/// at every flush.
pub const ENCODE_BATCH_ROWS: usize = 16 * 1024;

/// Encodes rows as one Parquet file in memory, building Arrow batches of
/// [`ENCODE_BATCH_ROWS`] rows on the way.
pub fn encode_rows<R: Record>(rows: &[TaggedRow<R>], props: &WriterProperties) -> Result<Bytes> {
    // room for the whole file up front (pages not written to are never touched)
    let mut out = Vec::with_capacity(rows.len().saturating_mul(96).max(4096));
    let mut w = ArrowWriter::try_new(&mut out, R::schema(), Some(props.clone()))?;
    for chunk in rows.chunks(ENCODE_BATCH_ROWS) {
        w.write(&R::to_batch(chunk)?)?;
    }
    w.close()?;
    Ok(Bytes::from(out))
}

/// A new unique part file name.
pub(crate) fn part_name() -> String {
    let ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("part-{ms}-{}.parquet", uuid::Uuid::new_v4().simple())
}

impl StoreWriter {
    /// A writer over `storage`. Removes temporary files of dead writers and finishes (or rolls
    /// back) interrupted compactions first.
    pub fn open(storage: Storage, mut opts: WriterOptions) -> Result<StoreWriter> {
        opts.encode_batch_rows = opts.encode_batch_rows.max(1);
        let props = writer_properties(opts.row_group_rows, opts.zstd_level)?;
        let stats = WriterStats { temp_files_removed: remove_stale_temp_files(&storage)?, ..Default::default() };
        crate::maintenance::recover(&storage)?;
        Ok(StoreWriter {
            storage,
            opts,
            props,
            buf: Buffers::default(),
            buffered_bytes: 0,
            appends_since_check: 0,
            last_flush: Instant::now(),
            snapshot: None,
            tags_written: None,
            stats,
        })
    }

    /// The storage written to.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Counters so far.
    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    /// Rows buffered (not yet in a file): what a crash now would lose.
    pub fn buffered_rows(&self) -> usize {
        self.buf.l4.rows
            + self.buf.l7.rows
            + self.buf.network.rows
            + self.buf.application.rows
            + self.buf.log.rows
            + self.buf.profile.rows
    }

    /// Appends one record, tagged with the writer's tagger (all ids 0 without one). May flush.
    pub fn append<R: Storable>(&mut self, row: R) -> Result<()> {
        let (t0, t1) = match &self.opts.tagger {
            Some(tagger) => {
                let snap = self.snapshot.get_or_insert_with(|| tagger.snapshot());
                row.tag(snap, self.opts.vpc)
            }
            None => Default::default(),
        };
        self.append_tagged(TaggedRow { row, tags_0: t0, tags_1: t1 })
    }

    /// Appends a record whose tags were already computed. May flush.
    ///
    /// Every [`WriterOptions::encode_batch_rows`] rows of one table and hour are encoded into that hour's
    /// Parquet file (in memory) right away, while they are in cache. An encoding error (a bug:
    /// schema and builders come from one column list) is returned and the batch's rows stay
    /// buffered.
    pub fn append_tagged<R: Storable>(&mut self, row: TaggedRow<R>) -> Result<()> {
        let size = row.row.approx_size();
        let hour = Hour::from_us(row.row.partition_time_us());
        let b = R::buffer(&mut self.buf);
        let before = b.bytes;
        let res = b.push(row, size, hour, self.opts.encode_batch_rows, &self.props);
        let full = b.rows >= self.opts.flush_rows;
        self.buffered_bytes = (self.buffered_bytes + b.bytes).saturating_sub(before);
        res?;
        self.appends_since_check += 1;
        if full || self.buffered_bytes >= self.opts.flush_bytes {
            return self.flush();
        }
        if self.appends_since_check >= 1024 {
            self.appends_since_check = 0;
            return self.tick();
        }
        Ok(())
    }

    /// Appends many records.
    pub fn extend<R: Storable>(&mut self, rows: impl IntoIterator<Item = R>) -> Result<()> {
        for r in rows {
            self.append(r)?;
        }
        Ok(())
    }

    /// Flushes if the flush interval has passed. Call it periodically when no rows arrive.
    pub fn tick(&mut self) -> Result<()> {
        if self.last_flush.elapsed() >= self.opts.flush_interval && self.buffered_rows() > 0 {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every buffered row to files (one per table and hour), durably. On error the rows
    /// of the failed table stay buffered and the next flush retries them.
    pub fn flush(&mut self) -> Result<()> {
        self.write_tags()?;
        let mut b = std::mem::take(&mut self.buf);
        let res = (|| {
            self.write_table(&mut b.l4)?;
            self.write_table(&mut b.l7)?;
            self.write_table(&mut b.network)?;
            self.write_table(&mut b.application)?;
            self.write_table(&mut b.log)?;
            self.write_table(&mut b.profile)
        })();
        // keep what failed for a retry
        self.buf = b;
        self.buffered_bytes = self.buf.l4.bytes
            + self.buf.l7.bytes
            + self.buf.network.bytes
            + self.buf.application.bytes
            + self.buf.log.bytes
            + self.buf.profile.bytes;
        self.last_flush = Instant::now();
        self.appends_since_check = 0;
        if res.is_ok() {
            self.stats.flushes += 1;
            // pick up a newer tag snapshot for the next rows
            self.snapshot = None;
        }
        res
    }

    /// Flushes and closes.
    pub fn close(mut self) -> Result<WriterStats> {
        self.flush()?;
        Ok(self.stats)
    }

    /// Closes the table's files (one per hour) and puts them, retried ones first. Files whose
    /// `put` fails stay in the buffer, encoded, for the next flush.
    fn write_table<R: Record>(&mut self, b: &mut Buffer<R>) -> Result<()> {
        if b.rows == 0 {
            return Ok(());
        }
        let mut res = Ok(());
        let mut kept = Vec::new();
        for mut p in std::mem::take(&mut b.parts) {
            match p.finish(&self.props) {
                Ok(Some(bytes)) => b.retry.push((p.hour, bytes, p.rows)),
                Ok(None) => {}
                Err(e) => {
                    // only pending rows can be left (a failed close loses its part: counted)
                    if res.is_ok() {
                        res = Err(e);
                    }
                    if p.writer.is_some() || !p.pending.is_empty() {
                        kept.push(p);
                    } else {
                        b.rows = b.rows.saturating_sub(p.rows);
                        self.stats.rows_lost += p.rows as u64;
                    }
                }
            }
        }
        b.parts = kept;
        b.last = 0;
        let mut done = 0;
        for (hour, bytes, rows) in &b.retry {
            let rel = format!("table={}/{}/{}", R::TABLE.name(), hour.dir(), part_name());
            let len = bytes.len() as u64;
            if let Err(e) = self.storage.put_atomic(&rel, bytes.clone()) {
                if res.is_ok() {
                    res = Err(e);
                }
                break;
            }
            done += 1;
            b.rows = b.rows.saturating_sub(*rows);
            self.stats.files += 1;
            self.stats.bytes += len;
            if let Some(c) = Table::ALL.iter().position(|t| *t == R::TABLE).and_then(|i| self.stats.rows.get_mut(i)) {
                *c += *rows as u64;
            }
        }
        b.retry.drain(..done);
        b.recount_bytes();
        res
    }

    /// Saves the tagger's dictionaries and labels next to the data when they changed.
    fn write_tags(&mut self) -> Result<()> {
        let Some(tagger) = &self.opts.tagger else { return Ok(()) };
        let snap = tagger.snapshot();
        let (version, dict) = tagger.with_dictionaries(|d| (d.version(), d.encode()));
        let key = (version, snap.labels().len());
        if self.tags_written == Some(key) {
            return Ok(());
        }
        self.storage.put_atomic(crate::query::DICT_FILE, Bytes::from(dict))?;
        let labels = labels_batch(&snap)?;
        let bytes = encode_parquet(&[labels], &self.props)?;
        self.storage.put_atomic(crate::query::LABELS_FILE, bytes)?;
        self.tags_written = Some(key);
        Ok(())
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        if self.buffered_rows() > 0 {
            let _ = self.flush();
        }
    }
}

/// The custom-label rows of a snapshot as a batch: `kind` (dictionary kind name, e.g. `pod`),
/// `resource_id`, `key_id`, `value_id` (ids in the `label_key` / `label_value` dictionaries),
/// `source` (0 label, 1 annotation, 2 CMDB, 3 cloud tag).
pub fn labels_batch(snap: &Snapshot) -> Result<RecordBatch> {
    let l = snap.labels();
    let schema = Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("resource_id", DataType::UInt32, false),
        Field::new("key_id", DataType::UInt32, false),
        Field::new("value_id", DataType::UInt32, false),
        Field::new("source", DataType::UInt8, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(l.iter().map(|r| ResourceKind::name(r.kind)))),
            Arc::new(UInt32Array::from_iter_values(l.iter().map(|r| r.resource_id))),
            Arc::new(UInt32Array::from_iter_values(l.iter().map(|r| r.key_id))),
            Arc::new(UInt32Array::from_iter_values(l.iter().map(|r| r.value_id))),
            Arc::new(UInt8Array::from_iter_values(l.iter().map(|r| r.source as u8))),
        ],
    )?)
}

/// Removes temporary files left by writers that died (their pid is gone, or they are older
/// than an hour). Returns how many were removed. Local directories only.
pub fn remove_stale_temp_files(storage: &Storage) -> Result<u64> {
    let Some(root) = storage.local_root() else { return Ok(0) };
    let mut removed = 0;
    let mut stack = vec![root.to_path_buf()];
    let me = std::process::id();
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(TEMP_PREFIX) else { continue };
            let pid: Option<u32> = rest.split('-').next().and_then(|s| s.parse().ok());
            let dead = match pid {
                Some(p) if p == me => false,
                Some(p) => !std::path::Path::new(&format!("/proc/{p}")).exists(),
                None => true,
            };
            let old = e
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|a| a > Duration::from_secs(3600));
            if (dead || old) && std::fs::remove_file(&p).is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::compute::concat_batches;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// Rows of two hours, interleaved, more than one encoded batch per hour: each hour's file
    /// holds that hour's rows in arrival order, with the values of a batch built directly.
    #[test]
    fn rows_encoded_at_append_keep_hour_and_order() {
        rows_encoded_in_batches_of(ENCODE_BATCH_ROWS);
        rows_encoded_in_batches_of(1000);
        rows_encoded_in_batches_of(1);
    }

    fn rows_encoded_in_batches_of(batch: usize) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let opts = WriterOptions { encode_batch_rows: batch, ..Default::default() };
        let mut w = StoreWriter::open(storage, opts).unwrap();
        let t0 = 1_714_557_600; // an hour boundary
        let n = batch.max(1000) * 3 + 123;
        let rows: Vec<TaggedRow<NetworkMetrics>> = (0..n)
            .map(|i| {
                let h = u64::from(i % 3 == 0);
                let row = NetworkMetrics {
                    time: t0 + h * 3600 + (i as u64 * 7) % 3600,
                    interval: 1,
                    server_port: (i % 65_536) as u16,
                    protocol: "TCP",
                    flow: i as u64,
                    ..Default::default()
                };
                let tags = UniversalTags { pod_id: i as u32 % 1000, ..Default::default() };
                TaggedRow { row, tags_0: tags, tags_1: Default::default() }
            })
            .collect();
        for r in rows.iter().cloned() {
            w.append_tagged(r).unwrap();
        }
        assert_eq!(w.buffered_rows(), n);
        w.flush().unwrap();
        assert_eq!(w.buffered_rows(), 0);
        // a later flush writes new files
        w.append_tagged(rows[0].clone()).unwrap();
        assert_eq!(w.buffered_rows(), 1);
        let st = w.close().unwrap();
        assert_eq!((st.files, st.rows[2], st.rows_lost), (3, n as u64 + 1, 0));
        for h in [0u64, 1] {
            let hour = Hour::from_us((t0 + h * 3600) * 1_000_000);
            let expected: Vec<_> =
                rows.iter().filter(|r| Hour::from_us(r.row.partition_time_us()) == hour).cloned().collect();
            assert!(expected.len() > batch);
            let expected = NetworkMetrics::to_batch(&expected).unwrap();
            let hdir = dir.path().join("table=network").join(hour.dir());
            let mut found = 0;
            for e in std::fs::read_dir(&hdir).unwrap() {
                let f = std::fs::File::open(e.unwrap().path()).unwrap();
                let r = ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
                let got: Vec<RecordBatch> = r.map(|b| b.unwrap()).collect();
                let got = concat_batches(&NetworkMetrics::schema(), &got).unwrap();
                if got.num_rows() != expected.num_rows() {
                    continue;
                }
                found += 1;
                for (i, f) in NetworkMetrics::schema().fields().iter().enumerate() {
                    assert_eq!(got.column(i).as_ref(), expected.column(i).as_ref(), "{} differs", f.name());
                }
            }
            assert_eq!(found, 1, "one file of the first flush in {}", hdir.display());
        }
    }

    /// The encodings of each column of the first row group of a Parquet file.
    fn column_encodings(bytes: &Bytes) -> Vec<(String, Vec<Encoding>)> {
        use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        reader
            .metadata()
            .row_group(0)
            .columns()
            .iter()
            .map(|c| (c.column_path().string(), c.encodings().collect()))
            .collect()
    }

    /// Tag-id columns of every table are written BYTE_STREAM_SPLIT without a dictionary and
    /// read back equal; other columns keep their encodings.
    #[test]
    fn tag_ids_are_byte_stream_split() {
        assert!(is_tag_id_column("pod_id_0", &DataType::UInt32));
        assert!(is_tag_id_column("service_id", &DataType::UInt32));
        assert!(is_tag_id_column("gprocess_id_1", &DataType::UInt32));
        assert!(!is_tag_id_column("pod_id_2", &DataType::UInt32));
        assert!(!is_tag_id_column("process_id_0", &DataType::UInt32));
        assert!(!is_tag_id_column("pod_id_0", &DataType::Utf8));
        let rows: Vec<TaggedRow<NetworkMetrics>> = (0..5000u32)
            .map(|i| TaggedRow {
                row: NetworkMetrics { time: 1_714_557_600, interval: 1, protocol: "TCP", ..Default::default() },
                tags_0: UniversalTags { pod_id: i.wrapping_mul(2_654_435_761), az_id: i % 3, ..Default::default() },
                tags_1: UniversalTags { service_id: i % 70_000, ..Default::default() },
            })
            .collect();
        let batch = NetworkMetrics::to_batch(&rows).unwrap();
        let bytes = encode_parquet(std::slice::from_ref(&batch), &writer_properties(1 << 20, 1).unwrap()).unwrap();
        let mut split = 0;
        for (name, encodings) in column_encodings(&bytes) {
            let ty = batch.schema().field_with_name(&name).map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
            if is_tag_id_column(&name, &ty) {
                split += 1;
                assert!(encodings.contains(&Encoding::BYTE_STREAM_SPLIT), "{name}: {encodings:?}");
                assert!(!encodings.contains(&Encoding::RLE_DICTIONARY), "{name}: {encodings:?}");
            } else {
                assert!(!encodings.contains(&Encoding::BYTE_STREAM_SPLIT), "{name}: {encodings:?}");
            }
        }
        assert_eq!(split, 24);
        let back: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(concat_batches(&batch.schema(), &back).unwrap(), batch);
    }

    /// Files written before the split (dictionary-encoded tag ids) and after it sit in one table
    /// and read, query and compact together.
    #[test]
    fn files_with_dictionary_and_split_ids_mix() {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::UInt64Type;
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let t0 = 1_714_557_600;
        let rows = |k: u32| -> Vec<TaggedRow<NetworkMetrics>> {
            (0..3000u32)
                .map(|i| TaggedRow {
                    row: NetworkMetrics {
                        time: t0 + u64::from(i % 3600),
                        interval: 1,
                        protocol: "TCP",
                        ..Default::default()
                    },
                    tags_0: UniversalTags { pod_id: k + i % 500, ..Default::default() },
                    tags_1: UniversalTags { service_id: k + i % 7, ..Default::default() },
                })
                .collect()
        };
        // the old layout: dictionary on every tag-id column
        let mut old = writer_properties(1 << 20, 1).unwrap().into_builder();
        for f in NetworkMetrics::schema().fields() {
            if is_tag_id_column(f.name(), f.data_type()) {
                let c = ColumnPath::from(f.name().as_str());
                old = old.set_column_encoding(c.clone(), Encoding::PLAIN).set_column_dictionary_enabled(c, true);
            }
        }
        let old_rows = rows(1);
        let bytes = encode_parquet(&[NetworkMetrics::to_batch(&old_rows).unwrap()], &old.build()).unwrap();
        let (_, pod) = column_encodings(&bytes).into_iter().find(|(name, _)| name == "pod_id_0").unwrap();
        assert!(pod.contains(&Encoding::RLE_DICTIONARY), "{pod:?}");
        let hour = Hour::from_us(t0 * 1_000_000);
        storage.put_atomic(&format!("table=network/{}/part-0-old.parquet", hour.dir()), bytes).unwrap();
        let mut w = StoreWriter::open(storage.clone(), WriterOptions::default()).unwrap();
        let new_rows = rows(1000);
        for r in new_rows.iter().cloned() {
            w.append_tagged(r).unwrap();
        }
        w.close().unwrap();
        let expect: u64 =
            old_rows.iter().chain(new_rows.iter()).map(|r| u64::from(r.tags_0.pod_id + r.tags_1.service_id)).sum();
        let sum = |engine: &crate::QueryEngine| -> (u64, i64) {
            let b = engine
                .query("SELECT CAST(sum(pod_id_0) + sum(service_id_1) AS BIGINT UNSIGNED) AS s, count(*) AS n FROM network_ids")
                .unwrap();
            (
                b[0].column(0).as_primitive::<UInt64Type>().value(0),
                b[0].column(1).as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0),
            )
        };
        assert_eq!(sum(&crate::QueryEngine::open(storage.clone()).unwrap()), (expect, 6000));
        // compaction rewrites both into one file with the split
        let report = crate::maintenance::compact(
            &storage,
            Table::Network,
            &crate::maintenance::CompactionOptions::default(),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!((report.files, report.files_written, report.skipped), (2, 1, 0), "{report:?}");
        assert_eq!(sum(&crate::QueryEngine::open(storage).unwrap()), (expect, 6000));
    }
}
