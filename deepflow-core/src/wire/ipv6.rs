//! IPv6 headers and extension-header walking.

use std::net::Ipv6Addr;

use super::DecodeError;
use super::bytes::{array, be16, be32, clamp_range, need, u8_at};

/// IPv6 next-header / IP protocol numbers the decoder knows.
pub mod next_header {
    /// Hop-by-hop options.
    pub const HOPOPT: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IPv4 encapsulation (IP-in-IP).
    pub const IPV4: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulation (6in4, IPv6-in-IPv6).
    pub const IPV6: u8 = 41;
    /// Routing header.
    pub const ROUTING: u8 = 43;
    /// Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// GRE.
    pub const GRE: u8 = 47;
    /// ESP: encrypted, walking stops here.
    pub const ESP: u8 = 50;
    /// Authentication header.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// No next header.
    pub const NO_NEXT: u8 = 59;
    /// Destination options.
    pub const DSTOPTS: u8 = 60;
    /// MPLS in IP (RFC 4023).
    pub const MPLS_IN_IP: u8 = 137;

    /// True for the extension headers [`walk_extensions`](super::walk_extensions) steps over.
    #[inline(always)]
    pub fn is_extension(nh: u8) -> bool {
        matches!(nh, HOPOPT | ROUTING | FRAGMENT | DSTOPTS | AH)
    }
}

/// A view of an IPv6 packet (fixed header + payload).
///
/// `new_checked` requires the 40-byte header; the payload may be cut short by the capture
/// (a valid, shorter view) and is trimmed to the payload length when more bytes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Length of the fixed header.
    pub const HEADER_LEN: usize = 40;

    /// Wraps `buffer` without checking it; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer` after checking the version and that the fixed header was captured.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let b = buffer.as_ref();
        need("ipv6", b, Self::HEADER_LEN)?;
        if u8_at(b, 0).unwrap_or(0) >> 4 != 6 {
            return Err(DecodeError::Malformed { layer: "ipv6", what: "version is not 6" });
        }
        Ok(Ipv6Packet { buffer })
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

    /// IP version (6 for a checked view).
    #[inline]
    pub fn version(&self) -> u8 {
        u8_at(self.b(), 0).unwrap_or(0) >> 4
    }

    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (be16(self.b(), 0).unwrap_or(0) >> 4) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        be32(self.b(), 0).unwrap_or(0) & 0x000f_ffff
    }

    /// Payload length field as written (0 for jumbograms and GSO captures).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16(self.b(), 4).unwrap_or(0)
    }

    /// Length of the datagram to use: 40 + payload length, or the captured length when the
    /// payload length is 0 (jumbogram / GSO super-frame).
    #[inline]
    pub fn datagram_len(&self) -> usize {
        match self.payload_len() {
            0 => self.b().len(),
            n => Self::HEADER_LEN + usize::from(n),
        }
    }

    /// True when fewer bytes were captured than the payload length says.
    #[inline]
    pub fn is_truncated(&self) -> bool {
        self.b().len() < self.datagram_len()
    }

    /// Next header: the first extension header or the upper-layer protocol.
    #[inline]
    pub fn next_header(&self) -> u8 {
        u8_at(self.b(), 6).unwrap_or(0)
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        u8_at(self.b(), 7).unwrap_or(0)
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.b(), 8).unwrap_or_default())
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.b(), 24).unwrap_or_default())
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv6Packet<&'a T> {
    /// The payload (extension headers included): from byte 40 to the payload length, cut to
    /// what was captured.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        clamp_range(b, Self::HEADER_LEN, self.datagram_len())
    }
}

/// A view of a hop-by-hop, routing or destination-options extension header (all share the
/// `next header, length in 8-byte units not counting the first 8` layout), or of an
/// authentication header (length in 4-byte units not counting the first 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6ExtHeader<T> {
    buffer: T,
    ah: bool,
}

impl<T: AsRef<[u8]>> Ipv6ExtHeader<T> {
    /// Wraps a generic (8-byte-unit) extension header after checking it was captured whole.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        Self::checked(buffer, false)
    }

    /// Wraps an authentication header after checking it was captured whole.
    #[inline]
    pub fn new_checked_ah(buffer: T) -> Result<Self, DecodeError> {
        Self::checked(buffer, true)
    }

    #[inline]
    fn checked(buffer: T, ah: bool) -> Result<Self, DecodeError> {
        let h = Ipv6ExtHeader { buffer, ah };
        need("ipv6_ext", h.buffer.as_ref(), 2)?;
        need("ipv6_ext", h.buffer.as_ref(), h.header_len())?;
        Ok(h)
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The header after this one.
    #[inline]
    pub fn next_header(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 0).unwrap_or(0)
    }

    /// Length of this header in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        let n = usize::from(u8_at(self.buffer.as_ref(), 1).unwrap_or(0));
        if self.ah { (n + 2) * 4 } else { (n + 1) * 8 }
    }

    /// The header's body (options, routing data, ICV...) after its first 2 bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        clamp_range(self.buffer.as_ref(), 2, self.header_len())
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv6ExtHeader<&'a T> {
    /// Everything after this header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        b.get(self.header_len()..).unwrap_or(&[])
    }
}

/// A view of an 8-byte IPv6 fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6FragmentHeader<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6FragmentHeader<T> {
    /// Length of a fragment header.
    pub const HEADER_LEN: usize = 8;

    /// Wraps `buffer` after checking it holds a whole fragment header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        need("ipv6_frag", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(Ipv6FragmentHeader { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Protocol of the fragmented datagram's payload.
    #[inline]
    pub fn next_header(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 0).unwrap_or(0)
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u32 {
        u32::from(be16(self.buffer.as_ref(), 2).unwrap_or(0) & 0xfff8)
    }

    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), 2).unwrap_or(0) & 1 != 0
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u32 {
        be32(self.buffer.as_ref(), 4).unwrap_or(0)
    }

    /// True unless this is an "atomic fragment" (offset 0, no more fragments, RFC 6946),
    /// which is a whole datagram.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.frag_offset() != 0 || self.more_frags()
    }
}

/// A fragment header found by [`walk_extensions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6FragmentInfo {
    /// Identification.
    pub ident: u32,
    /// Fragment offset in bytes.
    pub offset: u32,
    /// More-fragments flag.
    pub more: bool,
    /// Next header after the fragment header.
    pub next_header: u8,
}

/// Result of [`walk_extensions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6ExtChain {
    /// The header after the last extension header walked: the upper-layer protocol, ESP (50),
    /// no-next-header (59), or, when a fragment header stopped the walk, its next header.
    pub next_header: u8,
    /// Bytes of extension headers walked: where the upper-layer data (or fragment data) starts.
    pub header_len: usize,
    /// The fragment header that stopped the walk, if any.
    pub fragment: Option<Ipv6FragmentInfo>,
}

/// Walks the extension headers at the start of `data` (an IPv6 payload whose fixed header
/// said `next_header`): hop-by-hop (0), routing (43), destination options (60),
/// authentication (51) and fragment (44). Stops at the first other header (upper-layer
/// protocol, ESP 50, no-next 59), or right after a fragment header that is a real fragment
/// (what follows belongs to the fragmented datagram). Atomic fragment headers are stepped over.
/// Fails if an extension header is cut short.
#[inline]
pub fn walk_extensions(mut nh: u8, data: &[u8]) -> Result<Ipv6ExtChain, DecodeError> {
    use next_header::*;
    let mut off = 0usize;
    while is_extension(nh) {
        let rest = data.get(off..).unwrap_or(&[]);
        let len = match nh {
            FRAGMENT => {
                let f = Ipv6FragmentHeader::new_checked(rest)?;
                if f.is_fragment() {
                    let fragment = Some(Ipv6FragmentInfo {
                        ident: f.ident(),
                        offset: f.frag_offset(),
                        more: f.more_frags(),
                        next_header: f.next_header(),
                    });
                    return Ok(Ipv6ExtChain { next_header: f.next_header(), header_len: off + 8, fragment });
                }
                nh = f.next_header();
                Ipv6FragmentHeader::<&[u8]>::HEADER_LEN
            }
            AH => {
                let h = Ipv6ExtHeader::new_checked_ah(rest)?;
                nh = h.next_header();
                h.header_len()
            }
            _ => {
                let h = Ipv6ExtHeader::new_checked(rest)?;
                nh = h.next_header();
                h.header_len()
            }
        };
        off += len;
    }
    Ok(Ipv6ExtChain { next_header: nh, header_len: off, fragment: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut p = vec![
            0x6a, 0xb1, 0x23, 0x45, // version 6, tc 0xab, flow 0x12345
            0, 36, 0, 61, // payload length 36, next header hop-by-hop, hop limit 61
        ];
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[43, 0, 1, 4, 0, 0, 0, 0]); // HBH -> routing, PadN
        p.extend_from_slice(&[51, 0, 0, 0, 0, 0, 0, 0]); // routing (type 0, 0 left) -> AH
        p.extend_from_slice(&[60, 1, 0, 0, 0, 0, 0, 1]); // AH (12 bytes) -> dstopts
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // dstopts -> UDP
        p.extend_from_slice(&[0xee; 4]); // padding beyond payload length 36
        p
    }

    #[test]
    fn fields_and_walk() {
        let s = sample();
        let p = Ipv6Packet::new_checked(&s[..]).unwrap();
        assert_eq!((p.version(), p.traffic_class(), p.flow_label()), (6, 0xab, 0x12345));
        assert_eq!((p.payload_len(), p.next_header(), p.hop_limit()), (36, 0, 61));
        assert_eq!(p.src(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload().len(), 36, "padding trimmed");
        let c = walk_extensions(p.next_header(), p.payload()).unwrap();
        assert_eq!(c, Ipv6ExtChain { next_header: 17, header_len: 36, fragment: None });
        let h = Ipv6ExtHeader::new_checked(p.payload()).unwrap();
        assert_eq!((h.next_header(), h.header_len(), h.data()), (43, 8, &[1, 4, 0, 0, 0, 0][..]));
        assert_eq!(h.payload().len(), 28);
    }

    #[test]
    fn fragment_header_stops_walk() {
        // HBH (8 bytes) -> fragment: next 17, offset field 0x0109 = 264 bytes + M, id 0xdeadbeef
        let d = [44u8, 0, 1, 4, 0, 0, 0, 0, 17, 0, 0x01, 0x09, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3];
        let c = walk_extensions(0, &d).unwrap();
        assert_eq!(c.next_header, 17);
        assert_eq!(c.header_len, 16);
        let f = c.fragment.unwrap();
        assert_eq!((f.ident, f.offset, f.more, f.next_header), (0xdead_beef, 264, true, 17));
        // An atomic fragment (offset 0, M=0) is stepped over.
        let atomic = [6u8, 0, 0, 0, 0, 0, 0, 7, 0xaa];
        let c = walk_extensions(44, &atomic).unwrap();
        assert_eq!(c, Ipv6ExtChain { next_header: 6, header_len: 8, fragment: None });
    }

    #[test]
    fn fragment_header_view() {
        let d = [6u8, 0, 0xff, 0xf9, 0, 0, 0, 42, 0xaa];
        let f = Ipv6FragmentHeader::new_checked(&d[..]).unwrap();
        assert_eq!((f.next_header(), f.frag_offset(), f.more_frags(), f.ident()), (6, 0xfff8, true, 42));
        assert!(f.is_fragment());
        for n in 0..8 {
            assert!(Ipv6FragmentHeader::new_checked(&d[..n]).is_err());
        }
        let ah = [6u8, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0xbb];
        let h = Ipv6ExtHeader::new_checked_ah(&ah[..]).unwrap();
        assert_eq!((h.next_header(), h.header_len(), h.payload()), (6, 12, &[0xbb][..]));
        for n in 0..12 {
            assert!(Ipv6ExtHeader::new_checked_ah(&ah[..n]).is_err());
        }
    }

    #[test]
    fn stops_at_esp_and_no_next() {
        assert_eq!(walk_extensions(50, &[1, 2]).unwrap().header_len, 0);
        let c = walk_extensions(60, &[59, 0, 0, 0, 0, 0, 0, 0, 9]).unwrap();
        assert_eq!((c.next_header, c.header_len), (59, 8));
    }

    #[test]
    fn truncation_at_every_offset() {
        let s = sample();
        for n in 0..s.len() {
            match Ipv6Packet::new_checked(&s[..n]) {
                Err(e) => assert!(n < 40, "{n}: {e}"),
                Ok(p) => {
                    assert!(n >= 40);
                    assert_eq!(p.is_truncated(), n < 76);
                    let r = walk_extensions(p.next_header(), p.payload());
                    assert_eq!(r.is_ok(), n >= 76, "{n}");
                }
            }
        }
        let mut bad = s.clone();
        bad[0] = 0x45;
        assert!(matches!(Ipv6Packet::new_checked(&bad[..]), Err(DecodeError::Malformed { .. })));
    }
}
