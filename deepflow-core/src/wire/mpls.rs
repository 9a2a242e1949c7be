//! MPLS label stack entries and stack walking.

use super::DecodeError;
use super::bytes::{be32, need};

/// A view of one 4-byte MPLS label stack entry.
///
/// ```text
/// | label (20) | TC (3) | S (1) | TTL (8) |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MplsLabel<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MplsLabel<T> {
    /// Length of a label stack entry.
    pub const HEADER_LEN: usize = 4;

    /// Wraps `buffer` without checking it; accessors then read 0 for missing bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        MplsLabel { buffer }
    }

    /// Wraps `buffer` after checking it holds a whole entry.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        need("mpls", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(MplsLabel { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn word(&self) -> u32 {
        be32(self.buffer.as_ref(), 0).unwrap_or(0)
    }

    /// Label (20 bits).
    #[inline]
    pub fn label(&self) -> u32 {
        self.word() >> 12
    }

    /// Traffic class.
    #[inline]
    pub fn tc(&self) -> u8 {
        ((self.word() >> 9) & 0x7) as u8
    }

    /// Bottom-of-stack flag.
    #[inline]
    pub fn bottom(&self) -> bool {
        self.word() & 0x100 != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        (self.word() & 0xff) as u8
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> MplsLabel<&'a T> {
    /// Everything after this entry (the next entry, or the payload after the bottom one).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        b.get(Self::HEADER_LEN..).unwrap_or(&[])
    }
}

/// A walked label stack: the top label, how many entries, and what follows the bottom one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MplsStack<'a> {
    /// The outermost (top) label.
    pub top_label: u32,
    /// Number of label stack entries.
    pub depth: usize,
    /// The bytes after the bottom-of-stack entry.
    pub payload: &'a [u8],
}

/// Walks the label stack at the start of `data` down to the bottom-of-stack entry. Fails if
/// the data ends before an entry with the S bit set.
#[inline]
pub fn walk_stack(data: &[u8]) -> Result<MplsStack<'_>, DecodeError> {
    let top = MplsLabel::new_checked(data)?;
    let mut entry = top;
    let mut depth = 1;
    while !entry.bottom() {
        entry = MplsLabel::new_checked(entry.payload())?;
        depth += 1;
    }
    Ok(MplsStack { top_label: top.label(), depth, payload: entry.payload() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_fields() {
        let e = (1000u32 << 12) | (5 << 9) | 0x100 | 64;
        let d = e.to_be_bytes();
        let l = MplsLabel::new_checked(&d[..]).unwrap();
        assert_eq!((l.label(), l.tc(), l.bottom(), l.ttl()), (1000, 5, true, 64));
        for n in 0..4 {
            assert!(MplsLabel::new_checked(&d[..n]).is_err());
        }
    }

    #[test]
    fn stack() {
        let mut d = ((16u32 << 12) | 255).to_be_bytes().to_vec();
        d.extend_from_slice(&((17u32 << 12) | 0x100 | 255).to_be_bytes());
        d.push(0x45);
        let s = walk_stack(&d).unwrap();
        assert_eq!((s.top_label, s.depth, s.payload), (16, 2, &[0x45][..]));
        for n in 0..8 {
            assert!(walk_stack(&d[..n]).is_err(), "{n}");
        }
        assert!(walk_stack(&d[..8]).unwrap().payload.is_empty());
    }
}
