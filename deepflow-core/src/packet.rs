//! The decoded form of one captured packet, as the flow table consumes it.
//!
//! [`crate::wire::decode`] fills a [`Packet`] from raw link-layer bytes; capture code then
//! hands it to IP defragmentation and the flow table. The struct borrows the payload from the
//! capture buffer: nothing on this path copies packet bytes.

use std::net::{IpAddr, Ipv4Addr};

/// TCP header flags (the low 8 bits of the flags field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    /// True when every bit of `mask` is set.
    #[inline]
    pub fn has(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
    #[inline]
    pub fn syn(self) -> bool {
        self.has(Self::SYN)
    }
    #[inline]
    pub fn ack(self) -> bool {
        self.has(Self::ACK)
    }
    #[inline]
    pub fn fin(self) -> bool {
        self.has(Self::FIN)
    }
    #[inline]
    pub fn rst(self) -> bool {
        self.has(Self::RST)
    }
}

/// Parsed TCP options that the flow table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum segment size (kind 2).
    pub mss: Option<u16>,
    /// Window scale shift (kind 3).
    pub window_scale: Option<u8>,
    /// SACK permitted (kind 4).
    pub sack_permitted: bool,
    /// SACK blocks (kind 5), `sack_count` of them valid.
    pub sack: [(u32, u32); 4],
    /// Number of valid entries in `sack`.
    pub sack_count: u8,
    /// Timestamps (kind 8): (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
}

/// The TCP header fields the flow table needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpInfo {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// Raw (unscaled) window field.
    pub window: u16,
    /// TCP header length in bytes, options included.
    pub header_len: u8,
    pub options: TcpOptions,
}

/// Transport layer of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L4 {
    Tcp(TcpInfo),
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP or ICMPv6 (`v6` tells which); `id`/`seq` are set for echo request/reply.
    Icmp {
        v6: bool,
        icmp_type: u8,
        code: u8,
        id: u16,
        seq: u16,
    },
    /// Any other IP protocol, or a fragment that is not the whole datagram.
    #[default]
    None,
}

impl L4 {
    /// (source port, destination port), or (0, 0) for portless protocols.
    pub fn ports(&self) -> (u16, u16) {
        match *self {
            L4::Tcp(t) => (t.src_port, t.dst_port),
            L4::Udp { src_port, dst_port } => (src_port, dst_port),
            _ => (0, 0),
        }
    }
}

/// Kind of tunnel a packet was decapsulated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[repr(u8)]
pub enum TunnelKind {
    #[default]
    None = 0,
    Vxlan = 1,
    Geneve = 2,
    Gre = 3,
    Erspan = 4,
    IpIp = 5,
    Mpls = 6,
}

impl TunnelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::None => "none",
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Gre => "gre",
            TunnelKind::Erspan => "erspan",
            TunnelKind::IpIp => "ipip",
            TunnelKind::Mpls => "mpls",
        }
    }
}

/// The outermost tunnel a packet came through. Part of the flow key, so that the same inner
/// 5-tuple in two overlays stays two flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Tunnel {
    pub kind: TunnelKind,
    /// VXLAN/Geneve VNI, GRE key, ERSPAN session id, MPLS label; 0 when the tunnel has none.
    pub id: u32,
}

/// An IP fragment that is not a whole datagram (offset > 0 or more-fragments set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fragment {
    /// IPv4 identification (16 bits) or IPv6 fragment header identification.
    pub id: u32,
    /// Offset of this fragment's data in the datagram, in bytes.
    pub offset: u32,
    /// More-fragments flag.
    pub more: bool,
    /// Protocol of the datagram's payload (IPv4 protocol / IPv6 next header after the fragment header).
    pub protocol: u8,
}

/// One decoded packet. `payload` is the L4 payload (or, for a fragment, the fragment's data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Capture timestamp, microseconds since the Unix epoch (set by the packet source).
    pub timestamp_us: u64,
    /// Length of the frame on the wire (may exceed the captured bytes).
    pub wire_len: u32,
    /// Innermost 802.1Q VLAN id seen, if any.
    pub vlan: Option<u16>,
    /// Outermost tunnel decapsulated, if any.
    pub tunnel: Option<Tunnel>,
    /// IP source and destination of the innermost IP header.
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol / IPv6 final next-header.
    pub ip_proto: u8,
    pub ttl: u8,
    /// IP header + payload length as the IP header states it (L3 bytes).
    pub l3_len: u32,
    /// Bytes of L4 header + payload as the IP header states it (L4 bytes).
    pub l4_len: u32,
    /// Set when this packet is a fragment of a larger datagram; `l4` is then `L4::None`
    /// unless this is the first fragment and the transport header fit in it.
    pub fragment: Option<Fragment>,
    pub l4: L4,
    /// Transport payload, truncated to what was captured.
    pub payload: &'a [u8],
}

impl Default for Packet<'_> {
    fn default() -> Self {
        Packet {
            timestamp_us: 0,
            wire_len: 0,
            vlan: None,
            tunnel: None,
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ip_proto: 0,
            ttl: 0,
            l3_len: 0,
            l4_len: 0,
            fragment: None,
            l4: L4::None,
            payload: &[],
        }
    }
}
