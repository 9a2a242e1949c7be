//! Shared helpers for integration tests on real captures: run a pcap through the capture
//! pipeline and the L7 engine, and ask tshark (the independent oracle) about the same file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use deepflow_capture::pipeline::{Pipeline, PipelineConfig};
use deepflow_capture::source::{Next, open_file};
use deepflow_core::record::{L4FlowLog, L7FlowLog};
use deepflow_protocols::capture::L7Observer;
use deepflow_protocols::{EmitMode, L7Config};

/// `tests/fixtures/<proto>/<proto>.pcap` of this crate.
pub fn fixture(proto: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(proto).join(format!("{proto}.pcap"))
}

/// Result of running a capture through the pipeline.
pub struct Analysis {
    pub l7: Vec<L7FlowLog>,
    pub flows: Vec<L4FlowLog>,
    pub observer: L7Observer,
}

/// Runs `path` through decode → flows → reassembly → L7 with `cfg`.
pub fn analyze_with(path: &Path, cfg: L7Config) -> Analysis {
    let mut src = open_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut pipe = Pipeline::new(PipelineConfig::default(), L7Observer::new(cfg));
    loop {
        match src.next_packet().unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
            Next::Packet(p) => pipe.process_raw(&p),
            Next::Idle => {}
            Next::End => break,
        }
    }
    pipe.finish();
    let flows = pipe.drain_flows();
    let mut observer = std::mem::replace(pipe.table_mut().observer_mut(), L7Observer::new(L7Config::default()));
    let l7 = observer.drain_rows();
    Analysis { l7, flows, observer }
}

/// Sessions (request paired with response) with the default configuration.
pub fn sessions(path: &Path) -> Vec<L7FlowLog> {
    analyze_with(path, L7Config { emit: EmitMode::Sessions, ..L7Config::default() }).l7
}

/// Every request and response as its own row.
pub fn messages(path: &Path) -> Vec<L7FlowLog> {
    analyze_with(path, L7Config { emit: EmitMode::Messages, ..L7Config::default() }).l7
}

/// True when tshark can run; tests print a SKIP line and return otherwise.
pub fn have_tshark() -> bool {
    Command::new("tshark").arg("-v").output().map(|o| o.status.success()).unwrap_or(false)
}

/// The extra tshark arguments recorded next to a fixture (`<proto>.tshark.args`, one per line;
/// relative paths in them are resolved against the fixture directory).
pub fn tshark_args(pcap: &Path) -> Vec<String> {
    let stem = pcap.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let dir = pcap.parent().unwrap_or(Path::new("."));
    let Ok(text) = std::fs::read_to_string(dir.join(format!("{stem}.tshark.args"))) else { return Vec::new() };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            // keylog / protobuf paths were absolute on the capturing machine: point them here.
            let l = l.trim().to_string();
            if let Some(pos) = l.find("uat:protobuf_search_paths:") {
                let head = &l[..pos + "uat:protobuf_search_paths:".len()];
                return format!("{head}\"{}\",\"TRUE\"", dir.display());
            }
            if let Some(pos) = l.find("tls.keylog_file:") {
                let head = &l[..pos + "tls.keylog_file:".len()];
                let name = Path::new(&l[head.len()..]).file_name().map(|n| n.to_owned()).unwrap_or_default();
                return format!("{head}{}", dir.join(name).display());
            }
            l
        })
        .collect()
}

/// `tshark -n -r PCAP <args> -Y FILTER -T fields -E occurrence=a -E aggregator=| -e F...`,
/// one Vec per packet (multi-valued fields joined with `|`).
pub fn tshark_fields(pcap: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(pcap);
    for a in tshark_args(pcap) {
        cmd.arg(a);
    }
    cmd.args(["-Y", filter, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().expect("run tshark");
    assert!(out.status.success(), "tshark failed on {}: {}", pcap.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('\t').map(str::to_string).collect()).collect()
}

/// All values of the multi-valued tshark field at column `i` of every row, flattened in order.
pub fn column(rows: &[Vec<String>], i: usize) -> Vec<String> {
    rows.iter()
        .filter_map(|r| r.get(i))
        .flat_map(|v| v.split('|').filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>())
        .collect()
}
