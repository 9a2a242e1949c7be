//! The resource model: tag kinds, universal tags, custom-label rows.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

/// A kind of resource (and so a tag dictionary). The discriminant is stable: it is written to
/// dictionary files and label tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum ResourceKind {
    /// A cloud region (`region_id`).
    Region = 1,
    /// An availability zone (`az_id`).
    Az = 2,
    /// A host: VM, bare-metal server, cloud instance (`host_id`).
    Host = 3,
    /// A VPC / L3 network domain (`l3_epc_id`).
    Vpc = 4,
    /// A subnet (`subnet_id`).
    Subnet = 5,
    /// A Kubernetes cluster (`pod_cluster_id`).
    PodCluster = 6,
    /// A Kubernetes namespace (`pod_ns_id`).
    PodNs = 7,
    /// A Kubernetes node (`pod_node_id`).
    PodNode = 8,
    /// A workload: Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, or a bare pod
    /// (`pod_group_id`).
    PodGroup = 9,
    /// A pod (`pod_id`).
    Pod = 10,
    /// A Kubernetes service (`service_id`).
    Service = 11,
    /// A process (`gprocess_id`).
    Process = 12,
    /// Custom-label keys (K8s label/annotation keys, CMDB field names).
    LabelKey = 13,
    /// Custom-label values.
    LabelValue = 14,
}

impl ResourceKind {
    /// Every kind, in discriminant order.
    pub const ALL: [ResourceKind; 14] = [
        ResourceKind::Region,
        ResourceKind::Az,
        ResourceKind::Host,
        ResourceKind::Vpc,
        ResourceKind::Subnet,
        ResourceKind::PodCluster,
        ResourceKind::PodNs,
        ResourceKind::PodNode,
        ResourceKind::PodGroup,
        ResourceKind::Pod,
        ResourceKind::Service,
        ResourceKind::Process,
        ResourceKind::LabelKey,
        ResourceKind::LabelValue,
    ];

    /// The DeepFlow-style name of the kind, as used in dictionary files and `flow_tag.<name>_map`.
    pub const fn name(self) -> &'static str {
        match self {
            ResourceKind::Region => "region",
            ResourceKind::Az => "az",
            ResourceKind::Host => "host",
            ResourceKind::Vpc => "l3_epc",
            ResourceKind::Subnet => "subnet",
            ResourceKind::PodCluster => "pod_cluster",
            ResourceKind::PodNs => "pod_ns",
            ResourceKind::PodNode => "pod_node",
            ResourceKind::PodGroup => "pod_group",
            ResourceKind::Pod => "pod",
            ResourceKind::Service => "service",
            ResourceKind::Process => "gprocess",
            ResourceKind::LabelKey => "label_key",
            ResourceKind::LabelValue => "label_value",
        }
    }

    /// The inverse of [`ResourceKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        ResourceKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The index of this kind in [`ResourceKind::ALL`].
    pub const fn index(self) -> usize {
        self as usize - 1
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The type of a workload (`pod_group_type`), after DeepFlow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub enum PodGroupType {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// apps/v1 ReplicaSet not owned by a Deployment.
    ReplicaSet,
    /// batch/v1 Job not owned by a CronJob.
    Job,
    /// batch/v1 CronJob.
    CronJob,
    /// A pod without a controller (its own group).
    #[default]
    Pod,
    /// Any other controller kind (e.g. an operator's CRD).
    Other,
}

impl PodGroupType {
    /// Parses an ownerReference / inventory kind (`Deployment`, `statefulset`, ...).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "deployment" => PodGroupType::Deployment,
            "statefulset" => PodGroupType::StatefulSet,
            "daemonset" => PodGroupType::DaemonSet,
            "replicaset" => PodGroupType::ReplicaSet,
            "job" => PodGroupType::Job,
            "cronjob" => PodGroupType::CronJob,
            "pod" => PodGroupType::Pod,
            "other" => PodGroupType::Other,
            _ => return None,
        })
    }

    /// Lowercase name, used in dictionary keys.
    pub const fn name(self) -> &'static str {
        match self {
            PodGroupType::Deployment => "deployment",
            PodGroupType::StatefulSet => "statefulset",
            PodGroupType::DaemonSet => "daemonset",
            PodGroupType::ReplicaSet => "replicaset",
            PodGroupType::Job => "job",
            PodGroupType::CronJob => "cronjob",
            PodGroupType::Pod => "pod",
            PodGroupType::Other => "other",
        }
    }
}

/// The universal tags of one side of a row: integer ids, 0 = unknown. Rows carry two of these,
/// written as columns with a `_0` (client) and `_1` (server) suffix (see [`SideTags`]).
///
/// 48 bytes, `Copy`: tagging a row copies ids, it never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct UniversalTags {
    /// `region_id`
    pub region_id: u32,
    /// `az_id`
    pub az_id: u32,
    /// `host_id`
    pub host_id: u32,
    /// `l3_epc_id` (VPC)
    pub l3_epc_id: u32,
    /// `subnet_id`
    pub subnet_id: u32,
    /// `pod_cluster_id`
    pub pod_cluster_id: u32,
    /// `pod_ns_id`
    pub pod_ns_id: u32,
    /// `pod_node_id`
    pub pod_node_id: u32,
    /// `pod_group_id`
    pub pod_group_id: u32,
    /// `pod_id`
    pub pod_id: u32,
    /// `service_id`
    pub service_id: u32,
    /// `gprocess_id`
    pub gprocess_id: u32,
}

/// Column base names of [`UniversalTags`], in field order.
pub const TAG_COLUMNS: [&str; 12] = [
    "region_id",
    "az_id",
    "host_id",
    "l3_epc_id",
    "subnet_id",
    "pod_cluster_id",
    "pod_ns_id",
    "pod_node_id",
    "pod_group_id",
    "pod_id",
    "service_id",
    "gprocess_id",
];

/// Column names with the `_0` suffix, in field order.
pub const TAG_COLUMNS_0: [&str; 12] = [
    "region_id_0",
    "az_id_0",
    "host_id_0",
    "l3_epc_id_0",
    "subnet_id_0",
    "pod_cluster_id_0",
    "pod_ns_id_0",
    "pod_node_id_0",
    "pod_group_id_0",
    "pod_id_0",
    "service_id_0",
    "gprocess_id_0",
];

/// Column names with the `_1` suffix, in field order.
pub const TAG_COLUMNS_1: [&str; 12] = [
    "region_id_1",
    "az_id_1",
    "host_id_1",
    "l3_epc_id_1",
    "subnet_id_1",
    "pod_cluster_id_1",
    "pod_ns_id_1",
    "pod_node_id_1",
    "pod_group_id_1",
    "pod_id_1",
    "service_id_1",
    "gprocess_id_1",
];

impl UniversalTags {
    /// The ids in [`TAG_COLUMNS`] order.
    pub const fn to_array(&self) -> [u32; 12] {
        [
            self.region_id,
            self.az_id,
            self.host_id,
            self.l3_epc_id,
            self.subnet_id,
            self.pod_cluster_id,
            self.pod_ns_id,
            self.pod_node_id,
            self.pod_group_id,
            self.pod_id,
            self.service_id,
            self.gprocess_id,
        ]
    }

    /// The getter of the id at index `i` of [`Self::to_array`] (0 past the end): columnar
    /// writers read one id of many rows without building the array per row.
    pub fn getter(i: usize) -> fn(&UniversalTags) -> u32 {
        match i {
            0 => |t| t.region_id,
            1 => |t| t.az_id,
            2 => |t| t.host_id,
            3 => |t| t.l3_epc_id,
            4 => |t| t.subnet_id,
            5 => |t| t.pod_cluster_id,
            6 => |t| t.pod_ns_id,
            7 => |t| t.pod_node_id,
            8 => |t| t.pod_group_id,
            9 => |t| t.pod_id,
            10 => |t| t.service_id,
            11 => |t| t.gprocess_id,
            _ => |_| 0,
        }
    }

    /// The id of one kind (0 for label kinds, which are not universal tags).
    pub const fn get(&self, kind: ResourceKind) -> u32 {
        match kind {
            ResourceKind::Region => self.region_id,
            ResourceKind::Az => self.az_id,
            ResourceKind::Host => self.host_id,
            ResourceKind::Vpc => self.l3_epc_id,
            ResourceKind::Subnet => self.subnet_id,
            ResourceKind::PodCluster => self.pod_cluster_id,
            ResourceKind::PodNs => self.pod_ns_id,
            ResourceKind::PodNode => self.pod_node_id,
            ResourceKind::PodGroup => self.pod_group_id,
            ResourceKind::Pod => self.pod_id,
            ResourceKind::Service => self.service_id,
            ResourceKind::Process => self.gprocess_id,
            ResourceKind::LabelKey | ResourceKind::LabelValue => 0,
        }
    }

    /// Fills every field that is 0 in `self` from `other`.
    #[inline]
    pub fn fill_from(&mut self, other: &UniversalTags) {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f == 0 { self.$f = other.$f; } )* };
        }
        fill!(
            region_id,
            az_id,
            host_id,
            l3_epc_id,
            subnet_id,
            pod_cluster_id,
            pod_ns_id,
            pod_node_id,
            pod_group_id,
            pod_id,
            service_id,
            gprocess_id
        );
    }

    /// True when every id is 0.
    pub fn is_empty(&self) -> bool {
        *self == UniversalTags::default()
    }

    /// A serializable view with `_0` or `_1` suffixed column names.
    pub fn side(&self, side: Side) -> SideTags<'_> {
        SideTags { tags: self, side }
    }
}

/// Which side of a row: client (`_0`) or server (`_1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Client, columns suffixed `_0`.
    Client,
    /// Server, columns suffixed `_1`.
    Server,
}

/// Serializes [`UniversalTags`] as a map with suffixed keys (`pod_id_0`, ...). Use it with
/// `#[serde(flatten)]` next to a record, as [`TaggedRow`] does.
#[derive(Debug, Clone, Copy)]
pub struct SideTags<'a> {
    tags: &'a UniversalTags,
    side: Side,
}

impl Serialize for SideTags<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let names = match self.side {
            Side::Client => &TAG_COLUMNS_0,
            Side::Server => &TAG_COLUMNS_1,
        };
        let mut m = s.serialize_map(Some(12))?;
        for (name, v) in names.iter().zip(self.tags.to_array()) {
            m.serialize_entry(name, &v)?;
        }
        m.end()
    }
}

/// A record carried together with its client and server tags. This is how rows carry tags without
/// deepflow-core's record types knowing about tagging: sinks receive `TaggedRow<L4FlowLog>` (or
/// keep the two [`UniversalTags`] in parallel columns), and serializing it flattens the record's
/// fields and the `_0`/`_1` tag columns into one object.
#[derive(Debug, Clone, PartialEq)]
pub struct TaggedRow<R> {
    /// The record.
    pub row: R,
    /// Client-side tags (`*_0`).
    pub tags_0: UniversalTags,
    /// Server-side tags (`*_1`).
    pub tags_1: UniversalTags,
}

impl<R: Serialize> Serialize for TaggedRow<R> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Flat<'a, R> {
            #[serde(flatten)]
            row: &'a R,
            #[serde(flatten)]
            t0: SideTags<'a>,
            #[serde(flatten)]
            t1: SideTags<'a>,
        }
        Flat { row: &self.row, t0: self.tags_0.side(Side::Client), t1: self.tags_1.side(Side::Server) }.serialize(s)
    }
}

/// Where a custom label comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum LabelSource {
    /// A Kubernetes label, or an inventory `labels` entry.
    Label = 0,
    /// A Kubernetes annotation.
    Annotation = 1,
    /// A CMDB field from an inventory file (`cmdb:`).
    Cmdb = 2,
    /// A cloud resource tag.
    CloudTag = 3,
}

/// One custom label: `(resource kind, resource id, key id, value id)`, plus where it came from.
/// Keys and values are ids in the [`ResourceKind::LabelKey`] / [`ResourceKind::LabelValue`]
/// dictionaries. These rows form their own table; flow rows never carry labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LabelRow {
    /// Kind of the labelled resource.
    pub kind: ResourceKind,
    /// Id of the labelled resource.
    pub resource_id: u32,
    /// Label key id.
    pub key_id: u32,
    /// Label value id.
    pub value_id: u32,
    /// Origin of the label.
    pub source: LabelSource,
}

/// One resource of the built model, for exporting `<kind>_map` tables: its id, display name, and
/// its own placement (e.g. a pod's namespace, node, cluster, VPC ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceInfo {
    /// Kind.
    pub kind: ResourceKind,
    /// Id (dictionary id of its key).
    pub id: u32,
    /// Display name.
    pub name: String,
    /// Placement of the resource itself (its own id included).
    pub tags: UniversalTags,
    /// Workload type, for [`ResourceKind::PodGroup`].
    pub pod_group_type: Option<PodGroupType>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getter_follows_to_array() {
        let t = UniversalTags {
            region_id: 1,
            az_id: 2,
            host_id: 3,
            l3_epc_id: 4,
            subnet_id: 5,
            pod_cluster_id: 6,
            pod_ns_id: 7,
            pod_node_id: 8,
            pod_group_id: 9,
            pod_id: 10,
            service_id: 11,
            gprocess_id: 12,
        };
        for i in 0..14 {
            assert_eq!(UniversalTags::getter(i)(&t), t.to_array().get(i).copied().unwrap_or(0), "index {i}");
        }
    }
}
