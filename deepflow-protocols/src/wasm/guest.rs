//! One instantiated plugin: a wasmtime store with limits, the cached exports, and the
//! calls of ABI v1. A failed call (trap, fuel or memory limit, bad output) disables the
//! plugin everywhere through its shared [`PluginStats`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use wasmtime::{
    Caller, Engine, Extern, Instance, Linker, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc,
};

use super::{ABI_VERSION, PluginStats, WasmError, WasmLimits};

/// Most bytes a guest may emit in one call; more is a bad-output failure.
const MAX_OUTPUT: usize = 256 * 1024;
/// Log lines printed per instance (`df.log`); later ones are counted only.
const MAX_LOG_LINES: u32 = 16;

pub(crate) struct HostState {
    limits: StoreLimits,
    /// Records emitted during the current call.
    pub(crate) out: Vec<u8>,
    overflow: bool,
    logs: u32,
    name: Arc<str>,
}

/// Why a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Fuel,
    Memory,
    Trap,
    BadOutput,
}

pub(crate) struct Guest {
    store: Store<HostState>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    info: TypedFunc<(), ()>,
    /// Text of the last trap.
    detail: String,
    pub(crate) probe: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub(crate) parse: Option<TypedFunc<(i32, i32, i32), i64>>,
    pub(crate) on_message: Option<TypedFunc<(i32, i32), i32>>,
    /// Input buffer from the last `df_alloc` and its size.
    buf: Option<(i32, usize)>,
    fuel: u64,
    pub(crate) stats: Arc<PluginStats>,
}

fn guest_bytes<'a>(mem: &Memory, caller: &'a Caller<'_, HostState>, ptr: i32, len: i32) -> Option<&'a [u8]> {
    let start = usize::try_from(ptr as u32).ok()?;
    let len = usize::try_from(len as u32).ok()?;
    mem.data(caller).get(start..start.checked_add(len)?)
}

fn memory_of(caller: &mut Caller<'_, HostState>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

fn linker(engine: &Engine) -> Result<Linker<HostState>, WasmError> {
    let mut l = Linker::new(engine);
    l.func_wrap("df", "emit", |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| {
        let Some(mem) = memory_of(&mut caller) else { return };
        let bytes = guest_bytes(&mem, &caller, ptr, len).map(<[u8]>::to_vec);
        let st = caller.data_mut();
        match bytes {
            Some(b) if st.out.len() + b.len() <= MAX_OUTPUT => st.out.extend_from_slice(&b),
            _ => st.overflow = true,
        }
    })
    .map_err(|e| WasmError::Instantiate(e.to_string()))?;
    l.func_wrap("df", "log", |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| {
        let Some(mem) = memory_of(&mut caller) else { return };
        let line = guest_bytes(&mem, &caller, ptr, len.min(1024)).map(|b| String::from_utf8_lossy(b).into_owned());
        let st = caller.data_mut();
        st.logs += 1;
        if st.logs <= MAX_LOG_LINES
            && let Some(line) = line
        {
            eprintln!("wasm plugin {}: {line}", st.name);
        }
    })
    .map_err(|e| WasmError::Instantiate(e.to_string()))?;
    Ok(l)
}

impl Guest {
    /// Instantiates `module` with the limits, checks the ABI version and required exports.
    pub(crate) fn new(
        engine: &Engine,
        module: &Module,
        limits: &WasmLimits,
        name: Arc<str>,
        stats: Arc<PluginStats>,
    ) -> Result<Guest, WasmError> {
        let state = HostState {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.max_memory_bytes)
                .instances(1)
                .memories(1)
                .tables(4)
                .table_elements(100_000)
                .trap_on_grow_failure(true)
                .build(),
            out: Vec::new(),
            overflow: false,
            logs: 0,
            name,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_fuel(limits.fuel_per_call).map_err(|e| WasmError::Instantiate(e.to_string()))?;
        let instance: Instance =
            linker(engine)?.instantiate(&mut store, module).map_err(|e| WasmError::Instantiate(format!("{e:#}")))?;
        let memory = instance.get_memory(&mut store, "memory").ok_or(WasmError::MissingExport("memory"))?;
        let version = instance
            .get_typed_func::<(), i32>(&mut store, "df_abi_version")
            .map_err(|_| WasmError::MissingExport("df_abi_version() -> i32"))?;
        let found =
            version.call(&mut store, ()).map_err(|e| WasmError::Instantiate(format!("df_abi_version: {e:#}")))?;
        if found != ABI_VERSION {
            return Err(WasmError::AbiVersion { found, expected: ABI_VERSION });
        }
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, "df_alloc")
            .map_err(|_| WasmError::MissingExport("df_alloc(i32) -> i32"))?;
        let info = instance
            .get_typed_func::<(), ()>(&mut store, "df_info")
            .map_err(|_| WasmError::MissingExport("df_info()"))?;
        let probe = instance.get_typed_func(&mut store, "df_probe").ok();
        let parse = instance.get_typed_func(&mut store, "df_parse").ok();
        let on_message = instance.get_typed_func(&mut store, "df_on_message").ok();
        if probe.is_some() != parse.is_some() {
            return Err(WasmError::MissingExport("df_probe(i32,i32,i32)->i32 and df_parse(i32,i32,i32)->i64 (both)"));
        }
        if parse.is_none() && on_message.is_none() {
            return Err(WasmError::MissingExport("df_probe/df_parse (parser) or df_on_message(i32,i32)->i32 (hook)"));
        }
        Ok(Guest {
            store,
            memory,
            alloc,
            info,
            detail: String::new(),
            probe,
            parse,
            on_message,
            buf: None,
            fuel: limits.fuel_per_call,
            stats,
        })
    }

    fn start_call(&mut self) -> Result<(), Failure> {
        self.store.data_mut().out.clear();
        self.store.data_mut().overflow = false;
        self.store.set_fuel(self.fuel).map_err(|_| Failure::Trap)
    }

    /// Copies `data` into the guest's input buffer (growing it through `df_alloc`).
    fn write_input(&mut self, data: &[u8]) -> Result<(i32, i32), Failure> {
        let len = i32::try_from(data.len()).map_err(|_| Failure::BadOutput)?;
        let ptr = match self.buf {
            Some((ptr, cap)) if cap >= data.len() => ptr,
            _ => {
                let want = data.len().max(4096);
                let ptr = self.alloc.call(&mut self.store, want as i32).map_err(|e| self.classify(&e))?;
                self.buf = Some((ptr, want));
                ptr
            }
        };
        self.memory.write(&mut self.store, ptr as u32 as usize, data).map_err(|_| Failure::BadOutput)?;
        Ok((ptr, len))
    }

    fn finish_call(&mut self) -> Result<(), Failure> {
        if self.store.data().overflow { Err(Failure::BadOutput) } else { Ok(()) }
    }

    /// The records the last call emitted.
    pub(crate) fn output(&self) -> &[u8] {
        &self.store.data().out
    }

    /// `df_probe`: 0 not this, 1 match, 2 need more.
    pub(crate) fn call_probe(&mut self, data: &[u8], dir: i32) -> Result<i32, Failure> {
        let f = self.probe.clone().ok_or(Failure::BadOutput)?;
        self.start_call()?;
        let (ptr, len) = self.write_input(data)?;
        let r = f.call(&mut self.store, (ptr, len, dir)).map_err(|e| self.classify(&e))?;
        self.finish_call()?;
        Ok(r)
    }

    /// `df_parse`: consumed bytes (≥ 0) or `-(code | hint << 8)`; the message is in
    /// [`Guest::output`].
    pub(crate) fn call_parse(&mut self, data: &[u8], dir: i32) -> Result<i64, Failure> {
        let f = self.parse.clone().ok_or(Failure::BadOutput)?;
        self.start_call()?;
        let (ptr, len) = self.write_input(data)?;
        let r = f.call(&mut self.store, (ptr, len, dir)).map_err(|e| self.classify(&e))?;
        self.finish_call()?;
        Ok(r)
    }

    /// `df_on_message`: 0 no change, 1 changes in [`Guest::output`].
    pub(crate) fn call_on_message(&mut self, input: &[u8]) -> Result<i32, Failure> {
        let f = self.on_message.clone().ok_or(Failure::BadOutput)?;
        self.start_call()?;
        let (ptr, len) = self.write_input(input)?;
        let r = f.call(&mut self.store, (ptr, len)).map_err(|e| self.classify(&e))?;
        self.finish_call()?;
        Ok(r)
    }

    /// `df_info()`: the records it emitted.
    pub(crate) fn call_info(&mut self) -> Result<Vec<u8>, WasmError> {
        let f = self.info.clone();
        self.start_call().map_err(|_| WasmError::Instantiate("fuel".into()))?;
        f.call(&mut self.store, ()).map_err(|e| WasmError::Instantiate(format!("df_info: {e:#}")))?;
        Ok(self.output().to_vec())
    }

    /// Counts `f`, records the error and disables the plugin.
    pub(crate) fn fail(&self, f: Failure, what: &str) {
        let s = &self.stats;
        match f {
            Failure::Fuel => s.fuel_exhausted.fetch_add(1, Ordering::Relaxed),
            Failure::Memory => s.memory_limit.fetch_add(1, Ordering::Relaxed),
            Failure::Trap => s.traps.fetch_add(1, Ordering::Relaxed),
            Failure::BadOutput => s.bad_output.fetch_add(1, Ordering::Relaxed),
        };
        if !s.disabled.swap(true, Ordering::Relaxed) {
            let msg = format!(
                "{what}: {}",
                match f {
                    Failure::Fuel => "fuel limit per call exhausted (endless loop?)",
                    Failure::Memory => "memory limit per instance reached",
                    Failure::Trap => "trap",
                    Failure::BadOutput => "invalid output or input buffer",
                }
            );
            let msg = if self.detail.is_empty() {
                msg
            } else {
                format!("{msg} ({})", self.detail.lines().next().unwrap_or(""))
            };
            eprintln!("wasm plugin {}: disabled after {msg}", self.store.data().name);
            if let Ok(mut e) = s.last_error.lock() {
                *e = Some(msg);
            }
        }
    }
}

impl Guest {
    fn classify(&mut self, e: &wasmtime::Error) -> Failure {
        if let Some(t) = e.downcast_ref::<Trap>() {
            self.detail = t.to_string();
            return if *t == Trap::OutOfFuel { Failure::Fuel } else { Failure::Trap };
        }
        self.detail = format!("{e:#}");
        if self.detail.contains("growing memory") || self.detail.contains("growing table") {
            Failure::Memory
        } else {
            Failure::Trap
        }
    }
}
