//! The native metrics tables `network` and `application` as Prometheus series, for the PromQL
//! engine ([`super::promql`]) and the metadata APIs.
//!
//! # Naming
//! DeepFlow's `database__table__metric__interval`: every `UInt64` column of the two tables is the
//! metric `flow_metrics__<table>__<column>__<interval>`, interval `1s` or `1m`, e.g.
//! `flow_metrics__application__request__1m`, `flow_metrics__network__byte_tx__1s`.
//!
//! `application.rrt_histogram` is `flow_metrics__application__rrt_bucket__<interval>{le="…"}`
//! ([`HISTOGRAM`]): cumulative buckets in µs for `histogram_quantile`.
//!
//! # Labels
//! The row's key columns (`ip_0`, `ip_1`, `server_port`, `protocol` for `network`; `ip_1`,
//! `server_port`, `l7_protocol`, `endpoint` for `application`), the tag ids (`pod_id_1`,
//! `service_id_1`, ...) and the names the store's views resolve for them (`pod_1`,
//! `service_1`, ...). Empty values, nulls and tag id 0 (unknown) are left out, as Prometheus
//! does with empty labels.
//!
//! # Samples: one per window, stamped at the window end
//! A row holds what happened in the window `[time, time + interval)`; its sample is at
//! `time + interval` (the Prometheus convention: a value at `t` covers what happened before `t`).
//! Rows of the same series and window are merged (`sum`, `max` for `*_max` and `rrt_p*`).
//! The values are per-window deltas, not cumulative counters, so for these series only:
//! - an instant selector at `t` returns the window that ended in `(t - interval, t]` (no 5 min
//!   lookback: a window without traffic has no row and means 0, not "still the last value");
//! - a range selector `[r]` at `t` holds the windows that ended in `(t - r, t]` (left-open, so
//!   consecutive ranges never count a window twice);
//! - `increase(x[r])`, `delta(x[r])` and `sum_over_time(x[r])` are the sum of those windows: the
//!   exact traffic of `[t - r, t)` when `r` is a multiple of the interval; `rate(x[r])` is that
//!   sum divided by `r` in seconds; no extrapolation, no counter-reset handling;
//! - `irate`/`idelta` use the last window only: its value divided by the interval, or its value.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, Float64Array, ListArray, StringArray, TimestampMillisecondArray, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use deepflow_core::record::{LATENCY_BUCKETS, LatencyHistogram};
use deepflow_tagging::{TAG_COLUMNS_0, TAG_COLUMNS_1};
use promql_parser::label::{MatchOp, Matcher};

use super::promql::Labels;
use crate::QueryEngine;
use crate::query::name_column;
use crate::schema::Table;

/// The "database" part of the names.
pub const DATABASE: &str = "flow_metrics";

/// The tables exposed.
pub const TABLES: [Table; 2] = [Table::Network, Table::Application];

/// The window lengths exposed: (name suffix, seconds).
pub const INTERVALS: [(&str, u32); 2] = [("1s", 1), ("1m", 60)];

/// A native metric: a column of a table at one window length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeMetric {
    /// `network` or `application`.
    pub table: Table,
    /// The `UInt64` column.
    pub column: String,
    /// Window length, seconds (1 or 60).
    pub interval_s: u32,
}

impl NativeMetric {
    /// The Prometheus metric name, `flow_metrics__<table>__<column>__<interval>`.
    pub fn name(&self) -> String {
        let iv = INTERVALS.iter().find(|(_, s)| *s == self.interval_s).map_or("1m", |(n, _)| n);
        format!("{DATABASE}__{}__{}__{iv}", self.table.name(), self.column)
    }

    /// Window length in milliseconds.
    pub fn interval_ms(&self) -> i64 {
        i64::from(self.interval_s) * 1000
    }

    /// Whether windows are merged (and `increase` summed) by addition; `false` for the
    /// per-window maxima and percentiles (`*_max`, `rrt_p*`), merged with `max`.
    pub fn is_additive(&self) -> bool {
        !(self.column.ends_with("_max") || self.column.starts_with("rrt_p"))
    }
}

/// The histogram of `application.rrt_histogram` as Prometheus buckets:
/// `flow_metrics__application__rrt_bucket__<1s|1m>{le="…"}` (µs, cumulative, `+Inf` last).
pub const HISTOGRAM: &str = "rrt_bucket";

/// Parses `flow_metrics__<table>__<column>__<1s|1m>` (only existing `UInt64` columns, and
/// [`HISTOGRAM`] of `application`).
pub fn parse_name(name: &str) -> Option<NativeMetric> {
    let rest = name.strip_prefix(DATABASE)?.strip_prefix("__")?;
    let (table, rest) = rest.split_once("__")?;
    let (column, iv) = rest.rsplit_once("__")?;
    let table = TABLES.into_iter().find(|t| t.name() == table)?;
    let interval_s = INTERVALS.iter().find(|(n, _)| *n == iv)?.1;
    let known =
        metric_columns(table).iter().any(|c| c == column) || (table == Table::Application && column == HISTOGRAM);
    known.then(|| NativeMetric { table, column: column.to_string(), interval_s })
}

/// The window length (ms) of a series whose `__name__` is a native metric, else `None`.
pub fn interval_of(labels: &[(String, String)]) -> Option<i64> {
    let n = labels.iter().find(|(k, _)| k == super::promql::NAME)?;
    n.1.starts_with(DATABASE).then(|| parse_name(&n.1).map(|m| m.interval_ms())).flatten()
}

/// The metric columns of a table: its `UInt64` columns.
pub fn metric_columns(table: Table) -> Vec<String> {
    table.schema().fields().iter().filter(|f| f.data_type() == &DataType::UInt64).map(|f| f.name().clone()).collect()
}

/// The metric columns of a table plus [`HISTOGRAM`] for `application`.
pub fn exposed_columns(table: Table) -> Vec<String> {
    let mut v = metric_columns(table);
    if table == Table::Application {
        v.push(HISTOGRAM.to_string());
    }
    v
}

/// The `le` bounds of the histogram buckets: `(le, last stored bucket index with that bound)`.
/// Bucket `i` holds the whole µs values `v` with `bucket_of(v) == i`, so its inclusive upper bound
/// is the largest such `v`; buckets never used by whole values share the bound of the previous
/// one; the last (catch-all) bucket is `+Inf`.
pub fn histogram_bounds() -> &'static [(String, usize)] {
    static B: std::sync::LazyLock<Vec<(String, usize)>> = std::sync::LazyLock::new(|| {
        let n = LATENCY_BUCKETS;
        let mut out: Vec<(String, usize)> = Vec::new();
        for i in 0..n {
            let le = if i + 1 == n {
                "+Inf".to_string()
            } else {
                // first v with bucket_of(v) > i (bucket_of is non-decreasing)
                let (mut lo, mut hi) = (0u64, 1u64 << 62);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if LatencyHistogram::bucket_of(mid) > i { hi = mid } else { lo = mid + 1 }
                }
                lo.saturating_sub(1).to_string()
            };
            match out.last_mut() {
                Some(l) if l.0 == le => l.1 = i,
                _ => out.push((le, i)),
            }
        }
        out
    });
    &B
}

/// Stored label columns of a table (key columns and tag ids), without the resolved names.
pub fn stored_label_columns(table: Table) -> Vec<String> {
    table
        .schema()
        .fields()
        .iter()
        .filter(|f| {
            let n = f.name().as_str();
            n != "time"
                && n != "interval"
                && f.data_type() != &DataType::UInt64
                && !matches!(f.data_type(), DataType::List(_) | DataType::LargeList(_))
        })
        .map(|f| f.name().clone())
        .collect()
}

/// The name columns the view resolves for the tag ids of a table (`pod_1`, `service_1`, ...).
pub fn name_label_columns(table: Table) -> Vec<String> {
    let mut out = Vec::new();
    for (side, names) in [&TAG_COLUMNS_0, &TAG_COLUMNS_1].into_iter().enumerate() {
        if !table.tag_sides().get(side).copied().unwrap_or(false) {
            continue;
        }
        out.extend(names.iter().map(|c| name_column(c)));
    }
    out
}

/// Every label column of a table: stored ones, then resolved names.
pub fn label_columns(table: Table) -> Vec<String> {
    let mut v = stored_label_columns(table);
    v.extend(name_label_columns(table));
    v
}

fn is_id_column(c: &str) -> bool {
    TAG_COLUMNS_0.contains(&c) || TAG_COLUMNS_1.contains(&c)
}

/// Every native metric name (both tables, both intervals).
pub fn all_names() -> Vec<String> {
    let mut out = Vec::new();
    for t in TABLES {
        for c in exposed_columns(t) {
            for (_, s) in INTERVALS {
                out.push(NativeMetric { table: t, column: c.clone(), interval_s: s }.name());
            }
        }
    }
    out.sort();
    out
}

/// The native metrics a selector without an equality on `__name__` can match: those whose name
/// satisfies every `__name__` matcher. With no `__name__` matcher at all, none (a selector such
/// as `{ip_1="10.0.0.1"}` reads only the `prometheus` table, to keep it from scanning every column
/// of both tables).
pub fn candidates(matchers: &[Matcher]) -> Vec<NativeMetric> {
    let ms: Vec<&Matcher> = matchers.iter().filter(|m| m.name == super::promql::NAME).collect();
    if ms.is_empty() {
        return Vec::new();
    }
    all_names().into_iter().filter(|n| ms.iter().all(|m| m.is_match(n))).filter_map(|n| parse_name(&n)).collect()
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn quoted(c: &str) -> String {
    format!("\"{c}\"")
}

fn time_filter(from_ms: i64, to_ms: i64) -> String {
    format!(
        "\"time\" >= to_timestamp_millis({from_ms}) AND \"time\" <= to_timestamp_millis({to_ms}) \
         AND date >= {} AND date <= {}",
        sql_str(&date_of(from_ms)),
        sql_str(&date_of(to_ms))
    )
}

fn date_of(ms: i64) -> String {
    let dir = crate::storage::Hour::from_us(u64::try_from(ms.max(0)).unwrap_or(0).saturating_mul(1000)).dir();
    dir.split('/').next().and_then(|d| d.strip_prefix("date=")).unwrap_or("1970-01-01").to_string()
}

/// The SQL reading metric `m` with samples (window ends) in `[from_ms, to_ms]`: one row per
/// series and window, labels as strings, value `v`. Equality matchers on stored columns are
/// pushed down.
pub fn select_sql(m: &NativeMetric, matchers: &[Matcher], from_ms: i64, to_ms: i64) -> String {
    let labels = label_columns(m.table);
    let agg = if m.is_additive() { "sum" } else { "max" };
    let lcols: Vec<String> =
        labels.iter().map(|c| format!("CAST({} AS VARCHAR) AS {}", quoted(c), quoted(c))).collect();
    let group: Vec<String> = (1..=labels.len() + 1).map(|i| i.to_string()).collect();
    let mut sql = format!(
        "SELECT \"time\", {}, {agg}(CAST({} AS DOUBLE)) AS v FROM {} WHERE \"interval\" = {} AND {} AND {} IS NOT NULL",
        lcols.join(", "),
        quoted(&m.column),
        m.table.name(),
        m.interval_s,
        time_filter(from_ms - m.interval_ms(), to_ms - m.interval_ms()),
        quoted(&m.column),
    );
    sql.push_str(&push_down(m, matchers));
    sql.push_str(&format!(" GROUP BY {}", group.join(", ")));
    sql
}

fn keep_label(col: &str, v: &str) -> bool {
    !(v.is_empty() || (is_id_column(col) && v == "0"))
}

/// Loads metric `m`: series (labels sorted, with `__name__`) with samples at window ends in
/// `[from_ms, to_ms]`, in time order. The caller filters by the selector's matchers.
pub async fn select(
    store: &QueryEngine,
    m: &NativeMetric,
    matchers: &[Matcher],
    from_ms: i64,
    to_ms: i64,
) -> crate::Result<Vec<super::promql::Series>> {
    if m.column == HISTOGRAM {
        return select_histogram(store, m, matchers, from_ms, to_ms).await;
    }
    let labels = label_columns(m.table);
    let batches = store.query_async(&select_sql(m, matchers, from_ms, to_ms)).await?;
    let name = m.name();
    let mut index: HashMap<Vec<(String, String)>, usize> = HashMap::new();
    let mut out: Vec<super::promql::Series> = Vec::new();
    for b in &batches {
        let (Some(t), Some(v)) = (b.column_by_name("time"), b.column_by_name("v")) else { continue };
        let t = cast(t, &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())))?;
        let v = cast(v, &DataType::Float64)?;
        let (Some(t), Some(v)) =
            (t.as_any().downcast_ref::<TimestampMillisecondArray>(), v.as_any().downcast_ref::<Float64Array>())
        else {
            continue;
        };
        let mut cols: Vec<(&str, StringArray)> = Vec::with_capacity(labels.len());
        for c in &labels {
            let Some(a) = b.column_by_name(c) else { continue };
            let a = cast(a, &DataType::Utf8)?;
            if let Some(s) = a.as_any().downcast_ref::<StringArray>() {
                cols.push((c.as_str(), s.clone()));
            }
        }
        for i in 0..b.num_rows() {
            if t.is_null(i) || v.is_null(i) {
                continue;
            }
            let mut ls: Vec<(String, String)> = cols
                .iter()
                .filter(|(_, a)| !a.is_null(i))
                .map(|(c, a)| (c.to_string(), a.value(i).to_string()))
                .filter(|(c, v)| keep_label(c, v))
                .collect();
            ls.push((super::promql::NAME.to_string(), name.clone()));
            ls.sort();
            let end = t.value(i) + m.interval_ms();
            if end < from_ms || end > to_ms {
                continue;
            }
            let slot = *index.entry(ls.clone()).or_insert_with(|| {
                out.push(super::promql::Series { labels: ls, points: Vec::new() });
                out.len() - 1
            });
            if let Some(s) = out.get_mut(slot) {
                s.points.push((end, v.value(i)));
            }
        }
    }
    for s in &mut out {
        s.points.sort_by_key(|p| p.0);
    }
    Ok(out)
}

fn push_down(m: &NativeMetric, matchers: &[Matcher]) -> String {
    let stored = stored_label_columns(m.table);
    let mut sql = String::new();
    for x in matchers {
        if matches!(x.op, MatchOp::Equal) && !x.value.is_empty() && stored.contains(&x.name) {
            sql.push_str(&format!(" AND CAST({} AS VARCHAR) = {}", quoted(&x.name), sql_str(&x.value)));
        }
    }
    sql
}

/// Reads the histogram series of `application` (see [`HISTOGRAM`], [`histogram_bounds`]): per
/// series and window the bucket counts of its rows are added, then made cumulative per `le`.
async fn select_histogram(
    store: &QueryEngine,
    m: &NativeMetric,
    matchers: &[Matcher],
    from_ms: i64,
    to_ms: i64,
) -> crate::Result<Vec<super::promql::Series>> {
    let labels = label_columns(m.table);
    let lcols: Vec<String> =
        labels.iter().map(|c| format!("CAST({} AS VARCHAR) AS {}", quoted(c), quoted(c))).collect();
    let sql = format!(
        "SELECT \"time\", {}, rrt_histogram FROM {} WHERE \"interval\" = {} AND {}{}",
        lcols.join(", "),
        m.table.name(),
        m.interval_s,
        time_filter(from_ms - m.interval_ms(), to_ms - m.interval_ms()),
        push_down(m, matchers)
    );
    let batches = store.query_async(&sql).await?;
    // (labels, window end) -> bucket counts
    let mut acc: HashMap<(Labels, i64), Vec<u64>> = HashMap::new();
    for b in &batches {
        let (Some(t), Some(h)) = (b.column_by_name("time"), b.column_by_name("rrt_histogram")) else { continue };
        let t = cast(t, &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())))?;
        let Some(t) = t.as_any().downcast_ref::<TimestampMillisecondArray>() else { continue };
        let Some(h) = h.as_any().downcast_ref::<ListArray>() else { continue };
        let mut cols: Vec<(&str, StringArray)> = Vec::with_capacity(labels.len());
        for c in &labels {
            let Some(a) = b.column_by_name(c) else { continue };
            let a = cast(a, &DataType::Utf8)?;
            if let Some(s) = a.as_any().downcast_ref::<StringArray>() {
                cols.push((c.as_str(), s.clone()));
            }
        }
        for i in 0..b.num_rows() {
            if t.is_null(i) || h.is_null(i) {
                continue;
            }
            let counts = cast(&h.value(i), &DataType::UInt64)?;
            let Some(counts) = counts.as_any().downcast_ref::<UInt64Array>() else { continue };
            if counts.is_empty() {
                continue;
            }
            let end = t.value(i) + m.interval_ms();
            if end < from_ms || end > to_ms {
                continue;
            }
            let ls: Vec<(String, String)> = cols
                .iter()
                .filter(|(_, a)| !a.is_null(i))
                .map(|(c, a)| (c.to_string(), a.value(i).to_string()))
                .filter(|(c, v)| keep_label(c, v))
                .collect();
            let slot = acc.entry((ls, end)).or_insert_with(|| vec![0; LATENCY_BUCKETS]);
            for (k, c) in counts.iter().enumerate() {
                if let (Some(s), Some(c)) = (slot.get_mut(k.min(LATENCY_BUCKETS - 1)), c) {
                    *s += c;
                }
            }
        }
    }
    let name = m.name();
    let mut series: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
    for ((ls, end), counts) in acc {
        let mut cum = 0u64;
        let mut next = 0usize;
        for (le, last) in histogram_bounds() {
            while next <= *last {
                cum += counts.get(next).copied().unwrap_or(0);
                next += 1;
            }
            let mut l = ls.clone();
            l.push(("le".to_string(), le.clone()));
            l.push((super::promql::NAME.to_string(), name.clone()));
            l.sort();
            series.entry(l).or_default().push((end, cum as f64));
        }
    }
    let mut out: Vec<super::promql::Series> = series
        .into_iter()
        .map(|(labels, mut points)| {
            points.sort_by_key(|p| p.0);
            super::promql::Series { labels, points }
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

/// Label names of the native series with samples in `[from_ms, to_ms]` (without `__name__`):
/// the label columns with at least one kept value.
pub async fn label_names(store: &QueryEngine, from_ms: i64, to_ms: i64) -> crate::Result<Vec<String>> {
    let mut out = Vec::new();
    for t in TABLES {
        let cols = label_columns(t);
        let counts: Vec<String> = cols
            .iter()
            .map(|c| {
                let empty = if is_id_column(c) { "'0'" } else { "''" };
                format!("count(NULLIF(CAST({} AS VARCHAR), {empty}))", quoted(c))
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE \"interval\" IN (1, 60) AND {}",
            counts.join(", "),
            t.name(),
            time_filter(from_ms - 60_000, to_ms)
        );
        for b in store.query_async(&sql).await? {
            for (i, c) in cols.iter().enumerate() {
                let Some(a) = b.columns().get(i) else { continue };
                let a = cast(a, &DataType::Float64)?;
                if let Some(a) = a.as_any().downcast_ref::<Float64Array>()
                    && !a.is_empty()
                    && !a.is_null(0)
                    && a.value(0) > 0.0
                {
                    out.push(c.clone());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Values of label `name` over the native series with samples in `[from_ms, to_ms]`; for
/// `__name__`, the metric names of the tables and intervals that have rows.
pub async fn label_values(store: &QueryEngine, name: &str, from_ms: i64, to_ms: i64) -> crate::Result<Vec<String>> {
    let mut out = Vec::new();
    for t in TABLES {
        let (sel, is_name) = if name == super::promql::NAME {
            ("CAST(\"interval\" AS VARCHAR)".to_string(), true)
        } else if label_columns(t).iter().any(|c| c == name) {
            (format!("CAST({} AS VARCHAR)", quoted(name)), false)
        } else {
            continue;
        };
        let sql = format!(
            "SELECT DISTINCT {sel} AS x FROM {} WHERE \"interval\" IN (1, 60) AND {}",
            t.name(),
            time_filter(from_ms - 60_000, to_ms)
        );
        for b in store.query_async(&sql).await? {
            let Some(a) = b.column_by_name("x") else { continue };
            let a = cast(a, &DataType::Utf8)?;
            let Some(a) = a.as_any().downcast_ref::<StringArray>() else { continue };
            for i in 0..a.len() {
                if a.is_null(i) {
                    continue;
                }
                let v = a.value(i);
                if is_name {
                    let Ok(s) = v.parse::<u32>() else { continue };
                    for c in exposed_columns(t) {
                        out.push(NativeMetric { table: t, column: c, interval_s: s }.name());
                    }
                } else if keep_label(name, v) {
                    out.push(v.to_string());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Samples of a native range selector at `at` over `range` ms: the windows that ended in
/// `(at - range, at]` (left-open).
pub fn range_points(points: &[(i64, f64)], at: i64, range: i64) -> &[(i64, f64)] {
    let lo = points.partition_point(|p| p.0 <= at - range);
    let hi = points.partition_point(|p| p.0 <= at);
    points.get(lo..hi).unwrap_or(&[])
}

/// The sum of the windows of a native range: `increase`, `delta` and `sum_over_time`.
pub fn increase(points: &[(i64, f64)]) -> Option<f64> {
    (!points.is_empty()).then(|| points.iter().map(|p| p.1).sum())
}

/// `rate`: [`increase`] divided by the range in seconds.
pub fn rate(points: &[(i64, f64)], range_ms: i64) -> Option<f64> {
    increase(points).map(|v| v / (range_ms as f64 / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        let m = parse_name("flow_metrics__application__request__1m").unwrap();
        assert_eq!(m, NativeMetric { table: Table::Application, column: "request".into(), interval_s: 60 });
        assert_eq!(m.name(), "flow_metrics__application__request__1m");
        let n = parse_name("flow_metrics__network__byte_tx__1s").unwrap();
        assert_eq!((n.table, n.column.as_str(), n.interval_ms()), (Table::Network, "byte_tx", 1000));
        assert!(n.is_additive());
        assert!(!parse_name("flow_metrics__network__rtt_max__1m").unwrap().is_additive());
        assert!(!parse_name("flow_metrics__application__rrt_p99__1m").unwrap().is_additive());
        // wrong database, table, column (a label column, a missing one), interval
        for bad in [
            "flow_metric__network__byte_tx__1m",
            "flow_metrics__l4_flow_log__byte_tx__1m",
            "flow_metrics__network__server_port__1m",
            "flow_metrics__network__nope__1m",
            "flow_metrics__network__byte_tx__5m",
            "flow_metrics__network__byte_tx",
            "up",
        ] {
            assert!(parse_name(bad).is_none(), "{bad}");
        }
        let all = all_names();
        assert!(all.contains(&"flow_metrics__network__tcp_rst_fail__1s".to_string()));
        assert!(all.contains(&"flow_metrics__application__server_error__1m".to_string()));
        assert!(all.iter().all(|n| parse_name(n).is_some_and(|m| m.name() == *n)));
        assert!(!all.iter().any(|n| n.contains("__interval__") || n.contains("__time__")));
    }

    #[test]
    fn histogram_bounds_are_exact() {
        let b = histogram_bounds();
        assert_eq!(b.last().map(|x| x.0.as_str()), Some("+Inf"));
        let les: Vec<u64> = b.iter().filter_map(|x| x.0.parse().ok()).collect();
        assert!(les.windows(2).all(|w| w[0] < w[1]), "{les:?}");
        // every whole value v lands in a bucket whose bound is the first le >= v
        for v in (0u64..5000).chain([65_535, 65_536, 1_000_000, 123_456_789]) {
            let i = LatencyHistogram::bucket_of(v);
            let (le, _) = b.iter().find(|(_, last)| *last >= i).unwrap();
            let first_ge = les.iter().find(|l| **l >= v).map(|l| l.to_string()).unwrap_or("+Inf".into());
            assert_eq!(*le, first_ge, "v={v} bucket {i}");
        }
        assert!(parse_name("flow_metrics__application__rrt_bucket__1m").is_some());
        assert!(parse_name("flow_metrics__network__rrt_bucket__1m").is_none());
        assert!(all_names().contains(&"flow_metrics__application__rrt_bucket__1s".to_string()));
    }

    #[test]
    fn label_columns_of_tables() {
        let a = label_columns(Table::Application);
        for c in ["ip_1", "server_port", "l7_protocol", "endpoint", "pod_id_1", "service_id_1", "pod_1", "service_1"] {
            assert!(a.contains(&c.to_string()), "{c} in {a:?}");
        }
        assert!(!a.iter().any(|c| c.ends_with("_0") || c == "request" || c == "rrt_histogram"));
        let n = label_columns(Table::Network);
        for c in ["ip_0", "ip_1", "server_port", "protocol", "pod_id_0", "pod_0", "gprocess_1"] {
            assert!(n.contains(&c.to_string()), "{c} in {n:?}");
        }
        assert!(metric_columns(Table::Network).contains(&"rtt_sum".to_string()));
        assert!(!metric_columns(Table::Network).contains(&"server_port".to_string()));
    }

    #[test]
    fn candidates_by_name_matchers() {
        let vs =
            super::super::promql::parse_selector("{__name__=~\"flow_metrics__application__(request|response)__1m\"}")
                .unwrap();
        let c: Vec<String> = candidates(&vs.matchers.matchers).iter().map(NativeMetric::name).collect();
        assert_eq!(c, ["flow_metrics__application__request__1m", "flow_metrics__application__response__1m"]);
        assert!(candidates(&[Matcher::new(MatchOp::Equal, "ip_1", "x")]).is_empty());
    }

    #[test]
    fn windowed_rate_and_increase() {
        // 1 min windows ending at 60, 120, 180 s
        let pts = [(60_000, 5.0), (120_000, 7.0), (180_000, 11.0)];
        // (60, 180]: the last two windows only, left-open
        let r = range_points(&pts, 180_000, 120_000);
        assert_eq!(r, &pts[1..]);
        assert_eq!(increase(r), Some(18.0));
        assert_eq!(rate(r, 120_000), Some(18.0 / 120.0));
        assert_eq!(increase(range_points(&pts, 180_000, 180_000)), Some(23.0));
        assert_eq!(increase(range_points(&pts, 59_000, 60_000)), None);
        // consecutive ranges never count a window twice
        let a = increase(range_points(&pts, 120_000, 60_000)).unwrap();
        let b = increase(range_points(&pts, 180_000, 60_000)).unwrap();
        assert_eq!(a + b, 18.0);
    }

    #[test]
    fn sql_pushes_down_equalities() {
        let m = parse_name("flow_metrics__application__request__1m").unwrap();
        let s = select_sql(&m, &[Matcher::new(MatchOp::Equal, "l7_protocol", "http")], 0, 120_000);
        assert!(s.contains("\"interval\" = 60"), "{s}");
        assert!(s.contains("sum(CAST(\"request\" AS DOUBLE))"), "{s}");
        assert!(s.contains("CAST(\"l7_protocol\" AS VARCHAR) = 'http'"), "{s}");
        // names (computed by the view) are not pushed down; the engine filters them
        let s = select_sql(&m, &[Matcher::new(MatchOp::Equal, "pod_1", "x")], 0, 1);
        assert!(!s.contains("= 'x'"), "{s}");
    }
}
