//! Inventory sources, tagging, SmartEncoding persistence.

use std::net::IpAddr;

use deepflow_core::record::L4FlowLog;
use deepflow_tagging::{
    CloudInventory, DictionarySet, Endpoint, Format, Inventory, LabelSource, ResourceKind, RowContext, TaggedRow,
    Tagger, TaggerOptions, TaggingError, UniversalTags,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const INVENTORY: &str = r#"
version: 1
regions: [{name: cn-east}, {name: cn-north}]
azs:
  - {name: cn-east-1a, region: cn-east}
  - {name: cn-north-1a, region: cn-north}
vpcs:
  - {name: prod, region: cn-east}
  - {name: staging, region: cn-north}
subnets:
  # the same 10.0.0.0/16 in two VPCs; more specific networks inside
  - {name: prod-all, vpc: prod, cidr: 10.0.0.0/16, az: cn-east-1a}
  - {name: prod-db, vpc: prod, cidrs: [10.0.9.0/24, "fd00:9::/64"], az: cn-east-1a}
  - {name: prod-vip, vpc: prod, cidrs: [10.0.9.100/32]}
  - {name: staging-all, vpc: staging, cidr: 10.0.0.0/16, az: cn-north-1a}
  - {name: staging-rest, vpc: staging, cidr: 0.0.0.0/0}
  - {name: staging-v6, vpc: staging, cidrs: ["::/0", "2001:db8::1/128"]}
hosts:
  - name: db-01
    vpc: prod
    az: cn-east-1a
    ips: [10.0.9.10, "fd00:9::10"]
    cmdb: {owner: dba-team, cost_center: "4711"}
    labels: {role: database}
  - {name: web-01, vpc: staging, ips: [10.0.9.10]}
processes:
  - {name: mysqld, host: db-01, pid: 4242}
"#;

fn tagger_with(inv: &str) -> Tagger {
    let t = Tagger::new(TaggerOptions::default()).unwrap();
    t.update_source("inv", Inventory::parse(inv, Format::Yaml, "inv.yaml").unwrap()).unwrap();
    t
}

fn n(t: &Tagger, k: ResourceKind, id: u32) -> String {
    t.name(k, id).unwrap_or_default()
}

#[test]
fn vpc_scoped_lpm_and_exact_ips() {
    let t = tagger_with(INVENTORY);
    let s = t.snapshot();
    let prod = t.vpc_id("prod").unwrap();
    let staging = t.vpc_id("staging").unwrap();
    let sub = |vpc, a| n(&t, ResourceKind::Subnet, s.lookup_ip(vpc, ip(a)).subnet_id);
    // most specific wins, within the VPC asked for
    assert_eq!(sub(Some(prod), "10.0.1.1"), "prod-all");
    assert_eq!(sub(Some(prod), "10.0.9.1"), "prod-db");
    assert_eq!(sub(Some(prod), "10.0.9.100"), "prod-vip");
    assert_eq!(sub(Some(prod), "10.0.9.101"), "prod-db");
    assert_eq!(sub(Some(staging), "10.0.9.1"), "staging-all");
    // /0 catches the rest, only in its VPC
    assert_eq!(sub(Some(staging), "8.8.8.8"), "staging-rest");
    assert_eq!(sub(Some(prod), "8.8.8.8"), "");
    assert_eq!(s.lookup_ip(Some(prod), ip("8.8.8.8")).l3_epc_id, prod, "the VPC is still known");
    // IPv6: /128 host route and ::/0
    assert_eq!(sub(Some(staging), "2001:db8::1"), "staging-v6");
    assert_eq!(sub(Some(prod), "fd00:9::1"), "prod-db");
    // IPv4-mapped IPv6 is looked up as IPv4
    assert_eq!(sub(Some(prod), "::ffff:10.0.9.1"), "prod-db");
    // exact host IPs in both VPCs
    let h = s.lookup_ip(Some(prod), ip("10.0.9.10"));
    assert_eq!(n(&t, ResourceKind::Host, h.host_id), "db-01");
    assert_eq!(n(&t, ResourceKind::Subnet, h.subnet_id), "prod-db");
    assert_eq!(n(&t, ResourceKind::Az, h.az_id), "cn-east-1a");
    assert_eq!(n(&t, ResourceKind::Region, h.region_id), "cn-east");
    assert_eq!(n(&t, ResourceKind::Host, s.lookup_ip(Some(staging), ip("10.0.9.10")).host_id), "web-01");
    assert_eq!(n(&t, ResourceKind::Host, s.lookup_ip(Some(prod), ip("::ffff:10.0.9.10")).host_id), "db-01");
    assert_eq!(n(&t, ResourceKind::Host, s.lookup_ip(Some(prod), ip("fd00:9::10")).host_id), "db-01");
    // without a VPC: an IP that two VPCs have is ambiguous -> no host; networks in both -> none
    let amb = s.lookup_ip(None, ip("10.0.9.10"));
    assert_eq!((amb.host_id, amb.l3_epc_id), (0, 0));
    assert_eq!(s.lookup_ip(None, ip("10.0.1.1")).subnet_id, 0, "10.0.0.0/16 is in two VPCs");
    // ... but a unique address or network resolves
    assert_eq!(n(&t, ResourceKind::Host, s.lookup_ip(None, ip("fd00:9::10")).host_id), "db-01");
    assert_eq!(n(&t, ResourceKind::Subnet, s.lookup_ip(None, ip("10.0.9.100")).subnet_id), "prod-vip");
}

#[test]
fn default_vpc_and_flow_rows() {
    let t = Tagger::new(TaggerOptions { default_vpc: Some("prod".into()), ..Default::default() }).unwrap();
    t.update_source("inv", Inventory::parse(INVENTORY, Format::Yaml, "inv.yaml").unwrap()).unwrap();
    let s = t.snapshot();
    let row =
        L4FlowLog { ip_0: Some(ip("10.0.1.5")), ip_1: Some(ip("10.0.9.10")), server_port: 3306, ..Default::default() };
    let (c, sv) = s.tag_l4(&row, None);
    assert_eq!(n(&t, ResourceKind::Subnet, c.subnet_id), "prod-all");
    assert_eq!(n(&t, ResourceKind::Host, sv.host_id), "db-01");
    // serialized next to the row with _0/_1 columns
    let tagged = TaggedRow { row, tags_0: c, tags_1: sv };
    let v: serde_json::Value = serde_json::to_value(&tagged).unwrap();
    assert_eq!(v["server_port"], 3306);
    assert_eq!(v["host_id_1"], sv.host_id);
    assert_eq!(v["subnet_id_0"], c.subnet_id);
    assert_eq!(v["pod_id_0"], 0);
    // eBPF: the process on db-01 gets its gprocess_id plus host tags
    let host = t.host_id("db-01").unwrap();
    let e = s.tag(&Endpoint::ip(ip("10.0.1.5")).with_process(host, 4242));
    assert_eq!(n(&t, ResourceKind::Process, e.gprocess_id), "mysqld");
    assert_eq!(e.host_id, host);
    // what tag_l7 does for an eBPF row whose server process is local
    let ctx = RowContext { vpc: None, host_id: host, pid_0: 0, pid_1: 4242 };
    let (_, s1) = s.tag_pair(
        &Endpoint { ip: Some(ip("10.0.1.5")), vpc: ctx.vpc, host_id: ctx.host_id, pid: ctx.pid_0 },
        &Endpoint { ip: Some(ip("10.0.9.10")), vpc: ctx.vpc, host_id: ctx.host_id, pid: ctx.pid_1 },
    );
    assert_eq!(n(&t, ResourceKind::Process, s1.gprocess_id), "mysqld");
    assert_eq!(s1.subnet_id, sv.subnet_id);
    // unknown addresses and processes give zeros, never a panic
    assert_eq!(s.lookup_process(host, 1), None);
    assert_eq!(s.tag(&Endpoint::default()), UniversalTags::default());
}

#[test]
fn labels_live_in_their_own_table() {
    let t = tagger_with(INVENTORY);
    let s = t.snapshot();
    let host = t.host_id("db-01").unwrap();
    let mut rows: Vec<(String, String, LabelSource)> = s
        .labels()
        .iter()
        .filter(|l| l.kind == ResourceKind::Host && l.resource_id == host)
        .map(|l| (n(&t, ResourceKind::LabelKey, l.key_id), n(&t, ResourceKind::LabelValue, l.value_id), l.source))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("cost_center".into(), "4711".into(), LabelSource::Cmdb),
            ("owner".into(), "dba-team".into(), LabelSource::Cmdb),
            ("role".into(), "database".into(), LabelSource::Label),
        ]
    );
    let r = s.resources_of(ResourceKind::Host).find(|r| r.id == host).unwrap();
    assert_eq!(r.name, "db-01");
}

#[test]
fn bad_entries_name_the_entry_and_keep_the_last_good_state() {
    let t = tagger_with(INVENTORY);
    let before = t.snapshot().lookup_ip(Some(t.vpc_id("prod").unwrap()), ip("10.0.9.10"));
    let cases: &[(&str, &str)] = &[
        ("subnets: [{name: x, vpc: prod, cidr: 10.0.0.0/33}]", r#"inv: subnets[0] "x": invalid CIDR "10.0.0.0/33""#),
        ("subnets: [{name: x, vpc: prod, cidr: 10.0.0/8}]", r#"subnets[0] "x": invalid CIDR"#),
        (
            "hosts: [{name: a, ips: [10.0.0.1]}, {name: b, ips: [10.0.0.300]}]",
            r#"hosts[1] "b": invalid IP address "10.0.0.300""#,
        ),
        ("hosts: [{name: a}, {name: a}]", r#"hosts[1] "a": duplicate name"#),
        ("routers: []", "unknown field `routers`"),
        ("hosts: [{name: a, ipz: []}]", "unknown field `ipz`"),
        ("hosts: [{name: a, vpc: nope}]", r#"inv: hosts[0] "a": unknown vpc "nope""#),
        ("subnets: [{name: s, vpc: ghost, cidr: 10.0.0.0/8}]", r#"subnets[0] "s": unknown vpc "ghost""#),
        (
            "pod_groups: [{name: g, cluster: c, namespace: n, kind: Rollout}]",
            r#"pod_groups[0] "g": unknown kind "Rollout""#,
        ),
        ("version: 7", "unknown inventory version 7"),
        ("hosts: {name: a}", "invalid type"),
        ("processes: [{name: p, host: nobody, pid: 1}]", r#"processes[0] "p": unknown host "nobody""#),
    ];
    for (doc, want) in cases {
        // each bad document replaces the good source "inv"; the update must be refused
        let err = Inventory::parse(doc, Format::Yaml, "inv").and_then(|inv| t.update_source("inv", inv).map(|_| ()));
        let msg = err.expect_err(doc).to_string();
        assert!(msg.contains(want), "{doc}: {msg}");
    }
    // the last good state is still served, and the source list is unchanged
    assert_eq!(t.snapshot().lookup_ip(Some(t.vpc_id("prod").unwrap()), ip("10.0.9.10")), before);
    assert_eq!(t.source_names(), ["inv"]);
    // JSON works too, and its errors carry a position
    let e = Inventory::parse("{\"hosts\": [{\"name\": \"a\",}]}", Format::Json, "inv.json").unwrap_err();
    assert!(
        matches!(e, TaggingError::Parse { .. })
            && e.to_string().contains("inv.json")
            && e.to_string().contains("line 1")
    );
    let ok = Inventory::parse(
        r#"{"regions":[{"name":"r"}],"hosts":[{"name":"h","region":"r","ips":["1.2.3.4"]}]}"#,
        Format::Json,
        "j",
    )
    .unwrap();
    assert_eq!(ok.hosts.len(), 1);
}

#[test]
fn pod_churn_reuses_ip() {
    let base = r#"
pod_clusters: [{name: c1}]
pod_namespaces: [{name: ns, cluster: c1}]
pod_nodes: [{name: n1, cluster: c1, ips: [192.168.0.1]}]
pod_groups: [{name: api, cluster: c1, namespace: ns, kind: Deployment}]
"#;
    let t = tagger_with(&format!(
        "{base}pods: [{{name: api-1, cluster: c1, namespace: ns, node: n1, group: api, group_kind: Deployment, ips: [10.1.0.7], created: '2024-01-01T00:00:00Z'}}]"
    ));
    let a = t.snapshot().lookup_ip(None, ip("10.1.0.7"));
    assert_eq!(n(&t, ResourceKind::Pod, a.pod_id), "api-1");
    assert_eq!(n(&t, ResourceKind::PodGroup, a.pod_group_id), "api");
    assert_eq!(n(&t, ResourceKind::Host, a.host_id), "n1", "a host is made for a node without one");
    // both pods present (the delete not seen yet): the newer one wins
    t.update_source("inv", Inventory::parse(&format!(
        "{base}pods:\n - {{name: api-1, cluster: c1, namespace: ns, ips: [10.1.0.7], created: '2024-01-01T00:00:00Z'}}\n - {{name: api-2, cluster: c1, namespace: ns, ips: [10.1.0.7], created: '2024-01-02T00:00:00Z'}}"
    ), Format::Yaml, "inv").unwrap()).unwrap();
    assert_eq!(n(&t, ResourceKind::Pod, t.snapshot().lookup_ip(None, ip("10.1.0.7")).pod_id), "api-2");
    // old pod deleted: new one keeps the IP; the old id still resolves for old rows
    t.update_source(
        "inv",
        Inventory::parse(
            &format!("{base}pods: [{{name: api-2, cluster: c1, namespace: ns, ips: [10.1.0.7]}}]"),
            Format::Yaml,
            "inv",
        )
        .unwrap(),
    )
    .unwrap();
    let b = t.snapshot().lookup_ip(None, ip("10.1.0.7"));
    assert_eq!(n(&t, ResourceKind::Pod, b.pod_id), "api-2");
    assert_ne!(a.pod_id, b.pod_id);
    assert_eq!(n(&t, ResourceKind::Pod, a.pod_id), "api-1");
}

#[test]
fn dictionaries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tags.dict");
    let opts = TaggerOptions { dict_path: Some(path.clone()), ..Default::default() };
    let inv = Inventory::parse(INVENTORY, Format::Yaml, "inv").unwrap();
    let (ids, version) = {
        let t = Tagger::new(opts.clone()).unwrap();
        t.update_source("inv", inv.clone()).unwrap();
        let s = t.snapshot();
        (s.lookup_ip(Some(t.vpc_id("prod").unwrap()), ip("10.0.9.10")), s.dict_version())
    };
    assert!(version >= 1);
    // a restart with the sources in another order still gives the same ids
    let t = Tagger::new(opts.clone()).unwrap();
    let mut reordered = inv.clone();
    reordered.hosts.reverse();
    reordered.subnets.reverse();
    t.update_source("inv", reordered).unwrap();
    let s = t.snapshot();
    assert_eq!(s.lookup_ip(Some(t.vpc_id("prod").unwrap()), ip("10.0.9.10")), ids);
    assert_eq!(s.dict_version(), version, "nothing new: same version");
    // a new name bumps the version, old ids unchanged
    let mut more = inv;
    more.regions.push(deepflow_tagging::inventory::RegionEntry { name: "cn-south".into(), ..Default::default() });
    let s2 = t.update_source("inv", more).unwrap();
    assert_eq!(s2.dict_version(), version + 1);
    // the store side: read-only load and reload when newer
    let mut reader = DictionarySet::load(&path).unwrap();
    assert_eq!(reader.version(), version + 1);
    assert_eq!(reader.name(ResourceKind::Host, ids.host_id), Some("db-01"));
    assert!(!reader.load_if_newer(&path).unwrap());
    // a corrupt file is refused, naming the file
    std::fs::write(&path, b"deepflow-dict 1\nversion 3\ncount 1\nhost\t1\tx\t\n").unwrap();
    let e = Tagger::new(opts).unwrap_err().to_string();
    assert!(e.contains("tags.dict") && e.contains("end line"), "{e}");
}

#[test]
fn cloud_inventory() {
    let doc = r#"
provider: aws
regions: [{id: eu-west-1, name: Ireland}]
zones: [{id: eu-west-1a, region: eu-west-1}]
vpcs: [{id: vpc-0a1b, region: eu-west-1, cidr: 10.20.0.0/16, tags: {Name: prod}}]
subnets:
  - {id: subnet-01, vpc_id: vpc-0a1b, zone: eu-west-1a, cidr: 10.20.1.0/24, ipv6_cidr: "2a05:d018:1::/64", tags: {Name: app-a}}
instances:
  - {id: i-0abc, zone: eu-west-1a, vpc_id: vpc-0a1b, private_ips: [10.20.1.15], public_ips: [203.0.113.9], tags: {Name: web-1, env: prod}, state: running}
  - {id: i-0dead, zone: eu-west-1a, vpc_id: vpc-0a1b, private_ips: [10.20.1.16], state: terminated}
"#;
    let inv = CloudInventory::parse(doc, Format::Yaml, "cloud.yaml").unwrap().into_inventory("cloud.yaml").unwrap();
    let t = Tagger::new(TaggerOptions::default()).unwrap();
    t.update_source("cloud", inv).unwrap();
    let s = t.snapshot();
    let h = s.lookup_ip(None, ip("10.20.1.15"));
    assert_eq!(n(&t, ResourceKind::Host, h.host_id), "web-1");
    assert_eq!(t.host_id("i-0abc"), Some(h.host_id));
    assert_eq!(n(&t, ResourceKind::Subnet, h.subnet_id), "app-a");
    assert_eq!(n(&t, ResourceKind::Vpc, h.l3_epc_id), "prod");
    assert_eq!(n(&t, ResourceKind::Region, h.region_id), "Ireland");
    assert_eq!(n(&t, ResourceKind::Host, s.lookup_ip(None, ip("203.0.113.9")).host_id), "web-1");
    assert_eq!(s.lookup_ip(None, ip("10.20.1.16")).host_id, 0, "terminated instances are skipped");
    assert!(s.labels().iter().any(|l| l.source == LabelSource::CloudTag));
    let bad = "regions: [{id: r}]\nzones: [{id: z, region: r}]\ninstances: [{id: i-1, zone: nowhere}]";
    let e = CloudInventory::parse(bad, Format::Yaml, "c").unwrap().into_inventory("c").unwrap_err();
    assert_eq!(e.to_string(), r#"c: instances[0] "i-1": unknown zone "nowhere""#);
}

#[test]
fn sources_merge_field_by_field() {
    // K8s declares a region by name only; the inventory's display name and labels survive
    let t = Tagger::new(TaggerOptions::default()).unwrap();
    t.update_source(
        "a-inventory",
        Inventory::parse("regions: [{name: r1, display: Region One, labels: {tier: gold}}]", Format::Yaml, "a")
            .unwrap(),
    )
    .unwrap();
    t.update_source(
        "k8s:x",
        Inventory::parse("regions: [{name: r1}]\nazs: [{name: z1, region: r1}]", Format::Yaml, "k").unwrap(),
    )
    .unwrap();
    let id = t.id(ResourceKind::Region, "r1").unwrap();
    assert_eq!(t.name(ResourceKind::Region, id).as_deref(), Some("Region One"));
    assert_eq!(t.snapshot().labels().len(), 1);
    // removing the inventory is fine: r1 is still declared by k8s:x, and keeps its id
    t.remove_source("a-inventory").unwrap();
    assert_eq!(t.id(ResourceKind::Region, "r1"), Some(id));
    // a source whose references only another source satisfied cannot lose them
    t.update_source("a-inventory", Inventory::parse("hosts: [{name: h, region: r1}]", Format::Yaml, "a").unwrap())
        .unwrap();
    let e = t.remove_source("k8s:x").unwrap_err().to_string();
    assert!(e.contains(r#"hosts[0] "h": unknown region "r1""#), "{e}");
    assert_eq!(t.source_names(), ["a-inventory", "k8s:x"]);
}
