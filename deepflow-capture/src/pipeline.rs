//! One pass per packet: decode (with decapsulation) → IP defragmentation → flow table.
//!
//! [`Pipeline`] is what a worker runs; it owns its flow table and defragmenter outright.
//! Records come out through [`Pipeline::drain_flows`] / [`Pipeline::drain_metrics`] and the
//! observer (the L7 layer) it was built with.

use std::collections::BTreeMap;
use std::sync::Arc;

use deepflow_core::record::{L4FlowLog, NetworkMetrics};
use deepflow_core::wire::{self, DecodeConfig, LinkType};

use crate::budget::MemoryBudget;
use crate::defrag::{DefragConfig, Defragmenter};
use crate::flow::{FlowConfig, FlowObserver, FlowStats, FlowTable};
use crate::source::RawPacket;

/// Settings of a [`Pipeline`].
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub decode: DecodeConfig,
    pub flow: FlowConfig,
    pub defrag: DefragConfig,
    /// One budget for flow table, defragmentation and reassembly buffers, in bytes.
    pub max_memory: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            decode: DecodeConfig::default(),
            flow: FlowConfig::default(),
            defrag: DefragConfig::default(),
            max_memory: 256 << 20,
        }
    }
}

/// What the pipeline saw and skipped, besides the flow table's own counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub packets: u64,
    pub bytes: u64,
    /// Frames that were not IP (ARP, LLDP, ...).
    pub non_ip: u64,
    /// Frames that could not be decoded, by error kind.
    pub decode_errors: BTreeMap<&'static str, u64>,
    pub fragments: u64,
    pub reassembled: u64,
    pub first_timestamp_us: Option<u64>,
    pub last_timestamp_us: u64,
}

impl PipelineStats {
    pub fn decode_error_total(&self) -> u64 {
        self.decode_errors.values().sum()
    }
}

/// Decode → defragment → flow table, for one worker.
pub struct Pipeline<O: FlowObserver> {
    decode: DecodeConfig,
    defrag: Defragmenter,
    table: FlowTable<O>,
    stats: PipelineStats,
}

impl<O: FlowObserver> Pipeline<O> {
    pub fn new(cfg: PipelineConfig, observer: O) -> Self {
        let budget = Arc::new(MemoryBudget::new(cfg.max_memory));
        Self::with_budget(cfg, budget, observer)
    }

    /// A pipeline sharing `budget` with other workers.
    pub fn with_budget(cfg: PipelineConfig, budget: Arc<MemoryBudget>, observer: O) -> Self {
        Pipeline {
            decode: cfg.decode,
            defrag: Defragmenter::new(cfg.defrag, budget.clone()),
            table: FlowTable::new(cfg.flow, budget, observer),
            stats: PipelineStats::default(),
        }
    }

    /// Processes one captured frame.
    pub fn process_raw(&mut self, raw: &RawPacket<'_>) {
        self.process_frame(raw.link, raw.data, raw.timestamp_us, raw.wire_len);
    }

    /// Processes one captured frame given as parts.
    pub fn process_frame(&mut self, link: LinkType, data: &[u8], timestamp_us: u64, wire_len: u32) {
        self.stats.packets += 1;
        self.stats.bytes += u64::from(wire_len);
        if self.stats.first_timestamp_us.is_none() {
            self.stats.first_timestamp_us = Some(timestamp_us);
        }
        self.stats.last_timestamp_us = self.stats.last_timestamp_us.max(timestamp_us);
        let mut p = match wire::decode(link, data, &self.decode) {
            Ok(p) => p,
            Err(e) if e.kind() == "not_ip" => {
                self.stats.non_ip += 1;
                self.table.advance(timestamp_us);
                return;
            }
            Err(e) => {
                *self.stats.decode_errors.entry(e.kind()).or_insert(0) += 1;
                self.table.advance(timestamp_us);
                return;
            }
        };
        p.timestamp_us = timestamp_us;
        p.wire_len = wire_len;
        if p.fragment.is_some() {
            self.stats.fragments += 1;
            self.defrag.expire(timestamp_us);
            let Some(whole) = self.defrag.push(&p, timestamp_us) else {
                self.table.advance(timestamp_us);
                return;
            };
            self.stats.reassembled += 1;
            let mut q = p;
            if let Err(e) = wire::decode_transport(&mut q, whole.proto, &whole.data, &self.decode) {
                *self.stats.decode_errors.entry(e.kind()).or_insert(0) += 1;
                return;
            }
            // Sizes as sent, even when the capture cut fragments short (snaplen).
            q.l4_len = q.l4_len.max(whole.datagram_len);
            // The datagram's L3 size is its payload plus the last fragment's IP header.
            q.l3_len = q.l4_len + p.l3_len.saturating_sub(p.l4_len);
            self.table.process(&q);
            return;
        }
        self.table.process(&p);
    }

    /// Moves time forward without a packet (live capture idle): expires flows and windows.
    pub fn idle(&mut self, now_us: u64) {
        self.defrag.expire(now_us);
        self.table.advance(now_us);
    }

    /// Ends the capture: reports every open flow and closes every metrics window.
    pub fn finish(&mut self) {
        self.defrag.expire(u64::MAX);
        self.table.flush_all();
    }

    pub fn drain_flows(&mut self) -> Vec<L4FlowLog> {
        self.table.drain_records().collect()
    }

    pub fn drain_metrics(&mut self) -> Vec<NetworkMetrics> {
        self.table.drain_metrics()
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    pub fn flow_stats(&self) -> FlowStats {
        self.table.stats()
    }

    pub fn defrag_stats(&self) -> crate::defrag::DefragStats {
        self.defrag.stats()
    }

    pub fn table(&self) -> &FlowTable<O> {
        &self.table
    }

    pub fn table_mut(&mut self) -> &mut FlowTable<O> {
        &mut self.table
    }

    pub fn budget(&self) -> &Arc<MemoryBudget> {
        self.table.budget()
    }
}
