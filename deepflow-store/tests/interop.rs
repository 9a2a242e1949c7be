//! The Parquet files read back by other engines: pyarrow, DuckDB and (when installed) chdb, from
//! the venv that `scripts/install-python-deps.sh` creates. Skipped, with a message, without it.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use deepflow_store::arrow::array::AsArray;
use deepflow_store::arrow::datatypes::Int64Type;
use deepflow_store::{QueryEngine, Storage, StoreWriter, WriterOptions};
use deepflow_tagging::{TaggedRow, UniversalTags};

const VENV_PYTHON: &str = "/opt/deepflow-venv/bin/python";

/// (table, aggregates): the same SQL text runs in DataFusion and DuckDB/chdb.
const CHECKS: &[(&str, &str)] = &[
    (
        "l7_flow_log",
        "count(*), CAST(sum(rrt) AS BIGINT), count(DISTINCT trace_id), CAST(sum(response_code) AS BIGINT), \
         count(request_domain), CAST(sum(length(request_resource)) AS BIGINT), count(DISTINCT ip_0), \
         CAST(sum(pod_id_0) AS BIGINT), CAST(sum(pod_id_1) AS BIGINT), count(DISTINCT service_id_1), \
         CAST(max(host_id_0) AS BIGINT), CAST(sum(CASE WHEN az_id_1 = 2 THEN 1 ELSE 0 END) AS BIGINT)",
    ),
    (
        "l4_flow_log",
        "count(*), CAST(sum(byte_rx) AS BIGINT), CAST(sum(close_type) AS BIGINT), count(ip_0), count(DISTINCT ip_1)",
    ),
    ("network", "count(*), CAST(sum(packet_tx) AS BIGINT), count(ip_1), CAST(sum(\"interval\") AS BIGINT)"),
    ("application", "count(*), CAST(sum(request) AS BIGINT), CAST(sum(rrt_p99) AS BIGINT), count(rrt_p50)"),
];

const SCRIPT: &str = r#"
import json, sys
root, checks = sys.argv[1], json.loads(sys.argv[2])
out = {}
import pyarrow.dataset as ds, pyarrow.compute as pc
pa_out = {}
for t, _ in checks:
    tab = ds.dataset(f"{root}/table={t}", format="parquet", partitioning="hive").to_table()
    pa_out[t] = {"rows": tab.num_rows, "hours": sorted(set(str(h) for h in tab.column("hour").to_pylist()))}
# exact values of one l7 row
tab = ds.dataset(f"{root}/table=l7_flow_log", format="parquet", partitioning="hive").to_table(filter=pc.field("flow_id") == 8)
r = tab.to_pylist()[0]
pa_out["row8"] = [r["ip_0"], r["request_resource"], r["start_time"].isoformat(), r["response_exception"], r["attribute_values"]]
out["pyarrow"] = pa_out
import duckdb
con = duckdb.connect()
out["duckdb"] = {t: [int(v) if v is not None else None for v in con.execute(
    f"SELECT {aggs} FROM read_parquet('{root}/table={t}/**/*.parquet', hive_partitioning=true)").fetchone()]
    for t, aggs in checks}
try:
    import chdb
except ImportError:
    chdb = None
if chdb is not None:
    res = {}
    for t, aggs in checks:
        q = f"SELECT {aggs} FROM file('{root}/table={t}/*/*/*.parquet', Parquet)"
        row = chdb.query(q, "CSV").data().strip().split(",")
        res[t] = [int(v) if v not in ("", "\\N") else None for v in row]
    out["chdb"] = res
print(json.dumps(out))
"#;

#[test]
fn pyarrow_duckdb_chdb_read_the_same_rows() {
    if !Path::new(VENV_PYTHON).exists() {
        eprintln!("SKIPPED: {VENV_PYTHON} not found; run scripts/install-python-deps.sh");
        return;
    }
    let has =
        |m: &str| Command::new(VENV_PYTHON).args(["-c", &format!("import {m}")]).status().is_ok_and(|s| s.success());
    if !has("pyarrow") || !has("duckdb") {
        eprintln!("SKIPPED: pyarrow or duckdb missing in the venv; run scripts/install-python-deps.sh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let mut w = StoreWriter::open(storage.clone(), WriterOptions::default()).unwrap();
    for round in 0..2 {
        if round == 0 {
            w.extend(l7_rows(4000, 3)).unwrap();
        } else {
            // tag ids (written BYTE_STREAM_SPLIT) of every width the split has to carry
            for (i, row) in l7_rows(4000, 3).into_iter().enumerate() {
                let i = i as u32;
                let tags = |k: u32| UniversalTags {
                    az_id: 1 + k % 3,
                    host_id: k.wrapping_mul(2_654_435_761) | 1,
                    pod_id: 1 + k % 10_000,
                    service_id: 1 + k % 257,
                    ..UniversalTags::default()
                };
                w.append_tagged(TaggedRow { row, tags_0: tags(i), tags_1: tags(i * 7 + 3) }).unwrap();
            }
        }
        w.extend(l4_rows(3000, 2)).unwrap();
        w.extend(network_rows(2000, 2)).unwrap();
        w.extend(application_rows(1000, 1)).unwrap();
        w.flush().unwrap();
    }
    w.close().unwrap();
    let engine = QueryEngine::open(storage).unwrap();

    let checks: Vec<(String, String)> = CHECKS.iter().map(|(t, a)| (t.to_string(), a.to_string())).collect();
    let out = Command::new(VENV_PYTHON)
        .args([
            "-c",
            SCRIPT,
            dir.path().canonicalize().unwrap().to_str().unwrap(),
            &serde_json::to_string(&checks).unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    for (t, aggs) in CHECKS {
        let b = engine.query(&format!("SELECT {aggs} FROM {t}_ids")).unwrap();
        let ours: Vec<Option<i64>> = b[0]
            .columns()
            .iter()
            .map(|c| {
                let c = c.as_primitive::<Int64Type>();
                (!deepflow_store::arrow::array::Array::is_null(c, 0)).then(|| c.value(0))
            })
            .collect();
        let ours_json = serde_json::to_value(&ours).unwrap();
        assert_eq!(v["duckdb"][t], ours_json, "duckdb vs datafusion on {t}");
        assert_eq!(v["pyarrow"][t]["rows"], ours_json[0], "pyarrow rows of {t}");
        if v.get("chdb").is_some() {
            assert_eq!(v["chdb"][t], ours_json, "chdb vs datafusion on {t}");
        }
    }
    if v.get("chdb").is_none() {
        eprintln!("chdb is not installed in the venv: its check was skipped");
    }
    assert_eq!(v["pyarrow"]["l7_flow_log"]["hours"], serde_json::json!(["10", "11", "12"]));
    let row8 = &v["pyarrow"]["row8"];
    let r = &l7_rows(4000, 3)[7];
    assert_eq!(row8[0], r.ip_0.to_string());
    assert_eq!(row8[1], r.request_resource.clone().unwrap());
    assert_eq!(row8[2], "2024-05-01T10:00:18.900000+00:00");
    assert_eq!(row8[3], serde_json::Value::Null);
    assert_eq!(row8[4], serde_json::json!([]));
}
