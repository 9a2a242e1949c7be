//! # deepflow-core
//!
//! The dependency-light heart of deepflow-rs: zero-copy, length-checked views of wire formats
//! ([`wire`]), the decoded [`packet::Packet`] the capture layer works with, flow keys
//! ([`flow`]), and the record types every sink consumes ([`record`]).
//!
//! Nothing here is platform specific and nothing here allocates on the per-packet path.
//!
//! ```
//! use deepflow_core::wire::{decode, DecodeConfig, LinkType};
//!
//! // An IPv4/UDP packet (raw IP link type) carrying 4 payload bytes.
//! let pkt: [u8; 32] = [
//!     0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2, // IPv4
//!     0x30, 0x39, 0, 53, 0, 12, 0, 0, // UDP 12345 -> 53
//!     1, 2, 3, 4,
//! ];
//! let p = decode(LinkType::Raw, &pkt, &DecodeConfig::default()).unwrap();
//! assert_eq!(p.l4.ports(), (12345, 53));
//! assert_eq!(p.payload, &[1, 2, 3, 4]);
//! ```
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic))]

pub mod flow;
pub mod packet;
#[cfg(feature = "proto")]
pub mod proto;
pub mod record;
pub mod wire;

pub use flow::FlowKey;
pub use flow::{Direction, FlowInfo};
pub use packet::Packet;
