//! 802.1Q / 802.1ad (QinQ) VLAN tags: the 4 bytes after a 0x8100, 0x88a8 or 0x9100 ethertype.

use super::DecodeError;
use super::bytes::{be16, need};

/// A view of one VLAN tag: TCI (priority, DEI, VLAN id) and the next ethertype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Length of a VLAN tag (after the ethertype that announced it).
    pub const HEADER_LEN: usize = 4;

    /// Wraps `buffer` without checking its length; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        VlanTag { buffer }
    }

    /// Wraps `buffer` after checking it holds a whole tag.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        need("vlan", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(VlanTag { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole 16-bit tag control information.
    #[inline]
    pub fn tci(&self) -> u16 {
        be16(self.buffer.as_ref(), 0).unwrap_or(0)
    }

    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN id (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// Ethertype of what follows the tag (possibly another tag).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), 2).unwrap_or(0)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> VlanTag<&'a T> {
    /// Everything after the tag.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        b.get(Self::HEADER_LEN..).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_truncation() {
        let tag = [0xb0, 0x64, 0x86, 0xdd, 0x60];
        let v = VlanTag::new_checked(&tag[..]).unwrap();
        assert_eq!((v.pcp(), v.dei(), v.vid(), v.ethertype()), (5, true, 100, 0x86dd));
        assert_eq!(v.payload(), &[0x60]);
        for n in 0..4 {
            assert!(VlanTag::new_checked(&tag[..n]).is_err());
        }
        assert!(VlanTag::new_checked(&tag[..4]).unwrap().payload().is_empty());
    }
}
