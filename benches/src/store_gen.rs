//! Generated `l7_flow_log` rows and tag dictionaries for the deepflow-store benchmarks
//! (`benches/benches/store.rs` and the `store_ingest` binary).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use deepflow_core::FlowInfo;
use deepflow_core::record::{L7FlowLog, L7Protocol, LogType, ResponseStatus};
use deepflow_store::arrow::array::{RecordBatch, StringArray, UInt8Array, UInt32Array};
use deepflow_store::arrow::datatypes::{DataType, Field, Schema};
use deepflow_tagging::{DictionarySet, ResourceKind, TaggedRow, UniversalTags};

/// Pods in the generated inventory.
pub const PODS: u32 = 10_000;
/// Services in the generated inventory.
pub const SERVICES: u32 = 1_000;
/// Namespaces in the generated inventory.
pub const NAMESPACES: u32 = 100;
/// Custom labels per pod.
pub const LABELS: u32 = 20;
/// Start of the generated time range: 2024-05-01T10:00:00Z, µs.
pub const T0_US: u64 = 1_714_557_600_000_000;

/// xorshift64: deterministic and cheap.
pub struct Rng(pub u64);
impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

fn pod_ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 244, (i / 250) as u8, (i % 250 + 1) as u8))
}

/// A realistic session row `i` of `n` over `span_us`: HTTP/gRPC/MySQL/Redis/DNS mix, 200
/// endpoints, random trace ids. Returns the row and its client and server pod numbers.
pub fn l7_row(rng: &mut Rng, i: u64, n: u64, span_us: u64) -> (L7FlowLog, u32, u32) {
    let client = rng.below(PODS);
    let server = rng.below(PODS);
    let proto =
        [L7Protocol::Http1, L7Protocol::Http1, L7Protocol::Grpc, L7Protocol::MySql, L7Protocol::Redis, L7Protocol::Dns]
            [(rng.next() % 6) as usize];
    let flow = FlowInfo {
        flow_id: i / 4 + 1,
        protocol: if proto == L7Protocol::Dns { 17 } else { 6 },
        client_ip: pod_ip(client),
        server_ip: pod_ip(server),
        client_port: 30000 + rng.below(30000) as u16,
        server_port: match proto {
            L7Protocol::MySql => 3306,
            L7Protocol::Redis => 6379,
            L7Protocol::Dns => 53,
            L7Protocol::Grpc => 9090,
            _ => 8080,
        },
        tunnel: Default::default(),
        start_time_us: 0,
    };
    let mut r = L7FlowLog::new(&flow, proto, LogType::Session);
    r.start_time = T0_US + i * span_us / n;
    let rrt = 200 + rng.next() % 50_000;
    r.end_time = r.start_time + rrt;
    r.rrt = Some(rrt);
    let ep = rng.below(200);
    let (ty, res) = match proto {
        L7Protocol::MySql => ("COM_QUERY", format!("SELECT * FROM orders WHERE id = {}", rng.below(1_000_000))),
        L7Protocol::Redis => ("GET", format!("session:{}", rng.below(100_000))),
        L7Protocol::Dns => ("A", format!("svc-{}.prod.svc.cluster.local", rng.below(SERVICES))),
        _ => (["GET", "POST"][(rng.next() % 2) as usize], format!("/api/v1/items/{}/detail", rng.below(100_000))),
    };
    r.version = Some("1.1".into());
    r.request_type = Some(ty.into());
    r.request_domain = Some(format!("svc-{}.prod", server % SERVICES));
    r.request_resource = Some(res);
    r.endpoint = Some(format!("/api/v1/ep{ep}"));
    let st = rng.below(100);
    r.response_status = if st < 90 {
        ResponseStatus::Ok
    } else if st < 96 {
        ResponseStatus::ClientError
    } else {
        ResponseStatus::ServerError
    };
    r.response_code = Some(match r.response_status {
        ResponseStatus::Ok => 200,
        ResponseStatus::ClientError => 404,
        _ => 500,
    });
    r.request_length = Some(u64::from(rng.below(2000)));
    r.response_length = Some(u64::from(rng.below(20000)));
    if rng.below(2) == 0 {
        r.trace_id = Some(format!("{:016x}{:016x}", rng.next(), rng.next()));
        r.span_id = Some(format!("{:016x}", rng.next()));
    }
    (r, client, server)
}

/// The universal tags of generated pod `pod`.
pub fn tags_of(pod: u32) -> UniversalTags {
    UniversalTags {
        region_id: 1,
        az_id: 1 + pod % 3,
        host_id: 1 + pod % 50,
        l3_epc_id: 1,
        subnet_id: 1 + pod / 250,
        pod_cluster_id: 1,
        pod_ns_id: 1 + pod % NAMESPACES,
        pod_node_id: 1 + pod % 50,
        pod_group_id: 1 + pod % 2000,
        pod_id: 1 + pod,
        service_id: 1 + pod % SERVICES,
        gprocess_id: 0,
    }
}

/// `n` tagged rows over one hour from [`T0_US`] (the ingest benchmark's data set).
pub fn tagged_rows(n: u64) -> Vec<TaggedRow<L7FlowLog>> {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    (0..n)
        .map(|i| {
            let (row, c, s) = l7_row(&mut rng, i, n, 3_600_000_000);
            TaggedRow { row, tags_0: tags_of(c), tags_1: tags_of(s) }
        })
        .collect()
}

/// The dictionaries of the generated inventory.
pub fn dictionaries() -> DictionarySet {
    let mut d = DictionarySet::new();
    let mut add = |k: ResourceKind, n: u32, f: &dyn Fn(u32) -> String| {
        for i in 0..n {
            let name = f(i);
            let _ = d.intern(k, &name, &name);
        }
    };
    add(ResourceKind::Region, 1, &|_| "cn-east-1".into());
    add(ResourceKind::Az, 3, &|i| format!("cn-east-1{}", (b'a' + i as u8) as char));
    add(ResourceKind::Host, 50, &|i| format!("node-{i:03}.prod.example.com"));
    add(ResourceKind::Vpc, 1, &|_| "vpc-prod".into());
    add(ResourceKind::Subnet, PODS / 250 + 1, &|i| format!("pod-subnet-{i}"));
    add(ResourceKind::PodCluster, 1, &|_| "prod-cluster".into());
    add(ResourceKind::PodNs, NAMESPACES, &|i| format!("team-{i}-namespace"));
    add(ResourceKind::PodNode, 50, &|i| format!("node-{i:03}"));
    add(ResourceKind::PodGroup, 2000, &|i| format!("workload-{i}-deployment"));
    add(ResourceKind::Pod, PODS, &|i| format!("workload-{}-deployment-7d4b9c6f5-{:05x}", i % 2000, i * 7919 % 0xfffff));
    add(ResourceKind::Service, SERVICES, &|i| format!("service-{i}"));
    for k in 0..LABELS {
        let _ = d.intern(ResourceKind::LabelKey, &format!("label-key-{k}"), &format!("label-key-{k}"));
    }
    for v in 0..200 {
        let _ = d.intern(ResourceKind::LabelValue, &format!("value-{v}"), &format!("value-{v}"));
    }
    d.commit();
    d
}

/// The custom-label rows of the generated inventory (20 labels per pod), as the store's
/// `labels.parquet` holds them.
pub fn labels_batch() -> RecordBatch {
    let mut kind = Vec::new();
    let (mut rid, mut kid, mut vid, mut src) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in 0..PODS {
        for k in 0..LABELS {
            kind.push("pod");
            rid.push(p + 1);
            kid.push(k + 1);
            vid.push(1 + (p * 31 + k * 7) % 200);
            src.push(0u8);
        }
    }
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("kind", DataType::Utf8, false),
            Field::new("resource_id", DataType::UInt32, false),
            Field::new("key_id", DataType::UInt32, false),
            Field::new("value_id", DataType::UInt32, false),
            Field::new("source", DataType::UInt8, false),
        ])),
        vec![
            Arc::new(StringArray::from(kind)),
            Arc::new(UInt32Array::from(rid)),
            Arc::new(UInt32Array::from(kid)),
            Arc::new(UInt32Array::from(vid)),
            Arc::new(UInt8Array::from(src)),
        ],
    )
    .expect("labels batch")
}

/// Stores the generated inventory next to the rows, as the store's writer would with a tagger:
/// the dictionaries ([`dictionaries`]) and the custom labels ([`labels_batch`]).
pub fn put_inventory(storage: &deepflow_store::Storage) {
    use deepflow_store::query::{DICT_FILE, LABELS_FILE};
    use deepflow_store::writer::{encode_parquet, writer_properties};
    storage.put_atomic(DICT_FILE, dictionaries().encode().into()).expect("dictionaries");
    let props = writer_properties(1 << 20, 1).expect("props");
    storage.put_atomic(LABELS_FILE, encode_parquet(&[labels_batch()], &props).expect("labels")).expect("labels");
}

/// The RED query of the store benchmarks over the hour of [`T0_US`], grouped by `group`
/// (`service_1` through the name view, or an id column).
pub fn red_sql(group: &str) -> String {
    format!(
        "SELECT {group}, count(*) AS requests, \
         sum(CASE WHEN response_status = 'server_error' THEN 1 ELSE 0 END) AS errors, avg(rrt) AS rrt_avg \
         FROM l7_flow_log WHERE date = '2024-05-01' AND hour = '10' GROUP BY {group}"
    )
}

/// Copies the `l7_flow_log` rows of `engine` to `dir` (Hive partitions, zstd Parquet) with every
/// tag as its name in a string column instead of its id, plus, with `labels`, the
/// [`LABELS`] pod labels of each side as one `key=value,...` string column (`labels_0`,
/// `labels_1`). Returns the names of the tag columns written.
pub fn copy_with_names(engine: &deepflow_store::QueryEngine, dir: &std::path::Path, labels: bool) -> Vec<String> {
    let mut cols: Vec<String> = <L7FlowLog as deepflow_store::Record>::schema()
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
        if labels {
            let l: Vec<String> = (0..LABELS)
                .map(|k| {
                    format!("'label-key-{k}=' || CAST(label_value('pod', pod_id_{side}, 'label-key-{k}') AS VARCHAR)")
                })
                .collect();
            cols.push(format!("concat_ws(',', {}) AS labels_{side}", l.join(", ")));
            name_cols.push(format!("labels_{side}"));
        }
    }
    let copy = format!(
        "COPY (SELECT {} FROM l7_flow_log) TO '{}' STORED AS PARQUET PARTITIONED BY (date, hour) \
         OPTIONS ('format.compression' 'zstd(1)')",
        cols.join(", "),
        dir.display()
    );
    engine.query(&copy).expect("copy names");
    name_cols
}

/// The Python with `duckdb` that the store benchmarks compare against
/// (`scripts/install-python-deps.sh`).
pub const DUCKDB_PYTHON: &str = "/opt/deepflow-venv/bin/python";

/// Runs the RED query by `service_1` in DuckDB on the pre-joined files under `dir` (from
/// [`copy_with_names`]), best of `runs`: `Ok((ms, groups))`, or why it did not run.
pub fn duckdb_red_ms(dir: &std::path::Path, runs: usize) -> Result<(f64, String), String> {
    let script = format!(
        "import duckdb, time\ncon = duckdb.connect()\nq = \"\"\"SELECT service_1, count(*) AS requests, \
         sum(CASE WHEN response_status = 'server_error' THEN 1 ELSE 0 END) AS errors, avg(rrt) AS rrt_avg \
         FROM read_parquet('{}/**/*.parquet', hive_partitioning=true) WHERE date = '2024-05-01' AND hour = 10 \
         GROUP BY service_1\"\"\"\nbest = 1e9\nfor _ in range({runs}):\n    t = time.perf_counter(); r = con.execute(q).fetchall(); best = min(best, time.perf_counter() - t)\nprint(best * 1000, len(r))\n",
        dir.display()
    );
    if !std::path::Path::new(DUCKDB_PYTHON).exists() {
        return Err(format!("{DUCKDB_PYTHON} missing (scripts/install-python-deps.sh)"));
    }
    match std::process::Command::new(DUCKDB_PYTHON).args(["-c", &script]).output() {
        Ok(o) if o.status.success() => {
            let s = String::from_utf8_lossy(&o.stdout);
            let mut it = s.split_whitespace();
            let ms: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
            Ok((ms, it.next().unwrap_or("?").to_string()))
        }
        Ok(o) => Err(format!("duckdb failed: {}", String::from_utf8_lossy(&o.stderr))),
        Err(e) => Err(format!("duckdb not run: {e}")),
    }
}
