//! deepflow-store ingest speed on one thread: generated `l7_flow_log` rows (the rows of the
//! `store` bench, part 1) → Arrow batch → Parquet, and the writer end to end (append, batch,
//! encode, temp file + fsync + rename). Prints M rows/s of wall time and rows per CPU second of
//! the process (user + system, from `/proc/self/stat`), and bytes per row.
//!
//! `cargo build --release --workspace --examples --bin store_ingest && $CARGO_TARGET_DIR/release/store_ingest 1000000 [DIR] [all|batch|encode|writer]`
//! (best of 3 for batch and encode, best of 2 for the writer; DIR defaults to a temp dir and is
//! removed afterwards). Mode `props` encodes the batch with Parquet writer-property variants;
//! mode `query` times a filter by service name (run as an id filter) against the same filter by name;
//! mode `server` times the server's side of agent ingest (IPC payloads decoded and group-committed
//! into Parquet by `BatchWriter`, 10 agent threads);
//! mode `sizes` copies the rows of mode `red` with every tag name and pod label as strings
//! in the row (`DIR/red/names_labels`, for `benches/store_sizes.py`);
//! mode `red` times a 1-hour RED aggregation by service name through the name views against
//! DuckDB on a copy of the files with every tag name pre-joined (Python `duckdb` from
//! `/opt/deepflow-venv`, as in the `store` bench), and the same aggregation grouped by id.

use std::time::{Duration, Instant};

use deepflow_benches::store_gen::tagged_rows;
use deepflow_core::record::L7FlowLog;
use deepflow_store::arrow::array::RecordBatch;
use deepflow_store::parquet::basic::{Compression, Encoding, ZstdLevel};
use deepflow_store::parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use deepflow_store::parquet::schema::types::ColumnPath;
use deepflow_store::schema::Record;
use deepflow_store::writer::{ENCODE_BATCH_ROWS, PLAIN_COLUMNS, encode_parquet, encode_rows, writer_properties};
use deepflow_store::{Storage, StoreWriter, WriterOptions};
use deepflow_tagging::{TAG_COLUMNS_0, TAG_COLUMNS_1, TaggedRow};

/// CPU time of this process so far (user + system), from `/proc/self/stat` (clock ticks of
/// 10 ms on Linux).
fn cpu_time() -> Duration {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    let ticks = f.iter().sum::<u64>();
    Duration::from_millis(ticks * 10)
}

/// Best wall time and the CPU time of that run over `n` runs of `f`.
fn best<T>(n: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let mut out: Option<(Duration, Duration, T)> = None;
    for _ in 0..n {
        let (t, c) = (Instant::now(), cpu_time());
        let r = f();
        let (wall, cpu) = (t.elapsed(), cpu_time().saturating_sub(c));
        if out.as_ref().is_none_or(|(w, _, _)| wall < *w) {
            out = Some((wall, cpu, r));
        }
    }
    out.expect("ran at least once")
}

fn rate(rows: usize, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64().max(1e-9) / 1e6
}

/// `rows` in `wall` / `cpu` as printed on every line: rates and the times themselves.
fn speed(rows: usize, wall: Duration, cpu: Duration) -> String {
    format!(
        "{:.3} M rows/s wall, {:.3} M rows per CPU-s ({wall:.2?} wall, {cpu:.2?} CPU)",
        rate(rows, wall),
        rate(rows, cpu)
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let base = args.next().filter(|s| !s.is_empty() && s != "-").map(std::path::PathBuf::from);
    let temp = base.is_none();
    let base = base.unwrap_or_else(|| std::env::temp_dir().join(format!("store-ingest-{}", std::process::id())));
    let mode = args.next().unwrap_or_else(|| "all".into());
    let t = Instant::now();
    let rows = tagged_rows(n);
    println!("generated {n} tagged l7_flow_log rows in {:.2?}", t.elapsed());
    let per = rows.len().min(1 << 20);
    let chunk: &[TaggedRow<L7FlowLog>] = rows.get(..per).unwrap_or(&[]);

    if mode == "all" || mode == "batch" || mode == "encode" || mode == "props" {
        let (w, c, batch) = best(3, || L7FlowLog::to_batch(chunk).expect("batch"));
        println!("build batch ({per} rows): {}", speed(per, w, c));
        if mode == "props" {
            props_variants(&batch);
        }
        if mode != "batch" && mode != "props" {
            let props = writer_properties(1 << 20, 1).expect("props");
            let (w, c, bytes) = best(3, || encode_parquet(std::slice::from_ref(&batch), &props).expect("encode"));
            println!(
                "parquet encode ({per} rows): {}, {:.1} bytes/row",
                speed(per, w, c),
                bytes.len() as f64 / per as f64
            );
        }
    }

    if mode == "all" || mode == "encode" {
        let props = writer_properties(1 << 20, 1).expect("props");
        let (w, c, bytes) = best(3, || encode_rows(chunk, &props).expect("encode"));
        println!(
            "rows -> parquet, the writer's path without the file ({per} rows, batches of {ENCODE_BATCH_ROWS}): {}, {:.1} bytes/row",
            speed(per, w, c),
            bytes.len() as f64 / per as f64
        );
    }

    if mode == "all" || mode == "writer" {
        let runs = if mode == "writer" { 1 } else { 2 };
        let mut best_run: Option<(Duration, Duration, u64, u64)> = None;
        for run in 0..runs {
            let input: Vec<TaggedRow<L7FlowLog>> = rows.clone();
            let dir = base.join(format!("ingest-{run}"));
            let _ = std::fs::remove_dir_all(&dir);
            let storage = Storage::local(&dir).expect("storage");
            // STORE_INGEST_BATCH=N: rows per encoded Arrow batch (WriterOptions::encode_batch_rows)
            let mut opts = WriterOptions::default();
            if let Some(n) = std::env::var("STORE_INGEST_BATCH").ok().and_then(|v| v.parse().ok()) {
                opts.encode_batch_rows = n;
            }
            let mut w = StoreWriter::open(storage, opts).expect("writer");
            let (t, c) = (Instant::now(), cpu_time());
            for r in input {
                w.append_tagged(r).expect("append");
            }
            let stats = w.close().expect("close");
            let (wall, cpu) = (t.elapsed(), cpu_time().saturating_sub(c));
            if best_run.is_none_or(|(b, ..)| wall < b) {
                best_run = Some((wall, cpu, stats.bytes, stats.files));
            }
        }
        if let Some((wall, cpu, bytes, files)) = best_run {
            let threads = std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0);
            println!(
                "writer end to end ({n} rows, append + batch + zstd parquet + fsync/rename): {}, {:.1} bytes/row, {files} files, {threads} thread(s)",
                speed(n as usize, wall, cpu),
                bytes as f64 / n as f64
            );
        }
    }
    if mode == "query" {
        name_filter_query(rows, &base);
    } else if mode == "red" {
        red_query(rows, &base);
    } else if mode == "sizes" {
        names_and_labels_copy(rows, &base);
    } else if mode == "server" {
        server_ingest(&rows, &base);
    }
    if temp {
        let _ = std::fs::remove_dir_all(&base);
    }
}

/// Writes `rows` under `dir` (emptied first) with the generated dictionaries and opens a query
/// engine on it; with `reuse`, only opens what an earlier run left there.
fn write_tagged(rows: Vec<TaggedRow<L7FlowLog>>, dir: &std::path::Path, reuse: bool) -> deepflow_store::QueryEngine {
    if !reuse {
        let _ = std::fs::remove_dir_all(dir);
    }
    let storage = Storage::local(dir).expect("storage");
    if !reuse {
        let mut w = StoreWriter::open(storage.clone(), WriterOptions::default()).expect("writer");
        for r in rows {
            w.append_tagged(r).expect("append");
        }
        w.close().expect("close");
    }
    deepflow_benches::store_gen::put_inventory(&storage);
    deepflow_store::QueryEngine::open(storage).expect("engine")
}

/// Mode `query`: writes the rows with the generated dictionaries, then times a count filtered
/// by service name through the name view (`service_1 = 'x'`, which the store runs as an id
/// filter) against the same filter in a form that is not rewritten (`coalesce(service_1, '') =
/// 'x'`, evaluated by name per row). Best of 5 each; the counts must agree.
fn name_filter_query(rows: Vec<TaggedRow<L7FlowLog>>, base: &std::path::Path) {
    use deepflow_store::arrow::array::AsArray;
    use deepflow_store::arrow::datatypes::Int64Type;
    let engine = write_tagged(rows, &base.join("query"), false);
    let name = engine.tag_name(deepflow_tagging::ResourceKind::Service, 6).expect("service 6 has a name");
    let count = |sql: &str| -> i64 {
        let b = engine.query(sql).expect("query");
        b.first().map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0))
    };
    let by_id = format!("SELECT count(*) FROM l7_flow_log WHERE service_1 = '{name}'");
    let by_name = format!("SELECT count(*) FROM l7_flow_log WHERE coalesce(service_1, '') = '{name}'");
    let (w1, c1, n1) = best(5, || count(&by_id));
    let (w2, c2, n2) = best(5, || count(&by_name));
    assert_eq!(n1, n2, "the rewritten filter must count the same rows");
    println!("name filter {by_id}: {n1} rows in {w1:.2?} wall, {c1:.2?} CPU (runs as service_id_1 = 6)");
    println!("same filter by name per row ({by_name}): {n2} rows in {w2:.2?} wall, {c2:.2?} CPU");
}

/// Mode `red`: the RED query of the `store` bench (one hour, by service name) through the name
/// views, best of 5, against DuckDB on the same rows with the tag names pre-joined as strings
/// (best of 5 inside Python), and against the same query grouped by the id column.
fn red_query(rows: Vec<TaggedRow<L7FlowLog>>, base: &std::path::Path) {
    use deepflow_benches::store_gen::{copy_with_names, duckdb_red_ms, red_sql};
    let dir = base.join("red");
    // STORE_INGEST_REUSE=1: query what an earlier `red` run left in DIR (same N) instead of writing
    let reuse = std::env::var_os("STORE_INGEST_REUSE").is_some() && dir.join("table=l7_flow_log").exists();
    let engine = write_tagged(rows, &dir, reuse);
    // STORE_INGEST_SET="key=value;...": DataFusion settings for this run (e.g.
    // datafusion.execution.batch_size=32768), to compare configurations
    for kv in std::env::var("STORE_INGEST_SET").unwrap_or_default().split(';').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').expect("STORE_INGEST_SET: key=value");
        engine.query(&format!("SET {k} = '{v}'")).expect("SET");
        println!("SET {k} = {v}");
    }
    let red = red_sql;
    let groups = |b: &[RecordBatch]| b.iter().map(RecordBatch::num_rows).sum::<usize>();
    let (w1, c1, g1) = best(5, || groups(&engine.query(&red("service_1")).expect("red by name")));
    let (w2, c2, g2) = best(5, || groups(&engine.query(&red("service_id_1")).expect("red by id")));
    // the same SQL without the store's group-by-name rule (what the query cost before it)
    let plain = {
        use deepflow_store::datafusion::execution::SessionStateBuilder;
        use deepflow_store::datafusion::prelude::SessionContext;
        let state = engine.context().state();
        let rules =
            state.optimizer().rules.iter().filter(|r| r.name() != "deepflow_group_by_name_as_ids").cloned().collect();
        SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(state).with_optimizer_rules(rules).build(),
        )
    };
    let (w0, c0, g0) = best(5, || {
        let sql = red("service_1");
        groups(
            &engine
                .storage()
                .runtime()
                .block_on(async { plain.sql(&sql).await?.collect().await })
                .expect("red without the rule"),
        )
    });
    println!("RED by service name without the group-by-name rule: {g0} groups in {w0:.2?} wall, {c0:.2?} CPU");
    println!("RED by service name (name view): {g1} groups in {w1:.2?} wall, {c1:.2?} CPU");
    if std::env::var_os("STORE_INGEST_EXPLAIN").is_some() {
        let plan = engine.query(&format!("EXPLAIN ANALYZE {}", red("service_1"))).expect("explain");
        let mut out = Vec::new();
        deepflow_store::format::write_batches(&plan, deepflow_store::OutputFormat::Csv, &mut out).expect("csv");
        println!("{}", String::from_utf8_lossy(&out));
    }
    println!("RED by service_id_1 (no names): {g2} groups in {w2:.2?} wall, {c2:.2?} CPU");
    // the same rows with every tag name as a string column, for DuckDB
    let names_dir = dir.join("names");
    if !reuse {
        let _ = std::fs::remove_dir_all(&names_dir);
        std::fs::create_dir_all(&names_dir).expect("mkdir");
        copy_with_names(&engine, &names_dir, false);
    }
    match duckdb_red_ms(&names_dir, 5) {
        Ok((ms, groups)) => println!(
            "DuckDB, names pre-joined: {groups} groups in {ms:.1} ms wall; DataFusion/DuckDB time ratio {:.2}",
            w1.as_secs_f64() * 1e3 / ms
        ),
        Err(e) => println!("DuckDB comparison skipped: {e}"),
    }
}

/// Mode `server`: the server's side of agent ingest. Untimed, as agents would: the rows become
/// Arrow batches of 5000 rows (`to_batch`) and zstd Arrow IPC payloads (`payload::encode_batches`,
/// the agents' default). Timed, on the server: 10 threads (10 agents; `STORE_INGEST_AGENTS`) decode and validate the
/// payloads (`payload::decode`) and hand them to one `BatchWriter` (group commit into Parquet,
/// fsync, rename), as `deepflow-server`'s gRPC ingest does. CPU time is the whole process's.
fn server_ingest(rows: &[TaggedRow<L7FlowLog>], base: &std::path::Path) {
    use deepflow_store::transport::payload::{decode, encode_batches};
    use deepflow_store::transport::{BatchWriter, BatchWriterOptions, Compression as Ipc};
    // STORE_INGEST_AGENTS=N: agent threads, each with one batch in flight (default 10)
    let agents: usize = std::env::var("STORE_INGEST_AGENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10).max(1);
    const BATCH: usize = 5000;
    let payloads: Vec<(Vec<u8>, u64)> = rows
        .chunks(BATCH)
        .map(|c| {
            let b = L7FlowLog::to_batch(c).expect("batch");
            (encode_batches(&[b], Ipc::Zstd).expect("ipc"), c.len() as u64)
        })
        .collect();
    let wire: usize = payloads.iter().map(|(p, _)| p.len()).sum();
    for run in 0..2 {
        let dir = base.join(format!("server-{run}"));
        let _ = std::fs::remove_dir_all(&dir);
        let storage = Storage::local(&dir).expect("storage");
        let (t, c) = (Instant::now(), cpu_time());
        let writer = BatchWriter::start(storage.clone(), BatchWriterOptions::default()).expect("batch writer");
        let written: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..agents)
                .map(|a| {
                    let (writer, payloads) = (&writer, &payloads);
                    s.spawn(move || {
                        let mut n = 0;
                        for (p, rows) in payloads.iter().skip(a).step_by(agents) {
                            let (table, batches) = decode("l7_flow_log", p, *rows).expect("decode");
                            n += writer.write_blocking(table, batches).expect("write");
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("agent thread")).sum()
        });
        let stats = writer.stats();
        drop(writer);
        let (wall, cpu) = (t.elapsed(), cpu_time().saturating_sub(c));
        let bytes: u64 = storage.list("").expect("list").iter().map(|f| f.size).sum();
        println!(
            "server ingest run {run} ({written} rows in {} payloads of {BATCH} from {agents} agents, {:.1} wire bytes/row; decode + group commit into Parquet): {}, {:.1} bytes/row, {} files, {} commits",
            payloads.len(),
            wire as f64 / rows.len() as f64,
            speed(written as usize, wall, cpu),
            bytes as f64 / written.max(1) as f64,
            stats.files,
            stats.commits
        );
    }
}

/// Mode `sizes`: the rows of mode `red` (written unless `red` left them in DIR) copied to
/// `DIR/red/names_labels` with every tag name and the 20 labels of each side's pod as strings in
/// the row, for `benches/store_sizes.py`.
fn names_and_labels_copy(rows: Vec<TaggedRow<L7FlowLog>>, base: &std::path::Path) {
    let dir = base.join("red");
    let engine = write_tagged(rows, &dir, dir.join("table=l7_flow_log").exists());
    let out = dir.join("names_labels");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("mkdir");
    let t = Instant::now();
    let cols = deepflow_benches::store_gen::copy_with_names(&engine, &out, true);
    println!("copied with {} name and label columns to {} in {:.2?}", cols.len(), out.display(), t.elapsed());
}

/// Encodes `batch` with variants of the writer properties: speed and size of each.
fn props_variants(batch: &RecordBatch) {
    let base = || {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level")))
            .set_dictionary_enabled(true)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(1 << 20))
    };
    let col = |n: &str| ColumnPath::from(n);
    let no_dict = |mut b: WriterPropertiesBuilder, cols: &[&str]| {
        for c in cols {
            b = b.set_column_dictionary_enabled(col(c), false);
        }
        b
    };
    let no_stats = |mut b: WriterPropertiesBuilder, cols: &[&str]| {
        for c in cols {
            b = b.set_column_statistics_enabled(col(c), EnabledStatistics::None);
        }
        b
    };
    let ids = ["trace_id", "span_id", "parent_span_id", "x_request_id_0", "x_request_id_1"];
    let numeric = ["start_time", "end_time", "rrt", "flow_id", "syscall_trace_id_request", "syscall_trace_id_response"];
    let v1 = || no_dict(no_dict(base(), &ids), &numeric);
    let v2 = || no_stats(v1(), &ids);
    let v3 = || v2().set_write_batch_size(8192).set_data_page_row_count_limit(1 << 20);
    let delta = |mut b: WriterPropertiesBuilder| {
        for c in ["start_time", "end_time", "flow_id"] {
            b = b.set_column_encoding(col(c), Encoding::DELTA_BINARY_PACKED);
        }
        b
    };
    let store = || writer_properties(1 << 20, 1).expect("props").into_builder();
    let tag_cols: Vec<&str> = TAG_COLUMNS_0.iter().chain(TAG_COLUMNS_1.iter()).copied().collect();
    // the layout before the store split its tag ids: a dictionary on each
    let dict_tags = |mut b: WriterPropertiesBuilder| {
        for c in &tag_cols {
            b = b.set_column_dictionary_enabled(col(c), true).set_column_encoding(col(c), Encoding::PLAIN);
        }
        b
    };
    let variants: Vec<(&str, WriterProperties)> = vec![
        ("store writer_properties", writer_properties(1 << 20, 1).expect("props")),
        ("v0 base (same settings)", base().build()),
        ("v1 no dictionary on random ids and times", v1().build()),
        ("v2 v1 + no statistics on random string ids", v2().build()),
        ("v3 v2 + write batch 8192, no page row limit", v3().build()),
        ("v4 v3 + delta for times and flow_id", delta(v3()).build()),
        ("v5 v3 + no dictionary on request_resource", no_dict(v3(), &["request_resource"]).build()),
        ("v6 v4 + no dictionary on request_resource", no_dict(delta(v3()), &["request_resource"]).build()),
        ("v7 v3 + statistics chunk-level only", v3().set_statistics_enabled(EnabledStatistics::Chunk).build()),
        ("v8 v3 + no statistics at all", v3().set_statistics_enabled(EnabledStatistics::None).build()),
        ("v9 v3 uncompressed", v3().set_compression(Compression::UNCOMPRESSED).build()),
        ("v10 v3 + data pages 8 MiB", v3().set_data_page_size_limit(8 << 20).build()),
        ("s1 store + dictionary on the 24 tag-id columns (before the split)", dict_tags(store()).build()),
        ("s3 store + write batch 16384", store().set_write_batch_size(16384).build()),
        ("s4 store + data pages 4 MiB", store().set_data_page_size_limit(4 << 20).build()),
        ("s5 store + write batch 1024 (parquet's default)", store().set_write_batch_size(1024).build()),
        ("s6 store + no statistics on the 24 tag-id columns", no_stats(store(), &tag_cols).build()),
    ];
    let mut variants = variants;
    // STORE_INGEST_VARIANT="bss:c1,c2;plain:c3;delta:c4": one more variant of the store's
    // properties, built at run time (`@tags` stands for the 24 tag-id columns, `@ints` for the
    // other integer columns that the store dictionary-encodes)
    let custom = std::env::var("STORE_INGEST_VARIANT").unwrap_or_default();
    if !custom.is_empty() {
        let ints: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .filter(|f| {
                f.data_type().is_integer() && !f.name().contains("_id_") && !PLAIN_COLUMNS.contains(&f.name().as_str())
            })
            .map(|f| f.name().clone())
            .collect();
        let mut b = store();
        for part in custom.split(';').filter(|p| !p.is_empty()) {
            let (enc, cols) = part.split_once(':').expect("STORE_INGEST_VARIANT: enc:cols");
            let mut names: Vec<String> = Vec::new();
            for c in cols.split(',') {
                match c {
                    "@tags" => names.extend(tag_cols.iter().map(|s| s.to_string())),
                    "@ints" => names.extend(ints.iter().cloned()),
                    c => names.push(c.to_string()),
                }
            }
            for c in &names {
                b = match enc {
                    "bss" => b
                        .set_column_dictionary_enabled(col(c), false)
                        .set_column_encoding(col(c), Encoding::BYTE_STREAM_SPLIT),
                    "plain" => b.set_column_dictionary_enabled(col(c), false),
                    "delta" => b
                        .set_column_dictionary_enabled(col(c), false)
                        .set_column_encoding(col(c), Encoding::DELTA_BINARY_PACKED),
                    "dict" => b.set_column_dictionary_enabled(col(c), true),
                    e => panic!("STORE_INGEST_VARIANT: unknown encoding {e}"),
                };
            }
            println!("  custom: {enc} on {}", names.join(","));
        }
        variants.push(("custom (STORE_INGEST_VARIANT)", b.build()));
    }
    let per = batch.num_rows();
    for (name, props) in variants {
        let (w, c, bytes) = best(3, || encode_parquet(std::slice::from_ref(batch), &props).expect("encode"));
        println!(
            "  {name}: {:.3} M rows/s wall, {:.3} M rows per CPU-s, {:.1} bytes/row",
            rate(per, w),
            rate(per, c),
            bytes.len() as f64 / per as f64
        );
    }
}
