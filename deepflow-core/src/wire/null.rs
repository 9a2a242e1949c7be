//! BSD loopback headers (DLT_NULL, DLT_LOOP): a 4-byte address family before the IP packet.

use super::DecodeError;
use super::bytes::{array, need};

/// A view of a 4-byte null/loopback header.
///
/// DLT_NULL stores the family in the capturing host's byte order, DLT_LOOP in network byte
/// order; [`NullHeader::family`] accepts either (families are small numbers, so the byte order
/// that yields a value below 65536 is the right one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NullHeader<T> {
    buffer: T,
}

/// `AF_INET` on every platform.
pub const AF_INET: u32 = 2;
/// The values `AF_INET6` takes on Linux (10), Windows (23), NetBSD/OpenBSD (24),
/// FreeBSD (28) and macOS (30).
pub const AF_INET6: [u32; 5] = [10, 23, 24, 28, 30];

impl<T: AsRef<[u8]>> NullHeader<T> {
    /// Length of the header.
    pub const HEADER_LEN: usize = 4;

    /// Wraps `buffer` without checking its length; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        NullHeader { buffer }
    }

    /// Wraps `buffer` after checking it holds a whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        need("null", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(NullHeader { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The address family, in whichever byte order it was written.
    #[inline]
    pub fn family(&self) -> u32 {
        let raw: [u8; 4] = array(self.buffer.as_ref(), 0).unwrap_or_default();
        let le = u32::from_le_bytes(raw);
        if le > 0xffff { le.swap_bytes() } else { le }
    }

    /// True when the family is `AF_INET`.
    #[inline]
    pub fn is_ipv4(&self) -> bool {
        self.family() == AF_INET
    }

    /// True when the family is one of the platforms' `AF_INET6` values.
    #[inline]
    pub fn is_ipv6(&self) -> bool {
        AF_INET6.contains(&self.family())
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> NullHeader<&'a T> {
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
    fn both_byte_orders() {
        let le = [2u8, 0, 0, 0, 0x45];
        let be = [0u8, 0, 0, 30, 0x60];
        let l = NullHeader::new_checked(&le[..]).unwrap();
        assert!(l.is_ipv4() && !l.is_ipv6());
        assert_eq!(l.payload(), &[0x45]);
        let b = NullHeader::new_checked(&be[..]).unwrap();
        assert_eq!(b.family(), 30);
        assert!(b.is_ipv6());
        for n in 0..4 {
            assert!(NullHeader::new_checked(&le[..n]).is_err());
        }
    }
}
