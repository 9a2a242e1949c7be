//! # deepflow-store
//!
//! Columnar storage for deepflow-rs. Records (`l4_flow_log`, `l7_flow_log`, network and
//! application metrics, from `deepflow-core`) become Arrow batches ([`schema`]), then immutable
//! zstd Parquet files in Hive-style hourly partitions, written crash-safely through
//! `object_store` ([`writer`], [`storage`]). Old data goes by age or by a byte budget, small
//! files are merged ([`maintenance`]). SQL runs on DataFusion with the SmartEncoding tag
//! dictionaries from `deepflow-tagging` registered next to the data, and views that show names
//! (`pod_0`, `service_1`, ...) while the files hold integer ids only ([`query`]).
//!
//! ```
//! use deepflow_core::record::{L7FlowLog, L7Protocol, LogType, ResponseStatus};
//! use deepflow_core::FlowInfo;
//! use deepflow_store::{QueryEngine, Storage, StoreWriter, WriterOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let storage = Storage::local(dir.path())?;
//! let mut writer = StoreWriter::open(storage.clone(), WriterOptions::default())?;
//! let flow = FlowInfo {
//!     client_ip: "10.0.0.1".parse()?, server_ip: "10.0.0.2".parse()?,
//!     client_port: 40000, server_port: 80, protocol: 6, flow_id: 1,
//!     tunnel: Default::default(), start_time_us: 0,
//! };
//! for i in 0..3u64 {
//!     let mut row = L7FlowLog::new(&flow, L7Protocol::Http1, LogType::Session);
//!     row.start_time = 1_714_557_600_000_000 + i; // 2024-05-01T10:00:00Z
//!     row.end_time = row.start_time + 1500;
//!     row.rrt = Some(1500);
//!     row.response_status = ResponseStatus::Ok;
//!     writer.append(row)?;
//! }
//! writer.flush()?; // durable from here on
//!
//! let engine = QueryEngine::open(storage)?;
//! let out = engine.query(
//!     "SELECT l7_protocol, count(*) AS n, avg(rrt) AS rrt FROM l7_flow_log \
//!      WHERE date = '2024-05-01' AND hour = '10' GROUP BY l7_protocol",
//! )?;
//! let mut text = Vec::new();
//! deepflow_store::format::write_batches(&out, deepflow_store::OutputFormat::Csv, &mut text)?;
//! assert_eq!(String::from_utf8(text)?, "l7_protocol,n,rrt\nhttp,3,1500.0\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(clippy::unwrap_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::panic))]
#![warn(missing_docs)]

mod error;
pub mod format;
pub mod maintenance;
mod name_filter;
mod name_group;
#[cfg(feature = "promql")]
pub mod prom;
pub mod query;
pub mod schema;
pub mod storage;
#[cfg(feature = "transport")]
pub mod transport;
pub mod writer;

pub use error::{Result, StoreError};
pub use format::OutputFormat;
pub use maintenance::{CompactionOptions, MaintenanceReport, RetentionPolicy, apply_retention, compact};
pub use query::QueryEngine;
pub use schema::{Record, Table};
#[cfg(feature = "s3")]
pub use storage::S3Options;
pub use storage::Storage;
pub use writer::{StoreWriter, WriterOptions, WriterStats};

/// The arrow, parquet, datafusion and object_store crates this crate is built with (use these
/// re-exports: two arrow versions do not mix).
pub use datafusion::{self, arrow, parquet};
pub use object_store;
