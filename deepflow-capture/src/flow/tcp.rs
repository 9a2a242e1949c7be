//! Per-direction TCP state: sequence analysis (retransmission, out-of-order, keep-alive, dup
//! ACKs, with the same rules as Wireshark's `tcp.analysis.*` so that counts can be checked
//! against tshark) and reassembly that delivers in-order bytes, buffering a bounded amount of
//! out-of-order data and reporting holes as gaps instead of stalling.

use std::sync::Arc;

use crate::budget::MemoryBudget;

/// Serial-number comparison (RFC 1982) for 32-bit sequence numbers.
#[inline]
pub(crate) fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
#[inline]
pub(crate) fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}
#[inline]
pub(crate) fn seq_gt(a: u32, b: u32) -> bool {
    seq_lt(b, a)
}

/// How the sequence analysis classified a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentClass {
    /// Advances the sequence space (or carries nothing to classify).
    Normal,
    /// A keep-alive probe (one byte or none, just below the next sequence number).
    KeepAlive,
    /// Resent data (tshark: retransmission or fast retransmission).
    Retransmission,
    /// Resent data the receiver had already acknowledged (tshark: spurious retransmission).
    SpuriousRetransmission,
    /// Arrived shortly after a later segment (tshark: out-of-order).
    OutOfOrder,
}

/// One buffered out-of-order segment.
#[derive(Debug)]
struct Held {
    seq: u32,
    data: Vec<u8>,
    /// Bytes that were on the wire but not captured (snaplen) after `data`.
    missing_tail: u32,
}

#[derive(Debug, Default)]
struct HeldQueue {
    segs: Vec<Held>,
    bytes: u32,
}

/// Something the reassembler hands to the L7 layer, in order.
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// This many bytes of the stream will never be seen.
    Gap(u64),
}

/// Sequence analysis and reassembly for one direction of a TCP connection.
#[derive(Debug, Default)]
pub(crate) struct TcpDir {
    /// Highest sequence end seen (tshark's `nextseq`), valid when `next_seq_set`.
    pub next_seq: u32,
    pub next_seq_set: bool,
    pub next_seq_time: u64,
    /// Last ACK number this direction sent, and how many duplicate ACKs in a row.
    pub last_ack: u32,
    pub last_ack_set: bool,
    pub last_ack_time: u64,
    pub dup_acks: u16,
    pub last_window: u16,
    /// Window scale option from this side's SYN.
    pub window_scale: Option<u8>,
    pub syn_seen: bool,
    pub fin_seen: bool,
    pub rst_seen: bool,
    /// Sequence number of our FIN (it occupies one sequence number).
    pub fin_seq: u32,
    /// Reassembly: next byte to deliver.
    pub deliver_seq: u32,
    pub deliver_set: bool,
    /// Out-of-order segments waiting for a hole to fill, sorted by seq (boxed: most
    /// directions never hold anything).
    held: Option<Box<HeldQueue>>,
    /// Bytes skipped because they were never captured.
    pub gap_bytes: u64,
}

/// Limits for reassembly.
#[derive(Debug, Clone, Copy)]
pub struct ReassemblyLimits {
    /// Most out-of-order bytes held per direction.
    pub max_held_bytes: u32,
    /// Most out-of-order segments held per direction.
    pub max_held_segments: u16,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits { max_held_bytes: 64 * 1024, max_held_segments: 64 }
    }
}

impl TcpDir {
    /// Wireshark-compatible classification of a segment sent in this direction. `rev` is the
    /// opposite direction's state, `first_rtt_us` the handshake RTT if known.
    /// Call before [`TcpDir::update_after`].
    #[allow(clippy::too_many_arguments)]
    pub fn classify(
        &self,
        rev: &TcpDir,
        seq: u32,
        seglen: u32,
        syn_or_fin: bool,
        rst: bool,
        ts_us: u64,
        first_rtt_us: Option<u64>,
    ) -> SegmentClass {
        if !self.next_seq_set {
            return SegmentClass::Normal;
        }
        // Keep-alive: 0 or 1 byte at nextseq-1, no SYN/FIN/RST.
        if seglen <= 1 && !syn_or_fin && !rst && self.next_seq.wrapping_sub(1) == seq {
            return SegmentClass::KeepAlive;
        }
        if (seglen > 0 || syn_or_fin) && seq_lt(seq, self.next_seq) {
            let t = ts_us.saturating_sub(self.next_seq_time);
            // Fast retransmission: the peer sent >= 2 dup ACKs for exactly this seq recently.
            if rev.dup_acks >= 2
                && rev.last_ack_set
                && rev.last_ack == seq
                && ts_us.saturating_sub(rev.last_ack_time) < 20_000
            {
                return SegmentClass::Retransmission;
            }
            let ooo_thres = first_rtt_us.filter(|&r| r > 0).unwrap_or(3_000);
            let end = seq.wrapping_add(seglen);
            if t < ooo_thres && self.next_seq != end {
                return SegmentClass::OutOfOrder;
            }
            if rev.last_ack_set && seq_le(end, rev.last_ack) && seglen > 0 {
                return SegmentClass::SpuriousRetransmission;
            }
            return SegmentClass::Retransmission;
        }
        SegmentClass::Normal
    }

    /// Updates the analysis state with a segment sent in this direction.
    #[allow(clippy::too_many_arguments)]
    pub fn update_after(
        &mut self,
        seq: u32,
        seglen: u32,
        syn: bool,
        fin: bool,
        ack: Option<u32>,
        window: u16,
        ts_us: u64,
    ) {
        let occupied = seglen + u32::from(syn) + u32::from(fin);
        if occupied > 0 {
            let end = seq.wrapping_add(occupied);
            if !self.next_seq_set || seq_gt(end, self.next_seq) {
                self.next_seq = end;
                self.next_seq_set = true;
                self.next_seq_time = ts_us;
            }
        } else if !self.next_seq_set {
            // tshark starts tracking from the first segment even when it carries nothing.
            self.next_seq = seq;
            self.next_seq_set = true;
            self.next_seq_time = ts_us;
        }
        if let Some(a) = ack {
            if self.last_ack_set && a == self.last_ack && seglen == 0 && !syn && !fin && window == self.last_window {
                self.dup_acks = self.dup_acks.saturating_add(1);
            } else if !self.last_ack_set || a != self.last_ack {
                self.dup_acks = 0;
            }
            if !self.last_ack_set || a != self.last_ack {
                self.last_ack = a;
                self.last_ack_set = true;
                self.last_ack_time = ts_us;
            }
        }
        self.last_window = window;
    }

    /// Feeds a segment's payload into reassembly. `captured` may be shorter than `declared`
    /// (snaplen); the missing tail is reported as a gap. In-order bytes go to `emit` at once
    /// (without copying); later bytes are held, within `limits` and the memory budget.
    #[allow(clippy::too_many_arguments)]
    pub fn reassemble(
        &mut self,
        seq: u32,
        syn: bool,
        captured: &[u8],
        declared: u32,
        limits: &ReassemblyLimits,
        budget: &Arc<MemoryBudget>,
        emit: &mut dyn FnMut(Chunk<'_>),
    ) {
        let start = seq.wrapping_add(u32::from(syn));
        if !self.deliver_set {
            if syn {
                self.deliver_seq = start;
                self.deliver_set = true;
            } else if declared > 0 {
                // Joined mid-stream: start delivering at the first data we see.
                self.deliver_seq = start;
                self.deliver_set = true;
            } else {
                return;
            }
        }
        if declared == 0 {
            return;
        }
        let captured = captured.get(..declared as usize).unwrap_or(captured);
        let end = start.wrapping_add(declared);
        if seq_le(end, self.deliver_seq) {
            return; // entirely old: a retransmission of delivered bytes
        }
        if seq_le(start, self.deliver_seq) {
            // In order (possibly overlapping what was delivered): deliver the new part.
            let skip = self.deliver_seq.wrapping_sub(start);
            self.deliver_slice(captured, skip, declared, emit);
            self.drain(budget, emit);
            return;
        }
        // A hole before this segment: hold a copy.
        loop {
            let (n, bytes) = self.held.as_ref().map_or((0, 0), |q| (q.segs.len(), q.bytes));
            let fits = n < usize::from(limits.max_held_segments)
                && bytes.saturating_add(captured.len() as u32) <= limits.max_held_bytes;
            if fits && budget.try_reserve(captured.len()) {
                let missing_tail = declared.saturating_sub(captured.len() as u32);
                let q = self.held.get_or_insert_with(Box::default);
                let pos = q.segs.partition_point(|h| seq_lt(h.seq, start));
                q.segs.insert(pos, Held { seq: start, data: captured.to_vec(), missing_tail });
                q.bytes = q.bytes.saturating_add(captured.len() as u32);
                return;
            }
            // No room: give up on the oldest hole, then retry (the segment may now be in order).
            let target = self.first_held_seq().filter(|&s| seq_lt(s, start)).unwrap_or(start);
            self.skip_to(target, emit);
            self.drain(budget, emit);
            if seq_le(start, self.deliver_seq) {
                if seq_lt(self.deliver_seq, end) {
                    let skip = self.deliver_seq.wrapping_sub(start);
                    self.deliver_slice(captured, skip, declared, emit);
                    self.drain(budget, emit);
                }
                return;
            }
        }
    }

    /// The peer acknowledged up to `ack`: bytes below it that we never saw were lost by the
    /// capture (the sender will not resend them), so report the gap and move on.
    pub fn on_peer_ack(&mut self, ack: u32, budget: &Arc<MemoryBudget>, emit: &mut dyn FnMut(Chunk<'_>)) {
        if !self.deliver_set || !seq_gt(ack, self.deliver_seq) {
            return;
        }
        let mut target = ack;
        if self.fin_seen && seq_le(self.fin_seq, target) {
            target = self.fin_seq; // the FIN's sequence number carries no data
        }
        if let Some(s) = self.first_held_seq()
            && seq_lt(s, target)
        {
            target = s;
        }
        if seq_gt(target, self.deliver_seq) {
            self.skip_to(target, emit);
            self.drain(budget, emit);
        }
    }

    /// Delivers everything held, with gaps for the holes (flow end).
    pub fn flush(&mut self, budget: &Arc<MemoryBudget>, emit: &mut dyn FnMut(Chunk<'_>)) {
        while let Some(s) = self.first_held_seq() {
            if seq_gt(s, self.deliver_seq) {
                self.skip_to(s, emit);
            }
            self.drain(budget, emit);
        }
    }

    /// Frees held data without delivering it (memory pressure); returns bytes freed.
    pub fn discard_held(&mut self, budget: &Arc<MemoryBudget>) -> usize {
        let n = self.held.take().map_or(0, |q| q.bytes as usize);
        budget.release(n);
        n
    }

    fn first_held_seq(&self) -> Option<u32> {
        self.held.as_ref().and_then(|q| q.segs.first()).map(|h| h.seq)
    }

    fn skip_to(&mut self, target: u32, emit: &mut dyn FnMut(Chunk<'_>)) {
        let n = target.wrapping_sub(self.deliver_seq);
        if n > 0 && seq_gt(target, self.deliver_seq) {
            self.gap_bytes += u64::from(n);
            emit(Chunk::Gap(u64::from(n)));
            self.deliver_seq = target;
        }
    }

    /// Delivers `captured[skip..]` of a segment that starts at or before `deliver_seq`.
    fn deliver_slice(&mut self, captured: &[u8], skip: u32, declared: u32, emit: &mut dyn FnMut(Chunk<'_>)) {
        if let Some(rest) = captured.get(skip as usize..)
            && !rest.is_empty()
        {
            emit(Chunk::Data(rest));
        }
        let delivered_from_capture = (captured.len() as u32).saturating_sub(skip);
        let missing = declared.saturating_sub(skip.max(captured.len() as u32));
        self.deliver_seq = self.deliver_seq.wrapping_add(delivered_from_capture);
        if missing > 0 {
            self.gap_bytes += u64::from(missing);
            emit(Chunk::Gap(u64::from(missing)));
            self.deliver_seq = self.deliver_seq.wrapping_add(missing);
        }
    }

    /// Delivers held segments that have become contiguous.
    fn drain(&mut self, budget: &Arc<MemoryBudget>, emit: &mut dyn FnMut(Chunk<'_>)) {
        while let Some(s) = self.first_held_seq() {
            if seq_gt(s, self.deliver_seq) {
                break;
            }
            let Some(q) = self.held.as_mut() else { break };
            let h = q.segs.remove(0);
            let len = h.data.len() as u32;
            q.bytes = q.bytes.saturating_sub(len);
            budget.release(h.data.len());
            let declared = len + h.missing_tail;
            let end = h.seq.wrapping_add(declared);
            if seq_gt(end, self.deliver_seq) {
                let skip = self.deliver_seq.wrapping_sub(h.seq);
                self.deliver_slice(&h.data, skip, declared, emit);
            }
        }
        if self.held.as_ref().is_some_and(|q| q.segs.is_empty()) {
            self.held = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(dir: &mut TcpDir, segs: &[(u32, &[u8])], budget: &Arc<MemoryBudget>) -> (Vec<u8>, u64) {
        let mut out = Vec::new();
        let mut gaps = 0;
        let lim = ReassemblyLimits::default();
        for (seq, data) in segs {
            dir.reassemble(*seq, false, data, data.len() as u32, &lim, budget, &mut |c| match c {
                Chunk::Data(d) => out.extend_from_slice(d),
                Chunk::Gap(n) => gaps += n,
            });
        }
        dir.flush(budget, &mut |c| match c {
            Chunk::Data(d) => out.extend_from_slice(d),
            Chunk::Gap(n) => gaps += n,
        });
        (out, gaps)
    }

    #[test]
    fn in_order_out_of_order_and_overlap() {
        let b = Arc::new(MemoryBudget::unlimited());
        let mut d = TcpDir::default();
        d.reassemble(999, true, &[], 0, &ReassemblyLimits::default(), &b, &mut |_| {});
        let (out, gaps) = collect(&mut d, &[(1000, b"hello "), (1011, b"!"), (1006, b"world"), (1003, b"lo wor")], &b);
        assert_eq!(out, b"hello world!");
        assert_eq!(gaps, 0);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn hole_reported_as_gap_at_flush() {
        let b = Arc::new(MemoryBudget::unlimited());
        let mut d = TcpDir::default();
        let (out, gaps) = collect(&mut d, &[(1, b"ab"), (5, b"ef")], &b);
        assert_eq!(out, b"abef");
        assert_eq!(gaps, 2);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn every_permutation_of_segments_reassembles() {
        let data = b"0123456789abcdefghij";
        let cuts = [0usize, 3, 7, 8, 13, 20];
        let segs: Vec<(u32, &[u8])> = cuts.windows(2).map(|w| (100 + w[0] as u32, &data[w[0]..w[1]])).collect();
        // all rotations and reversal, with the first segment's SYN establishing the start
        for r in 0..segs.len() {
            let mut order = segs.clone();
            order.rotate_left(r);
            for rev in [false, true] {
                if rev {
                    order.reverse();
                }
                let b = Arc::new(MemoryBudget::unlimited());
                let mut d = TcpDir::default();
                d.reassemble(99, true, &[], 0, &ReassemblyLimits::default(), &b, &mut |_| {});
                let (out, gaps) = collect(&mut d, &order, &b);
                assert_eq!((out.as_slice(), gaps), (&data[..], 0), "order {order:?}");
            }
        }
    }

    #[test]
    fn held_bytes_bounded_and_budget_respected() {
        let b = Arc::new(MemoryBudget::new(100));
        let mut d = TcpDir::default();
        d.reassemble(0, true, &[], 0, &ReassemblyLimits::default(), &b, &mut |_| {});
        let mut gaps = 0;
        let mut got = 0;
        for i in 0..50u32 {
            let seg = [b'x'; 10];
            d.reassemble(1 + 20 + i * 10, false, &seg, 10, &ReassemblyLimits::default(), &b, &mut |c| match c {
                Chunk::Data(x) => got += x.len(),
                Chunk::Gap(n) => gaps += n,
            });
            assert!(b.used() <= 100);
        }
        assert!(gaps >= 20);
        assert!(got > 0);
    }

    #[test]
    fn peer_ack_beyond_delivers_gap() {
        let b = Arc::new(MemoryBudget::unlimited());
        let mut d = TcpDir::default();
        let mut gaps = 0;
        d.reassemble(10, false, b"abc", 3, &ReassemblyLimits::default(), &b, &mut |_| {});
        d.on_peer_ack(20, &b, &mut |c| {
            if let Chunk::Gap(n) = c {
                gaps += n
            }
        });
        assert_eq!(gaps, 7);
    }

    #[test]
    fn snaplen_truncated_segments_give_gaps() {
        let b = Arc::new(MemoryBudget::unlimited());
        let mut d = TcpDir::default();
        let mut data = Vec::new();
        let mut gaps = 0;
        d.reassemble(0, false, b"abc", 10, &ReassemblyLimits::default(), &b, &mut |c| match c {
            Chunk::Data(x) => data.extend_from_slice(x),
            Chunk::Gap(n) => gaps += n,
        });
        d.reassemble(10, false, b"def", 3, &ReassemblyLimits::default(), &b, &mut |c| match c {
            Chunk::Data(x) => data.extend_from_slice(x),
            Chunk::Gap(n) => gaps += n,
        });
        assert_eq!(data, b"abcdef");
        assert_eq!(gaps, 7);
    }

    #[test]
    fn sequence_wraparound() {
        let b = Arc::new(MemoryBudget::unlimited());
        let mut d = TcpDir::default();
        let (out, gaps) = collect(&mut d, &[(u32::MAX - 1, b"ab"), (2, b"ef"), (0, b"cd")], &b);
        assert_eq!(out, b"abcdef");
        assert_eq!(gaps, 0);
    }
}
