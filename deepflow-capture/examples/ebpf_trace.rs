//! Runs the eBPF socket tracer for a while and prints what it saw: events/s, loss and stream
//! counters (used for the overhead measurement in the README). Root only.
//!
//! `cargo run --release -p deepflow-capture --features ebpf --example ebpf_trace -- SECONDS [MAX_DATA [STOP_FILE]]`
//! (stops early once STOP_FILE exists).
#[cfg(all(feature = "ebpf", target_os = "linux"))]
fn main() {
    use deepflow_capture::ebpf::socket::{SocketTracer, SocketTracerConfig};
    use deepflow_capture::ebpf::streams::SocketStreams;
    use deepflow_capture::flow::NoL7;
    use std::time::{Duration, Instant};

    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let max_data: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let stop_file = args.next().map(std::path::PathBuf::from);
    let cfg = SocketTracerConfig { max_data, ..SocketTracerConfig::default() };
    let mut t = match SocketTracer::start(&cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ebpf_trace: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("ebpf_trace: tracing for {secs} s ({} tracepoints)", t.attached().len());
    for a in t.attached().iter().filter(|a| a.contains("libssl")) {
        eprintln!("ebpf_trace: attached {a}");
    }
    for s in t.skipped() {
        eprintln!("ebpf_trace: skipped {s}");
    }
    let mut streams = SocketStreams::new(NoL7, t.clock());
    let start = Instant::now();
    let mut n = 0u64;
    // DF_TRACE_PRINT_PID=N prints every event of process N (debugging).
    let print_pid: Option<u32> = std::env::var("DF_TRACE_PRINT_PID").ok().and_then(|s| s.parse().ok());
    while start.elapsed() < Duration::from_secs(secs) && !stop_file.as_ref().is_some_and(|f| f.exists()) {
        n += t.poll(Duration::from_millis(100), |e, d| {
            if print_pid == Some(e.pid) {
                println!(
                    "{} type={} dir={} role={} seq={} ret={} len={} {:?}",
                    deepflow_capture::ebpf::shared::syscall::name(e.syscall),
                    e.event_type,
                    e.direction,
                    e.role,
                    e.seq,
                    e.ret,
                    e.data_len,
                    String::from_utf8_lossy(d.get(..d.len().min(60)).unwrap_or_default())
                );
            }
            streams.on_event(e, d)
        }) as u64;
    }
    let el = start.elapsed().as_secs_f64();
    let k = t.stats();
    let c = streams.counters();
    println!(
        "events {n} ({:.0}/s), kernel: written {} lost {} truncated {}, sockets {}, payload bytes {}, seq gaps {}",
        n as f64 / el,
        k.events,
        k.lost,
        k.truncated,
        c.sockets_opened,
        c.bytes,
        c.seq_gaps
    );
}

#[cfg(not(all(feature = "ebpf", target_os = "linux")))]
fn main() {
    eprintln!("ebpf_trace: built without the `ebpf` feature (Linux only)");
}
