//! `analyze --format parquet --out DIR` and `query DIR "SQL"`: the deepflow-store side of the CLI.

use std::path::{Path, PathBuf};

use deepflow_capture::pipeline::Pipeline;
use deepflow_protocols::capture::L7Observer;

type Pipe = Pipeline<L7Observer>;

/// AutoTagging sources for `analyze --format parquet`: rows get the ids of the resources behind
/// their IPs as they are written; the dictionaries and labels go to `DIR/tags/`.
#[derive(Default)]
pub struct TagSources {
    /// Static inventory files (YAML, or JSON for `.json`).
    pub inventory: Vec<PathBuf>,
    /// Cloud inventory files.
    pub cloud: Vec<PathBuf>,
    /// VPC of rows whose VPC is unknown (every row of a capture file).
    pub vpc: Option<String>,
}

impl TagSources {
    pub fn is_empty(&self) -> bool {
        self.inventory.is_empty() && self.cloud.is_empty()
    }
}

/// Query output formats.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum QueryFormat {
    Table,
    Jsonl,
    Csv,
}

#[cfg(feature = "store")]
pub use enabled::*;

#[cfg(feature = "store")]
mod enabled {
    use super::*;
    use deepflow_core::record::ApplicationMetrics;
    use deepflow_protocols::red::{RedAggregator, RedConfig};
    use deepflow_store::{OutputFormat, QueryEngine, Storage, StoreWriter, WriterOptions};
    use deepflow_tagging::{Tagger, TaggerOptions};
    use std::sync::Arc;

    /// A tagger over the given sources whose dictionaries live in `DIR/tags/dictionaries.txt`,
    /// so that another `analyze` into the same directory keeps the same ids.
    fn tagger(dir: &Path, tags: &TagSources) -> Result<Arc<Tagger>, String> {
        let dict_path = dir.join(deepflow_store::query::DICT_FILE);
        if let Some(parent) = dict_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let tagger = Tagger::new(TaggerOptions { dict_path: Some(dict_path), default_vpc: tags.vpc.clone() })
            .map_err(|e| e.to_string())?;
        for f in &tags.inventory {
            tagger.load_inventory_file(f).map_err(|e| format!("--inventory: {e}"))?;
        }
        for f in &tags.cloud {
            tagger.load_cloud_file(f).map_err(|e| format!("--cloud-inventory: {e}"))?;
        }
        let st = tagger.snapshot().stats();
        eprintln!(
            "deepflow-agent: tagging with {} resources, {} IPs, {} networks, {} labels",
            st.resources, st.exact_ips, st.networks, st.labels
        );
        Ok(Arc::new(tagger))
    }

    /// Writes every row the pipeline produces to the four tables under a directory.
    pub struct ParquetSink {
        dir: PathBuf,
        writer: StoreWriter,
        red: RedAggregator,
        app: Vec<ApplicationMetrics>,
    }

    impl ParquetSink {
        pub fn open(dir: &Path, tags: &TagSources) -> Result<Self, String> {
            let storage = Storage::local(dir).map_err(|e| e.to_string())?;
            let mut opts = WriterOptions::default();
            if !tags.is_empty() {
                opts = opts.with_tagger(tagger(dir, tags)?);
            }
            let writer = StoreWriter::open(storage, opts).map_err(|e| e.to_string())?;
            Ok(ParquetSink {
                dir: dir.to_path_buf(),
                writer,
                red: RedAggregator::new(RedConfig::default()),
                app: Vec::new(),
            })
        }

        /// Takes the rows the pipeline produced so far.
        pub fn rows(&mut self, pipe: &mut Pipe) -> Result<(), String> {
            let e = |e: deepflow_store::StoreError| e.to_string();
            for r in pipe.table_mut().observer_mut().drain_rows() {
                self.red.add(&r);
                self.writer.append(r).map_err(e)?;
            }
            for f in pipe.drain_flows() {
                self.writer.append(f).map_err(e)?;
            }
            for m in pipe.drain_metrics() {
                self.writer.append(m).map_err(e)?;
            }
            if let Some(now) = pipe.stats().first_timestamp_us.map(|_| pipe.stats().last_timestamp_us) {
                self.red.flush(now, &mut self.app);
            }
            self.writer.extend(self.app.drain(..)).map_err(e)
        }

        /// Flushes everything and reports what was written on stderr.
        pub fn finish(mut self) -> Result<(), String> {
            self.red.finish(&mut self.app);
            self.writer.extend(self.app.drain(..)).map_err(|e| e.to_string())?;
            let s = self.writer.close().map_err(|e| e.to_string())?;
            eprintln!(
                "deepflow-agent: wrote {} l4_flow_log, {} l7_flow_log, {} network, {} application rows to {} ({} files, {} bytes)",
                s.rows[0],
                s.rows[1],
                s.rows[2],
                s.rows[3],
                self.dir.display(),
                s.files,
                s.bytes
            );
            Ok(())
        }
    }

    /// `deepflow-agent query DIR SQL`.
    pub fn query(dir: &Path, sql: &str, format: QueryFormat) -> Result<(), String> {
        if !dir.is_dir() {
            return Err(format!(
                "{}: not a directory (write one with `analyze --format parquet --out DIR`)",
                dir.display()
            ));
        }
        let engine = QueryEngine::open_local(dir).map_err(|e| e.to_string())?;
        let batches = engine.query(sql).map_err(|e| e.to_string())?;
        let format = match format {
            QueryFormat::Table => OutputFormat::Table,
            QueryFormat::Jsonl => OutputFormat::Jsonl,
            QueryFormat::Csv => OutputFormat::Csv,
        };
        let mut out = std::io::stdout().lock();
        deepflow_store::format::write_batches(&batches, format, &mut out).map_err(|e| e.to_string())
    }
}

#[cfg(not(feature = "store"))]
pub use disabled::*;

#[cfg(not(feature = "store"))]
mod disabled {
    use super::*;

    const MSG: &str = "this build has no Parquet store (built without the `store` feature)";

    pub struct ParquetSink;

    impl ParquetSink {
        pub fn open(_: &Path, _: &TagSources) -> Result<Self, String> {
            Err(MSG.into())
        }
        pub fn rows(&mut self, _: &mut Pipe) -> Result<(), String> {
            Err(MSG.into())
        }
        pub fn finish(self) -> Result<(), String> {
            Err(MSG.into())
        }
    }

    pub fn query(_: &Path, _: &str, _: QueryFormat) -> Result<(), String> {
        Err(MSG.into())
    }
}
