//! JSON lines of `l7_flow_log` rows (what `analyze --format jsonl --emit sessions` prints):
//! `L7FlowLog::write_json` into a buffer, against `serde_json::to_writer` of the same rows, and
//! the `JsonlThread` writer thread end to end (hand over batches, serialize, write to a sink).

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_core::FlowInfo;
use deepflow_core::record::{JsonlThread, L7FlowLog, L7Protocol, LogType, ResponseStatus};

const ROWS: usize = 10_000;

/// Rows shaped like the HTTP sessions of the bigpcap capture (wrk → nginx).
fn rows() -> Vec<L7FlowLog> {
    (0..ROWS)
        .map(|i| {
            let flow = FlowInfo {
                flow_id: i as u64,
                protocol: 6,
                client_ip: IpAddr::from([127, 0, 0, 1]),
                server_ip: IpAddr::from([127, 0, 0, 2]),
                client_port: 40_000 + (i % 20_000) as u16,
                server_port: 8080,
                tunnel: Default::default(),
                start_time_us: 1_765_000_000_000_000 + i as u64,
            };
            let mut r = L7FlowLog::new(&flow, L7Protocol::Http1, LogType::Session);
            r.start_time = flow.start_time_us;
            r.end_time = flow.start_time_us + 180;
            r.rrt = Some(180);
            r.version = Some("1.1".into());
            r.request_type = Some("GET".into());
            r.request_domain = Some("127.0.0.2:8080".into());
            r.request_resource = Some(format!("/index.html?id={i}"));
            r.endpoint = Some("/index.html".into());
            r.response_code = Some(200);
            r.response_status = ResponseStatus::Ok;
            r.request_length = Some(0);
            r.response_length = Some(615);
            r
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rows = rows();
    let mut g = c.benchmark_group("record_json");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("write_json_10k", |b| {
        let mut out = Vec::with_capacity(8 << 20);
        b.iter(|| {
            out.clear();
            for r in &rows {
                r.write_json(&mut out);
                out.push(b'\n');
            }
            black_box(out.len())
        })
    });
    g.bench_function("serde_json_10k", |b| {
        let mut out = Vec::with_capacity(8 << 20);
        b.iter(|| {
            out.clear();
            for r in &rows {
                serde_json::to_writer(&mut out, r).unwrap();
                out.push(b'\n');
            }
            black_box(out.len())
        })
    });
    // the thread takes ownership of the rows: each iteration hands over clones in 5 batches
    g.bench_function("jsonl_thread_10k_incl_clone", |b| {
        b.iter(|| {
            let mut t = JsonlThread::spawn(std::io::sink()).unwrap();
            for chunk in rows.chunks(ROWS / 5) {
                let mut batch = chunk.to_vec();
                t.send(&mut batch);
            }
            black_box(t.finish().unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
