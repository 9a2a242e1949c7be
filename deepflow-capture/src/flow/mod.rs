//! The flow table: one entry per bidirectional flow (5-tuple + tunnel), client/server
//! inference, timeouts, a hard size cap, TCP analysis and reassembly, and `l4_flow_log` rows.
//!
//! The table is single-threaded by design: parallel capture shards flows across workers by
//! [`FlowKey::shard_hash`], each worker owning its table outright.
//!
//! Payload goes to a [`FlowObserver`] (the L7 layer) in order, per direction, without copies;
//! the observer keeps its own per-flow state inside the flow entry.

mod metrics;
pub mod tcp;

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use deepflow_core::flow::{Direction, FlowInfo, FlowKey, KeyDirection, ip_proto};
use deepflow_core::packet::{L4, Packet, TcpInfo};
use deepflow_core::record::{CloseType, L4FlowLog, NetworkMetrics};

pub use metrics::{MetricsConfig, NetworkMeter};
pub use tcp::{Chunk, ReassemblyLimits, SegmentClass};

use crate::budget::MemoryBudget;
use tcp::TcpDir;

/// What the L7 layer implements to receive flow payload.
pub trait FlowObserver {
    /// Per-flow state kept inside the flow entry (keep it small when idle: flows cost bytes).
    type State: Default;
    /// In-order payload of one direction (TCP) or one datagram (UDP).
    fn on_payload(&mut self, st: &mut Self::State, flow: &FlowInfo, dir: Direction, ts_us: u64, data: &[u8]);
    /// `len` bytes of one direction were lost (capture loss, reassembly overflow, snaplen).
    fn on_gap(&mut self, st: &mut Self::State, flow: &FlowInfo, dir: Direction, ts_us: u64, len: u64);
    /// Called about once a second of packet time for each flow seen in that second.
    fn on_tick(&mut self, _st: &mut Self::State, _flow: &FlowInfo, _now_us: u64) {}
    /// The flow ends; `record` may be annotated (e.g. `l7_protocol`).
    fn on_close(&mut self, st: &mut Self::State, flow: &FlowInfo, ts_us: u64, record: &mut L4FlowLog);
}

/// An observer that ignores payload (L4 only).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoL7;

impl FlowObserver for NoL7 {
    type State = ();
    fn on_payload(&mut self, _: &mut (), _: &FlowInfo, _: Direction, _: u64, _: &[u8]) {}
    fn on_gap(&mut self, _: &mut (), _: &FlowInfo, _: Direction, _: u64, _: u64) {}
    fn on_close(&mut self, _: &mut (), _: &FlowInfo, _: u64, _: &mut L4FlowLog) {}
}

/// Flow table settings. Times in microseconds of packet time.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// Hard cap on live flows (in addition to the memory budget).
    pub max_flows: usize,
    /// TCP flow with a SYN but no completed handshake.
    pub opening_timeout_us: u64,
    /// TCP flow established (or joined mid-stream) and idle.
    pub established_timeout_us: u64,
    /// TCP flow with one FIN seen.
    pub closing_timeout_us: u64,
    /// TCP flow closed by FINs both ways or by RST: kept this long for stragglers.
    pub closed_timeout_us: u64,
    /// UDP, ICMP and other flows.
    pub other_timeout_us: u64,
    /// Deliver TCP/UDP payload to the observer.
    pub reassembly: bool,
    pub reassembly_limits: ReassemblyLimits,
    /// Per-second and per-minute network metrics.
    pub metrics: MetricsConfig,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 1 << 20,
            opening_timeout_us: 5_000_000,
            established_timeout_us: 300_000_000,
            closing_timeout_us: 35_000_000,
            closed_timeout_us: 2_000_000,
            other_timeout_us: 30_000_000,
            reassembly: true,
            reassembly_limits: ReassemblyLimits::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// Counters of what the table did and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub packets: u64,
    pub flows_created: u64,
    pub flows_closed: u64,
    pub flows_timed_out: u64,
    /// Flows reported early because the table was full or over the memory budget.
    pub flows_evicted: u64,
    /// Flows that could not be created at all (budget too small even after evicting).
    pub flows_refused: u64,
    pub port_reuse: u64,
    pub retransmissions: u64,
    pub out_of_order: u64,
    pub gap_bytes: u64,
    /// Out-of-order data thrown away under memory pressure.
    pub reassembly_discarded_bytes: u64,
    pub live_flows: u64,
    /// Packets that were not TCP/UDP/ICMP but were still counted in an "other" flow.
    pub other_protocol_packets: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Class {
    Opening = 0,
    Established = 1,
    Closing = 2,
    Closed = 3,
    Other = 4,
}
const CLASSES: usize = 5;
const NIL: u32 = u32::MAX;

#[derive(Debug, Default, Clone, Copy)]
struct DirCounters {
    packets: u64,
    bytes: u64,
    l3_bytes: u64,
    l4_bytes: u64,
}

/// Handshake, latency and close bookkeeping of a TCP flow (boxed: UDP flows don't pay for it).
#[derive(Debug, Default)]
struct TcpFlow {
    dirs: [TcpDir; 2],
    syn_time: u64,
    synack_time: u64,
    syn_count: u16,
    synack_count: u16,
    retrans_syn: u16,
    retrans_synack: u16,
    client_isn: u32,
    handshake_ack_seen: bool,
    established: bool,
    rtt_client: u32,
    rtt_server: u32,
    /// Handshake RTT at the capture point (SYN → final ACK), tshark's `ts_first_rtt`.
    first_rtt: u32,
    fin_count: u16,
    rst_count: u16,
    /// Who sent the first RST and whether it came during the handshake.
    rst_by: Option<Direction>,
    rst_in_handshake: bool,
    rst_before_synack: bool,
    fin_before_rst: bool,
    retrans: [u32; 2],
    ooo: [u32; 2],
    zero_win: [u32; 2],
    srt_sum: u64,
    srt_max: u32,
    srt_count: u32,
    /// Client data awaiting the server's ACK: sequence end and time (time 0: none).
    srt_pending_end: u32,
    srt_pending_time: u64,
    art_sum: u64,
    art_max: u32,
    art_count: u32,
    cit_sum: u64,
    cit_count: u32,
    /// Time of the last payload-carrying segment (0: none yet) and whether it was the client's.
    last_data_time: u64,
    last_data_c2s: bool,
}

struct Flow<S> {
    key: FlowKey,
    id: u64,
    /// The `lo` endpoint of the key is the client.
    client_is_lo: bool,
    /// Roles were set from a SYN (not guessed from ports).
    role_certain: bool,
    class: Class,
    vlan: u16,
    start_us: u64,
    last_us: u64,
    /// Second of the last metrics tick this flow took part in.
    tick_sec: u32,
    /// A new connection reused this 5-tuple while the flow was still live.
    port_reused: bool,
    prev: u32,
    next: u32,
    counters: [DirCounters; 2],
    /// Traffic not yet handed to the network meter: packets tx/rx, bytes tx/rx.
    unmetered: [u32; 4],
    tcp: Option<Box<TcpFlow>>,
    l7: S,
}

impl<S> Flow<S> {
    fn info(&self) -> FlowInfo {
        let (c_ip, c_port, s_ip, s_port) = if self.client_is_lo {
            (self.key.ip_lo, self.key.port_lo, self.key.ip_hi, self.key.port_hi)
        } else {
            (self.key.ip_hi, self.key.port_hi, self.key.ip_lo, self.key.port_lo)
        };
        FlowInfo {
            flow_id: self.id,
            protocol: self.key.protocol,
            client_ip: c_ip,
            server_ip: s_ip,
            client_port: c_port,
            server_port: s_port,
            tunnel: self.key.tunnel,
            start_time_us: self.start_us,
        }
    }

    fn dir_of(&self, kd: KeyDirection) -> Direction {
        if (kd == KeyDirection::LoToHi) == self.client_is_lo {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        }
    }

    fn swap_roles(&mut self) {
        self.client_is_lo = !self.client_is_lo;
        self.counters.swap(0, 1);
        self.unmetered.swap(0, 1);
        self.unmetered.swap(2, 3);
        if let Some(t) = self.tcp.as_mut() {
            t.dirs.swap(0, 1);
            t.retrans.swap(0, 1);
            t.ooo.swap(0, 1);
            t.zero_win.swap(0, 1);
        }
    }
}

/// Estimated bytes one flow entry costs (entry + hash slot), reserved from the budget.
fn flow_cost<S>(tcp: bool) -> usize {
    // slab entry + hash slot (u32 + control byte, at most 7/8 full) + boxed TCP state with
    // the allocator's header.
    std::mem::size_of::<Option<Flow<S>>>() + 6 + if tcp { std::mem::size_of::<TcpFlow>() + 16 } else { 0 }
}

/// The flow table. See the module docs.
pub struct FlowTable<O: FlowObserver> {
    cfg: FlowConfig,
    budget: Arc<MemoryBudget>,
    /// Indices into `slab`, hashed by the flow's key (the key itself lives only in the slab).
    map: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    slab: Vec<Option<Flow<O::State>>>,
    free: Vec<u32>,
    heads: [u32; CLASSES],
    tails: [u32; CLASSES],
    next_id: u64,
    now_us: u64,
    last_expire_us: u64,
    current_sec: u64,
    /// Flows seen in `current_sec`, for per-second metrics and L7 ticks.
    active: Vec<u32>,
    stats: FlowStats,
    observer: O,
    meter: NetworkMeter,
    out: Vec<L4FlowLog>,
}

/// Well-known server ports that decide roles when no SYN was seen and both ports are high.
const SERVER_PORTS: &[u16] = &[
    1080, 1433, 1521, 1883, 2181, 2379, 3000, 3306, 4222, 5000, 5432, 5672, 5683, 6379, 6650, 7000, 8000, 8008, 8080,
    8081, 8086, 8088, 8443, 8500, 8888, 9000, 9042, 9090, 9092, 9093, 9200, 9300, 9876, 10911, 11211, 15672, 18080,
    20416, 27017, 30033, 50051, 61616,
];

/// Guesses whether `a` (not `b`) is the server port when no SYN tells.
fn port_says_server(a: u16, b: u16) -> Option<bool> {
    let known = |p: u16| SERVER_PORTS.binary_search(&p).is_ok();
    match (known(a), known(b)) {
        (true, false) => return Some(true),
        (false, true) => return Some(false),
        _ => {}
    }
    if a < 1024 && b >= 1024 {
        return Some(true);
    }
    if b < 1024 && a >= 1024 {
        return Some(false);
    }
    // Linux's ephemeral range starts at 32768: the other side is the server.
    if a < 32768 && b >= 32768 {
        return Some(true);
    }
    if b < 32768 && a >= 32768 {
        return Some(false);
    }
    None
}

impl<O: FlowObserver> FlowTable<O> {
    pub fn new(cfg: FlowConfig, budget: Arc<MemoryBudget>, observer: O) -> Self {
        let meter = NetworkMeter::new(cfg.metrics.clone());
        FlowTable {
            cfg,
            budget,
            map: hashbrown::HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            slab: Vec::new(),
            free: Vec::new(),
            heads: [NIL; CLASSES],
            tails: [NIL; CLASSES],
            next_id: 1,
            now_us: 0,
            last_expire_us: 0,
            current_sec: 0,
            active: Vec::new(),
            stats: FlowStats::default(),
            observer,
            meter,
            out: Vec::new(),
        }
    }

    pub fn stats(&self) -> FlowStats {
        let mut s = self.stats.clone();
        s.live_flows = self.map.len() as u64;
        s
    }
    pub fn observer(&self) -> &O {
        &self.observer
    }
    pub fn observer_mut(&mut self) -> &mut O {
        &mut self.observer
    }
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Takes the `l4_flow_log` rows produced so far.
    pub fn drain_records(&mut self) -> std::vec::Drain<'_, L4FlowLog> {
        self.out.drain(..)
    }
    /// Takes the finished network metrics rows produced so far.
    pub fn drain_metrics(&mut self) -> Vec<NetworkMetrics> {
        self.meter.drain()
    }

    fn lookup(&self, key: &FlowKey) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        self.map.find(h, |&i| slab_key(&self.slab, i) == Some(key)).copied()
    }

    fn flow(&self, idx: u32) -> Option<&Flow<O::State>> {
        self.slab.get(idx as usize).and_then(|f| f.as_ref())
    }
    fn flow_mut(&mut self, idx: u32) -> Option<&mut Flow<O::State>> {
        self.slab.get_mut(idx as usize).and_then(|f| f.as_mut())
    }

    // ---- LRU lists, one per timeout class, most recent at the head ----
    fn unlink(&mut self, idx: u32) {
        let Some(f) = self.flow(idx) else { return };
        let (prev, next, class) = (f.prev, f.next, f.class as usize);
        match self.flow_mut(prev) {
            Some(p) => p.next = next,
            None => {
                if let Some(h) = self.heads.get_mut(class) {
                    *h = next;
                }
            }
        }
        match self.flow_mut(next) {
            Some(n) => n.prev = prev,
            None => {
                if let Some(t) = self.tails.get_mut(class) {
                    *t = prev;
                }
            }
        }
    }
    fn push_front(&mut self, idx: u32, class: Class) {
        let c = class as usize;
        let old_head = self.heads.get(c).copied().unwrap_or(NIL);
        if let Some(f) = self.flow_mut(idx) {
            f.class = class;
            f.prev = NIL;
            f.next = old_head;
        }
        match self.flow_mut(old_head) {
            Some(h) => h.prev = idx,
            None => {
                if let Some(t) = self.tails.get_mut(c) {
                    *t = idx;
                }
            }
        }
        if let Some(h) = self.heads.get_mut(c) {
            *h = idx;
        }
    }
    fn touch(&mut self, idx: u32, class: Class) {
        self.unlink(idx);
        self.push_front(idx, class);
    }

    fn timeout_of(&self, class: Class) -> u64 {
        match class {
            Class::Opening => self.cfg.opening_timeout_us,
            Class::Established => self.cfg.established_timeout_us,
            Class::Closing => self.cfg.closing_timeout_us,
            Class::Closed => self.cfg.closed_timeout_us,
            Class::Other => self.cfg.other_timeout_us,
        }
    }

    /// Processes one decoded packet (not a fragment: defragment first).
    pub fn process(&mut self, p: &Packet<'_>) {
        self.stats.packets += 1;
        let ts = p.timestamp_us.max(self.now_us);
        self.advance(ts);
        let (key, kd) = FlowKey::from_packet(p);
        let is_tcp = matches!(p.l4, L4::Tcp(_));
        let idx = match self.lookup(&key) {
            Some(i) => {
                if let L4::Tcp(t) = p.l4 {
                    if self.is_new_connection(i, kd, &t) {
                        self.stats.port_reuse += 1;
                        self.close_flow(i, None);
                        match self.create(key, kd, p, ts) {
                            Some(i) => i,
                            None => return,
                        }
                    } else {
                        i
                    }
                } else {
                    i
                }
            }
            None => match self.create(key, kd, p, ts) {
                Some(i) => i,
                None => return,
            },
        };
        if !is_tcp && !matches!(p.l4, L4::Udp { .. } | L4::Icmp { .. }) {
            self.stats.other_protocol_packets += 1;
        }
        self.update(idx, kd, p, ts);
    }

    /// A SYN on a 5-tuple still in the table starts a new connection when the old one is
    /// closed, or when it carries a different ISN (client port reuse).
    fn is_new_connection(&mut self, idx: u32, kd: KeyDirection, t: &TcpInfo) -> bool {
        if !t.flags.syn() || t.flags.ack() {
            return false;
        }
        let Some(f) = self.flow_mut(idx) else { return false };
        let dir = f.dir_of(kd);
        let Some(tcp) = f.tcp.as_ref() else { return false };
        if tcp.syn_count > 0 && tcp.client_isn == t.seq && dir == Direction::ClientToServer {
            return false; // a SYN retransmission
        }
        if matches!(f.class, Class::Closed | Class::Closing) || tcp.rst_count > 0 {
            return true;
        }
        if tcp.established || tcp.syn_count > 0 || !f.role_certain {
            // Reuse of a live 5-tuple: the old flow ends with "client port reuse".
            f.port_reused = true;
            return true;
        }
        false
    }

    fn create(&mut self, key: FlowKey, kd: KeyDirection, p: &Packet<'_>, ts: u64) -> Option<u32> {
        let is_tcp = matches!(p.l4, L4::Tcp(_));
        let cost = flow_cost::<O::State>(is_tcp);
        while self.map.len() >= self.cfg.max_flows || !self.budget.try_reserve(cost) {
            if !self.evict_oldest() {
                self.stats.flows_refused += 1;
                return None;
            }
        }
        // Roles: the SYN sender is the client; a SYN-ACK sender the server; else ports.
        let src_is_lo = kd == KeyDirection::LoToHi;
        let (sport, dport) = p.l4.ports();
        let (src_is_client, certain) = match p.l4 {
            L4::Tcp(t) if t.flags.syn() && !t.flags.ack() => (true, true),
            L4::Tcp(t) if t.flags.syn() && t.flags.ack() => (false, true),
            L4::Icmp { icmp_type, v6, .. } => {
                // Echo request (8 / 128) comes from the client.
                let reply = if v6 { icmp_type == 129 } else { icmp_type == 0 };
                (!reply, false)
            }
            _ => match port_says_server(sport, dport) {
                Some(src_is_server) => (!src_is_server, false),
                None => (true, false),
            },
        };
        let client_is_lo = src_is_client == src_is_lo;
        let class = if is_tcp {
            match p.l4 {
                L4::Tcp(t) if t.flags.syn() => Class::Opening,
                _ => Class::Established,
            }
        } else {
            Class::Other
        };
        let flow = Flow {
            key,
            id: self.next_id,
            client_is_lo,
            role_certain: certain,
            class,
            vlan: p.vlan.unwrap_or(0),
            start_us: ts,
            last_us: ts,
            tick_sec: u32::MAX,
            port_reused: false,
            prev: NIL,
            next: NIL,
            counters: Default::default(),
            unmetered: [0; 4],
            tcp: if is_tcp { Some(Box::default()) } else { None },
            l7: O::State::default(),
        };
        self.next_id += 1;
        let idx = match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.slab.get_mut(i as usize) {
                    *slot = Some(flow);
                }
                i
            }
            None => {
                self.slab.push(Some(flow));
                (self.slab.len() - 1) as u32
            }
        };
        let h = self.hasher.hash_one(key);
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.map.insert_unique(h, idx, |&i| slab_key(slab, i).map_or(0, |k| hasher.hash_one(k)));
        self.push_front(idx, class);
        self.stats.flows_created += 1;
        self.meter.flow_opened(&key_ips(self.flow(idx)), ts);
        Some(idx)
    }

    fn update(&mut self, idx: u32, kd: KeyDirection, p: &Packet<'_>, ts: u64) {
        let sec = (ts / 1_000_000) as u32;
        let cfg_reassembly = self.cfg.reassembly;
        let limits = self.cfg.reassembly_limits;
        let budget = self.budget.clone();
        let Some(f) = self.slab.get_mut(idx as usize).and_then(|f| f.as_mut()) else {
            return;
        };
        // Role correction: a SYN proves who the client is.
        if let L4::Tcp(t) = p.l4
            && t.flags.syn()
            && !f.role_certain
        {
            let dir = f.dir_of(kd);
            let sender_is_client = !t.flags.ack();
            if (dir == Direction::ClientToServer) != sender_is_client {
                f.swap_roles();
            }
            f.role_certain = true;
        }
        let dir = f.dir_of(kd);
        let d = dir.index();
        f.last_us = ts;
        if f.tick_sec != sec {
            f.tick_sec = sec;
            self.active.push(idx);
        }
        let l4_payload_len = match p.l4 {
            L4::Tcp(t) => p.l4_len.saturating_sub(u32::from(t.header_len)),
            L4::Udp { .. } => p.l4_len.saturating_sub(8),
            _ => 0,
        };
        if let Some(u) = f.unmetered.get_mut(d) {
            *u = u.saturating_add(1);
        }
        if let Some(u) = f.unmetered.get_mut(d + 2) {
            *u = u.saturating_add(p.wire_len);
        }
        if let Some(c) = f.counters.get_mut(d) {
            c.packets += 1;
            c.bytes += u64::from(p.wire_len);
            c.l3_bytes += u64::from(p.l4_len);
            c.l4_bytes += u64::from(l4_payload_len);
        }
        let info = f.info();
        let mut new_class = f.class;
        match p.l4 {
            L4::Tcp(t) => {
                let Some(tcp) = f.tcp.as_mut() else { return };
                new_class = tcp_update(tcp, dir, &t, l4_payload_len, ts, &mut self.stats, &mut self.meter, &info);
                if cfg_reassembly && (l4_payload_len > 0 || t.flags.syn() || t.flags.ack()) {
                    let observer = &mut self.observer;
                    let l7 = &mut f.l7;
                    let (this, other) = split_dirs(&mut tcp.dirs, d);
                    let mut gap_total = 0u64;
                    let mut emit = |c: Chunk<'_>| match c {
                        Chunk::Data(data) => observer.on_payload(l7, &info, dir, ts, data),
                        Chunk::Gap(n) => {
                            gap_total += n;
                            observer.on_gap(l7, &info, dir, ts, n)
                        }
                    };
                    this.reassemble(t.seq, t.flags.syn(), p.payload, l4_payload_len, &limits, &budget, &mut emit);
                    // Our ACK tells what the other direction really sent.
                    if t.flags.ack() {
                        let mut emit_rev = |c: Chunk<'_>| match c {
                            Chunk::Data(data) => observer.on_payload(l7, &info, dir.reverse(), ts, data),
                            Chunk::Gap(n) => {
                                gap_total += n;
                                observer.on_gap(l7, &info, dir.reverse(), ts, n)
                            }
                        };
                        other.on_peer_ack(t.ack, &budget, &mut emit_rev);
                    }
                    self.stats.gap_bytes += gap_total;
                }
            }
            L4::Udp { .. } if cfg_reassembly && !p.payload.is_empty() => {
                self.observer.on_payload(&mut f.l7, &info, dir, ts, p.payload);
                if (p.payload.len() as u32) < l4_payload_len {
                    self.observer.on_gap(&mut f.l7, &info, dir, ts, u64::from(l4_payload_len) - p.payload.len() as u64);
                }
            }
            _ => {}
        }
        self.touch(idx, new_class);
    }

    /// Moves packet time forward: closes the metrics second, ticks observers, expires flows.
    pub fn advance(&mut self, now_us: u64) {
        if now_us < self.now_us {
            return;
        }
        self.now_us = now_us;
        let sec = now_us / 1_000_000;
        if sec != self.current_sec {
            self.end_second(sec);
        }
        if now_us.saturating_sub(self.last_expire_us) >= 100_000 {
            self.last_expire_us = now_us;
            self.expire(now_us);
        }
    }

    /// Per-second work: meter the flows active in the second that ended, tick their L7 state.
    fn end_second(&mut self, new_sec: u64) {
        let prev_sec = self.current_sec;
        self.current_sec = new_sec;
        let active = std::mem::take(&mut self.active);
        for &idx in &active {
            let now = self.now_us;
            let Some(f) = self.slab.get_mut(idx as usize).and_then(|f| f.as_mut()) else {
                continue;
            };
            meter_flow(&mut self.meter, f, prev_sec);
            let info = f.info();
            self.observer.on_tick(&mut f.l7, &info, now);
        }
        let mut active = active;
        active.clear();
        self.active = active;
        self.meter.close_before(new_sec);
    }

    /// Expires flows idle past their class timeout.
    pub fn expire(&mut self, now_us: u64) {
        for class in [Class::Closed, Class::Opening, Class::Closing, Class::Other, Class::Established] {
            let timeout = self.timeout_of(class);
            loop {
                let tail = self.tails.get(class as usize).copied().unwrap_or(NIL);
                let Some(f) = self.flow(tail) else { break };
                if f.last_us.saturating_add(timeout) > now_us {
                    break;
                }
                if class != Class::Closed {
                    self.stats.flows_timed_out += 1;
                }
                self.close_flow(tail, None);
            }
        }
    }

    /// Reports every flow still open (end of a capture file, or shutdown).
    pub fn flush_all(&mut self) {
        for class in [Class::Closed, Class::Opening, Class::Closing, Class::Other, Class::Established] {
            loop {
                let tail = self.tails.get(class as usize).copied().unwrap_or(NIL);
                if self.flow(tail).is_none() {
                    break;
                }
                // Handshakes and half closes that never finished are reported as what they
                // are; flows still established when the capture ends are force-reported.
                let forced = match class {
                    Class::Closed | Class::Opening | Class::Closing => None,
                    Class::Other => Some(CloseType::Timeout),
                    Class::Established => Some(CloseType::ForcedReport),
                };
                self.close_flow(tail, forced);
            }
        }
        let now = self.now_us;
        self.end_second(now / 1_000_000 + 1);
        self.meter.close_before(u64::MAX);
    }

    /// Evicts the least recently seen flow across all classes. False if the table is empty.
    fn evict_oldest(&mut self) -> bool {
        let mut best: Option<(u64, u32)> = None;
        for &t in &self.tails {
            if let Some(f) = self.flow(t)
                && best.is_none_or(|(ts, _)| f.last_us < ts)
            {
                best = Some((f.last_us, t));
            }
        }
        let Some((_, idx)) = best else { return false };
        self.stats.flows_evicted += 1;
        self.close_flow(idx, Some(CloseType::ForcedReport));
        true
    }

    /// Frees memory under pressure from another component: drops out-of-order data first,
    /// then evicts the oldest flows. Returns bytes freed.
    pub fn shed(&mut self, want: usize) -> usize {
        let mut freed = 0;
        for f in self.slab.iter_mut().flatten() {
            if freed >= want {
                return freed;
            }
            if let Some(t) = f.tcp.as_mut() {
                for d in t.dirs.iter_mut() {
                    let n = d.discard_held(&self.budget);
                    self.stats.reassembly_discarded_bytes += n as u64;
                    freed += n;
                }
            }
        }
        while freed < want {
            let before = self.budget.used();
            if !self.evict_oldest() {
                break;
            }
            freed += before.saturating_sub(self.budget.used());
        }
        freed
    }

    fn close_flow(&mut self, idx: u32, forced: Option<CloseType>) {
        self.unlink(idx);
        let Some(mut f) = self.slab.get_mut(idx as usize).and_then(|s| s.take()) else {
            return;
        };
        self.free.push(idx);
        let h = self.hasher.hash_one(f.key);
        if let Ok(e) = self.map.find_entry(h, |&i| i == idx) {
            e.remove();
        }
        let budget = self.budget.clone();
        let info = f.info();
        let ts = f.last_us;
        // Deliver whatever reassembly still holds, with gaps for its holes.
        if let Some(tcp) = f.tcp.as_mut() {
            for (d, dir) in [(0usize, Direction::ClientToServer), (1, Direction::ServerToClient)] {
                let observer = &mut self.observer;
                let l7 = &mut f.l7;
                if let Some(td) = tcp.dirs.get_mut(d) {
                    td.flush(&budget, &mut |c| match c {
                        Chunk::Data(data) => observer.on_payload(l7, &info, dir, ts, data),
                        Chunk::Gap(n) => observer.on_gap(l7, &info, dir, ts, n),
                    });
                }
            }
        }
        let port_reuse = f.port_reused;
        let close_type = forced.unwrap_or_else(|| close_type(&f, port_reuse));
        meter_flow(&mut self.meter, &mut f, ts / 1_000_000);
        self.meter.flow_closed(&key_ips(Some(&f)), ts, close_type);
        let mut rec = build_record(&f, close_type);
        self.observer.on_close(&mut f.l7, &info, ts, &mut rec);
        self.stats.flows_closed += 1;
        budget.release(flow_cost::<O::State>(f.tcp.is_some()));
        self.out.push(rec);
    }
}

fn slab_key<S>(slab: &[Option<Flow<S>>], i: u32) -> Option<&FlowKey> {
    slab.get(i as usize).and_then(|f| f.as_ref()).map(|f| &f.key)
}

/// (client ip, server ip, server port, protocol) of a flow, for the meter.
fn key_ips<S>(f: Option<&Flow<S>>) -> metrics::MeterKey {
    match f {
        Some(f) => {
            let i = f.info();
            metrics::MeterKey { ip_0: i.client_ip, ip_1: i.server_ip, server_port: i.server_port, protocol: i.protocol }
        }
        None => metrics::MeterKey {
            ip_0: IpAddr::from([0u8; 4]),
            ip_1: IpAddr::from([0u8; 4]),
            server_port: 0,
            protocol: 0,
        },
    }
}

fn meter_flow<S>(meter: &mut NetworkMeter, f: &mut Flow<S>, sec: u64) {
    let key = key_ips(Some(&*f));
    let [ptx, prx, btx, brx] = std::mem::take(&mut f.unmetered);
    if ptx == 0 && prx == 0 {
        return;
    }
    meter.add_traffic(&key, sec, ptx.into(), prx.into(), btx.into(), brx.into());
}

/// Microseconds as u32, saturating (71 minutes).
fn us32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn split_dirs(dirs: &mut [TcpDir; 2], d: usize) -> (&mut TcpDir, &mut TcpDir) {
    let [a, b] = dirs;
    if d == 0 { (a, b) } else { (b, a) }
}

/// TCP per-packet bookkeeping: handshake, sequence analysis, latencies, flags. Returns the
/// flow's new timeout class.
#[allow(clippy::too_many_arguments)]
fn tcp_update(
    tcp: &mut TcpFlow,
    dir: Direction,
    t: &TcpInfo,
    seglen: u32,
    ts: u64,
    stats: &mut FlowStats,
    meter: &mut NetworkMeter,
    info: &FlowInfo,
) -> Class {
    let d = dir.index();
    let flags = t.flags;
    let key = metrics::MeterKey {
        ip_0: info.client_ip,
        ip_1: info.server_ip,
        server_port: info.server_port,
        protocol: info.protocol,
    };
    // Sequence analysis against tshark's rules.
    let class = {
        let (this, rev) = split_dirs(&mut tcp.dirs, d);
        let c = this.classify(
            rev,
            t.seq,
            seglen,
            flags.syn() || flags.fin(),
            flags.rst(),
            ts,
            (tcp.first_rtt > 0).then_some(u64::from(tcp.first_rtt)),
        );
        this.update_after(t.seq, seglen, flags.syn(), flags.fin(), flags.ack().then_some(t.ack), t.window, ts);
        if flags.syn() {
            this.syn_seen = true;
            if let Some(ws) = t.options.window_scale {
                this.window_scale = Some(ws);
            }
        }
        if flags.fin() && !this.fin_seen {
            this.fin_seen = true;
            this.fin_seq = t.seq.wrapping_add(seglen);
        }
        if flags.rst() {
            this.rst_seen = true;
        }
        c
    };
    match class {
        SegmentClass::Retransmission | SegmentClass::SpuriousRetransmission => {
            if let Some(r) = tcp.retrans.get_mut(d) {
                *r += 1;
            }
            stats.retransmissions += 1;
            meter.add_retrans(&key, ts / 1_000_000, d);
        }
        SegmentClass::OutOfOrder => {
            if let Some(r) = tcp.ooo.get_mut(d) {
                *r += 1;
            }
            stats.out_of_order += 1;
        }
        _ => {}
    }
    if t.window == 0 && !flags.syn() && !flags.fin() && !flags.rst() {
        if let Some(z) = tcp.zero_win.get_mut(d) {
            *z += 1;
        }
        meter.add_zero_win(&key, ts / 1_000_000, d);
    }
    // Handshake.
    if flags.syn() && !flags.ack() {
        if tcp.syn_count > 0 {
            tcp.retrans_syn = tcp.retrans_syn.saturating_add(1);
        } else {
            tcp.client_isn = t.seq;
        }
        tcp.syn_count = tcp.syn_count.saturating_add(1);
        tcp.syn_time = ts;
    } else if flags.syn() && flags.ack() {
        if tcp.synack_count > 0 {
            tcp.retrans_synack = tcp.retrans_synack.saturating_add(1);
        }
        tcp.synack_count = tcp.synack_count.saturating_add(1);
        if tcp.synack_count == 1 && tcp.syn_count > 0 {
            tcp.rtt_server = us32(ts.saturating_sub(tcp.syn_time));
        }
        tcp.synack_time = ts;
    } else if flags.ack()
        && dir == Direction::ClientToServer
        && tcp.synack_count > 0
        && !tcp.handshake_ack_seen
        && !flags.rst()
    {
        tcp.handshake_ack_seen = true;
        tcp.established = true;
        tcp.rtt_client = us32(ts.saturating_sub(tcp.synack_time));
        if tcp.syn_count > 0 {
            tcp.first_rtt = us32(ts.saturating_sub(tcp.syn_time));
            meter.add_rtt(&key, ts / 1_000_000, u64::from(tcp.rtt_client) + u64::from(tcp.rtt_server));
        }
    } else if !tcp.established && tcp.syn_count == 0 && tcp.synack_count == 0 && !flags.rst() {
        tcp.established = true; // joined mid-stream
    }
    if flags.fin() {
        tcp.fin_count = tcp.fin_count.saturating_add(1);
    }
    if flags.rst() {
        if tcp.rst_count == 0 {
            tcp.rst_by = Some(dir);
            tcp.rst_in_handshake = !tcp.established;
            tcp.rst_before_synack = tcp.synack_count == 0;
            tcp.fin_before_rst = tcp.dirs.iter().any(|x| x.fin_seen);
        }
        tcp.rst_count = tcp.rst_count.saturating_add(1);
    }
    // Latencies from payload-carrying segments.
    if seglen > 0 && !matches!(class, SegmentClass::Retransmission | SegmentClass::SpuriousRetransmission) {
        let last = (tcp.last_data_time > 0).then_some((tcp.last_data_c2s, tcp.last_data_time));
        match (dir, last) {
            (Direction::ServerToClient, Some((true, t0))) => {
                let art = ts.saturating_sub(t0);
                tcp.art_sum += art;
                tcp.art_max = tcp.art_max.max(us32(art));
                tcp.art_count += 1;
                meter.add_art(&key, ts / 1_000_000, art);
            }
            (Direction::ClientToServer, Some((false, t0))) => {
                tcp.cit_sum += ts.saturating_sub(t0);
                tcp.cit_count += 1;
            }
            _ => {}
        }
        tcp.last_data_time = ts;
        tcp.last_data_c2s = dir == Direction::ClientToServer;
        if dir == Direction::ClientToServer && tcp.srt_pending_time == 0 {
            tcp.srt_pending_end = t.seq.wrapping_add(seglen);
            tcp.srt_pending_time = ts;
        }
    }
    if dir == Direction::ServerToClient && flags.ack() && tcp.srt_pending_time > 0 {
        let (end, t0) = (tcp.srt_pending_end, tcp.srt_pending_time);
        if tcp::seq_le(end, t.ack) {
            let srt = ts.saturating_sub(t0);
            tcp.srt_sum += srt;
            tcp.srt_max = tcp.srt_max.max(us32(srt));
            tcp.srt_count += 1;
            tcp.srt_pending_time = 0;
            meter.add_srt(&key, ts / 1_000_000, srt);
        }
    }
    // Timeout class.
    let fins = tcp.dirs.iter().filter(|x| x.fin_seen).count();
    if tcp.rst_count > 0 || fins == 2 {
        Class::Closed
    } else if fins == 1 {
        Class::Closing
    } else if tcp.established {
        Class::Established
    } else {
        Class::Opening
    }
}

/// DeepFlow's close type from what the flow saw.
fn close_type<S>(f: &Flow<S>, port_reuse: bool) -> CloseType {
    if port_reuse {
        return CloseType::ClientSourcePortReuse;
    }
    let Some(tcp) = f.tcp.as_ref() else {
        return CloseType::Timeout;
    };
    let [c, s] = &tcp.dirs;
    if tcp.rst_count > 0 {
        let by_client = tcp.rst_by == Some(Direction::ClientToServer);
        if tcp.rst_in_handshake {
            if !by_client && tcp.rst_before_synack {
                return CloseType::ServerReset;
            }
            return if by_client { CloseType::ClientEstablishReset } else { CloseType::ServerEstablishReset };
        }
        if by_client {
            return if tcp.fin_before_rst { CloseType::TcpFinClientRst } else { CloseType::TcpClientRst };
        }
        return CloseType::TcpServerRst;
    }
    if c.fin_seen && s.fin_seen {
        return CloseType::TcpFin;
    }
    if tcp.syn_count > 0 && tcp.synack_count == 0 {
        return CloseType::ServerSynMiss;
    }
    if tcp.synack_count > 0 && !tcp.handshake_ack_seen {
        return CloseType::ClientSynAckMiss;
    }
    if tcp.retrans_synack > 0
        && tcp.handshake_ack_seen
        && tcp.dirs.iter().all(|d| !d.fin_seen)
        && f.counters[1].l4_bytes == 0
    {
        return CloseType::ServerQueueLack;
    }
    if c.fin_seen {
        return CloseType::ClientHalfClose;
    }
    if s.fin_seen {
        return CloseType::ServerHalfClose;
    }
    CloseType::Timeout
}

fn build_record<S>(f: &Flow<S>, close: CloseType) -> L4FlowLog {
    let info = f.info();
    let [tx, rx] = f.counters;
    let mut r = L4FlowLog {
        flow_id: f.id,
        start_time: f.start_us,
        end_time: f.last_us,
        duration: f.last_us.saturating_sub(f.start_us),
        ip_0: Some(info.client_ip),
        ip_1: Some(info.server_ip),
        client_port: info.client_port,
        server_port: info.server_port,
        protocol: ip_proto::name(info.protocol),
        tunnel_type: f.key.tunnel.kind.as_str(),
        tunnel_id: f.key.tunnel.id,
        vlan: f.vlan,
        packet_tx: tx.packets,
        packet_rx: rx.packets,
        byte_tx: tx.bytes,
        byte_rx: rx.bytes,
        l3_byte_tx: tx.l3_bytes,
        l3_byte_rx: rx.l3_bytes,
        l4_byte_tx: tx.l4_bytes,
        l4_byte_rx: rx.l4_bytes,
        close_type: close,
        close_type_name: close.name(),
        ..Default::default()
    };
    if let Some(t) = f.tcp.as_ref() {
        r.is_new_flow = t.syn_count > 0;
        if t.handshake_ack_seen && t.syn_count > 0 {
            r.rtt_client = u64::from(t.rtt_client);
            r.rtt_server = u64::from(t.rtt_server);
            r.rtt = r.rtt_client + r.rtt_server;
        }
        r.srt = t.srt_sum.checked_div(u64::from(t.srt_count)).unwrap_or(0);
        r.srt_max = u64::from(t.srt_max);
        r.srt_count = t.srt_count;
        r.art = t.art_sum.checked_div(u64::from(t.art_count)).unwrap_or(0);
        r.art_max = u64::from(t.art_max);
        r.art_count = t.art_count;
        r.cit = t.cit_sum.checked_div(u64::from(t.cit_count)).unwrap_or(0);
        r.cit_count = t.cit_count;
        r.retrans_tx = t.retrans[0];
        r.retrans_rx = t.retrans[1];
        r.ooo_tx = t.ooo[0];
        r.ooo_rx = t.ooo[1];
        r.zero_win_tx = t.zero_win[0];
        r.zero_win_rx = t.zero_win[1];
        r.syn_count = u32::from(t.syn_count);
        r.synack_count = u32::from(t.synack_count);
        r.retrans_syn = u32::from(t.retrans_syn);
        r.retrans_synack = u32::from(t.retrans_synack);
        r.fin_count = u32::from(t.fin_count);
        r.rst_count = u32::from(t.rst_count);
        r.gap_tx = t.dirs[0].gap_bytes;
        r.gap_rx = t.dirs[1].gap_bytes;
    }
    r
}

#[cfg(test)]
mod tests;
