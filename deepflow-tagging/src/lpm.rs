//! CIDRs and a compact longest-prefix-match table for IPv4 and IPv6.
//!
//! The table is a sorted array of prefixes (`start`, `end`, parent index), built once and then
//! read-only: a lookup is one binary search plus, when the address falls in a gap after a nested
//! prefix, a short walk up the parent chain. CIDRs are either nested or disjoint, which makes this
//! exact. 16 bytes per IPv4 prefix, 40 per IPv6 prefix; no trie nodes, no heap per lookup.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network: an address with its host bits cleared, and a prefix length. IPv4-mapped IPv6
/// networks (`::ffff:10.0.0.0/104`) are stored as the IPv4 network they denote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// A network from an address and prefix length; host bits are cleared. Errors when the length
    /// exceeds 32 (IPv4) or 128 (IPv6).
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, String> {
        match addr {
            IpAddr::V4(a) => {
                if len > 32 {
                    return Err(format!("prefix length {len} > 32 for IPv4"));
                }
                let bits = u32::from(a) & mask32(len);
                Ok(Cidr { addr: IpAddr::V4(Ipv4Addr::from(bits)), len })
            }
            IpAddr::V6(a) => {
                if len > 128 {
                    return Err(format!("prefix length {len} > 128 for IPv6"));
                }
                if let Some(v4) = a.to_ipv4_mapped()
                    && len >= 96
                {
                    return Cidr::new(IpAddr::V4(v4), len - 96);
                }
                let bits = u128::from(a) & mask128(len);
                Ok(Cidr { addr: IpAddr::V6(Ipv6Addr::from(bits)), len })
            }
        }
    }

    /// A single-address network (/32 or /128).
    pub fn host(ip: IpAddr) -> Self {
        let ip = normalize(ip);
        Cidr { addr: ip, len: if ip.is_ipv4() { 32 } else { 128 } }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// True when `ip` is inside this network (IPv4-mapped IPv6 addresses match IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, normalize(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a) & mask32(self.len) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & mask128(self.len) == u128::from(n),
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Parses `10.0.0.0/8`, `fd00::/8`, or a bare address (a /32 or /128).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| format!("invalid CIDR {s:?}: bad address {a:?}"))?;
        let len = match l {
            Some(l) => l.parse::<u8>().map_err(|_| format!("invalid CIDR {s:?}: bad prefix length {l:?}"))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Cidr::new(addr, len).map_err(|e| format!("invalid CIDR {s:?}: {e}"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Maps IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) to IPv4; returns others unchanged.
#[inline]
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// A 128-bit key for an address after [`normalize`]: IPv4 addresses as IPv4-mapped IPv6. Used as
/// a compact hash key for exact IP maps.
#[inline]
pub fn ip_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

#[inline]
fn mask32(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) }
}

#[inline]
fn mask128(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) }
}

const NO_PARENT: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Ranges<A> {
    start: Vec<A>,
    end: Vec<A>,
    parent: Vec<u32>,
    value: Vec<u32>,
}

impl<A: Copy + Ord> Ranges<A> {
    fn empty() -> Self {
        Ranges { start: Vec::new(), end: Vec::new(), parent: Vec::new(), value: Vec::new() }
    }

    /// `items`: (start, end, prefix len, insertion order, value index).
    fn build(mut items: Vec<(A, A, u8, usize, u32)>) -> Self {
        // Bigger networks first for equal starts; the last inserted first for duplicates.
        items.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)).then(b.3.cmp(&a.3)));
        items.dedup_by(|later, earlier| later.0 == earlier.0 && later.2 == earlier.2);
        let mut r = Ranges::empty();
        let mut stack: Vec<u32> = Vec::new();
        for (i, (s, e, _, _, v)) in items.into_iter().enumerate() {
            while let Some(&top) = stack.last() {
                if r.end.get(top as usize).is_some_and(|&e| e < s) {
                    stack.pop();
                } else {
                    break;
                }
            }
            r.parent.push(stack.last().copied().unwrap_or(NO_PARENT));
            r.start.push(s);
            r.end.push(e);
            r.value.push(v);
            stack.push(i as u32);
        }
        r
    }

    #[inline]
    fn lookup(&self, a: A) -> Option<u32> {
        let n = self.start.partition_point(|&s| s <= a);
        if n == 0 {
            return None;
        }
        let mut i = (n - 1) as u32;
        loop {
            let iu = i as usize;
            if *self.end.get(iu)? >= a {
                return self.value.get(iu).copied();
            }
            i = *self.parent.get(iu)?;
            if i == NO_PARENT {
                return None;
            }
        }
    }
}

/// A longest-prefix-match table from [`Cidr`]s to values, for IPv4 and IPv6 together. Build it
/// with [`LpmBuilder`]. IPv4-mapped IPv6 addresses are looked up as IPv4.
#[derive(Debug, Clone)]
pub struct LpmTable<T> {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
    values: Vec<(T, u8)>,
}

impl<T> Default for LpmTable<T> {
    fn default() -> Self {
        LpmTable { v4: Ranges::empty(), v6: Ranges::empty(), values: Vec::new() }
    }
}

impl<T> LpmTable<T> {
    /// The value of the most specific network containing `ip`.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<&T> {
        self.lookup_with_len(ip).map(|(v, _)| v)
    }

    /// Like [`LpmTable::lookup`], also returning the matched prefix length.
    #[inline]
    pub fn lookup_with_len(&self, ip: IpAddr) -> Option<(&T, u8)> {
        let i = match normalize(ip) {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a))?,
            IpAddr::V6(a) => self.v6.lookup(u128::from(a))?,
        };
        self.values.get(i as usize).map(|(v, l)| (v, *l))
    }

    /// Number of distinct networks.
    pub fn len(&self) -> usize {
        self.v4.start.len() + self.v6.start.len()
    }

    /// True when the table has no network.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Collects networks for an [`LpmTable`]. Inserting the same network twice keeps the last value.
#[derive(Debug, Clone)]
pub struct LpmBuilder<T> {
    entries: Vec<(Cidr, T)>,
}

impl<T> Default for LpmBuilder<T> {
    fn default() -> Self {
        LpmBuilder { entries: Vec::new() }
    }
}

impl<T> LpmBuilder<T> {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a network.
    pub fn insert(&mut self, cidr: Cidr, value: T) -> &mut Self {
        self.entries.push((cidr, value));
        self
    }

    /// Builds the read-only table.
    pub fn build(self) -> LpmTable<T> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut values = Vec::with_capacity(self.entries.len());
        for (order, (c, v)) in self.entries.into_iter().enumerate() {
            let idx = values.len() as u32;
            values.push((v, c.len));
            match c.addr {
                IpAddr::V4(a) => {
                    let s = u32::from(a);
                    v4.push((s, s | !mask32(c.len), c.len, order, idx));
                }
                IpAddr::V6(a) => {
                    let s = u128::from(a);
                    v6.push((s, s | !mask128(c.len), c.len, order, idx));
                }
            }
        }
        LpmTable { v4: Ranges::build(v4), v6: Ranges::build(v6), values }
    }
}

impl<T> FromIterator<(Cidr, T)> for LpmTable<T> {
    fn from_iter<I: IntoIterator<Item = (Cidr, T)>>(iter: I) -> Self {
        LpmBuilder { entries: iter.into_iter().collect() }.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_normalize() {
        assert_eq!(c("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(c("10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(c("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!(c("fd00::1/8").to_string(), "fd00::/8");
        assert!("10.0.0.0/33".parse::<Cidr>().unwrap_err().contains("33"));
        assert!("::/129".parse::<Cidr>().is_err());
        assert!("10.0.0/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
        assert!(c("0.0.0.0/0").contains(ip("255.255.255.255")));
        assert!(!c("0.0.0.0/0").contains(ip("::1")));
        assert!(c("10.0.0.0/8").contains(ip("::ffff:10.9.9.9")));
    }

    #[test]
    fn lpm_edges() {
        let t: LpmTable<&str> = [
            (c("0.0.0.0/0"), "default4"),
            (c("10.0.0.0/8"), "ten"),
            (c("10.1.0.0/16"), "ten-one"),
            (c("10.1.2.0/24"), "ten-one-two"),
            (c("10.1.2.3/32"), "host"),
            (c("10.2.0.0/16"), "ten-two"),
            (c("::/0"), "default6"),
            (c("fd00::/8"), "ula"),
            (c("fd00:1::/32"), "ula1"),
            (c("fd00:1::5/128"), "host6"),
        ]
        .into_iter()
        .collect();
        let l = |s: &str| t.lookup(ip(s)).copied();
        assert_eq!(l("10.1.2.3"), Some("host"));
        assert_eq!(l("10.1.2.4"), Some("ten-one-two"));
        assert_eq!(l("10.1.3.1"), Some("ten-one"));
        // in a gap after a nested prefix: walk up parents
        assert_eq!(l("10.1.255.255"), Some("ten-one"));
        assert_eq!(l("10.3.0.0"), Some("ten"));
        assert_eq!(l("10.2.0.0"), Some("ten-two"));
        assert_eq!(l("11.0.0.0"), Some("default4"));
        assert_eq!(l("0.0.0.0"), Some("default4"));
        assert_eq!(l("255.255.255.255"), Some("default4"));
        assert_eq!(l("::ffff:10.1.2.3"), Some("host"));
        assert_eq!(l("fd00:1::5"), Some("host6"));
        assert_eq!(l("fd00:1::6"), Some("ula1"));
        assert_eq!(l("fd00:2::"), Some("ula"));
        assert_eq!(l("2001:db8::1"), Some("default6"));
        assert_eq!(l("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), Some("default6"));
        assert_eq!(t.lookup_with_len(ip("10.1.2.9")).map(|x| x.1), Some(24));
    }

    #[test]
    fn lpm_no_default_and_duplicates() {
        let mut b = LpmBuilder::new();
        b.insert(c("192.168.0.0/16"), 1).insert(c("192.168.0.0/16"), 2).insert(c("192.168.10.0/24"), 3);
        let t = b.build();
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(ip("192.168.1.1")), Some(&2), "last duplicate wins");
        assert_eq!(t.lookup(ip("192.168.10.1")), Some(&3));
        assert_eq!(t.lookup(ip("192.167.255.255")), None);
        assert_eq!(t.lookup(ip("192.169.0.0")), None);
        assert_eq!(t.lookup(ip("::1")), None);
        let empty: LpmTable<u8> = LpmBuilder::new().build();
        assert!(empty.is_empty());
        assert_eq!(empty.lookup(ip("1.1.1.1")), None);
    }

    #[test]
    fn lpm_matches_brute_force() {
        // pseudo-random laminar-or-not set of prefixes checked against a linear scan
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut nets = Vec::new();
        for i in 0..300u32 {
            let a = (next() as u32) & 0x0AFF_FFFF;
            let len = (next() % 33) as u8;
            nets.push((Cidr::new(IpAddr::V4(Ipv4Addr::from(a)), len).unwrap(), i));
        }
        let t: LpmTable<u32> = nets.iter().copied().collect();
        for _ in 0..20000 {
            let a = IpAddr::V4(Ipv4Addr::from((next() as u32) & 0x0AFF_FFFF));
            let want =
                nets.iter().filter(|(n, _)| n.contains(a)).max_by_key(|(n, i)| (n.prefix_len(), *i)).map(|(_, i)| *i);
            assert_eq!(t.lookup(a).copied(), want, "{a}");
        }
    }
}
