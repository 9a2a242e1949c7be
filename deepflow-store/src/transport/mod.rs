//! Agent → server transport (feature `transport`): rows travel as Arrow IPC streams inside the
//! protobuf [`Batch`] of `deepflow-core` (`proto/deepflow/ingest/v1/ingest.proto`) over gRPC
//! (`deepflow.ingest.v1.Ingest/Send`, tonic), and the server answers with an [`Ack`] once the
//! rows are durable.
//!
//! - [`payload`]: records / record batches ⇄ Arrow IPC payloads (zstd or LZ4 frame body
//!   compression), validated against the table schema on the way in.
//! - [`Sender`] (agent side): bounded in-memory buffer of unacknowledged batches with an
//!   optional spill directory, retries with exponential backoff, failover across server URLs,
//!   and a documented full-buffer policy ([`OnFull`]: block, the default, or drop the oldest),
//!   all counted in [`SenderStats`].
//! - [`BatchWriter`] and [`Dedup`] (server side): group-commit writes of validated batches into
//!   the store's Parquet layout, acknowledged only after the files are durable; and a filter
//!   that acknowledges a batch sent twice without writing it twice.
//! - [`grpc`]: the tonic service and client glue, hand-written (no `protoc` needed).
//!
//! # Delivery guarantee
//! At least once: a batch leaves the sender's buffer only when a server acknowledged it, and a
//! server acknowledges only after the fsync. Duplicates are filtered per server process by
//! `(agent_id, session, seq)`; a batch that a server stored but could not acknowledge (it died
//! between its fsync and the answer, or the answer timed out) is stored again by the server the
//! agent retries with, so after a failover the store may hold a few batches twice (at most the
//! batches in flight: [`SenderConfig::max_in_flight`]).
//!
//! ```no_run
//! use deepflow_store::transport::{Sender, SenderConfig};
//! # fn rows() -> Vec<deepflow_tagging::TaggedRow<deepflow_core::record::L4FlowLog>> { vec![] }
//! let mut cfg = SenderConfig::new(vec!["http://127.0.0.1:30033".into()]);
//! cfg.token = Some("s3cret".into());
//! let sender = Sender::start(cfg)?;
//! sender.send_records(&rows())?;
//! let stats = sender.close(std::time::Duration::from_secs(30));
//! assert_eq!(stats.rows_acked, stats.rows_queued);
//! # Ok::<(), deepflow_store::StoreError>(())
//! ```

pub mod grpc;
mod ingest;
pub mod payload;
mod sender;

pub use deepflow_core::proto::{Ack, Batch, Compression};
pub use ingest::{BatchWriter, BatchWriterOptions, BatchWriterStats, Claim, Dedup};
pub use payload::PayloadError;
pub use sender::{AckedBatch, OnFull, Sender, SenderConfig, SenderStats, default_agent_id};
/// The tonic crate the transport is built with (for servers adding [`grpc::IngestServer`]).
pub use tonic;

/// Test helper: serves `svc` on a free loopback port from `rt`; returns its `http://` URL.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn serve_in_process<T: grpc::Ingest>(rt: &tokio::runtime::Runtime, svc: T) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    rt.spawn(async move {
        let l = tokio::net::TcpListener::from_std(l).unwrap();
        tonic::transport::Server::builder()
            .add_service(grpc::IngestServer::new(svc))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(l))
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Record;
    use crate::storage::Storage;
    use deepflow_core::record::L4FlowLog;
    use deepflow_tagging::TaggedRow;

    fn rows(n: u64, t0: u64) -> Vec<TaggedRow<L4FlowLog>> {
        (0..n)
            .map(|i| {
                let start = t0 + i * 1_000_000;
                let r = L4FlowLog {
                    flow_id: i,
                    start_time: start,
                    end_time: start + 10,
                    duration: 10,
                    ip_0: Some("10.0.0.1".parse().unwrap()),
                    ip_1: Some("10.0.0.2".parse().unwrap()),
                    client_port: 40000,
                    server_port: 80,
                    protocol: "TCP",
                    ..Default::default()
                };
                TaggedRow { row: r, tags_0: Default::default(), tags_1: Default::default() }
            })
            .collect()
    }

    #[test]
    fn payload_round_trip_and_refusals() {
        for c in [Compression::None, Compression::Zstd, Compression::Lz4Frame] {
            let p = payload::encode_records(&rows(5, 1_714_557_600_000_000), c).unwrap();
            let (t, b) = payload::decode("l4_flow_log", &p, 5).unwrap();
            assert_eq!(t, crate::Table::L4FlowLog);
            assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
            assert_eq!(b[0].schema(), L4FlowLog::schema());
        }
        let p = payload::encode_records(&rows(5, 0), Compression::Zstd).unwrap();
        assert!(matches!(payload::decode("nope", &p, 5), Err(PayloadError::UnknownTable(_))));
        assert!(matches!(payload::decode("l7_flow_log", &p, 5), Err(PayloadError::Schema { .. })));
        assert!(matches!(payload::decode("l4_flow_log", &p, 6), Err(PayloadError::RowCount { .. })));
        assert!(matches!(payload::decode("l4_flow_log", b"garbage", 1), Err(PayloadError::Ipc(_))));
        for cut in [1, p.len() / 3, p.len() / 2, p.len() - 9] {
            assert!(payload::decode("l4_flow_log", &p[..cut], 5).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn batch_writer_splits_hours_and_is_queryable() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let w = BatchWriter::start(storage.clone(), BatchWriterOptions::default()).unwrap();
        // 7200 rows one second apart: two hours (and a bit of a third)
        let p = payload::encode_records(&rows(7300, 1_714_557_600_000_000), Compression::Zstd).unwrap();
        let (t, b) = payload::decode("l4_flow_log", &p, 7300).unwrap();
        assert_eq!(w.write_blocking(t, b).unwrap(), 7300);
        assert_eq!(w.stats().files, 3);
        let engine = crate::QueryEngine::open(storage).unwrap();
        let out = engine.query("SELECT count(*) AS n, count(DISTINCT flow_id) AS d FROM l4_flow_log").unwrap();
        let mut text = Vec::new();
        crate::format::write_batches(&out, crate::OutputFormat::Csv, &mut text).unwrap();
        assert_eq!(String::from_utf8(text).unwrap(), "n,d\n7300,7300\n");
    }

    /// An in-process Ingest server that records what it acknowledges and refuses `network`.
    #[derive(Clone, Default)]
    struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<(u64, u64, u64)>>>);

    impl grpc::Ingest for Recorder {
        async fn send(&self, req: tonic::Request<Batch>) -> std::result::Result<tonic::Response<Ack>, tonic::Status> {
            let b = req.into_inner();
            if b.table == "network" {
                return Err(tonic::Status::invalid_argument("refused"));
            }
            self.0.lock().unwrap().push((b.session, b.seq, b.row_count));
            Ok(tonic::Response::new(Ack { seq: b.seq, rows_written: b.row_count, duplicate: false }))
        }
    }

    fn serve(rt: &tokio::runtime::Runtime, rec: Recorder) -> String {
        super::serve_in_process(rt, rec)
    }

    fn dead_url() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }

    fn fast(servers: Vec<String>) -> SenderConfig {
        let mut c = SenderConfig::new(servers);
        c.backoff_min = std::time::Duration::from_millis(10);
        c.backoff_max = std::time::Duration::from_millis(50);
        c.connect_timeout = std::time::Duration::from_millis(500);
        c
    }

    fn spill_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|d| d.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "batch")).count())
            .unwrap_or(0)
    }

    /// Nothing reachable: batches beyond the memory buffer spill, the rest spill at close; a
    /// later sender over the same directory sends them all (same session and seqs).
    #[test]
    fn sender_spills_and_a_later_sender_delivers() {
        let spill = tempfile::tempdir().unwrap();
        let mut cfg = fast(vec![dead_url()]);
        cfg.spill_dir = Some(spill.path().to_path_buf());
        cfg.buffer_batches = 2;
        let s = Sender::start(cfg).unwrap();
        let session = s.session();
        for _ in 0..6 {
            s.send_records(&rows(10, 1_714_557_600_000_000)).unwrap();
        }
        assert_eq!(s.stats().batches_spilled, 4);
        let st = s.close(std::time::Duration::from_millis(200));
        assert_eq!((st.batches_acked, st.buffered_batches, st.buffered_rows), (0, 6, 60));
        assert!(st.retries > 0, "{st:?}");
        assert_eq!(spill_files(spill.path()), 6);

        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let rec = Recorder::default();
        let mut cfg = fast(vec![serve(&rt, rec.clone())]);
        cfg.spill_dir = Some(spill.path().to_path_buf());
        cfg.record_acks = true;
        let s = Sender::start(cfg).unwrap();
        assert_eq!(s.stats().batches_restored, 6);
        assert!(s.flush(std::time::Duration::from_secs(30)));
        assert_eq!(s.take_acked().len(), 6);
        let st = s.close(std::time::Duration::from_secs(1));
        assert_eq!((st.batches_acked, st.rows_acked, st.buffered_batches), (6, 60, 0));
        assert_eq!(spill_files(spill.path()), 0);
        let mut got = rec.0.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, (1..=6).map(|q| (session, q, 10)).collect::<Vec<_>>());
    }

    /// First server gone: the sender moves to the second; a refused batch is dropped and counted.
    #[test]
    fn sender_fails_over_and_drops_refused_batches() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let rec = Recorder::default();
        let s = Sender::start(fast(vec![dead_url(), serve(&rt, rec.clone())])).unwrap();
        for _ in 0..3 {
            s.send_records(&rows(5, 1_714_557_600_000_000)).unwrap();
        }
        let net = crate::Table::Network.schema();
        s.send_batches(crate::Table::Network, &[datafusion::arrow::array::RecordBatch::new_empty(net)]).unwrap();
        assert!(s.flush(std::time::Duration::from_secs(30)));
        let st = s.close(std::time::Duration::from_secs(1));
        assert_eq!((st.batches_acked, st.rows_acked, st.batches_rejected), (3, 15, 1), "{st:?}");
        assert!(st.failovers >= 1 && st.server == 1, "{st:?}");
        assert_eq!(rec.0.lock().unwrap().len(), 3);
    }

    /// `OnFull::DropOldest` with nothing reachable: the buffer keeps the newest batches and
    /// counts what it dropped; the producer never waits long.
    #[test]
    fn sender_drop_oldest_counts_drops() {
        let mut cfg = fast(vec![dead_url()]);
        cfg.buffer_batches = 2;
        cfg.on_full = OnFull::DropOldest;
        let s = Sender::start(cfg).unwrap();
        for _ in 0..5 {
            s.send_records(&rows(10, 1_714_557_600_000_000)).unwrap();
        }
        let st = s.close(std::time::Duration::ZERO);
        assert_eq!((st.batches_dropped, st.rows_dropped, st.buffered_batches), (3, 30, 2), "{st:?}");
        assert_eq!(st.batches_queued, 5);
    }
}
