//! Prometheus samples (feature `promql`): the `prometheus` table, a writer for it, the
//! remote_write decoder ([`remote_write`]) and a PromQL engine over the stored samples
//! ([`promql`]), which also reads the native `network` and `application` metrics as
//! `flow_metrics__<table>__<column>__<1s|1m>` series ([`native`]).
//!
//! Table `prometheus` (`DIR/table=prometheus/date=…/hour=…/part-….parquet`, hour = UTC hour of
//! the sample time):
//!
//! | column | type | |
//! |---|---|---|
//! | `time` | `Timestamp(ms, UTC)` | sample time (Prometheus has millisecond timestamps) |
//! | `metric_name` | `Utf8` | the `__name__` label |
//! | `labels` | `Utf8` | the other labels as a JSON object with sorted keys, e.g. `{"instance":"a:9090","job":"x"}` |
//! | `series_id` | `UInt64` | FNV-1a 64 of name and labels: one value per series |
//! | `value` | `Float64` | the sample value (Prometheus staleness markers are stored as the NaN they are) |
//! | `region_id`, `az_id`, `host_id`, `l3_epc_id`, `subnet_id`, `pod_cluster_id`, `pod_ns_id`, `pod_node_id`, `pod_group_id`, `pod_id`, `service_id`, `gprocess_id` | `UInt32`, nullable | SmartEncoding ids of the resource the series is about (0 = unknown; null in files written before the columns existed) |
//!
//! Labels are kept as a JSON string rather than SmartEncoding ids or an Arrow map: any engine can
//! read them, `labels LIKE '%"job":"x"%'` works in SQL, and the PromQL engine parses them once
//! per series. The tag ids are set by whoever appends the samples ([`SampleWriter::append_tagged`];
//! deepflow-server resolves them from the labels with `--inventory`), 0 otherwise.
//!
//! [`register`] registers the files as `prometheus_ids` and the view `prometheus` over it: every
//! stored column plus the names of the tag ids (`pod`, `pod_ns`, `service`, ... as in
//! [`crate::query`]). The PromQL engine adds the non-empty names to a series' labels with a
//! `df_` prefix (`df_pod`, `df_pod_ns`, `df_service`, ...; see [`TAG_LABEL_PREFIX`]): series
//! without tags (every id 0) have exactly the labels they were written with.

pub mod native;
pub mod promql;
pub mod remote_write;

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    ArrayRef, Float64Array, StringArray, TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::parquet::file::properties::WriterProperties;
use deepflow_tagging::{TAG_COLUMNS, UniversalTags};

use crate::storage::{Hour, Storage};
use crate::writer::{encode_parquet, part_name, writer_properties};
use crate::{QueryEngine, Result, StoreError};

/// Name of the samples view (and of its `table=` directory).
pub const TABLE: &str = "prometheus";

/// Name of the samples table as stored (tag ids only).
pub const IDS_TABLE: &str = "prometheus_ids";

/// Prefix of the labels the PromQL engine adds for the tag names of a series (`df_pod`, ...).
pub const TAG_LABEL_PREFIX: &str = "df_";

/// One Prometheus sample with its series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (`__name__`).
    pub metric: String,
    /// Other labels, sorted by name, without `__name__`.
    pub labels: Vec<(String, String)>,
    /// Milliseconds since the epoch.
    pub time_ms: i64,
    /// The value.
    pub value: f64,
}

/// The Arrow schema of the `prometheus` table.
pub fn schema() -> SchemaRef {
    static S: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(
            vec![
                Field::new("time", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
                Field::new("metric_name", DataType::Utf8, false),
                Field::new("labels", DataType::Utf8, false),
                Field::new("series_id", DataType::UInt64, false),
                Field::new("value", DataType::Float64, false),
            ]
            .into_iter()
            .chain(TAG_COLUMNS.iter().map(|c| Field::new(*c, DataType::UInt32, true)))
            .collect::<Vec<_>>(),
        ))
    });
    S.clone()
}

/// Labels (sorted, without `__name__`) as the JSON object stored in `labels`.
pub fn labels_json(labels: &[(String, String)]) -> String {
    let mut s = String::with_capacity(2 + labels.len() * 24);
    s.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        json_str(&mut s, k);
        s.push(':');
        json_str(&mut s, v);
    }
    s.push('}');
    s
}

fn json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Parses a `labels` value written by [`labels_json`] (a flat JSON object of strings).
pub fn parse_labels_json(s: &str) -> Option<Vec<(String, String)>> {
    let mut it = s.trim().chars().peekable();
    let mut out = Vec::new();
    if it.next()? != '{' {
        return None;
    }
    fn string(it: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.next()? != '"' {
            return None;
        }
        let mut s = String::new();
        loop {
            match it.next()? {
                '"' => return Some(s),
                '\\' => match it.next()? {
                    'n' => s.push('\n'),
                    'r' => s.push('\r'),
                    't' => s.push('\t'),
                    'u' => {
                        let hex: String = (0..4).filter_map(|_| it.next()).collect();
                        s.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    c => s.push(c),
                },
                c => s.push(c),
            }
        }
    }
    loop {
        while it.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            it.next();
        }
        if it.peek() == Some(&'}') {
            return Some(out);
        }
        let k = string(&mut it)?;
        while it.peek().is_some_and(|c| c.is_whitespace() || *c == ':') {
            it.next();
        }
        let v = string(&mut it)?;
        out.push((k, v));
    }
}

/// FNV-1a 64 of the metric name and labels: the `series_id`.
pub fn series_id(metric: &str, labels: &[(String, String)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: &[u8]| {
        for x in b {
            h ^= u64::from(*x);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    feed(metric.as_bytes());
    for (k, v) in labels {
        feed(k.as_bytes());
        feed(v.as_bytes());
    }
    h
}

/// Samples as one batch of the `prometheus` schema (tag ids 0).
pub fn to_batch(samples: &[Sample]) -> Result<RecordBatch> {
    let none = UniversalTags::default();
    batch_of(samples.iter().map(|s| (s, &none)), samples.len())
}

/// Tagged samples as one batch of the `prometheus` schema.
pub fn to_batch_tagged(samples: &[(Sample, UniversalTags)]) -> Result<RecordBatch> {
    batch_of(samples.iter().map(|(s, t)| (s, t)), samples.len())
}

fn batch_of<'a>(it: impl Iterator<Item = (&'a Sample, &'a UniversalTags)> + Clone, n: usize) -> Result<RecordBatch> {
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(TimestampMillisecondArray::from_iter_values(it.clone().map(|(s, _)| s.time_ms)).with_timezone("UTC")),
        Arc::new(StringArray::from_iter_values(it.clone().map(|(s, _)| s.metric.as_str()))),
        Arc::new(StringArray::from_iter_values(it.clone().map(|(s, _)| labels_json(&s.labels)))),
        Arc::new(UInt64Array::from_iter_values(it.clone().map(|(s, _)| series_id(&s.metric, &s.labels)))),
        Arc::new(Float64Array::from_iter_values(it.clone().map(|(s, _)| s.value))),
    ];
    let mut ids: Vec<Vec<u32>> = vec![Vec::with_capacity(n); TAG_COLUMNS.len()];
    for (_, t) in it {
        for (col, id) in ids.iter_mut().zip(t.to_array()) {
            col.push(id);
        }
    }
    cols.extend(ids.into_iter().map(|v| Arc::new(UInt32Array::from(v)) as ArrayRef));
    Ok(RecordBatch::try_new(schema(), cols)?)
}

/// Buffers samples and writes them as zstd Parquet files of the `prometheus` table, one per
/// hour and flush, with the same crash-safe `put` as [`crate::StoreWriter`]: a file is visible
/// only complete, and a crash loses only what was appended since the last completed flush.
pub struct SampleWriter {
    storage: Storage,
    props: WriterProperties,
    buf: Vec<(Sample, UniversalTags)>,
    flush_rows: usize,
    flush_interval: Duration,
    last_flush: Instant,
    files: u64,
    rows: u64,
}

impl std::fmt::Debug for SampleWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleWriter").field("buffered", &self.buf.len()).field("rows", &self.rows).finish()
    }
}

impl SampleWriter {
    /// A writer over `storage`; flushes at `flush_rows` buffered samples or `flush_interval`
    /// after the last flush (checked on append and [`SampleWriter::tick`]).
    pub fn new(storage: Storage, flush_rows: usize, flush_interval: Duration) -> Result<SampleWriter> {
        Ok(SampleWriter {
            storage,
            props: writer_properties(1 << 20, 1)?,
            buf: Vec::new(),
            flush_rows: flush_rows.max(1),
            flush_interval,
            last_flush: Instant::now(),
            files: 0,
            rows: 0,
        })
    }

    /// Buffers samples (tag ids 0); may flush.
    pub fn append(&mut self, samples: impl IntoIterator<Item = Sample>) -> Result<()> {
        self.append_tagged(samples.into_iter().map(|s| (s, UniversalTags::default())))
    }

    /// Buffers samples with the tag ids of their resource; may flush.
    pub fn append_tagged(&mut self, samples: impl IntoIterator<Item = (Sample, UniversalTags)>) -> Result<()> {
        self.buf.extend(samples);
        if self.buf.len() >= self.flush_rows {
            return self.flush();
        }
        self.tick()
    }

    /// Flushes if the interval has passed.
    pub fn tick(&mut self) -> Result<()> {
        if !self.buf.is_empty() && self.last_flush.elapsed() >= self.flush_interval {
            return self.flush();
        }
        Ok(())
    }

    /// Samples buffered, not yet in a file.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// (files, rows) written so far.
    pub fn written(&self) -> (u64, u64) {
        (self.files, self.rows)
    }

    /// Writes every buffered sample, durably. On error the unwritten hours stay buffered.
    pub fn flush(&mut self) -> Result<()> {
        self.last_flush = Instant::now();
        if self.buf.is_empty() {
            return Ok(());
        }
        let hour =
            |s: &(Sample, UniversalTags)| Hour::from_us(u64::try_from(s.0.time_ms).unwrap_or(0).saturating_mul(1000));
        self.buf.sort_by_key(hour);
        let mut start = 0;
        let res = (|| -> Result<()> {
            while start < self.buf.len() {
                let h = self.buf.get(start).map(hour).unwrap_or(Hour(0));
                let end = self.buf.iter().skip(start).position(|s| hour(s) != h).map_or(self.buf.len(), |p| start + p);
                let chunk = self.buf.get(start..end).unwrap_or(&[]);
                let bytes = encode_parquet(&[to_batch_tagged(chunk)?], &self.props)?;
                self.storage.put_atomic(&format!("table={TABLE}/{}/{}", h.dir(), part_name()), bytes)?;
                self.files += 1;
                self.rows += (end - start) as u64;
                start = end;
            }
            Ok(())
        })();
        self.buf.drain(..start);
        res
    }
}

impl Drop for SampleWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Registers the `prometheus_ids` table (a listing table over the files, with `date` and `hour`
/// partition columns) and the `prometheus` view over it (stored columns plus tag names, see the
/// [module docs](self)) on the engine's session. Call once after [`QueryEngine::open`].
pub fn register(engine: &QueryEngine) -> Result<()> {
    let rel = format!("table={TABLE}");
    if let Some(root) = engine.storage().local_root() {
        let dir = root.join(&rel);
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
    }
    let url = ListingTableUrl::parse(engine.storage().dir_url(&rel))?;
    let opts = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("date".to_string(), DataType::Utf8), ("hour".to_string(), DataType::Utf8)]);
    let cfg = ListingTableConfig::new(url).with_listing_options(opts).with_schema(schema());
    let ctx = engine.context();
    let _ = ctx.deregister_table(IDS_TABLE)?;
    ctx.register_table(IDS_TABLE, Arc::new(ListingTable::try_new(cfg)?))?;
    let mut cols: Vec<String> = schema().fields().iter().map(|f| format!("\"{}\"", f.name())).collect();
    cols.push("date".into());
    cols.push("hour".into());
    cols.extend(crate::query::row_tag_name_columns());
    engine.run_blocking(&format!("CREATE OR REPLACE VIEW {TABLE} AS SELECT {} FROM {IDS_TABLE}", cols.join(", ")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_json_roundtrip() {
        let l = vec![("a".to_string(), "x\"y\\z\n".to_string()), ("b".to_string(), "é\u{1}".to_string())];
        let j = labels_json(&l);
        assert_eq!(parse_labels_json(&j).unwrap(), l);
        assert_eq!(parse_labels_json("{}").unwrap(), vec![]);
        assert!(parse_labels_json("{\"a\":").is_none());
        assert!(parse_labels_json("").is_none());
    }

    #[test]
    fn tagged_samples_names_and_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let t = 1_714_557_600_000;
        // a file from before the tag columns existed: still read, ids null
        let old = Arc::new(Schema::new(schema().fields().iter().take(5).cloned().collect::<Vec<_>>()));
        let full = to_batch(&[Sample { metric: "up".into(), labels: vec![], time_ms: t, value: 1.0 }]).unwrap();
        let old_batch = RecordBatch::try_new(old, full.columns().iter().take(5).cloned().collect()).unwrap();
        let props = writer_properties(1024, 1).unwrap();
        let h = Hour::from_us(t as u64 * 1000);
        storage
            .put_atomic(
                &format!("table={TABLE}/{}/{}", h.dir(), part_name()),
                encode_parquet(&[old_batch], &props).unwrap(),
            )
            .unwrap();
        let mut w = SampleWriter::new(storage.clone(), 1000, Duration::from_secs(10)).unwrap();
        let pod = UniversalTags { pod_id: 1, pod_ns_id: 1, ..Default::default() };
        let l = vec![("job".to_string(), "j".to_string())];
        w.append_tagged([(Sample { metric: "up".into(), labels: l, time_ms: t + 1000, value: 2.0 }, pod)]).unwrap();
        w.flush().unwrap();
        let q = Arc::new(QueryEngine::open(storage).unwrap());
        register(&q).unwrap();
        let mut d = deepflow_tagging::DictionarySet::new();
        d.intern(deepflow_tagging::ResourceKind::Pod, "c1/shop/web-1", "web-1").unwrap();
        d.intern(deepflow_tagging::ResourceKind::PodNs, "c1/shop", "shop").unwrap();
        q.set_tags(&d, None).unwrap();
        let out = q.query("SELECT value, pod_id, pod, pod_ns, service FROM prometheus ORDER BY value").unwrap();
        let mut text = Vec::new();
        crate::format::write_batches(&out, crate::OutputFormat::Csv, &mut text).unwrap();
        assert_eq!(String::from_utf8(text).unwrap(), "value,pod_id,pod,pod_ns,service\n1.0,,,,\n2.0,1,web-1,shop,\n");
        // PromQL: df_ labels for the tagged series only
        let e = promql::PromEngine::new(q.clone());
        let r = q.storage().runtime().block_on(e.instant("up", t + 2000)).unwrap();
        let promql::QueryResult::Vector(_, v) = r else { panic!("{r:?}") };
        let mut labels: Vec<_> = v.into_iter().map(|s| s.labels).collect();
        labels.sort();
        let ls = |x: &[(&str, &str)]| x.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        assert_eq!(
            labels,
            vec![
                ls(&[("__name__", "up")]),
                ls(&[("__name__", "up"), ("df_pod", "web-1"), ("df_pod_ns", "shop"), ("job", "j")]),
            ]
        );
    }

    #[test]
    fn write_and_query_samples() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let mut w = SampleWriter::new(storage.clone(), 1000, Duration::from_secs(10)).unwrap();
        let l = vec![("job".to_string(), "j".to_string())];
        w.append((0..10).map(|i| Sample {
            metric: "up".into(),
            labels: l.clone(),
            time_ms: 1_714_557_600_000 + i * 15_000,
            value: i as f64,
        }))
        .unwrap();
        w.flush().unwrap();
        let q = QueryEngine::open(storage).unwrap();
        register(&q).unwrap();
        let out = q.query("SELECT count(*) AS n, sum(value) AS s, min(labels) AS l FROM prometheus").unwrap();
        let mut text = Vec::new();
        crate::format::write_batches(&out, crate::OutputFormat::Csv, &mut text).unwrap();
        assert_eq!(String::from_utf8(text).unwrap(), "n,s,l\n10,45.0,\"{\"\"job\"\":\"\"j\"\"}\"\n");
    }
}
