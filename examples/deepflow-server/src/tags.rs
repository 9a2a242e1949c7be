//! `--inventory FILE`: SmartEncoding tags (AutoTagging ids) on the request rows ingested from
//! OTLP and SkyWalking, like the rows the agent writes with `--inventory`.
//!
//! The inventory (deepflow-tagging's static inventory, YAML or JSON) is loaded once at start.
//! Its dictionaries are kept in `<data>/tags/dictionaries.txt` (the file the agent and the
//! store use: ids stay the same across restarts) and its custom labels in
//! `<data>/tags/labels.parquet`, so the store's name views (`l7_flow_log` with `pod_1`,
//! `service_1`, ...) resolve the ids; the stored `*_ids` tables hold integers only.
//!
//! What is matched, per `l7_flow_log` row:
//! - `ip_0` (client) and `ip_1` (server) through the inventory's IP lookup (pod, service
//!   ClusterIP, node, host IPs, then the longest-prefix subnet), in the default VPC given by
//!   `--inventory-vpc` or the only VPC that has the address; `0.0.0.0` (no address in the span)
//!   matches nothing;
//! - the span's service name (`service.name` of OTLP spans, `app_service` of SkyWalking spans)
//!   against the inventory's services, then workloads (`pod_groups`), by their name (`name`, or
//!   `display` when set) when exactly one resource of that kind has it. The service is the
//!   server side (`_1`) of server and internal spans (`tap_side` `s-app`/`app`) and the client
//!   side (`_0`) of client spans (`c-app`). It only fills a side whose IP lookup found neither a
//!   service nor a workload, and only ids that are still 0 (the service's namespace and cluster,
//!   the workload's namespace and cluster): an address the inventory knows wins over a name.
//!
//! Rows about one resource (the `log` and `profile` tables, and the samples of the `prometheus`
//! table from OTLP metrics and remote_write) get one set of ids (`pod_id`, `service_id`, ...
//! without side suffix) resolved from what the row says about its emitter ([`Hints`]), in this
//! order, each step filling only the ids still 0:
//! 1. its IP addresses through the same IP lookup as `ip_0`/`ip_1` (the first address that
//!    finds a pod, node, host or service; else the first that finds anything, e.g. a subnet);
//! 2. its pod name, within its namespace when the namespace name is known and unique in the
//!    inventory, else when exactly one pod has that name (only when no pod was found yet);
//! 3. its host name: a pod of that name first (a container's hostname is its pod name), then a
//!    host or node of that name (only when neither a pod, host nor node was found yet);
//! 4. its service name, like the spans': a service, else a workload of that name (only when
//!    neither a service nor a workload was found yet).
//!
//! Nothing matching leaves every id 0 (unknown). The keys read per source:
//! - OTLP logs (resource and record attributes): IPs `k8s.pod.ip`, `host.ip` (a string or a
//!   list), `net.host.ip`; pod `k8s.pod.name`; namespace `k8s.namespace.name`; host
//!   `host.name`, `k8s.node.name`; service `service.name`;
//! - samples (OTLP metric points, whose labels are the resource and point attributes with `.`
//!   turned into `_`, and remote_write series): IPs `instance` (`host:port`, `host` or
//!   `[v6]:port`), `k8s_pod_ip`, `pod_ip`, `host_ip`, `net_host_ip`, `ip`; pod `k8s_pod_name`,
//!   `pod`, `pod_name`, `kubernetes_pod_name`; namespace `k8s_namespace_name`, `namespace`,
//!   `kubernetes_namespace`, `pod_namespace`; host `host_name`, `hostname`, `node`,
//!   `kubernetes_node`, `k8s_node_name`; service `service_name`, `service` (`job` is not used:
//!   it names a scrape job, not a service);
//! - Pyroscope profiles: the same keys in the application name's labels
//!   (`app.cpu{pod=...,namespace=...}`) and pprof sample labels; service `service_name`, else the
//!   application name.
//!
//! The tagger is set once per process ([`init`]); the writers take it through
//! [`writer_options`], [`append_l7`], [`append_samples`], [`append_logs`] and
//! [`append_profiles`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use deepflow_core::record::{L7FlowLog, LogRecord, ProfileSample};
use deepflow_store::prom::{Sample, SampleWriter};
use deepflow_store::{QueryEngine, StoreWriter, WriterOptions};
use deepflow_tagging::{Endpoint, ResourceKind, RowContext, Snapshot, TaggedRow, Tagger, TaggerOptions, UniversalTags};

/// Command-line options of the ingest tagging.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TagArgs {
    /// Static inventory (deepflow-tagging YAML, or JSON for `.json`): tags the `l7_flow_log`
    /// rows ingested from OTLP and SkyWalking with its resource ids (by `ip_0`/`ip_1` and by the
    /// span's service name). Loaded once at start; a bad file stops the server with the reason.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// VPC of addresses whose VPC is unknown (all ingested spans), for `--inventory`. Without
    /// it an address resolves when exactly one VPC of the inventory has it.
    #[arg(long, value_name = "NAME", requires = "inventory")]
    pub inventory_vpc: Option<String>,
}

/// The loaded inventory and its service-name index.
pub struct IngestTags {
    tagger: Arc<Tagger>,
    /// Service (then workload) name → the resource's tags; `None` when the name is ambiguous.
    by_name: HashMap<String, Option<UniversalTags>>,
    /// Pod name → its tags; `None` when several pods have the name.
    pods: HashMap<String, Option<UniversalTags>>,
    /// (namespace id, pod name) → the pod's tags.
    pods_in_ns: HashMap<(u32, String), Option<UniversalTags>>,
    /// Namespace name → its id; `None` when several clusters have it.
    namespaces: HashMap<String, Option<u32>>,
    /// Host (then node) name → its tags.
    hosts: HashMap<String, Option<UniversalTags>>,
}

/// Inserts `v` under `k`, or marks `k` ambiguous (`None`) when it is already there.
fn unique<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, Option<V>>, k: K, v: V) {
    m.entry(k).and_modify(|e| *e = None).or_insert(Some(v));
}

static TAGS: OnceLock<IngestTags> = OnceLock::new();

/// Loads `--inventory` (if given) into a tagger whose dictionaries live under `data`, hands the
/// dictionaries and labels to `engine` (the name views), and makes it the process's ingest
/// tagger. Call before opening the ingest writers. An error names the file and the entry.
pub fn init(data: &Path, args: &TagArgs, engine: &QueryEngine) -> Result<(), String> {
    let Some(file) = &args.inventory else { return Ok(()) };
    let dict_path = data.join(deepflow_store::query::DICT_FILE);
    if let Some(parent) = dict_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let tagger = Tagger::new(TaggerOptions { dict_path: Some(dict_path), default_vpc: args.inventory_vpc.clone() })
        .map_err(|e| format!("--inventory: {e}"))?;
    let snap = tagger.load_inventory_file(file).map_err(|e| format!("--inventory: {e}"))?;
    if let Some(vpc) = &args.inventory_vpc
        && tagger.vpc_id(vpc).is_none()
    {
        return Err(format!("--inventory-vpc {vpc:?}: no such VPC in {}", file.display()));
    }
    let labels = deepflow_store::writer::labels_batch(&snap).map_err(|e| e.to_string())?;
    tagger
        .with_dictionaries(|d| engine.set_tags(d, Some(labels)))
        .map_err(|e| format!("--inventory: loading the names into the query engine: {e}"))?;
    let mut by_name: HashMap<String, Option<UniversalTags>> = HashMap::new();
    for kind in [ResourceKind::Service, ResourceKind::PodGroup] {
        let mut of_kind: HashMap<&str, Option<UniversalTags>> = HashMap::new();
        for r in snap.resources_of(kind) {
            of_kind.entry(r.name.as_str()).and_modify(|t| *t = None).or_insert(Some(r.tags));
        }
        for (name, t) in of_kind {
            // a service name wins over a workload of the same name
            by_name.entry(name.to_string()).or_insert(t);
        }
    }
    let (mut pods, mut pods_in_ns, mut namespaces) = (HashMap::new(), HashMap::new(), HashMap::new());
    for r in snap.resources_of(ResourceKind::Pod) {
        unique(&mut pods, r.name.clone(), r.tags);
        unique(&mut pods_in_ns, (r.tags.pod_ns_id, r.name.clone()), r.tags);
    }
    for r in snap.resources_of(ResourceKind::PodNs) {
        unique(&mut namespaces, r.name.clone(), r.id);
    }
    let mut hosts = HashMap::new();
    for kind in [ResourceKind::Host, ResourceKind::PodNode] {
        let mut of_kind = HashMap::new();
        for r in snap.resources_of(kind) {
            unique(&mut of_kind, r.name.clone(), r.tags);
        }
        for (name, t) in of_kind {
            // a host wins over a node of the same name
            hosts.entry(name).or_insert(t);
        }
    }
    let st = snap.stats();
    eprintln!(
        "deepflow-server: tagging OTLP spans/metrics/logs, SkyWalking spans, remote_write samples and Pyroscope profiles with {} ({} resources, {} IPs, {} networks, {} labels)",
        file.display(),
        st.resources,
        st.exact_ips,
        st.networks,
        st.labels
    );
    TAGS.set(IngestTags { tagger: Arc::new(tagger), by_name, pods, pods_in_ns, namespaces, hosts })
        .map_err(|_| "the ingest tagger was already set".to_string())
}

/// `opts` with the ingest tagger (when `--inventory` was given): rows appended are tagged by
/// their IPs, and the dictionaries and labels are saved next to the data at each flush.
pub fn writer_options(opts: WriterOptions) -> WriterOptions {
    match TAGS.get() {
        Some(t) => opts.with_tagger(t.tagger.clone()),
        None => opts,
    }
}

/// Tags of one span row: IP lookup of both sides, then the service name (see the module docs).
pub fn tag_l7(t: &IngestTags, snap: &deepflow_tagging::Snapshot, row: &L7FlowLog) -> (UniversalTags, UniversalTags) {
    let (mut c, mut s) = snap.tag_l7(row, &RowContext::default());
    let name = row.attribute("service.name").or_else(|| row.attribute("app_service"));
    if let Some(Some(named)) = name.and_then(|n| t.by_name.get(n)) {
        let side = if row.tap_side == "c-app" { &mut c } else { &mut s };
        if side.service_id == 0 && side.pod_group_id == 0 {
            side.fill_from(named);
        }
    }
    (c, s)
}

/// Appends span rows to `w`, tagged as the module docs say when `--inventory` was given
/// (untagged otherwise).
pub fn append_l7(w: &mut StoreWriter, rows: Vec<L7FlowLog>) -> deepflow_store::Result<()> {
    let Some(t) = TAGS.get() else { return w.extend(rows) };
    let snap = t.tagger.snapshot();
    for row in rows {
        let (tags_0, tags_1) = tag_l7(t, &snap, &row);
        w.append_tagged(TaggedRow { row, tags_0, tags_1 })?;
    }
    Ok(())
}

/// What a row says about the resource it is about (see the module docs).
#[derive(Debug, Default)]
pub struct Hints<'a> {
    /// Its addresses, most specific first.
    pub ips: Vec<IpAddr>,
    /// Pod name.
    pub pod: Option<&'a str>,
    /// Namespace name.
    pub namespace: Option<&'a str>,
    /// Host name.
    pub host: Option<&'a str>,
    /// Service (or workload) name.
    pub service: Option<&'a str>,
}

/// Adds the addresses in `v`: an IP, `ip:port`, `[v6]:port`, or a list (`["10.0.0.1", ...]`,
/// how OTLP array attributes are stored); anything else (a host name) adds nothing.
pub fn parse_ips(v: &str, out: &mut Vec<IpAddr>) {
    let v = v.trim();
    if let Ok(ip) = v.parse::<IpAddr>() {
        out.push(ip);
    } else if let Ok(sa) = v.parse::<SocketAddr>() {
        out.push(sa.ip());
    } else if let Some(list) = v.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        out.extend(list.split(',').filter_map(|x| x.trim().trim_matches('"').parse::<IpAddr>().ok()));
    }
}

impl IngestTags {
    /// The tags of the resource `h` describes (the module docs give the order).
    pub fn resolve(&self, snap: &Snapshot, h: &Hints) -> UniversalTags {
        let mut tags = UniversalTags::default();
        for ip in &h.ips {
            let t = snap.tag(&Endpoint { ip: Some(*ip), ..Default::default() });
            if t.is_empty() {
                continue;
            }
            let specific = t.pod_id != 0 || t.pod_node_id != 0 || t.host_id != 0 || t.service_id != 0;
            if tags.is_empty() || specific {
                tags = t;
            }
            if specific {
                break;
            }
        }
        let ns = h.namespace.and_then(|n| self.namespaces.get(n).copied().flatten());
        let pod_named = |name: &str| -> Option<UniversalTags> {
            match ns {
                Some(ns) => self.pods_in_ns.get(&(ns, name.to_string())).copied().flatten(),
                None => self.pods.get(name).copied().flatten(),
            }
        };
        if tags.pod_id == 0
            && let Some(p) = h.pod.and_then(pod_named)
        {
            tags.fill_from(&p);
        }
        if tags.pod_id == 0
            && tags.host_id == 0
            && tags.pod_node_id == 0
            && let Some(host) = h.host
            && let Some(t) = pod_named(host).or_else(|| self.hosts.get(host).copied().flatten())
        {
            tags.fill_from(&t);
        }
        if tags.service_id == 0
            && tags.pod_group_id == 0
            && let Some(Some(named)) = h.service.and_then(|n| self.by_name.get(n))
        {
            tags.fill_from(named);
        }
        tags
    }
}

/// The label keys of [`Hints`] for samples and profiles (see the module docs).
const IP_KEYS: [&str; 6] = ["instance", "k8s_pod_ip", "pod_ip", "host_ip", "net_host_ip", "ip"];
const POD_KEYS: [&str; 4] = ["k8s_pod_name", "pod", "pod_name", "kubernetes_pod_name"];
const NS_KEYS: [&str; 4] = ["k8s_namespace_name", "namespace", "kubernetes_namespace", "pod_namespace"];
const HOST_KEYS: [&str; 5] = ["host_name", "hostname", "node", "kubernetes_node", "k8s_node_name"];
const SERVICE_KEYS: [&str; 2] = ["service_name", "service"];

/// Hints from `(name, value)` labels by the sample/profile keys; `service` is the fallback
/// service name.
fn label_hints<'a>(get: impl Fn(&str) -> Option<&'a str>, service: Option<&'a str>) -> Hints<'a> {
    let first = |keys: &[&str]| keys.iter().find_map(|k| get(k).filter(|v| !v.is_empty()));
    let mut ips = Vec::new();
    for k in IP_KEYS {
        if let Some(v) = get(k) {
            parse_ips(v, &mut ips);
        }
    }
    Hints {
        ips,
        pod: first(&POD_KEYS),
        namespace: first(&NS_KEYS),
        host: first(&HOST_KEYS),
        service: first(&SERVICE_KEYS).or(service),
    }
}

/// Hints of a sample (OTLP metric point or remote_write series) from its labels.
pub fn sample_hints(s: &Sample) -> Hints<'_> {
    label_hints(|k| s.labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()), None)
}

/// Hints of a Pyroscope profile row from its labels and application name.
pub fn profile_hints(p: &ProfileSample) -> Hints<'_> {
    label_hints(|k| p.label(k), Some(p.app_service.as_str()).filter(|s| !s.is_empty()))
}

/// Hints of an OTLP log record from its (record, then resource) attributes.
pub fn log_hints(r: &LogRecord) -> Hints<'_> {
    let attr = |k: &str| {
        r.attribute_names.iter().position(|n| n == k).and_then(|i| r.attribute_values.get(i)).map(String::as_str)
    };
    let mut ips = Vec::new();
    for k in ["k8s.pod.ip", "host.ip", "net.host.ip"] {
        if let Some(v) = attr(k) {
            parse_ips(v, &mut ips);
        }
    }
    Hints {
        ips,
        pod: attr("k8s.pod.name"),
        namespace: attr("k8s.namespace.name"),
        host: attr("host.name").or_else(|| attr("k8s.node.name")),
        service: r.service_name.as_deref(),
    }
}

/// Appends samples to `w`, tagged by their labels when `--inventory` was given.
pub fn append_samples(w: &mut SampleWriter, samples: Vec<Sample>) -> deepflow_store::Result<()> {
    let Some(t) = TAGS.get() else { return w.append(samples) };
    let snap = t.tagger.snapshot();
    // a request carries many samples of few series: resolve each label set once
    let mut seen: HashMap<Vec<(String, String)>, UniversalTags> = HashMap::new();
    let mut tagged = Vec::with_capacity(samples.len());
    for s in samples {
        let tags = match seen.get(&s.labels) {
            Some(t) => *t,
            None => {
                let x = t.resolve(&snap, &sample_hints(&s));
                seen.insert(s.labels.clone(), x);
                x
            }
        };
        tagged.push((s, tags));
    }
    w.append_tagged(tagged)
}

/// Appends log records to `w`, tagged by their attributes when `--inventory` was given.
pub fn append_logs(w: &mut StoreWriter, rows: Vec<LogRecord>) -> deepflow_store::Result<()> {
    let Some(t) = TAGS.get() else { return w.extend(rows) };
    let snap = t.tagger.snapshot();
    for row in rows {
        let tags_0 = t.resolve(&snap, &log_hints(&row));
        w.append_tagged(TaggedRow { row, tags_0, tags_1: UniversalTags::default() })?;
    }
    Ok(())
}

/// Appends profile rows to `w`, tagged by their labels and application when `--inventory` was
/// given.
pub fn append_profiles(w: &mut StoreWriter, rows: Vec<ProfileSample>) -> deepflow_store::Result<()> {
    let Some(t) = TAGS.get() else { return w.extend(rows) };
    let snap = t.tagger.snapshot();
    for row in rows {
        let tags_0 = t.resolve(&snap, &profile_hints(&row));
        w.append_tagged(TaggedRow { row, tags_0, tags_1: UniversalTags::default() })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_values() {
        let mut v = Vec::new();
        for s in ["10.0.0.1", "10.0.0.2:9100", "[::1]:80", "[\"10.0.0.3\", \"fe80::1\"]", "web-1:8080", "nobody"] {
            parse_ips(s, &mut v);
        }
        let want: Vec<IpAddr> =
            ["10.0.0.1", "10.0.0.2", "::1", "10.0.0.3", "fe80::1"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(v, want);
    }
}
