//! [`DecodeConfig`]: what [`decode`](super::decode) treats as a tunnel.

/// A small fixed-capacity set of UDP ports, checked with a linear scan of at most
/// [`PortSet::CAPACITY`] entries (cheaper than hashing for a handful of ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSet {
    ports: [u16; PortSet::CAPACITY],
    len: u8,
}

impl PortSet {
    /// Most ports a set holds.
    pub const CAPACITY: usize = 8;

    /// The empty set.
    pub const fn new() -> Self {
        PortSet { ports: [0; Self::CAPACITY], len: 0 }
    }

    /// A set of the given ports. Ports beyond [`PortSet::CAPACITY`] distinct ones are ignored.
    pub fn from_ports(ports: &[u16]) -> Self {
        let mut s = Self::new();
        for &p in ports {
            s.insert(p);
        }
        s
    }

    /// Adds `port`; false if the set is full (the port is then not added).
    pub fn insert(&mut self, port: u16) -> bool {
        if self.contains(port) {
            return true;
        }
        match self.ports.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = port;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// Removes every port.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// True when `port` is in the set.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.as_slice().contains(&port)
    }

    /// The ports in insertion order.
    #[inline]
    pub fn as_slice(&self) -> &[u16] {
        self.ports.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// True when the set holds no port.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for PortSet {
    fn default() -> Self {
        Self::new()
    }
}

/// How [`decode`](super::decode) handles tunnels. Plain data, cheap to consult per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeConfig {
    /// UDP destination ports carrying VXLAN (default 4789 and Linux's legacy 8472).
    pub vxlan_ports: PortSet,
    /// UDP destination ports carrying Geneve (default 6081).
    pub geneve_ports: PortSet,
    /// Look inside tunnels (VXLAN, Geneve, GRE/ERSPAN, IP-in-IP, MPLS in IP). When false the
    /// outer packet is reported as is. MPLS directly on the link layer is always followed:
    /// without it there would be no IP header at all.
    pub decapsulate: bool,
    /// Most tunnels nested inside each other; deeper packets fail with
    /// [`DecodeError::TooDeep`](super::DecodeError::TooDeep).
    pub max_tunnel_depth: u8,
}

impl DecodeConfig {
    /// Default VXLAN ports: IANA 4789 and the Linux kernel's legacy 8472.
    pub const DEFAULT_VXLAN_PORTS: [u16; 2] = [4789, 8472];
    /// Default Geneve port (IANA).
    pub const DEFAULT_GENEVE_PORT: u16 = 6081;
    /// Default tunnel nesting limit.
    pub const DEFAULT_MAX_TUNNEL_DEPTH: u8 = 4;
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            vxlan_ports: PortSet::from_ports(&Self::DEFAULT_VXLAN_PORTS),
            geneve_ports: PortSet::from_ports(&[Self::DEFAULT_GENEVE_PORT]),
            decapsulate: true,
            max_tunnel_depth: Self::DEFAULT_MAX_TUNNEL_DEPTH,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = DecodeConfig::default();
        assert_eq!(c.vxlan_ports.as_slice(), &[4789, 8472]);
        assert_eq!(c.geneve_ports.as_slice(), &[6081]);
        assert!(c.decapsulate);
        assert_eq!(c.max_tunnel_depth, 4);
        assert!(!c.vxlan_ports.contains(0));
        assert!(!c.vxlan_ports.contains(6081));
    }

    #[test]
    fn port_set_capacity() {
        let mut s = PortSet::new();
        assert!(s.is_empty());
        for p in 1..=8 {
            assert!(s.insert(p));
        }
        assert!(s.insert(3), "already present");
        assert!(!s.insert(9), "full");
        assert!(s.contains(8) && !s.contains(9) && !s.contains(0));
        s.clear();
        assert!(!s.contains(1));
    }
}
