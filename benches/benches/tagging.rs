//! AutoTagging: IP lookups and flow-row tagging over a realistic cluster (10k pods, 1k services,
//! 100 namespaces, 50 nodes, 20 labels per pod, a few hundred subnets in three VPCs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_core::record::L4FlowLog;
use deepflow_tagging::inventory::{
    NamespaceEntry, NodeEntry, PodClusterEntry, PodEntry, PodGroupEntry, ServiceEntry, SubnetEntry, VpcEntry,
};
use deepflow_tagging::{Endpoint, Inventory, Snapshot, Tagger, TaggerOptions};

const PODS: u32 = 10_000;
const SERVICES: u32 = 1_000;
const NAMESPACES: u32 = 100;
const NODES: u32 = 50;

fn pod_ip(i: u32) -> IpAddr {
    // pod CIDR per node: 10.244.<node>.0/24, 200 pods per node
    IpAddr::V4(Ipv4Addr::new(10, 244, (i % NODES) as u8, (i / NODES % 250 + 2) as u8))
}

fn svc_ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 96, (i / 250) as u8, (i % 250 + 1) as u8))
}

fn inventory() -> Inventory {
    let mut inv = Inventory::default();
    for v in ["prod", "staging", "corp"] {
        inv.vpcs.push(VpcEntry { name: v.into(), ..Default::default() });
    }
    // corp/staging: 200 /24s each under a few /16s, plus IPv6 /64s
    for (v, base) in [("staging", 20u8), ("corp", 30u8)] {
        for j in 0..4u8 {
            inv.subnets.push(SubnetEntry {
                name: format!("{v}-{j}"),
                vpc: v.into(),
                cidrs: vec![format!("10.{}.0.0/16", base + j)],
                ..Default::default()
            });
        }
        for j in 0..200u32 {
            inv.subnets.push(SubnetEntry {
                name: format!("{v}-s{j}"),
                vpc: v.into(),
                cidrs: vec![
                    format!("10.{}.{}.0/24", base + (j / 50) as u8, j % 50 * 4),
                    format!("fd{base:02x}:{j:x}::/64"),
                ],
                ..Default::default()
            });
        }
    }
    let mut prod = vec![
        ("prod-nodes", "192.168.0.0/20".to_string()),
        ("prod-services", "10.96.0.0/12".to_string()),
        ("prod-all", "10.0.0.0/8".to_string()),
    ];
    for n in 0..NODES {
        prod.push(("", format!("10.244.{n}.0/24")));
    }
    for (i, (name, cidr)) in prod.into_iter().enumerate() {
        let name = if name.is_empty() { format!("prod-pods-{i}") } else { name.to_string() };
        inv.subnets.push(SubnetEntry { name, vpc: "prod".into(), cidrs: vec![cidr], ..Default::default() });
    }
    inv.pod_clusters.push(PodClusterEntry { name: "c1".into(), vpc: Some("prod".into()), ..Default::default() });
    for n in 0..NODES {
        inv.pod_nodes.push(NodeEntry {
            name: format!("node-{n}"),
            cluster: "c1".into(),
            ips: vec![format!("192.168.{}.{}", n / 200, n % 200 + 10)],
            ..Default::default()
        });
    }
    for ns in 0..NAMESPACES {
        inv.pod_namespaces.push(NamespaceEntry {
            name: format!("ns-{ns}"),
            cluster: "c1".into(),
            ..Default::default()
        });
        for g in 0..10 {
            inv.pod_groups.push(PodGroupEntry {
                name: format!("app-{g}"),
                cluster: "c1".into(),
                namespace: format!("ns-{ns}"),
                kind: "Deployment".into(),
                ..Default::default()
            });
        }
    }
    for s in 0..SERVICES {
        let ns = s % NAMESPACES;
        let app = s / NAMESPACES % 10;
        inv.services.push(ServiceEntry {
            name: format!("svc-{app}"),
            cluster: "c1".into(),
            namespace: format!("ns-{ns}"),
            cluster_ips: vec![svc_ip(s).to_string()],
            selector: [("app".to_string(), format!("app-{app}"))].into(),
            ..Default::default()
        });
    }
    for p in 0..PODS {
        let ns = p % NAMESPACES;
        let app = p / NAMESPACES % 10;
        let mut labels: std::collections::BTreeMap<String, String> =
            (0..19).map(|k| (format!("example.com/label-{k}"), format!("value-{}", (p + k) % 37))).collect();
        labels.insert("app".into(), format!("app-{app}"));
        inv.pods.push(PodEntry {
            name: format!("app-{app}-{p:08x}"),
            cluster: "c1".into(),
            namespace: format!("ns-{ns}"),
            node: Some(format!("node-{}", p % NODES)),
            group: Some(format!("app-{app}")),
            group_kind: Some("Deployment".into()),
            ips: vec![pod_ip(p).to_string()],
            labels,
            ..Default::default()
        });
    }
    inv
}

fn setup() -> (Tagger, std::sync::Arc<Snapshot>) {
    let t = Tagger::new(TaggerOptions { default_vpc: Some("prod".into()), ..Default::default() }).unwrap();
    let s = t.update_source("bench", inventory()).unwrap();
    (t, s)
}

fn bench(c: &mut Criterion) {
    let (tagger, snap) = setup();
    let prod = tagger.vpc_id("prod").unwrap();
    let mut x: u32 = 12345;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    const N: usize = 4096;
    let pods: Vec<IpAddr> = (0..N).map(|_| pod_ip(rnd() % PODS)).collect();
    let svcs: Vec<IpAddr> = (0..N).map(|_| svc_ip(rnd() % SERVICES)).collect();
    let lpm: Vec<IpAddr> =
        (0..N).map(|_| IpAddr::V4(Ipv4Addr::new(10, 20 + (rnd() % 14) as u8, rnd() as u8, rnd() as u8))).collect();
    let lpm6: Vec<IpAddr> =
        (0..N).map(|_| IpAddr::V6(Ipv6Addr::new(0xfd14, (rnd() % 256) as u16, 0, 0, 0, 0, 0, rnd() as u16))).collect();
    assert!(pods.iter().all(|&ip| snap.lookup_ip(Some(prod), ip).pod_id != 0));
    assert!(svcs.iter().all(|&ip| snap.lookup_ip(Some(prod), ip).service_id != 0));
    let corp = tagger.vpc_id("corp").unwrap();
    let rows: Vec<L4FlowLog> = (0..N)
        .map(|i| L4FlowLog {
            ip_0: Some(pods[i]),
            ip_1: Some(if i % 2 == 0 { svcs[i] } else { pods[N - 1 - i] }),
            ..Default::default()
        })
        .collect();

    let mut g = c.benchmark_group("tagging");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("lookup_pod_ip", |b| {
        b.iter(|| pods.iter().map(|&ip| snap.lookup_ip(Some(prod), ip).pod_id).fold(0u32, u32::wrapping_add))
    });
    g.bench_function("lookup_service_ip", |b| {
        b.iter(|| svcs.iter().map(|&ip| snap.lookup_ip(Some(prod), ip).service_id).fold(0u32, u32::wrapping_add))
    });
    g.bench_function("lookup_pod_ip_any_vpc", |b| {
        let t = Tagger::new(TaggerOptions::default()).unwrap();
        let s = t.update_source("bench", inventory()).unwrap();
        b.iter(|| pods.iter().map(|&ip| s.lookup_ip(None, ip).pod_id).fold(0u32, u32::wrapping_add))
    });
    g.bench_function("lookup_lpm_subnet_v4", |b| {
        b.iter(|| lpm.iter().map(|&ip| snap.lookup_ip(Some(corp), ip).subnet_id).fold(0u32, u32::wrapping_add))
    });
    g.bench_function("lookup_lpm_subnet_v6", |b| {
        let staging = tagger.vpc_id("staging").unwrap();
        b.iter(|| lpm6.iter().map(|&ip| snap.lookup_ip(Some(staging), ip).subnet_id).fold(0u32, u32::wrapping_add))
    });
    g.bench_function("tag_l4_row_both_sides", |b| {
        b.iter(|| {
            rows.iter()
                .map(|r| {
                    let (c, s) = snap.tag_l4(std::hint::black_box(r), None);
                    c.pod_id ^ s.service_id
                })
                .fold(0u32, u32::wrapping_add)
        })
    });
    g.bench_function("tag_pair_endpoints", |b| {
        b.iter(|| {
            (0..N)
                .map(|i| {
                    let (c, s) = snap.tag_pair(&Endpoint::ip(pods[i]), &Endpoint::ip(svcs[i]));
                    c.pod_id ^ s.service_id
                })
                .fold(0u32, u32::wrapping_add)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("tagging_build");
    g.sample_size(10);
    let inv = inventory();
    g.throughput(Throughput::Elements(u64::from(PODS)));
    g.bench_function("rebuild_snapshot_10k_pods_200k_labels", |b| {
        let t = Tagger::new(TaggerOptions::default()).unwrap();
        t.update_source("bench", inv.clone()).unwrap();
        b.iter(|| t.update_source("bench", inv.clone()).unwrap().stats().exact_ips)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
