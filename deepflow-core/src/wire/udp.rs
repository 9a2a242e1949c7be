//! UDP headers.

use super::DecodeError;
use super::bytes::{be16, clamp_range, need};

/// A view of a UDP datagram.
///
/// `new_checked` requires the 8-byte header. The payload is trimmed to the length field when
/// that is shorter than the buffer, and cut to the buffer otherwise (a length of 0, used by
/// IPv6 jumbograms, or below 8 is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Length of the UDP header.
    pub const HEADER_LEN: usize = 8;

    /// Wraps `buffer` without checking it; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after checking it holds the whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        need("udp", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(UdpPacket { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0).unwrap_or(0)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2).unwrap_or(0)
    }

    /// Length field (header + data) as written.
    #[inline]
    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), 4).unwrap_or(0)
    }

    /// Checksum as written (0: none).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 6).unwrap_or(0)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> UdpPacket<&'a T> {
    /// The data after the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        let end = match usize::from(self.length()) {
            n if n >= Self::HEADER_LEN => n,
            _ => b.len(),
        };
        clamp_range(b, Self::HEADER_LEN, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_truncation() {
        let d = [0x30, 0x39, 0, 53, 0, 11, 0xbe, 0xef, 1, 2, 3, 0, 0];
        let u = UdpPacket::new_checked(&d[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.length(), u.checksum()), (12345, 53, 11, 0xbeef));
        assert_eq!(u.payload(), &[1, 2, 3], "trimmed to the length field");
        for n in 0..d.len() {
            match UdpPacket::new_checked(&d[..n]) {
                Err(_) => assert!(n < 8),
                Ok(u) => assert_eq!(u.payload(), &d[8..n.min(11)]),
            }
        }
        let mut z = d;
        z[5] = 0; // length 0 (jumbogram): use the buffer
        assert_eq!(UdpPacket::new_checked(&z[..]).unwrap().payload().len(), 5);
    }
}
