//! A forward-only byte stream over a reader with one large reused buffer, from which the file
//! readers lend records without copying them again.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Buffered reader that keeps `[pos, end)` of `buf` valid and refills by compacting: a record
/// that straddles the end of the buffer is moved to the front and the rest read after it.
///
/// With [`Stream::read_ahead`] a thread of its own reads the file into blocks that have room
/// in front: a refill puts the unconsumed tail (a part of one record) in that room and swaps
/// the block in, so the reading thread does the `read` copies and the consumer never waits on
/// the kernel while the next block is ready.
pub(crate) struct Stream<R> {
    inner: Inner<R>,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes.
    pos: usize,
    /// End of the valid bytes.
    end: usize,
    /// File offset of `buf[0]`, modulo 2^64 (a block swapped in puts the next unconsumed byte
    /// after its headroom, so this may be "before" the file's start: every use wraps).
    base: u64,
    eof: bool,
}

enum Inner<R> {
    Direct(R),
    Ahead(ReadAhead),
}

/// The consumer's end of a read-ahead thread.
struct ReadAhead {
    /// Blocks read: bytes `[head, head + len)` hold data; `len == 0` is the end of the file.
    rx: Receiver<io::Result<(Vec<u8>, usize)>>,
    /// Consumed blocks back to the thread for reuse.
    back: SyncSender<Vec<u8>>,
    head: usize,
    block: usize,
}

/// Blocks read ahead (besides the one being consumed and the one being read).
const AHEAD_BLOCKS: usize = 2;

impl<R: Read> Stream<R> {
    pub(crate) fn new(inner: R, buffer_size: usize) -> Self {
        Stream { inner: Inner::Direct(inner), buf: vec![0; buffer_size.max(64)], pos: 0, end: 0, base: 0, eof: false }
    }

    /// A stream fed by a thread that reads `inner` ahead in blocks of `block` bytes with
    /// `head` bytes of room in front (for the tail of a record that straddles two blocks;
    /// longer tails are copied instead).
    pub(crate) fn read_ahead(inner: R, head: usize, block: usize) -> io::Result<Self>
    where
        R: Send + 'static,
    {
        let block = block.max(64);
        let (tx, rx) = sync_channel(AHEAD_BLOCKS);
        let (back, back_rx) = sync_channel::<Vec<u8>>(AHEAD_BLOCKS + 2);
        std::thread::Builder::new()
            .name("pcap-read-ahead".into())
            .spawn(move || read_blocks(inner, head, block, &tx, &back_rx))?;
        let ahead = ReadAhead { rx, back, head, block };
        Ok(Stream { inner: Inner::Ahead(ahead), buf: Vec::new(), pos: 0, end: 0, base: 0, eof: false })
    }

    /// File offset of the next unconsumed byte.
    #[inline]
    pub(crate) fn offset(&self) -> u64 {
        self.base.wrapping_add(self.pos as u64)
    }

    /// Makes at least `n` unconsumed bytes available. `Ok(false)` when the reader ends first
    /// (the bytes that were there stay available).
    #[inline]
    pub(crate) fn ensure(&mut self, n: usize) -> io::Result<bool> {
        if self.end - self.pos >= n { Ok(true) } else { self.refill(n) }
    }

    #[cold]
    fn refill(&mut self, n: usize) -> io::Result<bool> {
        let inner = match &mut self.inner {
            Inner::Direct(r) => r,
            Inner::Ahead(_) => return self.refill_ahead(n),
        };
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.base = self.base.wrapping_add(self.pos as u64);
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
            match inner.read(dst) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// [`Stream::refill`] from the read-ahead thread's blocks.
    fn refill_ahead(&mut self, n: usize) -> io::Result<bool> {
        let Inner::Ahead(a) = &self.inner else { return Ok(false) };
        while self.end - self.pos < n {
            if self.eof {
                return Ok(false);
            }
            let (mut block, len) = match a.rx.recv() {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return Err(e),
                // the thread is gone after an error it sent (or a panic): nothing more to read
                Err(_) => {
                    self.eof = true;
                    continue;
                }
            };
            let data = block.get(a.head..a.head + len).filter(|_| len > 0);
            let tail = self.end - self.pos;
            match data {
                None => {
                    self.eof = true;
                }
                Some(_) if tail <= a.head => {
                    // the tail goes into the block's headroom and the block becomes the buffer
                    let start = a.head - tail;
                    if let (Some(dst), Some(src)) = (block.get_mut(start..a.head), self.buf.get(self.pos..self.end)) {
                        dst.copy_from_slice(src);
                    }
                    let offset = self.offset();
                    let old = std::mem::replace(&mut self.buf, block);
                    if old.len() == a.head + a.block {
                        let _ = a.back.try_send(old);
                    }
                    self.pos = start;
                    self.end = a.head + len;
                    self.base = offset.wrapping_sub(start as u64);
                    continue;
                }
                Some(d) => {
                    // a tail longer than the headroom (a record larger than it): compact and append
                    if self.pos > 0 {
                        self.buf.copy_within(self.pos..self.end, 0);
                        self.base = self.base.wrapping_add(self.pos as u64);
                        self.end -= self.pos;
                        self.pos = 0;
                    }
                    self.buf.truncate(self.end);
                    self.buf.extend_from_slice(d);
                    self.end = self.buf.len();
                }
            }
            let _ = a.back.try_send(block);
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
            self.base = self.base.wrapping_add(self.end as u64);
            self.pos = 0;
            self.end = 0;
            let room = match &self.inner {
                Inner::Direct(_) => self.buf.len(),
                Inner::Ahead(a) => a.block,
            };
            let want = usize::try_from(n).unwrap_or(usize::MAX).min(room).max(1);
            if !self.ensure(want)? {
                // Consume what is left so the offset points at the end of the file.
                self.pos = self.end;
                return Ok(false);
            }
        }
    }
}

/// The read-ahead thread: fills blocks (reused when the consumer gives them back) and sends
/// them until the end of the file (an empty block), an error, or the consumer is gone.
fn read_blocks<R: Read>(
    mut r: R,
    head: usize,
    block: usize,
    tx: &SyncSender<io::Result<(Vec<u8>, usize)>>,
    back: &Receiver<Vec<u8>>,
) {
    loop {
        let mut b = back.try_recv().unwrap_or_default();
        b.resize(head + block, 0);
        let mut len = 0;
        let mut end = false;
        let mut err = None;
        while len < block {
            let Some(dst) = b.get_mut(head + len..) else { break };
            match r.read(dst) {
                Ok(0) => {
                    end = true;
                    break;
                }
                Ok(k) => len += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        if len > 0 && tx.send(Ok((b, len))).is_err() {
            return;
        }
        if let Some(e) = err {
            let _ = tx.send(Err(e));
            return;
        }
        if end {
            let _ = tx.send(Ok((Vec::new(), 0)));
            return;
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

    /// Drives a stream through a pseudo-random mix of ensure / consume / skip and records what
    /// it sees, so that the read-ahead stream can be compared with the direct one.
    fn drive<R: Read>(s: &mut Stream<R>, seed: u64) -> Vec<(u64, bool, Vec<u8>)> {
        let mut x = seed | 1;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut seen = Vec::new();
        for _ in 0..400 {
            match rnd(4) {
                0 | 1 => {
                    let n = rnd(300) as usize + 1;
                    let ok = s.ensure(n).unwrap();
                    let got = s.available().get(..n.min(s.available().len())).unwrap_or_default().to_vec();
                    seen.push((s.offset(), ok, got));
                    if ok {
                        s.consume(rnd(n as u64 + 1) as usize);
                    }
                }
                2 => {
                    let ok = s.skip(rnd(200)).unwrap();
                    seen.push((s.offset(), ok, Vec::new()));
                }
                _ => {
                    if s.ensure(4).unwrap() {
                        seen.push((s.offset(), true, s.array::<4>(0).map(|a| a.to_vec()).unwrap_or_default()));
                    }
                }
            }
        }
        seen
    }

    #[test]
    fn read_ahead_sees_the_same_bytes_as_direct_reads() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for seed in 1..40u64 {
            let mut direct = Stream::new(&data[..], 64);
            let expected = drive(&mut direct, seed);
            // headroom smaller and larger than the tails the driver leaves (up to 300 bytes),
            // and blocks smaller than what it asks for: both refill paths and multi-block asks
            for (head, block) in [(16, 64), (512, 100), (0, 1000), (4096, 4096)] {
                let mut ahead = Stream::read_ahead(std::io::Cursor::new(data.clone()), head, block).unwrap();
                assert_eq!(drive(&mut ahead, seed), expected, "seed {seed} head {head} block {block}");
            }
        }
    }

    #[test]
    fn read_ahead_reports_a_read_error_after_the_bytes_before_it() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk gone"));
                }
                let n = b.len().min(self.0);
                b.get_mut(..n).unwrap_or_default().fill(7);
                self.0 -= n;
                Ok(n)
            }
        }
        let mut s = Stream::read_ahead(Failing(150), 8, 64).unwrap();
        assert!(s.ensure(150).unwrap());
        assert_eq!(s.available().len(), 150);
        s.consume(150);
        assert_eq!(s.ensure(1).unwrap_err().to_string(), "disk gone");
        assert!(!s.ensure(1).unwrap(), "the end after the error");
    }
}
