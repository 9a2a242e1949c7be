//! `--server URL`: send the rows to deepflow-server's agent gRPC ingest instead of printing them.

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

/// Options of `--server`.
#[derive(clap::Args)]
pub struct SendArgs {
    /// Send the rows (l4_flow_log, l7_flow_log, network and application metrics) to a
    /// deepflow-server's agent gRPC port, e.g. http://127.0.0.1:30033, instead of printing them;
    /// repeat for failover (used in order; the next one takes over when one fails).
    #[arg(long = "server", value_name = "URL")]
    pub servers: Vec<String>,
    /// Shared token of the servers (`authorization: Bearer TOKEN`).
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
    use deepflow_core::record::{ApplicationMetrics, L4FlowLog, L7FlowLog, NetworkMetrics};
    use deepflow_protocols::red::{RedAggregator, RedConfig};
    use deepflow_store::transport::{OnFull, Sender, SenderConfig};
    use deepflow_tagging::TaggedRow;
    use std::time::{Duration, Instant};

    fn tagged<R>(row: R) -> TaggedRow<R> {
        TaggedRow { row, tags_0: Default::default(), tags_1: Default::default() }
    }

    /// Sends every row the pipeline produces to the servers.
    pub struct ServerSink {
        sender: Sender,
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
        /// A sink when `--server` was given.
        pub fn open(a: &SendArgs) -> Result<Option<ServerSink>, String> {
            if a.servers.is_empty() {
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
            let sender = Sender::start(cfg).map_err(|e| format!("--server: {e}"))?;
            eprintln!("deepflow-agent: sending rows to {}", a.servers.join(", then "));
            Ok(Some(ServerSink {
                sender,
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

        /// Takes the rows the pipeline produced so far; sends full batches (and everything
        /// once a second).
        pub fn rows(&mut self, pipe: &mut Pipe) -> Result<(), String> {
            for r in pipe.table_mut().observer_mut().drain_rows() {
                self.red.add(&r);
                self.l7.push(tagged(r));
            }
            self.l4.extend(pipe.drain_flows().into_iter().map(tagged));
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
                self.red.add(&r);
                self.l7.push(tagged(r));
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
            let s = self.sender.close(self.ack_timeout);
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
        pub fn open(a: &SendArgs) -> Result<Option<ServerSink>, String> {
            if a.servers.is_empty() {
                Ok(None)
            } else {
                Err("this build cannot send to a server (built without the `store` feature)".into())
            }
        }
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
