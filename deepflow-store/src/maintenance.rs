//! Retention (by partition age and by a byte budget per table) and compaction of small files.
//!
//! Both work on whole files through [`Storage`], so they run the same on a local directory and
//! on an object store.
//!
//! # Compaction protocol
//! Merging the small files `a`, `b`, `c` of one partition into `d`:
//! 1. write an intent `_compaction-<uuid>.intent` (lists `d` and `a b c`) atomically;
//! 2. write `d` atomically;
//! 3. delete `a`, `b`, `c`; 4. delete the intent.
//!
//! A crash before 2 completes leaves `a b c` (the intent is rolled back at the next
//! [`recover`]); a crash after 2 is rolled forward by [`recover`] (deletes what is left of
//! `a b c`). No row is ever lost; a reader listing the partition between steps 2 and 3 (or
//! after a crash there, until [`recover`] runs — every [`crate::StoreWriter::open`] does) can see
//! the rows of `a b c` twice. Intents do not end in `.parquet`, so no reader sees them.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::properties::WriterProperties;

use crate::error::{Result, StoreError};
use crate::schema::Table;
use crate::storage::{Hour, Storage, StoredFile};
use crate::writer::{encode_parquet, part_name, writer_properties};

/// One hourly partition of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The hour.
    pub hour: Hour,
    /// Its directory relative to the root (`table=t/date=d/hour=h`).
    pub dir: String,
    /// Its Parquet files.
    pub files: Vec<StoredFile>,
    /// Every object in the directory (Parquet files, intents).
    pub all: Vec<StoredFile>,
}

impl Partition {
    /// Bytes of Parquet data.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The partitions of a table, oldest first.
pub fn partitions(storage: &Storage, table: Table) -> Result<Vec<Partition>> {
    let mut by_hour: std::collections::BTreeMap<Hour, Partition> = Default::default();
    for f in storage.list(&format!("table={}", table.name()))? {
        let Some(hour) = Hour::parse_path(&f.path) else { continue };
        let p = by_hour.entry(hour).or_insert_with(|| Partition {
            hour,
            dir: format!("table={}/{}", table.name(), hour.dir()),
            files: Vec::new(),
            all: Vec::new(),
        });
        if f.path.ends_with(".parquet") {
            p.files.push(f.clone());
        }
        p.all.push(f);
    }
    let mut v: Vec<Partition> = by_hour.into_values().collect();
    for p in &mut v {
        p.files.sort_by(|a, b| a.path.cmp(&b.path));
    }
    Ok(v)
}

/// Retention of one table: partitions older than `max_age` go, then the oldest partitions
/// until the table fits in `max_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Delete partitions whose hour ended more than this long before `now`.
    pub max_age: Option<Duration>,
    /// Keep the table's Parquet bytes at or below this, deleting oldest partitions first.
    pub max_bytes: Option<u64>,
}

/// What a retention or compaction run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Partitions deleted (retention) or compacted (compaction).
    pub partitions: u64,
    /// Files deleted (retention) or merged (compaction).
    pub files: u64,
    /// Bytes deleted (retention) or of the merged inputs (compaction).
    pub bytes: u64,
    /// Files written (compaction).
    pub files_written: u64,
    /// Bytes written (compaction).
    pub bytes_written: u64,
    /// Partitions skipped (compaction: files with different schemas).
    pub skipped: u64,
}

/// Applies `policy` to `table` as of `now`.
pub fn apply_retention(
    storage: &Storage,
    table: Table,
    policy: RetentionPolicy,
    now: SystemTime,
) -> Result<MaintenanceReport> {
    let parts = partitions(storage, table)?;
    let mut report = MaintenanceReport::default();
    let mut total: u64 = parts.iter().map(Partition::bytes).sum();
    let now_secs = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    for p in &parts {
        // the partition's hour ended at least `max_age` before `now`
        let end_secs = (p.hour.0 + 1).saturating_mul(3600);
        let too_old = policy.max_age.is_some_and(|age| end_secs.saturating_add(age.as_secs() as i64) <= now_secs);
        let over_budget = policy.max_bytes.is_some_and(|b| total > b);
        if !(too_old || over_budget) {
            // partitions are oldest first: once one survives both rules, the age rule keeps
            // the rest; the budget rule may still need later ones
            if policy.max_bytes.is_none_or(|b| total <= b) {
                break;
            }
            continue;
        }
        for f in &p.all {
            storage.delete(&f.path)?;
            report.files += u64::from(f.path.ends_with(".parquet"));
        }
        let b = p.bytes();
        total -= b;
        report.bytes += b;
        report.partitions += 1;
        storage.remove_empty_dirs(&p.dir);
    }
    storage.remove_empty_dirs(&format!("table={}", table.name()));
    Ok(report)
}

/// Compaction settings.
#[derive(Debug, Clone)]
pub struct CompactionOptions {
    /// Files at or above this size are left alone.
    pub small_file_bytes: u64,
    /// Merge a partition only when it has at least this many small files.
    pub min_files: usize,
    /// Leave partitions younger than this alone (they may still receive files).
    pub min_age: Duration,
    /// Properties of the merged files.
    pub properties: WriterProperties,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            small_file_bytes: 64 << 20,
            min_files: 2,
            min_age: Duration::ZERO,
            properties: writer_properties(1 << 20, 1).unwrap_or_default(),
        }
    }
}

fn read_parquet(bytes: Bytes) -> Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.with_batch_size(65_536).build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// Merges the small files of every partition of `table` (older than `opts.min_age` as of `now`)
/// into one file per partition, with the protocol described in the [module docs](self).
pub fn compact(
    storage: &Storage,
    table: Table,
    opts: &CompactionOptions,
    now: SystemTime,
) -> Result<MaintenanceReport> {
    recover(storage)?;
    let mut report = MaintenanceReport::default();
    let newest = Hour::from_system_time(now.checked_sub(opts.min_age).unwrap_or(SystemTime::UNIX_EPOCH));
    for p in partitions(storage, table)? {
        if p.hour.0 + 1 > newest.0 && !opts.min_age.is_zero() {
            continue;
        }
        let small: Vec<&StoredFile> = p.files.iter().filter(|f| f.size < opts.small_file_bytes).collect();
        if small.len() < opts.min_files.max(2) {
            continue;
        }
        let mut batches = Vec::new();
        for f in &small {
            batches.extend(read_parquet(storage.get(&f.path)?)?);
        }
        let Some(schema) = batches.first().map(RecordBatch::schema) else { continue };
        if batches.iter().any(|b| b.schema() != schema) {
            report.skipped += 1;
            continue;
        }
        let out_name = part_name();
        let out = format!("{}/{out_name}", p.dir);
        let intent = format!("{}/_compaction-{}.intent", p.dir, uuid::Uuid::new_v4().simple());
        let mut text = format!("output {out_name}\n");
        for f in &small {
            let name = f.path.rsplit('/').next().unwrap_or(&f.path);
            text.push_str(&format!("input {name}\n"));
        }
        storage.put_atomic(&intent, Bytes::from(text))?;
        let bytes = encode_parquet(&batches, &opts.properties)?;
        let written = bytes.len() as u64;
        storage.put_atomic(&out, bytes)?;
        for f in &small {
            storage.delete(&f.path)?;
        }
        storage.delete(&intent)?;
        report.partitions += 1;
        report.files += small.len() as u64;
        report.bytes += small.iter().map(|f| f.size).sum::<u64>();
        report.files_written += 1;
        report.bytes_written += written;
    }
    Ok(report)
}

/// Finishes or rolls back interrupted compactions (see the [module docs](self)). Returns how
/// many intents were resolved.
pub fn recover(storage: &Storage) -> Result<u64> {
    let mut n = 0;
    for t in Table::ALL {
        for f in storage.list(&format!("table={}", t.name()))? {
            if !f.path.ends_with(".intent") {
                continue;
            }
            let dir = f.path.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
            let text = storage.get(&f.path)?;
            let text = std::str::from_utf8(&text)
                .map_err(|_| StoreError::Config(format!("{}: compaction intent is not UTF-8", f.path)))?;
            let mut output = None;
            let mut inputs = Vec::new();
            for line in text.lines() {
                match line.split_once(' ') {
                    Some(("output", o)) => output = Some(o.to_string()),
                    Some(("input", i)) => inputs.push(i.to_string()),
                    _ => {}
                }
            }
            if let Some(o) = output
                && storage.exists(&format!("{dir}/{o}"))?
            {
                // the merged file is complete: finish the job
                for i in inputs {
                    storage.delete(&format!("{dir}/{i}"))?;
                }
            }
            storage.delete(&f.path)?;
            n += 1;
        }
    }
    Ok(n)
}
