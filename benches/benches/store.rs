//! deepflow-store: ingest speed into Parquet, bytes per row, SmartEncoding ids vs names as
//! strings, and a RED aggregation through the name views vs DuckDB on pre-joined files.
//!
//! `cargo bench -p deepflow-benches --bench store` (plain timing, one thread for ingest).
//! Environment: `STORE_BENCH_ROWS` (ingest rows, default 2 M), `STORE_BENCH_TAGGED_ROWS`
//! (tagged dataset, default 10 M; 0 skips it), `STORE_BENCH_DIR` (default: a temp dir).

use std::time::{Duration, Instant};

use deepflow_benches::store_gen::{
    Rng, copy_with_names, duckdb_red_ms, l7_row, put_inventory, red_sql, tagged_rows, tags_of,
};
use deepflow_core::record::L7FlowLog;
use deepflow_store::arrow::array::RecordBatch;
use deepflow_store::parquet::file::reader::{FileReader, SerializedFileReader};
use deepflow_store::schema::Record;
use deepflow_store::writer::{encode_parquet, writer_properties};
use deepflow_store::{QueryEngine, Storage, StoreWriter, WriterOptions};
use deepflow_tagging::TaggedRow;

/// Sum of compressed column-chunk bytes per column name over the Parquet files under `dir`.
fn column_bytes(dir: &std::path::Path) -> (u64, std::collections::BTreeMap<String, u64>, u64) {
    let mut total = 0;
    let mut rows = 0;
    let mut by_col = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                total += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                let r = SerializedFileReader::new(std::fs::File::open(&p).expect("open")).expect("parquet");
                let md = r.metadata();
                rows += md.file_metadata().num_rows() as u64;
                for rg in md.row_groups() {
                    for c in rg.columns() {
                        *by_col.entry(c.column_path().string()).or_insert(0) += c.compressed_size() as u64;
                    }
                }
            }
        }
    }
    (total, by_col, rows)
}

fn time_best<T>(n: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..n {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed());
        out = Some(r);
    }
    (best, out.expect("ran at least once"))
}

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn main() {
    let base = match std::env::var("STORE_BENCH_DIR") {
        Ok(d) => std::path::PathBuf::from(d),
        Err(_) => std::env::temp_dir().join(format!("deepflow-store-bench-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&base);

    // 1. ingest: rows/s into Parquet on one thread, l7_flow_log, tagged rows
    let n = env_usize("STORE_BENCH_ROWS", 2_000_000) as u64;
    let rows = tagged_rows(n);
    let chunk: Vec<TaggedRow<L7FlowLog>> = rows.iter().take(1 << 20).cloned().collect();
    let (t_batch, batch) = time_best(3, || L7FlowLog::to_batch(&chunk).expect("batch"));
    let props = writer_properties(1 << 20, 1).expect("props");
    let (t_encode, bytes) = time_best(3, || encode_parquet(std::slice::from_ref(&batch), &props).expect("encode"));
    let per = chunk.len() as f64;
    println!(
        "store/l7 build batch: {:.2} M rows/s; parquet encode (zstd 1): {:.2} M rows/s; together {:.2} M rows/s; {:.1} bytes/row",
        per / t_batch.as_secs_f64() / 1e6,
        per / t_encode.as_secs_f64() / 1e6,
        per / (t_batch + t_encode).as_secs_f64() / 1e6,
        bytes.len() as f64 / per
    );
    drop((chunk, batch, bytes));
    let dir = base.join("ingest");
    let storage = Storage::local(&dir).expect("storage");
    let mut w = StoreWriter::open(storage, WriterOptions::default()).expect("writer");
    let t = Instant::now();
    for r in rows {
        w.append_tagged(r).expect("append");
    }
    let stats = w.close().expect("close");
    let el = t.elapsed();
    println!(
        "store/l7 writer end to end (append + batch + zstd parquet + fsync/rename), 1 thread: {n} rows in {:.2?} = {:.2} M rows/s, {:.1} bytes/row, {} files",
        el,
        n as f64 / el.as_secs_f64() / 1e6,
        stats.bytes as f64 / n as f64,
        stats.files
    );

    // 2. tagged dataset: ids vs names as strings, and RED by service name
    let tn = env_usize("STORE_BENCH_TAGGED_ROWS", 10_000_000) as u64;
    if tn == 0 {
        return;
    }
    let dir = base.join("tagged");
    let storage = Storage::local(&dir).expect("storage");
    put_inventory(&storage);
    let mut w = StoreWriter::open(storage.clone(), WriterOptions::default()).expect("writer");
    let mut rng = Rng(0x2545f4914f6cdd1d);
    let t = Instant::now();
    for i in 0..tn {
        // 2 hours of data
        let (row, c, s) = l7_row(&mut rng, i, tn, 2 * 3_600_000_000);
        w.append_tagged(TaggedRow { row, tags_0: tags_of(c), tags_1: tags_of(s) }).expect("append");
    }
    w.close().expect("close");
    println!("store/tagged: wrote {tn} rows in {:.2?}", t.elapsed());
    let engine = QueryEngine::open(storage).expect("engine");
    // the same rows with every tag as its name and the 20 pod labels of each side in the row
    let names_dir = base.join("names");
    std::fs::create_dir_all(&names_dir).expect("mkdir");
    let t = Instant::now();
    let name_cols = copy_with_names(&engine, &names_dir, true);
    println!("store/tagged: names-as-strings copy in {:.2?}", t.elapsed());
    let (ids_total, ids_cols, ids_rows) = column_bytes(&dir.join("table=l7_flow_log"));
    let (names_total, names_cols, names_rows) = column_bytes(&names_dir);
    let id_tag_bytes: u64 = ids_cols.iter().filter(|(k, _)| k.contains("_id_")).map(|(_, v)| v).sum();
    let name_tag_bytes: u64 = names_cols.iter().filter(|(k, _)| name_cols.contains(k)).map(|(_, v)| v).sum();
    println!(
        "store/tagged: {ids_rows} rows; SmartEncoding ids: {:.1} bytes/row total, tag columns {:.2} bytes/row ({:.1} MiB)",
        ids_total as f64 / ids_rows as f64,
        id_tag_bytes as f64 / ids_rows as f64,
        id_tag_bytes as f64 / 1048576.0
    );
    println!(
        "store/tagged: {names_rows} rows; names + labels as strings: {:.1} bytes/row total, tag columns {:.2} bytes/row ({:.1} MiB); tag bytes ratio {:.1}x",
        names_total as f64 / names_rows as f64,
        name_tag_bytes as f64 / names_rows as f64,
        name_tag_bytes as f64 / 1048576.0,
        name_tag_bytes as f64 / id_tag_bytes.max(1) as f64
    );

    // RED by service name over one hour: name views vs DuckDB on the pre-joined files
    let (t_df, out) = time_best(3, || engine.query(&red_sql("service_1")).expect("red"));
    let groups: usize = out.iter().map(RecordBatch::num_rows).sum();
    println!("store/red: DataFusion via name views: {:.1} ms ({groups} services)", t_df.as_secs_f64() * 1e3);
    match duckdb_red_ms(&names_dir, 3) {
        Ok((ms, groups)) => println!(
            "store/red: DuckDB on names pre-joined: {ms:.1} ms ({groups} services); DataFusion/DuckDB time ratio {:.2}",
            t_df.as_secs_f64() * 1e3 / ms
        ),
        Err(e) => println!("store/red: DuckDB comparison skipped: {e}"),
    }
    if std::env::var("STORE_BENCH_DIR").is_err() {
        let _ = std::fs::remove_dir_all(&base);
    }
}
