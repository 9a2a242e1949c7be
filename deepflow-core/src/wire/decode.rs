//! The full decode path: link layer to innermost transport header, through tunnels.
//!
//! Every step is a function from a [`Packet`] being filled and the bytes of one layer to the
//! next step; tunnels recurse (bounded by [`DecodeConfig::max_tunnel_depth`]). The common
//! case (Ethernet / IPv4 / TCP) is matched first at each step and stays inlined; tunnel
//! handling is kept out of line.

use std::net::IpAddr;

use crate::packet::{Fragment, L4, Packet, Tunnel, TunnelKind};

use super::bytes::len32;
use super::ethernet::ethertype;
use super::ipv6::next_header as ipproto;
use super::{
    DecodeConfig, DecodeError, Erspan2Header, Erspan3Header, EthernetFrame, GenevePacket, GrePacket, IcmpPacket,
    Ipv4Packet, Ipv6Packet, LinkType, NullHeader, Sll2Header, SllHeader, TcpPacket, UdpPacket, VlanTag, VxlanPacket,
    mpls::walk_stack, walk_extensions,
};

/// Decodes one captured frame of link type `link` down to its innermost transport header.
///
/// Fills every [`Packet`] field but `timestamp_us` (left 0); `wire_len` is set to
/// `data.len()` (the packet source overrides it with the on-wire length).
///
/// * `src`, `dst`, `ip_proto`, `ttl`, `l3_len`, `l4_len` describe the innermost IP header,
///   after decapsulating every tunnel [`DecodeConfig`] allows; `tunnel` is the outermost
///   tunnel (VXLAN/Geneve VNI, GRE key or 0, ERSPAN session id, MPLS top label, 0 for IP-in-IP)
///   and `vlan` the innermost VLAN id.
/// * Lax about lengths: a packet captured shorter than its IP length is decoded as far as it
///   goes (`payload` truncated); bytes beyond the IP length (Ethernet padding) are dropped.
///   `l3_len`/`l4_len` are what the IP header states.
/// * A fragment gets `fragment: Some(..)` and `payload` = the fragment's data (the bytes after
///   the IP header(s), starting at the transport header for the first fragment). `l4` is
///   `L4::None`, except for a first fragment whose transport header fits. Fragments are never
///   decapsulated; see [`decode_transport`] for after reassembly.
/// * Headers that are cut short or malformed fail with [`DecodeError::Truncated`] /
///   [`DecodeError::Malformed`]; non-IP frames with [`DecodeError::NotIp`]. Unknown IP
///   protocols, and tunnels of an unknown kind, are not errors: the packet is reported with
///   `l4: L4::None` and the IP payload as `payload`. Malformed TCP options end option
///   parsing without failing the packet.
///
/// Nothing is allocated or copied; no input can make this panic.
#[inline]
pub fn decode<'a>(link: LinkType, data: &'a [u8], cfg: &DecodeConfig) -> Result<Packet<'a>, DecodeError> {
    let mut pkt = Packet { wire_len: len32(data.len()), ..Packet::default() };
    match link {
        LinkType::Ethernet => ethernet(&mut pkt, data, cfg, 0)?,
        LinkType::Raw => ip_any(&mut pkt, data, cfg, 0)?,
        LinkType::Ipv4 => ipv4(&mut pkt, data, cfg, 0)?,
        LinkType::Ipv6 => ipv6(&mut pkt, data, cfg, 0)?,
        LinkType::LinuxSll => {
            let h = SllHeader::new_checked(data)?;
            ether(&mut pkt, h.protocol(), h.payload(), cfg, 0)?
        }
        LinkType::LinuxSll2 => {
            let h = Sll2Header::new_checked(data)?;
            ether(&mut pkt, h.protocol(), h.payload(), cfg, 0)?
        }
        LinkType::Null | LinkType::Loop => {
            let h = NullHeader::new_checked(data)?;
            if h.is_ipv4() {
                ipv4(&mut pkt, h.payload(), cfg, 0)?
            } else if h.is_ipv6() {
                ipv6(&mut pkt, h.payload(), cfg, 0)?
            } else {
                return Err(DecodeError::NotIpFamily { family: h.family() });
            }
        }
    }
    Ok(pkt)
}

/// Decodes the transport layer of a reassembled IP datagram into `pkt` (which
/// [`decode`] filled from one of its fragments).
///
/// `proto` is the datagram's protocol ([`Fragment::protocol`]) and `data` its reassembled
/// payload, starting at the transport header. Fills `l4`, `payload`, `ip_proto` and
/// `l4_len` (= `data.len()`), adjusts `l3_len` to the reassembled size (IP header length +
/// `data.len()`), clears `fragment`, and follows tunnels found there exactly as [`decode`]
/// does (then the fields describe the innermost packet; the tunnel depth is counted afresh
/// from here). IPv6 extension headers at the start of `data` (those that followed the
/// fragment header) are walked. On error `pkt` is left unchanged.
pub fn decode_transport<'a>(
    pkt: &mut Packet<'a>,
    proto: u8,
    data: &'a [u8],
    cfg: &DecodeConfig,
) -> Result<(), DecodeError> {
    let mut p = *pkt;
    let ip_header_len = p.l3_len.saturating_sub(p.l4_len);
    p.fragment = None;
    p.l4_len = len32(data.len());
    p.l3_len = ip_header_len.saturating_add(p.l4_len);
    let (proto, data) = if p.src.is_ipv6() && ipproto::is_extension(proto) {
        let c = walk_extensions(proto, data)?;
        if c.fragment.is_some() {
            return Err(DecodeError::Malformed {
                layer: "ipv6_ext",
                what: "fragment header inside a reassembled datagram",
            });
        }
        (c.next_header, data.get(c.header_len..).unwrap_or(&[]))
    } else {
        (proto, data)
    };
    p.ip_proto = proto;
    transport(&mut p, proto, data, cfg, 0)?;
    *pkt = p;
    Ok(())
}

/// Ethernet II header, then [`ether`].
#[inline]
fn ethernet<'a>(pkt: &mut Packet<'a>, data: &'a [u8], cfg: &DecodeConfig, depth: u8) -> Result<(), DecodeError> {
    let eth = EthernetFrame::new_checked(data)?;
    ether(pkt, eth.ethertype(), eth.payload(), cfg, depth)
}

/// Dispatches on an ethertype, stepping over VLAN tags.
#[inline]
fn ether<'a>(
    pkt: &mut Packet<'a>,
    mut ty: u16,
    mut data: &'a [u8],
    cfg: &DecodeConfig,
    depth: u8,
) -> Result<(), DecodeError> {
    loop {
        match ty {
            ethertype::IPV4 => return ipv4(pkt, data, cfg, depth),
            ethertype::IPV6 => return ipv6(pkt, data, cfg, depth),
            ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_LEGACY => {
                let tag = VlanTag::new_checked(data)?;
                pkt.vlan = Some(tag.vid());
                ty = tag.ethertype();
                data = tag.payload();
            }
            ethertype::MPLS_UC | ethertype::MPLS_MC => return mpls(pkt, data, cfg, depth),
            _ => return Err(DecodeError::NotIp { ethertype: ty }),
        }
    }
}

/// IPv4 or IPv6, by the version nibble.
#[inline]
fn ip_any<'a>(pkt: &mut Packet<'a>, data: &'a [u8], cfg: &DecodeConfig, depth: u8) -> Result<(), DecodeError> {
    match data.first().map(|b| b >> 4) {
        Some(4) => ipv4(pkt, data, cfg, depth),
        Some(6) => ipv6(pkt, data, cfg, depth),
        Some(_) => Err(DecodeError::Malformed { layer: "ip", what: "version is neither 4 nor 6" }),
        None => Err(DecodeError::Truncated { layer: "ip", need: 20, have: 0 }),
    }
}

#[inline]
fn ipv4<'a>(pkt: &mut Packet<'a>, data: &'a [u8], cfg: &DecodeConfig, depth: u8) -> Result<(), DecodeError> {
    let ip = Ipv4Packet::new_checked(data)?;
    let total = ip.datagram_len();
    let protocol = ip.protocol();
    pkt.src = IpAddr::V4(ip.src());
    pkt.dst = IpAddr::V4(ip.dst());
    pkt.ttl = ip.ttl();
    pkt.ip_proto = protocol;
    pkt.l3_len = len32(total);
    pkt.l4_len = len32(total.saturating_sub(ip.header_len()));
    let payload = ip.payload();
    if ip.is_fragment() {
        let offset = ip.frag_offset();
        pkt.fragment = Some(Fragment { id: u32::from(ip.ident()), offset, more: ip.more_frags(), protocol });
        pkt.payload = payload;
        pkt.l4 = if offset == 0 { first_fragment_l4(protocol, payload) } else { L4::None };
        return Ok(());
    }
    pkt.fragment = None;
    transport(pkt, protocol, payload, cfg, depth)
}

#[inline]
fn ipv6<'a>(pkt: &mut Packet<'a>, data: &'a [u8], cfg: &DecodeConfig, depth: u8) -> Result<(), DecodeError> {
    let ip = Ipv6Packet::new_checked(data)?;
    let total = ip.datagram_len();
    pkt.src = IpAddr::V6(ip.src());
    pkt.dst = IpAddr::V6(ip.dst());
    pkt.ttl = ip.hop_limit();
    pkt.l3_len = len32(total);
    let upper_len = total.saturating_sub(Ipv6Packet::<&[u8]>::HEADER_LEN);
    let payload = ip.payload();
    let nh = ip.next_header();
    if !ipproto::is_extension(nh) {
        pkt.ip_proto = nh;
        pkt.l4_len = len32(upper_len);
        pkt.fragment = None;
        return transport(pkt, nh, payload, cfg, depth);
    }
    let chain = walk_extensions(nh, payload)?;
    let rest = payload.get(chain.header_len..).unwrap_or(&[]);
    pkt.l4_len = len32(upper_len.saturating_sub(chain.header_len));
    pkt.ip_proto = chain.next_header;
    let Some(f) = chain.fragment else {
        pkt.fragment = None;
        return transport(pkt, chain.next_header, rest, cfg, depth);
    };
    pkt.fragment = Some(Fragment { id: f.ident, offset: f.offset, more: f.more, protocol: f.next_header });
    pkt.payload = rest;
    pkt.l4 = L4::None;
    if f.offset == 0 {
        // The first fragment holds the rest of the header chain and the transport header.
        if let Ok(c) = walk_extensions(f.next_header, rest)
            && c.fragment.is_none()
        {
            pkt.ip_proto = c.next_header;
            pkt.l4 = first_fragment_l4(c.next_header, rest.get(c.header_len..).unwrap_or(&[]));
        }
    }
    Ok(())
}

/// The transport header of a first fragment, if it fits.
#[inline]
fn first_fragment_l4(protocol: u8, data: &[u8]) -> L4 {
    let mut l4 = L4::None;
    if l4_header(&mut l4, protocol, data).is_err() {
        l4 = L4::None;
    }
    l4
}

/// Parses the TCP, UDP or ICMP header at the start of `data` into `l4` and returns its
/// payload. Other protocols leave `l4` alone and return all of `data`.
#[inline]
fn l4_header<'a>(l4: &mut L4, protocol: u8, data: &'a [u8]) -> Result<&'a [u8], DecodeError> {
    match protocol {
        ipproto::TCP => {
            let t = TcpPacket::new_checked(data)?;
            *l4 = L4::Tcp(t.info());
            Ok(t.payload())
        }
        ipproto::UDP => {
            let u = UdpPacket::new_checked(data)?;
            *l4 = L4::Udp { src_port: u.src_port(), dst_port: u.dst_port() };
            Ok(u.payload())
        }
        ipproto::ICMP | ipproto::ICMPV6 => {
            let i = IcmpPacket::new_checked(data)?;
            let v6 = protocol == ipproto::ICMPV6;
            let (id, seq) = if i.is_echo(v6) { (i.echo_id(), i.echo_seq()) } else { (0, 0) };
            *l4 = L4::Icmp { v6, icmp_type: i.icmp_type(), code: i.code(), id, seq };
            Ok(i.payload())
        }
        _ => Ok(data),
    }
}

/// The transport layer of a whole (unfragmented or reassembled) datagram, and the tunnels in it.
#[inline]
fn transport<'a>(
    pkt: &mut Packet<'a>,
    protocol: u8,
    data: &'a [u8],
    cfg: &DecodeConfig,
    depth: u8,
) -> Result<(), DecodeError> {
    pkt.l4 = L4::None;
    pkt.payload = l4_header(&mut pkt.l4, protocol, data)?;
    match protocol {
        ipproto::TCP | ipproto::ICMP | ipproto::ICMPV6 => Ok(()),
        _ if !cfg.decapsulate => Ok(()),
        ipproto::UDP => {
            let (_, dst_port) = pkt.l4.ports();
            udp_tunnel(pkt, dst_port, pkt.payload, cfg, depth)
        }
        _ => ip_tunnel(pkt, protocol, data, cfg, depth),
    }
}

/// Counts one more level of tunnel and records it when it is the outermost.
#[inline]
fn enter(pkt: &mut Packet<'_>, kind: TunnelKind, id: u32, cfg: &DecodeConfig, depth: u8) -> Result<u8, DecodeError> {
    if depth >= cfg.max_tunnel_depth {
        return Err(DecodeError::TooDeep);
    }
    if pkt.tunnel.is_none() {
        pkt.tunnel = Some(Tunnel { kind, id });
    }
    Ok(depth + 1)
}

/// VXLAN / Geneve on their configured UDP ports. A payload whose first byte does not look
/// like the protocol (VXLAN without the I flag, Geneve with a non-zero version) is left as
/// plain UDP, as is Geneve carrying a protocol other than Ethernet, IPv4 or IPv6.
#[inline(never)]
fn udp_tunnel<'a>(
    pkt: &mut Packet<'a>,
    dst_port: u16,
    data: &'a [u8],
    cfg: &DecodeConfig,
    depth: u8,
) -> Result<(), DecodeError> {
    let Some(&first) = data.first() else { return Ok(()) };
    if cfg.vxlan_ports.contains(dst_port) {
        if first & VxlanPacket::<&[u8]>::FLAG_I == 0 {
            return Ok(());
        }
        let v = VxlanPacket::new_checked(data)?;
        let depth = enter(pkt, TunnelKind::Vxlan, v.vni(), cfg, depth)?;
        return ethernet(pkt, v.payload(), cfg, depth);
    }
    if cfg.geneve_ports.contains(dst_port) {
        if first >> 6 != 0 {
            return Ok(());
        }
        let g = GenevePacket::new_checked(data)?;
        let ty = g.protocol_type();
        if !matches!(ty, ethertype::TEB | ethertype::IPV4 | ethertype::IPV6) {
            return Ok(());
        }
        let depth = enter(pkt, TunnelKind::Geneve, g.vni(), cfg, depth)?;
        return match ty {
            ethertype::TEB => ethernet(pkt, g.payload(), cfg, depth),
            _ => ether(pkt, ty, g.payload(), cfg, depth),
        };
    }
    Ok(())
}

/// Tunnels identified by the IP protocol: IP-in-IP, 6in4 / IPv6-in-IPv6, GRE, MPLS-in-IP.
#[inline(never)]
fn ip_tunnel<'a>(
    pkt: &mut Packet<'a>,
    protocol: u8,
    data: &'a [u8],
    cfg: &DecodeConfig,
    depth: u8,
) -> Result<(), DecodeError> {
    match protocol {
        ipproto::IPV4 => {
            let depth = enter(pkt, TunnelKind::IpIp, 0, cfg, depth)?;
            ipv4(pkt, data, cfg, depth)
        }
        ipproto::IPV6 => {
            let depth = enter(pkt, TunnelKind::IpIp, 0, cfg, depth)?;
            ipv6(pkt, data, cfg, depth)
        }
        ipproto::GRE => gre(pkt, data, cfg, depth),
        ipproto::MPLS_IN_IP => mpls(pkt, data, cfg, depth),
        _ => Ok(()),
    }
}

/// GRE (version 0) carrying IPv4, IPv6, Ethernet, MPLS or ERSPAN. Other versions (PPTP) and
/// protocol types are left undecapsulated.
fn gre<'a>(pkt: &mut Packet<'a>, data: &'a [u8], cfg: &DecodeConfig, depth: u8) -> Result<(), DecodeError> {
    let g = GrePacket::new_checked(data)?;
    if g.version() != 0 {
        return Ok(());
    }
    let inner = g.payload();
    let key = g.key().unwrap_or(0);
    match g.protocol_type() {
        ty @ (ethertype::IPV4 | ethertype::IPV6 | ethertype::MPLS_UC | ethertype::MPLS_MC) => {
            let depth = enter(pkt, TunnelKind::Gre, key, cfg, depth)?;
            ether(pkt, ty, inner, cfg, depth)
        }
        ethertype::TEB => {
            let depth = enter(pkt, TunnelKind::Gre, key, cfg, depth)?;
            ethernet(pkt, inner, cfg, depth)
        }
        ethertype::ERSPAN_I_II if g.seq_present() => {
            let e = Erspan2Header::new_checked(inner)?;
            let depth = enter(pkt, TunnelKind::Erspan, u32::from(e.session_id()), cfg, depth)?;
            ethernet(pkt, e.payload(), cfg, depth)
        }
        ethertype::ERSPAN_I_II => {
            // Type I: no sequence number, no ERSPAN header, no session id.
            let depth = enter(pkt, TunnelKind::Erspan, 0, cfg, depth)?;
            ethernet(pkt, inner, cfg, depth)
        }
        ethertype::ERSPAN_III => {
            let e = Erspan3Header::new_checked(inner)?;
            let depth = enter(pkt, TunnelKind::Erspan, u32::from(e.session_id()), cfg, depth)?;
            if e.frame_type() == Erspan3Header::<&[u8]>::FT_IP {
                ip_any(pkt, e.payload(), cfg, depth)
            } else {
                ethernet(pkt, e.payload(), cfg, depth)
            }
        }
        _ => Ok(()),
    }
}

/// An MPLS label stack, then IPv4 / IPv6 by the first nibble after the bottom of the stack,
/// or Ethernet after a pseudowire control word (first nibble 0).
#[inline(never)]
fn mpls<'a>(pkt: &mut Packet<'a>, data: &'a [u8], cfg: &DecodeConfig, depth: u8) -> Result<(), DecodeError> {
    let stack = walk_stack(data)?;
    let depth = enter(pkt, TunnelKind::Mpls, stack.top_label, cfg, depth)?;
    let inner = stack.payload;
    match inner.first().map(|b| b >> 4) {
        Some(4) => ipv4(pkt, inner, cfg, depth),
        Some(6) => ipv6(pkt, inner, cfg, depth),
        Some(0) => match inner.get(4..) {
            Some(eth) => ethernet(pkt, eth, cfg, depth),
            None => Err(DecodeError::Truncated { layer: "mpls", need: 4, have: inner.len() }),
        },
        Some(_) => Err(DecodeError::Malformed {
            layer: "mpls",
            what: "payload after the label stack is neither IP nor a pseudowire",
        }),
        None => Err(DecodeError::Truncated { layer: "mpls", need: 1, have: 0 }),
    }
}
