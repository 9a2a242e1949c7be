//! Geneve headers (RFC 8926).

use super::DecodeError;
use super::bytes::{be16, be24, clamp_range, need, u8_at};

/// A view of a Geneve header with its options.
///
/// ```text
/// | ver (2) | opt len (6) | O | C | rsvd (6) | protocol type (16) |
/// | VNI (24)                                | reserved (8)       |
/// | options (opt len * 4 bytes) ...                              |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenevePacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GenevePacket<T> {
    /// Length of the fixed part of the header.
    pub const MIN_HEADER_LEN: usize = 8;

    /// Wraps `buffer` without checking it; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        GenevePacket { buffer }
    }

    /// Wraps `buffer` after checking the version is 0 and the header, options included,
    /// was captured.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let g = GenevePacket { buffer };
        need("geneve", g.buffer.as_ref(), Self::MIN_HEADER_LEN)?;
        if g.version() != 0 {
            return Err(DecodeError::Malformed { layer: "geneve", what: "version is not 0" });
        }
        need("geneve", g.buffer.as_ref(), g.header_len())?;
        Ok(g)
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (0).
    #[inline]
    pub fn version(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 0).unwrap_or(0) >> 6
    }

    /// Length of the options in bytes.
    #[inline]
    pub fn options_len(&self) -> usize {
        usize::from(u8_at(self.buffer.as_ref(), 0).unwrap_or(0) & 0x3f) * 4
    }

    /// Header length in bytes, options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        Self::MIN_HEADER_LEN + self.options_len()
    }

    /// OAM flag: a control packet.
    #[inline]
    pub fn oam(&self) -> bool {
        u8_at(self.buffer.as_ref(), 1).unwrap_or(0) & 0x80 != 0
    }

    /// Critical-options-present flag.
    #[inline]
    pub fn critical(&self) -> bool {
        u8_at(self.buffer.as_ref(), 1).unwrap_or(0) & 0x40 != 0
    }

    /// Protocol type of the payload (an ethertype; 0x6558 for Ethernet).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        be16(self.buffer.as_ref(), 2).unwrap_or(0)
    }

    /// Virtual network identifier (24 bits).
    #[inline]
    pub fn vni(&self) -> u32 {
        be24(self.buffer.as_ref(), 4).unwrap_or(0)
    }

    /// The raw option bytes.
    #[inline]
    pub fn options(&self) -> &[u8] {
        clamp_range(self.buffer.as_ref(), Self::MIN_HEADER_LEN, self.header_len())
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> GenevePacket<&'a T> {
    /// The encapsulated frame or packet, after the options.
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
    fn fields_and_truncation() {
        // opt len 2 (8 bytes), O and C set, TEB, VNI 0xabcdef, one 8-byte option, payload.
        let d = [
            0x02, 0xc0, 0x65, 0x58, 0xab, 0xcd, 0xef, 0, // fixed
            0x01, 0x02, 0x03, 0x01, 0xde, 0xad, 0xbe, 0xef, // option: class 0x0102 type 3 len 1
            0x77,
        ];
        let g = GenevePacket::new_checked(&d[..]).unwrap();
        assert_eq!((g.version(), g.options_len(), g.header_len()), (0, 8, 16));
        assert!(g.oam() && g.critical());
        assert_eq!((g.protocol_type(), g.vni()), (0x6558, 0xabcdef));
        assert_eq!(g.options(), &d[8..16]);
        assert_eq!(g.payload(), &[0x77]);
        for n in 0..16 {
            assert!(matches!(GenevePacket::new_checked(&d[..n]), Err(DecodeError::Truncated { .. })));
        }
        let mut bad = d;
        bad[0] = 0x42;
        assert!(matches!(GenevePacket::new_checked(&bad[..]), Err(DecodeError::Malformed { .. })));
    }
}
