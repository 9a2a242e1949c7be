//! Times the L7 path of `deepflow-agent analyze` without the agent: the L4 pipeline with every
//! built-in parser behind it, rows drained as they are produced and, unless `--no-red`, fed to
//! the application RED aggregator (1 s / 1 min). No output; `--jsonl` serializes every row on
//! a writer thread, as the agent's `--format jsonl` does. Builds from deepflow-protocols alone,
//! so an A/B of a parser or engine change needs no workspace release build:
//!   cargo run --release -p deepflow-protocols --example l7_pipeline -- FILE.pcap [RUNS] [--no-red] [--jsonl] [--no-net-metrics]
//! `--jsonl --no-red --no-net-metrics` is what `deepflow-agent analyze --format jsonl --emit sessions` does.
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use deepflow_capture::pipeline::{Pipeline, PipelineConfig};
use deepflow_capture::source::{self, Next};
use deepflow_core::record::JsonlThread;
use deepflow_protocols::L7Config;
use deepflow_protocols::capture::L7Observer;
use deepflow_protocols::red::{RedAggregator, RedConfig};

// the agent's allocator with the agent's options
#[path = "../../examples/deepflow-agent/src/alloc.rs"]
mod alloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let red_on = !args.iter().any(|a| a == "--no-red");
    // `--jsonl`: also serialize every row as the agent's `--format jsonl` does (to a sink)
    let jsonl = args.iter().any(|a| a == "--jsonl");
    // `--no-net-metrics`: no 1 s / 1 min network metrics, as `analyze --emit sessions` does
    let net_metrics = !args.iter().any(|a| a == "--no-net-metrics");
    let mut pos = args.iter().filter(|a| !a.starts_with("--"));
    let Some(path) = pos.next().map(PathBuf::from) else {
        eprintln!("usage: l7_pipeline FILE.pcap [RUNS] [--no-red] [--jsonl] [--no-net-metrics]");
        std::process::exit(2);
    };
    let runs: usize = pos.next().and_then(|r| r.parse().ok()).unwrap_or(3);
    let mut best = f64::MAX;
    let mut best_cpu = f64::MAX;
    for _ in 0..runs {
        let cpu0 = thread_cpu_s();
        let mut src = match source::open_file(&path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("l7_pipeline: {e}");
                std::process::exit(1);
            }
        };
        let mut cfg = PipelineConfig::default();
        if !net_metrics {
            cfg.flow.metrics.per_second = false;
            cfg.flow.metrics.per_minute = false;
        }
        let mut pipe = Pipeline::new(cfg, L7Observer::new(L7Config::default()));
        let mut red = RedAggregator::new(RedConfig::default());
        let mut app = Vec::new();
        let (mut packets, mut rows, mut flows, mut metrics) = (0u64, 0usize, 0usize, 0usize);
        // as the agent's `--format jsonl` does: a writer thread serializes the rows
        let mut writer = if jsonl { JsonlThread::spawn(std::io::sink()).ok() } else { None };
        let mut drain = |pipe: &mut Pipeline<L7Observer>, red: &mut RedAggregator, app: &mut Vec<_>| {
            let batch = pipe.table_mut().observer_mut().rows_mut();
            rows += batch.len();
            if red_on {
                for row in batch.iter() {
                    red.add(row);
                }
            }
            match &mut writer {
                Some(w) => w.send(batch),
                None => batch.clear(),
            }
            if red_on {
                red.flush(pipe.stats().last_timestamp_us, app);
            }
            flows += pipe.drain_flows().len();
            metrics += pipe.drain_metrics().len();
        };
        let t = Instant::now();
        loop {
            match src.next_packet() {
                Ok(Next::Packet(p)) => pipe.process_raw(&p),
                Ok(Next::Idle) => continue,
                Ok(Next::End) => break,
                Err(e) => {
                    eprintln!("l7_pipeline: {e}");
                    break;
                }
            }
            packets += 1;
            if packets % 4096 == 0 {
                drain(&mut pipe, &mut red, &mut app);
            }
        }
        pipe.finish();
        drain(&mut pipe, &mut red, &mut app);
        red.finish(&mut app);
        if let Some(w) = writer {
            let _ = w.finish();
        }
        let s = t.elapsed().as_secs_f64();
        best = best.min(s);
        let cpu = thread_cpu_s() - cpu0;
        best_cpu = best_cpu.min(cpu);
        let _ = writeln!(
            std::io::stdout().lock(),
            "{packets} packets, {flows} flows, {rows} l7 rows, {} app metric rows, {metrics} metric rows in {s:.3} s = {:.2} M packets/s",
            app.len(),
            packets as f64 / s / 1e6
        );
    }
    let _ = writeln!(std::io::stdout().lock(), "best {best:.3} s; packet loop thread on CPU {best_cpu:.3} s");
}

/// CPU time of the calling thread in seconds (`/proc/thread-self/schedstat`, ns; 0 elsewhere):
/// on a loaded machine the packet loop's own CPU time compares better than wall time.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}
