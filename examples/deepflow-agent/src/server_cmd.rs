//! `--server URL`: send the rows to deepflow-server's agent gRPC ingest instead of printing them;
//! `--controller URL`: let deepflow-server's controller assign the ingester and push the config.

use std::path::PathBuf;

use deepflow_capture::pipeline::Pipeline;
use deepflow_protocols::capture::L7Observer;

type Pipe = Pipeline<L7Observer>;

/// What to do when the buffer of unacknowledged batches is full.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OnFullArg {
    /// Wait for acknowledgements (nothing lost; capture may fall behind and the kernel drops).
    Block,
    /// Drop the oldest unsent batch (counted and reported).
    DropOldest,
}

/// What the agent runs with (to tell which settings need a restart).
#[derive(Debug, Clone, Default)]
pub struct Running {
    /// Interfaces captured on; `None` when not capturing from interfaces (a file, eBPF).
    pub interfaces: Option<Vec<String>>,
    /// WASM plugin files loaded.
    pub plugins: Vec<String>,
}

/// Options of `--server`.
#[derive(clap::Args)]
pub struct SendArgs {
    /// Send the rows (l4_flow_log, l7_flow_log, network and application metrics) to a
    /// deepflow-server's agent gRPC port, e.g. http://127.0.0.1:30033, instead of printing them;
    /// repeat for failover (used in order; the next one takes over when one fails).
    #[arg(long = "server", value_name = "URL")]
    pub servers: Vec<String>,
    /// Register with a deepflow-server controller (its HTTP API, e.g. http://127.0.0.1:20416)
    /// and send the rows to the ingester it assigns (switching when it reassigns; `--server`
    /// URLs are used until the first answer), applying the agent config it pushes.
    #[arg(long, value_name = "URL")]
    pub controller: Option<String>,
    /// Shared token of the servers (`authorization: Bearer TOKEN`), also sent to the
    /// controller.
    #[arg(long)]
    pub token: Option<String>,
    /// Agent id sent with every batch (default: the host name).
    #[arg(long)]
    pub agent_id: Option<String>,
    /// Keep unacknowledged batches beyond the memory buffer here, and leave the ones still
    /// unacknowledged at exit here for the next run to send.
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Unacknowledged batches kept in memory.
    #[arg(long, default_value_t = 256)]
    pub buffer_batches: usize,
    /// When the buffer (and spill directory) is full: block (default) or drop-oldest.
    #[arg(long, value_enum, default_value_t = OnFullArg::Block)]
    pub on_full: OnFullArg,
    /// Rows per batch.
    #[arg(long, default_value_t = 8192)]
    pub batch_rows: usize,
    /// At exit, wait this long for the acknowledgements (seconds).
    #[arg(long, default_value_t = 60)]
    pub ack_timeout: u64,
}

#[cfg(feature = "store")]
pub use enabled::*;

#[cfg(feature = "store")]
mod enabled {
    use super::*;
    use crate::controller::{AgentSettings, ClientOptions, Controller, Host};
    use crate::live_config::LiveConfig;
    use crate::sender_slot::SenderSlot;
    use deepflow_core::record::{ApplicationMetrics, L4FlowLog, L7FlowLog, NetworkMetrics};
    use deepflow_protocols::red::{RedAggregator, RedConfig};
    use deepflow_store::transport::{OnFull, Sender, SenderConfig};
    use deepflow_tagging::TaggedRow;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    /// The agent as the controller client sees it.
    struct AgentHost {
        slot: SenderSlot,
        live: Arc<LiveConfig>,
        running: Running,
    }

    impl Host for AgentHost {
        fn counters(&self) -> BTreeMap<String, u64> {
            let mut c = self.slot.counters();
            let l = &self.live;
            for (k, v) in [
                ("l7_rows_off", l.l7_rows_off.load(Ordering::Relaxed)),
                ("l7_rows_sampled_out", l.l7_rows_sampled_out.load(Ordering::Relaxed)),
                ("flows_sampled_out", l.flows_sampled_out.load(Ordering::Relaxed)),
            ] {
                c.insert(k.to_string(), v);
            }
            c
        }

        fn current_ingester(&self) -> Option<String> {
            self.slot.current_ingester()
        }

        fn set_ingesters(&self, urls: &[String]) -> Result<(), String> {
            self.slot.set_ingesters(urls)
        }

        fn apply(&self, version: u64, cfg: &AgentSettings) -> Vec<String> {
            self.live.apply("deepflow-agent", version, cfg, &self.running)
        }
    }

    fn tagged<R>(row: R) -> TaggedRow<R> {
        TaggedRow { row, tags_0: Default::default(), tags_1: Default::default() }
    }

    /// Sends every row the pipeline produces to the servers.
    pub struct ServerSink {
        sender: Arc<Sender>,
        host: Option<Arc<AgentHost>>,
        controller: Option<Controller>,
        live: Arc<LiveConfig>,
        red: RedAggregator,
        app: Vec<ApplicationMetrics>,
        l4: Vec<TaggedRow<L4FlowLog>>,
        l7: Vec<TaggedRow<L7FlowLog>>,
        net: Vec<TaggedRow<NetworkMetrics>>,
        appm: Vec<TaggedRow<ApplicationMetrics>>,
        batch_rows: usize,
        last_send: Instant,
        ack_timeout: Duration,
    }

    impl ServerSink {
        /// A sink when `--server` or `--controller` was given. `running` says what the agent
        /// runs with (for the controller's config).
        pub fn open(a: &SendArgs, running: Running) -> Result<Option<ServerSink>, String> {
            if a.servers.is_empty() && a.controller.is_none() {
                return Ok(None);
            }
            let mut cfg = SenderConfig::new(a.servers.clone());
            cfg.token = a.token.clone();
            if let Some(id) = &a.agent_id {
                cfg.agent_id = id.clone();
            }
            cfg.spill_dir = a.spill_dir.clone();
            cfg.buffer_batches = a.buffer_batches.max(1);
            cfg.max_batch_rows = a.batch_rows.max(1);
            cfg.on_full = match a.on_full {
                OnFullArg::Block => OnFull::Block,
                OnFullArg::DropOldest => OnFull::DropOldest,
            };
            let agent_id = cfg.agent_id.clone();
            let sender = Arc::new(Sender::start(cfg).map_err(|e| format!("--server: {e}"))?);
            if !a.servers.is_empty() {
                eprintln!("deepflow-agent: sending rows to {}", a.servers.join(", then "));
            }
            let live = Arc::new(LiveConfig::default());
            let (mut host, mut controller) = (None, None);
            if let Some(url) = &a.controller {
                let h = Arc::new(AgentHost {
                    slot: SenderSlot::new(sender.clone()),
                    live: live.clone(),
                    running: running.clone(),
                });
                let opts = ClientOptions {
                    url: url.clone(),
                    token: a.token.clone(),
                    agent_id,
                    hostname: deepflow_store::transport::default_agent_id(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    interfaces: running.interfaces.clone().unwrap_or_default(),
                    timeout: Duration::from_secs(5),
                    log: "deepflow-agent".into(),
                };
                controller = Some(Controller::start(opts, h.clone())?);
                host = Some(h);
            }
            Ok(Some(ServerSink {
                sender,
                host,
                controller,
                live,
                red: RedAggregator::new(RedConfig::default()),
                app: Vec::new(),
                l4: Vec::new(),
                l7: Vec::new(),
                net: Vec::new(),
                appm: Vec::new(),
                batch_rows: a.batch_rows.max(1),
                last_send: Instant::now(),
                ack_timeout: Duration::from_secs(a.ack_timeout),
            }))
        }

        /// Lets the controller's config switch the L7 parsers of `obs` on and off.
        pub fn install(&self, obs: &mut deepflow_protocols::capture::L7Observer) {
            if self.controller.is_some() {
                self.live.install(obs);
            }
        }

        /// Counts and keeps an L7 row unless its protocol is off (then no metrics either) or its
        /// flow is sampled out (metrics still count it).
        fn l7_row(&mut self, r: L7FlowLog) {
            let l = &self.live;
            if !l.enabled(r.l7_protocol) {
                l.l7_rows_off.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.red.add(&r);
            if l.keep_flow(r.flow_id) {
                self.l7.push(tagged(r));
            } else {
                l.l7_rows_sampled_out.fetch_add(1, Ordering::Relaxed);
            }
        }

        /// Takes the rows the pipeline produced so far; sends full batches (and everything
        /// once a second).
        pub fn rows(&mut self, pipe: &mut Pipe) -> Result<(), String> {
            for r in pipe.table_mut().observer_mut().drain_rows() {
                self.l7_row(r);
            }
            for f in pipe.drain_flows() {
                if self.live.keep_flow(f.flow_id) {
                    self.l4.push(tagged(f));
                } else {
                    self.live.flows_sampled_out.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.net.extend(pipe.drain_metrics().into_iter().map(tagged));
            if let Some(now) = pipe.stats().first_timestamp_us.map(|_| pipe.stats().last_timestamp_us) {
                self.red.flush(now, &mut self.app);
            }
            self.appm.extend(self.app.drain(..).map(tagged));
            let all = self.last_send.elapsed() >= Duration::from_secs(1);
            self.send(all)
        }

        /// Takes L7 rows produced outside a packet pipeline (the eBPF socket tracer): sends
        /// them with the RED metrics they make, like [`ServerSink::rows`]; `now_us` closes the
        /// metric windows that ended before it.
        pub fn l7_rows(&mut self, rows: Vec<L7FlowLog>, now_us: u64) -> Result<(), String> {
            for r in rows {
                self.l7_row(r);
            }
            self.red.flush(now_us, &mut self.app);
            self.appm.extend(self.app.drain(..).map(tagged));
            let all = self.last_send.elapsed() >= Duration::from_secs(1);
            self.send(all)
        }

        fn send(&mut self, all: bool) -> Result<(), String> {
            let n = if all { 1 } else { self.batch_rows };
            let e = |e: deepflow_store::StoreError| e.to_string();
            if self.l4.len() >= n {
                self.sender.send_records(&std::mem::take(&mut self.l4)).map_err(e)?;
            }
            if self.l7.len() >= n {
                self.sender.send_records(&std::mem::take(&mut self.l7)).map_err(e)?;
            }
            if self.net.len() >= n {
                self.sender.send_records(&std::mem::take(&mut self.net)).map_err(e)?;
            }
            if self.appm.len() >= n {
                self.sender.send_records(&std::mem::take(&mut self.appm)).map_err(e)?;
            }
            if all {
                self.last_send = Instant::now();
            }
            Ok(())
        }

        /// Sends what is left, waits for the acknowledgements and reports on stderr; an error
        /// when rows were not acknowledged.
        pub fn finish(mut self) -> Result<(), String> {
            self.red.finish(&mut self.app);
            self.appm.extend(self.app.drain(..).map(tagged));
            self.send(true)?;
            // the controller thread stops using the sender; the final counters go in one
            // last sync
            if let Some(c) = &mut self.controller {
                c.halt();
            }
            if let Some(h) = &self.host {
                h.slot.release(); // its ingester is remembered for the final sync
            }
            let s = match Arc::try_unwrap(self.sender) {
                Ok(sender) => sender.close(self.ack_timeout),
                Err(shared) => {
                    shared.flush(self.ack_timeout);
                    shared.stats()
                }
            };
            if let (Some(h), Some(c)) = (&self.host, &self.controller) {
                h.slot.set_final(s.clone());
                c.sync_now();
            }
            eprintln!(
                "deepflow-agent: server acknowledged {} of {} rows ({} batches; {} duplicate acks, {} rows refused, {} dropped, {} unacknowledged{}, {} retries, {} failovers)",
                s.rows_acked,
                s.rows_queued,
                s.batches_acked,
                s.duplicate_acks,
                s.rows_rejected,
                s.rows_dropped,
                s.buffered_rows,
                if s.buffered_batches > 0 && s.batches_spilled > 0 { " (kept in the spill directory)" } else { "" },
                s.retries,
                s.failovers
            );
            if s.rows_acked < s.rows_queued {
                return Err(format!(
                    "{} rows not acknowledged{}",
                    s.rows_queued - s.rows_acked,
                    s.last_error.map(|e| format!(" (last error: {e})")).unwrap_or_default()
                ));
            }
            Ok(())
        }
    }
}

#[cfg(not(feature = "store"))]
pub use disabled::*;

#[cfg(not(feature = "store"))]
mod disabled {
    use super::*;

    pub struct ServerSink;

    impl ServerSink {
        pub fn open(a: &SendArgs, _: Running) -> Result<Option<ServerSink>, String> {
            if a.servers.is_empty() && a.controller.is_none() {
                Ok(None)
            } else {
                Err("this build cannot send to a server (built without the `store` feature)".into())
            }
        }
        pub fn install(&self, _: &mut deepflow_protocols::capture::L7Observer) {}
        pub fn rows(&mut self, _: &mut Pipe) -> Result<(), String> {
            Ok(())
        }
        pub fn l7_rows(&mut self, _: Vec<deepflow_core::record::L7FlowLog>, _: u64) -> Result<(), String> {
            Ok(())
        }
        pub fn finish(self) -> Result<(), String> {
            Ok(())
        }
    }
}
