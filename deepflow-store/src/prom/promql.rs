//! A PromQL engine over the `prometheus` table: parsing by the `promql-parser` crate, evaluation
//! here, with Prometheus 2.x semantics (5 min lookback, closed range windows `[t-r, t]`,
//! staleness markers honoured, rate/increase extrapolation as in Prometheus's
//! `extrapolatedRate`, `histogram_quantile` as in its `bucketQuantile`).
//!
//! Supported: number and string literals, instant and range vector selectors with `=`, `!=`,
//! `=~`, `!~` matchers and `offset`; unary minus; binary arithmetic (`+ - * / % ^`), comparison
//! (with and without `bool`) and set (`and or unless`) operators between scalars and vectors,
//! with `on`/`ignoring` and `group_left`/`group_right`; aggregations `sum avg max min count
//! topk bottomk` with `by`/`without`; functions `rate irate increase delta idelta
//! histogram_quantile absent abs ceil floor sqrt exp ln round(x) time vector scalar
//! sum_over_time avg_over_time min_over_time max_over_time count_over_time last_over_time`.
//! Not supported (an error, never a wrong answer): subqueries, `@`, native histograms, other
//! functions and aggregations.
//!
//! Metric names `flow_metrics__<table>__<column>__<1s|1m>` read the native `network` and
//! `application` tables instead, as per-window series with their own selector and
//! `rate`/`increase` semantics (see [`super::native`]).
//!
//! Data is loaded once per query and selector with SQL on the `prometheus` table (metric name
//! and time window pushed down, partitions pruned by date), then evaluated in memory step by
//! step.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{
    Array, AsArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, UInt32Type};
use deepflow_tagging::{ResourceKind, TAG_COLUMNS};
use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::{self, Expr, LabelModifier, Offset, VectorMatchCardinality, VectorSelector};

use super::{TABLE, TAG_LABEL_PREFIX, parse_labels_json};
use crate::QueryEngine;
use crate::storage::Hour;

/// Label set, sorted by name; includes `__name__` when there is one.
pub type Labels = Vec<(String, String)>;

/// The metric name label.
pub const NAME: &str = "__name__";

/// Prometheus's default lookback for instant vector selectors.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Largest number of steps of a range query (Prometheus's limit is 11 000).
pub const MAX_STEPS: i64 = 11_000;

/// The bit pattern of Prometheus's staleness marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// The expression does not parse (Prometheus `bad_data`).
    #[error("{0}")]
    BadData(String),
    /// The expression parses but cannot be evaluated (Prometheus `execution`).
    #[error("{0}")]
    Execution(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

impl From<datafusion::error::DataFusionError> for PromError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        PromError::Store(e.into())
    }
}
impl From<datafusion::arrow::error::ArrowError> for PromError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        PromError::Store(e.into())
    }
}

type Res<T> = std::result::Result<T, PromError>;

fn exec<T>(msg: impl Into<String>) -> Res<T> {
    Err(PromError::Execution(msg.into()))
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VSample {
    /// Labels.
    pub labels: Labels,
    /// Value.
    pub value: f64,
}

/// One series of a range vector (or of a range query result).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Labels.
    pub labels: Labels,
    /// (milliseconds, value), in time order.
    pub points: Vec<(i64, f64)>,
}

/// A query result, in Prometheus's four result types.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    /// `scalar`: time (ms) and value.
    Scalar(i64, f64),
    /// `string`: time (ms) and value.
    String(i64, String),
    /// `vector` at a time (ms).
    Vector(i64, Vec<VSample>),
    /// `matrix`.
    Matrix(Vec<Series>),
}

enum Value {
    Scalar(f64),
    Str(String),
    Vector(Vec<VSample>),
    Matrix(Vec<Series>),
}

/// Parses a PromQL expression (the error text is the parser's).
pub fn parse(query: &str) -> Res<Expr> {
    parser::parse(query).map_err(PromError::BadData)
}

/// Parses a series selector (`match[]` of the metadata APIs).
pub fn parse_selector(s: &str) -> Res<VectorSelector> {
    match parse(s)? {
        Expr::VectorSelector(vs) => Ok(vs),
        _ => Err(PromError::BadData(format!("invalid parameter \"match[]\": {s} is not a series selector"))),
    }
}

fn dur_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => -dur_ms(d),
    }
}

/// Every matcher of a selector, the metric name as a `__name__` equality matcher.
fn all_matchers(vs: &VectorSelector) -> Vec<Matcher> {
    let mut m: Vec<Matcher> = vs.matchers.matchers.clone();
    if let Some(n) = &vs.name {
        m.push(Matcher::new(MatchOp::Equal, NAME, n));
    }
    m
}

fn label<'a>(ls: &'a Labels, name: &str) -> &'a str {
    ls.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

fn matches(ls: &Labels, ms: &[Matcher]) -> bool {
    ms.iter().all(|m| m.is_match(label(ls, &m.name)))
}

fn sel_matches(ls: &Labels, vs: &VectorSelector) -> bool {
    let base = all_matchers(vs);
    if !vs.matchers.or_matchers.is_empty() {
        let name_ok = vs.name.as_ref().is_none_or(|n| label(ls, NAME) == n);
        return name_ok && vs.matchers.or_matchers.iter().any(|g| matches(ls, g));
    }
    matches(ls, &base)
}

fn drop_name(ls: &mut Labels) {
    ls.retain(|(k, _)| k != NAME);
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn date_of(ms: i64) -> String {
    let dir = Hour::from_us(u64::try_from(ms.max(0)).unwrap_or(0).saturating_mul(1000)).dir();
    dir.split('/').next().and_then(|d| d.strip_prefix("date=")).unwrap_or("1970-01-01").to_string()
}

/// The PromQL engine. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PromEngine {
    store: Arc<QueryEngine>,
    lookback_ms: i64,
}

struct Ctx<'a> {
    data: &'a HashMap<String, Vec<Series>>,
    lookback_ms: i64,
}

fn sel_key(vs: &VectorSelector) -> String {
    format!("{vs}")
}

/// The tag ids of a series, in [`TAG_COLUMNS`] order.
type TagIds = [u32; 12];

/// The tag id columns of a batch of the samples table (missing or null = 0).
fn tag_id_columns(b: &RecordBatch) -> Res<Vec<Option<UInt32Array>>> {
    TAG_COLUMNS
        .iter()
        .map(|c| match b.column_by_name(c) {
            Some(a) => Ok(Some(cast(a, &DataType::UInt32)?.as_primitive::<UInt32Type>().clone())),
            None => Ok(None),
        })
        .collect()
}

fn tag_ids(cols: &[Option<UInt32Array>], i: usize) -> TagIds {
    let mut out = [0u32; 12];
    for (o, c) in out.iter_mut().zip(cols) {
        if let Some(c) = c
            && c.is_valid(i)
        {
            *o = c.value(i);
        }
    }
    out
}

impl PromEngine {
    /// Adds `df_<kind>` labels with the names of the non-zero tag ids (series written without
    /// tags keep exactly their own labels).
    fn add_tag_labels(&self, ls: &mut Labels, ids: &TagIds) {
        for (base, &id) in TAG_COLUMNS.iter().zip(ids) {
            if id == 0 {
                continue;
            }
            let kind = base.strip_suffix("_id").and_then(|k| ResourceKind::ALL.into_iter().find(|r| r.name() == k));
            if let Some(kind) = kind
                && let Some(name) = self.store.tag_name(kind, id).filter(|n| !n.is_empty())
            {
                ls.retain(|(k, _)| {
                    !(k.starts_with(TAG_LABEL_PREFIX) && k.get(TAG_LABEL_PREFIX.len()..) == Some(kind.name()))
                });
                ls.push((format!("{TAG_LABEL_PREFIX}{}", kind.name()), name));
            }
        }
    }

    /// An engine over a query engine on which [`super::register`] was called.
    pub fn new(store: Arc<QueryEngine>) -> PromEngine {
        PromEngine { store, lookback_ms: LOOKBACK_MS }
    }

    /// Loads the series matching `vs` with samples in `[from, to]` (ms), stale markers kept.
    /// Native metric names (`flow_metrics__…`, see [`super::native`]) read the `network` and
    /// `application` tables.
    pub async fn select(&self, vs: &VectorSelector, from: i64, to: i64) -> Res<Vec<Series>> {
        let ms = all_matchers(vs);
        let eq_name = ms.iter().find(|m| m.name == NAME && matches!(m.op, MatchOp::Equal)).map(|m| m.value.clone());
        let natives = match &eq_name {
            Some(n) => super::native::parse_name(n).into_iter().collect(),
            None => super::native::candidates(&ms),
        };
        let mut native_out = Vec::new();
        for m in &natives {
            for s in super::native::select(&self.store, m, &ms, from, to).await? {
                if sel_matches(&s.labels, vs) {
                    native_out.push(s);
                }
            }
        }
        if eq_name.is_some() && !natives.is_empty() {
            return Ok(native_out);
        }
        let mut out = self.select_samples(vs, from, to).await?;
        out.extend(native_out);
        Ok(out)
    }

    async fn select_samples(&self, vs: &VectorSelector, from: i64, to: i64) -> Res<Vec<Series>> {
        let mut sql = format!(
            "SELECT metric_name, labels, time, value, {} FROM {TABLE} WHERE time >= to_timestamp_millis({from}) \
             AND time <= to_timestamp_millis({to}) AND date >= {} AND date <= {}",
            TAG_COLUMNS.join(", "),
            sql_str(&date_of(from)),
            sql_str(&date_of(to))
        );
        let name = vs.name.clone().or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == NAME && matches!(m.op, MatchOp::Equal))
                .map(|m| m.value.clone())
        });
        if let Some(n) = &name {
            sql.push_str(&format!(" AND metric_name = {}", sql_str(n)));
        }
        let batches = self.store.query_async(&sql).await?;
        // (name, labels json, tag ids) -> series index; parsed labels cached per distinct series
        let mut index: HashMap<(String, String, TagIds), Option<usize>> = HashMap::new();
        let mut by_labels: HashMap<Labels, usize> = HashMap::new();
        let mut out: Vec<Series> = Vec::new();
        for b in &batches {
            let (Some(n), Some(l), Some(t), Some(v)) = (
                b.column_by_name("metric_name"),
                b.column_by_name("labels"),
                b.column_by_name("time"),
                b.column_by_name("value"),
            ) else {
                return exec("prometheus table without the expected columns");
            };
            let n = cast(n, &DataType::Utf8)?;
            let l = cast(l, &DataType::Utf8)?;
            let (Some(n), Some(l), Some(t), Some(v)) = (
                n.as_any().downcast_ref::<StringArray>(),
                l.as_any().downcast_ref::<StringArray>(),
                t.as_any().downcast_ref::<TimestampMillisecondArray>(),
                v.as_any().downcast_ref::<Float64Array>(),
            ) else {
                return exec("prometheus table with unexpected column types");
            };
            let ids = tag_id_columns(b)?;
            for i in 0..b.num_rows() {
                let key = (n.value(i).to_string(), l.value(i).to_string(), tag_ids(&ids, i));
                let slot = match index.get(&key) {
                    Some(s) => *s,
                    None => {
                        let mut ls = parse_labels_json(&key.1).unwrap_or_default();
                        ls.push((NAME.to_string(), key.0.clone()));
                        self.add_tag_labels(&mut ls, &key.2);
                        ls.sort();
                        let s = if !sel_matches(&ls, vs) {
                            None
                        } else if let Some(&same) = by_labels.get(&ls) {
                            // other ids with the same names (or none loaded): one series
                            Some(same)
                        } else {
                            out.push(Series { labels: ls.clone(), points: Vec::new() });
                            by_labels.insert(ls, out.len() - 1);
                            Some(out.len() - 1)
                        };
                        index.insert(key, s);
                        s
                    }
                };
                if let Some(s) = slot.and_then(|s| out.get_mut(s)) {
                    s.points.push((t.value(i), v.value(i)));
                }
            }
        }
        for s in &mut out {
            s.points.sort_by_key(|p| p.0);
            s.points.dedup_by_key(|p| p.0);
        }
        Ok(out)
    }

    async fn preload(&self, e: &Expr, start: i64, end: i64, data: &mut HashMap<String, Vec<Series>>) -> Res<()> {
        let mut sels: Vec<(VectorSelector, i64)> = Vec::new();
        collect(e, 0, &mut sels)?;
        for (vs, range) in sels {
            let key = sel_key(&vs);
            if data.contains_key(&key) {
                continue;
            }
            let off = offset_ms(&vs.offset);
            let back = if range > 0 { range } else { self.lookback_ms };
            // every range of a query with this selector must fit: use the largest window
            let series = self.select(&vs, start - off - back.max(self.lookback_ms) - 1, end - off).await?;
            data.insert(key, series);
        }
        Ok(())
    }

    /// Evaluates `query` at `time_ms`.
    pub async fn instant(&self, query: &str, time_ms: i64) -> Res<QueryResult> {
        let e = parse(query)?;
        let mut data = HashMap::new();
        self.preload(&e, time_ms, time_ms, &mut data).await?;
        let ctx = Ctx { data: &data, lookback_ms: self.lookback_ms };
        Ok(match eval(&e, time_ms, &ctx)? {
            Value::Scalar(v) => QueryResult::Scalar(time_ms, v),
            Value::Str(s) => QueryResult::String(time_ms, s),
            Value::Vector(v) => QueryResult::Vector(time_ms, v),
            Value::Matrix(m) => QueryResult::Matrix(m),
        })
    }

    /// Evaluates `query` at `start, start+step, … ≤ end` (ms): a matrix sorted by labels.
    pub async fn range(&self, query: &str, start: i64, end: i64, step: i64) -> Res<Vec<Series>> {
        if step <= 0 {
            return Err(PromError::BadData(
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(PromError::BadData(
                "invalid parameter \"end\": end timestamp must not be before start time".into(),
            ));
        }
        if (end - start) / step >= MAX_STEPS {
            return Err(PromError::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        let e = parse(query)?;
        match e.value_type() {
            parser::value::ValueType::Vector | parser::value::ValueType::Scalar => {}
            t => {
                return Err(PromError::BadData(format!(
                    "invalid expression type \"{t}\" for range query, must be Scalar or instant Vector"
                )));
            }
        }
        let mut data = HashMap::new();
        self.preload(&e, start, end, &mut data).await?;
        let ctx = Ctx { data: &data, lookback_ms: self.lookback_ms };
        let mut acc: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        let mut t = start;
        while t <= end {
            match eval(&e, t, &ctx)? {
                Value::Scalar(v) => acc.entry(Vec::new()).or_default().push((t, v)),
                Value::Vector(vs) => {
                    for s in vs {
                        acc.entry(s.labels).or_default().push((t, s.value));
                    }
                }
                _ => return exec("range query of a non-vector expression"),
            }
            t += step;
        }
        Ok(acc.into_iter().map(|(labels, points)| Series { labels, points }).collect())
    }

    /// Series matching any of the selectors with samples in `[start, end]` (ms): their labels.
    pub async fn series(&self, selectors: &[String], start: i64, end: i64) -> Res<Vec<Labels>> {
        let mut out: Vec<Labels> = Vec::new();
        for s in selectors {
            let vs = parse_selector(s)?;
            for se in self.select(&vs, start, end).await? {
                out.push(se.labels);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Label names (of the series matching the selectors, or of all series) in `[start, end]`.
    pub async fn label_names(&self, selectors: &[String], start: i64, end: i64) -> Res<Vec<String>> {
        let series = self.all_or_matching(selectors, start, end).await?;
        let mut names: Vec<String> = series.into_iter().flat_map(|l| l.into_iter().map(|(k, _)| k)).collect();
        if selectors.is_empty() {
            let native = super::native::label_names(&self.store, start, end).await?;
            if !native.is_empty() {
                names.push(NAME.to_string());
            }
            names.extend(native);
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Values of a label (of the series matching the selectors, or of all series).
    pub async fn label_values(&self, name: &str, selectors: &[String], start: i64, end: i64) -> Res<Vec<String>> {
        let series = self.all_or_matching(selectors, start, end).await?;
        let mut vals: Vec<String> =
            series.iter().map(|l| label(l, name).to_string()).filter(|v| !v.is_empty()).collect();
        if selectors.is_empty() {
            vals.extend(super::native::label_values(&self.store, name, start, end).await?);
        }
        vals.sort();
        vals.dedup();
        Ok(vals)
    }

    async fn all_or_matching(&self, selectors: &[String], start: i64, end: i64) -> Res<Vec<Labels>> {
        if !selectors.is_empty() {
            return self.series(selectors, start, end).await;
        }
        let sql = format!(
            "SELECT DISTINCT metric_name, labels, {} FROM {TABLE} WHERE time >= to_timestamp_millis({start}) \
             AND time <= to_timestamp_millis({end}) AND date >= {} AND date <= {}",
            TAG_COLUMNS.join(", "),
            sql_str(&date_of(start)),
            sql_str(&date_of(end))
        );
        let mut out = Vec::new();
        for b in self.store.query_async(&sql).await? {
            let (Some(n), Some(l)) = (b.column_by_name("metric_name"), b.column_by_name("labels")) else { continue };
            let (n, l) = (cast(n, &DataType::Utf8)?, cast(l, &DataType::Utf8)?);
            let (Some(n), Some(l)) =
                (n.as_any().downcast_ref::<StringArray>(), l.as_any().downcast_ref::<StringArray>())
            else {
                continue;
            };
            let ids = tag_id_columns(&b)?;
            for i in 0..b.num_rows() {
                let mut ls = parse_labels_json(l.value(i)).unwrap_or_default();
                ls.push((NAME.to_string(), n.value(i).to_string()));
                self.add_tag_labels(&mut ls, &tag_ids(&ids, i));
                ls.sort();
                out.push(ls);
            }
        }
        Ok(out)
    }
}

/// Collects the selectors of an expression with the range each is read over (0 = instant).
fn collect(e: &Expr, range: i64, out: &mut Vec<(VectorSelector, i64)>) -> Res<()> {
    match e {
        Expr::VectorSelector(vs) => {
            if vs.at.is_some() {
                return exec("the @ modifier is not supported");
            }
            if let Some((_, r)) = out.iter_mut().find(|(v, _)| sel_key(v) == sel_key(vs)) {
                *r = (*r).max(range);
            } else {
                out.push((vs.clone(), range));
            }
        }
        Expr::MatrixSelector(ms) => collect(&Expr::VectorSelector(ms.vs.clone()), dur_ms(&ms.range), out)?,
        Expr::Aggregate(a) => {
            collect(&a.expr, range, out)?;
            if let Some(p) = &a.param {
                collect(p, range, out)?;
            }
        }
        Expr::Unary(u) => collect(&u.expr, range, out)?,
        Expr::Binary(b) => {
            collect(&b.lhs, range, out)?;
            collect(&b.rhs, range, out)?;
        }
        Expr::Paren(p) => collect(&p.expr, range, out)?,
        Expr::Call(c) => {
            for a in &c.args.args {
                collect(a, range, out)?;
            }
        }
        Expr::Subquery(_) => return exec("subqueries are not supported"),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        Expr::Extension(_) => return exec("extension expressions are not supported"),
    }
    Ok(())
}

fn instant_select(vs: &VectorSelector, t: i64, ctx: &Ctx<'_>) -> Vec<VSample> {
    let at = t - offset_ms(&vs.offset);
    let Some(series) = ctx.data.get(&sel_key(vs)) else { return Vec::new() };
    series
        .iter()
        .filter_map(|s| {
            let idx = s.points.partition_point(|p| p.0 <= at);
            let (pt, pv) = *s.points.get(idx.checked_sub(1)?)?;
            // native metrics: only the window that ended in (at - interval, at]
            if super::native::interval_of(&s.labels).is_some_and(|iv| pt <= at - iv) {
                return None;
            }
            if pt < at - ctx.lookback_ms || is_stale(pv) {
                return None;
            }
            Some(VSample { labels: s.labels.clone(), value: pv })
        })
        .collect()
}

fn range_select(vs: &VectorSelector, range: i64, t: i64, ctx: &Ctx<'_>) -> Vec<Series> {
    let at = t - offset_ms(&vs.offset);
    let Some(series) = ctx.data.get(&sel_key(vs)) else { return Vec::new() };
    series
        .iter()
        .filter_map(|s| {
            let native = super::native::interval_of(&s.labels).is_some();
            let lo = s.points.partition_point(|p| if native { p.0 <= at - range } else { p.0 < at - range });
            let hi = s.points.partition_point(|p| p.0 <= at);
            let pts: Vec<(i64, f64)> = s.points.get(lo..hi)?.iter().copied().filter(|p| !is_stale(p.1)).collect();
            (!pts.is_empty()).then(|| Series { labels: s.labels.clone(), points: pts })
        })
        .collect()
}

fn eval(e: &Expr, t: i64, ctx: &Ctx<'_>) -> Res<Value> {
    Ok(match e {
        Expr::NumberLiteral(n) => Value::Scalar(n.val),
        Expr::StringLiteral(s) => Value::Str(s.val.clone()),
        Expr::Paren(p) => eval(&p.expr, t, ctx)?,
        Expr::VectorSelector(vs) => Value::Vector(instant_select(vs, t, ctx)),
        Expr::MatrixSelector(ms) => Value::Matrix(range_select(&ms.vs, dur_ms(&ms.range), t, ctx)),
        Expr::Unary(u) => match eval(&u.expr, t, ctx)? {
            Value::Scalar(v) => Value::Scalar(-v),
            Value::Vector(mut v) => {
                for s in &mut v {
                    s.value = -s.value;
                    drop_name(&mut s.labels);
                }
                Value::Vector(v)
            }
            _ => return exec("unary minus needs a scalar or an instant vector"),
        },
        Expr::Aggregate(a) => aggregate(a, t, ctx)?,
        Expr::Binary(b) => binary(b, t, ctx)?,
        Expr::Call(c) => call(c, t, ctx)?,
        Expr::Subquery(_) => return exec("subqueries are not supported"),
        Expr::Extension(_) => return exec("extension expressions are not supported"),
    })
}

fn vector(v: Value, what: &str) -> Res<Vec<VSample>> {
    match v {
        Value::Vector(v) => Ok(v),
        _ => exec(format!("{what}: expected an instant vector")),
    }
}

fn scalar(v: Value, what: &str) -> Res<f64> {
    match v {
        Value::Scalar(v) => Ok(v),
        _ => exec(format!("{what}: expected a scalar")),
    }
}

fn group_key(ls: &Labels, m: &Option<LabelModifier>) -> Labels {
    match m {
        None => Vec::new(),
        Some(LabelModifier::Include(l)) => ls.iter().filter(|(k, _)| l.labels.contains(k)).cloned().collect(),
        Some(LabelModifier::Exclude(l)) => {
            ls.iter().filter(|(k, _)| k != NAME && !l.labels.contains(k)).cloned().collect()
        }
    }
}

fn aggregate(a: &parser::AggregateExpr, t: i64, ctx: &Ctx<'_>) -> Res<Value> {
    let op = a.op.to_string();
    let input = vector(eval(&a.expr, t, ctx)?, &op)?;
    let mut groups: BTreeMap<Labels, Vec<VSample>> = BTreeMap::new();
    for s in input {
        groups.entry(group_key(&s.labels, &a.modifier)).or_default().push(s);
    }
    let mut out = Vec::new();
    match op.as_str() {
        "topk" | "bottomk" => {
            let k = match &a.param {
                Some(p) => scalar(eval(p, t, ctx)?, &op)?,
                None => return exec("topk/bottomk need a parameter"),
            };
            let k = if k.is_nan() || k < 1.0 { 0 } else { k.min(1e9) as usize };
            for (_, mut g) in groups {
                // NaN sorts last for both
                g.sort_by(|x, y| {
                    let ord = x.value.partial_cmp(&y.value).unwrap_or_else(|| x.value.is_nan().cmp(&y.value.is_nan()));
                    if op == "topk" && !x.value.is_nan() && !y.value.is_nan() { ord.reverse() } else { ord }
                });
                out.extend(g.into_iter().take(k));
            }
        }
        "sum" | "avg" | "max" | "min" | "count" | "group" => {
            for (key, g) in groups {
                let vals = g.iter().map(|s| s.value);
                let n = g.len() as f64;
                let value = match op.as_str() {
                    "sum" => vals.sum(),
                    "avg" => vals.sum::<f64>() / n,
                    "count" => n,
                    "group" => 1.0,
                    "max" => vals.fold(f64::NAN, |m, v| if m.is_nan() || v > m { v } else { m }),
                    _ => vals.fold(f64::NAN, |m, v| if m.is_nan() || v < m { v } else { m }),
                };
                out.push(VSample { labels: key, value });
            }
        }
        o => return exec(format!("aggregation {o} is not supported")),
    }
    Ok(Value::Vector(out))
}

fn arith(op: &str, l: f64, r: f64) -> Option<(f64, bool)> {
    Some(match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        _ => return None,
    })
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

fn signature(ls: &Labels, on: bool, names: &[String]) -> Labels {
    if on {
        ls.iter().filter(|(k, _)| names.contains(k)).cloned().collect()
    } else {
        ls.iter().filter(|(k, _)| k != NAME && !names.contains(k)).cloned().collect()
    }
}

fn binary(b: &parser::BinaryExpr, t: i64, ctx: &Ctx<'_>) -> Res<Value> {
    let op = b.op.to_string();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = eval(&b.lhs, t, ctx)?;
    let rhs = eval(&b.rhs, t, ctx)?;
    let Some(_) = arith(&op, 0.0, 0.0).or(matches!(op.as_str(), "and" | "or" | "unless").then_some((0.0, true))) else {
        return exec(format!("operator {op} is not supported"));
    };
    let cmp = is_comparison(&op);
    let swap = matches!(lhs, Value::Scalar(_));
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = arith(&op, l, r).ok_or_else(|| PromError::Execution(format!("{op} between scalars")))?;
            if cmp && !return_bool {
                return Err(PromError::BadData("comparisons between scalars must use BOOL modifier".into()));
            }
            Ok(Value::Scalar(if cmp { f64::from(u8::from(keep)) } else { v }))
        }
        (Value::Vector(v), Value::Scalar(s)) | (Value::Scalar(s), Value::Vector(v)) => {
            let mut out = Vec::new();
            for mut x in v {
                let (l, r) = if swap { (s, x.value) } else { (x.value, s) };
                let Some((mut val, mut keep)) = arith(&op, l, r) else {
                    return exec(format!("operator {op} needs two vectors"));
                };
                if cmp && swap {
                    val = r;
                }
                if return_bool {
                    val = f64::from(u8::from(keep));
                    keep = true;
                }
                if keep {
                    if !cmp || return_bool {
                        drop_name(&mut x.labels);
                    }
                    x.value = val;
                    out.push(x);
                }
            }
            Ok(Value::Vector(out))
        }
        (Value::Vector(l), Value::Vector(r)) => vector_binop(&op, b, return_bool, l, r).map(Value::Vector),
        _ => exec(format!("operator {op}: operands must be scalars or instant vectors")),
    }
}

fn vector_binop(
    op: &str,
    b: &parser::BinaryExpr,
    return_bool: bool,
    l: Vec<VSample>,
    r: Vec<VSample>,
) -> Res<Vec<VSample>> {
    let m = b.modifier.as_ref();
    let (on, names): (bool, Vec<String>) = match m.and_then(|m| m.matching.as_ref()) {
        Some(LabelModifier::Include(ls)) => (true, ls.labels.clone()),
        Some(LabelModifier::Exclude(ls)) => (false, ls.labels.clone()),
        None => (false, Vec::new()),
    };
    let sig = |s: &VSample| signature(&s.labels, on, &names);
    match op {
        "and" => {
            let rs: std::collections::HashSet<Labels> = r.iter().map(sig).collect();
            return Ok(l.into_iter().filter(|s| rs.contains(&sig(s))).collect());
        }
        "unless" => {
            let rs: std::collections::HashSet<Labels> = r.iter().map(sig).collect();
            return Ok(l.into_iter().filter(|s| !rs.contains(&sig(s))).collect());
        }
        "or" => {
            let ls: std::collections::HashSet<Labels> = l.iter().map(sig).collect();
            let mut out = l;
            out.extend(r.into_iter().filter(|s| !ls.contains(&sig(s))));
            return Ok(out);
        }
        _ => {}
    }
    let card = m.map(|m| m.card.clone()).unwrap_or(VectorMatchCardinality::OneToOne);
    // the "one" side is indexed; group_right swaps roles
    let (many, one, swapped, include) = match &card {
        VectorMatchCardinality::OneToMany(ls) => (r, l, true, ls.labels.clone()),
        VectorMatchCardinality::ManyToOne(ls) => (l, r, false, ls.labels.clone()),
        _ => (l, r, false, Vec::new()),
    };
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut index: HashMap<Labels, VSample> = HashMap::new();
    for s in one {
        let k = sig(&s);
        if index.insert(k.clone(), s).is_some() {
            return exec(format!(
                "found duplicate series for the match group {} on the {} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side",
                fmt_labels(&k),
                if swapped { "left" } else { "right" }
            ));
        }
    }
    let cmp = is_comparison(op);
    let mut seen: HashMap<Labels, ()> = HashMap::new();
    let mut out = Vec::new();
    for s in many {
        let k = sig(&s);
        let Some(o) = index.get(&k) else { continue };
        let (lv, rv) = if swapped { (o.value, s.value) } else { (s.value, o.value) };
        let Some((mut val, mut keep)) = arith(op, lv, rv) else { return exec(format!("operator {op}")) };
        if return_bool {
            val = f64::from(u8::from(keep));
            keep = true;
        }
        if !keep {
            continue;
        }
        let mut labels = s.labels.clone();
        if !cmp || return_bool {
            drop_name(&mut labels);
        }
        if one_to_one {
            labels = if on {
                labels.into_iter().filter(|(k, _)| names.contains(k)).collect()
            } else {
                labels.into_iter().filter(|(k, _)| !names.contains(k)).collect()
            };
        } else {
            for name in &include {
                labels.retain(|(k, _)| k != name);
                let v = label(&o.labels, name);
                if !v.is_empty() {
                    labels.push((name.clone(), v.to_string()));
                }
            }
            labels.sort();
        }
        if seen.insert(labels.clone(), ()).is_some() {
            return exec(if one_to_one {
                format!(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right) for {}",
                    fmt_labels(&k)
                )
            } else {
                "multiple matches for labels: grouping labels must ensure unique matches".to_string()
            });
        }
        out.push(VSample { labels, value: val });
    }
    Ok(out)
}

fn fmt_labels(ls: &Labels) -> String {
    let inner: Vec<String> = ls.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn matrix_arg(c: &parser::Call, i: usize, t: i64, ctx: &Ctx<'_>) -> Res<(Vec<Series>, i64, i64)> {
    let Some(a) = c.args.args.get(i) else { return exec(format!("{}: missing argument", c.func.name)) };
    let (range, off) = match a.as_ref() {
        Expr::MatrixSelector(ms) => (dur_ms(&ms.range), offset_ms(&ms.vs.offset)),
        _ => return exec(format!("{}: expected a range vector selector", c.func.name)),
    };
    match eval(a, t, ctx)? {
        Value::Matrix(m) => Ok((m, range, off)),
        _ => exec(format!("{}: expected a range vector", c.func.name)),
    }
}

fn arg(c: &parser::Call, i: usize, t: i64, ctx: &Ctx<'_>) -> Res<Value> {
    match c.args.args.get(i) {
        Some(a) => eval(a, t, ctx),
        None => exec(format!("{}: missing argument", c.func.name)),
    }
}

/// Prometheus's `extrapolatedRate` (2.x).
fn extrapolated_rate(
    pts: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    counter: bool,
    rate: bool,
    range: i64,
) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let (first, last) = (*pts.first()?, *pts.last()?);
    let mut result = last.1 - first.1;
    if counter {
        let mut prev = 0.0;
        for p in pts {
            if p.1 < prev {
                result += prev;
            }
            prev = p.1;
        }
    }
    let mut to_start = (first.0 - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg = sampled / (pts.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { avg / 2.0 };
    interval += if to_end < threshold { to_end } else { avg / 2.0 };
    result *= interval / sampled;
    if rate {
        result /= range as f64 / 1000.0;
    }
    Some(result)
}

fn instant_delta(pts: &[(i64, f64)], rate: bool) -> Option<f64> {
    let n = pts.len();
    if n < 2 {
        return None;
    }
    let (prev, last) = (*pts.get(n - 2)?, *pts.get(n - 1)?);
    let dv = if rate && last.1 < prev.1 { last.1 } else { last.1 - prev.1 };
    let dt = last.0 - prev.0;
    if dt == 0 {
        return None;
    }
    Some(if rate { dv / (dt as f64 / 1000.0) } else { dv })
}

fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // coalesce equal bounds, then force monotonic counts
    let mut c: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match c.last_mut() {
            Some(l) if l.0 == b.0 => l.1 += b.1,
            _ => c.push(b),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for b in &mut c {
        if b.1 > max {
            max = b.1;
        } else {
            b.1 = max;
        }
    }
    if c.len() < 2 {
        return f64::NAN;
    }
    let n = c.len();
    let obs = c.get(n - 1).map_or(0.0, |b| b.1);
    if obs == 0.0 || obs.is_nan() {
        return f64::NAN;
    }
    let mut rank = q * obs;
    let idx = c.get(..n - 1).map_or(0, |s| s.partition_point(|b| b.1 < rank));
    if idx == n - 1 {
        return c.get(n - 2).map_or(f64::NAN, |b| b.0);
    }
    let Some(&(end, mut count)) = c.get(idx) else { return f64::NAN };
    if idx == 0 && end <= 0.0 {
        return end;
    }
    let mut start = 0.0;
    if idx > 0
        && let Some(&(pb, pc)) = c.get(idx - 1)
    {
        start = pb;
        count -= pc;
        rank -= pc;
    }
    start + (end - start) * (rank / count)
}

/// A per-series function of a range: (labels, points, range start, range end, range) -> value.
type SeriesFn<'a> = dyn Fn(&Labels, &[(i64, f64)], i64, i64, i64) -> Option<f64> + 'a;

fn call(c: &parser::Call, t: i64, ctx: &Ctx<'_>) -> Res<Value> {
    let name = c.func.name;
    let per_series = |f: &SeriesFn<'_>| -> Res<Value> {
        let (m, range, off) = matrix_arg(c, 0, t, ctx)?;
        let end = t - off;
        Ok(Value::Vector(
            m.into_iter()
                .filter_map(|mut s| {
                    let v = f(&s.labels, &s.points, end - range, end, range)?;
                    drop_name(&mut s.labels);
                    Some(VSample { labels: s.labels, value: v })
                })
                .collect(),
        ))
    };
    let math = |f: fn(f64) -> f64| -> Res<Value> {
        let mut v = vector(arg(c, 0, t, ctx)?, name)?;
        for s in &mut v {
            s.value = f(s.value);
            drop_name(&mut s.labels);
        }
        Ok(Value::Vector(v))
    };
    match name {
        // native metrics hold per-window deltas: sums of windows, no extrapolation (see native)
        "rate" => per_series(&|l, p, s, e, r| match super::native::interval_of(l) {
            Some(_) => super::native::rate(p, r),
            None => extrapolated_rate(p, s, e, true, true, r),
        }),
        "increase" | "delta" => per_series(&|l, p, s, e, r| match super::native::interval_of(l) {
            Some(_) => super::native::increase(p),
            None => extrapolated_rate(p, s, e, name == "increase", false, r),
        }),
        "irate" => per_series(&|l, p, _, _, _| match super::native::interval_of(l) {
            Some(iv) => p.last().map(|x| x.1 / (iv as f64 / 1000.0)),
            None => instant_delta(p, true),
        }),
        "idelta" => per_series(&|l, p, _, _, _| match super::native::interval_of(l) {
            Some(_) => p.last().map(|x| x.1),
            None => instant_delta(p, false),
        }),
        "sum_over_time" => per_series(&|_, p, _, _, _| Some(p.iter().map(|x| x.1).sum())),
        "count_over_time" => per_series(&|_, p, _, _, _| Some(p.len() as f64)),
        "avg_over_time" => per_series(&|_, p, _, _, _| Some(p.iter().map(|x| x.1).sum::<f64>() / p.len() as f64)),
        "max_over_time" => per_series(&|_, p, _, _, _| p.iter().map(|x| x.1).reduce(f64::max)),
        "min_over_time" => per_series(&|_, p, _, _, _| p.iter().map(|x| x.1).reduce(f64::min)),
        "last_over_time" => {
            let (m, _, _) = matrix_arg(c, 0, t, ctx)?;
            Ok(Value::Vector(
                m.into_iter().filter_map(|s| Some(VSample { value: s.points.last()?.1, labels: s.labels })).collect(),
            ))
        }
        "abs" => math(f64::abs),
        "ceil" => math(f64::ceil),
        "floor" => math(f64::floor),
        "sqrt" => math(f64::sqrt),
        "exp" => math(f64::exp),
        "ln" => math(f64::ln),
        "round" if c.args.args.len() == 1 => math(|v| (v + 0.5).floor()),
        "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
        "vector" => Ok(Value::Vector(vec![VSample { labels: Vec::new(), value: scalar(arg(c, 0, t, ctx)?, name)? }])),
        "scalar" => {
            let v = vector(arg(c, 0, t, ctx)?, name)?;
            Ok(Value::Scalar(if v.len() == 1 { v.first().map_or(f64::NAN, |s| s.value) } else { f64::NAN }))
        }
        "absent" => {
            let v = vector(arg(c, 0, t, ctx)?, name)?;
            if !v.is_empty() {
                return Ok(Value::Vector(Vec::new()));
            }
            let mut labels: Labels = Vec::new();
            if let Some(Expr::VectorSelector(vs)) = c.args.args.first().map(|a| a.as_ref()) {
                let ms = &vs.matchers.matchers;
                for m in ms {
                    if m.name != NAME && matches!(m.op, MatchOp::Equal) {
                        let dup = ms.iter().filter(|x| x.name == m.name).count() > 1;
                        if !dup {
                            labels.push((m.name.clone(), m.value.clone()));
                        }
                    }
                }
                labels.sort();
            }
            Ok(Value::Vector(vec![VSample { labels, value: 1.0 }]))
        }
        "histogram_quantile" => {
            let q = scalar(arg(c, 0, t, ctx)?, name)?;
            let v = vector(arg(c, 1, t, ctx)?, name)?;
            let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
            for s in v {
                let le = label(&s.labels, "le");
                let Ok(bound) = le.parse::<f64>().or(match le {
                    "+Inf" | "Inf" | "+inf" | "inf" => Ok(f64::INFINITY),
                    _ => Err(()),
                }) else {
                    continue;
                };
                let key: Labels = s.labels.into_iter().filter(|(k, _)| k != "le" && k != NAME).collect();
                groups.entry(key).or_default().push((bound, s.value));
            }
            Ok(Value::Vector(
                groups.into_iter().map(|(labels, b)| VSample { labels, value: bucket_quantile(q, b) }).collect(),
            ))
        }
        f => exec(format!("function {f} is not supported")),
    }
}

/// The label matchers of a selector, for callers that need them (e.g. `match[]` handling).
pub fn selector_matchers(vs: &VectorSelector) -> Matchers {
    Matchers { matchers: all_matchers(vs), or_matchers: vs.matchers.or_matchers.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_like_prometheus() {
        let b = vec![(0.1, 1.0), (0.5, 3.0), (1.0, 4.0), (f64::INFINITY, 4.0)];
        assert!((bucket_quantile(0.5, b.clone()) - 0.3).abs() < 1e-12);
        assert_eq!(bucket_quantile(1.0, b.clone()), 1.0);
        assert!(bucket_quantile(0.5, vec![(1.0, 2.0)]).is_nan());
        assert_eq!(bucket_quantile(2.0, b), f64::INFINITY);
    }

    #[test]
    fn rate_extrapolation() {
        // counter 0,10,20,30 at 0,15,30,45 s, window [0,60] s: the 15 s to the window end are
        // below 1.1 x the 15 s sample spacing, so Prometheus extrapolates all the way:
        // 30 * (45 + 15) / 45 = 40
        let pts = [(0, 0.0), (15_000, 10.0), (30_000, 20.0), (45_000, 30.0)];
        let inc = extrapolated_rate(&pts, 0, 60_000, true, false, 60_000).unwrap();
        assert!((inc - 40.0).abs() < 1e-9, "{inc}");
        // window [0,90] s: 45 s to the end is beyond the threshold, so only half a spacing
        // (7.5 s) is added: 30 * (45 + 7.5) / 45 = 35
        let inc = extrapolated_rate(&pts, 0, 90_000, true, false, 90_000).unwrap();
        assert!((inc - 35.0).abs() < 1e-9, "{inc}");
        assert_eq!(instant_delta(&pts, true), Some(10.0 / 15.0));
    }

    #[test]
    fn bad_query_is_bad_data() {
        assert!(matches!(parse("sum(rate(x[5m])"), Err(PromError::BadData(_))));
    }
}
