//! Round trips, partition pruning, name views, retention, compaction and crash safety.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use deepflow_store::arrow::array::{Array, AsArray, RecordBatch};
use deepflow_store::arrow::compute::concat_batches;
use deepflow_store::arrow::datatypes::Int64Type;
use deepflow_store::maintenance::{self, partitions};
use deepflow_store::writer::Storable;
use deepflow_store::{
    CompactionOptions, OutputFormat, QueryEngine, RetentionPolicy, Storage, StoreWriter, Table, WriterOptions,
};
use deepflow_tagging::{Format, Inventory, TaggedRow, Tagger, TaggerOptions};

fn count(engine: &QueryEngine, sql: &str) -> i64 {
    let b = engine.query(sql).unwrap();
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

/// The result of `sql` as CSV text.
fn query_csv(engine: &QueryEngine, sql: &str) -> String {
    let mut out = Vec::new();
    deepflow_store::format::write_batches(&engine.query(sql).unwrap(), OutputFormat::Csv, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn untagged<R>(rows: &[R]) -> Vec<TaggedRow<R>>
where
    R: Clone,
{
    rows.iter().map(|r| TaggedRow { row: r.clone(), tags_0: Default::default(), tags_1: Default::default() }).collect()
}

/// Writes `rows`, reads the table back ordered by `order`, compares with the batch built directly.
fn roundtrip<R: Storable + Clone>(rows: Vec<R>, order: &str) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let mut w = StoreWriter::open(storage.clone(), WriterOptions::default()).unwrap();
    let expected = R::to_batch(&untagged(&rows)).unwrap();
    let n = rows.len();
    w.extend(rows).unwrap();
    let stats = w.close().unwrap();
    assert!(stats.files >= 3, "rows span three hours: {stats:?}");
    let engine = QueryEngine::open(storage).unwrap();
    let cols: Vec<String> = R::schema().fields().iter().map(|f| format!("\"{}\"", f.name())).collect();
    let t = R::TABLE.name();
    let got = engine.query(&format!("SELECT {} FROM {t}_ids ORDER BY {order}", cols.join(", "))).unwrap();
    let got = concat_batches(&got[0].schema(), &got).unwrap();
    assert_eq!(got.num_rows(), n);
    for (i, f) in R::schema().fields().iter().enumerate() {
        assert_eq!(got.column(i).as_ref(), expected.column(i).as_ref(), "{t}.{} differs", f.name());
    }
    // the view returns the same rows
    assert_eq!(count(&engine, &format!("SELECT count(*) FROM {t}")), n as i64);
}

#[test]
fn roundtrip_l7_flow_log() {
    roundtrip(l7_rows(5000, 3), "flow_id");
}

#[test]
fn roundtrip_l4_flow_log() {
    roundtrip(l4_rows(3000, 3), "flow_id");
}

#[test]
fn roundtrip_network() {
    roundtrip(network_rows(3000, 3), "server_port");
}

#[test]
fn roundtrip_application() {
    roundtrip(application_rows(2000, 3), "request");
}

fn files_in_plan(engine: &QueryEngine, sql: &str) -> usize {
    // a plain scan: count(*) may be answered from file statistics without opening files
    engine.files_scanned(&sql.replace("count(*)", "flow_id, rrt")).unwrap()
}

#[test]
fn partition_pruning_by_hour() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let mut w = StoreWriter::open(storage.clone(), WriterOptions::default()).unwrap();
    // three flushes x three hours = 9 files, 3 per hour
    for _ in 0..3 {
        w.extend(l7_rows(3000, 3)).unwrap();
        w.flush().unwrap();
    }
    drop(w);
    let engine = QueryEngine::open(storage).unwrap();
    let all = "SELECT count(*) FROM l7_flow_log";
    assert_eq!(files_in_plan(&engine, all), 9);
    assert_eq!(count(&engine, all), 9000);
    let one_hour = "SELECT count(*) FROM l7_flow_log WHERE date = '2024-05-01' AND hour = '11'";
    assert_eq!(files_in_plan(&engine, one_hour), 3, "only the files of hour 11 are scanned");
    assert_eq!(count(&engine, one_hour), 3000);
    let two_hours = "SELECT count(*) FROM l7_flow_log WHERE date = '2024-05-01' AND hour >= '11' AND service_1 IS NULL";
    assert_eq!(files_in_plan(&engine, two_hours), 6);
    assert_eq!(count(&engine, two_hours), 6000);
    let none = "SELECT count(*) FROM l7_flow_log WHERE date = '2024-05-02'";
    assert_eq!(files_in_plan(&engine, none), 0);
    assert_eq!(count(&engine, none), 0);
}

const INVENTORY: &str = r#"
regions: [{name: cn-east}]
vpcs: [{name: prod, region: cn-east}]
pod_clusters: [{name: c1, vpc: prod, region: cn-east}]
pod_namespaces: [{name: shop, cluster: c1}, {name: db, cluster: c1}]
pod_nodes: [{name: n1, cluster: c1, ips: [192.168.0.1]}]
pod_groups:
  - {name: web, cluster: c1, namespace: shop, kind: Deployment}
  - {name: mysql, cluster: c1, namespace: db, kind: StatefulSet}
pods:
  - {name: web-1, cluster: c1, namespace: shop, node: n1, group: web, group_kind: Deployment, ips: [10.1.0.1], labels: {app: web, tier: front}}
  - {name: web-2, cluster: c1, namespace: shop, node: n1, group: web, group_kind: Deployment, ips: [10.1.0.2], labels: {app: web, tier: front}}
  - {name: mysql-0, cluster: c1, namespace: db, node: n1, group: mysql, group_kind: StatefulSet, ips: [10.2.0.3], labels: {app: mysql}}
services:
  - {name: web-svc, cluster: c1, namespace: shop, cluster_ips: [10.96.0.10], selector: {app: web}}
  - {name: mysql-svc, cluster: c1, namespace: db, cluster_ips: [10.2.0.4], selector: {app: mysql}}
"#;

#[test]
fn name_views_with_tag_dictionaries() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let tagger =
        Arc::new(Tagger::new(TaggerOptions { default_vpc: Some("prod".into()), ..Default::default() }).unwrap());
    tagger.update_source("inv", Inventory::parse(INVENTORY, Format::Yaml, "inv.yaml").unwrap()).unwrap();
    let mut w = StoreWriter::open(storage.clone(), WriterOptions::default().with_tagger(tagger.clone())).unwrap();
    // l7_rows: clients 10.1.{0,1,2}.x, servers 10.2.0.{1..4}
    let rows = l7_rows(1200, 1);
    let expect_web1 = rows.iter().filter(|r| r.ip_0 == ip("10.1.0.1")).count() as i64;
    let expect_mysql = rows.iter().filter(|r| r.ip_1 == ip("10.2.0.3") || r.ip_1 == ip("10.2.0.4")).count() as i64;
    w.extend(rows).unwrap();
    w.close().unwrap();

    let engine = QueryEngine::open(storage).unwrap();
    assert!(engine.tags_version() > 0);
    assert_eq!(count(&engine, "SELECT count(*) FROM l7_flow_log WHERE pod_0 = 'web-1'"), expect_web1);
    assert_eq!(
        count(&engine, "SELECT count(*) FROM l7_flow_log WHERE pod_ns_1 = 'db' AND pod_cluster_1 = 'c1'"),
        expect_mysql
    );
    // names only at query time: the files hold ids
    let ids = engine.query("SELECT DISTINCT pod_id_0 FROM l7_flow_log_ids WHERE ip_0 = '10.1.0.1'").unwrap();
    assert_eq!(ids[0].column(0).data_type(), &deepflow_store::arrow::datatypes::DataType::UInt32);
    assert!(ids[0].column(0).as_primitive::<deepflow_store::arrow::datatypes::UInt32Type>().value(0) > 0);
    // group by a name, through the view; the service of 10.2.0.4 is its cluster IP
    let csv = query_csv(
        &engine,
        "SELECT service_1, pod_group_1, count(*) AS n FROM l7_flow_log WHERE service_1 IS NOT NULL \
         GROUP BY service_1, pod_group_1 ORDER BY service_1, pod_group_1",
    );
    assert!(csv.contains("mysql-svc,"), "{csv}");
    // dictionary tables and labels by name
    assert_eq!(count(&engine, "SELECT count(*) FROM pod_map"), 3);
    assert_eq!(count(&engine, "SELECT count(*) FROM labels WHERE kind = 'pod' AND key = 'app' AND value = 'web'"), 2);
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM l7_flow_log WHERE label_value('pod', pod_id_0, 'app') = 'web' AND pod_0 = 'web-1'"
        ),
        expect_web1
    );
    // joins on the id columns work too
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM l7_flow_log_ids f JOIN pod_map p ON f.pod_id_0 = p.id WHERE p.name = 'web-1'"
        ),
        expect_web1
    );
    // unknown ids are null names
    assert_eq!(
        count(&engine, "SELECT count(*) FROM l7_flow_log WHERE pod_id_0 = 0 AND pod_0 IS NULL"),
        count(&engine, "SELECT count(*) FROM l7_flow_log_ids WHERE pod_id_0 = 0")
    );
    // name filters run as id filters (name_filter.rs): the plan compares the id column with the
    // id of the name, and the counts are those of the names
    let web1 = engine.query("SELECT id FROM pod_map WHERE name = 'web-1'").unwrap();
    let web1 = web1[0].column(0).as_primitive::<deepflow_store::arrow::datatypes::UInt32Type>().value(0);
    let text = query_csv(&engine, "EXPLAIN SELECT count(*) FROM l7_flow_log WHERE pod_0 = 'web-1'");
    assert!(text.contains(&format!("pod_id_0 = UInt32({web1})")), "{text}");
    assert!(!text.contains("dict_get(Utf8(\"pod\"), pod_id_0) = "), "{text}");
    assert_eq!(count(&engine, "SELECT count(*) FROM l7_flow_log WHERE 'web-1' = pod_0"), expect_web1);
    assert_eq!(count(&engine, "SELECT count(*) FROM l7_flow_log WHERE pod_0 IN ('web-1', 'nope')"), expect_web1);
    assert_eq!(count(&engine, "SELECT count(*) FROM l7_flow_log WHERE pod_0 = 'nope'"), 0);
    assert_eq!(count(&engine, "SELECT count(*) FROM l7_flow_log WHERE pod_0 IN ('nope')"), 0);
    // not rewritten where NULL and false differ: under NOT and OR the names decide
    assert_eq!(
        count(&engine, "SELECT count(*) FROM l7_flow_log WHERE NOT (pod_0 = 'nope')"),
        count(&engine, "SELECT count(*) FROM l7_flow_log WHERE pod_0 IS NOT NULL")
    );
    assert_eq!(
        count(&engine, "SELECT count(*) FROM l7_flow_log WHERE pod_0 = 'web-1' OR pod_0 = 'web-2'"),
        count(&engine, "SELECT count(*) FROM l7_flow_log WHERE pod_0 IN ('web-1', 'web-2')")
    );
}

/// `GROUP BY` a name column runs on canonical ids (name_group.rs) and gives the groups the names
/// give: ids sharing a name merge, 0 and ids unknown to the dictionary are one null group, the
/// output columns keep their names and types.
#[test]
fn group_by_name_runs_on_ids_with_the_groups_of_names() {
    use deepflow_store::arrow::datatypes::DataType;
    use deepflow_tagging::{DictionarySet, ResourceKind, UniversalTags};
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let mut d = DictionarySet::new();
    // two pods named `web` in different namespaces, ids 1 and 3
    let web_a = d.intern(ResourceKind::Pod, "ns-a/web", "web").unwrap();
    let db = d.intern(ResourceKind::Pod, "ns-a/db", "db").unwrap();
    let web_b = d.intern(ResourceKind::Pod, "ns-b/web", "web").unwrap();
    let svc = d.intern(ResourceKind::Service, "ns-a/front", "front").unwrap();
    d.commit();
    storage.put_atomic(deepflow_store::query::DICT_FILE, d.encode().into()).unwrap();
    let mut w = StoreWriter::open(storage.clone(), WriterOptions::default()).unwrap();
    // server pod of row i: web_a, db, web_b, 0 (unknown), 99 (not in the dictionary)
    let pods = [web_a, db, web_b, 0, 99];
    for (i, row) in l7_rows(500, 1).into_iter().enumerate() {
        let pod_id = pods[i % pods.len()];
        let tags_1 = UniversalTags { pod_id, service_id: if i % 2 == 0 { svc } else { 0 }, ..Default::default() };
        let tags_0 = UniversalTags { pod_id: pods[(i / 5) % pods.len()], ..Default::default() };
        w.append_tagged(TaggedRow { row, tags_0, tags_1 }).unwrap();
    }
    w.close().unwrap();
    let engine = QueryEngine::open(storage).unwrap();
    let csv = |sql: &str| query_csv(&engine, sql);
    let plan = csv("EXPLAIN SELECT pod_1, count(*) FROM l7_flow_log GROUP BY pod_1");
    assert!(plan.contains("dict_canon"), "{plan}");
    // the same query grouped by the name as a string (a form the rule leaves alone)
    let by_ids = csv("SELECT pod_1, count(*) AS n FROM l7_flow_log GROUP BY pod_1 ORDER BY pod_1 NULLS LAST");
    let by_names = csv("SELECT CAST(pod_1 AS VARCHAR) AS pod_1, count(*) AS n FROM l7_flow_log \
         GROUP BY CAST(pod_1 AS VARCHAR) ORDER BY 1 NULLS LAST");
    assert!(
        !csv("EXPLAIN SELECT CAST(pod_1 AS VARCHAR), count(*) FROM l7_flow_log GROUP BY CAST(pod_1 AS VARCHAR)")
            .contains("dict_canon")
    );
    assert_eq!(by_ids, "pod_1,n\ndb,100\nweb,200\n,200\n");
    assert_eq!(by_ids, by_names);
    // the output column keeps its type
    let b = engine.query("SELECT pod_1, count(*) FROM l7_flow_log GROUP BY pod_1").unwrap();
    assert!(matches!(b[0].schema().field(0).data_type(), DataType::Dictionary(..)), "{:?}", b[0].schema());
    assert_eq!(b[0].schema().field(0).name(), "pod_1");
    // several keys, one of them not a name; HAVING and ORDER BY on the name; DISTINCT on a name
    let multi = "SELECT pod_1, service_1, server_port, count(*) AS n, count(DISTINCT pod_0) AS clients \
                 FROM l7_flow_log GROUP BY pod_1, service_1, server_port HAVING pod_1 = 'web' OR service_1 IS NULL \
                 ORDER BY pod_1 NULLS FIRST, service_1 NULLS FIRST, server_port";
    let multi_names = multi
        .replace(
            "SELECT pod_1, service_1",
            "SELECT CAST(pod_1 AS VARCHAR) AS pod_1, CAST(service_1 AS VARCHAR) AS service_1",
        )
        .replace("count(DISTINCT pod_0)", "count(DISTINCT CAST(pod_0 AS VARCHAR))")
        .replace("GROUP BY pod_1, service_1,", "GROUP BY CAST(pod_1 AS VARCHAR), CAST(service_1 AS VARCHAR),")
        .replace(
            "HAVING pod_1 = 'web' OR service_1",
            "HAVING CAST(pod_1 AS VARCHAR) = 'web' OR CAST(service_1 AS VARCHAR)",
        );
    assert!(csv(&format!("EXPLAIN {multi}")).contains("dict_canon"));
    assert_eq!(csv(multi), csv(&multi_names));
    assert_eq!(csv("SELECT DISTINCT pod_1 FROM l7_flow_log ORDER BY 1 NULLS LAST"), "pod_1\ndb\nweb\n\"\"\n");
    // the function written in the query, and with a cast on top
    assert_eq!(
        csv(
            "SELECT dict_get('pod', pod_id_1) AS p, count(*) AS n FROM l7_flow_log_ids GROUP BY 1 ORDER BY 1 NULLS LAST"
        ),
        "p,n\ndb,100\nweb,200\n,200\n"
    );
    assert_eq!(
        csv(
            "SELECT CAST(dict_get('pod', pod_id_1) AS VARCHAR) AS p, count(*) AS n FROM l7_flow_log_ids GROUP BY 1 ORDER BY 1 NULLS LAST"
        ),
        "p,n\ndb,100\nweb,200\n,200\n"
    );
    // ROLLUP is left alone and still right
    assert_eq!(
        csv("SELECT pod_1, count(*) AS n FROM l7_flow_log GROUP BY ROLLUP(pod_1) ORDER BY n, pod_1 NULLS LAST"),
        "pod_1,n\ndb,100\nweb,200\n,200\n,500\n"
    );
}

/// `log` and `profile` carry one suffix-less set of tag ids (the emitting resource) named by
/// their views; files written before those columns existed still read, with null ids and names.
#[test]
fn log_and_profile_row_tags_and_older_files() {
    use deepflow_core::record::{LogRecord, ProfileSample};
    use deepflow_store::Record;
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let tagger =
        Arc::new(Tagger::new(TaggerOptions { default_vpc: Some("prod".into()), ..Default::default() }).unwrap());
    tagger.update_source("inv", Inventory::parse(INVENTORY, Format::Yaml, "inv.yaml").unwrap()).unwrap();
    let web1 = tagger.snapshot().tag(&deepflow_tagging::Endpoint::ip(ip("10.1.0.1")));
    assert!(web1.pod_id > 0);
    let log = |body: &str| LogRecord { time: T0_US, body: body.into(), signal_source: "otel", ..Default::default() };
    let prof = |app: &str| ProfileSample {
        time: T0_US,
        app_service: app.into(),
        stack: "main;work".into(),
        value: 1,
        signal_source: "pyroscope",
        ..Default::default()
    };
    // older files: the schema without the trailing 12 tag columns
    let props = deepflow_store::writer::writer_properties(1024, 1).unwrap();
    let hour = deepflow_store::storage::Hour::from_us(T0_US).dir();
    let old = |b: RecordBatch| {
        let keep = b.num_columns() - 12;
        assert_eq!(b.schema().field(keep).name(), "region_id");
        b.project(&(0..keep).collect::<Vec<_>>()).unwrap()
    };
    let old_log = old(LogRecord::to_batch(&untagged(&[log("old")])).unwrap());
    let old_prof = old(ProfileSample::to_batch(&untagged(&[prof("old")])).unwrap());
    for (t, b) in [("log", old_log), ("profile", old_prof)] {
        let bytes = deepflow_store::writer::encode_parquet(&[b], &props).unwrap();
        storage.put_atomic(&format!("table={t}/{hour}/part-0-old.parquet"), bytes).unwrap();
    }
    let mut w = StoreWriter::open(storage.clone(), WriterOptions::default().with_tagger(tagger.clone())).unwrap();
    w.append_tagged(TaggedRow { row: log("new"), tags_0: web1, tags_1: Default::default() }).unwrap();
    w.append_tagged(TaggedRow { row: prof("new"), tags_0: web1, tags_1: Default::default() }).unwrap();
    // plain appends are untagged (0), whatever the tagger
    w.append(log("plain")).unwrap();
    w.close().unwrap();
    let engine = QueryEngine::open(storage).unwrap();
    let csv = |sql: &str| query_csv(&engine, sql);
    assert_eq!(
        csv(
            "SELECT body, pod_id IS NULL AS null_id, pod_id > 0 AS tagged, pod, pod_ns, pod_group, service FROM log ORDER BY body"
        ),
        "body,null_id,tagged,pod,pod_ns,pod_group,service\nnew,false,true,web-1,shop,web,web-svc\nold,true,,,,,\nplain,false,false,,,,\n"
    );
    assert_eq!(
        csv("SELECT app_service, pod, pod_cluster, l3_epc FROM profile ORDER BY app_service"),
        "app_service,pod,pod_cluster,l3_epc\nnew,web-1,c1,prod\nold,,,\n"
    );
}

fn now_after_t0(hours: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(T0_US + hours * HOUR_US)
}

#[test]
fn retention_by_age_and_budget() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let mut w = StoreWriter::open(storage.clone(), WriterOptions::default()).unwrap();
    w.extend(l4_rows(6000, 6)).unwrap(); // hours 10..=15
    w.close().unwrap();
    assert_eq!(partitions(&storage, Table::L4FlowLog).unwrap().len(), 6);

    // at 16:00, keep 3 hours: partitions 10, 11, 12 (ended by 13:00) go
    let r = deepflow_store::apply_retention(
        &storage,
        Table::L4FlowLog,
        RetentionPolicy { max_age: Some(Duration::from_secs(3 * 3600)), max_bytes: None },
        now_after_t0(6),
    )
    .unwrap();
    assert_eq!((r.partitions, r.files), (3, 3));
    let left = partitions(&storage, Table::L4FlowLog).unwrap();
    assert_eq!(
        left.iter().map(|p| p.dir.rsplit('=').next().unwrap().to_string()).collect::<Vec<_>>(),
        ["13", "14", "15"]
    );
    // a budget of a bit more than one partition keeps only the newest
    let budget = left.last().unwrap().bytes() + 10;
    let r = deepflow_store::apply_retention(
        &storage,
        Table::L4FlowLog,
        RetentionPolicy { max_age: None, max_bytes: Some(budget) },
        now_after_t0(6),
    )
    .unwrap();
    assert_eq!(r.partitions, 2);
    let left = partitions(&storage, Table::L4FlowLog).unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].dir.ends_with("hour=15"));
    let engine = QueryEngine::open(storage).unwrap();
    assert_eq!(count(&engine, "SELECT count(*) FROM l4_flow_log"), 1000);
    // emptied directories are gone
    assert!(!dir.path().join("table=l4_flow_log/date=2024-05-01/hour=10").exists());
}

#[test]
fn compaction_merges_small_files() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let mut w = StoreWriter::open(storage.clone(), WriterOptions::default()).unwrap();
    for _ in 0..5 {
        w.extend(l7_rows(1000, 2)).unwrap();
        w.flush().unwrap();
    }
    drop(w);
    let engine = QueryEngine::open(storage.clone()).unwrap();
    let before = engine.query("SELECT count(*), sum(rrt), count(DISTINCT trace_id) FROM l7_flow_log").unwrap();
    assert_eq!(partitions(&storage, Table::L7FlowLog).unwrap().iter().map(|p| p.files.len()).sum::<usize>(), 10);
    let r =
        deepflow_store::compact(&storage, Table::L7FlowLog, &CompactionOptions::default(), SystemTime::now()).unwrap();
    assert_eq!((r.partitions, r.files, r.files_written), (2, 10, 2));
    let parts = partitions(&storage, Table::L7FlowLog).unwrap();
    assert!(parts.iter().all(|p| p.files.len() == 1 && p.all.len() == 1), "{parts:?}");
    let after = engine.query("SELECT count(*), sum(rrt), count(DISTINCT trace_id) FROM l7_flow_log").unwrap();
    assert_eq!(before, after);
    assert_eq!(after[0].column(0).as_primitive::<Int64Type>().value(0), 5000);
    // nothing left to do
    let r =
        deepflow_store::compact(&storage, Table::L7FlowLog, &CompactionOptions::default(), SystemTime::now()).unwrap();
    assert_eq!(r.partitions, 0);
}

#[test]
fn compaction_recovery_rolls_forward_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let mut w = StoreWriter::open(storage.clone(), WriterOptions::default()).unwrap();
    for _ in 0..2 {
        w.extend(l7_rows(100, 1)).unwrap();
        w.flush().unwrap();
    }
    drop(w);
    let p = &partitions(&storage, Table::L7FlowLog).unwrap()[0];
    let names: Vec<&str> = p.files.iter().map(|f| f.path.rsplit('/').next().unwrap()).collect();
    // crash after the intent, before the output: roll back (inputs stay)
    let intent = format!("{}/_compaction-x.intent", p.dir);
    let text = format!("output part-merged.parquet\ninput {}\ninput {}\n", names[0], names[1]);
    storage.put_atomic(&intent, text.clone().into()).unwrap();
    assert_eq!(maintenance::recover(&storage).unwrap(), 1);
    assert_eq!(partitions(&storage, Table::L7FlowLog).unwrap()[0].all.len(), 2);
    // crash after the output was written: roll forward (inputs go)
    let merged = storage.get(&p.files[0].path).unwrap();
    storage.put_atomic(&intent, text.into()).unwrap();
    storage.put_atomic(&format!("{}/part-merged.parquet", p.dir), merged).unwrap();
    maintenance::recover(&storage).unwrap();
    let after = &partitions(&storage, Table::L7FlowLog).unwrap()[0];
    assert_eq!(after.all.len(), 1);
    assert!(after.files[0].path.ends_with("part-merged.parquet"));
}

/// The child side of `kill_9_mid_write`: writes forever, printing the durable row count after
/// every flush. Does nothing unless started by that test.
#[test]
fn crash_child() {
    let Ok(root) = std::env::var("DEEPFLOW_STORE_CRASH_CHILD") else { return };
    let storage = Storage::local(&root).unwrap();
    let opts = WriterOptions::default().with_flush(2000, usize::MAX, Duration::from_secs(3600));
    let mut w = StoreWriter::open(storage, opts).unwrap();
    let rows = l7_rows(500, 1);
    loop {
        for r in &rows {
            let before = w.stats().flushes;
            w.append(r.clone()).unwrap();
            if w.stats().flushes != before {
                println!("durable {}", w.stats().rows.iter().sum::<u64>());
            }
        }
    }
}

#[test]
fn kill_9_mid_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads", "1"])
        .env("DEEPFLOW_STORE_CRASH_CHILD", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut durable = 0u64;
    // let it flush a few times, then kill it at a random-ish point mid-batch
    while durable < 20_000 {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(n) = line.strip_prefix("durable ") {
            durable = n.parse().unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(3));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // the last lines may have been printed before the kill
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("durable ") {
            durable = n.parse().unwrap();
        }
    }

    let storage = Storage::local(dir.path()).unwrap();
    // every visible file is a complete Parquet file
    let files: Vec<_> =
        storage.list("table=l7_flow_log").unwrap().into_iter().filter(|f| f.path.ends_with(".parquet")).collect();
    let mut rows = 0u64;
    for f in &files {
        let bytes = storage.get(&f.path).unwrap();
        let r = deepflow_store::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", f.path))
            .build()
            .unwrap();
        rows += r.map(|b| b.unwrap().num_rows() as u64).sum::<u64>();
    }
    // flushes write 2000 rows at a time: at most the flush in progress (not yet reported) and
    // the unflushed buffer (< 2000 rows) are lost
    assert!(rows >= durable, "{rows} rows on disk, {durable} reported durable");
    assert!(rows <= durable + 2000, "{rows} rows on disk, {durable} reported durable");
    assert_eq!(rows % 2000, 0);
    // a new writer removes the dead writer's temp file, if the kill left one
    let w = StoreWriter::open(storage.clone(), WriterOptions::default()).unwrap();
    let temps = storage.list("").unwrap().into_iter().filter(|f| f.path.contains(".tmp-")).count();
    assert_eq!(temps, 0, "temp files left after reopen ({} removed)", w.stats().temp_files_removed);
    let engine = QueryEngine::open(storage).unwrap();
    assert_eq!(count(&engine, "SELECT count(*) FROM l7_flow_log") as u64, rows);
}

#[test]
fn output_formats() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let mut w = StoreWriter::open(storage.clone(), WriterOptions::default()).unwrap();
    w.extend(l7_rows(10, 1)).unwrap();
    w.close().unwrap();
    let engine = QueryEngine::open(storage).unwrap();
    let b =
        engine.query("SELECT flow_id, ip_0, pod_0, attribute_names FROM l7_flow_log ORDER BY flow_id LIMIT 2").unwrap();
    let mut out = Vec::new();
    deepflow_store::format::write_batches(&b, OutputFormat::Jsonl, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["flow_id"], 1);
    assert_eq!(first["ip_0"], "fd00::1");
    let mut out = Vec::new();
    deepflow_store::format::write_batches(&b, OutputFormat::Table, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("| flow_id |"), "{text}");
    let _ = b.iter().map(RecordBatch::num_rows).sum::<usize>();
}
