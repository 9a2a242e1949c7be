//! eBPF signals (feature `ebpf`, Linux x86_64): a socket tracer on syscall tracepoints and an
//! on-CPU / off-CPU profiler. The BPF programs are C in `bpf/`, compiled by clang from
//! `build.rs` (CO-RE: field offsets are relocated against the running kernel's BTF at load
//! time) and loaded with aya. Needs root (CAP_BPF + CAP_PERFMON), a kernel with BTF
//! (`/sys/kernel/btf/vmlinux`, 5.8+) and tracefs; no kprobes are used.
//!
//! - [`shared`]: `#[repr(C)]` mirrors of `bpf/deepflow_shared.h`.
//! - [`socket`]: [`socket::SocketTracer`] loads the tracer and reads its ring buffer.
//! - [`streams`]: [`streams::SocketStreams`] turns socket events into per-socket byte streams
//!   for any [`crate::flow::FlowObserver`] (the L7 engine of deepflow-protocols).
//! - [`profiler`]: [`profiler::Profiler`], stacks, symbolization, folded/SVG output.
#![allow(unsafe_code)]

pub mod pprof;
pub mod profiler;
pub mod shared;
pub mod socket;
pub mod streams;
pub mod symbols;

/// Errors of the eBPF layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The BPF objects were not compiled into this binary (clang missing at build time).
    #[error("BPF programs were not built into this binary: {0} (install clang and libbpf-dev, rebuild)")]
    NotBuilt(&'static str),
    /// Loading needs privileges this process does not have.
    #[error("eBPF needs root (CAP_BPF and CAP_PERFMON); running as uid {0}")]
    NotRoot(u32),
    /// The kernel has no BTF (CO-RE needs it).
    #[error("kernel BTF not found at /sys/kernel/btf/vmlinux (kernel built without CONFIG_DEBUG_INFO_BTF?)")]
    NoBtf,
    /// aya failed to load the object or a map.
    #[error("loading BPF object {what}: {msg}")]
    Load {
        /// Which object or map.
        what: String,
        /// aya's message.
        msg: String,
    },
    /// Attaching a program failed.
    #[error("attaching {what}: {msg}")]
    Attach {
        /// Which program / attach point.
        what: String,
        /// aya's message.
        msg: String,
    },
    /// An I/O error (mounting tracefs, reading /proc).
    #[error("{what}: {err}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        err: std::io::Error,
    },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn load_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Load { what: what.to_string(), msg: e.to_string() }
}

pub(crate) fn attach_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Attach { what: what.to_string(), msg: format!("{e}") }
}

/// The socket tracer object built by build.rs (empty when it could not be built).
static SOCKET_TRACER_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/socket_tracer.bpf.o"));
/// The profiler object built by build.rs (empty when it could not be built).
static PROFILER_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler.bpf.o"));

/// True when the BPF objects were compiled into this binary.
pub fn programs_built() -> bool {
    !SOCKET_TRACER_OBJ.is_empty() && !PROFILER_OBJ.is_empty()
}

pub(crate) fn object(which: &'static str) -> Result<&'static [u8]> {
    let o = match which {
        "socket_tracer" => SOCKET_TRACER_OBJ,
        _ => PROFILER_OBJ,
    };
    if o.is_empty() {
        return Err(Error::NotBuilt(env!("DEEPFLOW_BPF_BUILD_ERROR")));
    }
    Ok(o)
}

/// Checks what loading needs (root, BTF) and mounts tracefs (`/sys/kernel/tracing`) and bpffs
/// (`/sys/fs/bpf`) when they are missing. Returns the reason eBPF cannot run, if any.
pub fn check_environment() -> Result<()> {
    if !programs_built() {
        return Err(Error::NotBuilt(env!("DEEPFLOW_BPF_BUILD_ERROR")));
    }
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        return Err(Error::NotRoot(uid));
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(Error::NoBtf);
    }
    mount_if_missing("/sys/kernel/tracing", "tracefs", "/sys/kernel/tracing/events")?;
    mount_if_missing("/sys/fs/bpf", "bpf", "")?;
    raise_memlock();
    Ok(())
}

fn mount_if_missing(target: &str, fstype: &str, probe: &str) -> Result<()> {
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some(target)))
        .unwrap_or(false);
    if mounted || (!probe.is_empty() && std::path::Path::new(probe).exists()) {
        return Ok(());
    }
    let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
    let (src, tgt, ty) = (c(fstype), c(target), c(fstype));
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call; data is null.
    let rc = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(Error::Io { what: format!("mount {fstype} on {target}"), err: std::io::Error::last_os_error() });
    }
    Ok(())
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK: lift it (best effort).
fn raise_memlock() {
    let r = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: `r` is a valid rlimit for the duration of the call.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) };
}

/// Microseconds since the epoch of a `bpf_ktime_get_ns` (CLOCK_MONOTONIC) timestamp.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset_ns: i128,
}

impl Clock {
    /// Measures the offset between CLOCK_REALTIME and CLOCK_MONOTONIC now.
    pub fn now() -> Clock {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Clock { offset_ns: real as i128 - mono as i128 }
    }

    /// The epoch time (µs) of monotonic `ns`.
    pub fn to_epoch_us(&self, mono_ns: u64) -> u64 {
        let v = (mono_ns as i128 + self.offset_ns) / 1000;
        u64::try_from(v.max(0)).unwrap_or(0)
    }
}

fn clock_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(id, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}
