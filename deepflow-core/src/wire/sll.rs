//! Linux "cooked" capture headers: SLL (DLT_LINUX_SLL, 16 bytes) and SLL2 (DLT_LINUX_SLL2,
//! 20 bytes), what `tcpdump -i any` produces.

use super::DecodeError;
use super::bytes::{array, be16, be32, need, u8_at};

/// A view of a 16-byte Linux SLL header.
///
/// ```text
/// 0      2        4          6                 14        16
/// | type | ARPHRD | addr len | address (8 bytes) | protocol |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SllHeader<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SllHeader<T> {
    /// Length of the SLL header.
    pub const HEADER_LEN: usize = 16;

    /// Wraps `buffer` without checking its length; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        SllHeader { buffer }
    }

    /// Wraps `buffer` after checking it holds a whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        need("sll", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(SllHeader { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Packet type (0 to us, 1 broadcast, 2 multicast, 3 other host, 4 outgoing).
    #[inline]
    pub fn packet_type(&self) -> u16 {
        be16(self.buffer.as_ref(), 0).unwrap_or(0)
    }

    /// ARPHRD_ device type (1 Ethernet, 772 loopback, ...).
    #[inline]
    pub fn arphrd(&self) -> u16 {
        be16(self.buffer.as_ref(), 2).unwrap_or(0)
    }

    /// Length of the link-layer source address.
    #[inline]
    pub fn addr_len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4).unwrap_or(0)
    }

    /// Link-layer source address, the first `addr_len` (at most 8) bytes valid.
    #[inline]
    pub fn addr(&self) -> [u8; 8] {
        array(self.buffer.as_ref(), 6).unwrap_or_default()
    }

    /// Protocol: an ethertype for the usual device types.
    #[inline]
    pub fn protocol(&self) -> u16 {
        be16(self.buffer.as_ref(), 14).unwrap_or(0)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> SllHeader<&'a T> {
    /// Everything after the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        b.get(Self::HEADER_LEN..).unwrap_or(&[])
    }
}

/// A view of a 20-byte Linux SLL2 header.
///
/// ```text
/// 0          2          4         8        10     11         12                 20
/// | protocol | reserved | ifindex | ARPHRD | type | addr len | address (8 bytes) |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sll2Header<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Sll2Header<T> {
    /// Length of the SLL2 header.
    pub const HEADER_LEN: usize = 20;

    /// Wraps `buffer` without checking its length; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Sll2Header { buffer }
    }

    /// Wraps `buffer` after checking it holds a whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        need("sll2", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(Sll2Header { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Protocol: an ethertype for the usual device types.
    #[inline]
    pub fn protocol(&self) -> u16 {
        be16(self.buffer.as_ref(), 0).unwrap_or(0)
    }

    /// Interface index the packet was captured on.
    #[inline]
    pub fn ifindex(&self) -> u32 {
        be32(self.buffer.as_ref(), 4).unwrap_or(0)
    }

    /// ARPHRD_ device type.
    #[inline]
    pub fn arphrd(&self) -> u16 {
        be16(self.buffer.as_ref(), 8).unwrap_or(0)
    }

    /// Packet type (0 to us, 1 broadcast, 2 multicast, 3 other host, 4 outgoing).
    #[inline]
    pub fn packet_type(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 10).unwrap_or(0)
    }

    /// Length of the link-layer source address.
    #[inline]
    pub fn addr_len(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 11).unwrap_or(0)
    }

    /// Link-layer source address, the first `addr_len` (at most 8) bytes valid.
    #[inline]
    pub fn addr(&self) -> [u8; 8] {
        array(self.buffer.as_ref(), 12).unwrap_or_default()
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Sll2Header<&'a T> {
    /// Everything after the header.
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
    fn sll() {
        let h = [0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00, 0x45];
        let s = SllHeader::new_checked(&h[..]).unwrap();
        assert_eq!((s.packet_type(), s.arphrd(), s.addr_len(), s.protocol()), (4, 1, 6, 0x0800));
        assert_eq!(s.addr(), [1, 2, 3, 4, 5, 6, 0, 0]);
        assert_eq!(s.payload(), &[0x45]);
        for n in 0..16 {
            assert!(SllHeader::new_checked(&h[..n]).is_err());
        }
    }

    #[test]
    fn sll2() {
        let h = [0x86, 0xdd, 0, 0, 0, 0, 0, 7, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x60];
        let s = Sll2Header::new_checked(&h[..]).unwrap();
        assert_eq!((s.protocol(), s.ifindex(), s.arphrd()), (0x86dd, 7, 1));
        assert_eq!((s.packet_type(), s.addr_len(), s.addr()), (0, 6, [1, 2, 3, 4, 5, 6, 0, 0]));
        assert_eq!(s.payload(), &[0x60]);
        for n in 0..20 {
            assert!(Sll2Header::new_checked(&h[..n]).is_err());
        }
    }
}
