//! [`LinkType`]: the data link types [`decode`](super::decode) understands, and their libpcap
//! DLT numbers.

use super::DecodeError;

/// The data link type of a capture: what the first byte of every frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II (DLT_EN10MB), with any number of 802.1Q/802.1ad VLAN tags.
    Ethernet,
    /// Raw IP, IPv4 or IPv6 told apart by the version nibble (DLT_RAW).
    Raw,
    /// Raw IPv4 only (DLT_IPV4).
    Ipv4,
    /// Raw IPv6 only (DLT_IPV6).
    Ipv6,
    /// Linux "cooked" capture v1, 16-byte header (DLT_LINUX_SLL).
    LinuxSll,
    /// Linux "cooked" capture v2, 20-byte header (DLT_LINUX_SLL2).
    LinuxSll2,
    /// BSD loopback: 4-byte address family in the capturing host's byte order (DLT_NULL).
    Null,
    /// OpenBSD loopback: 4-byte address family in network byte order (DLT_LOOP).
    Loop,
}

impl LinkType {
    /// The link type of a libpcap DLT / pcap LINKTYPE value, if supported:
    /// 0 NULL, 1 EN10MB, 12/14/101 RAW, 108 LOOP, 113 LINUX_SLL, 228 IPV4, 229 IPV6,
    /// 276 LINUX_SLL2.
    #[inline]
    pub fn from_dlt(dlt: u32) -> Option<LinkType> {
        Some(match dlt {
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::Raw,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            _ => return None,
        })
    }

    /// Like [`LinkType::from_dlt`], with [`DecodeError::UnsupportedLink`] for unknown values.
    #[inline]
    pub fn try_from_dlt(dlt: u32) -> Result<LinkType, DecodeError> {
        Self::from_dlt(dlt).ok_or(DecodeError::UnsupportedLink { dlt })
    }

    /// The libpcap DLT value of this link type (`Raw` maps to DLT_RAW = 12, the value Linux
    /// libpcap reports; `from_dlt` also accepts 14 and the pcap-file LINKTYPE_RAW 101).
    #[inline]
    pub fn to_dlt(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::Raw => 12,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Null => 0,
            LinkType::Loop => 108,
        }
    }

    /// Every link type, for tests and tools.
    pub const ALL: [LinkType; 8] = [
        LinkType::Ethernet,
        LinkType::Raw,
        LinkType::Ipv4,
        LinkType::Ipv6,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Null,
        LinkType::Loop,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlt_round_trip() {
        for l in LinkType::ALL {
            assert_eq!(LinkType::from_dlt(l.to_dlt()), Some(l));
        }
        assert_eq!(LinkType::from_dlt(14), Some(LinkType::Raw));
        assert_eq!(LinkType::from_dlt(101), Some(LinkType::Raw));
        assert_eq!(LinkType::from_dlt(0), Some(LinkType::Null));
        assert_eq!(LinkType::from_dlt(108), Some(LinkType::Loop));
        assert_eq!(LinkType::from_dlt(105), None);
        assert_eq!(LinkType::try_from_dlt(105), Err(DecodeError::UnsupportedLink { dlt: 105 }));
    }
}
