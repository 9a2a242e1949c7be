//! Whole-path tests of [`decode`] / [`decode_transport`]: one hand-built sample per link type
//! and tunnel, truncation at every offset, and randomized inputs (proptest, fixed seed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, RngSeed};

use super::*;
use crate::packet::{Fragment, L4, Packet, TcpFlags, Tunnel, TunnelKind};

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const V4_A: [u8; 4] = [10, 0, 0, 1];
const V4_B: [u8; 4] = [10, 0, 0, 2];
const V4_OUT_A: [u8; 4] = [192, 168, 1, 1];
const V4_OUT_B: [u8; 4] = [192, 168, 1, 2];

fn v6(last: u8) -> [u8; 16] {
    let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    a[15] = last;
    a
}

fn ip4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn ip6(last: u8) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(v6(last)))
}

fn eth(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = [MAC_B, MAC_A].concat();
    f.extend_from_slice(&ty.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A VLAN tag (to follow a VLAN ethertype) with the given VID and inner ethertype.
fn vlan(vid: u16, ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = (0x2000 | vid).to_be_bytes().to_vec();
    f.extend_from_slice(&ty.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// IPv4 with explicit identification, flags/fragment-offset word and addresses.
fn ipv4_full(src: [u8; 4], dst: [u8; 4], id: u16, frag: u16, proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap();
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_full(V4_A, V4_B, 1, 0x4000, proto, payload)
}

fn ipv4_outer(proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_full(V4_OUT_A, V4_OUT_B, 2, 0x4000, proto, payload)
}

fn ipv6_full(src: [u8; 16], dst: [u8; 16], nh: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    p.extend_from_slice(&[nh, 63]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

fn ipv6(nh: u8, payload: &[u8]) -> Vec<u8> {
    ipv6_full(v6(1), v6(2), nh, payload)
}

fn tcp(sport: u16, dport: u16, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    let off = u8::try_from((20 + opts.len()) / 4).unwrap();
    let mut s = sport.to_be_bytes().to_vec();
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&1000u32.to_be_bytes());
    s.extend_from_slice(&2000u32.to_be_bytes());
    s.extend_from_slice(&[off << 4, flags, 0x72, 0x10, 0, 0, 0, 0]);
    s.extend_from_slice(&opts);
    s.extend_from_slice(payload);
    s
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = sport.to_be_bytes().to_vec();
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    d
}

fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0];
    d.extend_from_slice(&(vni << 8).to_be_bytes());
    d.extend_from_slice(inner);
    d
}

fn geneve(vni: u32, ty: u16, options: &[u8], inner: &[u8]) -> Vec<u8> {
    assert!(options.len().is_multiple_of(4));
    let mut d = vec![u8::try_from(options.len() / 4).unwrap(), 0];
    d.extend_from_slice(&ty.to_be_bytes());
    d.extend_from_slice(&(vni << 8).to_be_bytes());
    d.extend_from_slice(options);
    d.extend_from_slice(inner);
    d
}

fn gre(key: Option<u32>, seq: Option<u32>, ty: u16, inner: &[u8]) -> Vec<u8> {
    let mut flags = 0u16;
    if key.is_some() {
        flags |= 0x2000;
    }
    if seq.is_some() {
        flags |= 0x1000;
    }
    let mut d = flags.to_be_bytes().to_vec();
    d.extend_from_slice(&ty.to_be_bytes());
    if let Some(k) = key {
        d.extend_from_slice(&k.to_be_bytes());
    }
    if let Some(s) = seq {
        d.extend_from_slice(&s.to_be_bytes());
    }
    d.extend_from_slice(inner);
    d
}

fn erspan2(session: u16, inner: &[u8]) -> Vec<u8> {
    let mut d = 0x1000u16.to_be_bytes().to_vec(); // version 1, VLAN 0
    d.extend_from_slice(&session.to_be_bytes());
    d.extend_from_slice(&7u32.to_be_bytes()); // index
    d.extend_from_slice(inner);
    d
}

fn erspan3(session: u16, subheader: bool, inner: &[u8]) -> Vec<u8> {
    let mut d = 0x2000u16.to_be_bytes().to_vec(); // version 2, VLAN 0
    d.extend_from_slice(&session.to_be_bytes());
    d.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // timestamp
    d.extend_from_slice(&[0, 0]); // SGT
    d.extend_from_slice(&[0x80, u8::from(subheader)]); // P=1, FT=0 (Ethernet), O
    if subheader {
        d.extend_from_slice(&[0xaa; 8]);
    }
    d.extend_from_slice(inner);
    d
}

fn mpls(labels: &[u32], inner: &[u8]) -> Vec<u8> {
    let mut d = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        let bottom = if i + 1 == labels.len() { 0x100 } else { 0 };
        d.extend_from_slice(&((l << 12) | bottom | 64).to_be_bytes());
    }
    d.extend_from_slice(inner);
    d
}

/// The inner TCP segment most tunnel samples carry: 10.0.0.1:40000 -> 10.0.0.2:80, "GET".
fn inner_v4_tcp() -> Vec<u8> {
    ipv4(6, &tcp(40000, 80, TcpFlags::PSH | TcpFlags::ACK, &[], b"GET"))
}

fn inner_eth_v4_tcp() -> Vec<u8> {
    eth(0x0800, &inner_v4_tcp())
}

/// MSS 1460, SACK permitted, timestamps, NOP, window scale 7, two SACK blocks.
const TCP_OPTS: [u8; 38] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 3, 3, 7, 5, 18, 0, 0, 0, 10, 0, 0, 0, 20, 0, 0, 0, 30, 0,
    0, 0, 40,
];

fn eth_v4_tcp_opts() -> Vec<u8> {
    eth(0x0800, &ipv4(6, &tcp(12345, 443, TcpFlags::SYN, &TCP_OPTS, b"data")))
}

/// Ethernet / QinQ (S-tag 100, C-tag 200) / IPv6 / hop-by-hop / fragment (first, M=1) / UDP.
fn eth_qinq_v6_hbh_frag() -> Vec<u8> {
    let mut ext = vec![44, 0, 1, 4, 0, 0, 0, 0]; // HBH -> fragment, PadN
    ext.extend_from_slice(&[17, 0, 0x00, 0x01]); // fragment -> UDP, offset 0, M=1
    ext.extend_from_slice(&0xcafe_f00du32.to_be_bytes());
    ext.extend_from_slice(&udp(5353, 5353, &[0x11; 24]));
    let ip = ipv6(0, &ext);
    eth(0x88a8, &vlan(100, 0x8100, &vlan(200, 0x86dd, &ip)))
}

/// Every valid sample: (name, link type, bytes).
fn samples() -> Vec<(&'static str, LinkType, Vec<u8>)> {
    let tcp_v4 = inner_v4_tcp();
    let udp_v6 = ipv6(17, &udp(1111, 53, b"query"));
    let mut sll = vec![0, 0, 0, 1, 0, 6];
    sll.extend_from_slice(&MAC_A);
    sll.extend_from_slice(&[0, 0, 0x08, 0x00]);
    sll.extend_from_slice(&tcp_v4);
    let mut sll2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 4, 6];
    sll2.extend_from_slice(&MAC_A);
    sll2.extend_from_slice(&[0, 0]);
    sll2.extend_from_slice(&udp_v6);
    let null = [&[2u8, 0, 0, 0][..], &tcp_v4].concat();
    let lo = [&[0u8, 0, 0, 30][..], &udp_v6].concat();
    let mut padded = eth(0x0800, &ipv4(6, &tcp(1, 2, TcpFlags::ACK, &[], &[])));
    padded.resize(60, 0);
    let icmp = ipv4(1, &[8, 0, 0, 0, 0x12, 0x34, 0, 9, b'p', b'i', b'n', b'g']);
    let icmp6 = ipv6(58, &[129, 0, 0, 0, 0, 7, 0, 8]);
    let frag_first = ipv4_full(V4_A, V4_B, 77, 0x2000, 17, &udp(1000, 4789, &[0x08; 16]));
    let frag_mid = ipv4_full(V4_A, V4_B, 77, 0x2003, 17, &[0x42; 16]);
    let frag_last_v6 = {
        let mut ext = vec![6, 0, 0x00, 0x18]; // -> TCP, offset 24 bytes, M=0
        ext.extend_from_slice(&9u32.to_be_bytes());
        ext.extend_from_slice(&[0x33; 10]);
        ipv6(44, &ext)
    };
    vec![
        ("eth/ipv4/tcp+opts", LinkType::Ethernet, eth_v4_tcp_opts()),
        ("eth/qinq/ipv6/hbh/frag/udp", LinkType::Ethernet, eth_qinq_v6_hbh_frag()),
        ("eth/vlan/ipv6/udp", LinkType::Ethernet, eth(0x8100, &vlan(42, 0x86dd, &udp_v6))),
        ("eth/ipv4/tcp padded", LinkType::Ethernet, padded),
        ("eth/ipv4/icmp", LinkType::Ethernet, eth(0x0800, &icmp)),
        ("raw/ipv6/icmpv6", LinkType::Raw, icmp6.clone()),
        ("ipv6/icmpv6", LinkType::Ipv6, icmp6),
        ("raw/ipv4/tcp", LinkType::Raw, tcp_v4.clone()),
        ("ipv4/tcp", LinkType::Ipv4, tcp_v4.clone()),
        ("sll/ipv4/tcp", LinkType::LinuxSll, sll),
        ("sll2/ipv6/udp", LinkType::LinuxSll2, sll2),
        ("null/ipv4/tcp", LinkType::Null, null),
        ("loop/ipv6/udp", LinkType::Loop, lo),
        ("ipv4 frag first", LinkType::Raw, frag_first),
        ("ipv4 frag middle", LinkType::Raw, frag_mid),
        ("ipv6 frag last", LinkType::Raw, frag_last_v6),
        (
            "vxlan",
            LinkType::Ethernet,
            eth(0x0800, &ipv4_outer(17, &udp(50000, 4789, &vxlan(5001, &inner_eth_v4_tcp())))),
        ),
        (
            "geneve+opts",
            LinkType::Ethernet,
            eth(
                0x0800,
                &ipv4_outer(
                    17,
                    &udp(50000, 6081, &geneve(0xabcdef, 0x6558, &[0, 1, 2, 1, 9, 9, 9, 9], &inner_eth_v4_tcp())),
                ),
            ),
        ),
        ("gre+key", LinkType::Ethernet, eth(0x0800, &ipv4_outer(47, &gre(Some(1000), None, 0x0800, &tcp_v4)))),
        ("gre/teb", LinkType::Ethernet, eth(0x0800, &ipv4_outer(47, &gre(None, None, 0x6558, &inner_eth_v4_tcp())))),
        ("erspan1", LinkType::Ethernet, eth(0x0800, &ipv4_outer(47, &gre(None, None, 0x88be, &inner_eth_v4_tcp())))),
        (
            "erspan2",
            LinkType::Ethernet,
            eth(0x0800, &ipv4_outer(47, &gre(None, Some(5), 0x88be, &erspan2(0x155, &inner_eth_v4_tcp())))),
        ),
        (
            "erspan3",
            LinkType::Ethernet,
            eth(0x0800, &ipv4_outer(47, &gre(None, Some(5), 0x22eb, &erspan3(0x2aa, true, &inner_eth_v4_tcp())))),
        ),
        ("mpls x2", LinkType::Ethernet, eth(0x8847, &mpls(&[16, 17], &tcp_v4))),
        ("ipip", LinkType::Ethernet, eth(0x0800, &ipv4_outer(4, &tcp_v4))),
        ("6in4", LinkType::Ethernet, eth(0x0800, &ipv4_outer(41, &udp_v6))),
        ("ip6ip6", LinkType::Raw, ipv6_full(v6(0xa), v6(0xb), 41, &udp_v6)),
    ]
}

fn d(link: LinkType, data: &[u8]) -> Result<Packet<'_>, DecodeError> {
    decode(link, data, &DecodeConfig::default())
}

fn sample(name: &str) -> (LinkType, Vec<u8>) {
    let (_, l, b) = samples().into_iter().find(|(n, _, _)| *n == name).unwrap();
    (l, b)
}

/// Checks the packet is the inner 10.0.0.1:40000 -> 10.0.0.2:80 "GET" segment.
fn assert_inner_tcp(p: &Packet<'_>) {
    assert_eq!((p.src, p.dst, p.ip_proto, p.ttl), (ip4(V4_A), ip4(V4_B), 6, 64));
    assert_eq!(p.l4.ports(), (40000, 80));
    assert_eq!(p.payload, b"GET");
    assert_eq!((p.l3_len, p.l4_len), (43, 23));
    assert_eq!(p.fragment, None);
}

// ---------------------------------------------------------------------------------------------
// Full-path tests
// ---------------------------------------------------------------------------------------------

#[test]
fn eth_ipv4_tcp_with_options() {
    let f = eth_v4_tcp_opts();
    let p = d(LinkType::Ethernet, &f).unwrap();
    assert_eq!(p.wire_len as usize, f.len());
    assert_eq!((p.timestamp_us, p.vlan, p.tunnel), (0, None, None));
    assert_eq!((p.src, p.dst, p.ip_proto, p.ttl), (ip4(V4_A), ip4(V4_B), 6, 64));
    assert_eq!((p.l3_len, p.l4_len), (20 + 60 + 4, 60 + 4));
    let L4::Tcp(t) = p.l4 else { panic!("{:?}", p.l4) };
    assert_eq!((t.src_port, t.dst_port, t.seq, t.ack, t.window), (12345, 443, 1000, 2000, 0x7210));
    assert_eq!((t.flags, t.header_len), (TcpFlags(TcpFlags::SYN), 60));
    assert_eq!(t.options.mss, Some(1460));
    assert_eq!(t.options.window_scale, Some(7));
    assert!(t.options.sack_permitted);
    assert_eq!(t.options.timestamp, Some((1, 2)));
    assert_eq!(t.options.sack_count, 2);
    assert_eq!(&t.options.sack[..2], &[(10, 20), (30, 40)]);
    assert_eq!(p.payload, b"data");
}

#[test]
fn eth_qinq_ipv6_hop_by_hop_fragment() {
    let f = eth_qinq_v6_hbh_frag();
    let p = d(LinkType::Ethernet, &f).unwrap();
    assert_eq!(p.vlan, Some(200), "innermost VLAN");
    assert_eq!((p.src, p.dst, p.ttl), (ip6(1), ip6(2), 63));
    assert_eq!(p.fragment, Some(Fragment { id: 0xcafe_f00d, offset: 0, more: true, protocol: 17 }));
    assert_eq!(p.ip_proto, 17);
    assert_eq!(p.l4, L4::Udp { src_port: 5353, dst_port: 5353 }, "first fragment: header parsed");
    assert_eq!(p.payload.len(), 8 + 24, "fragment data starts at the UDP header");
    assert_eq!(&p.payload[..2], &5353u16.to_be_bytes());
    assert_eq!((p.l3_len, p.l4_len), (40 + 16 + 32, 32));
}

#[test]
fn vlan_ipv6_udp() {
    let (l, f) = sample("eth/vlan/ipv6/udp");
    let p = d(l, &f).unwrap();
    assert_eq!(p.vlan, Some(42));
    assert_eq!((p.src, p.ip_proto, p.l4.ports(), p.payload), (ip6(1), 17, (1111, 53), &b"query"[..]));
    assert_eq!((p.l3_len, p.l4_len), (40 + 13, 13));
}

#[test]
fn linux_sll_and_sll2() {
    let (l, f) = sample("sll/ipv4/tcp");
    assert_inner_tcp(&d(l, &f).unwrap());
    let (l, f) = sample("sll2/ipv6/udp");
    let p = d(l, &f).unwrap();
    assert_eq!((p.src, p.l4.ports(), p.payload), (ip6(1), (1111, 53), &b"query"[..]));
}

#[test]
fn null_and_loop() {
    let (l, f) = sample("null/ipv4/tcp");
    assert_inner_tcp(&d(l, &f).unwrap());
    let (l, f) = sample("loop/ipv6/udp");
    assert_eq!(d(l, &f).unwrap().payload, b"query");
    // Big-endian AF_INET on DLT_NULL (a big-endian capturer) works too.
    let be = [&[0u8, 0, 0, 2][..], &inner_v4_tcp()].concat();
    assert_inner_tcp(&d(LinkType::Null, &be).unwrap());
    let other = [&[7u8, 0, 0, 0][..], &inner_v4_tcp()].concat();
    assert_eq!(d(LinkType::Null, &other), Err(DecodeError::NotIpFamily { family: 7 }));
}

#[test]
fn raw_ipv4_ipv6_link_types() {
    let v4 = inner_v4_tcp();
    assert_inner_tcp(&d(LinkType::Raw, &v4).unwrap());
    assert_inner_tcp(&d(LinkType::Ipv4, &v4).unwrap());
    assert!(matches!(d(LinkType::Ipv6, &v4), Err(DecodeError::Malformed { layer: "ipv6", .. })));
    let (_, v6) = sample("raw/ipv6/icmpv6");
    let p = d(LinkType::Ipv6, &v6).unwrap();
    assert_eq!(p.l4, L4::Icmp { v6: true, icmp_type: 129, code: 0, id: 7, seq: 8 });
    assert!(matches!(d(LinkType::Ipv4, &v6), Err(DecodeError::Malformed { layer: "ipv4", .. })));
    assert!(matches!(d(LinkType::Raw, &[0x50, 1, 2]), Err(DecodeError::Malformed { layer: "ip", .. })));
    assert!(matches!(d(LinkType::Raw, &[]), Err(DecodeError::Truncated { layer: "ip", .. })));
}

#[test]
fn icmp_echo() {
    let (l, f) = sample("eth/ipv4/icmp");
    let p = d(l, &f).unwrap();
    assert_eq!(p.l4, L4::Icmp { v6: false, icmp_type: 8, code: 0, id: 0x1234, seq: 9 });
    assert_eq!(p.payload, b"ping");
    // Non-echo messages carry no id/seq.
    let unreach = ipv4(1, &[3, 3, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    let p = d(LinkType::Raw, &unreach).unwrap();
    assert_eq!(p.l4, L4::Icmp { v6: false, icmp_type: 3, code: 3, id: 0, seq: 0 });
}

#[test]
fn ethernet_padding_is_trimmed() {
    let (l, f) = sample("eth/ipv4/tcp padded");
    assert_eq!(f.len(), 60);
    let p = d(l, &f).unwrap();
    assert!(p.payload.is_empty(), "padding must not look like TCP payload");
    assert_eq!((p.l3_len, p.l4_len, p.wire_len), (40, 20, 60));
    // Same for UDP over IPv6 with trailing bytes.
    let mut f = eth(0x86dd, &ipv6(17, &udp(1, 2, b"x")));
    f.extend_from_slice(&[0xee; 7]);
    assert_eq!(d(LinkType::Ethernet, &f).unwrap().payload, b"x");
}

#[test]
fn snaplen_truncated_payload_is_kept() {
    let f = eth_v4_tcp_opts();
    let p = d(LinkType::Ethernet, &f[..f.len() - 2]).unwrap();
    assert_eq!(p.payload, b"da");
    assert_eq!(p.l4_len, 64, "l4_len is what the IP header states");
}

#[test]
fn ipv4_total_length_zero_means_captured_length() {
    let mut f = inner_v4_tcp();
    f[2] = 0;
    f[3] = 0;
    let p = d(LinkType::Raw, &f).unwrap();
    assert_eq!((p.payload, p.l3_len), (&b"GET"[..], 43));
}

#[test]
fn ipv4_fragments() {
    let (l, f) = sample("ipv4 frag first");
    let p = d(l, &f).unwrap();
    assert_eq!(p.fragment, Some(Fragment { id: 77, offset: 0, more: true, protocol: 17 }));
    assert_eq!(p.l4, L4::Udp { src_port: 1000, dst_port: 4789 });
    assert_eq!(p.tunnel, None, "fragments are never decapsulated");
    assert_eq!(p.payload.len(), 24, "payload = fragment data from the UDP header on");
    assert_eq!(p.payload, &f[20..]);

    let (l, f) = sample("ipv4 frag middle");
    let p = d(l, &f).unwrap();
    assert_eq!(p.fragment, Some(Fragment { id: 77, offset: 24, more: true, protocol: 17 }));
    assert_eq!((p.l4, p.payload, p.ip_proto), (L4::None, &[0x42u8; 16][..], 17));

    // A first TCP fragment too short for the TCP header: still a fragment, l4 None.
    let short = ipv4_full(V4_A, V4_B, 5, 0x2000, 6, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let p = d(LinkType::Raw, &short).unwrap();
    assert_eq!((p.l4, p.payload.len()), (L4::None, 8));
    assert!(p.fragment.is_some());
}

#[test]
fn ipv6_last_fragment() {
    let (l, f) = sample("ipv6 frag last");
    let p = d(l, &f).unwrap();
    assert_eq!(p.fragment, Some(Fragment { id: 9, offset: 24, more: false, protocol: 6 }));
    assert_eq!((p.l4, p.payload, p.ip_proto), (L4::None, &[0x33u8; 10][..], 6));
    assert_eq!((p.l3_len, p.l4_len), (58, 10));
}

#[test]
fn ipv6_esp_and_no_next_stop() {
    let esp = ipv6(60, &[50, 0, 1, 4, 0, 0, 0, 0, 0xde, 0xad]);
    let p = d(LinkType::Raw, &esp).unwrap();
    assert_eq!((p.ip_proto, p.l4, p.payload), (50, L4::None, &[0xde, 0xad][..]));
    let nn = ipv6(59, &[]);
    let p = d(LinkType::Raw, &nn).unwrap();
    assert_eq!((p.ip_proto, p.l4, p.payload.len()), (59, L4::None, 0));
    let cut = ipv6(0, &[6, 1, 0, 0]); // HBH claims 16 bytes, 4 present
    assert!(matches!(d(LinkType::Raw, &cut), Err(DecodeError::Truncated { layer: "ipv6_ext", .. })));
}

#[test]
fn vxlan_tunnel() {
    let (l, f) = sample("vxlan");
    let p = d(l, &f).unwrap();
    assert_inner_tcp(&p);
    assert_eq!(p.tunnel, Some(Tunnel { kind: TunnelKind::Vxlan, id: 5001 }));
    // Legacy Linux port, and decapsulation off.
    let f = eth(0x0800, &ipv4_outer(17, &udp(1, 8472, &vxlan(7, &inner_eth_v4_tcp()))));
    assert_eq!(d(LinkType::Ethernet, &f).unwrap().tunnel, Some(Tunnel { kind: TunnelKind::Vxlan, id: 7 }));
    let off = DecodeConfig { decapsulate: false, ..DecodeConfig::default() };
    let p = decode(LinkType::Ethernet, &f, &off).unwrap();
    assert_eq!((p.tunnel, p.src, p.l4.ports()), (None, ip4(V4_OUT_A), (1, 8472)));
    // Without the I flag it is plain UDP.
    let mut nf = vxlan(7, &inner_eth_v4_tcp());
    nf[0] = 0;
    let f = eth(0x0800, &ipv4_outer(17, &udp(1, 4789, &nf)));
    let p = d(LinkType::Ethernet, &f).unwrap();
    assert_eq!((p.tunnel, p.l4.ports()), (None, (1, 4789)));
    // Inner ARP: not IP.
    let f = eth(0x0800, &ipv4_outer(17, &udp(1, 4789, &vxlan(7, &eth(0x0806, &[0; 28])))));
    assert_eq!(d(LinkType::Ethernet, &f), Err(DecodeError::NotIp { ethertype: 0x0806 }));
}

#[test]
fn geneve_with_options() {
    let (l, f) = sample("geneve+opts");
    let p = d(l, &f).unwrap();
    assert_inner_tcp(&p);
    assert_eq!(p.tunnel, Some(Tunnel { kind: TunnelKind::Geneve, id: 0xabcdef }));
    // Geneve carrying IPv4 directly.
    let f = ipv4_outer(17, &udp(1, 6081, &geneve(3, 0x0800, &[], &inner_v4_tcp())));
    let p = d(LinkType::Raw, &f).unwrap();
    assert_inner_tcp(&p);
    // Unknown protocol type: left as UDP.
    let f = ipv4_outer(17, &udp(1, 6081, &geneve(3, 0x0806, &[], &[0; 28])));
    assert_eq!(d(LinkType::Raw, &f).unwrap().tunnel, None);
}

#[test]
fn gre_tunnels() {
    let (l, f) = sample("gre+key");
    let p = d(l, &f).unwrap();
    assert_inner_tcp(&p);
    assert_eq!(p.tunnel, Some(Tunnel { kind: TunnelKind::Gre, id: 1000 }));
    let (l, f) = sample("gre/teb");
    let p = d(l, &f).unwrap();
    assert_inner_tcp(&p);
    assert_eq!(p.tunnel, Some(Tunnel { kind: TunnelKind::Gre, id: 0 }));
    // GRE with checksum + IPv6 inside.
    let mut g = vec![0x80, 0, 0x86, 0xdd, 0, 0, 0, 0];
    g.extend_from_slice(&ipv6(17, &udp(1, 2, b"z")));
    let f = ipv4_outer(47, &g);
    let p = d(LinkType::Raw, &f).unwrap();
    assert_eq!((p.src, p.payload), (ip6(1), &b"z"[..]));
    // PPTP (version 1) and unknown protocol types are not decapsulated.
    let pptp = [0x30, 0x01, 0x88, 0x0b, 0, 4, 0, 1, 0, 0, 0, 1, 0xff, 0x03, 0, 0x21];
    let f = ipv4_outer(47, &pptp);
    let p = d(LinkType::Raw, &f).unwrap();
    assert_eq!((p.tunnel, p.ip_proto, p.l4, p.payload), (None, 47, L4::None, &pptp[..]));
    // Decapsulation off: the outer packet.
    let off = DecodeConfig { decapsulate: false, ..DecodeConfig::default() };
    let (l, f) = sample("gre+key");
    let p = decode(l, &f, &off).unwrap();
    assert_eq!((p.tunnel, p.ip_proto, p.src), (None, 47, ip4(V4_OUT_A)));
}

#[test]
fn erspan_types() {
    let (l, f) = sample("erspan1");
    let p = d(l, &f).unwrap();
    assert_inner_tcp(&p);
    assert_eq!(p.tunnel, Some(Tunnel { kind: TunnelKind::Erspan, id: 0 }));
    let (l, f) = sample("erspan2");
    let p = d(l, &f).unwrap();
    assert_inner_tcp(&p);
    assert_eq!(p.tunnel, Some(Tunnel { kind: TunnelKind::Erspan, id: 0x155 }));
    let (l, f) = sample("erspan3");
    let p = d(l, &f).unwrap();
    assert_inner_tcp(&p);
    assert_eq!(p.tunnel, Some(Tunnel { kind: TunnelKind::Erspan, id: 0x2aa }));
    // Type III without the platform subheader.
    let f = ipv4_outer(47, &gre(None, Some(1), 0x22eb, &erspan3(9, false, &inner_eth_v4_tcp())));
    assert_inner_tcp(&d(LinkType::Raw, &f).unwrap());
}

#[test]
fn mpls_two_labels() {
    let (l, f) = sample("mpls x2");
    let p = d(l, &f).unwrap();
    assert_inner_tcp(&p);
    assert_eq!(p.tunnel, Some(Tunnel { kind: TunnelKind::Mpls, id: 16 }));
    // Pseudowire control word + Ethernet.
    let pw = [&[0u8, 0, 0, 0][..], &inner_eth_v4_tcp()].concat();
    let f = eth(0x8847, &mpls(&[100], &pw));
    assert_inner_tcp(&d(LinkType::Ethernet, &f).unwrap());
    // MPLS in GRE: GRE is the outermost tunnel.
    let f = ipv4_outer(47, &gre(Some(5), None, 0x8847, &mpls(&[20], &inner_v4_tcp())));
    let p = d(LinkType::Raw, &f).unwrap();
    assert_inner_tcp(&p);
    assert_eq!(p.tunnel, Some(Tunnel { kind: TunnelKind::Gre, id: 5 }));
    let bad = eth(0x8847, &mpls(&[16], &[0x90, 0, 0, 0]));
    assert!(matches!(d(LinkType::Ethernet, &bad), Err(DecodeError::Malformed { layer: "mpls", .. })));
}

#[test]
fn ip_in_ip() {
    let (l, f) = sample("ipip");
    let p = d(l, &f).unwrap();
    assert_inner_tcp(&p);
    assert_eq!(p.tunnel, Some(Tunnel { kind: TunnelKind::IpIp, id: 0 }));
    let (l, f) = sample("6in4");
    let p = d(l, &f).unwrap();
    assert_eq!((p.src, p.dst, p.ip_proto, p.payload), (ip6(1), ip6(2), 17, &b"query"[..]));
    assert_eq!(p.tunnel, Some(Tunnel { kind: TunnelKind::IpIp, id: 0 }));
    let (l, f) = sample("ip6ip6");
    let p = d(l, &f).unwrap();
    assert_eq!((p.src, p.ttl, p.payload), (ip6(1), 63, &b"query"[..]));
    assert_eq!(p.tunnel, Some(Tunnel { kind: TunnelKind::IpIp, id: 0 }));
}

#[test]
fn outermost_tunnel_and_innermost_vlan() {
    // VXLAN(vni 9) / Ethernet / VLAN 300 / GRE(key 4) / IPv4 / TCP, outer VLAN 10.
    let inner = eth(0x8100, &vlan(300, 0x0800, &ipv4_outer(47, &gre(Some(4), None, 0x0800, &inner_v4_tcp()))));
    let f = eth(0x8100, &vlan(10, 0x0800, &ipv4_outer(17, &udp(1, 4789, &vxlan(9, &inner)))));
    let p = d(LinkType::Ethernet, &f).unwrap();
    assert_inner_tcp(&p);
    assert_eq!(p.tunnel, Some(Tunnel { kind: TunnelKind::Vxlan, id: 9 }));
    assert_eq!(p.vlan, Some(300));
}

#[test]
fn tunnel_depth_limit() {
    let mut f = inner_v4_tcp();
    for _ in 0..4 {
        f = ipv4_outer(4, &f);
    }
    assert_inner_tcp(&d(LinkType::Raw, &f).unwrap());
    let five = ipv4_outer(4, &f);
    assert_eq!(d(LinkType::Raw, &five), Err(DecodeError::TooDeep));
    let cfg = DecodeConfig { max_tunnel_depth: 5, ..DecodeConfig::default() };
    assert_inner_tcp(&decode(LinkType::Raw, &five, &cfg).unwrap());
    // A very deep nest with the largest limit neither overflows the stack nor panics.
    let cfg = DecodeConfig { max_tunnel_depth: u8::MAX, ..DecodeConfig::default() };
    let mut deep = vec![0x60, 0, 0, 0, 0, 0, 59, 1];
    deep.extend_from_slice(&[0; 32]);
    for _ in 0..300 {
        deep = ipv6(41, &deep);
    }
    assert_eq!(decode(LinkType::Raw, &deep, &cfg), Err(DecodeError::TooDeep));
}

#[test]
fn non_ip_frames() {
    assert_eq!(d(LinkType::Ethernet, &eth(0x0806, &[0; 28])), Err(DecodeError::NotIp { ethertype: 0x0806 }));
    assert_eq!(d(LinkType::Ethernet, &eth(0x88cc, &[0; 28])), Err(DecodeError::NotIp { ethertype: 0x88cc }));
    let f = eth(0x8100, &vlan(5, 0x0806, &[0; 28]));
    assert_eq!(d(LinkType::Ethernet, &f), Err(DecodeError::NotIp { ethertype: 0x0806 }));
    let mut sll = vec![0u8; 14];
    sll.extend_from_slice(&[0x00, 0x04]); // ETH_P_802_2
    assert_eq!(d(LinkType::LinuxSll, &sll), Err(DecodeError::NotIp { ethertype: 4 }));
}

#[test]
fn unknown_ip_protocol_is_not_an_error() {
    let f = ipv4(132, b"sctp");
    let p = d(LinkType::Raw, &f).unwrap();
    assert_eq!((p.ip_proto, p.l4, p.payload), (132, L4::None, &b"sctp"[..]));
}

#[test]
fn truncated_tcp_header_fails() {
    let f = inner_v4_tcp();
    let cut = &f[..30];
    // IPv4 header intact, TCP cut at 10 bytes.
    assert_eq!(d(LinkType::Raw, cut), Err(DecodeError::Truncated { layer: "tcp", need: 20, have: 10 }));
}

#[test]
fn decode_transport_after_reassembly() {
    // First fragment of a UDP/VXLAN datagram, then the reassembled payload.
    let datagram = udp(1000, 4789, &vxlan(77, &inner_eth_v4_tcp()));
    let first = ipv4_full(V4_OUT_A, V4_OUT_B, 3, 0x2000, 17, &datagram[..24]);
    let mut p = d(LinkType::Raw, &first).unwrap();
    assert_eq!(p.fragment.map(|f| f.protocol), Some(17));
    assert_eq!((p.tunnel, p.l3_len, p.l4_len), (None, 44, 24));
    decode_transport(&mut p, 17, &datagram, &DecodeConfig::default()).unwrap();
    assert_inner_tcp(&p);
    assert_eq!(p.tunnel, Some(Tunnel { kind: TunnelKind::Vxlan, id: 77 }));

    // Plain TCP: l4_len = data.len(), l3_len = header + data.
    let seg = tcp(1, 2, TcpFlags::ACK, &[1, 1, 1, 1], &[9; 100]);
    let first = ipv4_full(V4_A, V4_B, 4, 0x2000, 6, &seg[..48]);
    let mut p = d(LinkType::Raw, &first).unwrap();
    decode_transport(&mut p, 6, &seg, &DecodeConfig::default()).unwrap();
    assert_eq!((p.fragment, p.l4_len, p.l3_len), (None, 124, 144));
    assert_eq!((p.l4.ports(), p.payload), ((1, 2), &[9u8; 100][..]));

    // IPv6: extension headers after the fragment header are walked.
    let mut data = vec![6, 0, 1, 4, 0, 0, 0, 0];
    data.extend_from_slice(&seg);
    let mut p = Packet { src: ip6(1), dst: ip6(2), ..Packet::default() };
    decode_transport(&mut p, 60, &data, &DecodeConfig::default()).unwrap();
    assert_eq!((p.ip_proto, p.l4.ports(), p.payload.len()), (6, (1, 2), 100));

    // Errors leave the packet alone.
    let before = p;
    assert!(decode_transport(&mut p, 6, &seg[..10], &DecodeConfig::default()).is_err());
    assert_eq!(p, before);
}

#[test]
fn every_truncation_of_every_sample() {
    let cfg = DecodeConfig::default();
    for (name, link, f) in samples() {
        let full = decode(link, &f, &cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
        for n in 0..f.len() {
            match decode(link, &f[..n], &cfg) {
                // A shorter capture may decode, with a payload that is a prefix of the full one.
                Ok(p) => {
                    assert_eq!(p.wire_len as usize, n);
                    if p.tunnel == full.tunnel && p.fragment == full.fragment {
                        assert!(full.payload.starts_with(p.payload), "{name} @ {n}");
                    }
                }
                Err(e) => {
                    assert!(!e.kind().is_empty() && !e.layer().is_empty());
                    assert!(!e.to_string().is_empty());
                }
            }
            for proto in [6, 17, 1, 58, 4, 41, 47, 137, 0, 60] {
                let mut p = full;
                let _ = decode_transport(&mut p, proto, &f[..n], &cfg);
            }
        }
    }
}

#[test]
fn every_sample_decodes_under_every_link_type() {
    // Wrong link types must fail cleanly, not panic.
    for (_, _, f) in samples() {
        for link in LinkType::ALL {
            let _ = d(link, &f);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Randomized: never panic
// ---------------------------------------------------------------------------------------------

fn pt_config(seed: u64) -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Overwrite(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Overwrite(i, v)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Insert(i, v)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

fn mutate(mut f: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = f.len();
        match *m {
            Mutation::Flip(i, b) if len > 0 => f[i % len] ^= 1 << b,
            Mutation::Overwrite(i, v) if len > 0 => f[i % len] = v,
            Mutation::Insert(i, v) => f.insert(i % (len + 1), v),
            Mutation::Delete(i) if len > 0 => {
                f.remove(i % len);
            }
            _ => {}
        }
    }
    f
}

const LINKS: [LinkType; 8] = LinkType::ALL;
const TRANSPORT_PROTOS: [u8; 16] = [6, 17, 1, 58, 4, 41, 47, 137, 0, 43, 44, 60, 51, 50, 59, 132];

/// Small configs so random inputs hit the tunnel ports and the depth limit.
fn configs() -> [DecodeConfig; 3] {
    let small = DecodeConfig { max_tunnel_depth: 1, ..DecodeConfig::default() };
    let off = DecodeConfig { decapsulate: false, ..DecodeConfig::default() };
    [DecodeConfig::default(), small, off]
}

proptest! {
    #![proptest_config(pt_config(0x5eed_0001))]
    #[test]
    fn random_bytes_every_link_type(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        for link in LINKS {
            for cfg in configs() {
                let _ = decode(link, &data, &cfg);
            }
        }
    }
}

proptest! {
    #![proptest_config(pt_config(0x5eed_0002))]
    #[test]
    fn random_bytes_after_valid_ip_header(
        v6 in any::<bool>(),
        proto in any::<u8>(),
        data in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        // A valid IP header over random transport bytes reaches deeper than pure noise.
        let f = if v6 { ipv6(proto, &data) } else { ipv4(proto, &data) };
        for cfg in configs() {
            let _ = decode(LinkType::Raw, &f, &cfg);
        }
    }
}

proptest! {
    #![proptest_config(pt_config(0x5eed_0003))]
    #[test]
    fn mutated_samples_decode(
        which in any::<usize>(),
        muts in proptest::collection::vec(mutation(), 1..8),
    ) {
        let all = samples();
        let (_, link, f) = &all[which % all.len()];
        let m = mutate(f.clone(), &muts);
        for cfg in configs() {
            if let Ok(p) = decode(*link, &m, &cfg) {
                prop_assert_eq!(p.wire_len as usize, m.len());
            }
        }
    }
}

proptest! {
    #![proptest_config(pt_config(0x5eed_0004))]
    #[test]
    fn mutated_samples_decode_transport(
        which in any::<usize>(),
        proto in 0usize..TRANSPORT_PROTOS.len() + 1,
        skip in any::<usize>(),
        muts in proptest::collection::vec(mutation(), 0..8),
    ) {
        let all = samples();
        let (_, link, f) = &all[which % all.len()];
        let base = decode(*link, f, &DecodeConfig::default()).unwrap();
        // Feed a mutated tail of the sample as a "reassembled datagram".
        let m = mutate(f.clone(), &muts);
        let tail = &m[skip % (m.len() + 1)..];
        let proto = TRANSPORT_PROTOS.get(proto).copied().unwrap_or((skip >> 8) as u8);
        for cfg in configs() {
            let mut p = base;
            if decode_transport(&mut p, proto, tail, &cfg).is_ok() {
                prop_assert_eq!(p.fragment, None);
            }
        }
    }
}

proptest! {
    #![proptest_config(pt_config(0x5eed_0005))]
    #[test]
    fn random_bytes_decode_transport(
        v6 in any::<bool>(),
        proto in any::<u8>(),
        data in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let src = if v6 { ip6(1) } else { ip4(V4_A) };
        for cfg in configs() {
            let mut p = Packet { src, l3_len: 20, ..Packet::default() };
            if decode_transport(&mut p, proto, &data, &cfg).is_ok() && p.tunnel.is_none() {
                prop_assert_eq!(p.l4_len as usize, data.len());
            }
        }
    }
}

/// A long deterministic mutation storm on top of the proptests: stacked mutations (up to 16)
/// of every sample, through every config, `decode` and `decode_transport`.
#[test]
fn xorshift_mutation_storm() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let all = samples();
    let cfgs = configs();
    for i in 0..50_000usize {
        let (_, link, f) = &all[i % all.len()];
        let mut m = f.clone();
        for _ in 0..1 + next() % 16 {
            let r = next();
            let pos = (r >> 8) as usize;
            let val = (r >> 40) as u8;
            let len = m.len();
            match r % 4 {
                0 if len > 0 => m[pos % len] ^= 1 << (val % 8),
                1 if len > 0 => m[pos % len] = val,
                2 => m.insert(pos % (len + 1), val),
                3 if len > 0 => {
                    m.remove(pos % len);
                }
                _ => {}
            }
        }
        let cfg = &cfgs[i % cfgs.len()];
        let _ = decode(*link, &m, cfg);
        let _ = decode(LINKS[(next() % 8) as usize], &m, cfg);
        let mut p = Packet { src: if i % 2 == 0 { ip6(1) } else { ip4(V4_A) }, ..Packet::default() };
        let cut = (next() as usize) % (m.len() + 1);
        let _ = decode_transport(&mut p, TRANSPORT_PROTOS[i % TRANSPORT_PROTOS.len()], &m[cut..], cfg);
    }
}
