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
                    Ok(n) => attached.push(format!("{} ({n} uprobes)", lib.display())),
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

/// Attaches the OpenSSL uprobes to one libssl file; returns how many attached.
fn attach_ssl(bpf: &mut Ebpf, lib: &std::path::Path) -> Result<usize> {
    use aya::programs::UProbe;
    use aya::programs::uprobe::UProbeScope;
    // (program, function, needed)
    let points = [
        ("df_ssl_write_enter", "SSL_write", true),
        ("df_ssl_write_exit", "SSL_write", true),
        ("df_ssl_read_enter", "SSL_read", true),
        ("df_ssl_read_exit", "SSL_read", true),
        ("df_ssl_write_ex_enter", "SSL_write_ex", false),
        ("df_ssl_write_exit", "SSL_write_ex", false),
        ("df_ssl_read_ex_enter", "SSL_read_ex", false),
        ("df_ssl_read_exit", "SSL_read_ex", false),
    ];
    let mut n = 0;
    for (prog, func, needed) in points {
        let p: &mut UProbe = bpf
            .program_mut(prog)
            .ok_or_else(|| load_err(prog, "program not in object"))?
            .try_into()
            .map_err(|e| load_err(prog, e))?;
        if p.fd().is_err() {
            p.load().map_err(|e| load_err(prog, e))?;
        }
        match p.attach(func, lib, UProbeScope::AllProcesses) {
            Ok(_) => n += 1,
            Err(e) if needed => return Err(attach_err(&format!("{func} in {}", lib.display()), e)),
            Err(_) => {}
        }
    }
    Ok(n)
}
