//! # deepflow-capture
//!
//! Everything between the wire and the L7 layer: packet sources (pcap/pcapng files and live
//! libpcap capture), IP defragmentation, a flow table with client/server inference, TCP
//! reassembly that hands in-order bytes to the L7 layer, and L4 metrics with DeepFlow's
//! meanings (`l4_flow_log`, network metrics). One [`budget::MemoryBudget`] caps the memory of
//! all per-flow state.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic))]

pub mod budget;
pub mod defrag;
#[cfg(all(feature = "ebpf", target_os = "linux"))]
pub mod ebpf;
pub mod flow;
pub mod pipeline;
pub mod source;
