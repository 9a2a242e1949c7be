//! Socket events -> per-socket byte streams for a [`FlowObserver`] (the L7 engine).
//!
//! Every traced socket of every process becomes one flow (`FlowInfo`, a fresh `flow_id`):
//! DATA events are fed in ring-buffer order as in-order payload of the direction they carry
//! (egress of a client socket is client-to-server, and so on). A payload cut to the capture
//! cap is followed by an `on_gap` of the missing bytes; a hole in the per-socket sequence
//! (events lost to a full ring buffer) is reported as a gap on both directions; a CLOSE event
//! ends the flow. Both ends of a connection on the same host give two flows, one seen from
//! the client process (`tap_side = c-p`) and one from the server process (`s-p`), as in
//! DeepFlow.
//!
//! The role (client or server) comes from the connect/accept the tracer saw; for sockets that
//! existed before the tracer started it is guessed from the ports (the lower port, or the
//! non-ephemeral one, is the server).
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use deepflow_core::record::{L4FlowLog, L7FlowLog};
use deepflow_core::{Direction, FlowInfo};

use super::Clock;
use super::shared::{self, DfSocketEvent, comm_str, event_type};
use crate::flow::FlowObserver;

/// The process that owns one side of a traced socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process id (tgid).
    pub pid: u32,
    /// Thread that last used the socket.
    pub tid: u32,
    /// Kernel name of the process (`comm`, at most 15 bytes).
    pub comm: String,
    /// True when the process is the client side of the connection.
    pub is_client: bool,
}

/// Counters of the stream assembly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCounters {
    /// Events handled.
    pub events: u64,
    /// DATA events.
    pub data_events: u64,
    /// Payload bytes fed to the observer.
    pub bytes: u64,
    /// Bytes not captured (payload cut to the cap), reported as gaps.
    pub truncated_bytes: u64,
    /// Holes in per-socket sequences (events lost before reaching user space).
    pub seq_gaps: u64,
    /// Sockets opened / closed (by close, replacement, idle timeout or the socket cap).
    pub sockets_opened: u64,
    /// Sockets ended.
    pub sockets_closed: u64,
    /// Records that were not understood (bad family, short record).
    pub bad_events: u64,
}

struct Entry<S> {
    flow: FlowInfo,
    proc_: ProcessInfo,
    local_is_client: bool,
    last_seq: u64,
    last_us: u64,
    st: S,
}

/// Assembles socket events into per-socket streams for an observer `O`.
pub struct SocketStreams<O: FlowObserver> {
    observer: O,
    socks: HashMap<u64, Entry<O::State>>,
    procs: HashMap<u64, ProcessInfo>,
    /// Per flow: (time fed, direction, syscall trace id) of recent DATA events.
    traces: HashMap<u64, VecDeque<(u64, Direction, u64)>>,
    closed: Vec<u64>,
    next_flow_id: u64,
    clock: Clock,
    max_sockets: usize,
    idle_us: u64,
    counters: StreamCounters,
}

impl<O: FlowObserver> SocketStreams<O> {
    /// Streams for `observer`; `clock` converts kernel timestamps to epoch time.
    pub fn new(observer: O, clock: Clock) -> Self {
        SocketStreams {
            observer,
            socks: HashMap::new(),
            procs: HashMap::new(),
            traces: HashMap::new(),
            closed: Vec::new(),
            next_flow_id: 1,
            clock,
            max_sockets: 65_536,
            idle_us: 300_000_000,
            counters: StreamCounters::default(),
        }
    }

    /// The observer (e.g. to drain its rows).
    pub fn observer_mut(&mut self) -> &mut O {
        &mut self.observer
    }

    /// The observer.
    pub fn observer(&self) -> &O {
        &self.observer
    }

    /// Counters.
    pub fn counters(&self) -> &StreamCounters {
        &self.counters
    }

    /// Sockets currently followed.
    pub fn sockets(&self) -> usize {
        self.socks.len()
    }

    /// The process of flow `flow_id` (while the flow lives, and until the next
    /// [`Self::annotate`] after it ended).
    pub fn process_of(&self, flow_id: u64) -> Option<&ProcessInfo> {
        self.procs.get(&flow_id)
    }

    /// Handles one event (header and captured payload).
    pub fn on_event(&mut self, ev: &DfSocketEvent, data: &[u8]) {
        self.counters.events += 1;
        let Some((local, remote)) = addrs(ev) else {
            self.counters.bad_events += 1;
            return;
        };
        let ts_us = if ev.direction == shared::DIR_EGRESS && ev.event_type == event_type::DATA {
            self.clock.to_epoch_us(ev.enter_ts_ns)
        } else {
            self.clock.to_epoch_us(ev.ts_ns)
        };
        // TLS plaintext (OpenSSL uprobes) is a stream of its own next to the ciphertext.
        let key = stream_key(ev.sock_id, ev.source);
        if ev.event_type == event_type::CLOSE {
            self.close(stream_key(ev.sock_id, shared::SRC_OPENSSL), ts_us);
        }
        // A new socket at a reused address, or a socket we have not seen.
        let same = self.socks.get(&key).is_some_and(|e| {
            let (l, r) = if e.local_is_client {
                ((e.flow.client_ip, e.flow.client_port), (e.flow.server_ip, e.flow.server_port))
            } else {
                ((e.flow.server_ip, e.flow.server_port), (e.flow.client_ip, e.flow.client_port))
            };
            l == local && r == remote && e.flow.protocol == ev.tuple.l4_proto
        });
        if !same {
            if self.socks.contains_key(&key) {
                self.close(key, ts_us);
            }
            if ev.event_type == event_type::CLOSE {
                return;
            }
            if self.socks.len() >= self.max_sockets {
                self.evict_oldest(ts_us);
            }
            self.open(key, ev, local, remote, ts_us);
        }
        let Some(e) = self.socks.get_mut(&key) else { return };
        e.last_us = ts_us;
        e.proc_.tid = ev.tid;
        if e.proc_.pid != ev.pid {
            e.proc_.pid = ev.pid;
            e.proc_.comm = comm_str(&ev.comm);
            self.procs.insert(e.flow.flow_id, e.proc_.clone());
        }
        match ev.event_type {
            event_type::DATA => {
                self.counters.data_events += 1;
                let dir = match (ev.direction == shared::DIR_EGRESS, e.local_is_client) {
                    (true, true) | (false, false) => Direction::ClientToServer,
                    _ => Direction::ServerToClient,
                };
                if e.last_seq != 0 && ev.seq > e.last_seq + 1 {
                    self.counters.seq_gaps += 1;
                    for d in [Direction::ClientToServer, Direction::ServerToClient] {
                        self.observer.on_gap(&mut e.st, &e.flow, d, ts_us, 0);
                    }
                }
                if ev.seq != 0 {
                    e.last_seq = ev.seq;
                }
                if ev.syscall_trace_id != 0 {
                    let q = self.traces.entry(e.flow.flow_id).or_default();
                    if q.len() >= MAX_TRACES_PER_FLOW {
                        q.pop_front();
                    }
                    q.push_back((ts_us, dir, ev.syscall_trace_id));
                }
                self.counters.bytes += data.len() as u64;
                self.observer.on_payload(&mut e.st, &e.flow, dir, ts_us, data);
                let total = u64::try_from(ev.ret).unwrap_or(0);
                let missing = total.saturating_sub(data.len() as u64);
                if missing > 0 {
                    self.counters.truncated_bytes += missing;
                    self.observer.on_gap(&mut e.st, &e.flow, dir, ts_us, missing);
                }
            }
            event_type::CLOSE => self.close(key, ts_us),
            _ => {}
        }
    }

    fn open(&mut self, key: u64, ev: &DfSocketEvent, local: (IpAddr, u16), remote: (IpAddr, u16), ts_us: u64) {
        let local_is_client = match ev.role {
            shared::ROLE_CLIENT => true,
            shared::ROLE_SERVER => false,
            _ => guess_client(local.1, remote.1),
        };
        let (client, server) = if local_is_client { (local, remote) } else { (remote, local) };
        let flow = FlowInfo {
            flow_id: self.next_flow_id,
            protocol: ev.tuple.l4_proto,
            client_ip: client.0,
            server_ip: server.0,
            client_port: client.1,
            server_port: server.1,
            tunnel: Default::default(),
            start_time_us: ts_us,
        };
        self.next_flow_id += 1;
        let proc_ = ProcessInfo { pid: ev.pid, tid: ev.tid, comm: comm_str(&ev.comm), is_client: local_is_client };
        self.procs.insert(flow.flow_id, proc_.clone());
        self.counters.sockets_opened += 1;
        self.socks
            .insert(key, Entry { flow, proc_, local_is_client, last_seq: 0, last_us: ts_us, st: O::State::default() });
    }

    fn close(&mut self, sock_id: u64, ts_us: u64) {
        if let Some(mut e) = self.socks.remove(&sock_id) {
            let mut rec = L4FlowLog::default();
            self.observer.on_close(&mut e.st, &e.flow, ts_us, &mut rec);
            self.closed.push(e.flow.flow_id);
            self.counters.sockets_closed += 1;
        }
    }

    fn evict_oldest(&mut self, ts_us: u64) {
        if let Some(id) = self.socks.iter().min_by_key(|(_, e)| e.last_us).map(|(k, _)| *k) {
            self.close(id, ts_us);
        }
    }

    /// Time passes (`now_us`, epoch): the observer expires unanswered requests, sockets idle
    /// for 5 minutes are ended.
    pub fn tick(&mut self, now_us: u64) {
        let mut idle = Vec::new();
        for (k, e) in self.socks.iter_mut() {
            self.observer.on_tick(&mut e.st, &e.flow, now_us);
            if now_us.saturating_sub(e.last_us) > self.idle_us {
                idle.push(*k);
            }
        }
        for k in idle {
            self.close(k, now_us);
        }
    }

    /// Ends every socket (flushes pending requests as timeouts).
    pub fn finish(&mut self, now_us: u64) {
        let ids: Vec<u64> = self.socks.keys().copied().collect();
        for k in ids {
            self.close(k, now_us);
        }
    }

    /// Marks rows produced from these streams as eBPF rows of their process:
    /// `signal_source = ebpf`, `tap_side = c-p` / `s-p`, `process_id_0` / `process_kname_0`
    /// on the client side or `process_id_1` / `process_kname_1` on the server side. Forgets
    /// the processes of flows that ended before this call.
    pub fn annotate(&mut self, rows: &mut [L7FlowLog]) {
        for r in rows.iter_mut() {
            let Some(p) = self.procs.get(&r.flow_id) else { continue };
            r.signal_source = "ebpf";
            if let Some(q) = self.traces.get(&r.flow_id) {
                let find = |ts: u64, d: Direction| q.iter().rev().find(|(t, dd, _)| *t == ts && *dd == d).map(|x| x.2);
                r.syscall_trace_id_request = find(r.start_time, Direction::ClientToServer);
                r.syscall_trace_id_response = find(r.end_time, Direction::ServerToClient);
            }
            if p.is_client {
                r.tap_side = "c-p";
                r.process_id_0 = Some(p.pid);
                r.process_kname_0 = Some(p.comm.clone());
            } else {
                r.tap_side = "s-p";
                r.process_id_1 = Some(p.pid);
                r.process_kname_1 = Some(p.comm.clone());
            }
        }
        for id in self.closed.drain(..) {
            self.procs.remove(&id);
            self.traces.remove(&id);
        }
    }
}

/// The stream of a socket: the kernel `sock` address, low bit set for TLS plaintext (the
/// address is aligned, as the BPF side assumes for its sequence numbers).
fn stream_key(sock_id: u64, source: u8) -> u64 {
    if source == shared::SRC_OPENSSL { sock_id ^ 1 } else { sock_id }
}

/// DATA events remembered per flow to find the syscall trace ids of its rows.
const MAX_TRACES_PER_FLOW: usize = 256;

fn guess_client(local_port: u16, remote_port: u16) -> bool {
    const EPHEMERAL: u16 = 32768;
    match (local_port >= EPHEMERAL, remote_port >= EPHEMERAL) {
        (true, false) => true,
        (false, true) => false,
        _ => local_port > remote_port,
    }
}

fn addrs(ev: &DfSocketEvent) -> Option<((IpAddr, u16), (IpAddr, u16))> {
    let t = &ev.tuple;
    let ip = |b: &[u8; 16]| -> Option<IpAddr> {
        match t.family {
            2 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            10 => {
                let v6 = Ipv6Addr::from(*b);
                Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
            }
            _ => None,
        }
    };
    Some(((ip(&t.saddr)?, t.sport), (ip(&t.daddr)?, t.dport)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf::shared::{DfSockTuple, ROLE_CLIENT, ROLE_SERVER, syscall};

    #[derive(Default)]
    struct Rec {
        calls: Vec<String>,
    }
    impl FlowObserver for Rec {
        type State = ();
        fn on_payload(&mut self, _: &mut (), f: &FlowInfo, d: Direction, _: u64, data: &[u8]) {
            self.calls.push(format!("{} {:?} {}", f.flow_id, d, String::from_utf8_lossy(data)));
        }
        fn on_gap(&mut self, _: &mut (), f: &FlowInfo, d: Direction, _: u64, len: u64) {
            self.calls.push(format!("{} gap {:?} {len}", f.flow_id, d));
        }
        fn on_close(&mut self, _: &mut (), f: &FlowInfo, _: u64, _: &mut L4FlowLog) {
            self.calls.push(format!(
                "{} close {}:{}->{}:{}",
                f.flow_id, f.client_ip, f.client_port, f.server_ip, f.server_port
            ));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ev(sock: u64, seq: u64, ty: u8, dir: u8, role: u8, sport: u16, dport: u16, ret: i64) -> DfSocketEvent {
        let mut t = DfSockTuple { family: 2, l4_proto: 6, sport, dport, ..Default::default() };
        t.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        t.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        DfSocketEvent {
            sock_id: sock,
            seq,
            event_type: ty,
            direction: dir,
            role,
            ret,
            pid: 10,
            tid: 11,
            syscall: syscall::WRITE,
            comm,
            tuple: t,
            ..Default::default()
        }
    }

    #[test]
    fn directions_gaps_truncation_and_close() {
        let mut s = SocketStreams::new(Rec::default(), Clock::now());
        // client socket (local 40000 -> 80) and server socket (local 80, peer 40000)
        s.on_event(&ev(1, 0, event_type::CONNECT, 0, ROLE_CLIENT, 40000, 80, 0), b"");
        s.on_event(&ev(1, 1, event_type::DATA, shared::DIR_EGRESS, ROLE_CLIENT, 40000, 80, 5), b"GET /");
        s.on_event(&ev(2, 1, event_type::DATA, shared::DIR_INGRESS, ROLE_SERVER, 80, 40000, 8), b"GET /");
        s.on_event(&ev(1, 3, event_type::DATA, shared::DIR_INGRESS, ROLE_CLIENT, 40000, 80, 4), b"HTTP");
        s.on_event(&ev(1, 0, event_type::CLOSE, 0, ROLE_CLIENT, 40000, 80, 0), b"");
        // unknown role: local port 80 -> server
        s.on_event(&ev(3, 1, event_type::DATA, shared::DIR_EGRESS, 0, 80, 50000, 2), b"OK");
        s.finish(0);
        let c = &s.observer().calls;
        let of = |id: &str| c.iter().filter(|l| l.starts_with(id)).cloned().collect::<Vec<_>>();
        assert_eq!(
            of("1 "),
            vec![
                "1 ClientToServer GET /",
                "1 gap ClientToServer 0",
                "1 gap ServerToClient 0",
                "1 ServerToClient HTTP",
                "1 close 127.0.0.1:40000->127.0.0.1:80",
            ]
        );
        assert_eq!(
            of("2 "),
            vec!["2 ClientToServer GET /", "2 gap ClientToServer 3", "2 close 127.0.0.1:40000->127.0.0.1:80"]
        );
        assert_eq!(of("3 "), vec!["3 ServerToClient OK", "3 close 127.0.0.1:50000->127.0.0.1:80"]);
        assert_eq!(s.counters().seq_gaps, 1);
        assert_eq!(s.counters().truncated_bytes, 3);
        assert_eq!(s.process_of(2).map(|p| (p.pid, p.comm.as_str(), p.is_client)), Some((10, "curl", false)));
    }
}
