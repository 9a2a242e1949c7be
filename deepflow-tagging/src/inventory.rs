//! The inventory document: the common shape every source produces.
//!
//! A static inventory file is this document written by hand (YAML or JSON); the cloud inventory
//! ([`crate::cloud`]) and the Kubernetes source ([`crate::kube`]) convert what they read into it.
//! Entries refer to each other by name (`vpc: prod`), and names are unique per kind and scope
//! (subnets per VPC, namespaces per cluster, pods per namespace, ...).
//!
//! ```yaml
//! regions: [{name: cn-east}]
//! azs: [{name: cn-east-1a, region: cn-east}]
//! vpcs: [{name: prod, region: cn-east}]
//! subnets:
//!   - {name: app, vpc: prod, cidrs: [10.1.0.0/16, "fd00:1::/64"], az: cn-east-1a}
//! hosts:
//!   - name: db-01
//!     ips: [10.1.0.10]
//!     vpc: prod
//!     az: cn-east-1a
//!     cmdb: {owner: dba-team, cost_center: "4711"}
//! processes:
//!   - {name: mysqld, host: db-01, pid: 1234}
//! ```

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TaggingError};
use crate::lpm::Cidr;
use crate::model::PodGroupType;

/// Custom labels: key → value.
pub type Labels = BTreeMap<String, String>;

macro_rules! entry_common {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Unique name (within its scope); the dictionary key is built from it.
            pub name: String,
            /// Display name, when different from `name` (e.g. a cloud resource's Name tag).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub display: Option<String>,
            $($(#[$fm])* pub $f: $t,)*
            /// Custom labels (K8s labels, inventory labels).
            #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
            pub labels: Labels,
            /// K8s annotations.
            #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
            pub annotations: Labels,
            /// CMDB fields.
            #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
            pub cmdb: Labels,
            /// Cloud resource tags.
            #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
            pub tags: Labels,
        }
    };
}

entry_common!(
    /// A region.
    RegionEntry {}
);
entry_common!(
    /// An availability zone.
    AzEntry {
        /// Region name.
        #[serde(default)]
        region: Option<String>,
    }
);
entry_common!(
    /// A VPC (`l3_epc`).
    VpcEntry {
        /// Region name.
        #[serde(default)]
        region: Option<String>,
    }
);
entry_common!(
    /// A subnet with one or more CIDRs.
    SubnetEntry {
        /// VPC name (required).
        vpc: String,
        /// CIDRs, IPv4 and/or IPv6.
        #[serde(default)]
        cidrs: Vec<String>,
        /// Single-CIDR shorthand.
        #[serde(default)]
        cidr: Option<String>,
        /// AZ name.
        #[serde(default)]
        az: Option<String>,
        /// Region name.
        #[serde(default)]
        region: Option<String>,
    }
);
entry_common!(
    /// A host: VM, server, cloud instance.
    HostEntry {
        /// Interface IPs.
        #[serde(default)]
        ips: Vec<String>,
        /// VPC name.
        #[serde(default)]
        vpc: Option<String>,
        /// AZ name.
        #[serde(default)]
        az: Option<String>,
        /// Region name.
        #[serde(default)]
        region: Option<String>,
    }
);
entry_common!(
    /// A process on a host (for eBPF rows, which know the pid).
    ProcessEntry {
        /// Host name (required).
        host: String,
        /// Process id.
        pid: u32,
        /// Container id (bare hex, or `containerd://...`), linking the process to a pod.
        #[serde(default)]
        container_id: Option<String>,
    }
);
entry_common!(
    /// A Kubernetes cluster.
    PodClusterEntry {
        /// VPC its pods and services live in.
        #[serde(default)]
        vpc: Option<String>,
        /// Region name.
        #[serde(default)]
        region: Option<String>,
        /// AZ name.
        #[serde(default)]
        az: Option<String>,
    }
);
entry_common!(
    /// A namespace.
    NamespaceEntry {
        /// Cluster name (required).
        cluster: String,
    }
);
entry_common!(
    /// A node.
    NodeEntry {
        /// Cluster name (required).
        cluster: String,
        /// Node addresses.
        #[serde(default)]
        ips: Vec<String>,
        /// Host name of the machine, when known; otherwise matched by IP, else a host named after
        /// the node is created.
        #[serde(default)]
        host: Option<String>,
        /// AZ name (`topology.kubernetes.io/zone`).
        #[serde(default)]
        az: Option<String>,
        /// Region name (`topology.kubernetes.io/region`).
        #[serde(default)]
        region: Option<String>,
    }
);
entry_common!(
    /// A workload (`pod_group`).
    PodGroupEntry {
        /// Cluster name (required).
        cluster: String,
        /// Namespace name (required).
        namespace: String,
        /// `Deployment`, `StatefulSet`, `DaemonSet`, `ReplicaSet`, `Job`, `CronJob`, `Pod`, `Other`.
        kind: String,
    }
);
entry_common!(
    /// A pod.
    PodEntry {
        /// Cluster name (required).
        cluster: String,
        /// Namespace name (required).
        namespace: String,
        /// Node name.
        #[serde(default)]
        node: Option<String>,
        /// Workload name (with `group_kind`); none for a bare pod.
        #[serde(default)]
        group: Option<String>,
        /// Workload kind.
        #[serde(default)]
        group_kind: Option<String>,
        /// Pod IPs (empty for finished pods, whose IPs may be reused).
        #[serde(default)]
        ips: Vec<String>,
        /// Uses the node's network namespace: its IP is the node's, so it is not indexed by IP.
        #[serde(default)]
        host_network: bool,
        /// Container ids.
        #[serde(default)]
        container_ids: Vec<String>,
        /// Creation time (RFC 3339); when two pods claim one IP the newer wins.
        #[serde(default)]
        created: Option<String>,
    }
);
entry_common!(
    /// A service.
    ServiceEntry {
        /// Cluster name (required).
        cluster: String,
        /// Namespace name (required).
        namespace: String,
        /// ClusterIPs (and external IPs).
        #[serde(default)]
        cluster_ips: Vec<String>,
        /// Pod selector: pods of the namespace with all these labels belong to the service.
        #[serde(default)]
        selector: Labels,
        /// Pods named explicitly (from Endpoints/EndpointSlices).
        #[serde(default)]
        pods: Vec<String>,
    }
);

/// An inventory document. Every list is optional. Unknown fields are an error, so typos are
/// caught.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Document format version (1; optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Regions.
    #[serde(default)]
    pub regions: Vec<RegionEntry>,
    /// Availability zones.
    #[serde(default)]
    pub azs: Vec<AzEntry>,
    /// VPCs.
    #[serde(default)]
    pub vpcs: Vec<VpcEntry>,
    /// Subnets.
    #[serde(default)]
    pub subnets: Vec<SubnetEntry>,
    /// Hosts.
    #[serde(default)]
    pub hosts: Vec<HostEntry>,
    /// Processes.
    #[serde(default)]
    pub processes: Vec<ProcessEntry>,
    /// Kubernetes clusters.
    #[serde(default)]
    pub pod_clusters: Vec<PodClusterEntry>,
    /// Namespaces.
    #[serde(default)]
    pub pod_namespaces: Vec<NamespaceEntry>,
    /// Nodes.
    #[serde(default)]
    pub pod_nodes: Vec<NodeEntry>,
    /// Workloads.
    #[serde(default)]
    pub pod_groups: Vec<PodGroupEntry>,
    /// Pods.
    #[serde(default)]
    pub pods: Vec<PodEntry>,
    /// Services.
    #[serde(default)]
    pub services: Vec<ServiceEntry>,
}

/// The document format of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML (a superset of JSON).
    Yaml,
}

impl Format {
    /// JSON for `.json` files, YAML otherwise.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

pub(crate) fn parse_doc<T: serde::de::DeserializeOwned>(text: &str, format: Format, source_name: &str) -> Result<T> {
    let r = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| e.to_string()),
        Format::Yaml => serde_yaml_ng::from_str(text).map_err(|e| e.to_string()),
    };
    r.map_err(|message| TaggingError::Parse { source_name: source_name.to_string(), message })
}

pub(crate) fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| TaggingError::Io { path: path.to_path_buf(), source })
}

impl Inventory {
    /// Parses and validates a document.
    pub fn parse(text: &str, format: Format, source_name: &str) -> Result<Self> {
        let inv: Inventory = parse_doc(text, format, source_name)?;
        inv.validate(source_name)?;
        Ok(inv)
    }

    /// Reads, parses and validates a file (JSON for `.json`, YAML otherwise).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_file(path)?;
        Self::parse(&text, Format::from_path(path), &path.display().to_string())
    }

    /// Checks what can be checked inside one document: names present and unique in their scope,
    /// CIDRs and IPs well-formed, known workload kinds, version 1. References to other entries
    /// are checked when all sources are merged ([`crate::Tagger`]), since they may live in
    /// another source. Errors name the entry: `subnets[2] "db"`.
    pub fn validate(&self, src: &str) -> Result<()> {
        if let Some(v) = self.version
            && v != 1
        {
            return Err(TaggingError::entry(src, "version", format!("unknown inventory version {v} (expected 1)")));
        }
        fn uniq<'a>(src: &str, list: &str, items: impl Iterator<Item = (usize, &'a str, String)>) -> Result<()> {
            let mut seen = HashSet::new();
            for (i, name, scope_key) in items {
                let label = format!("{list}[{i}] {name:?}");
                if name.trim().is_empty() {
                    return Err(TaggingError::entry(src, label, "empty name"));
                }
                if name.contains('/') {
                    return Err(TaggingError::entry(src, label, "name must not contain '/'"));
                }
                if !seen.insert(scope_key) {
                    return Err(TaggingError::entry(src, label, "duplicate name in its scope"));
                }
            }
            Ok(())
        }
        uniq(src, "regions", self.regions.iter().enumerate().map(|(i, e)| (i, &*e.name, e.name.clone())))?;
        uniq(src, "azs", self.azs.iter().enumerate().map(|(i, e)| (i, &*e.name, e.name.clone())))?;
        uniq(src, "vpcs", self.vpcs.iter().enumerate().map(|(i, e)| (i, &*e.name, e.name.clone())))?;
        uniq(
            src,
            "subnets",
            self.subnets.iter().enumerate().map(|(i, e)| (i, &*e.name, format!("{}/{}", e.vpc, e.name))),
        )?;
        uniq(src, "hosts", self.hosts.iter().enumerate().map(|(i, e)| (i, &*e.name, e.name.clone())))?;
        uniq(
            src,
            "processes",
            self.processes.iter().enumerate().map(|(i, e)| (i, &*e.name, format!("{}/{}/{}", e.host, e.pid, e.name))),
        )?;
        uniq(src, "pod_clusters", self.pod_clusters.iter().enumerate().map(|(i, e)| (i, &*e.name, e.name.clone())))?;
        uniq(
            src,
            "pod_namespaces",
            self.pod_namespaces.iter().enumerate().map(|(i, e)| (i, &*e.name, format!("{}/{}", e.cluster, e.name))),
        )?;
        uniq(
            src,
            "pod_nodes",
            self.pod_nodes.iter().enumerate().map(|(i, e)| (i, &*e.name, format!("{}/{}", e.cluster, e.name))),
        )?;
        uniq(
            src,
            "pod_groups",
            self.pod_groups.iter().enumerate().map(|(i, e)| {
                (i, &*e.name, format!("{}/{}/{}/{}", e.cluster, e.namespace, e.kind.to_ascii_lowercase(), e.name))
            }),
        )?;
        uniq(
            src,
            "pods",
            self.pods
                .iter()
                .enumerate()
                .map(|(i, e)| (i, &*e.name, format!("{}/{}/{}", e.cluster, e.namespace, e.name))),
        )?;
        uniq(
            src,
            "services",
            self.services
                .iter()
                .enumerate()
                .map(|(i, e)| (i, &*e.name, format!("{}/{}/{}", e.cluster, e.namespace, e.name))),
        )?;

        for (i, s) in self.subnets.iter().enumerate() {
            let label = || format!("subnets[{i}] {:?}", s.name);
            if s.vpc.trim().is_empty() {
                return Err(TaggingError::entry(src, label(), "missing vpc"));
            }
            if s.cidrs.is_empty() && s.cidr.is_none() {
                return Err(TaggingError::entry(src, label(), "no cidr/cidrs"));
            }
            for c in s.all_cidrs() {
                c.parse::<Cidr>().map_err(|e| TaggingError::entry(src, label(), e))?;
            }
        }
        let check_ips = |list: &str, i: usize, name: &str, ips: &[String]| -> Result<()> {
            for ip in ips {
                parse_ip(ip).map_err(|e| TaggingError::entry(src, format!("{list}[{i}] {name:?}"), e))?;
            }
            Ok(())
        };
        for (i, h) in self.hosts.iter().enumerate() {
            check_ips("hosts", i, &h.name, &h.ips)?;
        }
        for (i, n) in self.pod_nodes.iter().enumerate() {
            check_ips("pod_nodes", i, &n.name, &n.ips)?;
        }
        for (i, p) in self.pods.iter().enumerate() {
            check_ips("pods", i, &p.name, &p.ips)?;
            if let Some(k) = &p.group_kind
                && PodGroupType::parse(k).is_none()
            {
                return Err(TaggingError::entry(
                    src,
                    format!("pods[{i}] {:?}", p.name),
                    format!("unknown group_kind {k:?}"),
                ));
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            check_ips("services", i, &s.name, &s.cluster_ips)?;
        }
        for (i, g) in self.pod_groups.iter().enumerate() {
            if PodGroupType::parse(&g.kind).is_none() {
                return Err(TaggingError::entry(
                    src,
                    format!("pod_groups[{i}] {:?}", g.name),
                    format!(
                        "unknown kind {:?} (expected Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod or Other)",
                        g.kind
                    ),
                ));
            }
        }
        for (i, p) in self.processes.iter().enumerate() {
            if p.host.trim().is_empty() {
                return Err(TaggingError::entry(src, format!("processes[{i}] {:?}", p.name), "missing host"));
            }
        }
        Ok(())
    }

    /// Appends every entry of `other`.
    pub fn extend(&mut self, other: Inventory) {
        self.regions.extend(other.regions);
        self.azs.extend(other.azs);
        self.vpcs.extend(other.vpcs);
        self.subnets.extend(other.subnets);
        self.hosts.extend(other.hosts);
        self.processes.extend(other.processes);
        self.pod_clusters.extend(other.pod_clusters);
        self.pod_namespaces.extend(other.pod_namespaces);
        self.pod_nodes.extend(other.pod_nodes);
        self.pod_groups.extend(other.pod_groups);
        self.pods.extend(other.pods);
        self.services.extend(other.services);
    }

    /// Total number of entries.
    pub fn len(&self) -> usize {
        self.regions.len()
            + self.azs.len()
            + self.vpcs.len()
            + self.subnets.len()
            + self.hosts.len()
            + self.processes.len()
            + self.pod_clusters.len()
            + self.pod_namespaces.len()
            + self.pod_nodes.len()
            + self.pod_groups.len()
            + self.pods.len()
            + self.services.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SubnetEntry {
    /// `cidr` and `cidrs` together.
    pub fn all_cidrs(&self) -> impl Iterator<Item = &String> {
        self.cidr.iter().chain(self.cidrs.iter())
    }
}

/// Parses an IP address (IPv4-mapped IPv6 is kept as given; lookups normalize).
pub(crate) fn parse_ip(s: &str) -> std::result::Result<IpAddr, String> {
    s.trim().parse::<IpAddr>().map_err(|_| format!("invalid IP address {s:?}"))
}
