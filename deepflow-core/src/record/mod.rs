//! Record types every sink consumes. Field names follow DeepFlow's ClickHouse tables
//! (`flow_log.l4_flow_log`, `flow_log.l7_flow_log`, `flow_metrics.network*`,
//! `flow_metrics.application*`) so that dashboards and habits carry over.

mod json;
mod jsonl_thread;
mod l4;
mod l7;
mod log;
mod profile;

pub use jsonl_thread::JsonlThread;
pub use l4::*;
pub use l7::*;
pub use log::LogRecord;
pub use profile::ProfileSample;
