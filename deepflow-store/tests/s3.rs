//! The store on S3-compatible object storage: writer, dictionaries, name views, retention and
//! compaction against a real S3 server, moto (PyPI `moto[server]`, installed into the test venv by
//! scripts/install-python-deps.sh), started on 127.0.0.1 with a free port. Skipped with a message
//! when `moto_server` is not installed.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use deepflow_store::arrow::array::AsArray;
use deepflow_store::arrow::datatypes::Int64Type;
use deepflow_store::maintenance::partitions;
use deepflow_store::{
    CompactionOptions, QueryEngine, RetentionPolicy, S3Options, Storage, StoreWriter, Table, WriterOptions,
};
use deepflow_tagging::{Format, Inventory, Tagger, TaggerOptions};

struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> Option<PathBuf> {
    let venv = std::env::var("DEEPFLOW_VENV").unwrap_or_else(|_| "/opt/deepflow-venv".into());
    let p = PathBuf::from(venv).join("bin/moto_server");
    if p.exists() {
        return Some(p);
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join("moto_server")).find(|p| p.exists())
}

fn http(port: u16, req: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Starts moto on a free port of 127.0.0.1 and waits (at most 60 s) until it answers.
fn start_moto() -> Option<Moto> {
    let Some(bin) = moto_binary() else {
        eprintln!("SKIP: moto_server not found (run scripts/install-python-deps.sh: PyPI moto[server])");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn moto_server");
    let moto = Moto { child, port };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        let req = format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        if http(port, &req).is_ok_and(|r| r.starts_with("HTTP/1")) {
            return Some(moto);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("moto_server on port {port} did not answer within 60 s");
}

fn create_bucket(port: u16, bucket: &str) {
    // moto does not check signatures: a plain CreateBucket request
    let req =
        format!("PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let resp = http(port, &req).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"), "CreateBucket: {resp}");
}

fn s3(port: u16, bucket: &str, prefix: &str) -> Storage {
    Storage::s3(&S3Options {
        bucket: bucket.into(),
        prefix: prefix.into(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        path_style: true,
    })
    .unwrap()
}

fn count(engine: &QueryEngine, sql: &str) -> i64 {
    let b = engine.query(sql).unwrap();
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

const INVENTORY: &str = r#"
vpcs: [{name: prod}]
pod_clusters: [{name: c1, vpc: prod}]
pod_namespaces: [{name: shop, cluster: c1}, {name: db, cluster: c1}]
pods:
  - {name: web-1, cluster: c1, namespace: shop, ips: [10.1.0.1], labels: {app: web}}
  - {name: mysql-0, cluster: c1, namespace: db, ips: [10.2.0.3], labels: {app: mysql}}
services:
  - {name: mysql-svc, cluster: c1, namespace: db, cluster_ips: [10.2.0.4], selector: {app: mysql}}
"#;

#[test]
fn s3_writer_query_retention_compaction() {
    let Some(moto) = start_moto() else { return };
    create_bucket(moto.port, "flows");
    let storage = s3(moto.port, "flows", "cluster-a/store");
    assert!(storage.local_root().is_none());

    // two ingesters share the bucket prefix; one has a tagger (dictionaries + labels go to S3 too)
    let tagger =
        Arc::new(Tagger::new(TaggerOptions { default_vpc: Some("prod".into()), ..Default::default() }).unwrap());
    tagger.update_source("inv", Inventory::parse(INVENTORY, Format::Yaml, "inv.yaml").unwrap()).unwrap();
    let rows = l7_rows(3000, 3); // hours 10, 11, 12
    let (first, second) = rows.split_at(1500);
    // only `a` tags its rows; `b`'s rows keep id 0 (no name)
    let expect_web1 = first.iter().filter(|r| r.ip_0 == ip("10.1.0.1")).count() as i64;
    let expect_mysql = first.iter().filter(|r| r.ip_1 == ip("10.2.0.3")).count() as i64;
    assert!(expect_web1 > 0 && expect_mysql > 0);
    let mut a = StoreWriter::open(storage.clone(), WriterOptions::default().with_tagger(tagger)).unwrap();
    let mut b = StoreWriter::open(s3(moto.port, "flows", "cluster-a/store"), WriterOptions::default()).unwrap();
    a.extend(first.to_vec()).unwrap();
    b.extend(second.to_vec()).unwrap();
    a.close().unwrap();
    b.close().unwrap();
    b = StoreWriter::open(storage.clone(), WriterOptions::default()).unwrap();
    b.extend(l4_rows(600, 6)).unwrap(); // hours 10..=15
    b.close().unwrap();

    // objects are where the layout says, under the prefix
    let files = storage.list("table=l7_flow_log").unwrap();
    assert!(files.len() >= 3, "{files:?}");
    assert!(files.iter().all(|f| f.path.starts_with("table=l7_flow_log/date=2024-05-01/hour=1")), "{files:?}");
    assert!(storage.exists(deepflow_store::query::DICT_FILE).unwrap());
    assert!(storage.exists(deepflow_store::query::LABELS_FILE).unwrap());
    // another prefix of the same bucket is another store
    assert!(s3(moto.port, "flows", "cluster-b").list("").unwrap().is_empty());

    // SQL with names straight from S3, partition pruning included
    let engine = QueryEngine::open(storage.clone()).unwrap();
    assert!(engine.tags_version() > 0);
    assert_eq!(count(&engine, "SELECT count(*) FROM l7_flow_log"), 3000);
    assert_eq!(count(&engine, "SELECT count(*) FROM l7_flow_log WHERE date = '2024-05-01' AND hour = '11'"), 1000);
    assert_eq!(count(&engine, "SELECT count(*) FROM l7_flow_log WHERE pod_0 = 'web-1'"), expect_web1);
    assert_eq!(
        count(&engine, "SELECT count(*) FROM l7_flow_log WHERE pod_1 = 'mysql-0' AND pod_ns_1 = 'db'"),
        expect_mysql
    );
    let labels = engine.query("SELECT kind, resource_id, key, value FROM labels ORDER BY 1, 2, 3").unwrap();
    let mut csv = Vec::new();
    deepflow_store::format::write_batches(&labels, deepflow_store::OutputFormat::Csv, &mut csv).unwrap();
    assert_eq!(String::from_utf8(csv).unwrap(), "kind,resource_id,key,value\npod,1,app,web\npod,2,app,mysql\n");
    assert_eq!(count(&engine, "SELECT count(*) FROM l4_flow_log"), 600);
    assert_eq!(
        count(&engine, "SELECT count(*) FROM l7_flow_log WHERE pod_id_0 = 0 AND pod_0 IS NULL"),
        3000 - expect_web1 - first.iter().filter(|r| r.ip_0 == ip("10.2.0.3")).count() as i64
    );

    // compaction of the small files of each l7 partition (two writers -> two files per hour)
    let before = partitions(&storage, Table::L7FlowLog).unwrap();
    assert!(before.iter().any(|p| p.files.len() >= 2), "{before:?}");
    let r =
        deepflow_store::compact(&storage, Table::L7FlowLog, &CompactionOptions::default(), SystemTime::now()).unwrap();
    assert!(r.files > 0, "{r:?}");
    let after = partitions(&storage, Table::L7FlowLog).unwrap();
    assert!(after.iter().all(|p| p.files.len() == 1), "{after:?}");
    assert_eq!(count(&engine, "SELECT count(*) FROM l7_flow_log"), 3000);
    assert_eq!(count(&engine, "SELECT count(*) FROM l7_flow_log WHERE pod_0 = 'web-1'"), expect_web1);

    // retention by age: at 16:00 keep 3 hours of l4 (hours 13, 14, 15 stay)
    let now = UNIX_EPOCH + Duration::from_micros(T0_US + 6 * HOUR_US);
    let r = deepflow_store::apply_retention(
        &storage,
        Table::L4FlowLog,
        RetentionPolicy { max_age: Some(Duration::from_secs(3 * 3600)), max_bytes: None },
        now,
    )
    .unwrap();
    assert_eq!(r.partitions, 3);
    assert_eq!(count(&engine, "SELECT count(*) FROM l4_flow_log"), 300);
    // by budget: a bit more than the newest partition keeps only hour 15
    let left = partitions(&storage, Table::L4FlowLog).unwrap();
    let budget = left.last().unwrap().bytes() + 10;
    let r = deepflow_store::apply_retention(
        &storage,
        Table::L4FlowLog,
        RetentionPolicy { max_age: None, max_bytes: Some(budget) },
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(r.partitions, 2);
    let left = partitions(&storage, Table::L4FlowLog).unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].dir.ends_with("hour=15"), "{left:?}");
    assert_eq!(count(&engine, "SELECT count(*) FROM l4_flow_log"), 100);
    assert!(storage.list("table=l4_flow_log/date=2024-05-01/hour=10").unwrap().is_empty());
}

#[test]
fn s3_errors_are_clear() {
    let Some(moto) = start_moto() else { return };
    // a bucket that does not exist: the write fails with the store's error, nothing panics
    let storage = s3(moto.port, "no-such-bucket", "");
    let err = StoreWriter::open(storage.clone(), WriterOptions::default()).unwrap_err().to_string();
    assert!(err.contains("object store") && err.contains("NoSuchBucket"), "{err}");
    let err = storage.put_atomic("x.parquet", vec![1u8, 2, 3].into()).unwrap_err().to_string();
    assert!(err.contains("NoSuchBucket"), "{err}");
    // s3:// URLs parse into a bucket and a prefix
    let err = Storage::open("s3://").unwrap_err().to_string();
    assert!(err.contains("no bucket"), "{err}");
    let err = Storage::open("gs://x/y").unwrap_err().to_string();
    assert!(err.contains("unsupported storage URL"), "{err}");
}
