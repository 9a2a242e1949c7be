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
}
