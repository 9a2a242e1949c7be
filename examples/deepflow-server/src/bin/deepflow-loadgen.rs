//! `deepflow-loadgen`: simulated agents for load and fault tests of the agent gRPC ingest.
//!
//! Each simulated agent is a thread with its own [`Sender`] (the one `deepflow-agent --server`
//! uses) that produces synthetic `l4_flow_log` rows at its share of `--rate` rows per second for
//! `--seconds`, then waits for the acknowledgements. Flow ids are unique: agent `i` (from 1) sends
//! `i << 40 | n` for its n-th row, so a test can check exactly which rows are stored.
//!
//! Prints one JSON object on stdout: rows sent, acknowledged, refused, dropped, still buffered,
//! retries, failovers, and the rate achieved. `--acked-out FILE` also writes one line per
//! acknowledged batch: `agent first_flow_id rows duplicate`.
//!
//! With `--controller URL` every simulated agent also runs the agent's controller client
//! (deepflow-agent's `src/controller.rs`, included here): it registers as `loadgen-<i>`, sends
//! to the ingester the controller assigns and switches when it reassigns, and reports its
//! counters and the config version it received (a simulated agent applies nothing).
//!
//! ```text
//! deepflow-loadgen --server http://127.0.0.1:30033 --agents 10 --rate 100000 --seconds 60
//! deepflow-loadgen --controller http://127.0.0.1:20416 --agents 4 --rate 4000 --seconds 10
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use deepflow_core::record::L4FlowLog;
use deepflow_store::transport::{OnFull, Sender, SenderConfig, SenderStats};
use deepflow_tagging::TaggedRow;

#[allow(dead_code)]
#[path = "../../../deepflow-agent/src/controller.rs"]
mod controller;
#[path = "../../../deepflow-agent/src/sender_slot.rs"]
mod sender_slot;

#[derive(Parser)]
#[command(name = "deepflow-loadgen", about = "simulated deepflow agents sending l4_flow_log rows over gRPC")]
struct Args {
    /// Server URL (repeat for failover, in order of preference).
    #[arg(long = "server", required_unless_present = "controller")]
    servers: Vec<String>,
    /// Controller (a deepflow-server's HTTP API): each agent registers and sends to the
    /// ingester it assigns (`--server` URLs until the first answer).
    #[arg(long)]
    controller: Option<String>,
    /// Shared token.
    #[arg(long)]
    token: Option<String>,
    /// Simulated agents.
    #[arg(long, default_value_t = 10)]
    agents: u32,
    /// Rows per second, all agents together.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// How long to produce rows.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Rows per batch.
    #[arg(long, default_value_t = 5000)]
    batch_rows: usize,
    /// Unacknowledged batches kept in memory per agent.
    #[arg(long, default_value_t = 64)]
    buffer_batches: usize,
    /// Batches in flight per agent.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Drop the oldest batch when the buffer is full instead of waiting.
    #[arg(long)]
    drop_oldest: bool,
    /// After producing, wait at most this long for the acknowledgements (seconds).
    #[arg(long, default_value_t = 120)]
    drain_seconds: u64,
    /// Write one line per acknowledged batch here: `agent first_flow_id rows duplicate`.
    #[arg(long)]
    acked_out: Option<PathBuf>,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn row(flow_id: u64, t: u64, n: u64) -> TaggedRow<L4FlowLog> {
    let r = L4FlowLog {
        flow_id,
        start_time: t,
        end_time: t + 1500,
        duration: 1500,
        ip_0: Some(std::net::IpAddr::from([10, 0, (n >> 8) as u8, n as u8])),
        ip_1: Some(std::net::IpAddr::from([10, 1, 0, 1])),
        client_port: 30000 + (n % 20000) as u16,
        server_port: 80,
        protocol: "TCP",
        packet_tx: 10,
        packet_rx: 8,
        byte_tx: 1200,
        byte_rx: 5400,
        ..Default::default()
    };
    TaggedRow { row: r, tags_0: Default::default(), tags_1: Default::default() }
}

struct AgentResult {
    stats: SenderStats,
    acked: Vec<(u64, u64, bool)>,
    ctl: Option<controller::ClientStats>,
}

/// A simulated agent as the controller client sees it.
struct SimHost {
    slot: sender_slot::SenderSlot,
}

impl controller::Host for SimHost {
    fn counters(&self) -> BTreeMap<String, u64> {
        self.slot.counters()
    }
    fn current_ingester(&self) -> Option<String> {
        self.slot.current_ingester()
    }
    fn set_ingesters(&self, urls: &[String]) -> Result<(), String> {
        self.slot.set_ingesters(urls)
    }
    fn apply(&self, _: u64, _: &controller::AgentSettings) -> Vec<String> {
        Vec::new()
    }
}

fn agent(i: u32, a: &Args) -> Result<AgentResult, String> {
    let mut cfg = SenderConfig::new(a.servers.clone());
    cfg.token = a.token.clone();
    cfg.agent_id = format!("loadgen-{i}");
    cfg.buffer_batches = a.buffer_batches;
    cfg.max_in_flight = a.in_flight;
    cfg.max_batch_rows = a.batch_rows;
    cfg.record_acks = true;
    cfg.backoff_max = Duration::from_secs(1);
    cfg.request_timeout = Duration::from_secs(60);
    if a.drop_oldest {
        cfg.on_full = OnFull::DropOldest;
    }
    let agent_id = cfg.agent_id.clone();
    let sender = Arc::new(Sender::start(cfg).map_err(|e| e.to_string())?);
    let (mut host, mut ctl) = (None, None);
    if let Some(url) = &a.controller {
        let h = Arc::new(SimHost { slot: sender_slot::SenderSlot::new(sender.clone()) });
        let opts = controller::ClientOptions {
            url: url.clone(),
            token: a.token.clone(),
            log: format!("deepflow-loadgen {agent_id}"),
            agent_id,
            hostname: "loadgen".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            interfaces: Vec::new(),
            timeout: Duration::from_secs(5),
        };
        ctl = Some(controller::Controller::start(opts, h.clone())?);
        host = Some(h);
    }
    let rate = (a.rate as f64 / a.agents.max(1) as f64).max(1.0);
    let base = u64::from(i) << 40;
    let mut seq_first = std::collections::HashMap::new();
    let mut n: u64 = 0;
    let t0 = Instant::now();
    let end = Duration::from_secs(a.seconds);
    let batch = a.batch_rows.max(1) as u64;
    while t0.elapsed() < end {
        let due = ((t0.elapsed().as_secs_f64() * rate) as u64).min((a.seconds as f64 * rate) as u64);
        if due < n + batch {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let t = now_us();
        let rows: Vec<_> = (0..batch).map(|k| row(base | (n + k), t + k, n + k)).collect();
        let seqs = sender.send_records(&rows).map_err(|e| e.to_string())?;
        if let Some(s) = seqs.first() {
            seq_first.insert(*s, base | n);
        }
        n += batch;
    }
    sender.flush(Duration::from_secs(a.drain_seconds));
    let acked =
        sender.take_acked().into_iter().filter_map(|b| Some((*seq_first.get(&b.seq)?, b.rows, b.duplicate))).collect();
    if let Some(c) = &mut ctl {
        c.halt();
    }
    if let Some(h) = &host {
        h.slot.release(); // its ingester is remembered for the final sync
    }
    let stats = match Arc::try_unwrap(sender) {
        Ok(s) => s.close(Duration::ZERO),
        Err(s) => s.stats(),
    };
    let ctl = ctl.map(|c| {
        if let Some(h) = &host {
            h.slot.set_final(stats.clone());
        }
        c.sync_now();
        c.stats()
    });
    Ok(AgentResult { stats, acked, ctl })
}

fn main() {
    let a = Args::parse();
    let t0 = Instant::now();
    let results: Vec<Result<AgentResult, String>> = std::thread::scope(|s| {
        let a = &a;
        let hs: Vec<_> = (1..=a.agents).map(|i| s.spawn(move || agent(i, a))).collect();
        hs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("agent thread panicked".into()))).collect()
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let mut total = SenderStats::default();
    let mut lines = String::new();
    let mut per_agent = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                eprintln!("deepflow-loadgen: agent {}: {e}", i + 1);
                std::process::exit(1);
            }
        };
        let s = &r.stats;
        total.rows_queued += s.rows_queued;
        total.rows_acked += s.rows_acked;
        total.batches_acked += s.batches_acked;
        total.duplicate_acks += s.duplicate_acks;
        total.rows_rejected += s.rows_rejected;
        total.rows_dropped += s.rows_dropped;
        total.buffered_rows += s.buffered_rows;
        total.retries += s.retries;
        total.failovers += s.failovers;
        total.auth_failures += s.auth_failures;
        total.blocked_ms += s.blocked_ms;
        if s.last_error.is_some() {
            total.last_error.clone_from(&s.last_error);
        }
        per_agent.push(serde_json::json!({
            "agent_id": format!("loadgen-{}", i + 1),
            "rows_sent": s.rows_queued,
            "rows_acked": s.rows_acked,
            "failovers": s.failovers,
            "ingesters": r.ctl.as_ref().map(|c| c.ingesters.clone()),
            "reassignments": r.ctl.as_ref().map(|c| c.reassignments),
            "controller_syncs": r.ctl.as_ref().map(|c| c.syncs),
            "controller_failures": r.ctl.as_ref().map(|c| c.failures),
            "config_version": r.ctl.as_ref().map(|c| c.config_version),
        }));
        for (first, rows, dup) in &r.acked {
            lines.push_str(&format!("{} {first} {rows} {}\n", i + 1, u8::from(*dup)));
        }
    }
    if let Some(p) = &a.acked_out
        && let Err(e) = std::fs::write(p, lines)
    {
        eprintln!("deepflow-loadgen: {}: {e}", p.display());
        std::process::exit(1);
    }
    let out = serde_json::json!({
        "agents": a.agents,
        "target_rows_per_s": a.rate,
        "seconds": a.seconds,
        "elapsed_s": elapsed,
        "rows_sent": total.rows_queued,
        "rows_acked": total.rows_acked,
        "batches_acked": total.batches_acked,
        "duplicate_acks": total.duplicate_acks,
        "rows_rejected": total.rows_rejected,
        "rows_dropped": total.rows_dropped,
        "rows_unacked": total.buffered_rows,
        "retries": total.retries,
        "failovers": total.failovers,
        "auth_failures": total.auth_failures,
        "blocked_ms": total.blocked_ms,
        "sent_rows_per_s": total.rows_queued as f64 / (a.seconds.max(1) as f64),
        "acked_rows_per_s": total.rows_acked as f64 / elapsed.max(1e-9),
        "last_error": total.last_error,
        "per_agent": per_agent,
    });
    println!("{out}");
    let _ = std::io::stdout().flush();
}
