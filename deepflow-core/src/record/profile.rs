//! `profile` rows: continuous-profiling samples (Pyroscope `/ingest`, pprof, folded stacks).

use serde::Serialize;

/// One `profile` row: the total value of one call stack of one application, profile type and
/// label set over one upload window.
///
/// `stack` holds the frames root first, joined by `;` (the "folded" format), so that
/// `SELECT stack, sum(value) FROM profile WHERE app_service = 'x' AND profile_type = 'cpu'
/// GROUP BY stack` is a flame graph. Filled by `deepflow_protocols::ingest::pyroscope`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ProfileSample {
    /// Start of the profiling window, µs since the epoch.
    pub time: u64,
    /// Length of the window, µs (0 = unknown).
    pub duration: u64,
    /// The profiled application (Pyroscope's application name without the profile-type
    /// suffix and labels).
    pub app_service: String,
    /// Profile type: `cpu`, `wall`, `alloc_objects`, `alloc_space`, `inuse_space`, ... (the pprof
    /// sample type, or the application name's suffix for folded uploads).
    pub profile_type: String,
    /// Unit of `value`: `samples`, `nanoseconds`, `bytes`, `objects`, ...
    pub unit: String,
    /// Frames root first, joined by `;`.
    pub stack: String,
    /// Total of the stack's samples in `unit` (never 0: empty stacks are not stored).
    pub value: u64,
    /// Sampling rate, Hz (0 = unknown).
    pub sample_rate: u32,
    /// The profiler that produced the data (`pyspy`, `gospy`, `rbspy`, ...; empty = unknown).
    pub spy_name: String,
    /// Where the row came from (`pyroscope`, ...).
    pub signal_source: &'static str,
    /// Label names (sorted; from the application name's `{k=v}` and the pprof sample labels).
    pub label_names: Vec<String>,
    /// Label values (parallel to `label_names`).
    pub label_values: Vec<String>,
}

impl ProfileSample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.label_names.iter().position(|n| n == name).and_then(|i| self.label_values.get(i)).map(String::as_str)
    }

    /// The leaf (innermost) frame of the stack.
    pub fn leaf(&self) -> &str {
        self.stack.rsplit(';').next().unwrap_or("")
    }
}
