//! Rows as Arrow IPC stream payloads inside [`Batch`](super::Batch) messages.

use std::io::Cursor;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::CompressionType;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use deepflow_core::proto::Compression;
use deepflow_tagging::TaggedRow;

use crate::error::{Result, StoreError};
use crate::schema::{Record, Table};

/// Why a payload was refused (the server answers `INVALID_ARGUMENT` with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// `table` is not one of the stored tables.
    #[error("unknown table {0:?} (expected l4_flow_log, l7_flow_log, network or application)")]
    UnknownTable(String),
    /// The bytes are not an Arrow IPC stream.
    #[error("payload is not a valid Arrow IPC stream: {0}")]
    Ipc(String),
    /// The stream's schema is not the table's.
    #[error("payload schema does not match table {table}: {detail}")]
    Schema {
        /// The destination table.
        table: String,
        /// The first difference.
        detail: String,
    },
    /// `row_count` disagrees with the rows in the stream.
    #[error("row_count is {declared} but the payload holds {actual} rows")]
    RowCount {
        /// What the message said.
        declared: u64,
        /// What the stream held.
        actual: u64,
    },
}

fn ipc_compression(c: Compression) -> Option<CompressionType> {
    match c {
        Compression::None => None,
        Compression::Zstd => Some(CompressionType::ZSTD),
        Compression::Lz4Frame => Some(CompressionType::LZ4_FRAME),
    }
}

/// Encodes batches (all with the same schema) as one Arrow IPC stream.
pub fn encode_batches(batches: &[RecordBatch], compression: Compression) -> Result<Vec<u8>> {
    let schema = batches.first().map(|b| b.schema()).ok_or_else(|| StoreError::Config("no batches".into()))?;
    let opts = IpcWriteOptions::default().try_with_compression(ipc_compression(compression))?;
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new_with_options(&mut out, &schema, opts)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    drop(w);
    Ok(out)
}

/// Encodes tagged records of one table as an Arrow IPC stream (one record batch).
pub fn encode_records<R: Record>(rows: &[TaggedRow<R>], compression: Compression) -> Result<Vec<u8>> {
    encode_batches(&[R::to_batch(rows)?], compression)
}

/// Checks that `schema` has the table's columns (names, types, nullability, in order).
fn check_schema(table: Table, got: &datafusion::arrow::datatypes::Schema) -> Result<(), PayloadError> {
    let want = table.schema();
    let err = |detail: String| PayloadError::Schema { table: table.name().to_string(), detail };
    if got.fields().len() != want.fields().len() {
        return Err(err(format!("{} columns, expected {}", got.fields().len(), want.fields().len())));
    }
    for (g, w) in got.fields().iter().zip(want.fields().iter()) {
        if g.name() != w.name() {
            return Err(err(format!("column {:?} where {:?} was expected", g.name(), w.name())));
        }
        if g.data_type() != w.data_type() || g.is_nullable() != w.is_nullable() {
            return Err(err(format!(
                "column {:?} is {}{}, expected {}{}",
                g.name(),
                g.data_type(),
                if g.is_nullable() { " (nullable)" } else { "" },
                w.data_type(),
                if w.is_nullable() { " (nullable)" } else { "" }
            )));
        }
    }
    Ok(())
}

/// Decodes and validates a payload for `table`: the batches come back with the table's own
/// schema (field docs included), ready to be written.
pub fn decode(table: &str, payload: &[u8], row_count: u64) -> Result<(Table, Vec<RecordBatch>), PayloadError> {
    let t = Table::from_name(table).ok_or_else(|| PayloadError::UnknownTable(table.to_string()))?;
    let reader = StreamReader::try_new(Cursor::new(payload), None).map_err(|e| PayloadError::Ipc(e.to_string()))?;
    check_schema(t, &reader.schema())?;
    let schema = t.schema();
    let mut out = Vec::new();
    let mut rows = 0u64;
    for b in reader {
        let b = b.map_err(|e| PayloadError::Ipc(e.to_string()))?;
        rows += b.num_rows() as u64;
        let b = RecordBatch::try_new(schema.clone(), b.columns().to_vec())
            .map_err(|e| PayloadError::Schema { table: t.name().to_string(), detail: e.to_string() })?;
        if b.num_rows() > 0 {
            out.push(b);
        }
    }
    if rows != row_count {
        return Err(PayloadError::RowCount { declared: row_count, actual: rows });
    }
    Ok((t, out))
}
