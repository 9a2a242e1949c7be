//! `log` rows: application log records (OpenTelemetry logs and other log ingest).

use serde::Serialize;

/// One `log` row: a log record with its trace context and origin.
///
/// Filled from an OTLP `LogRecord` by `deepflow_protocols::ingest::otlp`; the field names follow
/// the OpenTelemetry log data model.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct LogRecord {
    /// When the event happened, µs since the epoch (the observed time when the source gave none).
    pub time: u64,
    /// When the record was observed by the collecting agent, µs since the epoch (0 = unknown).
    pub observed_time: u64,
    /// OpenTelemetry severity number (1-24; 9 = INFO, 13 = WARN, 17 = ERROR; 0 = unspecified).
    pub severity_number: u8,
    /// Severity text as sent (e.g. `WARN`, `WARNING`), or the name of the severity number when
    /// none was sent; empty when both are absent.
    pub severity_text: String,
    /// The body: a string body as is, any other value as JSON.
    pub body: String,
    /// Trace id (lowercase hex), when the record was emitted inside a span.
    pub trace_id: Option<String>,
    /// Span id (lowercase hex), when the record was emitted inside a span.
    pub span_id: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: Option<String>,
    /// Where the record came from (`otel`, ...).
    pub signal_source: &'static str,
    /// Names of the other attributes (record attributes, then resource attributes).
    pub attribute_names: Vec<String>,
    /// Values of the other attributes (parallel to `attribute_names`; non-strings as JSON).
    pub attribute_values: Vec<String>,
}

impl LogRecord {
    /// The value of attribute `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attribute_names
            .iter()
            .position(|n| n == name)
            .and_then(|i| self.attribute_values.get(i))
            .map(String::as_str)
    }
}
