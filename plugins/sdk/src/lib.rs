//! Guest SDK for deepflow-rs WASM plugins, ABI version 1 (see `README.md` for the wire-level
//! contract the host implements).
//!
//! A plugin is a `cdylib` built for `wasm32-unknown-unknown`. It implements [`Parser`] (a
//! protocol the agent does not know) or [`Hook`] (extra fields on messages the agent parsed)
//! and exports it with [`export_parser!`] or [`export_hook!`]:
//!
//! ```ignore
//! struct Echo;
//! impl deepflow_plugin_sdk::Parser for Echo { /* info, probe, parse */ }
//! deepflow_plugin_sdk::export_parser!(Echo);
//! ```
//!
//! Everything the host and the guest exchange is a flat list of length-prefixed key/value
//! records ([`Records`], [`Writer`]).
#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

/// The ABI version this SDK implements (`df_abi_version()`).
pub const ABI_VERSION: i32 = 1;

/// `df_parse` result codes (negative results carry `-(code | hint << 8)`).
pub mod code {
    /// Need more bytes; the hint (bits 8..) is how many more, 0 = unknown.
    pub const NEED_MORE: i64 = 1;
    /// The bytes are not valid for this protocol.
    pub const MALFORMED: i64 = 2;
    /// A value the plugin does not support.
    pub const UNSUPPORTED: i64 = 3;
}

/// Direction of the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to server (0).
    ClientToServer,
    /// Server to client (1).
    ServerToClient,
}

impl Dir {
    /// From the ABI value (0 or 1).
    pub fn from_abi(d: i32) -> Dir {
        if d == 0 { Dir::ClientToServer } else { Dir::ServerToClient }
    }
}

/// Answer of [`Parser::probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Looks like this protocol (ABI 1).
    Match,
    /// Too few bytes to decide (ABI 2).
    NeedMore,
    /// Not this protocol (ABI 0).
    NotThis,
}

/// Role of a parsed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Waits for a response.
    Request,
    /// Answers a request.
    Response,
    /// Stands alone.
    OneWay,
}

/// `response_status` values a plugin may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `ok`
    Ok,
    /// `client_error`
    ClientError,
    /// `server_error`
    ServerError,
    /// `unknown`
    Unknown,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::ClientError => "client_error",
            Status::ServerError => "server_error",
            Status::Unknown => "unknown",
        }
    }
}

/// One parsed message, as returned by [`Parser::parse`]. Every field is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request, response or one-way.
    pub kind: Kind,
    /// `version` column.
    pub version: Option<String>,
    /// `request_type` column.
    pub request_type: Option<String>,
    /// `request_domain` column.
    pub request_domain: Option<String>,
    /// `request_resource` column.
    pub request_resource: Option<String>,
    /// `endpoint` column.
    pub endpoint: Option<String>,
    /// `request_id` column, also the pairing key when `pairing` is `id`.
    pub request_id: Option<u32>,
    /// `response_code` column.
    pub response_code: Option<i32>,
    /// `response_status` column.
    pub response_status: Option<Status>,
    /// `response_exception` column.
    pub response_exception: Option<String>,
    /// `response_result` column.
    pub response_result: Option<String>,
    /// `request_length` / `response_length`.
    pub length: Option<u64>,
    /// `trace_id` column.
    pub trace_id: Option<String>,
    /// `span_id` column.
    pub span_id: Option<String>,
    /// `attribute_names` / `attribute_values`.
    pub attributes: Vec<(String, String)>,
}

impl Message {
    /// An empty message of this kind.
    pub fn new(kind: Kind) -> Self {
        Message {
            kind,
            version: None,
            request_type: None,
            request_domain: None,
            request_resource: None,
            endpoint: None,
            request_id: None,
            response_code: None,
            response_status: None,
            response_exception: None,
            response_result: None,
            length: None,
            trace_id: None,
            span_id: None,
            attributes: Vec::new(),
        }
    }

    /// Encodes the message as records.
    pub fn write(&self, w: &mut Writer) {
        w.put(
            "kind",
            match self.kind {
                Kind::Request => "request",
                Kind::Response => "response",
                Kind::OneWay => "oneway",
            },
        );
        let strs = [
            ("version", &self.version),
            ("request_type", &self.request_type),
            ("request_domain", &self.request_domain),
            ("request_resource", &self.request_resource),
            ("endpoint", &self.endpoint),
            ("response_exception", &self.response_exception),
            ("response_result", &self.response_result),
            ("trace_id", &self.trace_id),
            ("span_id", &self.span_id),
        ];
        for (k, v) in strs {
            if let Some(v) = v {
                w.put(k, v);
            }
        }
        if let Some(v) = self.request_id {
            w.put_num("request_id", v as i64);
        }
        if let Some(v) = self.response_code {
            w.put_num("response_code", v as i64);
        }
        if let Some(v) = self.length {
            w.put_num("length", v as i64);
        }
        if let Some(s) = self.response_status {
            w.put("response_status", s.name());
        }
        for (n, v) in &self.attributes {
            w.put_attr(n, v);
        }
    }
}

/// Result of [`Parser::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A message that ended after this many bytes.
    Message(Message, usize),
    /// Drop this many bytes without a message.
    Skip(usize),
    /// Call again with at least this many more bytes (0 = unknown).
    NeedMore(usize),
    /// Not valid for this protocol.
    Malformed,
}

/// What a plugin tells the host when it is loaded (`df_info`).
#[derive(Debug, Clone, Copy)]
pub struct Info {
    /// Plugin name (`l7_protocol_str` attribute of parser rows, log and counter label).
    pub name: &'static str,
    /// `tcp`, `udp` or `both` (parsers).
    pub transport: &'static str,
    /// Comma-separated usual server ports, probed first (parsers), e.g. `"7878"`.
    pub ports: &'static str,
    /// `id` (responses carry their request's `request_id`) or `order` (parsers).
    pub pairing: &'static str,
    /// Comma-separated protocol names whose messages the hook receives (hooks), e.g. `"http,grpc"`.
    pub subscribe: &'static str,
}

impl Info {
    /// Info with only a name (TCP, no ports, in-order pairing, no subscription).
    pub const fn named(name: &'static str) -> Self {
        Info { name, transport: "tcp", ports: "", pairing: "order", subscribe: "" }
    }

    fn write(&self, w: &mut Writer) {
        w.put("name", self.name);
        w.put("transport", self.transport);
        w.put("ports", self.ports);
        w.put("pairing", self.pairing);
        w.put("subscribe", self.subscribe);
    }
}

/// A protocol parser. Calls are stateless: the host buffers partial messages and calls
/// `parse` again with more bytes.
pub trait Parser {
    /// Name, transport, ports, pairing.
    fn info() -> Info;
    /// Cheap check of the first bytes of a direction.
    fn probe(data: &[u8], dir: Dir) -> Probe;
    /// Parses the unconsumed bytes of one direction.
    fn parse(data: &[u8], dir: Dir) -> Parse;
}

/// Changes a hook makes to a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Attributes to append.
    pub attributes: Vec<(String, String)>,
    /// New `endpoint`.
    pub endpoint: Option<String>,
    /// New `trace_id`.
    pub trace_id: Option<String>,
    /// New `span_id`.
    pub span_id: Option<String>,
    /// New `response_exception`.
    pub response_exception: Option<String>,
    /// New `response_result`.
    pub response_result: Option<String>,
}

impl Changes {
    /// True if nothing changes.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }

    /// Encodes the changes as records.
    pub fn write(&self, w: &mut Writer) {
        for (k, v) in [
            ("endpoint", &self.endpoint),
            ("trace_id", &self.trace_id),
            ("span_id", &self.span_id),
            ("response_exception", &self.response_exception),
            ("response_result", &self.response_result),
        ] {
            if let Some(v) = v {
                w.put(k, v);
            }
        }
        for (n, v) in &self.attributes {
            w.put_attr(n, v);
        }
    }
}

/// A message hook: sees every message of the subscribed protocols.
pub trait Hook {
    /// Name and `subscribe` list.
    fn info() -> Info;
    /// Returns the changes to make (an empty [`Changes`] for none).
    fn on_message(msg: &View<'_>) -> Changes;
}

/// Read access to the records of a message handed to a hook.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    raw: &'a [u8],
}

impl<'a> View<'a> {
    /// A view over encoded records.
    pub fn new(raw: &'a [u8]) -> Self {
        View { raw }
    }

    /// All records.
    pub fn records(&self) -> Records<'a> {
        Records::new(self.raw)
    }

    /// The first value of `key` (e.g. `protocol`, `kind`, `request_resource`, `body`).
    pub fn get(&self, key: &str) -> Option<&'a [u8]> {
        self.records().find(|(k, _)| *k == key.as_bytes()).map(|(_, v)| v)
    }

    /// The first value of `key` as UTF-8.
    pub fn get_str(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// The value of HTTP header `name` (ASCII case-insensitive; HTTP/1 only).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.records()
            .find(|(k, _)| k.strip_prefix(b"header:").is_some_and(|h| h.eq_ignore_ascii_case(name.as_bytes())))
            .and_then(|(_, v)| core::str::from_utf8(v).ok())
    }

    /// The body excerpt (HTTP/1) or raw message excerpt (`payload`, other protocols).
    pub fn body(&self) -> &'a [u8] {
        self.get("body").or_else(|| self.get("payload")).unwrap_or_default()
    }
}

/// Iterator over `[u32 LE key len][key][u32 LE value len][value]` records; stops at the
/// first truncated record.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    /// Records in `raw`.
    pub fn new(raw: &'a [u8]) -> Self {
        Records { rest: raw }
    }

    fn take(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            self.rest = &[];
            return None;
        }
        let (v, rest) = rest.split_at(len);
        self.rest = rest;
        Some(v)
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let k = self.take()?;
        let v = self.take()?;
        Some((k, v))
    }
}

/// Builds records to hand to the host with [`Writer::emit`].
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer::default()
    }

    /// Appends one record.
    pub fn put(&mut self, key: &str, value: impl AsRef<[u8]>) {
        let v = value.as_ref();
        self.buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(v);
    }

    /// Appends a number as decimal text.
    pub fn put_num(&mut self, key: &str, v: i64) {
        let mut tmp = [0u8; 24];
        self.put(key, fmt_i64(v, &mut tmp));
    }

    /// Appends an attribute (`attr:NAME` = value).
    pub fn put_attr(&mut self, name: &str, value: &str) {
        let mut k = String::with_capacity(5 + name.len());
        k.push_str("attr:");
        k.push_str(name);
        self.put(&k, value);
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Hands the records to the host (`df.emit` import).
    pub fn emit(&self) {
        host::emit(&self.buf);
    }
}

fn fmt_i64(v: i64, buf: &mut [u8; 24]) -> &[u8] {
    let neg = v < 0;
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// Host imports (module `df`).
pub mod host {
    #[cfg(target_family = "wasm")]
    #[link(wasm_import_module = "df")]
    unsafe extern "C" {
        #[link_name = "emit"]
        fn df_emit(ptr: *const u8, len: usize);
        #[link_name = "log"]
        fn df_log(ptr: *const u8, len: usize);
    }

    /// Hands records to the host (output of the current call).
    pub fn emit(bytes: &[u8]) {
        #[cfg(target_family = "wasm")]
        // SAFETY: the host only reads `len` bytes at `ptr` in this instance's memory.
        unsafe {
            df_emit(bytes.as_ptr(), bytes.len())
        };
        #[cfg(not(target_family = "wasm"))]
        let _ = bytes;
    }

    /// Writes a line to the host's log (rate-limited by the host).
    pub fn log(msg: &str) {
        #[cfg(target_family = "wasm")]
        // SAFETY: as for `emit`.
        unsafe {
            df_log(msg.as_ptr(), msg.len())
        };
        #[cfg(not(target_family = "wasm"))]
        let _ = msg;
    }
}

/// Implementation details of the export macros.
#[doc(hidden)]
pub mod rt {
    use super::*;
    use core::cell::UnsafeCell;

    struct Input(UnsafeCell<Vec<u8>>);
    // SAFETY: wasm32-unknown-unknown plugins are single-threaded.
    unsafe impl Sync for Input {}
    static INPUT: Input = Input(UnsafeCell::new(Vec::new()));

    /// `df_alloc`: a buffer of at least `len` bytes the host writes its input into; valid
    /// until the next `df_alloc`.
    pub fn alloc(len: usize) -> *mut u8 {
        // SAFETY: single-threaded, and no reference to the buffer outlives a host call.
        let v = unsafe { &mut *INPUT.0.get() };
        if v.len() < len {
            v.resize(len, 0);
        }
        v.as_mut_ptr()
    }

    /// The input the host wrote at `ptr`.
    ///
    /// # Safety
    /// `ptr..ptr+len` must be inside the buffer returned by `alloc`.
    pub unsafe fn input<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
        if len == 0 {
            return &[];
        }
        // SAFETY: guaranteed by the caller (the host wrote there).
        unsafe { core::slice::from_raw_parts(ptr, len) }
    }

    pub fn info<F: FnOnce() -> Info>(f: F) {
        let mut w = Writer::new();
        f().write(&mut w);
        w.emit();
    }

    pub fn probe_result(p: Probe) -> i32 {
        match p {
            Probe::NotThis => 0,
            Probe::Match => 1,
            Probe::NeedMore => 2,
        }
    }

    pub fn parse_result(p: Parse) -> i64 {
        match p {
            Parse::Message(m, n) => {
                let mut w = Writer::new();
                m.write(&mut w);
                w.emit();
                n as i64
            }
            Parse::Skip(n) => n as i64,
            Parse::NeedMore(h) => -(code::NEED_MORE | ((h as i64) << 8)),
            Parse::Malformed => -code::MALFORMED,
        }
    }

    pub fn hook_result(c: Changes) -> i32 {
        if c.is_empty() {
            return 0;
        }
        let mut w = Writer::new();
        c.write(&mut w);
        w.emit();
        1
    }
}

/// Exports the ABI functions shared by parsers and hooks.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_common {
    ($info:expr) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn df_abi_version() -> i32 {
            $crate::ABI_VERSION
        }
        #[unsafe(no_mangle)]
        pub extern "C" fn df_alloc(len: usize) -> *mut u8 {
            $crate::rt::alloc(len)
        }
        #[unsafe(no_mangle)]
        pub extern "C" fn df_info() {
            $crate::rt::info($info)
        }
    };
}

/// Exports `df_abi_version`, `df_alloc`, `df_info`, `df_probe` and `df_parse` for a
/// [`Parser`].
#[macro_export]
macro_rules! export_parser {
    ($t:ty) => {
        $crate::__export_common!(<$t as $crate::Parser>::info);
        #[unsafe(no_mangle)]
        pub extern "C" fn df_probe(ptr: *const u8, len: usize, dir: i32) -> i32 {
            // SAFETY: the host wrote `len` bytes at `ptr` (a df_alloc buffer).
            let data = unsafe { $crate::rt::input(ptr, len) };
            $crate::rt::probe_result(<$t as $crate::Parser>::probe(data, $crate::Dir::from_abi(dir)))
        }
        #[unsafe(no_mangle)]
        pub extern "C" fn df_parse(ptr: *const u8, len: usize, dir: i32) -> i64 {
            // SAFETY: as above.
            let data = unsafe { $crate::rt::input(ptr, len) };
            $crate::rt::parse_result(<$t as $crate::Parser>::parse(data, $crate::Dir::from_abi(dir)))
        }
    };
}

/// Exports `df_abi_version`, `df_alloc`, `df_info` and `df_on_message` for a [`Hook`].
#[macro_export]
macro_rules! export_hook {
    ($t:ty) => {
        $crate::__export_common!(<$t as $crate::Hook>::info);
        #[unsafe(no_mangle)]
        pub extern "C" fn df_on_message(ptr: *const u8, len: usize) -> i32 {
            // SAFETY: the host wrote `len` bytes at `ptr` (a df_alloc buffer).
            let data = unsafe { $crate::rt::input(ptr, len) };
            $crate::rt::hook_result(<$t as $crate::Hook>::on_message(&$crate::View::new(data)))
        }
    };
}
