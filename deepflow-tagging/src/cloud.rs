//! Cloud inventory files: a cloud-shaped export (regions, zones, VPCs, subnets, instances), as a
//! provider's describe-* APIs return them, converted into an [`Inventory`].
//!
//! ```yaml
//! provider: aws
//! regions: [{id: us-east-1}]
//! zones: [{id: us-east-1a, region: us-east-1}]
//! vpcs:
//!   - {id: vpc-0a1b, region: us-east-1, cidr: 10.0.0.0/16, tags: {Name: prod}}
//! subnets:
//!   - {id: subnet-01, vpc_id: vpc-0a1b, zone: us-east-1a, cidr: 10.0.1.0/24, ipv6_cidr: "2600:1f18:1::/64"}
//! instances:
//!   - {id: i-0abc, zone: us-east-1a, vpc_id: vpc-0a1b, private_ips: [10.0.1.15], tags: {Name: web-1}}
//! ```
//! Cloud ids become the dictionary keys; the `Name` tag (or `name`) becomes the display name;
//! every tag becomes a custom label of source `cloud_tag`. Terminated instances are skipped (their
//! IPs may be reused).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TaggingError};
use crate::inventory::{self, AzEntry, Format, HostEntry, Inventory, Labels, RegionEntry, SubnetEntry, VpcEntry};

/// A cloud inventory document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudInventory {
    /// Provider name (informational).
    #[serde(default)]
    pub provider: Option<String>,
    /// Regions.
    #[serde(default)]
    pub regions: Vec<CloudRegion>,
    /// Availability zones.
    #[serde(default)]
    pub zones: Vec<CloudZone>,
    /// VPCs.
    #[serde(default)]
    pub vpcs: Vec<CloudVpc>,
    /// Subnets (vSwitches).
    #[serde(default)]
    pub subnets: Vec<CloudSubnet>,
    /// Instances (VMs).
    #[serde(default)]
    pub instances: Vec<CloudInstance>,
}

/// A region.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudRegion {
    /// Provider id, e.g. `us-east-1`.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
}

/// A zone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudZone {
    /// Provider id, e.g. `us-east-1a`.
    pub id: String,
    /// Region id.
    pub region: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
}

/// A VPC.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudVpc {
    /// Provider id.
    pub id: String,
    /// Region id.
    #[serde(default)]
    pub region: Option<String>,
    /// Main CIDR (informational; subnets carry the CIDRs used for lookup).
    #[serde(default)]
    pub cidr: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Labels,
}

/// A subnet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudSubnet {
    /// Provider id.
    pub id: String,
    /// VPC id.
    pub vpc_id: String,
    /// Zone id.
    #[serde(default)]
    pub zone: Option<String>,
    /// IPv4 CIDR.
    #[serde(default)]
    pub cidr: Option<String>,
    /// IPv6 CIDR.
    #[serde(default)]
    pub ipv6_cidr: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Labels,
}

/// An instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudInstance {
    /// Provider id.
    pub id: String,
    /// Zone id.
    #[serde(default)]
    pub zone: Option<String>,
    /// VPC id.
    #[serde(default)]
    pub vpc_id: Option<String>,
    /// Subnet id (informational).
    #[serde(default)]
    pub subnet_id: Option<String>,
    /// Private IPs (IPv4 and IPv6).
    #[serde(default)]
    pub private_ips: Vec<String>,
    /// Public IPs.
    #[serde(default)]
    pub public_ips: Vec<String>,
    /// `running`, `stopped`, `terminated`, ...
    #[serde(default)]
    pub state: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Labels,
}

fn display(name: &Option<String>, tags: &Labels) -> Option<String> {
    name.clone().or_else(|| tags.get("Name").cloned())
}

impl CloudInventory {
    /// Parses a document (no conversion).
    pub fn parse(text: &str, format: Format, source_name: &str) -> Result<Self> {
        inventory::parse_doc(text, format, source_name)
    }

    /// Reads a file and converts it to a validated [`Inventory`].
    pub fn inventory_from_file(path: &Path) -> Result<Inventory> {
        let src = path.display().to_string();
        let text = inventory::read_file(path)?;
        Self::parse(&text, Format::from_path(path), &src)?.into_inventory(&src)
    }

    /// Converts to an [`Inventory`] and validates it. Zones must name a known region; subnets
    /// and instances a known VPC and zone; errors name the entry (`instances[4] "i-0abc"`).
    pub fn into_inventory(self, src: &str) -> Result<Inventory> {
        let mut inv = Inventory::default();
        let mut zone_region: BTreeMap<&str, &str> = BTreeMap::new();
        let mut vpc_region: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        let regions: std::collections::BTreeSet<&str> = self.regions.iter().map(|r| r.id.as_str()).collect();
        for (i, z) in self.zones.iter().enumerate() {
            if !regions.contains(z.region.as_str()) {
                return Err(TaggingError::entry(
                    src,
                    format!("zones[{i}] {:?}", z.id),
                    format!("unknown region {:?}", z.region),
                ));
            }
            zone_region.insert(&z.id, &z.region);
        }
        for (i, v) in self.vpcs.iter().enumerate() {
            if let Some(r) = &v.region
                && !regions.contains(r.as_str())
            {
                return Err(TaggingError::entry(src, format!("vpcs[{i}] {:?}", v.id), format!("unknown region {r:?}")));
            }
            vpc_region.insert(&v.id, v.region.as_deref());
        }
        let check_zone = |list: &str, i: usize, id: &str, zone: &Option<String>| -> Result<()> {
            match zone {
                Some(z) if !zone_region.contains_key(z.as_str()) => {
                    Err(TaggingError::entry(src, format!("{list}[{i}] {id:?}"), format!("unknown zone {z:?}")))
                }
                _ => Ok(()),
            }
        };
        for (i, s) in self.subnets.iter().enumerate() {
            if !vpc_region.contains_key(s.vpc_id.as_str()) {
                return Err(TaggingError::entry(
                    src,
                    format!("subnets[{i}] {:?}", s.id),
                    format!("unknown vpc_id {:?}", s.vpc_id),
                ));
            }
            check_zone("subnets", i, &s.id, &s.zone)?;
        }
        for (i, h) in self.instances.iter().enumerate() {
            if let Some(v) = &h.vpc_id
                && !vpc_region.contains_key(v.as_str())
            {
                return Err(TaggingError::entry(
                    src,
                    format!("instances[{i}] {:?}", h.id),
                    format!("unknown vpc_id {v:?}"),
                ));
            }
            check_zone("instances", i, &h.id, &h.zone)?;
        }
        let region_of_zone = |z: &Option<String>| z.as_deref().and_then(|z| zone_region.get(z)).map(|r| r.to_string());

        for r in &self.regions {
            inv.regions.push(RegionEntry { name: r.id.clone(), display: r.name.clone(), ..Default::default() });
        }
        for z in &self.zones {
            inv.azs.push(AzEntry {
                name: z.id.clone(),
                display: z.name.clone(),
                region: Some(z.region.clone()),
                ..Default::default()
            });
        }
        for v in &self.vpcs {
            inv.vpcs.push(VpcEntry {
                name: v.id.clone(),
                display: display(&v.name, &v.tags),
                region: v.region.clone(),
                tags: v.tags.clone(),
                ..Default::default()
            });
        }
        for s in &self.subnets {
            inv.subnets.push(SubnetEntry {
                name: s.id.clone(),
                display: display(&s.name, &s.tags),
                vpc: s.vpc_id.clone(),
                cidrs: s.cidr.iter().chain(s.ipv6_cidr.iter()).cloned().collect(),
                az: s.zone.clone(),
                region: region_of_zone(&s.zone)
                    .or_else(|| vpc_region.get(s.vpc_id.as_str()).copied().flatten().map(String::from)),
                tags: s.tags.clone(),
                ..Default::default()
            });
        }
        for h in self.instances {
            if h.state.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("terminated")) {
                continue;
            }
            inv.hosts.push(HostEntry {
                display: display(&h.name, &h.tags),
                region: region_of_zone(&h.zone),
                name: h.id,
                ips: h.private_ips.into_iter().chain(h.public_ips).collect(),
                vpc: h.vpc_id,
                az: h.zone,
                tags: h.tags,
                ..Default::default()
            });
        }
        inv.validate(src)?;
        Ok(inv)
    }
}
