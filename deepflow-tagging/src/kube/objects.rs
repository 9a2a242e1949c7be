//! The parts of Kubernetes objects the tagger needs (everything else is ignored when decoding).

use std::collections::BTreeMap;

use serde::Deserialize;

/// `metadata`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMeta {
    /// Name.
    pub name: String,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: Option<String>,
    /// UID.
    pub uid: Option<String>,
    /// Resource version.
    pub resource_version: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Owners.
    pub owner_references: Vec<OwnerReference>,
    /// RFC 3339 creation time.
    pub creation_timestamp: Option<String>,
    /// Set while the object is being deleted.
    pub deletion_timestamp: Option<String>,
}

/// An `ownerReferences` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OwnerReference {
    /// Kind (`ReplicaSet`, `Job`, ...).
    pub kind: String,
    /// Name.
    pub name: String,
    /// True for the managing controller.
    pub controller: Option<bool>,
}

/// An object of any of the watched kinds, with the union of the fields used.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeObject {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec (pods, services).
    pub spec: Spec,
    /// Status (pods, nodes, services).
    pub status: Status,
    /// Endpoints subsets.
    pub subsets: Vec<EndpointSubset>,
    /// EndpointSlice endpoints.
    pub endpoints: Vec<SliceEndpoint>,
}

/// `spec` fields of pods and services.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Spec {
    /// Pod: node.
    pub node_name: Option<String>,
    /// Pod: uses the node's network.
    pub host_network: bool,
    /// Service: ClusterIP (`None` for headless).
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// Service: ClusterIPs.
    #[serde(rename = "clusterIPs")]
    pub cluster_ips: Vec<String>,
    /// Service: external IPs.
    #[serde(rename = "externalIPs")]
    pub external_ips: Vec<String>,
    /// Service: selector map (workloads have a LabelSelector object here, not used).
    pub selector: Option<serde_json::Value>,
}

/// `status` fields of pods, nodes and services.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Status {
    /// Pod phase.
    pub phase: Option<String>,
    /// Pod IP.
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    /// Pod IPs (dual stack).
    #[serde(rename = "podIPs")]
    pub pod_ips: Vec<IpEntry>,
    /// Pod container statuses.
    pub container_statuses: Vec<ContainerStatus>,
    /// Node addresses.
    pub addresses: Vec<NodeAddress>,
    /// Service load balancer.
    pub load_balancer: LoadBalancerStatus,
}

/// `{ip: ...}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct IpEntry {
    /// The IP.
    pub ip: String,
}

/// A container status.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerStatus {
    /// `containerd://<hex>`.
    #[serde(rename = "containerID")]
    pub container_id: Option<String>,
}

/// A node address.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The address.
    pub address: String,
}

/// Service `status.loadBalancer`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LoadBalancerStatus {
    /// Ingress points.
    pub ingress: Vec<LbIngress>,
}

/// A load-balancer ingress point.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LbIngress {
    /// IP, when the balancer has one.
    pub ip: Option<String>,
}

/// Endpoints `subsets[]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointSubset {
    /// Ready addresses.
    pub addresses: Vec<EndpointAddress>,
    /// Not-ready addresses.
    pub not_ready_addresses: Vec<EndpointAddress>,
}

/// Endpoints address.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointAddress {
    /// IP.
    pub ip: String,
    /// The pod behind it.
    pub target_ref: Option<ObjectReference>,
}

/// EndpointSlice `endpoints[]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SliceEndpoint {
    /// IPs.
    pub addresses: Vec<String>,
    /// The pod behind it.
    pub target_ref: Option<ObjectReference>,
}

/// A `targetRef`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectReference {
    /// Kind (`Pod`).
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: Option<String>,
}

/// A list response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ObjectList {
    pub metadata: ListMeta,
    pub items: Vec<KubeObject>,
}

/// List metadata.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ListMeta {
    pub resource_version: Option<String>,
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
}

/// A `Status` object (error responses, watch ERROR events).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ApiStatus {
    pub message: Option<String>,
    pub reason: Option<String>,
    pub code: Option<u16>,
}

/// One line of a watch stream.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WatchEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub object: serde_json::Value,
}
