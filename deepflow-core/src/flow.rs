//! Flow keys: the 5-tuple (+ tunnel) that identifies a flow in both directions.

use std::net::IpAddr;

use crate::packet::{Packet, Tunnel};

/// A direction-independent flow key: the smaller (ip, port) endpoint always comes first, so
/// both directions of a conversation hash and compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    pub tunnel: Tunnel,
    pub protocol: u8,
    pub ip_lo: IpAddr,
    pub ip_hi: IpAddr,
    pub port_lo: u16,
    pub port_hi: u16,
}

/// Every field, packed into three or five words (a derived `Hash` makes a dozen small writes,
/// and this is hashed for every packet).
impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64((u64::from(self.tunnel.id) << 32) | (u64::from(self.port_lo) << 16) | u64::from(self.port_hi));
        let tag = (u64::from(self.tunnel.kind as u8) << 8) | u64::from(self.protocol);
        match (self.ip_lo, self.ip_hi) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                h.write_u64(tag);
                h.write_u64((u64::from(a.to_bits()) << 32) | u64::from(b.to_bits()));
            }
            (a, b) => {
                h.write_u64(tag | (1 << 16));
                h.write_u128(ip_bits(a));
                h.write_u128(ip_bits(b));
            }
        }
    }
}

fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_bits()),
        IpAddr::V6(a) => a.to_bits(),
    }
}

/// Which way a packet travels relative to the key's (lo, hi) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyDirection {
    /// Source is the `lo` endpoint.
    LoToHi,
    /// Source is the `hi` endpoint.
    HiToLo,
}

impl FlowKey {
    /// Builds the normalized key of a packet and tells which way it travels.
    pub fn from_packet(p: &Packet<'_>) -> (FlowKey, KeyDirection) {
        let (sp, dp) = p.l4.ports();
        Self::new(p.tunnel.unwrap_or_default(), p.ip_proto, p.src, sp, p.dst, dp)
    }

    /// Builds a normalized key from a directed 5-tuple.
    pub fn new(
        tunnel: Tunnel,
        protocol: u8,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
    ) -> (FlowKey, KeyDirection) {
        if (src, sport) <= (dst, dport) {
            (FlowKey { tunnel, protocol, ip_lo: src, ip_hi: dst, port_lo: sport, port_hi: dport }, KeyDirection::LoToHi)
        } else {
            (FlowKey { tunnel, protocol, ip_lo: dst, ip_hi: src, port_lo: dport, port_hi: sport }, KeyDirection::HiToLo)
        }
    }

    /// A symmetric 64-bit hash for sharding flows across workers (same for both directions).
    pub fn shard_hash(&self) -> u64 {
        // FNV-1a over the normalized fields: cheap, deterministic across runs and platforms.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: &[u8]| {
            for &x in b {
                h ^= u64::from(x);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for ip in [self.ip_lo, self.ip_hi] {
            match ip {
                IpAddr::V4(a) => eat(&a.octets()),
                IpAddr::V6(a) => eat(&a.octets()),
            }
        }
        eat(&self.port_lo.to_be_bytes());
        eat(&self.port_hi.to_be_bytes());
        eat(&[self.protocol, self.tunnel.kind as u8]);
        eat(&self.tunnel.id.to_be_bytes());
        h
    }
}

/// IP protocol numbers used across the crates.
pub mod ip_proto {
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6: u8 = 41;
    pub const GRE: u8 = 47;
    pub const ICMPV6: u8 = 58;

    /// The name DeepFlow's `protocol` column shows.
    pub fn name(p: u8) -> &'static str {
        match p {
            ICMP => "ICMP",
            TCP => "TCP",
            UDP => "UDP",
            ICMPV6 => "ICMPv6",
            GRE => "GRE",
            IPIP => "IPIP",
            _ => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn key_is_symmetric() {
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let (k1, d1) = FlowKey::new(Tunnel::default(), 6, a, 40000, b, 80);
        let (k2, d2) = FlowKey::new(Tunnel::default(), 6, b, 80, a, 40000);
        assert_eq!(k1, k2);
        assert_ne!(d1, d2);
        assert_eq!(k1.shard_hash(), k2.shard_hash());
    }
}

/// Direction of a packet or payload relative to the flow's inferred client/server roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }
    /// 0 for client→server, 1 for server→client (index into per-direction arrays).
    pub fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }
}

/// What a consumer of flow payload (the L7 layer) knows about the flow it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowInfo {
    /// Unique within one capture session.
    pub flow_id: u64,
    /// IP protocol number (6 TCP, 17 UDP, ...).
    pub protocol: u8,
    pub client_ip: IpAddr,
    pub server_ip: IpAddr,
    pub client_port: u16,
    pub server_port: u16,
    pub tunnel: Tunnel,
    /// First packet of the flow, microseconds since the epoch.
    pub start_time_us: u64,
}
