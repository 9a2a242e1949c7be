use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use deepflow_core::packet::{L4, Packet, TcpFlags, TcpInfo};
use deepflow_core::record::CloseType;
use deepflow_core::{Direction, FlowInfo};

use super::*;
use crate::budget::MemoryBudget;

const F: u8 = TcpFlags::FIN;
const S: u8 = TcpFlags::SYN;
const R: u8 = TcpFlags::RST;
const P: u8 = TcpFlags::PSH;
const A: u8 = TcpFlags::ACK;

#[derive(Default)]
struct Rec {
    data: [Vec<u8>; 2],
    gaps: [u64; 2],
    closed: usize,
}

impl FlowObserver for Rec {
    type State = ();
    fn on_payload(&mut self, _: &mut (), _: &FlowInfo, dir: Direction, _: u64, data: &[u8]) {
        self.data[dir.index()].extend_from_slice(data);
    }
    fn on_gap(&mut self, _: &mut (), _: &FlowInfo, dir: Direction, _: u64, len: u64) {
        self.gaps[dir.index()] += len;
    }
    fn on_close(&mut self, _: &mut (), _: &FlowInfo, _: u64, _: &mut L4FlowLog) {
        self.closed += 1;
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

/// A TCP packet from `c2s` ? client : server.
fn tcp<'a>(ts_ms: u64, c2s: bool, flags: u8, seq: u32, ack: u32, payload: &'a [u8]) -> Packet<'a> {
    let (src, dst, sp, dp) = if c2s { (ip(1), ip(2), 40000, 80) } else { (ip(2), ip(1), 80, 40000) };
    Packet {
        timestamp_us: 1_700_000_000_000_000 + ts_ms * 1000,
        wire_len: 54 + payload.len() as u32,
        src,
        dst,
        ip_proto: 6,
        l3_len: 40 + payload.len() as u32,
        l4_len: 20 + payload.len() as u32,
        l4: L4::Tcp(TcpInfo {
            src_port: sp,
            dst_port: dp,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 1000,
            header_len: 20,
            ..Default::default()
        }),
        payload,
        ..Default::default()
    }
}

fn table() -> FlowTable<Rec> {
    FlowTable::new(FlowConfig::default(), Arc::new(MemoryBudget::unlimited()), Rec::default())
}

fn handshake(t: &mut FlowTable<Rec>) {
    t.process(&tcp(0, true, S, 100, 0, b""));
    t.process(&tcp(10, false, S | A, 500, 101, b""));
    t.process(&tcp(12, true, A, 101, 501, b""));
}

#[test]
fn normal_connection_metrics_and_payload() {
    let mut t = table();
    handshake(&mut t);
    t.process(&tcp(20, true, P | A, 101, 501, b"GET / HTTP/1.1\r\n\r\n"));
    t.process(&tcp(21, false, A, 501, 119, b""));
    t.process(&tcp(30, false, P | A, 501, 119, b"HTTP/1.1 200 OK\r\n\r\n"));
    t.process(&tcp(31, true, A, 119, 520, b""));
    t.process(&tcp(40, true, F | A, 119, 520, b""));
    t.process(&tcp(41, false, F | A, 520, 120, b""));
    t.process(&tcp(42, true, A, 120, 521, b""));
    t.flush_all();
    let recs: Vec<_> = t.drain_records().collect();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.close_type, CloseType::TcpFin);
    assert_eq!((r.client_port, r.server_port), (40000, 80));
    assert_eq!((r.packet_tx, r.packet_rx), (6, 4));
    assert_eq!((r.rtt_server, r.rtt_client, r.rtt), (10_000, 2_000, 12_000));
    assert_eq!(r.srt, 1_000);
    assert_eq!(r.art, 10_000);
    assert_eq!((r.syn_count, r.synack_count, r.fin_count), (1, 1, 2));
    assert_eq!((r.retrans_tx, r.retrans_rx), (0, 0));
    assert_eq!((r.l4_byte_tx, r.l4_byte_rx), (18, 19));
    assert_eq!(t.observer().data[0], b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(t.observer().data[1], b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(t.observer().gaps, [0, 0]);
    assert_eq!(t.budget().used(), 0);
}

#[test]
fn unanswered_syn_is_server_syn_miss() {
    let mut t = table();
    t.process(&tcp(0, true, S, 100, 0, b""));
    t.process(&tcp(1000, true, S, 100, 0, b""));
    t.advance(1_700_000_000_000_000 + 10_000_000);
    let recs: Vec<_> = t.drain_records().collect();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].close_type, CloseType::ServerSynMiss);
    assert_eq!(recs[0].retrans_syn, 1);
    assert_eq!(t.stats().flows_timed_out, 1);
}

#[test]
fn rst_close_types() {
    // Server answers SYN with RST.
    let mut t = table();
    t.process(&tcp(0, true, S, 100, 0, b""));
    t.process(&tcp(1, false, R | A, 0, 101, b""));
    t.flush_all();
    assert_eq!(t.drain_records().next().unwrap().close_type, CloseType::ServerReset);
    // Server resets an established connection.
    let mut t = table();
    handshake(&mut t);
    t.process(&tcp(20, false, R, 501, 0, b""));
    t.flush_all();
    assert_eq!(t.drain_records().next().unwrap().close_type, CloseType::TcpServerRst);
    // Client resets an established connection.
    let mut t = table();
    handshake(&mut t);
    t.process(&tcp(20, true, R, 101, 0, b""));
    t.flush_all();
    assert_eq!(t.drain_records().next().unwrap().close_type, CloseType::TcpClientRst);
    // FIN from the server, then the client closes with RST.
    let mut t = table();
    handshake(&mut t);
    t.process(&tcp(20, false, F | A, 501, 101, b""));
    t.process(&tcp(21, true, R | A, 101, 502, b""));
    t.flush_all();
    assert_eq!(t.drain_records().next().unwrap().close_type, CloseType::TcpFinClientRst);
    // SYN-ACK never acknowledged.
    let mut t = table();
    t.process(&tcp(0, true, S, 100, 0, b""));
    t.process(&tcp(1, false, S | A, 500, 101, b""));
    t.advance(1_700_000_000_000_000 + 10_000_000);
    assert_eq!(t.drain_records().next().unwrap().close_type, CloseType::ClientSynAckMiss);
}

#[test]
fn half_close_and_forced_report() {
    let mut t = table();
    handshake(&mut t);
    t.process(&tcp(20, true, F | A, 101, 501, b""));
    t.advance(1_700_000_000_000_000 + 60_000_000);
    assert_eq!(t.drain_records().next().unwrap().close_type, CloseType::ClientHalfClose);
    // The same at the end of a capture, and an unanswered SYN there too.
    let mut t = table();
    handshake(&mut t);
    t.process(&tcp(20, false, F | A, 501, 101, b""));
    t.flush_all();
    assert_eq!(t.drain_records().next().unwrap().close_type, CloseType::ServerHalfClose);
    let mut t = table();
    t.process(&tcp(0, true, S, 100, 0, b""));
    t.flush_all();
    assert_eq!(t.drain_records().next().unwrap().close_type, CloseType::ServerSynMiss);
    let mut t = table();
    handshake(&mut t);
    t.flush_all();
    assert_eq!(t.drain_records().next().unwrap().close_type, CloseType::ForcedReport);
}

#[test]
fn mid_stream_roles_from_ports() {
    let mut t = table();
    // First packet seen is the server's response.
    t.process(&tcp(0, false, P | A, 501, 119, b"HTTP/1.1 200 OK\r\n\r\n"));
    t.process(&tcp(1, true, A, 119, 520, b""));
    t.flush_all();
    let r = t.drain_records().next().unwrap();
    assert_eq!((r.client_port, r.server_port), (40000, 80));
    assert_eq!((r.packet_tx, r.packet_rx), (1, 1));
}

#[test]
fn port_reuse_makes_two_flows() {
    let mut t = table();
    handshake(&mut t);
    t.process(&tcp(20, true, F | A, 101, 501, b""));
    t.process(&tcp(21, false, F | A, 501, 102, b""));
    t.process(&tcp(22, true, A, 102, 502, b""));
    t.process(&tcp(100, true, S, 9000, 0, b""));
    t.process(&tcp(101, false, S | A, 7000, 9001, b""));
    t.flush_all();
    let recs: Vec<_> = t.drain_records().collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].close_type, CloseType::TcpFin);
    assert_eq!(t.stats().port_reuse, 1);
}

#[test]
fn retransmission_and_reordering() {
    let mut t = table();
    handshake(&mut t);
    t.process(&tcp(20, true, A, 101, 501, b"aaaa"));
    t.process(&tcp(30, true, A, 109, 501, b"cccc")); // 105..109 missing
    t.process(&tcp(31, true, A, 105, 501, b"bbbb")); // out of order (within 3 ms? no: rtt 12ms)
    t.process(&tcp(500, true, A, 101, 501, b"aaaa")); // retransmission
    t.flush_all();
    let r = t.drain_records().next().unwrap();
    assert_eq!(r.retrans_tx + r.ooo_tx, 2);
    assert!(r.retrans_tx >= 1);
    assert_eq!(t.observer().data[0], b"aaaabbbbcccc");
}

#[test]
fn capture_loss_reported_as_gap_via_ack() {
    let mut t = table();
    handshake(&mut t);
    t.process(&tcp(20, true, A, 101, 501, b"aaaa"));
    // 105..109 never captured, but the server acknowledges it.
    t.process(&tcp(21, false, A, 501, 109, b""));
    t.process(&tcp(22, true, A, 109, 501, b"cccc"));
    t.flush_all();
    assert_eq!(t.observer().data[0], b"aaaacccc");
    assert_eq!(t.observer().gaps[0], 4);
}

#[test]
fn udp_flow_times_out() {
    let mut t = table();
    let p = Packet {
        timestamp_us: 1_000_000,
        wire_len: 60,
        src: ip(1),
        dst: ip(2),
        ip_proto: 17,
        l4_len: 12,
        l4: L4::Udp { src_port: 50000, dst_port: 53 },
        payload: b"abcd",
        ..Default::default()
    };
    t.process(&p);
    t.advance(100_000_000);
    let r = t.drain_records().next().unwrap();
    assert_eq!(r.close_type, CloseType::Timeout);
    assert_eq!((r.client_port, r.server_port, r.protocol), (50000, 53, "UDP"));
    assert_eq!(t.observer().data[0], b"abcd");
}

#[test]
fn budget_caps_flows_and_evicts_oldest() {
    let cost = flow_cost::<()>(true);
    let budget = Arc::new(MemoryBudget::new(cost * 100));
    let mut t = FlowTable::new(FlowConfig::default(), budget.clone(), Rec::default());
    for i in 0..1000u32 {
        let mut p = tcp(u64::from(i), true, S, 1, 0, b"");
        if let L4::Tcp(ref mut x) = p.l4 {
            x.src_port = 1024 + i as u16;
        }
        t.process(&p);
        assert!(budget.used() <= budget.limit());
    }
    assert_eq!(t.len(), 100);
    let s = t.stats();
    assert_eq!(s.flows_evicted, 900);
    assert_eq!(s.flows_refused, 0);
    // Evicted flows are reported, oldest first, never lost.
    let recs: Vec<_> = t.drain_records().collect();
    assert_eq!(recs.len(), 900);
    assert_eq!(recs[0].client_port, 1024);
    t.flush_all();
    assert_eq!(budget.used(), 0);
}

#[test]
fn network_metrics_per_second() {
    let mut t = table();
    handshake(&mut t);
    t.process(&tcp(1500, true, P | A, 101, 501, b"x"));
    t.flush_all();
    let m = t.drain_metrics();
    let secs: Vec<_> = m.iter().filter(|r| r.interval == 1).collect();
    assert_eq!(secs.len(), 2);
    assert_eq!(secs.iter().map(|r| r.packet_tx + r.packet_rx).sum::<u64>(), 4);
    assert_eq!(secs[0].new_flow, 1);
    assert_eq!(secs[0].rtt_count, 1);
    let mins: Vec<_> = m.iter().filter(|r| r.interval == 60).collect();
    assert_eq!(mins.len(), 1);
    assert_eq!(mins[0].closed_flow, 1);
}

#[test]
fn flow_entry_size_is_small() {
    // Documented bound: at most 512 bytes of state per idle TCP flow.
    let cost = flow_cost::<()>(true);
    assert!(cost <= 512, "idle TCP flow costs {cost} bytes");
}
