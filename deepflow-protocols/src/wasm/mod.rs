//! WASM plugins (feature `wasm`): protocol parsers and message hooks written in any language
//! that compiles to `wasm32`, run under wasmtime with a fuel budget per call and a memory cap
//! per instance.
//!
//! The guest side (ABI v1, record encoding, export macros) is the `deepflow-plugin-sdk` crate
//! in `plugins/sdk` of the repository; its `README.md` is the ABI reference. In short, a
//! plugin exports `memory`, `df_abi_version() -> i32` (must be [`ABI_VERSION`]),
//! `df_alloc(len) -> ptr`, `df_info()` and either
//!
//! * `df_probe(ptr, len, dir) -> i32` and `df_parse(ptr, len, dir) -> i64` — a **protocol
//!   parser**, registered as an [`L7Parser`](crate::L7Parser) with `l7_protocol = custom`
//!   and the attribute `l7_protocol_str` = the plugin's name; or
//! * `df_on_message(ptr, len) -> i32` — a **message hook** that sees every message of the
//!   protocols it subscribes to (fields, HTTP/1 headers and a body excerpt) and adds
//!   attributes or overrides `endpoint`, `trace_id`, `span_id`, `response_exception`,
//!   `response_result`.
//!
//! Plugins are loaded from files ([`WasmPlugin::from_file`]) or bytes pushed by config
//! ([`WasmPlugin::from_bytes`], which also accepts WAT text). Loading compiles the module,
//! instantiates it once and checks the ABI version and exports: a malformed module, a wrong
//! ABI version or a missing export is a [`WasmError`] and nothing is registered.
//!
//! At run time a trap, an exhausted fuel budget ([`WasmLimits::fuel_per_call`]), a memory
//! grow past [`WasmLimits::max_memory_bytes`] or invalid output **disables the plugin**: it is
//! counted in its [`PluginStatsSnapshot`], printed once on stderr, the parser then answers
//! "not this protocol" and the hook lets messages through unchanged. The engine goes on with
//! every other parser and flow.
//!
//! ```no_run
//! use deepflow_protocols::{L7Config, L7Engine, wasm::{WasmLimits, WasmPlugin, install_all}};
//!
//! let plugins = vec![
//!     WasmPlugin::from_file("custom_proto.wasm".as_ref(), WasmLimits::default()).unwrap(),
//!     WasmPlugin::from_file("http_bizid.wasm".as_ref(), WasmLimits::default()).unwrap(),
//! ];
//! let mut engine = L7Engine::new(L7Config::default());
//! install_all(&mut engine, &plugins).unwrap(); // parsers first, then hooks
//! // ... feed the engine; later:
//! for p in &plugins {
//!     println!("{:?}", p.stats());
//! }
//! ```
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

mod guest;
mod hook;
mod parser;
mod records;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use deepflow_core::record::L7Protocol;

use crate::L7Engine;
use crate::l7::Pairing;

use guest::Guest;

/// The plugin ABI version this host implements.
pub const ABI_VERSION: i32 = 1;

/// Why a plugin could not be loaded or installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WasmError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Io {
        /// The plugin file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly module (nor WAT text): rebuild the plugin.
    #[error("not a valid WebAssembly module: {0}")]
    Compile(String),
    /// The plugin was built for another ABI: rebuild it with a matching `deepflow-plugin-sdk`.
    #[error(
        "plugin ABI version {found}, this host implements version {expected}; rebuild the plugin with a matching SDK"
    )]
    AbiVersion {
        /// `df_abi_version()` of the plugin.
        found: i32,
        /// [`ABI_VERSION`].
        expected: i32,
    },
    /// A required export is missing or has the wrong signature.
    #[error("plugin does not export {0}")]
    MissingExport(&'static str),
    /// Instantiation failed (unknown imports, initial memory above the limit, a trap in the
    /// start function, ...).
    #[error("cannot instantiate plugin: {0}")]
    Instantiate(String),
    /// `df_info()` gave unusable values.
    #[error("bad plugin info: {0}")]
    Info(String),
    /// The wasmtime engine could not be created.
    #[error("wasmtime engine: {0}")]
    Engine(String),
}

/// Limits applied to every plugin instance.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WasmLimits {
    /// Fuel (≈ wasm instructions) per call; running out disables the plugin.
    pub fuel_per_call: u64,
    /// Linear memory per instance, bytes; a larger grow (or initial size) fails the plugin.
    pub max_memory_bytes: usize,
    /// Bytes of a message (HTTP/1: headers + body start) buffered per flow direction and
    /// handed to hooks.
    pub max_excerpt_bytes: usize,
}

impl Default for WasmLimits {
    fn default() -> Self {
        WasmLimits { fuel_per_call: 1_000_000, max_memory_bytes: 16 << 20, max_excerpt_bytes: 4096 }
    }
}

/// Parser or hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// Exports `df_probe`/`df_parse`.
    Parser,
    /// Exports `df_on_message`.
    Hook,
}

/// What `df_info()` declared.
#[derive(Debug, Clone)]
pub(crate) struct PluginInfo {
    pub(crate) name: Arc<str>,
    pub(crate) kind: PluginKind,
    pub(crate) tcp: bool,
    pub(crate) udp: bool,
    pub(crate) ports: Vec<u16>,
    pub(crate) pairing: Pairing,
    pub(crate) subscribe: Vec<L7Protocol>,
    pub(crate) max_excerpt: usize,
}

/// Live counters of one plugin, shared by all its instances.
#[derive(Debug, Default)]
pub(crate) struct PluginStats {
    pub(crate) calls: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) changed: AtomicU64,
    pub(crate) traps: AtomicU64,
    pub(crate) fuel_exhausted: AtomicU64,
    pub(crate) memory_limit: AtomicU64,
    pub(crate) bad_output: AtomicU64,
    pub(crate) disabled: AtomicBool,
    pub(crate) last_error: Mutex<Option<String>>,
}

/// Counters of one plugin (all instances, all engines).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginStatsSnapshot {
    /// Plugin name.
    pub name: String,
    /// Parser or hook.
    pub kind: PluginKind,
    /// Guest calls (probe, parse, on_message).
    pub calls: u64,
    /// Messages parsed (parsers) or seen (hooks).
    pub messages: u64,
    /// Messages a hook changed.
    pub changed: u64,
    /// Traps (unreachable, out-of-bounds, stack overflow, ...).
    pub traps: u64,
    /// Calls that ran out of fuel.
    pub fuel_exhausted: u64,
    /// Memory grows past the limit.
    pub memory_limit: u64,
    /// Invalid results or output records.
    pub bad_output: u64,
    /// True once a failure disabled the plugin.
    pub disabled: bool,
    /// The failure that disabled it.
    pub last_error: Option<String>,
}

fn engine() -> Result<&'static wasmtime::Engine, WasmError> {
    static ENGINE: OnceLock<Result<wasmtime::Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut cfg = wasmtime::Config::new();
            cfg.consume_fuel(true);
            wasmtime::Engine::new(&cfg).map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(|e| WasmError::Engine(e.clone()))
}

/// A loaded, validated plugin. Cheap to clone; each [`WasmPlugin::install`] creates a new
/// instance (one per engine/worker), and all instances share the counters.
#[derive(Clone)]
pub struct WasmPlugin {
    module: wasmtime::Module,
    info: Arc<PluginInfo>,
    limits: WasmLimits,
    stats: Arc<PluginStats>,
}

impl std::fmt::Debug for WasmPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPlugin").field("name", &self.info.name).field("kind", &self.info.kind).finish()
    }
}

impl WasmPlugin {
    /// Loads a `.wasm` (or `.wat`) file.
    pub fn from_file(path: &Path, limits: WasmLimits) -> Result<WasmPlugin, WasmError> {
        let bytes = std::fs::read(path).map_err(|source| WasmError::Io { path: path.to_path_buf(), source })?;
        Self::from_bytes(&bytes, limits)
    }

    /// Loads a plugin from bytes (a wasm binary or WAT text), e.g. pushed by config.
    pub fn from_bytes(bytes: &[u8], limits: WasmLimits) -> Result<WasmPlugin, WasmError> {
        let engine = engine()?;
        let module = wasmtime::Module::new(engine, bytes).map_err(|e| WasmError::Compile(format!("{e:#}")))?;
        let stats = Arc::new(PluginStats::default());
        let mut guest = Guest::new(engine, &module, &limits, Arc::from("(loading)"), stats.clone())?;
        let raw = guest.call_info()?;
        let kind = if guest.parse.is_some() { PluginKind::Parser } else { PluginKind::Hook };
        let info = parse_info(&raw, kind, &limits)?;
        Ok(WasmPlugin { module, info: Arc::new(info), limits, stats })
    }

    /// The name from `df_info()`.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Parser or hook.
    pub fn kind(&self) -> PluginKind {
        self.info.kind
    }

    /// Protocols a hook subscribes to.
    pub fn subscriptions(&self) -> &[L7Protocol] {
        &self.info.subscribe
    }

    /// True once a failure disabled the plugin.
    pub fn is_disabled(&self) -> bool {
        self.stats.disabled.load(Ordering::Relaxed)
    }

    /// The plugin's counters.
    pub fn stats(&self) -> PluginStatsSnapshot {
        let s = &self.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PluginStatsSnapshot {
            name: self.info.name.to_string(),
            kind: self.info.kind,
            calls: l(&s.calls),
            messages: l(&s.messages),
            changed: l(&s.changed),
            traps: l(&s.traps),
            fuel_exhausted: l(&s.fuel_exhausted),
            memory_limit: l(&s.memory_limit),
            bad_output: l(&s.bad_output),
            disabled: s.disabled.load(Ordering::Relaxed),
            last_error: s.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    fn instantiate(&self) -> Result<Arc<Mutex<Guest>>, WasmError> {
        let g = Guest::new(engine()?, &self.module, &self.limits, self.info.name.clone(), self.stats.clone())?;
        Ok(Arc::new(Mutex::new(g)))
    }

    /// A new instance as an [`L7Parser`](crate::L7Parser) (parsers only), for
    /// [`L7Engine::register`].
    pub fn parser(&self) -> Result<Box<dyn crate::L7Parser>, WasmError> {
        if self.info.kind != PluginKind::Parser {
            return Err(WasmError::MissingExport("df_probe/df_parse (this plugin is a hook)"));
        }
        Ok(Box::new(parser::WasmParser::new(self.instantiate()?, self.info.clone())))
    }

    /// Installs a new instance into `engine`: a parser is registered after the existing ones;
    /// a hook wraps the registered parsers of the protocols it subscribes to (so install
    /// hooks after parsers, or use [`install_all`]).
    pub fn install(&self, engine: &mut L7Engine) -> Result<(), WasmError> {
        match self.info.kind {
            PluginKind::Parser => engine.register(self.parser()?),
            PluginKind::Hook => {
                let h = hook::HookRef::new(self.instantiate()?, self.info.clone());
                engine.map_parsers(|p| hook::wrap(p, &h));
            }
        }
        Ok(())
    }
}

/// Installs all `plugins` into `engine`: parsers first, then hooks (so hooks also see the
/// messages of plugin parsers that produce subscribed protocols).
pub fn install_all(engine: &mut L7Engine, plugins: &[WasmPlugin]) -> Result<(), WasmError> {
    for p in plugins.iter().filter(|p| p.kind() == PluginKind::Parser) {
        p.install(engine)?;
    }
    for p in plugins.iter().filter(|p| p.kind() == PluginKind::Hook) {
        p.install(engine)?;
    }
    Ok(())
}

fn parse_info(raw: &[u8], kind: PluginKind, limits: &WasmLimits) -> Result<PluginInfo, WasmError> {
    let mut info = PluginInfo {
        name: Arc::from("wasm"),
        kind,
        tcp: true,
        udp: false,
        ports: Vec::new(),
        pairing: Pairing::InOrder,
        subscribe: Vec::new(),
        max_excerpt: limits.max_excerpt_bytes,
    };
    let mut recs = records::Records::new(raw);
    for (k, v) in recs.by_ref() {
        let v = std::str::from_utf8(v).map_err(|_| WasmError::Info("a value is not UTF-8".into()))?.trim();
        match k {
            b"name" => {
                if v.is_empty() || v.len() > 64 {
                    return Err(WasmError::Info(format!("name {v:?}: 1 to 64 bytes")));
                }
                info.name = Arc::from(v);
            }
            b"transport" => {
                (info.tcp, info.udp) = match v {
                    "tcp" | "" => (true, false),
                    "udp" => (false, true),
                    "both" => (true, true),
                    _ => return Err(WasmError::Info(format!("transport {v:?}: tcp, udp or both"))),
                }
            }
            b"ports" => {
                for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    info.ports.push(p.parse().map_err(|_| WasmError::Info(format!("port {p:?}")))?);
                }
            }
            b"pairing" => {
                info.pairing = match v {
                    "id" => Pairing::ById,
                    "order" | "" => Pairing::InOrder,
                    _ => return Err(WasmError::Info(format!("pairing {v:?}: id or order"))),
                }
            }
            b"subscribe" => {
                for n in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let p = L7Protocol::from_name(n)
                        .ok_or_else(|| WasmError::Info(format!("subscribe: unknown protocol {n:?}")))?;
                    info.subscribe.push(p);
                }
            }
            _ => {}
        }
    }
    if recs.truncated {
        return Err(WasmError::Info("df_info output ends inside a record".into()));
    }
    if kind == PluginKind::Hook && info.subscribe.is_empty() {
        return Err(WasmError::Info("a hook must subscribe to at least one protocol".into()));
    }
    Ok(info)
}
