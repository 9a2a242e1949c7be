//! `deepflow-agent`: the reference agent. A thin CLI over the deepflow-rs crates.

mod alloc;
#[cfg(feature = "store")]
mod controller;
#[cfg(all(feature = "ebpf", target_os = "linux"))]
mod ebpf_cmd;
#[cfg(feature = "store")]
mod live_config;
mod output;
#[cfg(feature = "store")]
mod sender_slot;
mod server_cmd;
mod store_cmd;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use deepflow_capture::budget::parse_size;
use deepflow_capture::pipeline::{Pipeline, PipelineConfig};
use deepflow_capture::source::{self, Next, PacketSource};
use deepflow_protocols::capture::L7Observer;
use deepflow_protocols::{EmitMode, L7Config};

use output::{Emit, Format, Printer};

#[derive(Parser)]
#[command(
    name = "deepflow-agent",
    version,
    about = "deepflow-rs reference agent: zero-code observability from packets"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Analyze a pcap or pcapng file offline.
    Analyze {
        /// Capture file (pcap or pcapng).
        file: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Capture live from an interface (libpcap) and print rows as flows close.
    Run {
        /// Interface to capture on.
        #[arg(long, short, default_value = "lo")]
        interface: String,
        /// BPF capture filter, e.g. "tcp port 80".
        #[arg(long)]
        filter: Option<String>,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Trace sockets with eBPF (syscall tracepoints, root) instead of capturing packets;
        /// prints L7 rows with the process of each side (`--format jsonl` or a line each), or sends them (and their RED metrics) with `--server`.
        #[arg(long)]
        ebpf: bool,
        /// With --ebpf: payload bytes copied per syscall (at most 4096).
        #[arg(long, default_value_t = 1024)]
        ebpf_max_data: u32,
        /// With --ebpf: trace only this process.
        #[arg(long)]
        ebpf_pid: Option<u32>,
        #[command(flatten)]
        common: Common,
    },
    /// Profile CPU usage with eBPF (perf cpu-clock on every CPU, root): writes folded stacks
    /// and flamegraph SVGs (on_cpu.*, off_cpu.* with --off-cpu) into --out.
    Profile {
        /// Process to profile (default: every process).
        #[arg(long)]
        pid: Option<u32>,
        /// How long to sample.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Samples per second per CPU.
        #[arg(long, default_value_t = 99)]
        frequency: u64,
        /// Also record off-CPU time per stack (sched_switch).
        #[arg(long)]
        off_cpu: bool,
    },
    /// Run SQL over tables written by `analyze --format parquet --out DIR`.
    Query {
        /// Directory with the tables.
        dir: PathBuf,
        /// SQL, e.g. "SELECT l7_protocol, count(*) FROM l7_flow_log GROUP BY 1".
        sql: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = store_cmd::QueryFormat::Table)]
        format: store_cmd::QueryFormat,
    },
}

#[derive(clap::Args)]
struct Common {
    /// Output format. `parquet` writes the l4_flow_log, l7_flow_log, network and application
    /// tables under `--out DIR` (query them with `deepflow-agent query DIR SQL`).
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    format: FormatArg,
    /// Output directory for `--format parquet`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// What to print: `flows` (l4_flow_log), `sessions` (l7_flow_log, request paired with
    /// response), `messages` (each request and response), `metrics` (network and application
    /// metrics, 1 s and 1 min).
    #[arg(long, value_enum, default_value_t = EmitArg::Flows)]
    emit: EmitArg,
    /// Turn the L7 parsers off (L4 only).
    #[arg(long)]
    no_l7: bool,
    /// In application metrics, turn numeric, UUID and hex path segments into `{id}`.
    #[arg(long)]
    normalize_routes: bool,
    /// Memory budget shared by the flow table, defragmentation and reassembly (e.g. 256MiB).
    #[arg(long, default_value = "256MiB")]
    max_memory: String,
    /// Rows to show in the table format (largest flows first); totals always cover all.
    #[arg(long, default_value_t = 40)]
    limit: usize,
    /// Never draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Load a WASM plugin (protocol parser or message hook, see plugins/sdk); repeatable.
    #[arg(long = "plugin", value_name = "FILE.wasm")]
    plugins: Vec<PathBuf>,
    /// With `--format parquet`: tag rows (client `_0` and server `_1` ids) with the resources of
    /// this static inventory (YAML, or JSON: hosts, subnets, pods, services, labels; see
    /// deepflow-tagging); repeatable. Names and labels go to `DIR/tags/`.
    #[arg(long = "inventory", value_name = "FILE")]
    inventory: Vec<PathBuf>,
    /// With `--format parquet`: tag rows from a cloud inventory file; repeatable.
    #[arg(long = "cloud-inventory", value_name = "FILE")]
    cloud_inventory: Vec<PathBuf>,
    /// VPC of the captured traffic, for tagging (when several VPCs define the same addresses).
    #[arg(long)]
    vpc: Option<String>,
    #[command(flatten)]
    send: server_cmd::SendArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Table,
    Jsonl,
    Parquet,
}

#[derive(Clone, Copy, ValueEnum)]
enum EmitArg {
    Flows,
    Sessions,
    Messages,
    Metrics,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Analyze { file, common } => analyze(&file, &common),
        Cmd::Run { ebpf: true, duration, ebpf_max_data, ebpf_pid, common, .. } => {
            run_ebpf(duration, ebpf_max_data, ebpf_pid, &common)
        }
        Cmd::Run { interface, filter, duration, common, .. } => run_live(&interface, filter, duration, &common),
        Cmd::Profile { pid, seconds, out, frequency, off_cpu } => profile(pid, seconds, &out, frequency, off_cpu),
        Cmd::Query { dir, sql, format } => store_cmd::query(&dir, &sql, format),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deepflow-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn pipeline_config(common: &Common) -> Result<PipelineConfig, String> {
    let max_memory = parse_size(&common.max_memory)
        .ok_or_else(|| format!("--max-memory {:?}: expected a size such as 256MiB", common.max_memory))?;
    let mut cfg = PipelineConfig { max_memory, ..PipelineConfig::default() };
    // Network metrics (1 s / 1 min) are computed only where they go somewhere: printed by
    // `--emit metrics`, written by `--format parquet`, or sent to a server.
    let sent = !common.send.servers.is_empty() || common.send.controller.is_some();
    let wanted = matches!(common.emit, EmitArg::Metrics) || matches!(common.format, FormatArg::Parquet) || sent;
    if !wanted {
        cfg.flow.metrics.per_second = false;
        cfg.flow.metrics.per_minute = false;
    }
    Ok(cfg)
}

fn printer(common: &Common) -> Printer {
    let format = match common.format {
        FormatArg::Table | FormatArg::Parquet => Format::Table,
        FormatArg::Jsonl => Format::Jsonl,
    };
    let emit = match common.emit {
        EmitArg::Flows => Emit::Flows,
        EmitArg::Sessions => Emit::Sessions,
        EmitArg::Messages => Emit::Messages,
        EmitArg::Metrics => Emit::Metrics,
    };
    Printer::new(format, emit, common.limit, common.normalize_routes)
}

fn observer(common: &Common) -> Result<L7Observer, String> {
    let emit = if matches!(common.emit, EmitArg::Messages) { EmitMode::Messages } else { EmitMode::Sessions };
    let mut cfg = L7Config { emit, ..L7Config::default() };
    if common.no_l7 {
        cfg.enabled_protocols = vec!["none".to_string()];
    }
    let mut obs = L7Observer::new(cfg);
    let limits = deepflow_protocols::wasm::WasmLimits::default();
    let plugins = common
        .plugins
        .iter()
        .map(|p| {
            deepflow_protocols::wasm::WasmPlugin::from_file(p, limits.clone())
                .map_err(|e| format!("--plugin {}: {e}", p.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    deepflow_protocols::wasm::install_all(obs.engine_mut(), &plugins).map_err(|e| e.to_string())?;
    Ok(obs)
}

/// What the agent runs with, for the controller's config (which settings need a restart).
fn running(common: &Common, interface: Option<&str>) -> server_cmd::Running {
    server_cmd::Running {
        interfaces: interface.map(|i| vec![i.to_string()]),
        plugins: common.plugins.iter().map(|p| p.display().to_string()).collect(),
    }
}

fn analyze(path: &Path, common: &Common) -> Result<(), String> {
    let cfg = pipeline_config(common)?;
    let mut src = source::open_file(path).map_err(|e| e.to_string())?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let show_progress = !common.no_progress && size > 4 << 20 && std::io::stderr().is_terminal();
    let mut pipe = Pipeline::new(cfg, observer(common)?);
    let mut out = printer(common);
    let tags = store_cmd::TagSources {
        inventory: common.inventory.clone(),
        cloud: common.cloud_inventory.clone(),
        vpc: common.vpc.clone(),
    };
    if !tags.is_empty() && !matches!(common.format, FormatArg::Parquet) {
        return Err("--inventory/--cloud-inventory tag the rows written by --format parquet --out DIR".into());
    }
    let mut parquet = match (common.format, &common.out) {
        (FormatArg::Parquet, Some(dir)) => Some(store_cmd::ParquetSink::open(dir, &tags)?),
        (FormatArg::Parquet, None) => return Err("--format parquet needs --out DIR".into()),
        _ => None,
    };
    let mut server = server_cmd::ServerSink::open(&common.send, running(common, None))?;
    if server.is_some() && parquet.is_some() {
        return Err("--server/--controller and --format parquet: choose one".into());
    }
    if let Some(s) = &server {
        s.install(pipe.table_mut().observer_mut());
    }
    let started = Instant::now();
    let mut last_draw = Instant::now();
    let mut n: u64 = 0;
    loop {
        match src.next_packet().map_err(|e| e.to_string())? {
            Next::Packet(p) => pipe.process_raw(&p),
            Next::Idle => continue,
            Next::End => break,
        }
        n += 1;
        if n.is_multiple_of(4096) {
            if let Some(s) = &mut server {
                s.rows(&mut pipe)?;
            } else {
                match &mut parquet {
                    Some(p) => p.rows(&mut pipe)?,
                    None => out.rows(&mut pipe),
                }
            }
            if show_progress && last_draw.elapsed() > Duration::from_millis(200) {
                last_draw = Instant::now();
                let read = src.stats().offset;
                let pct = if size > 0 { (read as f64 / size as f64 * 100.0).min(100.0) } else { 0.0 };
                eprint!("\ranalyzing {}: {pct:5.1}% {n} packets", path.display());
                let _ = std::io::stderr().flush();
            }
        }
    }
    pipe.finish();
    if let Some(mut s) = server {
        s.rows(&mut pipe)?;
        return s.finish();
    }
    if let Some(mut p) = parquet {
        p.rows(&mut pipe)?;
        return p.finish();
    }
    out.rows(&mut pipe);
    if show_progress {
        eprintln!("\ranalyzing {}: 100.0% {n} packets in {:.2?}", path.display(), started.elapsed());
    }
    let sstats = src.stats();
    out.finish(&pipe, &path.display().to_string());
    if let Some(off) = sstats.truncated_at {
        eprintln!(
            "deepflow-agent: warning: {}: the last record is truncated at byte offset {off}; the {} packets before it were analyzed",
            path.display(),
            sstats.packets
        );
    }
    Ok(())
}

#[cfg(feature = "live")]
fn run_live(interface: &str, filter: Option<String>, duration: Option<u64>, common: &Common) -> Result<(), String> {
    use deepflow_capture::source::live::{LiveConfig, LiveSource};
    let cfg = pipeline_config(common)?;
    let mut src = LiveSource::open(LiveConfig { interface: interface.to_string(), filter, ..LiveConfig::default() })
        .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)).map_err(|e| e.to_string())?;
    }
    eprintln!("deepflow-agent: capturing on {interface}; Ctrl-C to stop");
    let deadline = duration.map(|s| Instant::now() + Duration::from_secs(s));
    let mut pipe = Pipeline::new(cfg, observer(common)?);
    let mut out = printer(common);
    let mut server = server_cmd::ServerSink::open(&common.send, running(common, Some(interface)))?;
    if let Some(s) = &server {
        s.install(pipe.table_mut().observer_mut());
    }
    while !stop.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
        match src.next_packet().map_err(|e| e.to_string())? {
            Next::Packet(p) => pipe.process_raw(&p),
            Next::Idle => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                pipe.idle(now.as_micros() as u64);
            }
            Next::End => break,
        }
        match &mut server {
            Some(s) => s.rows(&mut pipe)?,
            None => out.rows(&mut pipe),
        }
    }
    pipe.finish();
    if let Some(mut s) = server {
        s.rows(&mut pipe)?;
        let s2 = src.stats();
        eprintln!("deepflow-agent: libpcap dropped {} packets, interface dropped {}", s2.dropped, s2.if_dropped);
        return s.finish();
    }
    out.rows(&mut pipe);
    let s = src.stats();
    out.finish(&pipe, interface);
    eprintln!("deepflow-agent: libpcap dropped {} packets, interface dropped {}", s.dropped, s.if_dropped);
    Ok(())
}

#[cfg(not(feature = "live"))]
fn run_live(_: &str, _: Option<String>, _: Option<u64>, _: &Common) -> Result<(), String> {
    Err("this build has no live capture (built without the `live` feature)".into())
}

#[cfg(all(feature = "ebpf", target_os = "linux"))]
fn run_ebpf(duration: Option<u64>, max_data: u32, pid: Option<u32>, common: &Common) -> Result<(), String> {
    let jsonl = matches!(common.format, FormatArg::Jsonl);
    let server = server_cmd::ServerSink::open(&common.send, running(common, None))?;
    let mut obs = observer(common)?;
    if let Some(s) = &server {
        s.install(&mut obs);
    }
    ebpf_cmd::run(&ebpf_cmd::EbpfRun { duration, jsonl, max_data, pid }, obs, server)
}

#[cfg(all(feature = "ebpf", target_os = "linux"))]
fn profile(pid: Option<u32>, seconds: u64, out: &Path, frequency: u64, off_cpu: bool) -> Result<(), String> {
    ebpf_cmd::profile(pid, seconds, out, frequency, off_cpu)
}

#[cfg(not(all(feature = "ebpf", target_os = "linux")))]
fn run_ebpf(_: Option<u64>, _: u32, _: Option<u32>, _: &Common) -> Result<(), String> {
    Err("this build has no eBPF (Linux only, feature `ebpf`)".into())
}

#[cfg(not(all(feature = "ebpf", target_os = "linux")))]
fn profile(_: Option<u32>, _: u64, _: &Path, _: u64, _: bool) -> Result<(), String> {
    Err("this build has no eBPF (Linux only, feature `ebpf`)".into())
}
