//! ICMP and ICMPv6 headers (both share the type, code, checksum, 4-byte rest layout).

use super::DecodeError;
use super::bytes::{be16, need, u8_at};

/// A view of an ICMP or ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpPacket<T> {
    buffer: T,
}

/// ICMP echo reply type.
pub const ICMP_ECHO_REPLY: u8 = 0;
/// ICMP echo request type.
pub const ICMP_ECHO_REQUEST: u8 = 8;
/// ICMPv6 echo request type.
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 echo reply type.
pub const ICMPV6_ECHO_REPLY: u8 = 129;

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Length of the header (type, code, checksum, rest of header).
    pub const HEADER_LEN: usize = 8;

    /// Wraps `buffer` without checking it; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    /// Wraps `buffer` after checking it holds the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        need("icmp", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(IcmpPacket { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    #[inline]
    pub fn icmp_type(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 0).unwrap_or(0)
    }

    /// Message code.
    #[inline]
    pub fn code(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 1).unwrap_or(0)
    }

    /// Checksum as written (not verified).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 2).unwrap_or(0)
    }

    /// Echo identifier (bytes 4..6; meaningful for echo request/reply).
    #[inline]
    pub fn echo_id(&self) -> u16 {
        be16(self.buffer.as_ref(), 4).unwrap_or(0)
    }

    /// Echo sequence number (bytes 6..8; meaningful for echo request/reply).
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        be16(self.buffer.as_ref(), 6).unwrap_or(0)
    }

    /// True for an echo request or reply (of ICMPv6 when `v6`, of ICMP otherwise).
    #[inline]
    pub fn is_echo(&self, v6: bool) -> bool {
        let t = self.icmp_type();
        if v6 {
            t == ICMPV6_ECHO_REQUEST || t == ICMPV6_ECHO_REPLY
        } else {
            t == ICMP_ECHO_REQUEST || t == ICMP_ECHO_REPLY
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> IcmpPacket<&'a T> {
    /// Everything after the 8-byte header.
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
    fn echo() {
        let d = [8, 0, 0xf7, 0xff, 0x12, 0x34, 0, 7, b'p', b'i'];
        let i = IcmpPacket::new_checked(&d[..]).unwrap();
        assert_eq!((i.icmp_type(), i.code(), i.checksum()), (8, 0, 0xf7ff));
        assert_eq!((i.echo_id(), i.echo_seq()), (0x1234, 7));
        assert!(i.is_echo(false) && !i.is_echo(true));
        assert_eq!(i.payload(), b"pi");
        for n in 0..8 {
            assert!(IcmpPacket::new_checked(&d[..n]).is_err());
        }
        let v6 = [129u8, 0, 0, 0, 0, 1, 0, 2];
        assert!(IcmpPacket::new_checked(&v6[..]).unwrap().is_echo(true));
    }
}
