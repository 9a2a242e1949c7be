//! # deepflow-tagging
//!
//! AutoTagging for deepflow-rs: who is behind an IP address or a process id. A [`Tagger`]
//! collects resources from sources (a static [inventory] file, a [cloud] inventory
//! file, the [Kubernetes API](kube)), assigns every resource a stable integer id through the
//! SmartEncoding [dictionaries](dict), and builds an immutable [`Snapshot`] of lookup tables.
//! Rows are then tagged with integer ids only ([`UniversalTags`], `_0` = client, `_1` =
//! server); names and custom labels are joined at query time from the dictionaries and the
//! label table.
//!
//! ```
//! use deepflow_tagging::{Endpoint, Format, Inventory, ResourceKind, Tagger, TaggerOptions};
//!
//! let inv = Inventory::parse(r#"
//! regions: [{name: cn-east}]
//! azs: [{name: cn-east-1a, region: cn-east}]
//! vpcs: [{name: prod, region: cn-east}]
//! subnets:
//!   - {name: app, vpc: prod, az: cn-east-1a, cidrs: [10.1.0.0/16]}
//!   - {name: db, vpc: prod, az: cn-east-1a, cidrs: [10.1.9.0/24]}
//! hosts:
//!   - {name: db-01, vpc: prod, ips: [10.1.9.10], cmdb: {owner: dba-team}}
//! "#, Format::Yaml, "example.yaml")?;
//!
//! let tagger = Tagger::new(TaggerOptions { default_vpc: Some("prod".into()), ..Default::default() })?;
//! tagger.update_source("inventory", inv)?;
//! let snap = tagger.snapshot(); // once per batch
//!
//! let (client, server) = snap.tag_pair(
//!     &Endpoint::ip("10.1.3.4".parse().unwrap()),
//!     &Endpoint::ip("10.1.9.10".parse().unwrap()),
//! );
//! assert_eq!(tagger.name(ResourceKind::Subnet, client.subnet_id).as_deref(), Some("app"));
//! assert_eq!(tagger.name(ResourceKind::Subnet, server.subnet_id).as_deref(), Some("db"));
//! assert_eq!(tagger.name(ResourceKind::Host, server.host_id).as_deref(), Some("db-01"));
//! assert_eq!(client.l3_epc_id, tagger.vpc_id("prod").unwrap());
//! assert_eq!(client.region_id, server.region_id);
//! # Ok::<(), deepflow_tagging::TaggingError>(())
//! ```
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic))]
#![warn(missing_docs)]

mod build;
pub mod cloud;
pub mod dict;
mod error;
pub mod inventory;
pub mod kube;
pub mod lpm;
mod model;
mod snapshot;
mod tagger;

pub use build::build_snapshot;
pub use cloud::CloudInventory;
pub use dict::{Dictionary, DictionarySet};
pub use error::{Result, TaggingError};
pub use inventory::{Format, Inventory};
pub use lpm::{Cidr, LpmBuilder, LpmTable};
pub use model::{
    LabelRow, LabelSource, PodGroupType, ResourceInfo, ResourceKind, Side, SideTags, TAG_COLUMNS, TAG_COLUMNS_0,
    TAG_COLUMNS_1, TaggedRow, UniversalTags,
};
pub use snapshot::{Endpoint, RowContext, Snapshot, SnapshotStats};
pub use tagger::{Tagger, TaggerOptions};
