//! Building a [`Snapshot`] from merged inventories: reference checks, id assignment through the
//! dictionaries, precomputed tags per resource, IP and CIDR indexes, the label table.

use std::borrow::Cow;
use std::net::IpAddr;

use hashbrown::HashMap;

use crate::dict::DictionarySet;
use crate::error::{Result, TaggingError};
use crate::inventory::{Inventory, Labels, parse_ip};
use crate::lpm::{Cidr, LpmBuilder, ip_key};
use crate::model::{LabelRow, LabelSource, PodGroupType, ResourceInfo, ResourceKind, UniversalTags};
use crate::snapshot::{AMBIGUOUS, Snapshot};

/// Index of a merged entry: (source name, position in its list, entry).
type At<'a, E> = (&'a str, usize, Cow<'a, E>);

/// Entries of one kind after merging sources. When two sources define the same key, the later
/// one's given fields override (absent/empty fields do not), and label maps are merged.
struct Kind<'a, E: Clone> {
    list: &'static str,
    items: Vec<At<'a, E>>,
    by_key: HashMap<String, usize>,
}

/// Merges `later` into `earlier` field by field (JSON objects; null and empty values skipped).
fn merge_json(earlier: &mut serde_json::Value, later: serde_json::Value) {
    match (earlier, later) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                let empty = match &v {
                    serde_json::Value::Null => true,
                    serde_json::Value::Array(x) => x.is_empty(),
                    serde_json::Value::Object(x) => x.is_empty(),
                    serde_json::Value::Bool(b) => !b,
                    _ => false,
                };
                if empty {
                    continue;
                }
                match a.get_mut(&k) {
                    Some(old @ serde_json::Value::Object(_)) if v.is_object() => merge_json(old, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (a, b) => *a = b,
    }
}

fn merge_entries<E: Clone + serde::Serialize + serde::de::DeserializeOwned>(a: &E, b: &E) -> E {
    let (Ok(mut va), Ok(vb)) = (serde_json::to_value(a), serde_json::to_value(b)) else { return b.clone() };
    merge_json(&mut va, vb);
    serde_json::from_value(va).unwrap_or_else(|_| b.clone())
}

impl<'a, E: Clone + serde::Serialize + serde::de::DeserializeOwned> Kind<'a, E> {
    fn new(
        list: &'static str,
        sources: &'a [(&'a str, &'a Inventory)],
        get: fn(&Inventory) -> &Vec<E>,
        key: impl Fn(&E) -> String,
    ) -> Self {
        let mut k = Kind { list, items: Vec::new(), by_key: HashMap::new() };
        for &(src, inv) in sources {
            for (i, e) in get(inv).iter().enumerate() {
                let key = key(e);
                match k.by_key.get(&key) {
                    Some(&pos) => {
                        if let Some(slot) = k.items.get_mut(pos) {
                            let merged = merge_entries(&*slot.2, e);
                            *slot = (src, i, Cow::Owned(merged));
                        }
                    }
                    None => {
                        k.by_key.insert(key, k.items.len());
                        k.items.push((src, i, Cow::Borrowed(e)));
                    }
                }
            }
        }
        k
    }

    fn has(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    fn iter(&self) -> impl Iterator<Item = (&str, usize, &E)> {
        self.items.iter().map(|(s, i, e)| (*s, *i, &**e))
    }
}

fn check(ok: bool, at: (&str, &str, usize, &str), what: &str, name: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        let (src, list, i, entry) = at;
        Err(TaggingError::entry(src, format!("{list}[{i}] {entry:?}"), format!("unknown {what} {name:?}")))
    }
}

fn check_opt(k: &HashMap<String, usize>, v: &Option<String>, at: (&str, &str, usize, &str), what: &str) -> Result<()> {
    match v {
        Some(n) => check(k.contains_key(n.as_str()), at, what, n),
        None => Ok(()),
    }
}

/// Normalizes a container id: strips a `runtime://` prefix.
pub(crate) fn container_key(id: &str) -> &str {
    id.rsplit_once("://").map(|(_, h)| h).unwrap_or(id)
}

struct Builder<'d> {
    dict: &'d mut DictionarySet,
    tags: Vec<UniversalTags>,
    resources: Vec<ResourceInfo>,
    labels: Vec<LabelRow>,
}

impl Builder<'_> {
    fn intern(&mut self, kind: ResourceKind, key: &str, name: &str) -> Result<u32> {
        self.dict.intern(kind, key, name)
    }

    fn add_labels(&mut self, kind: ResourceKind, id: u32, maps: [(&Labels, LabelSource); 4]) -> Result<()> {
        for (m, source) in maps {
            for (k, v) in m {
                let key_id = self.dict.intern(ResourceKind::LabelKey, k, k)?;
                let value_id = self.dict.intern(ResourceKind::LabelValue, v, v)?;
                self.labels.push(LabelRow { kind, resource_id: id, key_id, value_id, source });
            }
        }
        Ok(())
    }

    fn push(&mut self, kind: ResourceKind, id: u32, name: &str, tags: UniversalTags, gt: Option<PodGroupType>) -> u32 {
        self.resources.push(ResourceInfo { kind, id, name: name.to_string(), tags, pod_group_type: gt });
        let i = self.tags.len() as u32;
        self.tags.push(tags);
        i
    }
}

macro_rules! labels_of {
    ($e:expr) => {
        [
            (&$e.labels, LabelSource::Label),
            (&$e.annotations, LabelSource::Annotation),
            (&$e.cmdb, LabelSource::Cmdb),
            (&$e.tags, LabelSource::CloudTag),
        ]
    };
}

/// Exact-IP candidate: (vpc, ip key, priority, created, tags index).
struct IpCand<'a> {
    vpc: u32,
    key: u128,
    ip: IpAddr,
    prio: u8,
    created: &'a str,
    idx: u32,
}

const PRIO_HOST: u8 = 1;
const PRIO_NODE: u8 = 2;
const PRIO_SERVICE: u8 = 3;
const PRIO_POD: u8 = 4;

/// Builds a snapshot from `(source name, inventory)` pairs (later sources override earlier
/// definitions of the same key). References are checked before any id is assigned, so a failed
/// build leaves the dictionaries untouched.
pub fn build_snapshot(
    sources: &[(&str, &Inventory)],
    dict: &mut DictionarySet,
    default_vpc: Option<&str>,
) -> Result<Snapshot> {
    let regions = Kind::new("regions", sources, |i| &i.regions, |e| e.name.clone());
    let azs = Kind::new("azs", sources, |i| &i.azs, |e| e.name.clone());
    let vpcs = Kind::new("vpcs", sources, |i| &i.vpcs, |e| e.name.clone());
    let subnets = Kind::new("subnets", sources, |i| &i.subnets, |e| format!("{}/{}", e.vpc, e.name));
    let hosts = Kind::new("hosts", sources, |i| &i.hosts, |e| e.name.clone());
    let procs = Kind::new("processes", sources, |i| &i.processes, |e| format!("{}/{}/{}", e.host, e.pid, e.name));
    let clusters = Kind::new("pod_clusters", sources, |i| &i.pod_clusters, |e| e.name.clone());
    let nss = Kind::new("pod_namespaces", sources, |i| &i.pod_namespaces, |e| format!("{}/{}", e.cluster, e.name));
    let nodes = Kind::new("pod_nodes", sources, |i| &i.pod_nodes, |e| format!("{}/{}", e.cluster, e.name));
    let groups = Kind::new(
        "pod_groups",
        sources,
        |i| &i.pod_groups,
        |e| {
            format!(
                "{}/{}/{}/{}",
                e.cluster,
                e.namespace,
                PodGroupType::parse(&e.kind).unwrap_or_default().name(),
                e.name
            )
        },
    );
    let pods = Kind::new("pods", sources, |i| &i.pods, |e| format!("{}/{}/{}", e.cluster, e.namespace, e.name));
    let services =
        Kind::new("services", sources, |i| &i.services, |e| format!("{}/{}/{}", e.cluster, e.namespace, e.name));

    // ---- pass 1: references (no dictionary change on failure)
    if let Some(v) = default_vpc
        && !vpcs.has(v)
    {
        return Err(TaggingError::entry("tagger options", "default_vpc", format!("unknown vpc {v:?}")));
    }
    let node_names: HashMap<&str, ()> = nodes.iter().map(|(_, _, n)| (n.name.as_str(), ())).collect();
    for (s, i, e) in azs.iter() {
        check_opt(&regions.by_key, &e.region, (s, azs.list, i, &e.name), "region")?;
    }
    for (s, i, e) in vpcs.iter() {
        check_opt(&regions.by_key, &e.region, (s, vpcs.list, i, &e.name), "region")?;
    }
    for (s, i, e) in subnets.iter() {
        let at = (s, subnets.list, i, e.name.as_str());
        check(vpcs.has(&e.vpc), at, "vpc", &e.vpc)?;
        check_opt(&azs.by_key, &e.az, at, "az")?;
        check_opt(&regions.by_key, &e.region, at, "region")?;
    }
    for (s, i, e) in hosts.iter() {
        let at = (s, hosts.list, i, e.name.as_str());
        check_opt(&vpcs.by_key, &e.vpc, at, "vpc")?;
        check_opt(&azs.by_key, &e.az, at, "az")?;
        check_opt(&regions.by_key, &e.region, at, "region")?;
    }
    for (s, i, e) in procs.iter() {
        let ok = hosts.has(&e.host) || node_names.contains_key(e.host.as_str());
        check(ok, (s, procs.list, i, &e.name), "host", &e.host)?;
    }
    for (s, i, e) in clusters.iter() {
        let at = (s, clusters.list, i, e.name.as_str());
        check_opt(&vpcs.by_key, &e.vpc, at, "vpc")?;
        check_opt(&azs.by_key, &e.az, at, "az")?;
        check_opt(&regions.by_key, &e.region, at, "region")?;
    }
    for (s, i, e) in nss.iter() {
        check(clusters.has(&e.cluster), (s, nss.list, i, &e.name), "cluster", &e.cluster)?;
    }
    for (s, i, e) in nodes.iter() {
        let at = (s, nodes.list, i, e.name.as_str());
        check(clusters.has(&e.cluster), at, "cluster", &e.cluster)?;
        check_opt(&hosts.by_key, &e.host, at, "host")?;
        check_opt(&azs.by_key, &e.az, at, "az")?;
        check_opt(&regions.by_key, &e.region, at, "region")?;
    }
    for (s, i, e) in groups.iter() {
        let at = (s, groups.list, i, e.name.as_str());
        let ns = format!("{}/{}", e.cluster, e.namespace);
        check(nss.has(&ns), at, "namespace", &ns)?;
    }
    for (s, i, e) in pods.iter() {
        let at = (s, pods.list, i, e.name.as_str());
        let ns = format!("{}/{}", e.cluster, e.namespace);
        check(nss.has(&ns), at, "namespace", &ns)?;
        if let Some(n) = &e.node {
            let k = format!("{}/{}", e.cluster, n);
            check(nodes.has(&k), at, "node", &k)?;
        }
        if let Some(g) = &e.group {
            let kind = PodGroupType::parse(e.group_kind.as_deref().unwrap_or("")).unwrap_or(PodGroupType::Other);
            let k = format!("{}/{}/{}/{}", e.cluster, e.namespace, kind.name(), g);
            check(groups.has(&k), at, "pod_group", &k)?;
        }
    }
    for (s, i, e) in services.iter() {
        let ns = format!("{}/{}", e.cluster, e.namespace);
        check(nss.has(&ns), (s, services.list, i, &e.name), "namespace", &ns)?;
    }

    // ---- pass 2: ids and tags
    let mut b = Builder { dict, tags: Vec::new(), resources: Vec::new(), labels: Vec::new() };
    let name_of = |n: &str, d: &Option<String>| -> String { d.clone().unwrap_or_else(|| n.to_string()) };

    let mut region_t: HashMap<&str, UniversalTags> = HashMap::new();
    for (_, _, e) in regions.iter() {
        let id = b.intern(ResourceKind::Region, &e.name, &name_of(&e.name, &e.display))?;
        let t = UniversalTags { region_id: id, ..Default::default() };
        b.add_labels(ResourceKind::Region, id, labels_of!(e))?;
        b.push(ResourceKind::Region, id, &name_of(&e.name, &e.display), t, None);
        region_t.insert(&e.name, t);
    }
    let reg = |r: &Option<String>| r.as_deref().and_then(|r| region_t.get(r)).copied().unwrap_or_default();
    let mut az_t: HashMap<&str, UniversalTags> = HashMap::new();
    for (_, _, e) in azs.iter() {
        let id = b.intern(ResourceKind::Az, &e.name, &name_of(&e.name, &e.display))?;
        let mut t = UniversalTags { az_id: id, ..Default::default() };
        t.fill_from(&reg(&e.region));
        b.add_labels(ResourceKind::Az, id, labels_of!(e))?;
        b.push(ResourceKind::Az, id, &name_of(&e.name, &e.display), t, None);
        az_t.insert(&e.name, t);
    }
    let az = |a: &Option<String>| a.as_deref().and_then(|a| az_t.get(a)).copied().unwrap_or_default();
    let mut vpc_t: HashMap<&str, UniversalTags> = HashMap::new();
    for (_, _, e) in vpcs.iter() {
        let id = b.intern(ResourceKind::Vpc, &e.name, &name_of(&e.name, &e.display))?;
        let mut t = UniversalTags { l3_epc_id: id, ..Default::default() };
        t.fill_from(&reg(&e.region));
        b.add_labels(ResourceKind::Vpc, id, labels_of!(e))?;
        b.push(ResourceKind::Vpc, id, &name_of(&e.name, &e.display), t, None);
        vpc_t.insert(&e.name, t);
    }
    let vpc = |v: &Option<String>| v.as_deref().and_then(|v| vpc_t.get(v)).copied().unwrap_or_default();

    // subnets and their LPM tables
    let mut per_vpc: HashMap<u32, LpmBuilder<u32>> = HashMap::new();
    let mut any: HashMap<Cidr, (u32, u32)> = HashMap::new(); // cidr -> (vpc, idx | AMBIGUOUS)
    for (s, i, e) in subnets.iter() {
        let id = b.intern(ResourceKind::Subnet, &format!("{}/{}", e.vpc, e.name), &name_of(&e.name, &e.display))?;
        let mut t = UniversalTags { subnet_id: id, ..Default::default() };
        t.fill_from(&az(&e.az));
        t.fill_from(&reg(&e.region));
        t.fill_from(&vpc(&Some(e.vpc.clone())));
        b.add_labels(ResourceKind::Subnet, id, labels_of!(e))?;
        let idx = b.push(ResourceKind::Subnet, id, &name_of(&e.name, &e.display), t, None);
        for c in e.all_cidrs() {
            let cidr: Cidr = c.parse().map_err(|m| TaggingError::entry(s, format!("subnets[{i}] {:?}", e.name), m))?;
            per_vpc.entry(t.l3_epc_id).or_default().insert(cidr, idx);
            any.entry(cidr)
                .and_modify(|(v, x)| if *v != t.l3_epc_id { *x = AMBIGUOUS } else { *x = idx })
                .or_insert((t.l3_epc_id, idx));
        }
    }
    let subnets_by_vpc: HashMap<u32, _> = per_vpc.into_iter().map(|(v, bld)| (v, bld.build())).collect();
    let subnets_any = any.into_iter().map(|(c, (_, x))| (c, x)).collect();
    let subnet_of = |vpc: u32, ip: IpAddr, tags: &Vec<UniversalTags>| -> UniversalTags {
        subnets_by_vpc
            .get(&vpc)
            .and_then(|l| l.lookup(ip))
            .and_then(|&i| tags.get(i as usize))
            .copied()
            .unwrap_or_default()
    };

    let mut cands: Vec<IpCand> = Vec::new();
    let mut host_t: HashMap<&str, (u32, UniversalTags)> = HashMap::new();
    let mut host_by_ip: HashMap<u128, &str> = HashMap::new();
    let mut hosts_idx: HashMap<u32, u32> = HashMap::new();
    for (_, _, e) in hosts.iter() {
        let id = b.intern(ResourceKind::Host, &e.name, &name_of(&e.name, &e.display))?;
        let mut t = UniversalTags { host_id: id, ..Default::default() };
        t.fill_from(&vpc(&e.vpc));
        t.fill_from(&az(&e.az));
        t.fill_from(&reg(&e.region));
        b.add_labels(ResourceKind::Host, id, labels_of!(e))?;
        let idx = b.push(ResourceKind::Host, id, &name_of(&e.name, &e.display), t, None);
        hosts_idx.insert(id, idx);
        host_t.insert(&e.name, (id, t));
        for ip in &e.ips {
            let ip = parse_ip(ip).map_err(|m| TaggingError::entry("hosts", e.name.clone(), m))?;
            host_by_ip.insert(ip_key(ip), &e.name);
            cands.push(IpCand { vpc: t.l3_epc_id, key: ip_key(ip), ip, prio: PRIO_HOST, created: "", idx });
        }
    }

    // Kubernetes
    let mut cluster_t: HashMap<&str, UniversalTags> = HashMap::new();
    for (_, _, e) in clusters.iter() {
        let id = b.intern(ResourceKind::PodCluster, &e.name, &name_of(&e.name, &e.display))?;
        let mut t = UniversalTags { pod_cluster_id: id, ..Default::default() };
        t.fill_from(&vpc(&e.vpc));
        t.fill_from(&az(&e.az));
        t.fill_from(&reg(&e.region));
        b.add_labels(ResourceKind::PodCluster, id, labels_of!(e))?;
        b.push(ResourceKind::PodCluster, id, &name_of(&e.name, &e.display), t, None);
        cluster_t.insert(&e.name, t);
    }
    let mut ns_t: HashMap<String, UniversalTags> = HashMap::new();
    for (_, _, e) in nss.iter() {
        let key = format!("{}/{}", e.cluster, e.name);
        let id = b.intern(ResourceKind::PodNs, &key, &name_of(&e.name, &e.display))?;
        let mut t = UniversalTags { pod_ns_id: id, ..Default::default() };
        t.fill_from(&cluster_t.get(e.cluster.as_str()).copied().unwrap_or_default());
        b.add_labels(ResourceKind::PodNs, id, labels_of!(e))?;
        b.push(ResourceKind::PodNs, id, &name_of(&e.name, &e.display), t, None);
        ns_t.insert(key, t);
    }
    let mut node_t: HashMap<String, UniversalTags> = HashMap::new();
    let mut node_host: HashMap<&str, u32> = HashMap::new(); // node name -> host tags idx (for processes)
    for (_, _, e) in nodes.iter() {
        let key = format!("{}/{}", e.cluster, e.name);
        let id = b.intern(ResourceKind::PodNode, &key, &name_of(&e.name, &e.display))?;
        let ct = cluster_t.get(e.cluster.as_str()).copied().unwrap_or_default();
        let ips: Vec<IpAddr> = e.ips.iter().filter_map(|i| parse_ip(i).ok()).collect();
        // the machine: explicit, else by IP, else a host of the same name, else one made for the node
        let host_name = e
            .host
            .as_deref()
            .or_else(|| ips.iter().find_map(|ip| host_by_ip.get(&ip_key(*ip)).copied()))
            .or_else(|| host_t.contains_key(e.name.as_str()).then_some(e.name.as_str()));
        let mut ht = match host_name.and_then(|h| host_t.get(h)) {
            Some(&(_, t)) => t,
            None => {
                let hid = b.intern(ResourceKind::Host, &e.name, &name_of(&e.name, &e.display))?;
                let mut t = UniversalTags { host_id: hid, l3_epc_id: ct.l3_epc_id, ..Default::default() };
                t.fill_from(&az(&e.az));
                t.fill_from(&reg(&e.region));
                t.fill_from(&UniversalTags { region_id: ct.region_id, az_id: ct.az_id, ..Default::default() });
                let idx = b.push(ResourceKind::Host, hid, &name_of(&e.name, &e.display), t, None);
                hosts_idx.insert(hid, idx);
                t
            }
        };
        if let Some(&idx) = hosts_idx.get(&ht.host_id) {
            node_host.insert(&e.name, idx);
        }
        ht.subnet_id = 0;
        let mut t = UniversalTags { pod_node_id: id, ..Default::default() };
        t.fill_from(&az(&e.az));
        t.fill_from(&reg(&e.region));
        t.fill_from(&ht);
        t.fill_from(&ct);
        b.add_labels(ResourceKind::PodNode, id, labels_of!(e))?;
        let idx = b.push(ResourceKind::PodNode, id, &name_of(&e.name, &e.display), t, None);
        for ip in ips {
            cands.push(IpCand { vpc: t.l3_epc_id, key: ip_key(ip), ip, prio: PRIO_NODE, created: "", idx });
        }
        node_t.insert(key, t);
    }
    let mut group_t: HashMap<String, UniversalTags> = HashMap::new();
    for (_, _, e) in groups.iter() {
        let gt = PodGroupType::parse(&e.kind).unwrap_or(PodGroupType::Other);
        let key = format!("{}/{}/{}/{}", e.cluster, e.namespace, gt.name(), e.name);
        let id = b.intern(ResourceKind::PodGroup, &key, &name_of(&e.name, &e.display))?;
        let mut t = UniversalTags { pod_group_id: id, ..Default::default() };
        t.fill_from(&ns_t.get(&format!("{}/{}", e.cluster, e.namespace)).copied().unwrap_or_default());
        b.add_labels(ResourceKind::PodGroup, id, labels_of!(e))?;
        b.push(ResourceKind::PodGroup, id, &name_of(&e.name, &e.display), t, Some(gt));
        group_t.insert(key, t);
    }
    // services first (pods take their service_id)
    let mut pod_service: HashMap<String, u32> = HashMap::new();
    let mut selectors: HashMap<String, Vec<(u32, &Labels)>> = HashMap::new(); // ns key -> services
    for (_, _, e) in services.iter() {
        let ns_key = format!("{}/{}", e.cluster, e.namespace);
        let key = format!("{ns_key}/{}", e.name);
        let id = b.intern(ResourceKind::Service, &key, &name_of(&e.name, &e.display))?;
        let mut t = UniversalTags { service_id: id, ..Default::default() };
        t.fill_from(&ns_t.get(&ns_key).copied().unwrap_or_default());
        b.add_labels(ResourceKind::Service, id, labels_of!(e))?;
        let idx = b.push(ResourceKind::Service, id, &name_of(&e.name, &e.display), t, None);
        for ip in &e.cluster_ips {
            let ip = parse_ip(ip).map_err(|m| TaggingError::entry("services", key.clone(), m))?;
            cands.push(IpCand { vpc: t.l3_epc_id, key: ip_key(ip), ip, prio: PRIO_SERVICE, created: "", idx });
        }
        for p in &e.pods {
            pod_service.entry(format!("{ns_key}/{p}")).or_insert(id);
        }
        if !e.selector.is_empty() {
            selectors.entry(ns_key).or_default().push((id, &e.selector));
        }
    }
    let mut containers: HashMap<&str, u32> = HashMap::new();
    for (_, _, e) in pods.iter() {
        let ns_key = format!("{}/{}", e.cluster, e.namespace);
        let key = format!("{ns_key}/{}", e.name);
        let id = b.intern(ResourceKind::Pod, &key, &name_of(&e.name, &e.display))?;
        let mut t = UniversalTags { pod_id: id, ..Default::default() };
        t.service_id = pod_service.get(&key).copied().unwrap_or_else(|| {
            selectors
                .get(&ns_key)
                .and_then(|list| list.iter().find(|(_, sel)| sel.iter().all(|(k, v)| e.labels.get(k) == Some(v))))
                .map(|(id, _)| *id)
                .unwrap_or(0)
        });
        if let Some(g) = &e.group {
            let kind = PodGroupType::parse(e.group_kind.as_deref().unwrap_or("")).unwrap_or(PodGroupType::Other);
            t.fill_from(&group_t.get(&format!("{ns_key}/{}/{g}", kind.name())).copied().unwrap_or_default());
        }
        if let Some(n) = &e.node {
            let mut nt = node_t.get(&format!("{}/{n}", e.cluster)).copied().unwrap_or_default();
            nt.subnet_id = 0;
            t.fill_from(&nt);
        }
        t.fill_from(&ns_t.get(&ns_key).copied().unwrap_or_default());
        b.add_labels(ResourceKind::Pod, id, labels_of!(e))?;
        let idx = b.push(ResourceKind::Pod, id, &name_of(&e.name, &e.display), t, None);
        for c in &e.container_ids {
            containers.insert(container_key(c), idx);
        }
        if !e.host_network {
            for ip in &e.ips {
                let ip = parse_ip(ip).map_err(|m| TaggingError::entry("pods", key.clone(), m))?;
                let created = e.created.as_deref().unwrap_or("");
                cands.push(IpCand { vpc: t.l3_epc_id, key: ip_key(ip), ip, prio: PRIO_POD, created, idx });
            }
        }
    }
    let mut processes: HashMap<(u32, u32), u32> = HashMap::new();
    for (_, _, e) in procs.iter() {
        let key = format!("{}/{}/{}", e.host, e.pid, e.name);
        let id = b.intern(ResourceKind::Process, &key, &name_of(&e.name, &e.display))?;
        let host_idx = host_t
            .get(e.host.as_str())
            .and_then(|(hid, _)| hosts_idx.get(hid).copied())
            .or_else(|| node_host.get(e.host.as_str()).copied());
        let ht = host_idx.and_then(|i| b.tags.get(i as usize)).copied().unwrap_or_default();
        let mut t = UniversalTags { gprocess_id: id, ..Default::default() };
        if let Some(c) = &e.container_id
            && let Some(&pi) = containers.get(container_key(c))
        {
            t.fill_from(&b.tags.get(pi as usize).copied().unwrap_or_default());
        }
        t.fill_from(&ht);
        b.add_labels(ResourceKind::Process, id, labels_of!(e))?;
        let idx = b.push(ResourceKind::Process, id, &name_of(&e.name, &e.display), t, None);
        processes.insert((ht.host_id, e.pid), idx);
    }

    // exact IP index: highest priority wins; among pods the newest.
    let mut by_vpc_ip: HashMap<(u32, u128), (u8, &str, u32)> = HashMap::with_capacity(cands.len());
    for c in &cands {
        let slot = by_vpc_ip.entry((c.vpc, c.key)).or_insert((0, "", u32::MAX));
        if (c.prio, c.created) >= (slot.0, slot.1) {
            *slot = (c.prio, c.created, c.idx);
        }
    }
    // Give each exact entry its subnet; entries sharing a tags record with a different subnet
    // (a host with IPs in two subnets) get their own copy.
    let mut by_vpc_ip_final: HashMap<(u32, u128), u32> = HashMap::with_capacity(by_vpc_ip.len());
    let ip_of: HashMap<(u32, u128), IpAddr> = cands.iter().map(|c| ((c.vpc, c.key), c.ip)).collect();
    for (k, (_, _, idx)) in by_vpc_ip {
        let Some(mut t) = b.tags.get(idx as usize).copied() else { continue };
        let mut idx = idx;
        if t.subnet_id == 0
            && let Some(&ip) = ip_of.get(&k)
        {
            let s = subnet_of(k.0, ip, &b.tags);
            if s.subnet_id != 0 {
                t.fill_from(&s);
                idx = b.tags.len() as u32;
                b.tags.push(t);
            }
        }
        by_vpc_ip_final.insert(k, idx);
    }
    let mut by_ip: HashMap<u128, u32> = HashMap::with_capacity(by_vpc_ip_final.len());
    let mut by_ip_vpc: HashMap<u128, u32> = HashMap::with_capacity(by_vpc_ip_final.len());
    for (&(v, key), &idx) in &by_vpc_ip_final {
        match by_ip_vpc.get(&key) {
            Some(&pv) if pv != v => {
                by_ip.insert(key, AMBIGUOUS);
            }
            _ => {
                by_ip_vpc.insert(key, v);
                by_ip.insert(key, idx);
            }
        }
    }

    let default_vpc = default_vpc.and_then(|v| vpc_t.get(v)).map(|t| t.l3_epc_id);
    let dict_version = b.dict.commit();
    Ok(Snapshot {
        dict_version,
        default_vpc,
        tags: b.tags,
        by_vpc_ip: by_vpc_ip_final,
        by_ip,
        subnets_by_vpc,
        subnets_any,
        processes,
        hosts: hosts_idx,
        resources: b.resources,
        labels: b.labels,
    })
}
