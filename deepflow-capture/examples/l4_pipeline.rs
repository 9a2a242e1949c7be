//! Times the L4 path of `deepflow-agent analyze --no-l7` without the agent: decode, defrag,
//! flow table, TCP analysis and reassembly, L4 metrics, flows and 1 s/1 min network metrics
//! drained as they close. No L7, no output. Builds from deepflow-capture alone, so an A/B of a
//! change in this crate needs no workspace release build:
//!   cargo run --release -p deepflow-capture --example l4_pipeline -- FILE.pcap [RUNS]
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use deepflow_capture::flow::NoL7;
use deepflow_capture::pipeline::{Pipeline, PipelineConfig};
use deepflow_capture::source::{self, Next};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: l4_pipeline FILE.pcap [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(3);
    let mut best = f64::MAX;
    for _ in 0..runs {
        let mut src = match source::open_file(&path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("l4_pipeline: {e}");
                std::process::exit(1);
            }
        };
        let mut pipe = Pipeline::new(PipelineConfig::default(), NoL7);
        let (mut packets, mut flows, mut metrics) = (0u64, 0usize, 0usize);
        let t = Instant::now();
        loop {
            match src.next_packet() {
                Ok(Next::Packet(p)) => pipe.process_raw(&p),
                Ok(Next::Idle) => continue,
                Ok(Next::End) => break,
                Err(e) => {
                    eprintln!("l4_pipeline: {e}");
                    break;
                }
            }
            packets += 1;
            if packets % 4096 == 0 {
                flows += pipe.drain_flows().len();
                metrics += pipe.drain_metrics().len();
            }
        }
        pipe.finish();
        flows += pipe.drain_flows().len();
        metrics += pipe.drain_metrics().len();
        let s = t.elapsed().as_secs_f64();
        best = best.min(s);
        // a closed stdout (`| head`) is not an error worth a panic
        let _ = writeln!(
            std::io::stdout().lock(),
            "{packets} packets, {flows} flows, {metrics} metric rows in {s:.3} s = {:.2} M packets/s",
            packets as f64 / s / 1e6
        );
    }
    let _ = writeln!(std::io::stdout().lock(), "best {best:.3} s");
}
