//! Bad input never panics and never leaks budget: random and mutated frames of every link
//! type through decode → defrag → flow table → reassembly (fixed seed, bounded count).

use std::path::Path;

use deepflow_capture::flow::{FlowConfig, NoL7};
use deepflow_capture::pipeline::{Pipeline, PipelineConfig};
use deepflow_capture::source::{Next, open_file};
use deepflow_core::wire::LinkType;

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

/// Frames of the real captures committed in this crate and the bundled demo.
fn corpus() -> Vec<(LinkType, Vec<u8>)> {
    let mut v = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("../examples/data/demo.pcap")];
    if let Ok(d) = std::fs::read_dir(root.join("tests/fixtures")) {
        files.extend(
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pcap" | "pcapng"))),
        );
    }
    for f in files {
        let Ok(mut src) = open_file(&f) else { continue };
        let mut n = 0;
        while let Ok(Next::Packet(p)) = src.next_packet() {
            v.push((p.link, p.data.to_vec()));
            n += 1;
            if n >= 400 {
                break;
            }
        }
    }
    v
}

#[test]
fn mutated_and_random_frames_never_panic_or_leak() {
    let corpus = corpus();
    assert!(!corpus.is_empty());
    let links = [
        LinkType::Ethernet,
        LinkType::Raw,
        LinkType::Ipv4,
        LinkType::Ipv6,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Null,
        LinkType::Loop,
    ];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    // A small budget so that eviction and shedding paths run too.
    let cfg = PipelineConfig {
        max_memory: 64 << 10,
        flow: FlowConfig { max_flows: 200, ..FlowConfig::default() },
        ..PipelineConfig::default()
    };
    let mut pipe = Pipeline::new(cfg, NoL7);
    let mut ts = 1_700_000_000_000_000u64;
    for i in 0..60_000 {
        ts += rng.below(20_000) as u64;
        let (link, mut frame) = if i % 5 == 0 {
            let n = rng.below(200);
            (links[rng.below(links.len())], (0..n).map(|_| rng.next() as u8).collect::<Vec<u8>>())
        } else {
            corpus[rng.below(corpus.len())].clone()
        };
        match rng.below(4) {
            0 => {
                for _ in 0..=rng.below(4) {
                    if !frame.is_empty() {
                        let k = rng.below(frame.len());
                        frame[k] = rng.next() as u8;
                    }
                }
            }
            1 => frame.truncate(rng.below(frame.len() + 1)),
            2 => {
                let k = rng.below(frame.len() + 1);
                frame.insert(k, rng.next() as u8);
            }
            _ => {}
        }
        pipe.process_frame(link, &frame, ts, frame.len() as u32);
        assert!(pipe.budget().used() <= pipe.budget().limit());
    }
    pipe.finish();
    let flows = pipe.drain_flows();
    assert!(!flows.is_empty());
    assert_eq!(pipe.budget().used(), 0, "state left behind after finish");
}
