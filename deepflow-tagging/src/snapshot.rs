//! The built, read-only tag tables and the per-row lookups.

use std::net::IpAddr;

use deepflow_core::record::{L4FlowLog, L7FlowLog};
use hashbrown::HashMap;

use crate::lpm::{LpmTable, ip_key};
use crate::model::{LabelRow, ResourceInfo, ResourceKind, UniversalTags};

/// Where one side of a row was seen: its IP and, when known, its VPC, and for eBPF rows the host
/// and process. `Copy`, no allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// The IP address, if any.
    pub ip: Option<IpAddr>,
    /// The VPC id (`l3_epc_id`) the address belongs to; `None` = the tagger's default VPC, or
    /// any VPC where the address is unambiguous.
    pub vpc: Option<u32>,
    /// Host id (from [`crate::Tagger::host_id`]) where the process runs; 0 = unknown.
    pub host_id: u32,
    /// Process id on that host; 0 = unknown.
    pub pid: u32,
}

impl Endpoint {
    /// An endpoint known by IP only.
    pub fn ip(ip: IpAddr) -> Self {
        Endpoint { ip: Some(ip), ..Default::default() }
    }

    /// An endpoint known by VPC and IP.
    pub fn vpc_ip(vpc: u32, ip: IpAddr) -> Self {
        Endpoint { ip: Some(ip), vpc: Some(vpc), ..Default::default() }
    }

    /// Adds the process (for eBPF rows).
    pub fn with_process(mut self, host_id: u32, pid: u32) -> Self {
        self.host_id = host_id;
        self.pid = pid;
        self
    }
}

/// Per-row context for eBPF (and other) rows: the VPC of the capture point and the local
/// process of each side, when known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowContext {
    /// VPC of both IPs, when the capture point knows it.
    pub vpc: Option<u32>,
    /// Host id where the eBPF probe ran (0 = none).
    pub host_id: u32,
    /// Client process id on that host (0 = not local).
    pub pid_0: u32,
    /// Server process id on that host (0 = not local).
    pub pid_1: u32,
}

/// Marks an ambiguous entry in the VPC-agnostic indexes.
pub(crate) const AMBIGUOUS: u32 = u32::MAX;

/// An immutable, built set of tag tables. Get the current one from [`crate::Tagger::snapshot`]
/// once per batch and tag every row of the batch with it: lookups take `&self`, touch only
/// integer-keyed hash maps and sorted arrays, and never allocate.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub(crate) dict_version: u64,
    pub(crate) default_vpc: Option<u32>,
    /// Precomputed tags; the indexes below point into it.
    pub(crate) tags: Vec<UniversalTags>,
    pub(crate) by_vpc_ip: HashMap<(u32, u128), u32>,
    pub(crate) by_ip: HashMap<u128, u32>,
    pub(crate) subnets_by_vpc: HashMap<u32, LpmTable<u32>>,
    pub(crate) subnets_any: LpmTable<u32>,
    pub(crate) processes: HashMap<(u32, u32), u32>,
    pub(crate) hosts: HashMap<u32, u32>,
    pub(crate) resources: Vec<ResourceInfo>,
    pub(crate) labels: Vec<LabelRow>,
}

impl Snapshot {
    /// The dictionary version the ids in this snapshot belong to.
    pub fn dict_version(&self) -> u64 {
        self.dict_version
    }

    /// Tags for an IP. With a VPC (given, or the default): an exact pod / service / node / host
    /// IP of that VPC (or of no VPC), else the most specific subnet of that VPC. Without one: an
    /// exact IP that only one VPC has (an exact IP of several VPCs gives nothing), else the most
    /// specific subnet over all VPCs (a network that two VPCs both have gives no subnet).
    #[inline]
    pub fn lookup_ip(&self, vpc: Option<u32>, ip: IpAddr) -> UniversalTags {
        let key = ip_key(ip);
        match vpc.or(self.default_vpc) {
            Some(v) => {
                let exact = self.by_vpc_ip.get(&(v, key)).or_else(|| self.by_vpc_ip.get(&(0, key)));
                if let Some(&i) = exact {
                    return self.get(i);
                }
                let mut t =
                    self.subnets_by_vpc.get(&v).and_then(|l| l.lookup(ip)).map(|&i| self.get(i)).unwrap_or_default();
                t.l3_epc_id = v;
                t
            }
            None => {
                match self.by_ip.get(&key) {
                    // the address belongs to resources in several VPCs: do not guess
                    Some(&AMBIGUOUS) => return UniversalTags::default(),
                    Some(&i) => return self.get(i),
                    None => {}
                }
                match self.subnets_any.lookup(ip) {
                    Some(&i) if i != AMBIGUOUS => self.get(i),
                    _ => UniversalTags::default(),
                }
            }
        }
    }

    /// Tags of a process known by (host id, pid): its `gprocess_id`, its pod's tags when its
    /// container belongs to a pod, else its host's.
    #[inline]
    pub fn lookup_process(&self, host_id: u32, pid: u32) -> Option<UniversalTags> {
        self.processes.get(&(host_id, pid)).map(|&i| self.get(i))
    }

    /// Tags of a host by id (its region, az, VPC).
    #[inline]
    pub fn lookup_host(&self, host_id: u32) -> Option<UniversalTags> {
        self.hosts.get(&host_id).map(|&i| self.get(i))
    }

    /// Tags for one side: process tags first (eBPF), then the IP's, filling what is missing.
    #[inline]
    pub fn tag(&self, ep: &Endpoint) -> UniversalTags {
        let mut t = UniversalTags::default();
        if ep.host_id != 0 {
            if ep.pid != 0
                && let Some(p) = self.lookup_process(ep.host_id, ep.pid)
            {
                t = p;
            }
            if t.pod_id == 0
                && t.host_id == 0
                && let Some(h) = self.lookup_host(ep.host_id)
            {
                t.fill_from(&h);
            }
        }
        if let Some(ip) = ep.ip {
            let by_ip = self.lookup_ip(ep.vpc, ip);
            if t.is_empty() {
                return by_ip;
            }
            // A process's pod/host wins; the IP adds what the process does not know.
            if t.pod_id == 0 || by_ip.pod_id == t.pod_id || by_ip.pod_id == 0 {
                t.fill_from(&by_ip);
            }
        }
        t
    }

    /// Tags for a client/server pair: `(_0, _1)`.
    #[inline]
    pub fn tag_pair(&self, client: &Endpoint, server: &Endpoint) -> (UniversalTags, UniversalTags) {
        (self.tag(client), self.tag(server))
    }

    /// Tags for an `l4_flow_log` row: `(_0, _1)` from `ip_0`/`ip_1` in `vpc` (None = default or
    /// any). The row is not modified; carry the result next to it (e.g. [`crate::TaggedRow`]).
    #[inline]
    pub fn tag_l4(&self, row: &L4FlowLog, vpc: Option<u32>) -> (UniversalTags, UniversalTags) {
        let side = |ip: Option<IpAddr>| Endpoint { ip, vpc, ..Default::default() };
        self.tag_pair(&side(row.ip_0), &side(row.ip_1))
    }

    /// Tags for an `l7_flow_log` row: `(_0, _1)` from `ip_0`/`ip_1`, and for eBPF rows the local
    /// process of each side given in `ctx`.
    #[inline]
    pub fn tag_l7(&self, row: &L7FlowLog, ctx: &RowContext) -> (UniversalTags, UniversalTags) {
        let c = Endpoint { ip: Some(row.ip_0), vpc: ctx.vpc, host_id: ctx.host_id, pid: ctx.pid_0 };
        let s = Endpoint { ip: Some(row.ip_1), vpc: ctx.vpc, host_id: ctx.host_id, pid: ctx.pid_1 };
        self.tag_pair(&c, &s)
    }

    /// Every resource of the model with its id, name and placement: the contents of the
    /// `<kind>_map` tables.
    pub fn resources(&self) -> &[ResourceInfo] {
        &self.resources
    }

    /// Resources of one kind.
    pub fn resources_of(&self, kind: ResourceKind) -> impl Iterator<Item = &ResourceInfo> {
        self.resources.iter().filter(move |r| r.kind == kind)
    }

    /// The custom-label table: `(kind, resource id, key id, value id, source)` rows.
    pub fn labels(&self) -> &[LabelRow] {
        &self.labels
    }

    /// Number of exact IP entries, subnets (networks) and processes indexed.
    pub fn stats(&self) -> SnapshotStats {
        SnapshotStats {
            exact_ips: self.by_vpc_ip.len(),
            networks: self.subnets_by_vpc.values().map(LpmTable::len).sum(),
            processes: self.processes.len(),
            resources: self.resources.len(),
            labels: self.labels.len(),
        }
    }

    #[inline]
    fn get(&self, i: u32) -> UniversalTags {
        self.tags.get(i as usize).copied().unwrap_or_default()
    }
}

/// Sizes of a [`Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Exact (VPC, IP) entries.
    pub exact_ips: usize,
    /// Subnet networks.
    pub networks: usize,
    /// Processes.
    pub processes: usize,
    /// Resources of every kind.
    pub resources: usize,
    /// Custom-label rows.
    pub labels: usize,
}
