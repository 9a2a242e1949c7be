//! The socket tracer: loads `bpf/socket_tracer.bpf.c`, attaches its syscall tracepoints and
//! reads socket events from its ring buffer.
//!
//! ```no_run
//! use deepflow_capture::ebpf::socket::{SocketTracer, SocketTracerConfig};
//! let mut t = SocketTracer::start(&SocketTracerConfig::default()).unwrap();
//! t.poll(std::time::Duration::from_millis(100), |ev, data| {
//!     println!("{} {} bytes", ev.pid, data.len());
//! });
//! println!("{:?}", t.stats());
//! ```
use std::os::fd::AsRawFd;
use std::time::Duration;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};

use super::shared::{DF_MAX_DATA, DfSocketEvent, DfSocketStats};
use super::{Clock, Result, attach_err, load_err, object};

/// Settings of the socket tracer.
#[derive(Debug, Clone)]
pub struct SocketTracerConfig {
    /// Payload bytes copied per syscall (at most 4096, `DF_MAX_DATA`).
    pub max_data: u32,
    /// Trace only this process (tgid); `None` traces every process but this one.
    pub target_pid: Option<u32>,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Attach uprobes to OpenSSL's SSL_write/SSL_read(_ex) in these libssl files (every
    /// process mapping them, including ones started later) to see TLS plaintext. Empty: the
    /// libssl files found by [`find_libssl`].
    pub tls: bool,
    /// Explicit libssl paths (used instead of the search when non-empty).
    pub libssl: Vec<std::path::PathBuf>,
}

/// libssl shared objects on this host: the ones mapped by running processes
/// (`/proc/*/maps`, through `/proc/PID/root`) and the usual library directories.
pub fn find_libssl() -> Vec<std::path::PathBuf> {
    let mut found = std::collections::BTreeSet::new();
    for dir in ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib64", "/lib"] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("libssl.so.")
                    && let Ok(c) = std::fs::canonicalize(e.path())
                {
                    found.insert(c);
                }
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten().take(100_000) {
            let pid = e.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
            for l in maps.lines() {
                if let Some(p) = l.split_whitespace().nth(5)
                    && p.rsplit('/').next().is_some_and(|n| n.starts_with("libssl.so"))
                {
                    let rooted = format!("/proc/{pid}/root{p}");
                    if let Ok(c) = std::fs::canonicalize(&rooted) {
                        found.insert(c);
                    }
                }
            }
        }
    }
    found.into_iter().collect()
}

impl Default for SocketTracerConfig {
    fn default() -> Self {
        SocketTracerConfig { max_data: 1024, target_pid: None, ring_bytes: 8 << 20, tls: true, libssl: Vec::new() }
    }
}

/// Syscalls traced: (tracepoint suffix, needed). A missing optional tracepoint is skipped.
const TRACED: [(&str, bool); 13] = [
    ("read", true),
    ("write", true),
    ("readv", false),
    ("writev", false),
    ("sendto", false),
    ("recvfrom", false),
    ("sendmsg", false),
    ("recvmsg", false),
    ("sendmmsg", false),
    ("recvmmsg", false),
    ("connect", false),
    ("accept", false),
    ("accept4", false),
];

/// A loaded and attached socket tracer. Dropping it detaches every program.
pub struct SocketTracer {
    bpf: Ebpf,
    ring: RingBuf<MapData>,
    clock: Clock,
    attached: Vec<String>,
    skipped: Vec<String>,
}

impl SocketTracer {
    /// Loads the tracer, attaches the tracepoints and starts collecting.
    pub fn start(cfg: &SocketTracerConfig) -> Result<SocketTracer> {
        super::check_environment()?;
        let obj = object("socket_tracer")?;
        let max_data = cfg.max_data.min(DF_MAX_DATA as u32);
        let self_pid = std::process::id();
        let target = cfg.target_pid.unwrap_or(0);
        let ring_bytes = cfg.ring_bytes.max(4096).next_power_of_two();
        let mut bpf = EbpfLoader::new()
            .override_global("df_cfg_max_data", &max_data, true)
            .override_global("df_cfg_self_pid", &self_pid, true)
            .override_global("df_cfg_target_pid", &target, true)
            .map_max_entries("df_events", ring_bytes)
            .load(obj)
            .map_err(|e| load_err("socket_tracer.bpf.o", e))?;
        let mut attached = Vec::new();
        let mut skipped = Vec::new();
        let mut points: Vec<(String, String, bool)> = Vec::new();
        for (sys, needed) in TRACED {
            points.push((format!("df_enter_{sys}"), format!("sys_enter_{sys}"), needed));
            points.push((format!("df_exit_{sys}"), format!("sys_exit_{sys}"), needed));
        }
        points.push(("df_enter_close".into(), "sys_enter_close".into(), true));
        for (prog, tp, needed) in points {
            // A program the verifier rejects is a bug: always an error. A tracepoint this
            // kernel does not have is skipped when optional.
            let p: &mut TracePoint = bpf
                .program_mut(&prog)
                .ok_or_else(|| load_err(&prog, "program not in object"))?
                .try_into()
                .map_err(|e| load_err(&prog, e))?;
            p.load().map_err(|e| load_err(&prog, format!("{e} ({e:?})")))?;
            let res = p.attach("syscalls", &tp).map(|_| ()).map_err(|e| attach_err(&format!("syscalls/{tp}"), e));
            match res {
                Ok(()) => attached.push(tp),
                Err(e) if !needed => skipped.push(format!("{tp}: {e}")),
                Err(e) => return Err(e),
            }
        }
        if cfg.tls {
            let libs = if cfg.libssl.is_empty() { find_libssl() } else { cfg.libssl.clone() };
            for lib in libs {
                match attach_ssl(&mut bpf, &lib) {
                    Ok((n, true)) => attached.push(format!("{} ({n} uprobes, internal functions)", lib.display())),
                    Ok((n, false)) => attached.push(format!("{} ({n} uprobes)", lib.display())),
                    Err(e) => skipped.push(format!("{}: {e}", lib.display())),
                }
            }
        }
        let ring = RingBuf::try_from(bpf.take_map("df_events").ok_or_else(|| load_err("df_events", "map missing"))?)
            .map_err(|e| load_err("df_events", e))?;
        Ok(SocketTracer { bpf, ring, clock: Clock::now(), attached, skipped })
    }

    /// Tracepoints (and libssl files) attached.
    pub fn attached(&self) -> &[String] {
        &self.attached
    }

    /// Optional tracepoints that could not be attached, with the reason.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Converts event timestamps (monotonic ns) to µs since the epoch.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Waits up to `timeout` for events, then hands every available event to `f` (header and
    /// payload). Returns the number of events read. At most 1M events per call.
    pub fn poll(&mut self, timeout: Duration, mut f: impl FnMut(&DfSocketEvent, &[u8])) -> usize {
        let mut pfd = libc::pollfd { fd: self.ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `pfd` is one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, ms) };
        let mut n = 0;
        while n < 1_000_000 {
            let Some(item) = self.ring.next() else { break };
            if let Some((ev, data)) = DfSocketEvent::parse(&item) {
                f(&ev, data);
            }
            n += 1;
        }
        n
    }

    /// Kernel-side counters summed over CPUs (events written, lost to a full ring, ...).
    pub fn stats(&self) -> DfSocketStats {
        let mut s = DfSocketStats::default();
        let Some(m) = self.bpf.map("df_stats") else { return s };
        let Ok(arr) = PerCpuArray::<_, DfSocketStats>::try_from(m) else { return s };
        if let Ok(v) = arr.get(&0, 0) {
            for c in v.iter() {
                s.events += c.events;
                s.lost += c.lost;
                s.truncated += c.truncated;
                s.not_socket += c.not_socket;
                s.fd_lookup_failed += c.fd_lookup_failed;
                s.enter_missing += c.enter_missing;
            }
        }
        s
    }
}

/// Attaches the OpenSSL uprobes to one libssl file; returns how many attached and whether on
/// the internal functions.
///
/// When [`find_ssl_internals`] finds OpenSSL's `ssl_write_internal` / `ssl_read_internal`, the
/// probes go there (one function behind both `SSL_write` and `SSL_write_ex`, with the `_ex`
/// signature) instead of on the public functions: these start with `sub $N, %rsp`, which the
/// kernel must single-step after the breakpoint (a debug trap per call, the bulk of the HTTPS
/// overhead on a VM), while the internal functions start with `push`, which the kernel
/// emulates.
fn attach_ssl(bpf: &mut Ebpf, lib: &std::path::Path) -> Result<(usize, bool)> {
    use aya::programs::UProbe;
    use aya::programs::uprobe::{UProbeAttachLocation, UProbeScope};
    let internals = find_ssl_internals(lib);
    // (program, location, needed)
    let points: Vec<(&str, UProbeAttachLocation<'_>, bool)> = match internals {
        Some(i) => vec![
            ("df_ssl_write_ex_enter", UProbeAttachLocation::AbsoluteOffset(i.write), true),
            ("df_ssl_write_exit", UProbeAttachLocation::AbsoluteOffset(i.write), true),
            ("df_ssl_read_ex_enter", UProbeAttachLocation::AbsoluteOffset(i.read), true),
            ("df_ssl_read_exit", UProbeAttachLocation::AbsoluteOffset(i.read), true),
        ],
        None => vec![
            ("df_ssl_write_enter", "SSL_write".into(), true),
            ("df_ssl_write_exit", "SSL_write".into(), true),
            ("df_ssl_read_enter", "SSL_read".into(), true),
            ("df_ssl_read_exit", "SSL_read".into(), true),
            ("df_ssl_write_ex_enter", "SSL_write_ex".into(), false),
            ("df_ssl_write_exit", "SSL_write_ex".into(), false),
            ("df_ssl_read_ex_enter", "SSL_read_ex".into(), false),
            ("df_ssl_read_exit", "SSL_read_ex".into(), false),
        ],
    };
    let mut n = 0;
    for (prog, at, needed) in points {
        let what = match at {
            UProbeAttachLocation::Symbol(s) => s.to_string(),
            UProbeAttachLocation::AbsoluteOffset(o) => format!("offset {o:#x}"),
            UProbeAttachLocation::SymbolOffset(s, o) => format!("{s}+{o:#x}"),
        };
        let p: &mut UProbe = bpf
            .program_mut(prog)
            .ok_or_else(|| load_err(prog, "program not in object"))?
            .try_into()
            .map_err(|e| load_err(prog, e))?;
        if p.fd().is_err() {
            p.load().map_err(|e| load_err(prog, e))?;
        }
        match p.attach(at, lib, UProbeScope::AllProcesses) {
            Ok(_) => n += 1,
            Err(e) if needed => return Err(attach_err(&format!("{what} in {}", lib.display()), e)),
            Err(_) => {}
        }
    }
    Ok((n, internals.is_some()))
}

/// File offsets of OpenSSL's internal write and read functions in one libssl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslInternals {
    /// `ssl_write_internal(SSL *, const void *buf, size_t num, size_t *written)`.
    pub write: u64,
    /// `ssl_read_internal(SSL *, void *buf, size_t num, size_t *readbytes)`.
    pub read: u64,
}

/// Finds `ssl_write_internal` and `ssl_read_internal` (local symbols, stripped from distro
/// builds) in a libssl file: the one function that both `SSL_write` and `SSL_write_ex` call
/// (a `call`/`jmp rel32` among their first bytes), likewise for read, which must start like a
/// function (`push`, or `endbr64`). Only for OpenSSL 1.1.1 to 3.1, where both have the `_ex`
/// signature (3.2 added a flags argument to the write one, and `SSL_write_ex2`): `None`
/// otherwise, and the probes stay on the public functions.
pub fn find_ssl_internals(lib: &std::path::Path) -> Option<SslInternals> {
    let data = std::fs::read(lib).ok()?;
    ssl_internals_in(&data)
}

fn ssl_internals_in(data: &[u8]) -> Option<SslInternals> {
    use object::{Object, ObjectSection, ObjectSymbol};
    let f = object::File::parse(data).ok()?;
    if f.architecture() != object::Architecture::X86_64 {
        return None;
    }
    let text = f.section_by_name(".text")?;
    let (text_addr, text_size) = (text.address(), text.size());
    let (text_off, text_len) = text.file_range()?;
    let code = data.get(usize::try_from(text_off).ok()?..usize::try_from(text_off + text_len).ok()?)?;
    let sym = |name: &str| -> Option<u64> {
        f.dynamic_symbols().find(|s| s.is_definition() && s.name() == Ok(name)).map(|s| s.address())
    };
    if sym("SSL_write_ex2").is_some() {
        return None;
    }
    let (w, wx, r, rx) = (sym("SSL_write")?, sym("SSL_write_ex")?, sym("SSL_read")?, sym("SSL_read_ex")?);
    let bytes = |addr: u64, len: u64| -> Option<&[u8]> {
        if addr < text_addr || addr + len > text_addr + text_size {
            return None;
        }
        let o = usize::try_from(addr - text_addr).ok()?;
        code.get(o..o + usize::try_from(len).ok()?)
    };
    // rel32 call/jmp targets among the first `len` bytes of the function at `addr` (every
    // byte offset: the intersection of two functions' sets removes the false ones).
    let targets = |addr: u64, len: u64| -> Vec<u64> {
        let Some(b) = bytes(addr, len) else { return Vec::new() };
        b.windows(5)
            .enumerate()
            .filter_map(|(i, w)| {
                let [0xe8 | 0xe9, r0, r1, r2, r3] = *w else { return None };
                let rel = i32::from_le_bytes([r0, r1, r2, r3]);
                let next = addr.checked_add(i as u64 + 5)?;
                next.checked_add_signed(i64::from(rel))
            })
            .collect()
    };
    let prologue = |addr: u64| -> bool {
        matches!(bytes(addr, 4), Some([0x50..=0x57, ..] | [0x41, 0x50..=0x57, ..] | [0xf3, 0x0f, 0x1e, 0xfa]))
    };
    let common = |a: u64, b: u64| -> Option<u64> {
        let ta = targets(a, 96);
        let tb = targets(b, 32);
        let mut c: Vec<u64> = ta.into_iter().filter(|t| tb.contains(t) && *t != a && *t != b).collect();
        c.sort_unstable();
        c.dedup();
        match c.as_slice() {
            [t] if prologue(*t) => Some(*t),
            _ => None,
        }
    };
    let (wi, ri) = (common(w, wx)?, common(r, rx)?);
    if wi == ri {
        return None;
    }
    Some(SslInternals { write: wi - text_addr + text_off, read: ri - text_addr + text_off })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_internals_of_the_installed_libssl() {
        let libs = find_libssl();
        let Some(lib) = libs.iter().find(|l| l.to_string_lossy().contains("libssl.so.3")) else {
            eprintln!("SKIP ssl_internals_of_the_installed_libssl: no libssl.so.3 ({libs:?})");
            return;
        };
        let data = std::fs::read(lib).unwrap();
        let Some(i) = ssl_internals_in(&data) else {
            // 3.2+ (SSL_write_ex2) keeps the public entry points
            eprintln!("SKIP ssl_internals_of_the_installed_libssl: not found in {}", lib.display());
            return;
        };
        assert_ne!(i.write, i.read);
        // both start like functions
        for off in [i.write, i.read] {
            let b = &data[off as usize..off as usize + 2];
            assert!(matches!(b, [0x50..=0x57, _] | [0x41, 0x50..=0x57] | [0xf3, 0x0f]), "{b:x?}");
        }
    }

    #[test]
    fn ssl_internals_of_garbage_is_none() {
        assert_eq!(ssl_internals_in(b""), None);
        assert_eq!(ssl_internals_in(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0]), None);
        assert_eq!(ssl_internals_in(&[0u8; 4096]), None);
    }
}
