//! Zero-copy, length-checked views of wire formats, and [`decode`], which turns one captured
//! frame into a [`Packet`](crate::packet::Packet).
//!
//! Each header type is a smoltcp-style view `Foo<T: AsRef<[u8]>>`: `Foo::new_checked(buf)`
//! validates the length (and the fields that define it) once, after which every accessor is
//! a plain, non-panicking read and `payload()` (on borrowed buffers) returns the bytes that
//! follow, borrowed for the buffer's lifetime. Nothing here allocates or copies, and no input
//! makes anything here panic.
//!
//! | layer | view |
//! | --- | --- |
//! | link | [`EthernetFrame`], [`VlanTag`], [`SllHeader`], [`Sll2Header`], [`NullHeader`] |
//! | network | [`Ipv4Packet`], [`Ipv6Packet`], [`Ipv6ExtHeader`], [`Ipv6FragmentHeader`] ([`walk_extensions`]) |
//! | transport | [`TcpPacket`] ([`TcpOptionIter`]), [`UdpPacket`], [`IcmpPacket`] |
//! | tunnels | [`VxlanPacket`], [`GenevePacket`], [`GrePacket`], [`Erspan2Header`], [`Erspan3Header`], [`MplsLabel`] ([`walk_stack`]) |

pub mod bytes;
mod config;
mod decode;
mod error;
mod erspan;
mod ethernet;
mod geneve;
mod gre;
mod icmp;
mod ipv4;
mod ipv6;
mod link;
mod mpls;
mod null;
mod sll;
mod tcp;
mod udp;
mod vlan;
mod vxlan;

#[cfg(test)]
mod tests;

pub use config::{DecodeConfig, PortSet};
pub use decode::{decode, decode_transport};
pub use error::DecodeError;
pub use erspan::{Erspan2Header, Erspan3Header};
pub use ethernet::{EthernetFrame, ethertype};
pub use geneve::GenevePacket;
pub use gre::GrePacket;
pub use icmp::{ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, IcmpPacket};
pub use ipv4::Ipv4Packet;
pub use ipv6::{
    Ipv6ExtChain, Ipv6ExtHeader, Ipv6FragmentHeader, Ipv6FragmentInfo, Ipv6Packet, next_header, walk_extensions,
};
pub use link::LinkType;
pub use mpls::{MplsLabel, MplsStack, walk_stack};
pub use null::{AF_INET, AF_INET6, NullHeader};
pub use sll::{Sll2Header, SllHeader};
pub use tcp::{TcpOption, TcpOptionIter, TcpPacket, parse_options};
pub use udp::UdpPacket;
pub use vlan::VlanTag;
pub use vxlan::VxlanPacket;
