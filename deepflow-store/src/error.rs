//! Errors of the store.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the store. Each variant says what to look at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A local file operation failed (permissions, disk full, ...).
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The object store refused an operation (check the URL, credentials, bucket).
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// An object path is not valid.
    #[error("object path: {0}")]
    Path(#[from] object_store::path::Error),
    /// Building Arrow arrays failed (a schema/builder mismatch: a bug, please report).
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// Encoding or decoding Parquet failed (a corrupt or foreign file?).
    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    /// Planning or running SQL failed: the message says why (unknown column, syntax, ...).
    #[error("sql: {0}")]
    Sql(#[from] datafusion::error::DataFusionError),
    /// The tag dictionaries could not be loaded or saved.
    #[error("tag dictionaries: {0}")]
    Tagging(#[from] deepflow_tagging::TaggingError),
    /// A setting is invalid.
    #[error("config: {0}")]
    Config(String),
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io { path: path.to_path_buf(), source }
    }
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
