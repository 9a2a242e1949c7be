//! Ethernet II frames, and the ethertype numbers the decoder dispatches on.

use super::DecodeError;
use super::bytes::{array, be16, need};

/// Ethertypes (and GRE / SLL protocol types, which share the number space).
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ outer tag.
    pub const QINQ_LEGACY: u16 = 0x9100;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// MPLS unicast.
    pub const MPLS_UC: u16 = 0x8847;
    /// MPLS multicast.
    pub const MPLS_MC: u16 = 0x8848;
    /// Transparent Ethernet bridging (GRE/Geneve carrying Ethernet).
    pub const TEB: u16 = 0x6558;
    /// ERSPAN type I and II (GRE protocol type).
    pub const ERSPAN_I_II: u16 = 0x88be;
    /// ERSPAN type III (GRE protocol type).
    pub const ERSPAN_III: u16 = 0x22eb;
    /// LLDP.
    pub const LLDP: u16 = 0x88cc;

    /// True for the three VLAN tag ethertypes (0x8100, 0x88a8, 0x9100).
    #[inline(always)]
    pub fn is_vlan(t: u16) -> bool {
        matches!(t, VLAN | QINQ | QINQ_LEGACY)
    }
}

/// A view of an Ethernet II frame: destination, source, ethertype, payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Length of the Ethernet II header.
    pub const HEADER_LEN: usize = 14;

    /// Wraps `buffer` without checking its length; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after checking it holds a whole Ethernet header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        need("ethernet", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(EthernetFrame { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst(&self) -> [u8; 6] {
        array(self.buffer.as_ref(), 0).unwrap_or_default()
    }

    /// Source MAC address.
    #[inline]
    pub fn src(&self) -> [u8; 6] {
        array(self.buffer.as_ref(), 6).unwrap_or_default()
    }

    /// Ethertype (values of 1500 and below are 802.3 lengths, not types).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), 12).unwrap_or(0)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> EthernetFrame<&'a T> {
    /// Everything after the header (including any trailing padding or FCS).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        b.get(Self::HEADER_LEN..).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00, 0xaa, 0xbb];

    #[test]
    fn fields() {
        let e = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(e.dst(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(e.src(), [7, 8, 9, 10, 11, 12]);
        assert_eq!(e.ethertype(), ethertype::IPV4);
        assert_eq!(e.payload(), &[0xaa, 0xbb]);
        assert!(ethertype::is_vlan(0x9100) && !ethertype::is_vlan(0x0800));
    }

    #[test]
    fn truncation() {
        for n in 0..FRAME.len() {
            let r = EthernetFrame::new_checked(&FRAME[..n]);
            if n < 14 {
                assert_eq!(r, Err(DecodeError::Truncated { layer: "ethernet", need: 14, have: n }));
            } else {
                assert_eq!(r.unwrap().payload().len(), n - 14);
            }
        }
        let u = EthernetFrame::new_unchecked(&FRAME[..3]);
        assert_eq!((u.src(), u.ethertype(), u.payload()), ([0; 6], 0, &[][..]));
    }
}
