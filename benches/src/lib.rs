//! Shared helpers for the deepflow-rs benchmarks: synthetic packets, generated store rows.

use std::net::{IpAddr, Ipv4Addr};

use deepflow_core::packet::{L4, Packet, TcpFlags, TcpInfo};

pub mod store_gen;

/// A TCP packet of flow number `flow` (distinct client address/port per flow) to port 80.
pub fn tcp_packet(flow: u32, ts_us: u64, c2s: bool, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Packet<'_> {
    let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (flow >> 8)));
    let server = IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1));
    let cport = 1024 + (flow & 0xff) as u16 * 200;
    let (src, dst, sp, dp) = if c2s { (client, server, cport, 80) } else { (server, client, 80, cport) };
    Packet {
        timestamp_us: ts_us,
        wire_len: 54 + payload.len() as u32,
        src,
        dst,
        ip_proto: 6,
        ttl: 64,
        l3_len: 40 + payload.len() as u32,
        l4_len: 20 + payload.len() as u32,
        l4: L4::Tcp(TcpInfo {
            src_port: sp,
            dst_port: dp,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 65535,
            header_len: 20,
            ..Default::default()
        }),
        payload,
        ..Default::default()
    }
}

/// Peak resident set size of this process in KiB (Linux `VmHWM`), if known.
pub fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}
