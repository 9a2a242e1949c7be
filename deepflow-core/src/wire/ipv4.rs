//! IPv4 headers.

use std::net::Ipv4Addr;

use super::DecodeError;
use super::bytes::{array, be16, clamp_range, u8_at};

/// A view of an IPv4 packet.
///
/// `new_checked` requires the whole header (options included) to be present, but not the
/// whole payload: a packet cut short by the capture's snap length is a valid, shorter view
/// ([`Ipv4Packet::payload`] returns what is there, [`Ipv4Packet::is_truncated`] tells).
/// Bytes beyond the total length (Ethernet padding) are never part of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = 20;

    /// Wraps `buffer` without checking it; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after checking the version, the IHL, that the whole header was captured
    /// and that the total length is not shorter than the header (0 is accepted: it is what
    /// captures of TSO super-frames show, and then means "as long as the capture").
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let b = buffer.as_ref();
        let Some(&[vihl, _, tl0, tl1]) = b.first_chunk::<4>() else {
            return Err(truncated(Self::MIN_HEADER_LEN, b.len()));
        };
        if vihl >> 4 != 4 {
            return Err(DecodeError::Malformed { layer: "ipv4", what: "version is not 4" });
        }
        let hl = usize::from(vihl & 0x0f) * 4;
        if hl < Self::MIN_HEADER_LEN {
            return Err(DecodeError::Malformed { layer: "ipv4", what: "IHL below 5" });
        }
        if b.len() < hl {
            return Err(truncated(hl.max(Self::MIN_HEADER_LEN), b.len()));
        }
        let total = usize::from(u16::from_be_bytes([tl0, tl1]));
        if total != 0 && total < hl {
            return Err(DecodeError::Malformed { layer: "ipv4", what: "total length below header length" });
        }
        Ok(Ipv4Packet { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline(always)]
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// IP version (4 for a checked view).
    #[inline]
    pub fn version(&self) -> u8 {
        u8_at(self.b(), 0).unwrap_or(0) >> 4
    }

    /// Header length in bytes, options included (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(u8_at(self.b(), 0).unwrap_or(0) & 0x0f) * 4
    }

    /// Differentiated services code point.
    #[inline]
    pub fn dscp(&self) -> u8 {
        u8_at(self.b(), 1).unwrap_or(0) >> 2
    }

    /// Explicit congestion notification bits.
    #[inline]
    pub fn ecn(&self) -> u8 {
        u8_at(self.b(), 1).unwrap_or(0) & 0x03
    }

    /// Total length field as written (0 for TSO captures).
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.b(), 2).unwrap_or(0)
    }

    /// Datagram length to use: the total length, or the captured length when the field is 0.
    #[inline]
    pub fn datagram_len(&self) -> usize {
        match self.total_len() {
            0 => self.b().len(),
            n => usize::from(n),
        }
    }

    /// True when fewer bytes were captured than the total length says.
    #[inline]
    pub fn is_truncated(&self) -> bool {
        self.b().len() < self.datagram_len()
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.b(), 4).unwrap_or(0)
    }

    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        be16(self.b(), 6).unwrap_or(0) & 0x4000 != 0
    }

    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        be16(self.b(), 6).unwrap_or(0) & 0x2000 != 0
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u32 {
        u32::from(be16(self.b(), 6).unwrap_or(0) & 0x1fff) * 8
    }

    /// True when this packet is a fragment (more-fragments set or non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        be16(self.b(), 6).unwrap_or(0) & 0x3fff != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        u8_at(self.b(), 8).unwrap_or(0)
    }

    /// Protocol of the payload (6 TCP, 17 UDP, ...).
    #[inline]
    pub fn protocol(&self) -> u8 {
        u8_at(self.b(), 9).unwrap_or(0)
    }

    /// Header checksum as written (not verified).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.b(), 10).unwrap_or(0)
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.b(), 12).unwrap_or_default())
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.b(), 16).unwrap_or_default())
    }

    /// The raw option bytes (empty when IHL is 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        clamp_range(self.b(), Self::MIN_HEADER_LEN, self.header_len())
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Packet<&'a T> {
    /// The payload: from the end of the header to the total length, cut to what was captured.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        clamp_range(b, self.header_len(), self.datagram_len())
    }
}

#[inline]
fn truncated(need: usize, have: usize) -> DecodeError {
    DecodeError::Truncated { layer: "ipv4", need, have }
}

#[cfg(test)]
mod tests {
    use super::*;

    // IHL 6 (one 4-byte option), total length 28, id 0x1234, MF + offset 8 bytes, ttl 64, UDP.
    const PKT: [u8; 32] = [
        0x46, 0xb9, 0, 28, 0x12, 0x34, 0x20, 0x01, 64, 17, 0xab, 0xcd, 10, 0, 0, 1, 10, 0, 0, 2, 1, 1, 1,
        0, // options: NOP NOP NOP EOL
        9, 8, 7, 6, // payload
        0, 0, 0, 0, // Ethernet padding
    ];

    #[test]
    fn fields() {
        let p = Ipv4Packet::new_checked(&PKT[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.dscp(), p.ecn()), (4, 24, 46, 1));
        assert_eq!((p.total_len(), p.datagram_len(), p.ident()), (28, 28, 0x1234));
        assert!(p.more_frags() && !p.dont_frag() && p.is_fragment());
        assert_eq!(p.frag_offset(), 8);
        assert_eq!((p.ttl(), p.protocol(), p.checksum()), (64, 17, 0xabcd));
        assert_eq!(p.src(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[9, 8, 7, 6], "padding trimmed");
        assert!(!p.is_truncated());
    }

    #[test]
    fn truncation_at_every_offset() {
        for n in 0..PKT.len() {
            let r = Ipv4Packet::new_checked(&PKT[..n]);
            if n < 24 {
                assert!(matches!(r, Err(DecodeError::Truncated { layer: "ipv4", .. })), "{n}");
            } else {
                let p = r.unwrap();
                assert_eq!(p.payload(), &PKT[24..n.min(28)]);
                assert_eq!(p.is_truncated(), n < 28);
            }
        }
    }

    #[test]
    fn rejects_bad_headers() {
        let mut p = PKT;
        p[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&p[..]),
            Err(DecodeError::Malformed { layer: "ipv4", what: "version is not 4" })
        );
        p[0] = 0x44;
        assert!(matches!(Ipv4Packet::new_checked(&p[..]), Err(DecodeError::Malformed { .. })));
        p[0] = 0x4f; // 60-byte header, 32 captured
        assert_eq!(Ipv4Packet::new_checked(&p[..]), Err(DecodeError::Truncated { layer: "ipv4", need: 60, have: 32 }));
        let mut p = PKT;
        p[3] = 20; // total length below the 24-byte header
        assert!(matches!(Ipv4Packet::new_checked(&p[..]), Err(DecodeError::Malformed { .. })));
        p[3] = 0; // TSO: total length 0 means "the capture"
        let v = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(v.payload().len(), 8);
    }
}
