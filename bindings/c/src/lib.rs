//! # deepflow-c: the C ABI of deepflow-rs
//!
//! An opaque [`DfAnalyzer`] runs the same pipeline as `deepflow-agent analyze`: decode →
//! defragment → flow table → L7 parsers. Packets come from a pcap/pcapng file
//! ([`df_analyzer_open_file`]), from live capture ([`df_analyzer_open_live`]) or from the
//! caller ([`df_analyzer_feed`]); records come out as JSON (the same objects as the agent's
//! `--format jsonl`), one at a time ([`df_analyzer_next_record`]), in bulk as JSON lines
//! ([`df_analyzer_take_jsonl`]) or pushed to a callback ([`df_analyzer_set_callback`]); or,
//! with `"output": "arrow"`, as Arrow C Data Interface record batches
//! ([`df_analyzer_take_arrow`]) in the deepflow-store table schemas (`l4_flow_log`,
//! `l7_flow_log`, `network`). With an `"inventory"` file, rows carry the deepflow-tagging
//! universal tags and [`df_analyzer_lookup_ip`] looks an IP up; with a `"store"` directory every
//! record is also written to deepflow-store's partitioned Parquet files, which
//! [`df_store_query`] queries with SQL (result as an Arrow batch).
//!
//! Conventions of every entry point:
//! - returns a status code: `DF_OK` (0), `DF_END` (1, nothing more), or a negative `DF_ERR_*`;
//!   on error, [`df_last_error`] returns a message (thread-local: it describes the last failed
//!   call made on the calling thread);
//! - never unwinds into C: a Rust panic is caught, reported as `DF_ERR_PANIC`, and the
//!   analyzer it happened in refuses every later call except [`df_analyzer_free`];
//! - documents who owns each pointer. Strings passed in are borrowed for the duration of the
//!   call only and must be NUL-terminated UTF-8.
//!
//! An analyzer is not thread-safe: use one from one thread at a time (it may move between
//! threads).
#![allow(unsafe_code)]

mod arrow_c;

pub use arrow_c::{FFI_ArrowArray, FFI_ArrowSchema};

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use deepflow_capture::budget::parse_size;
use deepflow_capture::pipeline::{Pipeline, PipelineConfig};
use deepflow_capture::source::{self, CaptureError, Next, PacketSource};
use deepflow_core::record::{L4FlowLog, L7FlowLog, NetworkMetrics};
use deepflow_core::wire::LinkType;
use deepflow_protocols::capture::L7Observer;
use deepflow_protocols::{EmitMode, L7Config};
use deepflow_store::arrow::record_batch::RecordBatch;
use deepflow_store::writer::Storable;
use deepflow_store::{QueryEngine, Record, Storage, StoreWriter, WriterOptions};
use deepflow_tagging::{ResourceKind, TaggedRow, Tagger, TaggerOptions};
use serde::Deserialize;

/// Success.
pub const DF_OK: i32 = 0;
/// Success, and there is nothing more: no pending record (pull API), or the attached file
/// source reached its end (poll).
pub const DF_END: i32 = 1;
/// A required pointer argument was NULL.
pub const DF_ERR_NULL: i32 = -1;
/// An argument is invalid: not UTF-8, a bad configuration JSON, an unknown record kind or an
/// unsupported link type.
pub const DF_ERR_ARG: i32 = -2;
/// A file could not be opened (missing, permissions).
pub const DF_ERR_OPEN: i32 = -3;
/// A file is not a pcap/pcapng capture, or is corrupt.
pub const DF_ERR_FORMAT: i32 = -4;
/// Reading failed (I/O error).
pub const DF_ERR_IO: i32 = -5;
/// Live capture failed (libpcap: no such interface, no permission, bad filter).
pub const DF_ERR_LIVE: i32 = -6;
/// The call does not fit the analyzer's state (e.g. polling without a source attached).
pub const DF_ERR_STATE: i32 = -7;
/// The library was built without this feature (live capture).
pub const DF_ERR_UNSUPPORTED: i32 = -8;
/// The record callback returned non-zero: delivery stopped, undelivered records stay queued.
pub const DF_ERR_CALLBACK: i32 = -9;
/// Tagging failed: the inventory file is missing or invalid.
pub const DF_ERR_TAGGING: i32 = -10;
/// The Parquet store failed (writing, opening, or a SQL error in [`df_store_query`]).
pub const DF_ERR_STORE: i32 = -11;
/// A bug: Rust code panicked. The analyzer is unusable from now on (free it).
pub const DF_ERR_PANIC: i32 = -99;

/// Record kind: `l4_flow_log` rows (one per flow, when it ends).
pub const DF_KIND_FLOW: i32 = 0;
/// Record kind: `l7_flow_log` rows (sessions or messages, per the `emit` setting).
pub const DF_KIND_L7: i32 = 1;
/// Record kind: network metrics (1 s and 1 min windows); only collected when asked for.
pub const DF_KIND_METRICS: i32 = 2;
const KINDS: usize = 3;

/// Called once per record. `json` is a NUL-terminated JSON object of `len` bytes (without the
/// NUL), borrowed: valid only until the callback returns. `kind` is a `DF_KIND_*` value.
/// Return 0 to go on; any other value stops delivery (the call that delivered returns
/// `DF_ERR_CALLBACK` and the records not yet delivered stay queued for the pull API).
/// The callback must not call back into the same analyzer.
pub type DfRecordCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, kind: i32, json: *const c_char, len: usize) -> i32>;

/// Bytes allocated by this library and owned by the caller, who must release them with
/// [`df_bytes_free`] (exactly once). `data` is NULL when `len` is 0.
#[repr(C)]
pub struct DfBytes {
    pub data: *mut u8,
    pub len: usize,
}

/// Settings, given to [`df_analyzer_new`] as a JSON object; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Which records to collect: any of "flows", "l7", "metrics" (default flows + l7).
    records: Option<Vec<String>>,
    /// L7 rows per request/response pair ("sessions", default) or per message ("messages").
    emit: Option<EmitMode>,
    /// Memory budget of flow table, defragmentation and reassembly: bytes or "256MiB".
    max_memory: Option<serde_json::Value>,
    /// Turn the L7 parsers off.
    no_l7: bool,
    /// The L7 engine's settings (deepflow-protocols `L7Config`); `emit` above overrides its
    /// `emit`.
    l7: Option<L7Config>,
    /// Record format: "json" (default) or "arrow" (df_analyzer_take_arrow).
    output: Option<String>,
    /// A deepflow-tagging inventory file (YAML, or JSON for .json): rows get universal tags.
    inventory: Option<String>,
    /// A directory: every record is also written there as deepflow-store Parquet files.
    store: Option<String>,
}

/// Typed rows waiting for [`df_analyzer_take_arrow`] (output "arrow").
#[derive(Default)]
struct ArrowQueues {
    l4: Vec<TaggedRow<L4FlowLog>>,
    l7: Vec<TaggedRow<L7FlowLog>>,
    network: Vec<TaggedRow<NetworkMetrics>>,
}

/// A sink for records: per-kind queues of NUL-terminated JSON objects, back to back.
#[derive(Default)]
struct Queue {
    buf: Vec<u8>,
    /// Read position of the pull API.
    pos: usize,
    count: usize,
}

impl Queue {
    fn push<T: serde::Serialize>(&mut self, row: &T) {
        if serde_json::to_writer(&mut self.buf, row).is_ok() {
            self.buf.push(0);
            self.count += 1;
        }
    }

    /// Drops what the pull API has read; called before writing, never while a pointer handed
    /// out by `next` may still be used (those live until the next analyzer call).
    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// The next record as (offset, length without the NUL).
    fn next(&mut self) -> Option<(usize, usize)> {
        let rest = self.buf.get(self.pos..)?;
        let nul = rest.iter().position(|&b| b == 0)?;
        let start = self.pos;
        self.pos += nul + 1;
        self.count -= 1;
        Some((start, nul))
    }

    /// Everything unread as JSON lines.
    fn take_jsonl(&mut self) -> Vec<u8> {
        let mut out = if self.pos == 0 { std::mem::take(&mut self.buf) } else { self.buf.split_off(self.pos) };
        self.buf.clear();
        self.pos = 0;
        self.count = 0;
        for b in out.iter_mut() {
            if *b == 0 {
                *b = b'\n';
            }
        }
        out
    }
}

/// An analyzer: pipeline, optional packet source, record queues. Opaque to C.
pub struct DfAnalyzer {
    pipe: Pipeline<L7Observer>,
    source: Option<Box<dyn PacketSource + Send>>,
    /// The attached source is a live capture (Idle → advance timers by the wall clock).
    live: bool,
    want: [bool; KINDS],
    queues: [Queue; KINDS],
    callback: DfRecordCallback,
    user_data: *mut c_void,
    poisoned: bool,
    /// Per-analyzer counters besides the pipeline's.
    records: [u64; KINDS],
    source_packets: u64,
    truncated_at: Option<u64>,
    /// Output "arrow": rows go to `arrow` instead of the JSON queues.
    arrow_out: bool,
    arrow: ArrowQueues,
    tagger: Option<std::sync::Arc<Tagger>>,
    store: Option<StoreWriter>,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: impl Into<String>) {
    let mut msg = msg.into().into_bytes();
    msg.retain(|&b| b != 0);
    let c = CString::new(msg).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// An error: a status code and its message.
struct Error(i32, String);

impl Error {
    fn new(code: i32, msg: impl Into<String>) -> Self {
        Error(code, msg.into())
    }
}

impl From<CaptureError> for Error {
    fn from(e: CaptureError) -> Self {
        let code = match &e {
            CaptureError::Open { .. } => DF_ERR_OPEN,
            CaptureError::NotCapture { .. } | CaptureError::Corrupt { .. } => DF_ERR_FORMAT,
            CaptureError::Io { .. } => DF_ERR_IO,
            CaptureError::Live { .. } => DF_ERR_LIVE,
            _ => DF_ERR_IO,
        };
        Error(code, e.to_string())
    }
}

/// Runs `f`, catching panics; turns errors into codes plus the thread's last-error message.
fn guard(name: &str, f: impl FnOnce() -> Result<i32, Error>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(code)) => code,
        Ok(Err(Error(code, msg))) => {
            set_error(format!("{name}: {msg}"));
            code
        }
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_error(format!("{name}: internal error (panic): {what}"));
            DF_ERR_PANIC
        }
    }
}

/// Like [`guard`] for calls on an analyzer: checks the pointer and poisoning, and poisons the
/// analyzer when `f` panics.
fn with_analyzer(name: &str, a: *mut DfAnalyzer, f: impl FnOnce(&mut DfAnalyzer) -> Result<i32, Error>) -> i32 {
    if a.is_null() {
        set_error(format!("{name}: analyzer is NULL"));
        return DF_ERR_NULL;
    }
    // SAFETY: non-NULL and, per the documented contract, a live pointer returned by
    // df_analyzer_new that no other thread uses during this call.
    let an = unsafe { &mut *a };
    if an.poisoned {
        set_error(format!("{name}: the analyzer panicked earlier and cannot be used; free it"));
        return DF_ERR_PANIC;
    }
    let code = guard(name, || f(an));
    if code == DF_ERR_PANIC {
        an.poisoned = true;
    }
    code
}

/// A borrowed C string as `&str`.
fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::new(DF_ERR_NULL, format!("{what} is NULL")));
    }
    // SAFETY: non-NULL; the caller guarantees a NUL-terminated string that stays valid for the
    // duration of the call (the returned borrow does not outlive it).
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| Error::new(DF_ERR_ARG, format!("{what} is not valid UTF-8")))
}

fn opt_str_arg<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() { Ok(None) } else { str_arg(p, what).map(Some) }
}

fn out_ptr<T>(p: *mut T, what: &str) -> Result<(), Error> {
    if p.is_null() { Err(Error::new(DF_ERR_NULL, format!("{what} is NULL"))) } else { Ok(()) }
}

impl DfAnalyzer {
    fn new(cfg: Config) -> Result<DfAnalyzer, Error> {
        let mut want = [true, true, false];
        if let Some(records) = &cfg.records {
            want = [false; KINDS];
            for r in records {
                match r.as_str() {
                    "flows" => want[0] = true,
                    "l7" => want[1] = true,
                    "metrics" => want[2] = true,
                    other => {
                        return Err(Error::new(
                            DF_ERR_ARG,
                            format!("config: unknown record kind {other:?} (expected flows, l7, metrics)"),
                        ));
                    }
                }
            }
        }
        let mut pcfg = PipelineConfig::default();
        match &cfg.max_memory {
            None => {}
            Some(serde_json::Value::Number(n)) if n.as_u64().is_some() => {
                pcfg.max_memory = n.as_u64().unwrap_or_default() as usize;
            }
            Some(serde_json::Value::String(s)) => {
                pcfg.max_memory = parse_size(s)
                    .ok_or_else(|| Error::new(DF_ERR_ARG, format!("config: max_memory {s:?}: expected e.g. 256MiB")))?;
            }
            Some(v) => {
                return Err(Error::new(DF_ERR_ARG, format!("config: max_memory {v}: expected bytes or e.g. 256MiB")));
            }
        }
        let mut l7 = cfg.l7.unwrap_or_default();
        if let Some(e) = cfg.emit {
            l7.emit = e;
        }
        if cfg.no_l7 {
            l7.enabled_protocols = vec!["none".to_string()];
        }
        let arrow_out = match cfg.output.as_deref() {
            None | Some("json") => false,
            Some("arrow") => true,
            Some(o) => return Err(Error::new(DF_ERR_ARG, format!("config: output {o:?}: expected json or arrow"))),
        };
        let tagger = match &cfg.inventory {
            None => None,
            Some(path) => {
                let t = Tagger::new(TaggerOptions::default())
                    .map_err(|e| Error::new(DF_ERR_TAGGING, format!("tagger: {e}")))?;
                t.load_inventory_file(Path::new(path))
                    .map_err(|e| Error::new(DF_ERR_TAGGING, format!("inventory {path}: {e}")))?;
                Some(std::sync::Arc::new(t))
            }
        };
        let store = match &cfg.store {
            None => None,
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| Error::new(DF_ERR_STORE, format!("store {dir}: {e}")))?;
                let storage = Storage::local(dir).map_err(|e| Error::new(DF_ERR_STORE, format!("store {dir}: {e}")))?;
                let mut opts = WriterOptions::default();
                if let Some(t) = &tagger {
                    opts = opts.with_tagger(t.clone());
                }
                Some(
                    StoreWriter::open(storage, opts)
                        .map_err(|e| Error::new(DF_ERR_STORE, format!("store {dir}: {e}")))?,
                )
            }
        };
        Ok(DfAnalyzer {
            arrow_out,
            arrow: ArrowQueues::default(),
            tagger,
            store,
            pipe: Pipeline::new(pcfg, L7Observer::new(l7)),
            source: None,
            live: false,
            want,
            queues: Default::default(),
            callback: None,
            user_data: std::ptr::null_mut(),
            poisoned: false,
            records: [0; KINDS],
            source_packets: 0,
            truncated_at: None,
        })
    }

    /// Moves the pipeline's new rows into the queues, then to the callback if one is set.
    fn collect(&mut self) -> Result<i32, Error> {
        for q in &mut self.queues {
            q.compact();
        }
        let snap = self.tagger.as_ref().map(|t| t.snapshot());
        let rows = self.pipe.table_mut().observer_mut().drain_rows();
        if self.want[1] {
            self.records[1] += rows.len() as u64;
            self.output(1, rows, snap.as_deref(), |q| &mut q.l7)?;
        }
        let flows = self.pipe.drain_flows();
        if self.want[0] {
            self.records[0] += flows.len() as u64;
            self.output(0, flows, snap.as_deref(), |q| &mut q.l4)?;
        }
        let metrics = self.pipe.drain_metrics();
        if self.want[2] {
            self.records[2] += metrics.len() as u64;
            self.output(2, metrics, snap.as_deref(), |q| &mut q.network)?;
        }
        self.deliver()
    }

    /// Hands new rows of one kind to the store writer and to the JSON or Arrow queue.
    fn output<R: Storable + serde::Serialize + Clone>(
        &mut self,
        kind: usize,
        rows: Vec<R>,
        snap: Option<&deepflow_tagging::Snapshot>,
        arrow_queue: fn(&mut ArrowQueues) -> &mut Vec<TaggedRow<R>>,
    ) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        if let Some(w) = &mut self.store {
            for r in &rows {
                w.append(r.clone()).map_err(|e| Error::new(DF_ERR_STORE, format!("store: {e}")))?;
            }
        }
        let tagged = rows.into_iter().map(|row| {
            let (tags_0, tags_1) = snap.map(|s| row.tag(s, None)).unwrap_or_default();
            TaggedRow { row, tags_0, tags_1 }
        });
        if self.arrow_out {
            arrow_queue(&mut self.arrow).extend(tagged);
        } else if let Some(q) = self.queues.get_mut(kind) {
            if snap.is_some() {
                tagged.for_each(|t| q.push(&t));
            } else {
                tagged.for_each(|t| q.push(&t.row));
            }
        }
        Ok(())
    }

    fn deliver(&mut self) -> Result<i32, Error> {
        let Some(cb) = self.callback else { return Ok(DF_OK) };
        for kind in 0..KINDS {
            while let Some((off, len)) = self.queues[kind].next() {
                let ptr = self.queues[kind].buf.as_ptr().wrapping_add(off).cast::<c_char>();
                // SAFETY: `ptr` points at `len` bytes followed by a NUL inside the queue's
                // buffer, which is not touched while the callback runs; the callback is a C
                // function pointer the caller registered with this user_data.
                let rc = unsafe { cb(self.user_data, kind as i32, ptr, len) };
                if rc != 0 {
                    // Undelivered: put the record back.
                    self.queues[kind].pos = off;
                    self.queues[kind].count += 1;
                    return Err(Error::new(DF_ERR_CALLBACK, format!("record callback returned {rc}")));
                }
            }
            self.queues[kind].compact();
        }
        Ok(DF_OK)
    }

    /// Processes up to `max` packets of the attached source.
    fn poll(&mut self, max: u64, processed: &mut u64) -> Result<i32, Error> {
        let Some(mut src) = self.source.take() else {
            return Err(Error::new(
                DF_ERR_STATE,
                "no packet source attached (df_analyzer_open_file / df_analyzer_open_live)",
            ));
        };
        let mut n = 0u64;
        let mut end = false;
        let mut err = None;
        while n < max {
            match src.next_packet() {
                Ok(Next::Packet(p)) => {
                    self.pipe.process_raw(&p);
                    n += 1;
                }
                Ok(Next::Idle) => {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    self.pipe.idle(now.as_micros() as u64);
                    break;
                }
                Ok(Next::End) => {
                    end = true;
                    break;
                }
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
            if n.is_multiple_of(4096) {
                // Keep queues from growing with the whole file.
                self.collect_quiet();
            }
        }
        let stats = src.stats();
        self.truncated_at = stats.truncated_at;
        self.source_packets = stats.packets;
        *processed = n;
        if end || err.is_some() {
            self.live = false;
            if end {
                self.pipe.finish();
            }
        } else {
            self.source = Some(src);
        }
        let delivered = self.collect();
        if let Some(e) = err {
            return Err(e.into());
        }
        delivered?;
        if end {
            self.flush_store()?;
        }
        Ok(if end { DF_END } else { DF_OK })
    }

    /// Moves rows into the queues without calling the callback (mid-batch).
    fn collect_quiet(&mut self) {
        let cb = self.callback.take();
        let _ = self.collect();
        self.callback = cb;
    }

    /// Flushes the store writer, if any.
    fn flush_store(&mut self) -> Result<(), Error> {
        if let Some(w) = &mut self.store {
            w.flush().map_err(|e| Error::new(DF_ERR_STORE, format!("store: {e}")))?;
        }
        Ok(())
    }

    fn stats_json(&self) -> serde_json::Value {
        let s = self.pipe.stats();
        let fs = self.pipe.flow_stats();
        let l7 = self.pipe.table().observer().engine().counters();
        serde_json::json!({
            "packets": s.packets,
            "bytes": s.bytes,
            "non_ip": s.non_ip,
            "decode_errors": s.decode_errors,
            "fragments": s.fragments,
            "reassembled": s.reassembled,
            "first_timestamp_us": s.first_timestamp_us,
            "last_timestamp_us": s.last_timestamp_us,
            "flows": self.records[0],
            "l7_rows": self.records[1],
            "metrics_rows": self.records[2],
            "flows_evicted": fs.flows_evicted,
            "flows_refused": fs.flows_refused,
            "l7_counters": l7,
            "source_packets": self.source_packets,
            "truncated_at": self.truncated_at,
            "memory_peak": self.pipe.budget().peak(),
            "memory_limit": self.pipe.budget().limit(),
        })
    }
}

fn bytes_out(out: *mut DfBytes, v: Vec<u8>) {
    let b = if v.is_empty() {
        DfBytes { data: std::ptr::null_mut(), len: 0 }
    } else {
        let boxed = v.into_boxed_slice();
        let len = boxed.len();
        DfBytes { data: Box::into_raw(boxed).cast::<u8>(), len }
    };
    // SAFETY: callers checked `out` is non-NULL; it points at a DfBytes the caller owns.
    unsafe { out.write(b) };
}

/// The library version as a static NUL-terminated string. Owned by the library: never free it.
#[unsafe(no_mangle)]
pub extern "C" fn df_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last failed call on this thread ("" if none). The string is owned by
/// the library and valid until the next failing call on the same thread; copy it to keep it.
/// Never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn df_last_error() -> *const c_char {
    // The pointer stays valid after `with` returns: the CString lives in the thread-local
    // until it is replaced by the next set_error on this thread.
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Creates an analyzer and stores it in `*out` (set to NULL on failure).
///
/// `config_json` (nullable, borrowed for the call) is a JSON object, every field optional:
/// `{"records": ["flows", "l7", "metrics"], "emit": "sessions"|"messages",
///   "max_memory": 268435456 | "256MiB", "no_l7": false, "l7": {deepflow-protocols L7Config}}`.
/// Default: flows and L7 sessions, 256 MiB.
///
/// Ownership: the caller owns the analyzer and must release it with [`df_analyzer_free`].
/// Errors: `DF_ERR_NULL` (out is NULL), `DF_ERR_ARG` (bad JSON or value).
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_new(config_json: *const c_char, out: *mut *mut DfAnalyzer) -> i32 {
    guard("df_analyzer_new", || {
        out_ptr(out, "out")?;
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe { out.write(std::ptr::null_mut()) };
        let cfg = match opt_str_arg(config_json, "config_json")? {
            None => Config::default(),
            Some(s) if s.trim().is_empty() => Config::default(),
            Some(s) => serde_json::from_str(s).map_err(|e| Error::new(DF_ERR_ARG, format!("config: {e}")))?,
        };
        let a = Box::new(DfAnalyzer::new(cfg)?);
        // SAFETY: as above.
        unsafe { out.write(Box::into_raw(a)) };
        Ok(DF_OK)
    })
}

/// Frees an analyzer and everything it owns (its source, queued records, and the record
/// pointers handed out by [`df_analyzer_next_record`]). NULL is a no-op. Never fails.
///
/// # Safety
/// `a` is NULL or a pointer from [`df_analyzer_new`] not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_free(a: *mut DfAnalyzer) {
    if a.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract, `a` came from Box::into_raw in df_analyzer_new and is freed
        // once.
        let mut an = unsafe { Box::from_raw(a) };
        // Rows still buffered for the store are written (errors cannot be reported here: call
        // df_analyzer_finish first to see them).
        let _ = an.flush_store();
        drop(an);
    }));
}

/// Attaches a pcap or pcapng file as the packet source (replacing any source attached
/// before). Packets are read by [`df_analyzer_poll`] / [`df_analyzer_run`].
/// Errors: `DF_ERR_NULL`, `DF_ERR_ARG` (path not UTF-8), `DF_ERR_OPEN` (missing, permissions),
/// `DF_ERR_FORMAT` (not a capture), `DF_ERR_IO`.
///
/// # Safety
/// `a` is NULL or a live analyzer; `path` is NULL or a NUL-terminated string (borrowed for the
/// call).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_open_file(a: *mut DfAnalyzer, path: *const c_char) -> i32 {
    with_analyzer("df_analyzer_open_file", a, |an| {
        let path = str_arg(path, "path")?;
        an.source = Some(source::open_file(Path::new(path))?);
        an.live = false;
        Ok(DF_OK)
    })
}

/// Attaches a live capture on `interface` (e.g. "lo", "eth0", "any") with an optional BPF
/// `filter` (nullable, tcpdump syntax) as the packet source. [`df_analyzer_poll`] then waits at
/// most `timeout_ms` (≤ 0: 100 ms) for packets. Needs capture permission (root or
/// CAP_NET_RAW). Errors: `DF_ERR_NULL`, `DF_ERR_ARG`, `DF_ERR_LIVE` (libpcap's message),
/// `DF_ERR_UNSUPPORTED` (built without the `live` feature).
///
/// # Safety
/// `a` is NULL or a live analyzer; the strings are NULL or NUL-terminated (borrowed for the call).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_open_live(
    a: *mut DfAnalyzer,
    interface: *const c_char,
    filter: *const c_char,
    timeout_ms: i32,
) -> i32 {
    with_analyzer("df_analyzer_open_live", a, |an| {
        let interface = str_arg(interface, "interface")?;
        let filter = opt_str_arg(filter, "filter")?;
        open_live(an, interface, filter, timeout_ms)
    })
}

#[cfg(feature = "live")]
fn open_live(an: &mut DfAnalyzer, interface: &str, filter: Option<&str>, timeout_ms: i32) -> Result<i32, Error> {
    use deepflow_capture::source::live::{LiveConfig, LiveSource};
    let cfg = LiveConfig {
        interface: interface.to_string(),
        filter: filter.map(str::to_string),
        timeout_ms: if timeout_ms > 0 { timeout_ms } else { 100 },
        ..LiveConfig::default()
    };
    an.source = Some(Box::new(LiveSource::open(cfg)?));
    an.live = true;
    Ok(DF_OK)
}

#[cfg(not(feature = "live"))]
fn open_live(_: &mut DfAnalyzer, _: &str, _: Option<&str>, _: i32) -> Result<i32, Error> {
    Err(Error::new(DF_ERR_UNSUPPORTED, "this build has no live capture (feature `live`)"))
}

/// Reads and analyzes up to `max_packets` packets of the attached source; `*packets` (nullable)
/// receives how many were processed. Returns `DF_OK` when more may follow (live capture also
/// returns after a read timeout with fewer packets, advancing flow timers by the wall clock),
/// `DF_END` when the file ended: the source is then detached and every open flow is flushed
/// (as by [`df_analyzer_finish`]). New records are queued / passed to the callback.
/// Errors: `DF_ERR_STATE` (no source), `DF_ERR_FORMAT`/`DF_ERR_IO`/`DF_ERR_LIVE` (records of
/// the packets read before the error are kept; the source is detached), `DF_ERR_CALLBACK`.
///
/// # Safety
/// `a` is NULL or a live analyzer; `packets` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_poll(a: *mut DfAnalyzer, max_packets: u64, packets: *mut u64) -> i32 {
    with_analyzer("df_analyzer_poll", a, |an| {
        let mut n = 0;
        let r = an.poll(max_packets, &mut n);
        if !packets.is_null() {
            // SAFETY: non-NULL, writable per the contract.
            unsafe { packets.write(n) };
        }
        r
    })
}

/// Analyzes the attached file to its end: [`df_analyzer_poll`] until `DF_END`, returning
/// `DF_OK` when the file was read completely. Do not use on a live source (it never ends).
///
/// # Safety
/// `a` is NULL or a live analyzer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_run(a: *mut DfAnalyzer) -> i32 {
    with_analyzer("df_analyzer_run", a, |an| {
        if an.live {
            return Err(Error::new(DF_ERR_STATE, "the attached source is a live capture; use df_analyzer_poll"));
        }
        loop {
            let mut n = 0;
            if an.poll(1 << 16, &mut n)? == DF_END {
                return Ok(DF_OK);
            }
        }
    })
}

/// Analyzes one captured frame given by the caller: `link_type` is its pcap LINKTYPE/DLT
/// (1 Ethernet, 101 raw IP, 113 Linux SLL, 276 SLL2, 0 NULL, 108 LOOP, 228/229 raw IPv4/6),
/// `data` its `len` captured bytes from the link-layer header (borrowed for the call; NULL
/// allowed when `len` is 0), `timestamp_us` the capture time in microseconds since the epoch,
/// `wire_len` its length on the wire (0: `len`). Timestamps should not go backwards.
/// Errors: `DF_ERR_NULL`, `DF_ERR_ARG` (unsupported link type), `DF_ERR_CALLBACK`.
/// Undecodable frames are counted in the statistics, not errors.
///
/// # Safety
/// `a` is NULL or a live analyzer; `data` is NULL or points at `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_feed(
    a: *mut DfAnalyzer,
    link_type: u32,
    data: *const u8,
    len: usize,
    timestamp_us: u64,
    wire_len: u32,
) -> i32 {
    with_analyzer("df_analyzer_feed", a, |an| {
        let link = LinkType::from_dlt(link_type)
            .ok_or_else(|| Error::new(DF_ERR_ARG, format!("unsupported link type {link_type}")))?;
        let bytes: &[u8] = if len == 0 {
            &[]
        } else if data.is_null() {
            return Err(Error::new(DF_ERR_NULL, "data is NULL"));
        } else {
            // SAFETY: non-NULL, and the caller guarantees `len` readable bytes for the call.
            unsafe { std::slice::from_raw_parts(data, len) }
        };
        let wire = if wire_len == 0 { u32::try_from(len).unwrap_or(u32::MAX) } else { wire_len };
        an.pipe.process_frame(link, bytes, timestamp_us, wire);
        an.collect()
    })
}

/// Advances time to `now_us` without a packet: expires idle flows and closes metric windows.
///
/// # Safety
/// `a` is NULL or a live analyzer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_idle(a: *mut DfAnalyzer, now_us: u64) -> i32 {
    with_analyzer("df_analyzer_idle", a, |an| {
        an.pipe.idle(now_us);
        an.collect()
    })
}

/// Ends the input: reports every open flow and pending L7 request and closes every metrics
/// window. Detaches the source. The analyzer stays usable (new packets start new flows).
///
/// # Safety
/// `a` is NULL or a live analyzer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_finish(a: *mut DfAnalyzer) -> i32 {
    with_analyzer("df_analyzer_finish", a, |an| {
        an.source = None;
        an.live = false;
        an.pipe.finish();
        let r = an.collect();
        an.flush_store()?;
        r
    })
}

/// Sets (or, with NULL, clears) the record callback. From then on every call that produces
/// records passes each of them to `callback` with `user_data` (owned by the caller; the library
/// only passes it back) instead of leaving it queued; records already queued are delivered
/// by the next such call.
///
/// # Safety
/// `a` is NULL or a live analyzer; `callback` stays callable with `user_data` while set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_set_callback(
    a: *mut DfAnalyzer,
    callback: DfRecordCallback,
    user_data: *mut c_void,
) -> i32 {
    with_analyzer("df_analyzer_set_callback", a, |an| {
        an.callback = callback;
        an.user_data = user_data;
        Ok(DF_OK)
    })
}

/// Pull API: the next queued record of `kind` (`DF_KIND_*`). On `DF_OK`, `*json` points at a
/// NUL-terminated JSON object of `*len` bytes; the string is owned by the analyzer and valid
/// until the next call on it (copy it to keep it). Returns `DF_END` (with `*json` = NULL,
/// `*len` = 0) when none is queued. `len` is nullable.
///
/// # Safety
/// `a` is NULL or a live analyzer; `json` is NULL or writable; `len` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_next_record(
    a: *mut DfAnalyzer,
    kind: i32,
    json: *mut *const c_char,
    len: *mut usize,
) -> i32 {
    with_analyzer("df_analyzer_next_record", a, |an| {
        out_ptr(json, "json")?;
        let q = kind_queue(an, kind)?;
        let (ptr, n, code) = match q.next() {
            Some((off, n)) => (q.buf.as_ptr().wrapping_add(off).cast::<c_char>(), n, DF_OK),
            None => (std::ptr::null(), 0, DF_END),
        };
        // SAFETY: `json` checked non-NULL, `len` checked below; both writable per the contract.
        unsafe {
            json.write(ptr);
            if !len.is_null() {
                len.write(n);
            }
        }
        Ok(code)
    })
}

fn kind_queue(an: &mut DfAnalyzer, kind: i32) -> Result<&mut Queue, Error> {
    usize::try_from(kind)
        .ok()
        .and_then(|k| an.queues.get_mut(k))
        .ok_or_else(|| Error::new(DF_ERR_ARG, format!("unknown record kind {kind}")))
}

/// Number of queued (undelivered) records of `kind`, or a negative error code.
///
/// # Safety
/// `a` is NULL or a live analyzer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_pending(a: *mut DfAnalyzer, kind: i32) -> i64 {
    let mut n = 0i64;
    let code = with_analyzer("df_analyzer_pending", a, |an| {
        n = if an.arrow_out {
            match kind {
                DF_KIND_FLOW => an.arrow.l4.len(),
                DF_KIND_L7 => an.arrow.l7.len(),
                DF_KIND_METRICS => an.arrow.network.len(),
                _ => return Err(Error::new(DF_ERR_ARG, format!("unknown record kind {kind}"))),
            }
        } else {
            kind_queue(an, kind)?.count
        } as i64;
        Ok(DF_OK)
    });
    if code == DF_OK { n } else { i64::from(code) }
}

/// Bulk pull: moves every queued record of `kind` into `*out` as JSON lines (one object per
/// line, each ending with '\n'). The caller owns `out->data` and must release it with
/// [`df_bytes_free`]; `out->data` is NULL when nothing was queued (still `DF_OK`).
///
/// # Safety
/// `a` is NULL or a live analyzer; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_take_jsonl(a: *mut DfAnalyzer, kind: i32, out: *mut DfBytes) -> i32 {
    with_analyzer("df_analyzer_take_jsonl", a, |an| {
        out_ptr(out, "out")?;
        let v = kind_queue(an, kind)?.take_jsonl();
        bytes_out(out, v);
        Ok(DF_OK)
    })
}

/// The analyzer's counters as a JSON object in `*out` (packets, bytes, non_ip, decode_errors,
/// fragments, flows, l7_rows, metrics_rows, truncated_at, memory_peak, ...). The caller owns
/// `out->data` and releases it with [`df_bytes_free`].
///
/// # Safety
/// `a` is NULL or a live analyzer; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_stats_json(a: *mut DfAnalyzer, out: *mut DfBytes) -> i32 {
    with_analyzer("df_analyzer_stats_json", a, |an| {
        out_ptr(out, "out")?;
        let v = serde_json::to_vec(&an.stats_json()).map_err(|e| Error::new(DF_ERR_ARG, e.to_string()))?;
        bytes_out(out, v);
        Ok(DF_OK)
    })
}

/// Releases bytes returned in a [`DfBytes`] by this library. NULL `data` is a no-op.
///
/// # Safety
/// `b` is a `DfBytes` exactly as returned by this library, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_bytes_free(b: DfBytes) {
    if b.data.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `data`/`len` come from Box::<[u8]>::into_raw in bytes_out, freed once.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(b.data, b.len)) });
    }));
}

/// Convenience: analyzes a whole file and passes every record to `callback` (see
/// [`DfRecordCallback`]). `config_json` as in [`df_analyzer_new`] (nullable).
/// Errors: those of [`df_analyzer_new`], [`df_analyzer_open_file`] and [`df_analyzer_run`].
///
/// # Safety
/// Strings are NULL or NUL-terminated; `callback` is callable with `user_data` during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyze_file(
    path: *const c_char,
    config_json: *const c_char,
    callback: DfRecordCallback,
    user_data: *mut c_void,
) -> i32 {
    let mut a: *mut DfAnalyzer = std::ptr::null_mut();
    // SAFETY: arguments forwarded under the same contract; `a` is a local out pointer.
    let mut rc = unsafe { df_analyzer_new(config_json, &mut a) };
    if rc == DF_OK {
        if callback.is_none() {
            set_error("df_analyze_file: callback is NULL");
            rc = DF_ERR_NULL;
        } else {
            // SAFETY: `a` is the live analyzer created above; freed below exactly once.
            unsafe {
                rc = df_analyzer_set_callback(a, callback, user_data);
                if rc == DF_OK {
                    rc = df_analyzer_open_file(a, path);
                }
                if rc == DF_OK {
                    rc = df_analyzer_run(a);
                }
            }
        }
    }
    // SAFETY: `a` is NULL or the analyzer created above.
    unsafe { df_analyzer_free(a) };
    rc
}

/// Builds one Arrow batch of the queued rows of `kind` (emptying that queue).
fn take_batch(an: &mut DfAnalyzer, kind: i32) -> Result<RecordBatch, Error> {
    if !an.arrow_out {
        return Err(Error::new(DF_ERR_STATE, "the analyzer was not created with \"output\": \"arrow\""));
    }
    let r = match kind {
        DF_KIND_FLOW => L4FlowLog::to_batch(&std::mem::take(&mut an.arrow.l4)),
        DF_KIND_L7 => L7FlowLog::to_batch(&std::mem::take(&mut an.arrow.l7)),
        DF_KIND_METRICS => NetworkMetrics::to_batch(&std::mem::take(&mut an.arrow.network)),
        _ => return Err(Error::new(DF_ERR_ARG, format!("unknown record kind {kind}"))),
    };
    r.map_err(|e| Error::new(DF_ERR_ARG, format!("arrow: {e}")))
}

/// Exports a batch as a struct array through the Arrow C Data Interface.
fn export_batch(
    batch: RecordBatch,
    out_array: *mut FFI_ArrowArray,
    out_schema: *mut FFI_ArrowSchema,
) -> Result<(), Error> {
    let (array, schema) = arrow_c::export(batch).map_err(|e| Error::new(DF_ERR_ARG, format!("arrow export: {e}")))?;
    // SAFETY: both checked non-NULL by the callers and writable per the contract; whatever they
    // held is overwritten without being released (documented: pass released/uninitialized
    // structs).
    unsafe {
        out_array.write(array);
        out_schema.write(schema);
    }
    Ok(())
}

/// Arrow pull (analyzer created with `"output": "arrow"`): moves every queued record of `kind`
/// into one record batch, exported through the Arrow C Data Interface as a struct array
/// (`*out_array`) and its schema (`*out_schema`, format "+s", one child per column). The
/// columns are deepflow-store's table schemas: `l4_flow_log` (`DF_KIND_FLOW`), `l7_flow_log`
/// (`DF_KIND_L7`), `network` (`DF_KIND_METRICS`), with the `*_id_0`/`*_id_1` tag columns (0
/// without an inventory). A batch may have 0 rows.
///
/// Ownership: the caller owns both structs afterwards and must call each one's `release`
/// callback once (or hand them to an Arrow implementation that does, e.g. pyarrow's
/// `RecordBatch._import_from_c`, or [`df_arrow_release`]). The structs passed in are
/// overwritten without being released.
/// Errors: `DF_ERR_NULL`, `DF_ERR_ARG` (unknown kind), `DF_ERR_STATE` (output is not arrow).
///
/// # Safety
/// `a` is NULL or a live analyzer; `out_array`/`out_schema` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_take_arrow(
    a: *mut DfAnalyzer,
    kind: i32,
    out_array: *mut FFI_ArrowArray,
    out_schema: *mut FFI_ArrowSchema,
) -> i32 {
    with_analyzer("df_analyzer_take_arrow", a, |an| {
        out_ptr(out_array, "out_array")?;
        out_ptr(out_schema, "out_schema")?;
        let batch = take_batch(an, kind)?;
        export_batch(batch, out_array, out_schema)?;
        Ok(DF_OK)
    })
}

/// Releases an exported array and schema (calls their `release` callbacks if set, and marks
/// them released). Either pointer may be NULL. For C callers that do not use an Arrow library.
///
/// # Safety
/// Each pointer is NULL or points at an Arrow C struct (released or not).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_arrow_release(array: *mut FFI_ArrowArray, schema: *mut FFI_ArrowSchema) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !array.is_null() {
            // SAFETY: non-NULL, points at an ArrowArray per the contract.
            unsafe { arrow_c::release_array(array) };
        }
        if !schema.is_null() {
            // SAFETY: as above for the schema.
            unsafe { arrow_c::release_schema(schema) };
        }
    }));
}

/// Tag lookup (analyzer created with an `"inventory"`): the universal tags of `ip` (IPv4 or
/// IPv6 text) as a JSON object in `*out`: `{"region_id": 1, "region": "cn-east", ...}` for
/// every tag kind (`region`, `az`, `host`, `l3_epc`, `subnet`, `pod_cluster`, `pod_ns`,
/// `pod_node`, `pod_group`, `pod`, `service`, `gprocess`); ids are 0 and names null when
/// unknown. The caller owns `out->data` and releases it with [`df_bytes_free`].
/// Errors: `DF_ERR_NULL`, `DF_ERR_ARG` (not an IP), `DF_ERR_STATE` (no inventory).
///
/// # Safety
/// `a` is NULL or a live analyzer; `ip` is NULL or NUL-terminated; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_lookup_ip(a: *mut DfAnalyzer, ip: *const c_char, out: *mut DfBytes) -> i32 {
    with_analyzer("df_analyzer_lookup_ip", a, |an| {
        out_ptr(out, "out")?;
        let ip_s = str_arg(ip, "ip")?;
        let addr: std::net::IpAddr =
            ip_s.trim().parse().map_err(|_| Error::new(DF_ERR_ARG, format!("{ip_s:?} is not an IP address")))?;
        let tagger = an
            .tagger
            .as_ref()
            .ok_or_else(|| Error::new(DF_ERR_STATE, "the analyzer has no \"inventory\" to look IPs up in"))?;
        let tags = tagger.snapshot().lookup_ip(None, addr);
        let mut m = serde_json::Map::new();
        for kind in ResourceKind::ALL {
            if matches!(kind, ResourceKind::LabelKey | ResourceKind::LabelValue) {
                continue;
            }
            let id = tags.get(kind);
            m.insert(format!("{}_id", kind.name()), id.into());
            let name = if id == 0 { None } else { tagger.name(kind, id) };
            m.insert(kind.name().to_string(), name.map_or(serde_json::Value::Null, serde_json::Value::String));
        }
        let v = serde_json::to_vec(&m).map_err(|e| Error::new(DF_ERR_ARG, e.to_string()))?;
        bytes_out(out, v);
        Ok(DF_OK)
    })
}

/// Writes the rows buffered for the `"store"` directory to Parquet now (they are also written
/// when a file source ends, by [`df_analyzer_finish`] and by [`df_analyzer_free`]).
/// Errors: `DF_ERR_STATE` (no store), `DF_ERR_STORE`.
///
/// # Safety
/// `a` is NULL or a live analyzer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_analyzer_flush_store(a: *mut DfAnalyzer) -> i32 {
    with_analyzer("df_analyzer_flush_store", a, |an| {
        if an.store.is_none() {
            return Err(Error::new(DF_ERR_STATE, "the analyzer has no \"store\" directory"));
        }
        an.flush_store()?;
        Ok(DF_OK)
    })
}

/// Runs SQL (DataFusion, deepflow-store's tables `l4_flow_log`, `l7_flow_log`, `network`,
/// `application` and their name views) over the Parquet store in directory `dir` (as written
/// with the `"store"` setting) and exports the whole result as one Arrow batch (struct array
/// + schema, as in [`df_analyzer_take_arrow`]; the caller owns and releases both).
/// Errors: `DF_ERR_NULL`, `DF_ERR_ARG` (not UTF-8), `DF_ERR_STORE` (no such store, SQL error).
///
/// # Safety
/// Strings are NULL or NUL-terminated (borrowed for the call); the out pointers are NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn df_store_query(
    dir: *const c_char,
    sql: *const c_char,
    out_array: *mut FFI_ArrowArray,
    out_schema: *mut FFI_ArrowSchema,
) -> i32 {
    guard("df_store_query", || {
        let dir = str_arg(dir, "dir")?;
        let sql = str_arg(sql, "sql")?;
        out_ptr(out_array, "out_array")?;
        out_ptr(out_schema, "out_schema")?;
        if !Path::new(dir).is_dir() {
            return Err(Error::new(DF_ERR_STORE, format!("{dir} is not a directory")));
        }
        let engine = QueryEngine::open_local(dir).map_err(|e| Error::new(DF_ERR_STORE, format!("{dir}: {e}")))?;
        let batches = engine.query(sql).map_err(|e| Error::new(DF_ERR_STORE, e.to_string()))?;
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => std::sync::Arc::new(deepflow_store::arrow::datatypes::Schema::empty()),
        };
        let batch = deepflow_store::arrow::compute::concat_batches(&schema, &batches)
            .map_err(|e| Error::new(DF_ERR_STORE, format!("arrow: {e}")))?;
        export_batch(batch, out_array, out_schema)?;
        Ok(DF_OK)
    })
}
