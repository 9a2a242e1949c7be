//! `run --ebpf` (socket tracer -> L7 rows) and `profile` (on/off-CPU profiler).
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deepflow_capture::ebpf::profiler::{Profile, Profiler, ProfilerConfig};
use deepflow_capture::ebpf::socket::{SocketTracer, SocketTracerConfig};
use deepflow_capture::ebpf::streams::SocketStreams;
use deepflow_core::record::L7FlowLog;
use deepflow_protocols::capture::L7Observer;

use crate::server_cmd::ServerSink;

/// Options of `run --ebpf`.
pub struct EbpfRun {
    pub duration: Option<u64>,
    pub jsonl: bool,
    pub max_data: u32,
    pub pid: Option<u32>,
}

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn print_row(r: &L7FlowLog, jsonl: bool) {
    if jsonl {
        if let Ok(s) = serde_json::to_string(r) {
            println!("{s}");
        }
        return;
    }
    let (pid, comm) = match (r.process_id_0, r.process_id_1) {
        (Some(p), _) => (p, r.process_kname_0.as_deref().unwrap_or("")),
        (None, Some(p)) => (p, r.process_kname_1.as_deref().unwrap_or("")),
        _ => (0, ""),
    };
    println!(
        "{:<4} {:>7} {:<15} {}:{} -> {}:{} {:<6} {:<8} {:<40} {:?} {} rrt={}us",
        r.tap_side,
        pid,
        comm,
        r.ip_0,
        r.client_port,
        r.ip_1,
        r.server_port,
        r.l7_protocol.name(),
        r.request_type.as_deref().unwrap_or("-"),
        r.request_resource.as_deref().unwrap_or("-").chars().take(40).collect::<String>(),
        r.response_status,
        r.response_code.map_or("-".to_string(), |c| c.to_string()),
        r.rrt.map_or("-".to_string(), |v| v.to_string()),
    );
}

/// Runs the socket tracer; rows are printed, or sent to the server when `server` is given.
pub fn run(opts: &EbpfRun, observer: L7Observer, mut server: Option<ServerSink>) -> Result<(), String> {
    let cfg = SocketTracerConfig { max_data: opts.max_data, target_pid: opts.pid, ..SocketTracerConfig::default() };
    let mut tracer = SocketTracer::start(&cfg).map_err(|e| e.to_string())?;
    for s in tracer.skipped() {
        eprintln!("deepflow-agent: ebpf: skipped {s}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)).map_err(|e| e.to_string())?;
    }
    eprintln!("deepflow-agent: ebpf socket tracer on {} tracepoints; Ctrl-C to stop", tracer.attached().len());
    let deadline = opts.duration.map(|s| Instant::now() + Duration::from_secs(s));
    let mut streams = SocketStreams::new(observer, tracer.clock());
    let mut last_tick = Instant::now();
    let mut emit = |streams: &mut SocketStreams<L7Observer>| -> Result<(), String> {
        let mut rows = streams.observer_mut().drain_rows();
        streams.annotate(&mut rows);
        match &mut server {
            Some(s) => s.l7_rows(rows, now_us())?,
            None => rows.iter().for_each(|r| print_row(r, opts.jsonl)),
        }
        Ok(())
    };
    while !stop.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
        tracer.poll(Duration::from_millis(100), |ev, data| streams.on_event(ev, data));
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            streams.tick(now_us());
        }
        emit(&mut streams)?;
    }
    tracer.poll(Duration::from_millis(0), |ev, data| streams.on_event(ev, data));
    streams.finish(now_us());
    emit(&mut streams)?;
    let k = tracer.stats();
    let c = streams.counters();
    eprintln!(
        "deepflow-agent: ebpf: {} events ({} lost to a full ring buffer, {} truncated), {} sockets, {} payload bytes, {} sequence gaps",
        k.events, k.lost, k.truncated, c.sockets_opened, c.bytes, c.seq_gaps
    );
    match server {
        Some(s) => s.finish(),
        None => Ok(()),
    }
}

pub fn profile(pid: Option<u32>, seconds: u64, out: &Path, frequency: u64, off_cpu: bool) -> Result<(), String> {
    let cfg = ProfilerConfig { pid, frequency, off_cpu };
    let mut p = Profiler::start(&cfg).map_err(|e| e.to_string())?;
    eprintln!(
        "deepflow-agent: profiling {} for {seconds} s at {frequency} Hz",
        pid.map_or("all processes".to_string(), |p| format!("pid {p}"))
    );
    std::thread::sleep(Duration::from_secs(seconds));
    let prof = p.collect().map_err(|e| e.to_string())?;
    drop(p);
    let files = prof.write_dir(out).map_err(|e| e.to_string())?;
    eprintln!(
        "deepflow-agent: {} samples ({} dropped, {} without stacks), {} distinct stacks",
        prof.samples,
        prof.dropped,
        prof.stack_errors,
        prof.on_cpu.len()
    );
    if let Some((f, n)) = Profile::hottest(&prof.on_cpu) {
        println!("hottest: {f} ({n} samples)");
    }
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
