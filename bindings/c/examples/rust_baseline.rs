//! Baseline of the binding benchmarks (bindings/bench/run.sh): records/s through the Rust API
//! directly (deepflow-capture Pipeline + L7Observer, the pipeline the C ABI wraps), once
//! collecting the row structs only and once building the same Arrow batches as
//! `df_analyzer_take_arrow`. Usage: rust_baseline PCAP [RUNS]

use std::path::Path;
use std::time::Instant;

use deepflow_capture::pipeline::{Pipeline, PipelineConfig};
use deepflow_capture::source::{self, Next};
use deepflow_protocols::L7Config;
use deepflow_protocols::capture::L7Observer;
use deepflow_store::Record;
use deepflow_tagging::TaggedRow;

fn run(pcap: &Path, arrow: bool) -> Result<(u64, f64), Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let mut pipe = Pipeline::new(PipelineConfig::default(), L7Observer::new(L7Config::default()));
    let mut src = source::open_file(pcap)?;
    let mut records = 0u64;
    let mut n = 0u64;
    loop {
        let end = match src.next_packet()? {
            Next::Packet(p) => {
                pipe.process_raw(&p);
                n += 1;
                false
            }
            Next::Idle => false,
            Next::End => {
                pipe.finish();
                true
            }
        };
        if end || n.is_multiple_of(65536) {
            let l7 = pipe.table_mut().observer_mut().drain_rows();
            let flows = pipe.drain_flows();
            if arrow {
                let wrap = |row| TaggedRow { row, tags_0: Default::default(), tags_1: Default::default() };
                let l7: Vec<_> = l7.into_iter().map(wrap).collect();
                let flows: Vec<_> = flows
                    .into_iter()
                    .map(|row| TaggedRow { row, tags_0: Default::default(), tags_1: Default::default() })
                    .collect();
                records += deepflow_core::record::L7FlowLog::to_batch(&l7)?.num_rows() as u64;
                records += deepflow_core::record::L4FlowLog::to_batch(&flows)?.num_rows() as u64;
            } else {
                records += (l7.len() + flows.len()) as u64;
            }
        }
        if end {
            break;
        }
    }
    Ok((records, t0.elapsed().as_secs_f64()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(pcap) = args.get(1) else {
        eprintln!("usage: rust_baseline PCAP [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    for (name, arrow) in [("rust-rows", false), ("rust-arrow", true)] {
        let mut best = f64::MAX;
        let mut recs = 0;
        for _ in 0..runs {
            let (r, s) = run(Path::new(pcap), arrow)?;
            recs = r;
            best = best.min(s);
        }
        println!("{name}: {recs} records in {best:.3} s = {:.0} records/s", recs as f64 / best);
    }
    Ok(())
}
