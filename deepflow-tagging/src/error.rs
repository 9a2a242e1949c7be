//! Errors of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading sources, building tag tables or persisting
/// dictionaries. Each variant names what failed and where, so that the message alone tells the
/// user which file, entry or API object to fix. A failed update never replaces the last good
/// state: the [`crate::Tagger`] keeps tagging with what it had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaggingError {
    /// A source document could not be parsed at all (syntax error, unknown top-level field, wrong
    /// type). `source_name` is the file or source name, `message` includes line/column.
    #[error("{source_name}: cannot parse: {message}")]
    Parse {
        /// File path or source name.
        source_name: String,
        /// Parser message (with position when the format gives one).
        message: String,
    },
    /// One entry of a source is invalid (bad CIDR or IP, missing reference, duplicate name).
    /// Fix the named entry and reload; the previous state of that source stays in use.
    #[error("{source_name}: {entry}: {reason}")]
    InvalidEntry {
        /// File path or source name.
        source_name: String,
        /// The entry, e.g. `subnets[3] "db"`.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A dictionary file is corrupt, truncated, or of an unknown format version. Restore it from
    /// a backup or delete it (ids will then be reassigned, so old rows lose their names).
    #[error("dictionary {}: {reason}", path.display())]
    Dictionary {
        /// The dictionary file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A dictionary ran out of u32 ids for a kind (more than 4 billion names).
    #[error("dictionary for {kind} is full")]
    DictionaryFull {
        /// The tag kind.
        kind: &'static str,
    },
    /// A Kubernetes API call failed; see [`crate::kube::KubeError`].
    #[error(transparent)]
    Kube(#[from] crate::kube::KubeError),
}

/// Shorthand for results of this crate.
pub type Result<T, E = TaggingError> = std::result::Result<T, E>;

impl TaggingError {
    pub(crate) fn entry(source_name: &str, entry: impl Into<String>, reason: impl Into<String>) -> Self {
        TaggingError::InvalidEntry { source_name: source_name.to_string(), entry: entry.into(), reason: reason.into() }
    }
}
