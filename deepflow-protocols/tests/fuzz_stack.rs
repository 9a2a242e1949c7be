//! The whole stack on bad input: frames of every real fixture, mutated, truncated, reordered
//! and duplicated, through decode → flows → reassembly → every L7 parser. Never panics, and
//! every bound holds (fixed seed, bounded count).

use std::path::Path;

use deepflow_capture::pipeline::{Pipeline, PipelineConfig};
use deepflow_capture::source::{Next, open_file};
use deepflow_core::wire::LinkType;
use deepflow_protocols::capture::L7Observer;
use deepflow_protocols::{EmitMode, L7Config};

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus() -> Vec<(LinkType, u64, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files = Vec::new();
    for d in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let p = f.path();
            if matches!(p.extension().and_then(|e| e.to_str()), Some("pcap" | "pcapng")) {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut v = Vec::new();
    for f in files {
        let Ok(mut src) = open_file(&f) else { continue };
        while let Ok(Next::Packet(p)) = src.next_packet() {
            v.push((p.link, p.timestamp_us, p.data.to_vec()));
        }
    }
    v
}

#[test]
fn mutated_real_traffic_through_every_parser() {
    let corpus = corpus();
    assert!(corpus.len() > 1000, "fixtures missing: {} frames", corpus.len());
    for (seed, emit) in [(0x1234_5678_9abc_def1u64, EmitMode::Sessions), (0x0fed_cba9_8765_4321, EmitMode::Messages)] {
        let mut rng = XorShift(seed);
        let cfg = L7Config { emit, ..L7Config::default() };
        let mut pipe =
            Pipeline::new(PipelineConfig { max_memory: 1 << 20, ..PipelineConfig::default() }, L7Observer::new(cfg));
        let mut rows = 0usize;
        // Walk the corpus in order (so sessions form) with local damage.
        let mut i = 0;
        let mut steps = 0;
        while steps < 40_000 {
            steps += 1;
            let (link, ts, frame) = &corpus[i % corpus.len()];
            i += 1 + usize::from(rng.below(20) == 0); // sometimes drop a frame
            let mut frame = frame.clone();
            match rng.below(10) {
                0 => {
                    let k = rng.below(frame.len());
                    if let Some(b) = frame.get_mut(k) {
                        *b = rng.next() as u8;
                    }
                }
                1 => {
                    let n = rng.below(frame.len() + 1);
                    frame.truncate(n);
                }
                2 => {
                    // Flip bytes only in the payload half of the frame.
                    for _ in 0..4 {
                        let k = frame.len() / 2 + rng.below(frame.len() / 2 + 1);
                        if let Some(b) = frame.get_mut(k) {
                            *b ^= 1 << rng.below(8);
                        }
                    }
                }
                3 => {
                    // Duplicate (a retransmission).
                    pipe.process_frame(*link, &frame, *ts, frame.len() as u32);
                }
                _ => {}
            }
            pipe.process_frame(*link, &frame, *ts, frame.len() as u32);
            rows += pipe.table_mut().observer_mut().drain_rows().len();
            assert!(pipe.budget().used() <= pipe.budget().limit());
        }
        pipe.finish();
        rows += pipe.table_mut().observer_mut().drain_rows().len();
        assert!(rows > 100, "only {rows} rows from {steps} frames");
        assert_eq!(pipe.budget().used(), 0);
    }
}
