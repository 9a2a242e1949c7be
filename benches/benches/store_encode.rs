//! deepflow-store's ingest hot path, per batch: tagged `l7_flow_log` rows → Arrow batch
//! (`Record::to_batch`), Arrow batch → zstd Parquet with the store's writer properties
//! (`encode_parquet`), and both as the writer runs them (`encode_rows`, batches of
//! `ENCODE_BATCH_ROWS`). The rows are the generated ones of the `store` bench and
//! `store_ingest` (10 k pods, 1 k services; `benches/src/store_gen.rs`).
//!
//! `cargo bench --bench store_encode`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_benches::store_gen::tagged_rows;
use deepflow_core::record::L7FlowLog;
use deepflow_store::schema::Record;
use deepflow_store::writer::{ENCODE_BATCH_ROWS, encode_parquet, encode_rows, writer_properties};

fn bench(c: &mut Criterion) {
    let rows = tagged_rows(ENCODE_BATCH_ROWS as u64 * 4);
    let batch_rows = &rows[..ENCODE_BATCH_ROWS];
    let props = writer_properties(1 << 20, 1).expect("props");
    let batch = L7FlowLog::to_batch(batch_rows).expect("batch");

    let mut g = c.benchmark_group("store_encode");
    g.sample_size(20);
    g.throughput(Throughput::Elements(ENCODE_BATCH_ROWS as u64));
    g.bench_function("to_batch/l7_flow_log", |b| b.iter(|| L7FlowLog::to_batch(batch_rows).expect("batch")));
    g.bench_function("encode_parquet/l7_flow_log", |b| {
        b.iter(|| encode_parquet(std::slice::from_ref(&batch), &props).expect("encode"))
    });
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function("encode_rows/l7_flow_log", |b| b.iter(|| encode_rows(&rows, &props).expect("encode")));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
