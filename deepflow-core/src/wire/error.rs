//! [`DecodeError`]: why a frame could not be decoded.

/// Why [`decode`](super::decode) (or a view's `new_checked`) rejected some bytes.
///
/// Cheap to copy and to count: [`DecodeError::kind`] and [`DecodeError::layer`] return static
/// strings meant to be used as counter labels (`decode_errors{kind="truncated",layer="tcp"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes were captured than the header at `layer` needs.
    #[error("{layer} header truncated: needs {need} bytes, only {have} captured")]
    Truncated {
        /// Layer whose header is cut short (`"ipv4"`, `"tcp"`, ...).
        layer: &'static str,
        /// Bytes that header needs.
        need: usize,
        /// Bytes that were available for it.
        have: usize,
    },
    /// A header field holds a value that makes the header undecodable.
    #[error("malformed {layer} header: {what}")]
    Malformed {
        /// Layer whose header is malformed.
        layer: &'static str,
        /// What is wrong with it.
        what: &'static str,
    },
    /// The frame carries something other than IP (ARP, LLDP, ...), identified by its ethertype.
    #[error("not an IP packet: ethertype {ethertype:#06x}")]
    NotIp {
        /// The ethertype (or SLL protocol / GRE protocol type) that was found.
        ethertype: u16,
    },
    /// A BSD null/loopback frame whose address family is neither IPv4 nor IPv6.
    #[error("not an IP packet: null/loopback address family {family}")]
    NotIpFamily {
        /// The address family found in the 4-byte null/loop header.
        family: u32,
    },
    /// The capture's data link type is not one this decoder understands.
    #[error("unsupported data link type {dlt}")]
    UnsupportedLink {
        /// The libpcap DLT/LINKTYPE value.
        dlt: u32,
    },
    /// Tunnels are nested deeper than [`DecodeConfig::max_tunnel_depth`](super::DecodeConfig).
    #[error("tunnels nested deeper than the configured maximum")]
    TooDeep,
}

impl DecodeError {
    /// Short snake_case name of the error kind, usable as a counter name:
    /// `truncated`, `malformed`, `not_ip`, `unsupported_link`, `too_deep`.
    #[inline]
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::NotIp { .. } | DecodeError::NotIpFamily { .. } => "not_ip",
            DecodeError::UnsupportedLink { .. } => "unsupported_link",
            DecodeError::TooDeep => "too_deep",
        }
    }

    /// The layer the error happened at (`ethernet`, `ipv4`, `ipv6_ext`, `tcp`, `vxlan`, ...);
    /// `link` for non-IP frames and unsupported link types, `tunnel` for [`DecodeError::TooDeep`].
    #[inline]
    pub fn layer(&self) -> &'static str {
        match self {
            DecodeError::Truncated { layer, .. } | DecodeError::Malformed { layer, .. } => layer,
            DecodeError::NotIp { .. } | DecodeError::NotIpFamily { .. } | DecodeError::UnsupportedLink { .. } => "link",
            DecodeError::TooDeep => "tunnel",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_names() {
        let e = DecodeError::Truncated { layer: "tcp", need: 20, have: 7 };
        assert_eq!(e.to_string(), "tcp header truncated: needs 20 bytes, only 7 captured");
        assert_eq!((e.kind(), e.layer()), ("truncated", "tcp"));
        let e = DecodeError::NotIp { ethertype: 0x0806 };
        assert_eq!(e.to_string(), "not an IP packet: ethertype 0x0806");
        assert_eq!((e.kind(), e.layer()), ("not_ip", "link"));
        let e = DecodeError::Malformed { layer: "ipv4", what: "IHL below 5" };
        assert_eq!(e.to_string(), "malformed ipv4 header: IHL below 5");
        assert_eq!(DecodeError::TooDeep.kind(), "too_deep");
        assert_eq!(DecodeError::UnsupportedLink { dlt: 9 }.to_string(), "unsupported data link type 9");
        assert_eq!(DecodeError::NotIpFamily { family: 7 }.kind(), "not_ip");
    }
}
