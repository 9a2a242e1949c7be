//! ERSPAN headers carried in GRE: type II (protocol 0x88BE with the sequence flag; type I is
//! the same protocol without a sequence number and has no ERSPAN header at all) and type III
//! (protocol 0x22EB).

use super::DecodeError;
use super::bytes::{be16, be32, need, u8_at};

/// A view of an 8-byte ERSPAN type II header.
///
/// ```text
/// | ver (4) = 1 | VLAN (12) | COS (3) | En (2) | T (1) | session id (10) |
/// | reserved (12) | index (20)                                           |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erspan2Header<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Erspan2Header<T> {
    /// Length of the header.
    pub const HEADER_LEN: usize = 8;

    /// Wraps `buffer` without checking it; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Erspan2Header { buffer }
    }

    /// Wraps `buffer` after checking it holds the header and the version is 1.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let h = Erspan2Header { buffer };
        need("erspan", h.buffer.as_ref(), Self::HEADER_LEN)?;
        if h.version() != 1 {
            return Err(DecodeError::Malformed { layer: "erspan", what: "type II header version is not 1" });
        }
        Ok(h)
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (1 for type II).
    #[inline]
    pub fn version(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 0).unwrap_or(0) >> 4
    }

    /// Original VLAN of the mirrored frame.
    #[inline]
    pub fn vlan(&self) -> u16 {
        be16(self.buffer.as_ref(), 0).unwrap_or(0) & 0x0fff
    }

    /// Class of service.
    #[inline]
    pub fn cos(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 2).unwrap_or(0) >> 5
    }

    /// Trunk encapsulation type (En).
    #[inline]
    pub fn encap(&self) -> u8 {
        (u8_at(self.buffer.as_ref(), 2).unwrap_or(0) >> 3) & 0x3
    }

    /// Truncated flag: the mirrored frame was cut.
    #[inline]
    pub fn truncated(&self) -> bool {
        u8_at(self.buffer.as_ref(), 2).unwrap_or(0) & 0x04 != 0
    }

    /// Session id (10 bits).
    #[inline]
    pub fn session_id(&self) -> u16 {
        be16(self.buffer.as_ref(), 2).unwrap_or(0) & 0x03ff
    }

    /// Port index (20 bits).
    #[inline]
    pub fn index(&self) -> u32 {
        be32(self.buffer.as_ref(), 4).unwrap_or(0) & 0x000f_ffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Erspan2Header<&'a T> {
    /// The mirrored Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        b.get(Self::HEADER_LEN..).unwrap_or(&[])
    }
}

/// A view of an ERSPAN type III header: 12 bytes, plus an 8-byte platform-specific
/// subheader when the O flag is set.
///
/// ```text
/// | ver (4) = 2 | VLAN (12) | COS (3) | BSO (2) | T (1) | session id (10) |
/// | timestamp (32)                                                        |
/// | SGT (16) | P (1) | FT (5) | hw id (6) | D (1) | Gra (2) | O (1)       |
/// | platform-specific subheader (8 bytes, if O) ...                      |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erspan3Header<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Erspan3Header<T> {
    /// Length of the header without the platform-specific subheader.
    pub const MIN_HEADER_LEN: usize = 12;
    /// Frame type: Ethernet.
    pub const FT_ETHERNET: u8 = 0;
    /// Frame type: IP (v4 or v6).
    pub const FT_IP: u8 = 2;

    /// Wraps `buffer` without checking it; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Erspan3Header { buffer }
    }

    /// Wraps `buffer` after checking the version is 2 and the header (with the
    /// platform-specific subheader when the O flag is set) was captured.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let h = Erspan3Header { buffer };
        need("erspan", h.buffer.as_ref(), Self::MIN_HEADER_LEN)?;
        if h.version() != 2 {
            return Err(DecodeError::Malformed { layer: "erspan", what: "type III header version is not 2" });
        }
        need("erspan", h.buffer.as_ref(), h.header_len())?;
        Ok(h)
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (2 for type III).
    #[inline]
    pub fn version(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 0).unwrap_or(0) >> 4
    }

    /// Original VLAN of the mirrored frame.
    #[inline]
    pub fn vlan(&self) -> u16 {
        be16(self.buffer.as_ref(), 0).unwrap_or(0) & 0x0fff
    }

    /// Class of service.
    #[inline]
    pub fn cos(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 2).unwrap_or(0) >> 5
    }

    /// Truncated flag.
    #[inline]
    pub fn truncated(&self) -> bool {
        u8_at(self.buffer.as_ref(), 2).unwrap_or(0) & 0x04 != 0
    }

    /// Session id (10 bits).
    #[inline]
    pub fn session_id(&self) -> u16 {
        be16(self.buffer.as_ref(), 2).unwrap_or(0) & 0x03ff
    }

    /// Timestamp (granularity given by [`Erspan3Header::granularity`]).
    #[inline]
    pub fn timestamp(&self) -> u32 {
        be32(self.buffer.as_ref(), 4).unwrap_or(0)
    }

    /// Security group tag.
    #[inline]
    pub fn sgt(&self) -> u16 {
        be16(self.buffer.as_ref(), 8).unwrap_or(0)
    }

    #[inline]
    fn word3(&self) -> u16 {
        be16(self.buffer.as_ref(), 10).unwrap_or(0)
    }

    /// P flag.
    #[inline]
    pub fn p(&self) -> bool {
        self.word3() & 0x8000 != 0
    }

    /// Frame type (0 Ethernet, 2 IP).
    #[inline]
    pub fn frame_type(&self) -> u8 {
        ((self.word3() >> 10) & 0x1f) as u8
    }

    /// Hardware id.
    #[inline]
    pub fn hw_id(&self) -> u8 {
        ((self.word3() >> 4) & 0x3f) as u8
    }

    /// Direction (D): false ingress, true egress.
    #[inline]
    pub fn direction(&self) -> bool {
        self.word3() & 0x08 != 0
    }

    /// Timestamp granularity.
    #[inline]
    pub fn granularity(&self) -> u8 {
        ((self.word3() >> 1) & 0x3) as u8
    }

    /// O flag: an 8-byte platform-specific subheader follows.
    #[inline]
    pub fn has_platform_subheader(&self) -> bool {
        self.word3() & 0x01 != 0
    }

    /// Header length, platform-specific subheader included.
    #[inline]
    pub fn header_len(&self) -> usize {
        Self::MIN_HEADER_LEN + if self.has_platform_subheader() { 8 } else { 0 }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Erspan3Header<&'a T> {
    /// The mirrored frame (Ethernet, or IP when the frame type says so).
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
    fn type2() {
        let d = [0x10, 0x64, 0xb4, 0x2a, 0, 0x01, 0x23, 0x45, 0xee];
        let h = Erspan2Header::new_checked(&d[..]).unwrap();
        assert_eq!((h.version(), h.vlan(), h.cos(), h.encap()), (1, 100, 5, 2));
        assert!(h.truncated());
        assert_eq!((h.session_id(), h.index(), h.payload()), (0x02a, 0x12345, &[0xee][..]));
        for n in 0..8 {
            assert!(Erspan2Header::new_checked(&d[..n]).is_err());
        }
        let mut bad = d;
        bad[0] = 0x20;
        assert!(matches!(Erspan2Header::new_checked(&bad[..]), Err(DecodeError::Malformed { .. })));
    }

    #[test]
    fn type3_with_platform_subheader() {
        let mut d = vec![0x20, 0x0a, 0x03, 0xff, 0, 0, 0x10, 0, 0x12, 0x34];
        // P=1, FT=0, hw id 5, D=1, Gra=3, O=1
        let w: u16 = 0x8000 | (5 << 4) | 0x08 | (3 << 1) | 1;
        d.extend_from_slice(&w.to_be_bytes());
        d.extend_from_slice(&[0xaa; 8]);
        d.push(0xee);
        let h = Erspan3Header::new_checked(&d[..]).unwrap();
        assert_eq!((h.version(), h.vlan(), h.session_id(), h.timestamp()), (2, 10, 0x3ff, 0x1000));
        assert_eq!((h.sgt(), h.p(), h.frame_type(), h.hw_id()), (0x1234, true, 0, 5));
        assert!(h.direction() && h.has_platform_subheader() && !h.truncated());
        assert_eq!((h.granularity(), h.header_len(), h.cos()), (3, 20, 0));
        assert_eq!(h.payload(), &[0xee]);
        for n in 0..20 {
            assert!(Erspan3Header::new_checked(&d[..n]).is_err(), "{n}");
        }
        // Without O the subheader is absent.
        d[11] &= !1;
        assert_eq!(Erspan3Header::new_checked(&d[..12]).unwrap().header_len(), 12);
    }
}
