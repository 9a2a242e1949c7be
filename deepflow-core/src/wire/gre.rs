//! GRE headers (RFC 2784 with the RFC 2890 key and sequence extensions; version 1 is the
//! PPTP "enhanced GRE" of RFC 2637).

use super::DecodeError;
use super::bytes::{be16, be32, need, u8_at};

/// A view of a GRE header.
///
/// ```text
/// | C R K S s recur (8) | A flags ver (8) | protocol type (16) |
/// | checksum (16) | reserved1 (16) |        (if C)
/// | key (32)                        |        (if K)
/// | sequence number (32)            |        (if S)
/// | acknowledgment number (32)      |        (version 1, if A)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrePacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GrePacket<T> {
    /// Length of the mandatory part of the header.
    pub const MIN_HEADER_LEN: usize = 4;
    /// Checksum present.
    pub const FLAG_C: u16 = 0x8000;
    /// Routing present (RFC 1701, obsolete).
    pub const FLAG_R: u16 = 0x4000;
    /// Key present.
    pub const FLAG_K: u16 = 0x2000;
    /// Sequence number present.
    pub const FLAG_S: u16 = 0x1000;
    /// Acknowledgment number present (version 1 only).
    pub const FLAG_A: u16 = 0x0080;

    /// Wraps `buffer` without checking it; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        GrePacket { buffer }
    }

    /// Wraps `buffer` after checking the whole header (optional fields included) was captured.
    /// RFC 1701 source routing is rejected as malformed.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let g = GrePacket { buffer };
        need("gre", g.buffer.as_ref(), Self::MIN_HEADER_LEN)?;
        if g.routing_present() {
            return Err(DecodeError::Malformed { layer: "gre", what: "source routing (RFC 1701) is not supported" });
        }
        need("gre", g.buffer.as_ref(), g.header_len())?;
        Ok(g)
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The 16 flag and version bits.
    #[inline]
    pub fn flags_version(&self) -> u16 {
        be16(self.buffer.as_ref(), 0).unwrap_or(0)
    }

    /// C flag.
    #[inline]
    pub fn checksum_present(&self) -> bool {
        self.flags_version() & Self::FLAG_C != 0
    }

    /// R flag.
    #[inline]
    pub fn routing_present(&self) -> bool {
        self.flags_version() & Self::FLAG_R != 0
    }

    /// K flag.
    #[inline]
    pub fn key_present(&self) -> bool {
        self.flags_version() & Self::FLAG_K != 0
    }

    /// S flag.
    #[inline]
    pub fn seq_present(&self) -> bool {
        self.flags_version() & Self::FLAG_S != 0
    }

    /// A flag of version 1 (always false for version 0).
    #[inline]
    pub fn ack_present(&self) -> bool {
        self.version() == 1 && self.flags_version() & Self::FLAG_A != 0
    }

    /// Version (0 GRE, 1 PPTP enhanced GRE).
    #[inline]
    pub fn version(&self) -> u8 {
        (self.flags_version() & 0x7) as u8
    }

    /// Protocol type of the payload (an ethertype).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        be16(self.buffer.as_ref(), 2).unwrap_or(0)
    }

    #[inline]
    fn key_offset(&self) -> usize {
        if self.checksum_present() || self.routing_present() { 8 } else { 4 }
    }

    #[inline]
    fn seq_offset(&self) -> usize {
        self.key_offset() + if self.key_present() { 4 } else { 0 }
    }

    /// Header length in bytes, optional fields included.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.seq_offset() + if self.seq_present() { 4 } else { 0 } + if self.ack_present() { 4 } else { 0 }
    }

    /// Checksum, if present.
    #[inline]
    pub fn checksum(&self) -> Option<u16> {
        if self.checksum_present() { be16(self.buffer.as_ref(), 4) } else { None }
    }

    /// Key, if present (for version 1: payload length << 16 | call id).
    #[inline]
    pub fn key(&self) -> Option<u32> {
        if self.key_present() { be32(self.buffer.as_ref(), self.key_offset()) } else { None }
    }

    /// Sequence number, if present.
    #[inline]
    pub fn sequence(&self) -> Option<u32> {
        if self.seq_present() { be32(self.buffer.as_ref(), self.seq_offset()) } else { None }
    }

    /// Recursion control / flags byte bits, for completeness.
    #[inline]
    pub fn recursion(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 0).unwrap_or(0) & 0x7
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> GrePacket<&'a T> {
    /// The encapsulated packet, after the optional fields.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        b.get(self.header_len()..).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_optional_fields() {
        let d = [
            0xb0, 0x00, 0x08, 0x00, // C K S, version 0, IPv4
            0x12, 0x34, 0, 0, // checksum, reserved1
            0, 0, 0x03, 0xe8, // key 1000
            0, 0, 0, 9, // sequence 9
            0x45,
        ];
        let g = GrePacket::new_checked(&d[..]).unwrap();
        assert!(g.checksum_present() && g.key_present() && g.seq_present() && !g.routing_present());
        assert_eq!((g.version(), g.protocol_type(), g.header_len()), (0, 0x0800, 16));
        assert_eq!((g.checksum(), g.key(), g.sequence()), (Some(0x1234), Some(1000), Some(9)));
        assert_eq!(g.payload(), &[0x45]);
        for n in 0..16 {
            assert!(GrePacket::new_checked(&d[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn minimal_and_versions() {
        let d = [0u8, 0, 0x86, 0xdd, 0x60];
        let g = GrePacket::new_checked(&d[..]).unwrap();
        assert_eq!((g.header_len(), g.key(), g.sequence(), g.checksum()), (4, None, None, None));
        assert_eq!(g.payload(), &[0x60]);
        // PPTP: version 1, K S A, PPP.
        let p = [0x30u8, 0x81, 0x88, 0x0b, 0, 4, 0, 1, 0, 0, 0, 5, 0, 0, 0, 4, 0xff];
        let g = GrePacket::new_checked(&p[..]).unwrap();
        assert!(g.ack_present());
        assert_eq!((g.version(), g.header_len(), g.sequence()), (1, 16, Some(5)));
        let r = [0x40u8, 0, 8, 0, 0, 0, 0, 0];
        assert!(matches!(GrePacket::new_checked(&r[..]), Err(DecodeError::Malformed { .. })));
    }
}
