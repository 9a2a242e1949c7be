//! Printing query results: a text table, JSON lines, or CSV.

use std::io::Write;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::error::Result;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A boxed text table (arrow's pretty printer).
    Table,
    /// One JSON object per row.
    Jsonl,
    /// CSV with a header line.
    Csv,
}

/// Casts dictionary columns to their value type and list columns to text, which every writer
/// understands.
pub fn plain(batch: &RecordBatch) -> Result<RecordBatch> {
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let to = match f.data_type() {
            DataType::Dictionary(_, v) => Some(v.as_ref().clone()),
            DataType::List(_) | DataType::LargeList(_) => Some(DataType::Utf8),
            _ => None,
        };
        match to {
            Some(t) => match cast(c, &t) {
                Ok(a) => {
                    fields.push(Field::new(f.name(), t, true));
                    cols.push(a);
                }
                Err(_) => {
                    fields.push(f.as_ref().clone());
                    cols.push(c.clone());
                }
            },
            None => {
                fields.push(f.as_ref().clone());
                cols.push(c.clone());
            }
        }
    }
    Ok(RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), cols)?)
}

/// Writes `batches` to `out` in `format`.
pub fn write_batches(batches: &[RecordBatch], format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let batches: Vec<RecordBatch> = batches.iter().map(plain).collect::<Result<_>>()?;
    let io = |e: std::io::Error| crate::StoreError::Io { path: "<output>".into(), source: e };
    match format {
        OutputFormat::Table => {
            writeln!(out, "{}", pretty_format_batches(&batches)?).map_err(io)?;
        }
        OutputFormat::Jsonl => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut *out);
            for b in &batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        OutputFormat::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
            for b in &batches {
                w.write(b)?;
            }
        }
    }
    out.flush().map_err(io)
}
