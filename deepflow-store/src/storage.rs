//! Where files live: a local directory (default) or any `object_store` (S3-compatible, ...).
//!
//! Every file operation of the store goes through [`Storage`]: atomic puts, listing, reading,
//! deleting. Listing, reading and deleting always use the `ObjectStore`; puts on a local
//! directory bypass it to get the durability `object_store::local` does not give (it renames a
//! staging file into place but never fsyncs): temp file in the target directory, `fsync` of the
//! file, atomic `rename`, `fsync` of the directory (and of any directory just created). On an
//! object store a `put` is atomic by itself (a reader sees the whole object or nothing).

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use datafusion::execution::object_store::ObjectStoreUrl;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::runtime::Runtime;

use crate::error::{Result, StoreError};

/// One stored object: path relative to the store root, size, modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Path relative to the root, `/`-separated (`table=l7_flow_log/date=.../part-....parquet`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification.
    pub modified: SystemTime,
}

/// A root directory on local disk or a prefix in an object store, with the async runtime used
/// to drive it from synchronous code.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    url: ObjectStoreUrl,
    base: Path,
    local_root: Option<PathBuf>,
    rt: Arc<Runtime>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("url", &self.url.as_str()).field("base", &self.base.as_ref()).finish()
    }
}

fn runtime() -> Result<Arc<Runtime>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(8))
        .thread_name("deepflow-store")
        .enable_all()
        .build()
        .map_err(|e| StoreError::Io { path: PathBuf::from("<tokio runtime>"), source: e })?;
    Ok(Arc::new(rt))
}

impl Storage {
    /// A local directory (created if missing).
    pub fn local(root: impl AsRef<FsPath>) -> Result<Storage> {
        let root = root.as_ref();
        std::fs::create_dir_all(root).map_err(|e| StoreError::io(root, e))?;
        let root = root.canonicalize().map_err(|e| StoreError::io(root, e))?;
        let base = Path::from_filesystem_path(&root).map_err(StoreError::from)?;
        Ok(Storage {
            store: Arc::new(LocalFileSystem::new()),
            url: ObjectStoreUrl::local_filesystem(),
            base,
            local_root: Some(root),
            rt: runtime()?,
        })
    }

    /// Any object store, e.g. `object_store::aws::AmazonS3` pointed at an S3-compatible
    /// server. `url` is the store's URL (`s3://bucket`), `prefix` the root inside it.
    pub fn object_store(store: Arc<dyn ObjectStore>, url: &str, prefix: &str) -> Result<Storage> {
        let url = ObjectStoreUrl::parse(url).map_err(|e| StoreError::Config(e.to_string()))?;
        let base = Path::parse(prefix.trim_matches('/')).map_err(StoreError::from)?;
        Ok(Storage { store, url, base, local_root: None, rt: runtime()? })
    }

    /// Opens a location given as text: `s3://bucket/prefix` (feature `s3`) or a local
    /// directory (a path, or `file:///path`).
    ///
    /// For `s3://` the connection settings come from the usual `AWS_*` environment variables
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` or
    /// `AWS_ENDPOINT_URL` for S3-compatible servers, `AWS_ALLOW_HTTP=true` for plain HTTP); use
    /// [`Storage::s3`] to pass them explicitly.
    pub fn open(location: &str) -> Result<Storage> {
        if let Some(rest) = location.strip_prefix("s3://") {
            return open_s3_url(rest);
        }
        if let Some(path) = location.strip_prefix("file://") {
            return Storage::local(path);
        }
        if location.contains("://") {
            return Err(StoreError::Config(format!(
                "{location}: unsupported storage URL (use a local path or s3://bucket/prefix)"
            )));
        }
        Storage::local(location)
    }

    /// An S3 bucket (AWS or any S3-compatible server: MinIO, Ceph RGW, moto, ...), feature `s3`.
    #[cfg(feature = "s3")]
    pub fn s3(opts: &S3Options) -> Result<Storage> {
        use object_store::aws::AmazonS3Builder;
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&opts.bucket);
        if let Some(r) = &opts.region {
            b = b.with_region(r);
        }
        if let Some(e) = &opts.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let (Some(k), Some(s)) = (&opts.access_key_id, &opts.secret_access_key) {
            b = b.with_access_key_id(k).with_secret_access_key(s);
        }
        if opts.path_style {
            b = b.with_virtual_hosted_style_request(false);
        }
        let store = b.build().map_err(StoreError::from)?;
        Storage::object_store(Arc::new(store), &format!("s3://{}", opts.bucket), &opts.prefix)
    }

    /// The local root, if this is a local directory.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The object store URL (registered with DataFusion).
    pub fn url(&self) -> &ObjectStoreUrl {
        &self.url
    }

    /// URL of a directory under the root, for DataFusion listing tables (ends with `/`).
    pub fn dir_url(&self, rel: &str) -> String {
        if let Some(root) = &self.local_root {
            return format!("{}/{rel}/", root.display());
        }
        let base = self.base.as_ref();
        let u = self.url.as_str().trim_end_matches('/');
        if base.is_empty() { format!("{u}/{rel}/") } else { format!("{u}/{base}/{rel}/") }
    }

    /// The runtime that drives the store (and DataFusion queries).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    fn full(&self, rel: &str) -> Result<Path> {
        let rel = rel.trim_matches('/');
        let s = if self.base.as_ref().is_empty() { rel.to_string() } else { format!("{}/{rel}", self.base.as_ref()) };
        Path::parse(s).map_err(StoreError::from)
    }

    fn rel_of(&self, p: &Path) -> String {
        let s = p.as_ref();
        let b = self.base.as_ref();
        if b.is_empty() { s.to_string() } else { s.strip_prefix(b).unwrap_or(s).trim_start_matches('/').to_string() }
    }

    /// Writes `bytes` at `rel` so that readers see either nothing or the whole file, and (for a
    /// local directory) so that the file survives a crash once this returns.
    pub fn put_atomic(&self, rel: &str, bytes: Bytes) -> Result<()> {
        match &self.local_root {
            Some(root) => put_local_durable(&root.join(rel), &bytes),
            None => {
                let path = self.full(rel)?;
                let store = self.store.clone();
                self.rt
                    .block_on(async move { store.put(&path, PutPayload::from(bytes)).await })
                    .map(|_| ())
                    .map_err(StoreError::from)
            }
        }
    }

    /// Every object under `rel` (recursively).
    pub fn list(&self, rel: &str) -> Result<Vec<StoredFile>> {
        let prefix = self.full(rel)?;
        let store = self.store.clone();
        let metas: Vec<object_store::ObjectMeta> =
            match self.rt.block_on(async move { store.list(Some(&prefix)).try_collect::<Vec<_>>().await }) {
                Ok(v) => v,
                Err(object_store::Error::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
        Ok(metas
            .into_iter()
            .map(|m| StoredFile { path: self.rel_of(&m.location), size: m.size, modified: m.last_modified.into() })
            .collect())
    }

    /// Reads a whole object.
    pub fn get(&self, rel: &str) -> Result<Bytes> {
        let path = self.full(rel)?;
        let store = self.store.clone();
        self.rt.block_on(async move { store.get(&path).await?.bytes().await }).map_err(StoreError::from)
    }

    /// True when the object exists.
    pub fn exists(&self, rel: &str) -> Result<bool> {
        let path = self.full(rel)?;
        let store = self.store.clone();
        match self.rt.block_on(async move { store.head(&path).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an object (missing is fine).
    pub fn delete(&self, rel: &str) -> Result<()> {
        let path = self.full(rel)?;
        let store = self.store.clone();
        match self.rt.block_on(async move { store.delete(&path).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes empty directories left under `rel` (local only; object stores have none).
    pub fn remove_empty_dirs(&self, rel: &str) {
        if let Some(root) = &self.local_root {
            let _ = remove_empty(&root.join(rel));
        }
    }
}

/// Connection settings of an S3 bucket for [`Storage::s3`]. Unset fields fall back to the
/// `AWS_*` environment variables.
#[cfg(feature = "s3")]
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Bucket name (must exist).
    pub bucket: String,
    /// Root inside the bucket (`""` for the bucket root).
    pub prefix: String,
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:9000` (plain HTTP is allowed
    /// when the endpoint says `http://`).
    pub endpoint: Option<String>,
    /// Region (`us-east-1` if neither this nor `AWS_REGION` is set).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), what most S3-compatible servers want.
    pub path_style: bool,
}

#[cfg(feature = "s3")]
fn open_s3_url(rest: &str) -> Result<Storage> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(StoreError::Config(format!("s3://{rest}: no bucket")));
    }
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok().or_else(|| std::env::var("AWS_ENDPOINT").ok());
    Storage::s3(&S3Options {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        path_style: endpoint.is_some(),
        endpoint,
        ..S3Options::default()
    })
}

#[cfg(not(feature = "s3"))]
fn open_s3_url(rest: &str) -> Result<Storage> {
    Err(StoreError::Config(format!("s3://{rest}: this build has no S3 support (enable deepflow-store's feature `s3`)")))
}

fn remove_empty(dir: &FsPath) -> std::io::Result<bool> {
    let mut empty = true;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            if !remove_empty(&e.path())? {
                empty = false;
            }
        } else {
            empty = false;
        }
    }
    if empty {
        std::fs::remove_dir(dir)?;
    }
    Ok(empty)
}

/// Prefix and suffix of temporary files: hidden, and without the `.parquet` extension, so that
/// no reader (DataFusion, DuckDB, pyarrow with `*.parquet` globs) ever picks one up.
pub const TEMP_PREFIX: &str = ".tmp-";
/// Suffix of temporary files (see [`TEMP_PREFIX`]); a temporary file for `x.parquet` is named
/// `.tmp-<pid>-x.parquet.partial`, so globs and extension filters on `.parquet` never match it.
pub const TEMP_SUFFIX: &str = ".partial";

/// Name of the temporary file written before `name` is renamed into place.
fn temp_name(name: &str) -> String {
    format!("{TEMP_PREFIX}{}-{name}{TEMP_SUFFIX}", std::process::id())
}

fn put_local_durable(path: &FsPath, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().ok_or_else(|| StoreError::Config(format!("{}: no parent directory", path.display())))?;
    // Create missing directories, remembering the highest one created so that its parent can be
    // fsynced (making the new directory entries durable).
    let mut created_top: Option<PathBuf> = None;
    {
        let mut missing = Vec::new();
        let mut d = Some(dir);
        while let Some(x) = d {
            if x.exists() {
                break;
            }
            missing.push(x.to_path_buf());
            d = x.parent();
        }
        if let Some(top) = missing.last() {
            created_top = Some(top.clone());
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(temp_name(&name));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)?;
        if let Some(top) = &created_top {
            // fsync every directory from the partition up to the parent of the first one created
            let mut d = dir.parent();
            while let Some(x) = d {
                sync_dir(x)?;
                if Some(x) == top.parent() {
                    break;
                }
                d = x.parent();
            }
        }
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::io(path, e));
    }
    Ok(())
}

fn sync_dir(dir: &FsPath) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) -> days since 1970-01-01.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An hourly partition: hours since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hour(pub i64);

impl Hour {
    /// The hour containing `us` microseconds since the epoch.
    pub fn from_us(us: u64) -> Hour {
        Hour((us / 3_600_000_000) as i64)
    }

    /// The hour containing a wall-clock time.
    pub fn from_system_time(t: SystemTime) -> Hour {
        Hour::from_us(t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0))
    }

    /// `date=YYYY-MM-DD/hour=HH`.
    pub fn dir(self) -> String {
        let (y, m, d) = civil_from_days(self.0.div_euclid(24));
        format!("date={y:04}-{m:02}-{d:02}/hour={:02}", self.0.rem_euclid(24))
    }

    /// Parses the `date=.../hour=..` components of a path.
    pub fn parse_path(path: &str) -> Option<Hour> {
        let mut date = None;
        let mut hour = None;
        for part in path.split('/') {
            if let Some(v) = part.strip_prefix("date=") {
                let mut it = v.split('-');
                let y: i64 = it.next()?.parse().ok()?;
                let m: u32 = it.next()?.parse().ok()?;
                let d: u32 = it.next()?.parse().ok()?;
                date = Some(days_from_civil(y, m, d));
            } else if let Some(v) = part.strip_prefix("hour=") {
                hour = v.parse::<i64>().ok().filter(|h| (0..24).contains(h));
            }
        }
        Some(Hour(date? * 24 + hour?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readers list partitions by the `.parquet` extension while writers are working: a
    /// temporary file must never match (the server's PromQL test once read one mid-write and
    /// failed with "object not found" after the rename).
    #[test]
    fn temp_files_never_look_like_parquet() {
        let t = temp_name("part-1-abc.parquet");
        assert!(t.starts_with(TEMP_PREFIX));
        assert!(!t.ends_with(".parquet"), "{t}");
    }

    #[test]
    fn hours_and_dates() {
        assert_eq!(Hour::from_us(0).dir(), "date=1970-01-01/hour=00");
        // 2024-02-29T13:05:00Z
        let us = 1_709_211_900u64 * 1_000_000;
        let h = Hour::from_us(us);
        assert_eq!(h.dir(), "date=2024-02-29/hour=13");
        assert_eq!(Hour::parse_path(&format!("table=x/{}/part-1.parquet", h.dir())), Some(h));
        for d in [-1000i64, 0, 59, 60, 11_016, 19_782, 40_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
