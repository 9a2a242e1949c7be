//! VXLAN headers (RFC 7348): 8 bytes before an inner Ethernet frame.

use super::DecodeError;
use super::bytes::{be24, need, u8_at};

/// A view of a VXLAN header.
///
/// ```text
/// | flags (I = 0x08) | reserved (24) | VNI (24) | reserved (8) |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Length of the VXLAN header.
    pub const HEADER_LEN: usize = 8;
    /// The "VNI valid" flag.
    pub const FLAG_I: u8 = 0x08;

    /// Wraps `buffer` without checking it; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        VxlanPacket { buffer }
    }

    /// Wraps `buffer` after checking it holds the whole header (flags are not checked: see
    /// [`VxlanPacket::vni_valid`]).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        need("vxlan", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(VxlanPacket { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte.
    #[inline]
    pub fn flags(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 0).unwrap_or(0)
    }

    /// True when the I flag says the VNI is valid (it must be, for VXLAN).
    #[inline]
    pub fn vni_valid(&self) -> bool {
        self.flags() & Self::FLAG_I != 0
    }

    /// VXLAN network identifier (24 bits).
    #[inline]
    pub fn vni(&self) -> u32 {
        be24(self.buffer.as_ref(), 4).unwrap_or(0)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> VxlanPacket<&'a T> {
    /// The inner Ethernet frame.
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
        let d = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0, 0xee];
        let v = VxlanPacket::new_checked(&d[..]).unwrap();
        assert!(v.vni_valid());
        assert_eq!((v.flags(), v.vni(), v.payload()), (0x08, 0x123456, &[0xee][..]));
        for n in 0..8 {
            assert!(VxlanPacket::new_checked(&d[..n]).is_err());
        }
        assert!(!VxlanPacket::new_checked(&[0u8; 8][..]).unwrap().vni_valid());
    }
}
