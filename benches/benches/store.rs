//! deepflow-store: ingest speed into Parquet, bytes per row, SmartEncoding ids vs names as
//! strings, and a RED aggregation through the name views vs DuckDB on pre-joined files.
//!
//! `cargo bench -p deepflow-benches --bench store` (plain timing, one thread for ingest).
//! Environment: `STORE_BENCH_ROWS` (ingest rows, default 2 M), `STORE_BENCH_TAGGED_ROWS`
//! (tagged dataset, default 10 M; 0 skips it), `STORE_BENCH_DIR` (default: a temp dir).

use std::time::{Duration, Instant};

use deepflow_benches::store_gen::{LABELS, Rng, dictionaries, l7_row, labels_batch, tagged_rows, tags_of};
use deepflow_core::record::L7FlowLog;
use deepflow_store::arrow::array::RecordBatch;
use deepflow_store::parquet::file::reader::{FileReader, SerializedFileReader};
use deepflow_store::query::{DICT_FILE, LABELS_FILE};
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
    let dicts = dictionaries();

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
    storage.put_atomic(DICT_FILE, dicts.encode().into()).expect("dict");
    let props = writer_properties(1 << 20, 1).expect("props");
    storage.put_atomic(LABELS_FILE, encode_parquet(&[labels_batch()], &props).expect("labels")).expect("labels");
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
    let mut cols: Vec<String> = L7FlowLog::schema()
        .fields()
        .iter()
        .filter(|f| !f.name().contains("_id_"))
        .map(|f| format!("\"{}\"", f.name()))
        .collect();
    cols.push("date".into());
    cols.push("hour".into());
    let mut name_cols = Vec::new();
    for side in 0..2 {
        for k in deepflow_tagging::TAG_COLUMNS {
            let c = deepflow_store::query::name_column(&format!("{k}_{side}"));
            name_cols.push(c.clone());
            cols.push(format!("CAST({c} AS VARCHAR) AS {c}"));
        }
        let labels: Vec<String> = (0..LABELS)
            .map(|k| format!("'label-key-{k}=' || CAST(label_value('pod', pod_id_{side}, 'label-key-{k}') AS VARCHAR)"))
            .collect();
        cols.push(format!("concat_ws(',', {}) AS labels_{side}", labels.join(", ")));
        name_cols.push(format!("labels_{side}"));
    }
    let copy = format!(
        "COPY (SELECT {} FROM l7_flow_log) TO '{}' STORED AS PARQUET PARTITIONED BY (date, hour) \
         OPTIONS ('format.compression' 'zstd(1)')",
        cols.join(", "),
        names_dir.display()
    );
    let t = Instant::now();
    engine.query(&copy).expect("copy names");
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
    let red = "SELECT service_1, count(*) AS requests, \
               sum(CASE WHEN response_status = 'server_error' THEN 1 ELSE 0 END) AS errors, avg(rrt) AS rrt_avg \
               FROM l7_flow_log WHERE date = '2024-05-01' AND hour = '10' GROUP BY service_1";
    let (t_df, out) = time_best(3, || engine.query(red).expect("red"));
    let groups: usize = out.iter().map(RecordBatch::num_rows).sum();
    println!("store/red: DataFusion via name views: {:.1} ms ({groups} services)", t_df.as_secs_f64() * 1e3);
    let py = "/opt/deepflow-venv/bin/python";
    if std::path::Path::new(py).exists() {
        let script = format!(
            "import duckdb, time\ncon = duckdb.connect()\nq = \"\"\"SELECT service_1, count(*) AS requests, \
             sum(CASE WHEN response_status = 'server_error' THEN 1 ELSE 0 END) AS errors, avg(rrt) AS rrt_avg \
             FROM read_parquet('{}/**/*.parquet', hive_partitioning=true) WHERE date = '2024-05-01' AND hour = 10 \
             GROUP BY service_1\"\"\"\nbest = 1e9\nfor _ in range(3):\n    t = time.perf_counter(); r = con.execute(q).fetchall(); best = min(best, time.perf_counter() - t)\nprint(best * 1000, len(r))\n",
            names_dir.display()
        );
        match std::process::Command::new(py).args(["-c", &script]).output() {
            Ok(o) if o.status.success() => {
                let s = String::from_utf8_lossy(&o.stdout);
                let mut it = s.split_whitespace();
                let ms: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                println!(
                    "store/red: DuckDB on names pre-joined: {ms:.1} ms ({} services); DataFusion/DuckDB time ratio {:.2}",
                    it.next().unwrap_or("?"),
                    t_df.as_secs_f64() * 1e3 / ms
                );
            }
            Ok(o) => println!("store/red: duckdb failed: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => println!("store/red: duckdb not run: {e}"),
        }
    } else {
        println!("store/red: {py} missing (scripts/install-python-deps.sh): DuckDB comparison skipped");
    }
    if std::env::var("STORE_BENCH_DIR").is_err() {
        let _ = std::fs::remove_dir_all(&base);
    }
}
