//! A forward-only byte stream over a reader with one large reused buffer, from which the file
//! readers lend records without copying them again.

use std::io::{self, Read};

/// Buffered reader that keeps `[pos, end)` of `buf` valid and refills by compacting: a record
/// that straddles the end of the buffer is moved to the front and the rest read after it.
pub(crate) struct Stream<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes.
    pos: usize,
    /// End of the valid bytes.
    end: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
}

impl<R: Read> Stream<R> {
    pub(crate) fn new(inner: R, buffer_size: usize) -> Self {
        Stream { inner, buf: vec![0; buffer_size.max(64)], pos: 0, end: 0, base: 0, eof: false }
    }

    /// File offset of the next unconsumed byte.
    #[inline]
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Makes at least `n` unconsumed bytes available. `Ok(false)` when the reader ends first
    /// (the bytes that were there stay available).
    #[inline]
    pub(crate) fn ensure(&mut self, n: usize) -> io::Result<bool> {
        if self.end - self.pos >= n { Ok(true) } else { self.refill(n) }
    }

    #[cold]
    fn refill(&mut self, n: usize) -> io::Result<bool> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.end -= self.pos;
            self.pos = 0;
        }
        if n > self.buf.len() {
            self.buf.resize(n.next_power_of_two(), 0);
        }
        while self.end < n {
            if self.eof {
                return Ok(false);
            }
            let Some(dst) = self.buf.get_mut(self.end..) else { return Ok(false) };
            match self.inner.read(dst) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// The unconsumed bytes available now.
    #[inline]
    pub(crate) fn available(&self) -> &[u8] {
        self.buf.get(self.pos..self.end).unwrap_or(&[])
    }

    /// `N` bytes at `at` past the current position, if available.
    #[inline]
    pub(crate) fn array<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        let from = self.pos.checked_add(at)?;
        let to = from.checked_add(N)?;
        if to > self.end {
            return None;
        }
        self.buf.get(from..to)?.try_into().ok()
    }

    /// The last `n` consumed bytes (valid until the next refill, i.e. the next `ensure`).
    #[inline]
    pub(crate) fn slice_back(&self, n: usize) -> &[u8] {
        self.buf.get(self.pos.saturating_sub(n)..self.pos).unwrap_or(&[])
    }

    /// Consumes `n` available bytes (clamped to what is available).
    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.end);
    }

    /// Consumes `n` bytes whether or not they are buffered yet, reading and discarding as
    /// needed. `Ok(false)` when the reader ends first.
    pub(crate) fn skip(&mut self, mut n: u64) -> io::Result<bool> {
        loop {
            let avail = (self.end - self.pos) as u64;
            if avail >= n {
                self.pos += n as usize;
                return Ok(true);
            }
            n -= avail;
            self.base += self.end as u64;
            self.pos = 0;
            self.end = 0;
            let want = usize::try_from(n).unwrap_or(usize::MAX).min(self.buf.len());
            if !self.ensure(want)? {
                // Consume what is left so the offset points at the end of the file.
                self.pos = self.end;
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refill_compact_and_skip() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut s = Stream::new(&data[..], 64);
        assert!(s.ensure(10).unwrap());
        s.consume(60);
        assert!(s.ensure(10).unwrap());
        assert_eq!(s.offset(), 60);
        assert_eq!(s.array::<2>(0), Some([60, 61]));
        assert!(s.ensure(200).unwrap(), "grows past the initial size");
        assert_eq!(&s.available()[..3], &[60, 61, 62]);
        assert!(s.skip(500).unwrap());
        assert_eq!(s.offset(), 560);
        assert!(s.ensure(1).unwrap());
        assert_eq!(s.array::<1>(0), Some([(560 % 256) as u8]));
        assert!(!s.skip(1000).unwrap());
        assert_eq!(s.offset(), 1000);
        assert!(!s.ensure(1).unwrap());
    }
}
