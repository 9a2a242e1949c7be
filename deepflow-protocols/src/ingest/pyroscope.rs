//! Pyroscope `/ingest` uploads → `profile` rows ([`ProfileSample`]).
//!
//! The query string ([`IngestParams`]) names the application and its labels
//! (`name=app.cpu{env=prod,region=eu}`), the window (`from`, `until`: unix seconds; ms, µs and ns
//! are recognized by magnitude), `sampleRate`, `spyName`, `units`, `aggregationType` and the
//! body `format`:
//! - `folded` (the default) and `lines`: text, one stack per line, frames root first joined by
//!   `;`, then a space and the sample count (`main;work;busy 12`); `lines` has no count (1 each);
//! - `pprof`: a `perftools.profiles.Profile` protobuf ([`pprof`]), gzip-compressed or not, as
//!   the body or as the `profile` part of a `multipart/form-data` body, optionally with a
//!   `sample_type_config` JSON part (which sample types to keep, their units and display names).
//!   `prev_profile` parts are ignored.
//!
//! Rows: one per (profile type, stack, label set) with the summed value; non-positive values are
//! dropped. The application name's suffix is the profile type for folded uploads when it is a
//! known Pyroscope type (`app.cpu`, `app.alloc_space`, ...; `cpu` otherwise); pprof rows take the
//! type and unit of each sample type. Labels come from the name's `{k=v,...}` and, for pprof,
//! the string labels of each sample.

use std::collections::HashMap;
use std::io::Read as _;

use deepflow_core::record::ProfileSample;

/// `signal_source` of the rows.
pub const SIGNAL_SOURCE: &str = "pyroscope";

/// Largest decompressed pprof accepted, bytes (a gzip bomb is an error, not an allocation).
pub const MAX_DECOMPRESSED: usize = 64 << 20;

/// Profile types Pyroscope recognizes as an application-name suffix (`app.cpu`).
pub const KNOWN_TYPES: &[&str] = &[
    "cpu",
    "wall",
    "itimer",
    "alloc_objects",
    "alloc_space",
    "inuse_objects",
    "inuse_space",
    "goroutines",
    "mutex_count",
    "mutex_duration",
    "block_count",
    "block_duration",
    "lock_count",
    "lock_duration",
    "exceptions",
];

/// Why an upload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Bad query parameters.
    #[error("invalid parameter: {0}")]
    Param(String),
    /// A `folded`/`lines` body that does not parse.
    #[error("invalid folded profile: {0}")]
    Folded(String),
    /// A pprof body that does not decode or has dangling references.
    #[error("invalid pprof: {0}")]
    Pprof(String),
    /// A multipart body without a usable `profile` part.
    #[error("invalid multipart body: {0}")]
    Multipart(String),
    /// A format this decoder does not read (`trie`, `tree`, `jfr`, ...).
    #[error("unsupported format {0:?} (supported: folded, lines, pprof)")]
    Unsupported(String),
}

/// The `/ingest` query parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IngestParams {
    /// `name`: `app[.type][{k=v,...}]`.
    pub name: String,
    /// `from`, µs since the epoch (0 = not given).
    pub from_us: u64,
    /// `until`, µs since the epoch (0 = not given).
    pub until_us: u64,
    /// `sampleRate`, Hz (0 = not given).
    pub sample_rate: u32,
    /// `spyName`.
    pub spy_name: String,
    /// `units` (folded uploads; `samples` when absent).
    pub units: String,
    /// `aggregationType` (`sum` or `average`).
    pub aggregation_type: String,
    /// `format` (`folded` when absent).
    pub format: String,
}

/// A Pyroscope time parameter as µs: unix seconds, or ms/µs/ns recognized by magnitude.
fn time_us(s: &str) -> Option<u64> {
    let v: u64 = s.trim().parse().ok()?;
    Some(match v {
        0..=99_999_999_999 => v.saturating_mul(1_000_000),
        100_000_000_000..=99_999_999_999_999 => v.saturating_mul(1000),
        100_000_000_000_000..=99_999_999_999_999_999 => v,
        _ => v / 1000,
    })
}

impl IngestParams {
    /// From decoded query pairs (the last value of a repeated key wins).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<IngestParams, DecodeError> {
        let mut p = IngestParams::default();
        for (k, v) in pairs {
            match k {
                "name" => p.name = v.to_string(),
                "from" => p.from_us = time_us(v).ok_or_else(|| DecodeError::Param(format!("from={v:?}")))?,
                "until" => p.until_us = time_us(v).ok_or_else(|| DecodeError::Param(format!("until={v:?}")))?,
                "sampleRate" => {
                    p.sample_rate = v.trim().parse().map_err(|_| DecodeError::Param(format!("sampleRate={v:?}")))?
                }
                "spyName" => p.spy_name = v.to_string(),
                "units" => p.units = v.to_string(),
                "aggregationType" => p.aggregation_type = v.to_string(),
                "format" => p.format = v.to_string(),
                _ => {}
            }
        }
        if p.name.trim().is_empty() {
            return Err(DecodeError::Param("missing name (name=app{labels})".into()));
        }
        Ok(p)
    }
}

/// The parts of a Pyroscope application name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppName {
    /// The application (without type suffix and labels).
    pub app: String,
    /// A known profile-type suffix (`cpu` in `app.cpu`), if any.
    pub profile_type: Option<String>,
    /// The `{k=v,...}` labels in the order written.
    pub labels: Vec<(String, String)>,
}

/// Splits an application name: `app.cpu{env=prod,region=eu}` → app `app`, type `cpu`, labels
/// `env=prod`, `region=eu`.
pub fn parse_app_name(name: &str) -> Result<AppName, DecodeError> {
    let name = name.trim();
    let (base, labels) = match name.find('{') {
        Some(i) => {
            let inner = name
                .get(i + 1..)
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| DecodeError::Param(format!("name {name:?}: unterminated labels")))?;
            let mut labels = Vec::new();
            for kv in inner.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| DecodeError::Param(format!("name {name:?}: label {kv:?} is not k=v")))?;
                labels.push((k.trim().to_string(), v.trim().to_string()));
            }
            (name.get(..i).unwrap_or(""), labels)
        }
        None => (name, Vec::new()),
    };
    if base.is_empty() {
        return Err(DecodeError::Param(format!("name {name:?}: empty application name")));
    }
    match base.rsplit_once('.') {
        Some((app, t)) if !app.is_empty() && KNOWN_TYPES.contains(&t) => {
            Ok(AppName { app: app.to_string(), profile_type: Some(t.to_string()), labels })
        }
        _ => Ok(AppName { app: base.to_string(), profile_type: None, labels }),
    }
}

/// Decodes one upload. `content_type` is the request's `Content-Type`; `now_us` is the row time
/// when neither `from` nor the pprof's `time_nanos` gives one.
pub fn decode(
    params: &IngestParams,
    content_type: Option<&str>,
    body: &[u8],
    now_us: u64,
) -> Result<Vec<ProfileSample>, DecodeError> {
    let AppName { app, profile_type: suffix, labels: name_labels } = parse_app_name(&params.name)?;
    let ct = content_type.unwrap_or("").trim();
    let format = if params.format.is_empty() { "folded" } else { params.format.as_str() };
    let base = ProfileSample {
        time: if params.from_us > 0 { params.from_us } else { now_us },
        duration: params.until_us.saturating_sub(params.from_us),
        app_service: app,
        sample_rate: params.sample_rate,
        spy_name: params.spy_name.clone(),
        signal_source: SIGNAL_SOURCE,
        ..Default::default()
    };
    if ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        let boundary = boundary(ct).ok_or_else(|| DecodeError::Multipart("no boundary in Content-Type".into()))?;
        let parts = multipart(body, &boundary)?;
        let profile = parts
            .iter()
            .find(|(n, _)| n == "profile")
            .map(|(_, b)| *b)
            .ok_or_else(|| DecodeError::Multipart("no \"profile\" part".into()))?;
        let config = match parts.iter().find(|(n, _)| n == "sample_type_config") {
            Some((_, b)) => Some(SampleTypeConfig::parse(b)?),
            None => None,
        };
        if format != "pprof" && !looks_like_pprof(profile) {
            return Err(DecodeError::Unsupported(format.to_string()));
        }
        return from_pprof(&base, &name_labels, profile, config.as_ref(), params.from_us > 0);
    }
    match format {
        "pprof" => from_pprof(&base, &name_labels, body, None, params.from_us > 0),
        "folded" | "lines" => {
            let units = if params.units.is_empty() { "samples" } else { params.units.as_str() };
            let template = ProfileSample {
                profile_type: suffix.unwrap_or_else(|| "cpu".to_string()),
                unit: units.to_string(),
                ..base
            };
            let stacks = parse_folded(body, format == "lines")?;
            Ok(stacks
                .into_iter()
                .map(|(stack, value)| {
                    let mut r = ProfileSample { stack, value, ..template.clone() };
                    set_labels(&mut r, name_labels.clone());
                    r
                })
                .collect())
        }
        other => Err(DecodeError::Unsupported(other.to_string())),
    }
}

fn set_labels(r: &mut ProfileSample, mut labels: Vec<(String, String)>) {
    labels.sort();
    labels.dedup_by(|a, b| a.0 == b.0);
    (r.label_names, r.label_values) = labels.into_iter().unzip();
}

/// Parses a folded body into (stack, summed count) in first-seen order. With `lines`, every
/// line is a stack counted once.
pub fn parse_folded(body: &[u8], lines: bool) -> Result<Vec<(String, u64)>, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|e| DecodeError::Folded(format!("not UTF-8: {e}")))?;
    let mut order: Vec<String> = Vec::new();
    let mut sums: HashMap<String, u64> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r').trim();
        if line.is_empty() {
            continue;
        }
        let (stack, n) = if lines {
            (line, 1)
        } else {
            let (stack, n) = line
                .rsplit_once(' ')
                .ok_or_else(|| DecodeError::Folded(format!("line {}: no sample count: {line:?}", i + 1)))?;
            let n: u64 =
                n.trim().parse().map_err(|_| DecodeError::Folded(format!("line {}: bad sample count {n:?}", i + 1)))?;
            (stack.trim_end(), n)
        };
        if stack.is_empty() {
            return Err(DecodeError::Folded(format!("line {}: empty stack", i + 1)));
        }
        if n == 0 {
            continue;
        }
        match sums.get_mut(stack) {
            Some(v) => *v = v.saturating_add(n),
            None => {
                order.push(stack.to_string());
                sums.insert(stack.to_string(), n);
            }
        }
    }
    Ok(order
        .into_iter()
        .map(|s| {
            let v = sums.get(&s).copied().unwrap_or(0);
            (s, v)
        })
        .collect())
}

// ---------- multipart ----------

fn boundary(ct: &str) -> Option<String> {
    ct.split(';').map(str::trim).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The named parts of a `multipart/form-data` body.
fn multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<(String, &'a [u8])>, DecodeError> {
    if boundary.is_empty() {
        return Err(DecodeError::Multipart("empty boundary".into()));
    }
    let delim = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delim.as_bytes());
    let mut out = Vec::new();
    let mut pos = finder.find(body).ok_or_else(|| DecodeError::Multipart("boundary not found".into()))?;
    loop {
        let after = pos + delim.len();
        let rest = body.get(after..).unwrap_or(&[]);
        if rest.starts_with(b"--") {
            break;
        }
        let Some(next) = finder.find(rest) else {
            return Err(DecodeError::Multipart("unterminated part".into()));
        };
        let part = rest.get(..next).unwrap_or(&[]);
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let Some(hdr_end) = memchr::memmem::find(part, b"\r\n\r\n") else {
            return Err(DecodeError::Multipart("part without headers".into()));
        };
        let headers = String::from_utf8_lossy(part.get(..hdr_end).unwrap_or(&[]));
        let content = part.get(hdr_end + 4..).unwrap_or(&[]);
        let name = headers
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .flat_map(|l| l.split(';'))
            .find_map(|p| p.trim().strip_prefix("name=").map(|v| v.trim_matches('"').to_string()))
            .unwrap_or_default();
        out.push((name, content));
        pos = after + next;
    }
    Ok(out)
}

// ---------- pprof ----------

/// prost messages of `perftools.profiles` (`profile.proto`); fields this decoder does not use
/// (mappings, comments, ...) are skipped.
pub mod pprof {
    /// `Profile`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        /// What each sample value is.
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        /// Samples.
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        /// Locations (ids referenced by samples).
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        /// Functions (ids referenced by lines).
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        /// Strings; index 0 is "".
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        /// Collection time, ns since the epoch.
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        /// Collection duration, ns.
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        /// What the period is.
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        /// Sampling period.
        #[prost(int64, tag = "12")]
        pub period: i64,
    }

    /// `ValueType`: type and unit as string-table indices.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        /// Type (e.g. `cpu`).
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        /// Unit (e.g. `nanoseconds`).
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    /// `Sample`: a stack (leaf first) and its values.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// Location ids, leaf first.
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        /// One value per sample type.
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        /// Labels.
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    /// `Label`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        /// Key (string index).
        #[prost(int64, tag = "1")]
        pub key: i64,
        /// String value (string index), 0 for numeric labels.
        #[prost(int64, tag = "2")]
        pub str: i64,
        /// Numeric value.
        #[prost(int64, tag = "3")]
        pub num: i64,
        /// Unit of `num` (string index).
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    /// `Location`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        /// Id (non-zero).
        #[prost(uint64, tag = "1")]
        pub id: u64,
        /// Mapping id.
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        /// Instruction address.
        #[prost(uint64, tag = "3")]
        pub address: u64,
        /// Lines: inlined callees first, the caller last.
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    /// `Line`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        /// Function id.
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        /// Source line.
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    /// `Function`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        /// Id (non-zero).
        #[prost(uint64, tag = "1")]
        pub id: u64,
        /// Name (string index).
        #[prost(int64, tag = "2")]
        pub name: i64,
        /// System name (string index).
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        /// Source file (string index).
        #[prost(int64, tag = "4")]
        pub filename: i64,
        /// Start line.
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

/// `sample_type_config`: which sample types to keep, with units and display names.
#[derive(Debug, Clone, Default)]
struct SampleTypeConfig {
    types: HashMap<String, (Option<String>, Option<String>)>,
}

impl SampleTypeConfig {
    fn parse(b: &[u8]) -> Result<SampleTypeConfig, DecodeError> {
        let v: serde_json::Value = serde_json::from_slice(b)
            .map_err(|e| DecodeError::Multipart(format!("sample_type_config is not JSON: {e}")))?;
        let o = v.as_object().ok_or_else(|| DecodeError::Multipart("sample_type_config is not an object".into()))?;
        let mut types = HashMap::new();
        for (k, c) in o {
            let s = |f: &str| c.get(f).and_then(|x| x.as_str()).filter(|x| !x.is_empty()).map(str::to_string);
            types.insert(k.clone(), (s("units"), s("display-name")));
        }
        Ok(SampleTypeConfig { types })
    }
}

fn looks_like_pprof(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b]) || b.first() == Some(&0x0a)
}

fn gunzip(b: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Pprof(format!("gzip: {e}")))?;
    if out.len() > limit {
        return Err(DecodeError::Pprof(format!("decompressed profile over {limit} bytes")));
    }
    Ok(out)
}

/// Decodes a pprof profile (gzip-compressed or not).
pub fn decode_pprof(body: &[u8]) -> Result<pprof::Profile, DecodeError> {
    let raw;
    let bytes = if body.starts_with(&[0x1f, 0x8b]) {
        raw = gunzip(body, MAX_DECOMPRESSED)?;
        raw.as_slice()
    } else {
        body
    };
    <pprof::Profile as prost::Message>::decode(bytes).map_err(|e| DecodeError::Pprof(e.to_string()))
}

fn from_pprof(
    base: &ProfileSample,
    name_labels: &[(String, String)],
    body: &[u8],
    config: Option<&SampleTypeConfig>,
    have_from: bool,
) -> Result<Vec<ProfileSample>, DecodeError> {
    let p = decode_pprof(body)?;
    let st = |i: i64| -> Result<&str, DecodeError> {
        usize::try_from(i)
            .ok()
            .and_then(|i| p.string_table.get(i))
            .map(String::as_str)
            .ok_or_else(|| DecodeError::Pprof(format!("string index {i} out of range")))
    };
    let funcs: HashMap<u64, &str> =
        p.function.iter().map(|f| Ok((f.id, st(f.name)?))).collect::<Result<_, DecodeError>>()?;
    // location id -> frames, root-most first (the inlining caller last in `line`, so reversed)
    let mut locs: HashMap<u64, Vec<String>> = HashMap::with_capacity(p.location.len());
    for l in &p.location {
        let frames = if l.line.is_empty() {
            vec![format!("0x{:x}", l.address)]
        } else {
            l.line
                .iter()
                .rev()
                .map(|ln| {
                    funcs
                        .get(&ln.function_id)
                        .map(|n| if n.is_empty() { "?".to_string() } else { n.to_string() })
                        .ok_or_else(|| {
                            DecodeError::Pprof(format!("line references unknown function {}", ln.function_id))
                        })
                })
                .collect::<Result<_, _>>()?
        };
        locs.insert(l.id, frames);
    }
    // which value indices to emit, with (type, unit)
    let mut kinds: Vec<(usize, String, String)> = Vec::new();
    for (i, t) in p.sample_type.iter().enumerate() {
        let (ty, unit) = (st(t.r#type)?.to_string(), st(t.unit)?.to_string());
        match config {
            Some(c) => {
                if let Some((u, display)) = c.types.get(&ty) {
                    kinds.push((i, display.clone().unwrap_or(ty), u.clone().unwrap_or(unit)));
                }
            }
            None => kinds.push((i, ty, unit)),
        }
    }
    if p.sample_type.is_empty() && !p.sample.is_empty() {
        return Err(DecodeError::Pprof("samples without sample_type".into()));
    }
    let mut time = base.time;
    let mut duration = base.duration;
    if !have_from && p.time_nanos > 0 {
        time = (p.time_nanos / 1000) as u64;
        duration = (p.duration_nanos.max(0) / 1000) as u64;
    }
    type Key = (usize, String, Vec<(String, String)>);
    let mut order: Vec<Key> = Vec::new();
    let mut sums: HashMap<Key, u64> = HashMap::new();
    for s in &p.sample {
        let mut frames: Vec<&str> = Vec::with_capacity(s.location_id.len());
        for id in s.location_id.iter().rev() {
            let f =
                locs.get(id).ok_or_else(|| DecodeError::Pprof(format!("sample references unknown location {id}")))?;
            frames.extend(f.iter().map(String::as_str));
        }
        if frames.is_empty() {
            continue;
        }
        let stack = frames.join(";");
        let mut labels: Vec<(String, String)> = name_labels.to_vec();
        for l in &s.label {
            if l.str != 0 {
                labels.push((st(l.key)?.to_string(), st(l.str)?.to_string()));
            }
        }
        labels.sort();
        labels.dedup_by(|a, b| a.0 == b.0);
        for (k, (vi, _, _)) in kinds.iter().enumerate() {
            let v = s.value.get(*vi).copied().unwrap_or(0);
            if v <= 0 {
                continue;
            }
            let key = (k, stack.clone(), labels.clone());
            match sums.get_mut(&key) {
                Some(x) => *x = x.saturating_add(v as u64),
                None => {
                    sums.insert(key.clone(), v as u64);
                    order.push(key);
                }
            }
        }
    }
    let sample_rate = if base.sample_rate == 0 && p.period > 0 && p.period_type.is_some() {
        // a CPU period in ns gives the rate
        let unit = p.period_type.as_ref().map(|t| st(t.unit)).transpose()?.unwrap_or("");
        if unit == "nanoseconds" { u32::try_from(1_000_000_000 / p.period).unwrap_or(0) } else { 0 }
    } else {
        base.sample_rate
    };
    Ok(order
        .into_iter()
        .map(|key| {
            let value = sums.get(&key).copied().unwrap_or(0);
            let (k, stack, labels) = key;
            let (_, ty, unit) = kinds.get(k).cloned().unwrap_or_default();
            let mut r =
                ProfileSample { time, duration, profile_type: ty, unit, stack, value, sample_rate, ..base.clone() };
            set_labels(&mut r, labels);
            r
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn params(q: &[(&str, &str)]) -> IngestParams {
        IngestParams::from_pairs(q.iter().copied()).unwrap()
    }

    #[test]
    fn app_names() {
        let n = |app: &str, t: Option<&str>, labels: &[(&str, &str)]| AppName {
            app: app.into(),
            profile_type: t.map(str::to_string),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        assert_eq!(
            parse_app_name("shop.cpu{env=prod, region=eu}").unwrap(),
            n("shop", Some("cpu"), &[("env", "prod"), ("region", "eu")])
        );
        assert_eq!(parse_app_name("pytest.app").unwrap(), n("pytest.app", None, &[]));
        assert_eq!(parse_app_name("a.alloc_space{}").unwrap(), n("a", Some("alloc_space"), &[]));
        assert!(parse_app_name("{x=1}").is_err());
        assert!(parse_app_name("a{x=1").is_err());
        assert!(parse_app_name("a{x}").is_err());
        assert!(IngestParams::from_pairs([("from", "1")]).is_err());
        assert!(IngestParams::from_pairs([("name", "a"), ("from", "yesterday")]).is_err());
        assert_eq!(time_us("1700000000"), Some(1_700_000_000_000_000));
        assert_eq!(time_us("1700000000000"), Some(1_700_000_000_000_000));
        assert_eq!(time_us("1700000000000000000"), Some(1_700_000_000_000_000));
    }

    #[test]
    fn folded() {
        let p = params(&[
            ("name", "svc.cpu{env=test}"),
            ("from", "1700000000"),
            ("until", "1700000010"),
            ("sampleRate", "100"),
            ("spyName", "pyspy"),
        ]);
        let body = b"main;work;busy 12\r\nmain;idle 3\n\nmain;work;busy 5\nmain;zero 0\n";
        let rows = decode(&p, Some("text/plain"), body, 0).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].stack, "main;work;busy");
        assert_eq!(rows[0].value, 17);
        assert_eq!(rows[0].leaf(), "busy");
        assert_eq!(rows[0].app_service, "svc");
        assert_eq!(rows[0].profile_type, "cpu");
        assert_eq!(rows[0].unit, "samples");
        assert_eq!(rows[0].label("env"), Some("test"));
        assert_eq!(rows[0].time, 1_700_000_000_000_000);
        assert_eq!(rows[0].duration, 10_000_000);
        assert_eq!(rows[0].sample_rate, 100);
        assert_eq!(rows[0].signal_source, "pyroscope");
        assert_eq!(rows[1].value, 3);
        let lines = decode(&params(&[("name", "x"), ("format", "lines")]), None, b"a;b\na;b\nc\n", 7).unwrap();
        assert_eq!(lines.iter().map(|r| (r.stack.as_str(), r.value)).collect::<Vec<_>>(), [("a;b", 2), ("c", 1)]);
        assert_eq!(lines[0].time, 7);
    }

    #[test]
    fn folded_garbage() {
        let p = params(&[("name", "svc")]);
        for bad in [&b"main;work"[..], b"main;work lots", b" 5", b"\xff\xfe 1"] {
            assert!(decode(&p, None, bad, 0).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(
            decode(&params(&[("name", "svc"), ("format", "trie")]), None, b"", 0),
            Err(DecodeError::Unsupported(_))
        ));
    }

    /// A two-type profile (samples/count, cpu/nanoseconds) with an inlined frame and labels.
    fn sample_profile() -> pprof::Profile {
        let strings = ["", "samples", "count", "cpu", "nanoseconds", "main", "work", "busy", "inlined", "env", "dev"];
        let vt = |t: i64, u: i64| pprof::ValueType { r#type: t, unit: u };
        let func = |id: u64, name: i64| pprof::Function { id, name, ..Default::default() };
        let line = |f: u64| pprof::Line { function_id: f, line: 1 };
        pprof::Profile {
            sample_type: vec![vt(1, 2), vt(3, 4)],
            sample: vec![
                // leaf first: location 3 (busy, with `inlined` inlined into it), 2 (work), 1 (main)
                pprof::Sample { location_id: vec![3, 2, 1], value: vec![2, 20_000_000], label: vec![] },
                pprof::Sample { location_id: vec![3, 2, 1], value: vec![1, 10_000_000], label: vec![] },
                pprof::Sample {
                    location_id: vec![2, 1],
                    value: vec![1, 10_000_000],
                    label: vec![pprof::Label { key: 9, str: 10, ..Default::default() }],
                },
                pprof::Sample { location_id: vec![4], value: vec![0, 0], label: vec![] },
            ],
            location: vec![
                pprof::Location { id: 1, line: vec![line(1)], ..Default::default() },
                pprof::Location { id: 2, line: vec![line(2)], ..Default::default() },
                pprof::Location { id: 3, line: vec![line(4), line(3)], ..Default::default() },
                pprof::Location { id: 4, address: 0xdead, ..Default::default() },
            ],
            function: vec![func(1, 5), func(2, 6), func(3, 7), func(4, 8)],
            string_table: strings.iter().map(|s| s.to_string()).collect(),
            time_nanos: 1_700_000_000_000_000_000,
            duration_nanos: 10_000_000_000,
            period_type: Some(vt(3, 4)),
            period: 10_000_000,
        }
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn pprof_gzip_body() {
        let body = gzip(&sample_profile().encode_to_vec());
        let p = params(&[("name", "go-app{region=eu}"), ("format", "pprof"), ("spyName", "gospy")]);
        let rows = decode(&p, Some("binary/octet-stream"), &body, 0).unwrap();
        let get = |ty: &str, stack: &str| {
            rows.iter().filter(|r| r.profile_type == ty && r.stack == stack).map(|r| r.value).sum::<u64>()
        };
        assert_eq!(get("cpu", "main;work;busy;inlined"), 30_000_000);
        assert_eq!(get("samples", "main;work;busy;inlined"), 3);
        assert_eq!(get("cpu", "main;work"), 10_000_000);
        let labelled = rows.iter().find(|r| r.stack == "main;work").unwrap();
        assert_eq!(labelled.label("env"), Some("dev"));
        assert_eq!(labelled.label("region"), Some("eu"));
        assert_eq!(rows.iter().find(|r| r.profile_type == "cpu").unwrap().unit, "nanoseconds");
        // no `from`: the profile's own time
        assert_eq!(rows[0].time, 1_700_000_000_000_000);
        assert_eq!(rows[0].duration, 10_000_000);
        assert_eq!(rows[0].sample_rate, 100);
        assert!(rows.iter().all(|r| r.value > 0 && r.app_service == "go-app" && r.spy_name == "gospy"));
        // uncompressed works too
        let plain = decode(&p, None, &sample_profile().encode_to_vec(), 0).unwrap();
        assert_eq!(plain, rows);
    }

    #[test]
    fn pprof_multipart_with_config() {
        let prof = gzip(&sample_profile().encode_to_vec());
        let cfg = br#"{"cpu":{"units":"nanoseconds","display-name":"process_cpu"}}"#;
        let mut body = Vec::new();
        for (name, data) in [("profile", &prof[..]), ("prev_profile", b"ignored"), ("sample_type_config", cfg)] {
            body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(b"\"; filename=\"x\"\r\nContent-Type: application/octet-stream\r\n\r\n");
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        let p = params(&[("name", "go-app"), ("from", "1700000100"), ("until", "1700000110")]);
        let rows = decode(&p, Some("multipart/form-data; boundary=XyZ"), &body, 0).unwrap();
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|r| r.profile_type == "process_cpu" && r.unit == "nanoseconds"));
        assert_eq!(rows[0].time, 1_700_000_100_000_000);
        // a multipart body without the profile part
        let no_profile = b"--b\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--b--\r\n";
        assert!(matches!(
            decode(&p, Some("multipart/form-data; boundary=b"), no_profile, 0),
            Err(DecodeError::Multipart(_))
        ));
        assert!(decode(&p, Some("multipart/form-data; boundary=b"), b"garbage", 0).is_err());
        assert!(decode(&p, Some("multipart/form-data"), &body, 0).is_err());
    }

    #[test]
    fn pprof_garbage() {
        let p = params(&[("name", "a"), ("format", "pprof")]);
        // not protobuf, truncated gzip, dangling location and string references
        assert!(decode(&p, None, b"\xff\xff\xff\xff", 0).is_err());
        assert!(decode(&p, None, &gzip(b"hello")[..10], 0).is_err());
        let mut dangling = sample_profile();
        dangling.sample[0].location_id.push(99);
        assert!(decode(&p, None, &dangling.encode_to_vec(), 0).is_err());
        let mut bad_string = sample_profile();
        bad_string.function[0].name = 1000;
        assert!(decode(&p, None, &bad_string.encode_to_vec(), 0).is_err());
        // a gzip bomb stops at the limit
        let bomb = gzip(&vec![0u8; 1 << 20]);
        assert!(matches!(gunzip(&bomb, 1 << 16), Err(DecodeError::Pprof(_))));
        assert_eq!(gunzip(&bomb, 1 << 20).unwrap().len(), 1 << 20);
    }
}
