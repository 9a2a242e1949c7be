//! The Kubernetes source: list + watch of pods, services, endpoints/endpointslices, nodes,
//! namespaces and workloads over the REST API, converted into an [`Inventory`].
//!
//! Each resource has a reflector: a full list (paginated) gives the objects and a
//! resourceVersion; watches resume from the last resourceVersion seen (events and BOOKMARKs);
//! a `410 Gone` (HTTP status or watch `ERROR` event) drops the resourceVersion and relists.
//! A failed list leaves that resource's previous objects untouched; a watch stream that breaks
//! keeps the events received before the break and resumes after the last one; an undecodable
//! event forces a relist. Errors are returned (and counted in [`KubeStats`]) while the last good
//! state keeps being served.
//!
//! [`KubeSource::sync_once`] does one round (list or watch) for every resource; [`KubeSource::run`]
//! runs one thread per resource with bounded exponential backoff and pushes the converted
//! inventory into a [`crate::Tagger`].
//!
//! Pod → workload: a pod's controller ownerReference, followed through a ReplicaSet to its
//! Deployment and through a Job to its CronJob; pods without a controller are their own group
//! (type `Pod`). Pod → service: EndpointSlice/Endpoints targetRefs, else the service selector.
//! Finished pods (`Succeeded`/`Failed`) are kept but not indexed by IP, since their IPs are
//! reused; when two live pods claim one IP the newer wins.

mod client;
pub mod objects;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use client::{KubeClient, KubeConfig};
use objects::{ApiStatus, KubeObject};

use crate::inventory::{
    AzEntry, Inventory, Labels, NamespaceEntry, NodeEntry, PodClusterEntry, PodEntry, PodGroupEntry, RegionEntry,
    ServiceEntry,
};
use crate::model::PodGroupType;
use crate::tagger::Tagger;

/// Errors talking to an apiserver. Each names the resource, so that `kubectl get <resource>`
/// with the same credentials reproduces it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    /// Bad configuration (no token, unreadable CA, ...).
    #[error("kubernetes config: {0}")]
    Config(String),
    /// Connection, TLS or protocol failure.
    #[error("kubernetes {resource}: request to {url} failed: {message}")]
    Http {
        /// Resource.
        resource: &'static str,
        /// URL.
        url: String,
        /// Cause.
        message: String,
    },
    /// The apiserver answered with an error status (401/403: check the token and RBAC).
    #[error("kubernetes {resource}: HTTP {code} {reason}: {message}")]
    Status {
        /// Resource.
        resource: &'static str,
        /// HTTP status.
        code: u16,
        /// `Status.reason`.
        reason: String,
        /// `Status.message`.
        message: String,
    },
    /// 410 Gone: the resourceVersion is too old; the reflector relists.
    #[error("kubernetes {resource}: 410 Gone (resourceVersion expired, relisting): {message}")]
    Gone {
        /// Resource.
        resource: &'static str,
        /// `Status.message`.
        message: String,
    },
    /// A response or event is not valid JSON of the expected shape.
    #[error("kubernetes {resource}: bad response: {message}")]
    Decode {
        /// Resource.
        resource: &'static str,
        /// Parser message.
        message: String,
    },
    /// The connection ended in the middle of a response or event.
    #[error("kubernetes {resource}: truncated response: {message}")]
    Truncated {
        /// Resource.
        resource: &'static str,
        /// What was cut.
        message: String,
    },
}

/// A watched resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// core/v1 pods
    Pods,
    /// core/v1 services
    Services,
    /// core/v1 endpoints
    Endpoints,
    /// discovery.k8s.io/v1 endpointslices
    EndpointSlices,
    /// core/v1 nodes
    Nodes,
    /// core/v1 namespaces
    Namespaces,
    /// apps/v1 deployments
    Deployments,
    /// apps/v1 statefulsets
    StatefulSets,
    /// apps/v1 daemonsets
    DaemonSets,
    /// apps/v1 replicasets
    ReplicaSets,
    /// batch/v1 jobs
    Jobs,
}

impl Resource {
    /// The default set (EndpointSlices rather than the legacy Endpoints).
    pub const DEFAULT: [Resource; 10] = [
        Resource::Namespaces,
        Resource::Nodes,
        Resource::Deployments,
        Resource::StatefulSets,
        Resource::DaemonSets,
        Resource::ReplicaSets,
        Resource::Jobs,
        Resource::Services,
        Resource::EndpointSlices,
        Resource::Pods,
    ];

    /// Plural resource name.
    pub const fn name(self) -> &'static str {
        match self {
            Resource::Pods => "pods",
            Resource::Services => "services",
            Resource::Endpoints => "endpoints",
            Resource::EndpointSlices => "endpointslices",
            Resource::Nodes => "nodes",
            Resource::Namespaces => "namespaces",
            Resource::Deployments => "deployments",
            Resource::StatefulSets => "statefulsets",
            Resource::DaemonSets => "daemonsets",
            Resource::ReplicaSets => "replicasets",
            Resource::Jobs => "jobs",
        }
    }

    /// The cluster-wide collection path.
    pub const fn path(self) -> &'static str {
        match self {
            Resource::Pods => "/api/v1/pods",
            Resource::Services => "/api/v1/services",
            Resource::Endpoints => "/api/v1/endpoints",
            Resource::EndpointSlices => "/apis/discovery.k8s.io/v1/endpointslices",
            Resource::Nodes => "/api/v1/nodes",
            Resource::Namespaces => "/api/v1/namespaces",
            Resource::Deployments => "/apis/apps/v1/deployments",
            Resource::StatefulSets => "/apis/apps/v1/statefulsets",
            Resource::DaemonSets => "/apis/apps/v1/daemonsets",
            Resource::ReplicaSets => "/apis/apps/v1/replicasets",
            Resource::Jobs => "/apis/batch/v1/jobs",
        }
    }
}

/// Counters of one reflector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KubeStats {
    /// Completed lists.
    pub lists: u64,
    /// Relists caused by 410 Gone.
    pub relists_gone: u64,
    /// Watch requests opened.
    pub watches: u64,
    /// ADDED/MODIFIED/DELETED events applied.
    pub events: u64,
    /// BOOKMARK events.
    pub bookmarks: u64,
    /// Errors.
    pub errors: u64,
    /// The last error, if the last round failed.
    pub last_error: Option<KubeError>,
}

/// What a reflector round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A full list replaced the objects.
    Listed,
    /// A watch ran to its end; the number of applied events.
    Watched(u64),
    /// A 410 made the reflector relist; the relist succeeded.
    Relisted,
}

/// The objects of one resource, kept up to date by list + watch.
#[derive(Debug, Clone)]
pub struct Reflector {
    resource: Resource,
    objects: BTreeMap<String, KubeObject>,
    resource_version: Option<String>,
    needs_relist: bool,
    stats: KubeStats,
}

fn obj_key(o: &KubeObject) -> String {
    match &o.metadata.namespace {
        Some(ns) => format!("{ns}/{}", o.metadata.name),
        None => o.metadata.name.clone(),
    }
}

impl Reflector {
    /// An empty reflector.
    pub fn new(resource: Resource) -> Self {
        Reflector {
            resource,
            objects: BTreeMap::new(),
            resource_version: None,
            needs_relist: true,
            stats: KubeStats::default(),
        }
    }

    /// The resource.
    pub fn resource(&self) -> Resource {
        self.resource
    }

    /// The objects, keyed by `namespace/name` (or `name`).
    pub fn objects(&self) -> &BTreeMap<String, KubeObject> {
        &self.objects
    }

    /// The resourceVersion watches resume from.
    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    /// Counters.
    pub fn stats(&self) -> &KubeStats {
        &self.stats
    }

    /// Lists and replaces every object; on error the previous objects stay.
    pub fn list(&mut self, client: &KubeClient) -> Result<(), KubeError> {
        let listed = client.list(self.resource).inspect_err(|e| self.fail(e))?;
        self.objects = listed.items.into_iter().map(|o| (obj_key(&o), o)).collect();
        self.resource_version = Some(listed.resource_version);
        self.needs_relist = false;
        self.stats.lists += 1;
        self.stats.last_error = None;
        Ok(())
    }

    fn fail(&mut self, e: &KubeError) {
        self.stats.errors += 1;
        self.stats.last_error = Some(e.clone());
    }

    /// One round: a list if needed, else a watch from the last resourceVersion until the server
    /// ends it. A 410 relists at once (and reports [`Step::Relisted`]); other errors are
    /// returned with the objects as they were after the last good event.
    pub fn step(&mut self, client: &KubeClient) -> Result<Step, KubeError> {
        if self.needs_relist || self.resource_version.is_none() {
            self.list(client)?;
            return Ok(Step::Listed);
        }
        match self.watch(client) {
            Err(KubeError::Gone { .. }) => {
                self.stats.relists_gone += 1;
                self.resource_version = None;
                self.needs_relist = true;
                self.list(client)?;
                Ok(Step::Relisted)
            }
            other => other.map(Step::Watched),
        }
    }

    /// Watches from the current resourceVersion and applies events until the stream ends.
    pub fn watch(&mut self, client: &KubeClient) -> Result<u64, KubeError> {
        let rv = self.resource_version.clone().unwrap_or_default();
        let mut stream = client.watch(self.resource, &rv).inspect_err(|e| self.fail(e))?;
        self.stats.watches += 1;
        let mut applied = 0;
        loop {
            let ev = match stream.next_event() {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    if matches!(e, KubeError::Decode { .. }) {
                        // The same bad event would come back on resume: start over.
                        self.needs_relist = true;
                    }
                    self.fail(&e);
                    return Err(e);
                }
            };
            if let Err(e) = self.apply(&ev.kind, ev.object) {
                if matches!(e, KubeError::Decode { .. }) {
                    self.needs_relist = true;
                }
                self.fail(&e);
                return Err(e);
            }
            if ev.kind != "BOOKMARK" {
                applied += 1;
            }
        }
        self.stats.last_error = None;
        Ok(applied)
    }

    fn apply(&mut self, kind: &str, object: serde_json::Value) -> Result<(), KubeError> {
        let resource = self.resource.name();
        let decode = |v: serde_json::Value| {
            serde_json::from_value::<KubeObject>(v)
                .map_err(|e| KubeError::Decode { resource, message: format!("{kind} event object: {e}") })
        };
        match kind {
            "ADDED" | "MODIFIED" => {
                let o = decode(object)?;
                self.resource_version = o.metadata.resource_version.clone().or(self.resource_version.take());
                self.objects.insert(obj_key(&o), o);
                self.stats.events += 1;
            }
            "DELETED" => {
                let o = decode(object)?;
                self.resource_version = o.metadata.resource_version.clone().or(self.resource_version.take());
                self.objects.remove(&obj_key(&o));
                self.stats.events += 1;
            }
            "BOOKMARK" => {
                let o = decode(object)?;
                if let Some(rv) = o.metadata.resource_version {
                    self.resource_version = Some(rv);
                }
                self.stats.bookmarks += 1;
            }
            "ERROR" => {
                let st: ApiStatus = serde_json::from_value(object).unwrap_or_default();
                let message = st.message.unwrap_or_default();
                if st.code == Some(410)
                    || st.reason.as_deref() == Some("Expired")
                    || st.reason.as_deref() == Some("Gone")
                {
                    return Err(KubeError::Gone { resource, message });
                }
                return Err(KubeError::Status {
                    resource,
                    code: st.code.unwrap_or(0),
                    reason: st.reason.unwrap_or_default(),
                    message,
                });
            }
            other => {
                return Err(KubeError::Decode { resource, message: format!("unknown watch event type {other:?}") });
            }
        }
        Ok(())
    }
}

/// Retry policy for [`KubeSource::run`] and [`KubeSource::sync_with_retry`].
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts before an operation's error is returned (sync_with_retry).
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff: Duration,
    /// Backoff cap (doubling from `initial_backoff`).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The backoff before attempt `n` (0-based count of failures so far).
    pub fn backoff(&self, failures: u32) -> Duration {
        let f = self.initial_backoff.saturating_mul(1u32 << failures.min(16));
        f.min(self.max_backoff)
    }
}

/// Settings of one cluster.
#[derive(Debug, Clone)]
pub struct KubeSourceConfig {
    /// Cluster name (`pod_cluster`); also the dictionary key prefix of its objects.
    pub cluster: String,
    /// VPC name the pod and service IPs belong to (must exist in another source).
    pub vpc: Option<String>,
    /// Region name of the cluster, when nodes have no topology labels.
    pub region: Option<String>,
    /// Resources to watch.
    pub resources: Vec<Resource>,
    /// Annotation keys to leave out of the label table (huge, useless ones).
    pub skip_annotations: Vec<String>,
    /// Retries.
    pub retry: RetryPolicy,
    /// Minimum time between two tagger rebuilds in [`KubeSource::run`].
    pub rebuild_interval: Duration,
}

impl KubeSourceConfig {
    /// Defaults for a cluster name.
    pub fn new(cluster: impl Into<String>) -> Self {
        KubeSourceConfig {
            cluster: cluster.into(),
            vpc: None,
            region: None,
            resources: Resource::DEFAULT.to_vec(),
            skip_annotations: vec!["kubectl.kubernetes.io/last-applied-configuration".into()],
            retry: RetryPolicy::default(),
            rebuild_interval: Duration::from_secs(1),
        }
    }
}

/// One Kubernetes cluster as a tagging source.
#[derive(Debug)]
pub struct KubeSource {
    client: KubeClient,
    config: KubeSourceConfig,
    reflectors: BTreeMap<Resource, Arc<Mutex<Reflector>>>,
}

impl KubeSource {
    /// A source with empty reflectors.
    pub fn new(client: KubeClient, config: KubeSourceConfig) -> Self {
        let reflectors = config.resources.iter().map(|&r| (r, Arc::new(Mutex::new(Reflector::new(r))))).collect();
        KubeSource { client, config, reflectors }
    }

    /// The tagger source name: `k8s:<cluster>`.
    pub fn source_name(&self) -> String {
        format!("k8s:{}", self.config.cluster)
    }

    /// A copy of one reflector's state.
    pub fn reflector(&self, r: Resource) -> Option<Reflector> {
        self.reflectors.get(&r).map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// One round (list or watch) for every resource, in order. Returns the per-resource results;
    /// a failed resource keeps its last good objects.
    pub fn sync_once(&self) -> Vec<(Resource, Result<Step, KubeError>)> {
        self.reflectors
            .iter()
            .map(|(&r, m)| (r, m.lock().unwrap_or_else(|e| e.into_inner()).step(&self.client)))
            .collect()
    }

    /// Lists every resource that has not been listed yet, retrying each with backoff up to
    /// `retry.max_attempts`; returns the first resource's error that exhausted its attempts.
    pub fn sync_with_retry(&self) -> Result<(), KubeError> {
        for m in self.reflectors.values() {
            let mut failures = 0;
            loop {
                let mut refl = m.lock().unwrap_or_else(|e| e.into_inner());
                if refl.resource_version.is_some() && !refl.needs_relist {
                    break;
                }
                match refl.list(&self.client) {
                    Ok(()) => break,
                    Err(e) => {
                        failures += 1;
                        if failures >= self.config.retry.max_attempts {
                            return Err(e);
                        }
                    }
                }
                drop(refl);
                std::thread::sleep(self.config.retry.backoff(failures - 1));
            }
        }
        Ok(())
    }

    /// The current objects converted to an [`Inventory`] for source [`KubeSource::source_name`].
    pub fn inventory(&self) -> Inventory {
        let snap: BTreeMap<Resource, Reflector> =
            self.reflectors.iter().map(|(&r, m)| (r, m.lock().unwrap_or_else(|e| e.into_inner()).clone())).collect();
        to_inventory(&self.config, &snap)
    }

    /// Runs until `stop` is set: one thread per resource doing list/watch rounds with
    /// exponential backoff after errors (forever, capped at `retry.max_backoff`), and this
    /// thread pushing the inventory into `tagger` whenever something changed (at most once per
    /// `rebuild_interval`). `on_error` sees every error (log it, export it); tagging goes on
    /// with the last good state. Returns when every worker has stopped (a stop request waits at
    /// most one watch timeout).
    pub fn run(&self, tagger: &Tagger, stop: &AtomicBool, on_error: &(dyn Fn(&KubeError) + Sync)) {
        let (tx, rx) = std::sync::mpsc::channel::<Result<(), KubeError>>();
        std::thread::scope(|s| {
            for m in self.reflectors.values() {
                let tx = tx.clone();
                let client = &self.client;
                let retry = self.config.retry;
                s.spawn(move || {
                    let mut failures = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let r = m.lock().unwrap_or_else(|e| e.into_inner()).step(client);
                        match r {
                            Ok(step) => {
                                failures = 0;
                                if step != Step::Watched(0) {
                                    let _ = tx.send(Ok(()));
                                }
                                // A watch that the server ended at once with nothing in it: do
                                // not spin.
                                if step == Step::Watched(0) && started.elapsed() < Duration::from_secs(1) {
                                    let until = started + retry.initial_backoff.max(Duration::from_millis(200));
                                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                                        std::thread::sleep(Duration::from_millis(20));
                                    }
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                let until = Instant::now() + retry.backoff(failures);
                                failures = failures.saturating_add(1);
                                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                                    std::thread::sleep(Duration::from_millis(50));
                                }
                            }
                        }
                    }
                });
            }
            drop(tx);
            let mut dirty = false;
            let mut last = Instant::now() - self.config.rebuild_interval;
            loop {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(Ok(())) => dirty = true,
                    Ok(Err(e)) => on_error(&e),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
                if dirty && last.elapsed() >= self.config.rebuild_interval {
                    dirty = false;
                    last = Instant::now();
                    if let Err(e) = tagger.update_source(&self.source_name(), self.inventory()) {
                        on_error(&KubeError::Decode { resource: "inventory", message: e.to_string() });
                    }
                }
            }
            if dirty {
                let _ = tagger.update_source(&self.source_name(), self.inventory());
            }
        });
    }
}

fn string_map(v: &Option<serde_json::Value>) -> Labels {
    match v {
        Some(serde_json::Value::Object(m)) => {
            m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect()
        }
        _ => Labels::new(),
    }
}

fn controller(o: &KubeObject) -> Option<&objects::OwnerReference> {
    let refs = &o.metadata.owner_references;
    refs.iter().find(|r| r.controller == Some(true)).or_else(|| refs.first())
}

/// Converts reflector contents to an inventory (used by [`KubeSource::inventory`]).
pub fn to_inventory(cfg: &KubeSourceConfig, refl: &BTreeMap<Resource, Reflector>) -> Inventory {
    let cluster = cfg.cluster.clone();
    let empty = BTreeMap::new();
    let objs = |r: Resource| refl.get(&r).map(|x| &x.objects).unwrap_or(&empty);
    let annotations = |o: &KubeObject| -> Labels {
        o.metadata
            .annotations
            .iter()
            .filter(|(k, _)| !cfg.skip_annotations.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut inv = Inventory::default();
    let mut regions: BTreeMap<String, ()> = BTreeMap::new();
    let mut azs: BTreeMap<String, Option<String>> = BTreeMap::new();
    inv.pod_clusters.push(PodClusterEntry {
        name: cluster.clone(),
        vpc: cfg.vpc.clone(),
        region: cfg.region.clone(),
        ..Default::default()
    });

    let mut namespaces: BTreeMap<String, Option<&KubeObject>> = BTreeMap::new();
    for o in objs(Resource::Namespaces).values() {
        namespaces.insert(o.metadata.name.clone(), Some(o));
    }
    for r in [Resource::Pods, Resource::Services] {
        for o in objs(r).values() {
            if let Some(ns) = &o.metadata.namespace {
                namespaces.entry(ns.clone()).or_insert(None);
            }
        }
    }

    for o in objs(Resource::Nodes).values() {
        let l = &o.metadata.labels;
        let region = l
            .get("topology.kubernetes.io/region")
            .or_else(|| l.get("failure-domain.beta.kubernetes.io/region"))
            .cloned();
        let zone =
            l.get("topology.kubernetes.io/zone").or_else(|| l.get("failure-domain.beta.kubernetes.io/zone")).cloned();
        if let Some(r) = &region {
            regions.insert(r.clone(), ());
        }
        if let Some(z) = &zone {
            azs.insert(z.clone(), region.clone());
        }
        inv.pod_nodes.push(NodeEntry {
            name: o.metadata.name.clone(),
            cluster: cluster.clone(),
            ips: o
                .status
                .addresses
                .iter()
                .filter(|a| a.kind == "InternalIP" || a.kind == "ExternalIP")
                .map(|a| a.address.clone())
                .filter(|a| crate::inventory::parse_ip(a).is_ok())
                .collect(),
            az: zone,
            region,
            labels: o.metadata.labels.clone(),
            annotations: annotations(o),
            ..Default::default()
        });
    }
    let mut node_names: std::collections::BTreeSet<&str> =
        objs(Resource::Nodes).values().map(|o| o.metadata.name.as_str()).collect();
    for r in regions.keys() {
        inv.regions.push(RegionEntry { name: r.clone(), ..Default::default() });
    }
    for (z, r) in azs {
        inv.azs.push(AzEntry { name: z, region: r, ..Default::default() });
    }

    // workloads
    let mut groups: BTreeMap<(String, PodGroupType, String), Option<&KubeObject>> = BTreeMap::new();
    let wl = [
        (Resource::Deployments, PodGroupType::Deployment),
        (Resource::StatefulSets, PodGroupType::StatefulSet),
        (Resource::DaemonSets, PodGroupType::DaemonSet),
    ];
    for (r, t) in wl {
        for o in objs(r).values() {
            groups.insert((o.metadata.namespace.clone().unwrap_or_default(), t, o.metadata.name.clone()), Some(o));
        }
    }
    // Resolve a pod's owner to its top workload.
    let resolve = |ns: &str, owner: &objects::OwnerReference| -> (PodGroupType, String) {
        let kind = PodGroupType::parse(&owner.kind).unwrap_or(PodGroupType::Other);
        let up = |r: Resource| objs(r).get(&format!("{ns}/{}", owner.name)).and_then(controller);
        match kind {
            PodGroupType::ReplicaSet => match up(Resource::ReplicaSets) {
                Some(o) if o.kind == "Deployment" => (PodGroupType::Deployment, o.name.clone()),
                _ => (PodGroupType::ReplicaSet, owner.name.clone()),
            },
            PodGroupType::Job => match up(Resource::Jobs) {
                Some(o) if o.kind == "CronJob" => (PodGroupType::CronJob, o.name.clone()),
                _ => (PodGroupType::Job, owner.name.clone()),
            },
            k => (k, owner.name.clone()),
        }
    };
    let mut pods = Vec::new();
    let mut container_ids = Vec::new();
    for o in objs(Resource::Pods).values() {
        let ns = o.metadata.namespace.clone().unwrap_or_default();
        let (gkind, gname) = match controller(o) {
            Some(owner) => resolve(&ns, owner),
            None => (PodGroupType::Pod, o.metadata.name.clone()),
        };
        let wl_obj = match gkind {
            PodGroupType::ReplicaSet => objs(Resource::ReplicaSets).get(&format!("{ns}/{gname}")),
            PodGroupType::Job => objs(Resource::Jobs).get(&format!("{ns}/{gname}")),
            _ => None,
        };
        groups.entry((ns.clone(), gkind, gname.clone())).or_insert(wl_obj);
        let finished = matches!(o.status.phase.as_deref(), Some("Succeeded") | Some("Failed"));
        let mut ips: Vec<String> = o.status.pod_ips.iter().map(|i| i.ip.clone()).collect();
        if ips.is_empty()
            && let Some(ip) = &o.status.pod_ip
        {
            ips.push(ip.clone());
        }
        ips.retain(|i| crate::inventory::parse_ip(i).is_ok());
        if finished {
            ips.clear();
        }
        let node = o.spec.node_name.clone().filter(|n| node_names.contains(n.as_str()));
        if let Some(n) = &o.spec.node_name
            && node.is_none()
        {
            // a node we have not seen (yet): declare it so the pod keeps its node name
            node_names.insert(n.as_str());
            inv.pod_nodes.push(NodeEntry { name: n.clone(), cluster: cluster.clone(), ..Default::default() });
        }
        container_ids
            .push(o.status.container_statuses.iter().filter_map(|c| c.container_id.clone()).collect::<Vec<_>>());
        pods.push(PodEntry {
            name: o.metadata.name.clone(),
            cluster: cluster.clone(),
            namespace: ns,
            node: o.spec.node_name.clone(),
            group: Some(gname),
            group_kind: Some(gkind.name().to_string()),
            ips,
            host_network: o.spec.host_network,
            container_ids: Vec::new(),
            created: o.metadata.creation_timestamp.clone(),
            labels: o.metadata.labels.clone(),
            annotations: annotations(o),
            ..Default::default()
        });
    }
    for (p, c) in pods.iter_mut().zip(container_ids) {
        p.container_ids = c;
    }
    inv.pods = pods;
    for ((ns, kind, name), o) in groups {
        inv.pod_groups.push(PodGroupEntry {
            name,
            cluster: cluster.clone(),
            namespace: ns.clone(),
            kind: kind.name().to_string(),
            labels: o.map(|o| o.metadata.labels.clone()).unwrap_or_default(),
            annotations: o.map(annotations).unwrap_or_default(),
            ..Default::default()
        });
        namespaces.entry(ns).or_insert(None);
    }

    // services, with pods from endpoint slices / endpoints
    let mut svc_pods: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in objs(Resource::EndpointSlices).values() {
        let ns = o.metadata.namespace.clone().unwrap_or_default();
        if let Some(svc) = o.metadata.labels.get("kubernetes.io/service-name") {
            let list = svc_pods.entry(format!("{ns}/{svc}")).or_default();
            list.extend(
                o.endpoints
                    .iter()
                    .filter_map(|e| e.target_ref.as_ref())
                    .filter(|t| t.kind == "Pod")
                    .map(|t| t.name.clone()),
            );
        }
    }
    for o in objs(Resource::Endpoints).values() {
        let list = svc_pods.entry(obj_key(o)).or_default();
        for s in &o.subsets {
            list.extend(
                s.addresses
                    .iter()
                    .chain(&s.not_ready_addresses)
                    .filter_map(|a| a.target_ref.as_ref())
                    .filter(|t| t.kind == "Pod")
                    .map(|t| t.name.clone()),
            );
        }
    }
    for o in objs(Resource::Services).values() {
        let ns = o.metadata.namespace.clone().unwrap_or_default();
        let mut ips: Vec<String> = o.spec.cluster_ips.clone();
        if ips.is_empty()
            && let Some(ip) = &o.spec.cluster_ip
        {
            ips.push(ip.clone());
        }
        ips.extend(o.spec.external_ips.iter().cloned());
        ips.extend(o.status.load_balancer.ingress.iter().filter_map(|i| i.ip.clone()));
        ips.retain(|i| crate::inventory::parse_ip(i).is_ok());
        ips.dedup();
        let mut pods = svc_pods.remove(&obj_key(o)).unwrap_or_default();
        pods.sort();
        pods.dedup();
        inv.services.push(ServiceEntry {
            name: o.metadata.name.clone(),
            cluster: cluster.clone(),
            namespace: ns,
            cluster_ips: ips,
            selector: string_map(&o.spec.selector),
            pods,
            labels: o.metadata.labels.clone(),
            annotations: annotations(o),
            ..Default::default()
        });
    }
    for (ns, o) in namespaces {
        inv.pod_namespaces.push(NamespaceEntry {
            name: ns,
            cluster: cluster.clone(),
            labels: o.map(|o| o.metadata.labels.clone()).unwrap_or_default(),
            annotations: o.map(annotations).unwrap_or_default(),
            ..Default::default()
        });
    }
    inv
}
