//! TCP headers and options.

use crate::packet::{TcpFlags, TcpInfo, TcpOptions};

use super::DecodeError;
use super::bytes::{be16, be32, clamp_range, u8_at};

/// A view of a TCP segment.
///
/// `new_checked` requires the whole header, options included (data offset * 4 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = 20;

    /// Wraps `buffer` without checking it; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after checking the data offset is at least 5 and the whole header,
    /// options included, was captured.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let b = buffer.as_ref();
        let Some(&off) = b.get(12) else {
            return Err(DecodeError::Truncated { layer: "tcp", need: Self::MIN_HEADER_LEN, have: b.len() });
        };
        let hl = usize::from(off >> 4) * 4;
        if hl < Self::MIN_HEADER_LEN {
            return Err(DecodeError::Malformed { layer: "tcp", what: "data offset below 5" });
        }
        if b.len() < hl {
            return Err(DecodeError::Truncated { layer: "tcp", need: hl, have: b.len() });
        }
        Ok(TcpPacket { buffer })
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

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.b(), 0).unwrap_or(0)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.b(), 2).unwrap_or(0)
    }

    /// Sequence number.
    #[inline]
    pub fn seq(&self) -> u32 {
        be32(self.b(), 4).unwrap_or(0)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack(&self) -> u32 {
        be32(self.b(), 8).unwrap_or(0)
    }

    /// Header length in bytes (data offset * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(u8_at(self.b(), 12).unwrap_or(0) >> 4) * 4
    }

    /// The 8 flag bits (CWR ECE URG ACK PSH RST SYN FIN).
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(u8_at(self.b(), 13).unwrap_or(0))
    }

    /// Raw (unscaled) window.
    #[inline]
    pub fn window(&self) -> u16 {
        be16(self.b(), 14).unwrap_or(0)
    }

    /// Checksum as written (not verified).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.b(), 16).unwrap_or(0)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        be16(self.b(), 18).unwrap_or(0)
    }

    /// The raw option bytes.
    #[inline]
    pub fn option_bytes(&self) -> &[u8] {
        clamp_range(self.b(), Self::MIN_HEADER_LEN, self.header_len())
    }

    /// Iterates over the options.
    #[inline]
    pub fn options_iter(&self) -> TcpOptionIter<'_> {
        TcpOptionIter::new(self.option_bytes())
    }

    /// The options the flow table uses, parsed. Malformed options end parsing (what was
    /// parsed before them is kept); they never fail the segment.
    #[inline]
    pub fn options(&self) -> TcpOptions {
        parse_options(self.option_bytes())
    }

    /// Everything [`TcpInfo`] holds.
    #[inline]
    pub fn info(&self) -> TcpInfo {
        TcpInfo {
            src_port: self.src_port(),
            dst_port: self.dst_port(),
            seq: self.seq(),
            ack: self.ack(),
            flags: self.flags(),
            window: self.window(),
            header_len: u8::try_from(self.header_len()).unwrap_or(u8::MAX),
            options: self.options(),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpPacket<&'a T> {
    /// The segment's data, after the header and options.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        b.get(self.header_len()..).unwrap_or(&[])
    }
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// No-operation (kind 1).
    Nop,
    /// Maximum segment size (kind 2).
    Mss(u16),
    /// Window scale shift (kind 3).
    WindowScale(u8),
    /// SACK permitted (kind 4).
    SackPermitted,
    /// SACK blocks (kind 5): the raw bytes, a multiple of 8 (left edge, right edge pairs).
    Sack(&'a [u8]),
    /// Timestamps (kind 8): (TSval, TSecr).
    Timestamps(u32, u32),
    /// Any other option, or a known kind with the wrong length.
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option data after the kind and length bytes.
        data: &'a [u8],
    },
}

/// Iterator over TCP options. Ends at end-of-option-list (kind 0), at the end of the bytes,
/// or at an option whose length is below 2 or runs past the end (malformed).
#[derive(Debug, Clone)]
pub struct TcpOptionIter<'a> {
    rest: &'a [u8],
    malformed: bool,
}

impl<'a> TcpOptionIter<'a> {
    /// Iterates over raw option bytes.
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Self {
        TcpOptionIter { rest: bytes, malformed: false }
    }

    /// True once iteration stopped at a malformed option.
    #[inline]
    pub fn malformed(&self) -> bool {
        self.malformed
    }
}

impl<'a> Iterator for TcpOptionIter<'a> {
    type Item = TcpOption<'a>;

    #[inline]
    fn next(&mut self) -> Option<TcpOption<'a>> {
        let (opt, rest) = match *self.rest {
            [] | [0, ..] => return None,
            [1, ref rest @ ..] => (TcpOption::Nop, rest),
            [kind, len, ref tail @ ..] => {
                let Some(body_len) = usize::from(len).checked_sub(2) else {
                    return self.stop();
                };
                let Some((data, rest)) = tail.split_at_checked(body_len) else {
                    return self.stop();
                };
                let opt = match (kind, data) {
                    (2, &[a, b]) => TcpOption::Mss(u16::from_be_bytes([a, b])),
                    (3, &[s]) => TcpOption::WindowScale(s),
                    (4, []) => TcpOption::SackPermitted,
                    (5, d) if !d.is_empty() && d.len().is_multiple_of(8) => TcpOption::Sack(d),
                    (8, &[a, b, c, d, e, f, g, h]) => {
                        TcpOption::Timestamps(u32::from_be_bytes([a, b, c, d]), u32::from_be_bytes([e, f, g, h]))
                    }
                    _ => TcpOption::Unknown { kind, data },
                };
                (opt, rest)
            }
            [_] => return self.stop(),
        };
        self.rest = rest;
        Some(opt)
    }
}

impl<'a> TcpOptionIter<'a> {
    #[inline]
    fn stop(&mut self) -> Option<TcpOption<'a>> {
        self.rest = &[];
        self.malformed = true;
        None
    }
}

/// Folds raw option bytes into [`TcpOptions`]. At most 4 SACK blocks are kept. Same rules
/// as [`TcpOptionIter`]: parsing ends at EOL or at a malformed length; a known kind with the
/// wrong length is skipped.
#[inline]
pub fn parse_options(bytes: &[u8]) -> TcpOptions {
    let mut o = TcpOptions::default();
    // Fast path: what nearly every segment of an established Linux connection carries.
    if let [1, 1, 8, 10, a, b, c, d, e, f, g, h] = *bytes {
        o.timestamp = Some((u32::from_be_bytes([a, b, c, d]), u32::from_be_bytes([e, f, g, h])));
        return o;
    }
    let mut rest = bytes;
    loop {
        match *rest {
            [] | [0, ..] | [_] => break,
            [1, ref tail @ ..] => rest = tail,
            [kind, len, ref tail @ ..] => {
                let Some(body_len) = usize::from(len).checked_sub(2) else { break };
                let Some((data, next)) = tail.split_at_checked(body_len) else { break };
                match (kind, data) {
                    (2, &[a, b]) => o.mss = Some(u16::from_be_bytes([a, b])),
                    (3, &[s]) => o.window_scale = Some(s),
                    (4, []) => o.sack_permitted = true,
                    (5, d) if !d.is_empty() && d.len().is_multiple_of(8) => {
                        o.sack_count = 0;
                        for (slot, block) in o.sack.iter_mut().zip(d.chunks_exact(8)) {
                            *slot = (be32(block, 0).unwrap_or(0), be32(block, 4).unwrap_or(0));
                            o.sack_count += 1;
                        }
                    }
                    (8, &[a, b, c, d, e, f, g, h]) => {
                        o.timestamp = Some((u32::from_be_bytes([a, b, c, d]), u32::from_be_bytes([e, f, g, h])))
                    }
                    _ => {}
                }
                rest = next;
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SYN-ACK-ish segment with MSS, SACK-permitted, timestamps, NOP, wscale, SACK (2 blocks).
    fn sample() -> Vec<u8> {
        let mut s = vec![
            0x30, 0x39, 0x01, 0xbb, // 12345 -> 443
            0, 0, 0x10, 0, // seq 4096
            0, 0, 0x20, 0, // ack 8192
            0xf0, 0x12, 0xff, 0xff, // data offset 15 (60 bytes), SYN+ACK, window 65535
            0xab, 0xcd, 0, 0, // checksum, urgent
            2, 4, 0x05, 0xb4, // MSS 1460
            4, 2, // SACK permitted
            8, 10, 0, 0, 0, 1, 0, 0, 0, 2, // TS 1, 2
            1, // NOP
            3, 3, 7, // wscale 7
        ];
        s.extend_from_slice(&[5, 18, 0, 0, 0, 10, 0, 0, 0, 20, 0, 0, 0, 30, 0, 0, 0, 40]);
        s.extend_from_slice(&[0, 0]); // EOL + padding to 60 bytes
        assert_eq!(s.len(), 60);
        s
    }

    #[test]
    fn fields_and_options() {
        let mut s = sample();
        s.extend_from_slice(b"hello");
        let t = TcpPacket::new_checked(&s[..]).unwrap();
        assert_eq!((t.src_port(), t.dst_port(), t.seq(), t.ack()), (12345, 443, 4096, 8192));
        assert_eq!((t.header_len(), t.window(), t.checksum(), t.urgent()), (60, 65535, 0xabcd, 0));
        assert!(t.flags().syn() && t.flags().ack() && !t.flags().fin());
        let o = t.options();
        assert_eq!(o.mss, Some(1460));
        assert_eq!(o.window_scale, Some(7));
        assert!(o.sack_permitted);
        assert_eq!(o.timestamp, Some((1, 2)));
        assert_eq!(o.sack_count, 2);
        assert_eq!(&o.sack[..2], &[(10, 20), (30, 40)]);
        assert_eq!(t.payload(), b"hello");
        let info = t.info();
        assert_eq!((info.header_len, info.options), (60, o));
        assert_eq!(t.options_iter().count(), 6);
    }

    #[test]
    fn truncation_at_every_offset() {
        let mut s = sample();
        for n in 0..s.len() {
            assert!(matches!(TcpPacket::new_checked(&s[..n]), Err(DecodeError::Truncated { .. })), "{n}");
        }
        assert!(TcpPacket::new_checked(&s[..]).unwrap().payload().is_empty());
        s[12] = 0x40;
        assert!(matches!(TcpPacket::new_checked(&s[..]), Err(DecodeError::Malformed { .. })));
    }

    #[test]
    fn malformed_options_stop_parsing() {
        // MSS, then an option with length 1 (malformed): MSS kept, the rest ignored.
        let o = parse_options(&[2, 4, 0x05, 0xb4, 3, 1, 7, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!((o.mss, o.window_scale, o.timestamp), (Some(1460), None, None));
        // Length running past the end.
        let mut it = TcpOptionIter::new(&[1, 3, 3, 7, 8, 10, 0, 0]);
        assert_eq!(it.next(), Some(TcpOption::Nop));
        assert_eq!(it.next(), Some(TcpOption::WindowScale(7)));
        assert_eq!(it.next(), None);
        assert!(it.malformed());
        // A lone kind byte at the end.
        assert_eq!(TcpOptionIter::new(&[1, 2]).count(), 1);
        // A known kind with the wrong length is skipped, parsing goes on.
        let o = parse_options(&[2, 3, 5, 3, 3, 7]);
        assert_eq!((o.mss, o.window_scale), (None, Some(7)));
        // EOL ends the list.
        assert_eq!(parse_options(&[0, 2, 4, 5, 0xb4]).mss, None);
        // More than 4 SACK blocks: only 4 kept.
        let mut sack = vec![5u8, 42];
        for i in 0..5u32 {
            sack.extend_from_slice(&i.to_be_bytes());
            sack.extend_from_slice(&(i + 100).to_be_bytes());
        }
        let o = parse_options(&sack);
        assert_eq!(o.sack_count, 4);
        assert_eq!(o.sack[3], (3, 103));
        // The iterator and the fold agree; NOP NOP TS takes the fast path.
        let o = parse_options(&[1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6]);
        assert_eq!(o, TcpOptions { timestamp: Some((5, 6)), ..TcpOptions::default() });
        assert_eq!(parse_options(&[1, 1, 8, 9, 0, 0, 0, 5, 0, 0, 0]).timestamp, None);
        // Every prefix of every option list parses without panicking.
        let s = sample();
        for n in 20..s.len() {
            let _ = parse_options(&s[20..n]);
        }
    }

    fn fold(bytes: &[u8]) -> TcpOptions {
        let mut o = TcpOptions::default();
        for opt in TcpOptionIter::new(bytes) {
            match opt {
                TcpOption::Mss(m) => o.mss = Some(m),
                TcpOption::WindowScale(s) => o.window_scale = Some(s),
                TcpOption::SackPermitted => o.sack_permitted = true,
                TcpOption::Sack(d) => {
                    o.sack_count = 0;
                    for (slot, b) in o.sack.iter_mut().zip(d.chunks_exact(8)) {
                        *slot = (be32(b, 0).unwrap(), be32(b, 4).unwrap());
                        o.sack_count += 1;
                    }
                }
                TcpOption::Timestamps(v, e) => o.timestamp = Some((v, e)),
                TcpOption::Nop | TcpOption::Unknown { .. } => {}
            }
        }
        o
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 2000,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x7c9_0001),
            ..proptest::test_runner::Config::default()
        })]
        #[test]
        fn parse_options_agrees_with_iterator(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![0u8..12, proptest::prelude::any::<u8>()], 0..40),
        ) {
            proptest::prop_assert_eq!(parse_options(&bytes), fold(&bytes));
            let mut padded = vec![0u8; 20];
            padded[12] = 0xf0;
            padded.extend_from_slice(&bytes);
            padded.resize(60, 0);
            if let Ok(t) = TcpPacket::new_checked(&padded[..]) {
                proptest::prop_assert_eq!(t.options(), fold(t.option_bytes()));
            }
        }
    }
}
