//! IPv4 and IPv6 defragmentation with bounded memory.
//!
//! [`Defragmenter::push`] takes each decoded fragment (a [`Packet`] whose `fragment` is set)
//! and returns the whole datagram payload, starting at the transport header, once every byte
//! of it has arrived. The caller then decodes the transport layer with
//! `deepflow_core::wire::decode_transport(&mut pkt, r.proto, &r.data, &cfg)`.
//!
//! ```
//! use std::sync::Arc;
//! use deepflow_capture::budget::MemoryBudget;
//! use deepflow_capture::defrag::{DefragConfig, Defragmenter};
//! use deepflow_core::packet::{Fragment, Packet};
//!
//! let budget = Arc::new(MemoryBudget::new(1 << 20));
//! let mut d = Defragmenter::new(DefragConfig::default(), budget.clone());
//! let frag = |offset: u32, more: bool, data: &'static [u8]| Packet {
//!     fragment: Some(Fragment { id: 7, offset, more, protocol: 17 }),
//!     l4_len: data.len() as u32,
//!     payload: data,
//!     ..Packet::default()
//! };
//! assert!(d.push(&frag(8, false, b"world"), 1).is_none()); // out of order: the tail first
//! let whole = d.push(&frag(0, true, b"hello, a"), 2).unwrap();
//! assert_eq!((whole.proto, &whole.data[..]), (17, &b"hello, aworld"[..]));
//! assert_eq!(budget.used(), 0);
//! ```
//!
//! # Behaviour
//! - Datagrams are keyed by (source, destination, protocol, identification, tunnel), as
//!   RFC 791 / RFC 8200 key them plus the overlay a packet came through. The protocol is the
//!   one the fragment header names (`Fragment::protocol`).
//! - Fragments may arrive in any order. A datagram completes when its last fragment (more
//!   fragments clear) has fixed its length and every byte before that length is held.
//! - **Overlaps keep the first data seen.** A fragment's bytes that are already held are
//!   compared with what is held and then ignored; only its new bytes are used. A fragment
//!   whose bytes were all held already with the same values counts as a
//!   [duplicate](DefragStats::duplicates) (a capture-path duplicate, harmless); one whose
//!   overlapping bytes differ counts in [`DefragStats::dropped_overlap`] (its conflicting
//!   bytes were dropped). Receivers differ here (Linux and RFC 5722 discard the whole datagram
//!   on an overlap, BSD stacks keep one side); an observer cannot know which one the receiver
//!   applied, and "first wins" never produces bytes that were not on the wire.
//! - A datagram is dropped ([`DefragStats::dropped_too_big`]) when a fragment reaches past
//!   [`DefragConfig::max_datagram_len`], and ([`DefragStats::dropped_invalid`]) when two last
//!   fragments disagree on its length or data lies past the length the last fragment set.
//!   The key is remembered (without data) until the timeout so that its remaining fragments
//!   are dropped and counted the same way instead of starting a new datagram.
//! - A partial datagram times out [`DefragConfig::timeout_us`] after its first fragment
//!   (Linux's `ipfrag_time`, 30 s by default): [`Defragmenter::expire`] frees it and counts
//!   it in [`DefragStats::timed_out`].
//! - At most [`DefragConfig::max_datagrams`] partial datagrams are held; a new one beyond
//!   that evicts the oldest ([`DefragStats::dropped_limit`]).
//! - Memory: every byte held (data buffers, coverage lists and a fixed per-datagram
//!   overhead) is reserved from the shared [`MemoryBudget`] first. When a reservation fails
//!   the defragmenter sheds its own oldest partial datagrams ([`DefragStats::shed`]); if that
//!   is still not enough the fragment is dropped and its datagram abandoned
//!   ([`DefragStats::dropped_budget`]). Everything freed is released, including on drop.
//! - A fragment cut short by the capture's snap length still counts with its stated length;
//!   the reassembled `data` then ends where the captured bytes end ([`Reassembled::data`]
//!   shorter than [`Reassembled::datagram_len`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use deepflow_core::packet::{Packet, Tunnel};
use hashbrown::HashMap;

use crate::budget::MemoryBudget;

/// Settings of a [`Defragmenter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefragConfig {
    /// A partial datagram is dropped this long after its first fragment (default 30 s).
    pub timeout_us: u64,
    /// Most partial datagrams held at once (default 4096).
    pub max_datagrams: usize,
    /// Largest datagram payload (transport header and data) accepted (default 65535).
    pub max_datagram_len: usize,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig { timeout_us: 30_000_000, max_datagrams: 4096, max_datagram_len: 65535 }
    }
}

/// A reassembled datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled {
    /// The protocol of `data` (the fragment header's protocol / next header).
    pub proto: u8,
    /// The datagram payload, starting at the transport header (for IPv6, at whatever header
    /// followed the fragment header). Shorter than `datagram_len` only when the capture cut a
    /// fragment short.
    pub data: Vec<u8>,
    /// Length of the datagram payload as its fragments state it.
    pub datagram_len: u32,
    /// Number of fragments that contributed (duplicates included).
    pub fragments: u32,
}

/// Counters of a [`Defragmenter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DefragStats {
    /// Fragments pushed.
    pub fragments: u64,
    /// Datagrams completed.
    pub reassembled: u64,
    /// Partial datagrams dropped by [`Defragmenter::expire`].
    pub timed_out: u64,
    /// Fragments whose bytes were all held already, with the same values.
    pub duplicates: u64,
    /// Fragments that overlapped held bytes with different values (the held bytes were kept).
    pub dropped_overlap: u64,
    /// Fragments dropped because their datagram's last fragments disagree on its length.
    pub dropped_invalid: u64,
    /// Fragments dropped because the memory budget was exhausted even after shedding.
    pub dropped_budget: u64,
    /// Fragments dropped because their datagram would exceed `max_datagram_len`.
    pub dropped_too_big: u64,
    /// Partial datagrams evicted because `max_datagrams` were held.
    pub dropped_limit: u64,
    /// Partial datagrams freed by shedding under memory pressure.
    pub shed: u64,
    /// Partial datagrams held now.
    pub datagrams_held: u64,
    /// Bytes reserved from the budget now.
    pub bytes_held: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
    tunnel: Tunnel,
}

/// Why a datagram's remaining fragments are being dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dead {
    TooBig,
    Invalid,
    Budget,
}

#[derive(Debug)]
struct Partial {
    /// Position in the age order (creation order).
    seq: u64,
    first_us: u64,
    /// Datagram length, once the last fragment has arrived.
    total: Option<u32>,
    /// Datagram bytes; holes are zero until filled.
    data: Vec<u8>,
    /// Held byte ranges `[start, end)`, sorted, disjoint and not adjacent.
    ranges: Vec<(u32, u32)>,
    /// Where the captured bytes end, when a fragment was cut short by the capture.
    captured_end: u32,
    fragments: u32,
    /// Bytes reserved from the budget for this datagram.
    reserved: usize,
    dead: Option<Dead>,
}

/// Fixed bytes accounted per datagram: the map entry, the age index entry and slack for the
/// hash table's control bytes and the B-tree's nodes.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<(Key, Partial)>() + std::mem::size_of::<(u64, Key)>() + 32;
/// Bytes per held range.
const RANGE_SIZE: usize = std::mem::size_of::<(u32, u32)>();

/// IPv4/IPv6 fragment reassembly for one worker.
pub struct Defragmenter {
    cfg: DefragConfig,
    budget: Arc<MemoryBudget>,
    map: HashMap<Key, Partial>,
    /// Datagrams by age (creation sequence number).
    order: BTreeMap<u64, Key>,
    next_seq: u64,
    held: usize,
    stats: DefragStats,
}

impl std::fmt::Debug for Defragmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Defragmenter").field("cfg", &self.cfg).field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Defragmenter {
    /// A defragmenter reserving what it holds from `budget`.
    pub fn new(cfg: DefragConfig, budget: Arc<MemoryBudget>) -> Self {
        Defragmenter {
            cfg,
            budget,
            map: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            held: 0,
            stats: DefragStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DefragStats {
        DefragStats { datagrams_held: self.map.len() as u64, bytes_held: self.held as u64, ..self.stats }
    }

    /// Feeds one fragment (`p.fragment` set; other packets are ignored). Returns the whole
    /// datagram when this fragment completes it.
    pub fn push(&mut self, p: &Packet<'_>, now_us: u64) -> Option<Reassembled> {
        let f = p.fragment?;
        self.stats.fragments += 1;
        let key = Key { src: p.src, dst: p.dst, id: f.id, proto: f.protocol, tunnel: p.tunnel.unwrap_or_default() };
        let start = u64::from(f.offset);
        let end = start + u64::from(p.l4_len);
        if end > self.cfg.max_datagram_len as u64 || end > u64::from(u32::MAX) {
            self.kill(key, Dead::TooBig, now_us);
            return None;
        }
        let (start, end) = (f.offset, end as u32);

        if !self.map.contains_key(&key) && !self.create(key, now_us) {
            return None;
        }
        let e = self.map.get_mut(&key)?;
        if let Some(why) = e.dead {
            self.count_dead(why);
            return None;
        }
        // The last fragment fixes the length; every fragment must fit in it.
        let held_end = e.ranges.last().map_or(0, |r| r.1);
        let consistent = match (f.more, e.total) {
            (false, Some(t)) => t == end,
            (false, None) => held_end <= end,
            (true, Some(t)) => end <= t,
            (true, None) => true,
        };
        if !consistent {
            self.kill(key, Dead::Invalid, now_us);
            return None;
        }
        if !f.more {
            e.total = Some(end);
        }
        if !self.make_room(key, end) {
            self.kill(key, Dead::Budget, now_us);
            return None;
        }
        let e = self.map.get_mut(&key)?;
        e.fragments += 1;
        let captured = p.payload.len().min(p.l4_len as usize);
        if captured < p.l4_len as usize {
            e.captured_end = e.captured_end.min(start + captured as u32);
        }
        match fill(e, start, end, p.payload.get(..captured).unwrap_or(&[])) {
            Overlap::None => {}
            Overlap::Duplicate => self.stats.duplicates += 1,
            Overlap::Conflict => self.stats.dropped_overlap += 1,
        }
        let e = self.map.get(&key)?;
        let total = e.total?;
        let complete = match e.ranges.as_slice() {
            [] => total == 0,
            [(0, t)] => *t == total,
            _ => false,
        };
        if !complete {
            return None;
        }
        let e = self.remove(key)?;
        let mut data = e.data;
        data.truncate(e.captured_end.min(total) as usize);
        self.stats.reassembled += 1;
        Some(Reassembled { proto: key.proto, data, datagram_len: total, fragments: e.fragments })
    }

    /// Drops partial datagrams whose first fragment is at least `timeout_us` old.
    pub fn expire(&mut self, now_us: u64) {
        while let Some((_, &key)) = self.order.first_key_value() {
            let Some(e) = self.map.get(&key) else {
                self.order.pop_first();
                continue;
            };
            if e.first_us.saturating_add(self.cfg.timeout_us) > now_us {
                break;
            }
            if let Some(e) = self.remove(key)
                && e.dead.is_none()
            {
                self.stats.timed_out += 1;
            }
        }
    }

    /// Frees the oldest partial datagrams until at least `want_bytes` are released (or nothing
    /// is held). Returns the bytes freed.
    pub fn shed(&mut self, want_bytes: usize) -> usize {
        self.shed_except(want_bytes, None)
    }

    fn shed_except(&mut self, want: usize, keep: Option<Key>) -> usize {
        let mut freed = 0;
        while freed < want {
            let Some(&key) = self.order.values().find(|k| Some(**k) != keep) else { break };
            let Some(e) = self.remove(key) else { break };
            freed += e.reserved;
            if e.dead.is_none() {
                self.stats.shed += 1;
            }
        }
        freed
    }

    /// Reserves `n` bytes, shedding other datagrams once if needed.
    fn reserve(&mut self, n: usize, keep: Option<Key>) -> bool {
        if n == 0 || self.budget.try_reserve(n) {
            return true;
        }
        self.shed_except(n, keep);
        self.budget.try_reserve(n)
    }

    /// Starts a datagram. False (fragment counted as dropped) when the limit or the budget
    /// leaves no room.
    fn create(&mut self, key: Key, now_us: u64) -> bool {
        if self.cfg.max_datagrams == 0 {
            self.stats.dropped_limit += 1;
            return false;
        }
        while self.map.len() >= self.cfg.max_datagrams {
            let Some((_, &oldest)) = self.order.first_key_value() else { break };
            if let Some(e) = self.remove(oldest)
                && e.dead.is_none()
            {
                self.stats.dropped_limit += 1;
            }
        }
        if !self.reserve(ENTRY_OVERHEAD, None) {
            self.stats.dropped_budget += 1;
            return false;
        }
        self.held += ENTRY_OVERHEAD;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key);
        self.map.insert(
            key,
            Partial {
                seq,
                first_us: now_us,
                total: None,
                data: Vec::new(),
                ranges: Vec::new(),
                captured_end: u32::MAX,
                fragments: 0,
                reserved: ENTRY_OVERHEAD,
                dead: None,
            },
        );
        true
    }

    /// Grows the datagram's buffers (reserving the bytes first) so that `[0, end)` and one
    /// more range fit. False when the budget has no room even after shedding.
    fn make_room(&mut self, key: Key, end: u32) -> bool {
        let Some(e) = self.map.get(&key) else { return false };
        let (data_cap, ranges_len, ranges_cap) = (e.data.capacity(), e.ranges.len(), e.ranges.capacity());
        let total = e.total;
        let need = end as usize;
        let new_data_cap = if need <= data_cap {
            data_cap
        } else {
            // Exact when the length is known; otherwise amortized doubling up to the limit.
            total.map_or_else(|| need.max(data_cap.saturating_mul(2)).min(self.cfg.max_datagram_len), |t| t as usize)
        }
        .max(need);
        // A fragment can split one range into at most one more.
        let new_ranges_cap = if ranges_len < ranges_cap { ranges_cap } else { ranges_cap.max(2) * 2 };
        let extra = (new_data_cap - data_cap) + (new_ranges_cap - ranges_cap) * RANGE_SIZE;
        if !self.reserve(extra, Some(key)) {
            return false;
        }
        self.held += extra;
        let Some(e) = self.map.get_mut(&key) else {
            self.budget.release(extra);
            self.held -= extra;
            return false;
        };
        e.reserved += extra;
        if new_data_cap > data_cap {
            e.data.reserve_exact(new_data_cap - e.data.len());
        }
        if new_ranges_cap > ranges_cap {
            e.ranges.reserve_exact(new_ranges_cap - ranges_len);
        }
        if e.data.len() < need {
            e.data.resize(need, 0);
        }
        true
    }

    fn count_dead(&mut self, why: Dead) {
        match why {
            Dead::TooBig => self.stats.dropped_too_big += 1,
            Dead::Invalid => self.stats.dropped_invalid += 1,
            Dead::Budget => self.stats.dropped_budget += 1,
        }
    }

    /// Abandons a datagram: frees its data and remembers the key (when there is room) so
    /// that its other fragments are dropped the same way until the timeout.
    fn kill(&mut self, key: Key, why: Dead, now_us: u64) {
        self.count_dead(why);
        if !self.map.contains_key(&key) && !self.create(key, now_us) {
            return;
        }
        let Some(e) = self.map.get_mut(&key) else { return };
        let freed = e.reserved - ENTRY_OVERHEAD;
        e.dead = Some(why);
        e.data = Vec::new();
        e.ranges = Vec::new();
        e.reserved = ENTRY_OVERHEAD;
        self.held -= freed;
        self.budget.release(freed);
    }

    /// Removes a datagram and releases its bytes.
    fn remove(&mut self, key: Key) -> Option<Partial> {
        let e = self.map.remove(&key)?;
        self.order.remove(&e.seq);
        self.held -= e.reserved;
        self.budget.release(e.reserved);
        Some(e)
    }
}

impl Drop for Defragmenter {
    fn drop(&mut self) {
        self.budget.release(self.held);
    }
}

/// How a fragment's bytes related to those already held.
enum Overlap {
    None,
    Duplicate,
    Conflict,
}

/// Copies the bytes of `[start, end)` not yet held from `payload` (the captured part of the
/// fragment, which may be shorter) into `e.data`, compares the ones already held, and adds the
/// range to `e.ranges`. `e.data` already spans `end` and `e.ranges` has room for one more.
fn fill(e: &mut Partial, start: u32, end: u32, payload: &[u8]) -> Overlap {
    if start >= end {
        return Overlap::None;
    }
    let mut overlapped = false;
    let mut conflict = false;
    let mut new_bytes = false;
    let mut cursor = start;
    // Walk the held ranges that touch [start, end): gaps are copied, overlaps compared.
    let mut copy = |data: &mut Vec<u8>, from: u32, to: u32, held: bool| {
        let (a, b) = ((from - start) as usize, ((to - start) as usize).min(payload.len()));
        let src = payload.get(a..b).unwrap_or(&[]);
        let Some(dst) = data.get_mut(from as usize..from as usize + src.len()) else { return };
        if held {
            overlapped = true;
            conflict |= dst != src;
        } else {
            new_bytes = true;
            dst.copy_from_slice(src);
        }
    };
    for &(rs, re) in e.ranges.iter() {
        if re <= cursor {
            continue;
        }
        if rs >= end {
            break;
        }
        if rs > cursor {
            copy(&mut e.data, cursor, rs, false);
        }
        let to = re.min(end);
        copy(&mut e.data, cursor.max(rs), to, true);
        cursor = to;
        if cursor >= end {
            break;
        }
    }
    if cursor < end {
        copy(&mut e.data, cursor, end, false);
    }
    insert_range(&mut e.ranges, start, end);
    match (overlapped, conflict, new_bytes) {
        (_, true, _) => Overlap::Conflict,
        (true, false, false) => Overlap::Duplicate,
        _ => Overlap::None,
    }
}

/// Adds `[s, e)` to a sorted list of disjoint, non-adjacent ranges, merging as needed.
fn insert_range(ranges: &mut Vec<(u32, u32)>, s: u32, e: u32) {
    // First range that ends at or after `s` (could merge), and first that starts after `e`.
    let lo = ranges.partition_point(|r| r.1 < s);
    let hi = ranges.partition_point(|r| r.0 <= e);
    if lo == hi {
        ranges.insert(lo, (s, e));
        return;
    }
    let (Some(first), Some(last)) = (ranges.get(lo), ranges.get(hi - 1)) else { return };
    let merged = (first.0.min(s), last.1.max(e));
    ranges.drain(lo + 1..hi);
    if let Some(r) = ranges.get_mut(lo) {
        *r = merged;
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use deepflow_core::packet::{Fragment, TunnelKind};
    use deepflow_core::wire::{self, DecodeConfig, LinkType};

    use super::*;

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const DST: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    fn frag(id: u32, offset: u32, more: bool, data: &[u8]) -> Packet<'_> {
        Packet {
            src: SRC,
            dst: DST,
            ip_proto: 17,
            l4_len: data.len() as u32,
            fragment: Some(Fragment { id, offset, more, protocol: 17 }),
            payload: data,
            ..Packet::default()
        }
    }

    fn datagram(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
    }

    fn new(cfg: DefragConfig, limit: usize) -> (Defragmenter, Arc<MemoryBudget>) {
        let b = Arc::new(MemoryBudget::new(limit));
        (Defragmenter::new(cfg, b.clone()), b)
    }

    /// Pushes the fragments `[(offset, len)]` of `d` in the given order; returns the result of
    /// the last push.
    fn feed(df: &mut Defragmenter, id: u32, d: &[u8], parts: &[(usize, usize)], now: u64) -> Option<Reassembled> {
        let mut out = None;
        for &(o, l) in parts {
            let more = o + l < d.len();
            let r = df.push(&frag(id, o as u32, more, &d[o..o + l]), now);
            if r.is_some() {
                assert!(out.is_none(), "completed twice");
                out = r;
            }
        }
        out
    }

    #[test]
    fn in_order_and_out_of_order() {
        let d = datagram(3000, 1);
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
            let (mut df, budget) = new(DefragConfig::default(), 1 << 20);
            let parts = [(0, 1480), (1480, 1480), (2960, 40)];
            let r = feed(&mut df, 9, &d, &order.map(|i| parts[i]), 5).unwrap();
            assert_eq!((r.proto, r.datagram_len, r.fragments), (17, 3000, 3));
            assert_eq!(r.data, d);
            let s = df.stats();
            assert_eq!((s.fragments, s.reassembled, s.datagrams_held, s.bytes_held), (3, 1, 0, 0));
            assert_eq!(budget.used(), 0);
            assert!(budget.peak() >= 3000);
        }
    }

    #[test]
    fn non_fragments_are_ignored() {
        let (mut df, _) = new(DefragConfig::default(), 1 << 20);
        let p = Packet { payload: b"abc", ..Packet::default() };
        assert!(df.push(&p, 1).is_none());
        assert_eq!(df.stats().fragments, 0);
    }

    #[test]
    fn duplicates_are_counted_and_harmless() {
        let d = datagram(100, 2);
        let (mut df, budget) = new(DefragConfig::default(), 1 << 20);
        let r = feed(&mut df, 1, &d, &[(0, 48), (0, 48), (48, 52)], 1).unwrap();
        assert_eq!(r.data, d);
        assert_eq!(r.fragments, 3);
        assert_eq!((df.stats().duplicates, df.stats().dropped_overlap), (1, 0));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn overlaps_keep_the_first_data() {
        let d = datagram(64, 3);
        let (mut df, budget) = new(DefragConfig::default(), 1 << 20);
        assert!(df.push(&frag(1, 0, true, &d[..32]), 1).is_none());
        // A fragment covering [24, 48) with different bytes in the overlap [24, 32).
        let mut evil = d[24..48].to_vec();
        for b in &mut evil[..8] {
            *b ^= 0xff;
        }
        assert!(df.push(&frag(1, 24, true, &evil), 2).is_none());
        // Same bytes, partially overlapping: neither a duplicate nor a conflict.
        assert!(df.push(&frag(1, 40, true, &d[40..56]), 3).is_none());
        let r = df.push(&frag(1, 56, false, &d[56..]), 4).unwrap();
        assert_eq!(r.data, d, "first-seen bytes win");
        let s = df.stats();
        assert_eq!((s.dropped_overlap, s.duplicates), (1, 0));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn missing_middle_times_out() {
        let d = datagram(3000, 4);
        let cfg = DefragConfig { timeout_us: 1_000_000, ..DefragConfig::default() };
        let (mut df, budget) = new(cfg, 1 << 20);
        assert!(feed(&mut df, 1, &d, &[(0, 1000), (2000, 1000)], 10).is_none());
        assert!(budget.used() > 3000);
        assert_eq!(df.stats().datagrams_held, 1);
        df.expire(1_000_009);
        assert_eq!(df.stats().timed_out, 0, "not yet");
        df.expire(1_000_010);
        let s = df.stats();
        assert_eq!((s.timed_out, s.datagrams_held, s.bytes_held), (1, 0, 0));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn too_big_is_dropped_with_its_other_fragments() {
        let (mut df, budget) = new(DefragConfig::default(), 1 << 20);
        let chunk = vec![0u8; 1480];
        assert!(df.push(&frag(5, 0, true, &chunk), 1).is_none());
        assert!(budget.used() > 1480);
        // 65120 + 1480 > 65535: the classic "ping of death".
        assert!(df.push(&frag(5, 65120, false, &chunk), 2).is_none());
        assert!(df.push(&frag(5, 1480, true, &chunk), 3).is_none());
        let s = df.stats();
        assert_eq!((s.dropped_too_big, s.reassembled), (2, 0));
        assert!(budget.used() < 1480, "data freed, key remembered");
        df.expire(u64::MAX);
        let s = df.stats();
        assert_eq!((s.timed_out, s.bytes_held), (0, 0), "a dropped datagram does not time out again");
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn inconsistent_lengths_are_invalid() {
        let (mut df, budget) = new(DefragConfig::default(), 1 << 20);
        let a = [1u8; 16];
        assert!(df.push(&frag(1, 0, false, &a), 1).is_some(), "an atomic fragment completes alone");
        assert!(df.push(&frag(2, 16, false, &a), 1).is_none());
        assert!(df.push(&frag(2, 8, false, &a), 1).is_none(), "second last fragment with another length");
        assert!(df.push(&frag(2, 0, true, &a), 1).is_none(), "the datagram stays dropped");
        assert!(df.push(&frag(3, 0, true, &[1u8; 64]), 1).is_none());
        assert!(df.push(&frag(3, 16, false, &a), 1).is_none(), "held data past the last fragment");
        assert_eq!(df.stats().dropped_invalid, 3);
        df.expire(u64::MAX);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn keys_separate_tunnels_protocols_and_families() {
        let (mut df, budget) = new(DefragConfig::default(), 1 << 20);
        let d = datagram(40, 6);
        let mut first = frag(1, 0, true, &d[..16]);
        let mut tunneled = first;
        tunneled.tunnel = Some(Tunnel { kind: TunnelKind::Vxlan, id: 42 });
        let mut other_proto = first;
        other_proto.fragment = Some(Fragment { protocol: 6, ..first.fragment.unwrap() });
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        first.src = v6;
        first.dst = v6;
        for p in [&first, &tunneled, &other_proto] {
            assert!(df.push(p, 1).is_none());
        }
        assert_eq!(df.stats().datagrams_held, 3);
        let mut last = frag(1, 16, false, &d[16..]);
        last.tunnel = tunneled.tunnel;
        let r = df.push(&last, 2).unwrap();
        assert_eq!(r.data, d);
        assert_eq!(df.stats().datagrams_held, 2);
        df.expire(u64::MAX);
        assert_eq!((df.stats().timed_out, budget.used()), (2, 0));
    }

    #[test]
    fn limit_evicts_the_oldest() {
        let cfg = DefragConfig { max_datagrams: 2, ..DefragConfig::default() };
        let (mut df, budget) = new(cfg, 1 << 20);
        let d = datagram(32, 7);
        for id in 1..=3 {
            assert!(df.push(&frag(id, 0, true, &d[..16]), u64::from(id)).is_none());
        }
        assert_eq!((df.stats().dropped_limit, df.stats().datagrams_held), (1, 2));
        assert!(df.push(&frag(1, 16, false, &d[16..]), 4).is_none(), "datagram 1 was evicted");
        assert!(df.push(&frag(3, 16, false, &d[16..]), 5).is_some());
        let zero = DefragConfig { max_datagrams: 0, ..DefragConfig::default() };
        let (mut none, _) = new(zero, 1 << 20);
        assert!(none.push(&frag(1, 0, true, &d), 1).is_none());
        assert_eq!(none.stats().dropped_limit, 1);
        df.expire(u64::MAX);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn budget_sheds_oldest_then_drops() {
        // Room for about two 1000-byte partial datagrams.
        let limit = 2 * (ENTRY_OVERHEAD + 1000 + 4 * RANGE_SIZE) + 100;
        let (mut df, budget) = new(DefragConfig::default(), limit);
        let d = datagram(2000, 8);
        assert!(df.push(&frag(1, 0, true, &d[..1000]), 1).is_none());
        assert!(df.push(&frag(2, 0, true, &d[..1000]), 2).is_none());
        assert_eq!(df.stats().shed, 0);
        // A third one does not fit: the oldest (1) is shed to make room.
        assert!(df.push(&frag(3, 0, true, &d[..1000]), 3).is_none());
        assert_eq!((df.stats().shed, df.stats().datagrams_held), (1, 2));
        assert!(budget.used() <= limit);
        // Datagram 3 grows past what shedding datagram 2 can free: dropped.
        assert!(df.push(&frag(3, 1000, false, &vec![0u8; 20_000]), 4).is_none());
        assert_eq!(df.stats().dropped_budget, 1);
        assert!(df.push(&frag(3, 21_000, false, &d[..10]), 5).is_none(), "its later fragments are dropped too");
        assert_eq!(df.stats().dropped_budget, 2);
        // A budget with no room at all.
        let (mut tiny, tb) = new(DefragConfig::default(), 10);
        assert!(tiny.push(&frag(1, 0, true, &d), 1).is_none());
        assert_eq!((tiny.stats().dropped_budget, tb.used()), (1, 0));
        df.expire(u64::MAX);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn shed_frees_oldest_first() {
        let (mut df, budget) = new(DefragConfig::default(), 1 << 20);
        let d = datagram(500, 9);
        for id in 1..=3 {
            assert!(df.push(&frag(id, 0, true, &d), u64::from(id)).is_none());
        }
        let before = budget.used();
        let freed = df.shed(1);
        assert!(freed >= 500 + ENTRY_OVERHEAD, "{freed}");
        assert_eq!(budget.used(), before - freed);
        assert_eq!(df.stats().shed, 1);
        assert!(df.push(&frag(1, 500, false, &d[..1]), 4).is_none(), "1 was the one shed");
        assert!(df.push(&frag(2, 500, false, &d[..1]), 5).is_some());
        let used = budget.used();
        assert_eq!(df.shed(usize::MAX), used);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn capture_truncated_fragment() {
        let d = datagram(200, 10);
        let (mut df, budget) = new(DefragConfig::default(), 1 << 20);
        assert!(df.push(&frag(1, 100, false, &d[100..]), 1).is_none());
        let mut cut = frag(1, 0, true, &d[..60]);
        cut.l4_len = 100; // the IP header says 100 bytes, the capture kept 60
        let r = df.push(&cut, 2).unwrap();
        assert_eq!(r.datagram_len, 200);
        assert_eq!(r.data, &d[..60]);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn drop_releases_the_budget() {
        let budget = Arc::new(MemoryBudget::new(1 << 20));
        {
            let mut df = Defragmenter::new(DefragConfig::default(), budget.clone());
            assert!(df.push(&frag(1, 0, true, &[0u8; 800]), 1).is_none());
            assert!(budget.used() > 800);
        }
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn ranges_merge() {
        let mut r = Vec::new();
        for (s, e) in [(10, 20), (30, 40), (0, 5), (20, 30), (5, 10), (50, 60), (45, 55), (41, 42)] {
            insert_range(&mut r, s, e);
        }
        assert_eq!(r, vec![(0, 40), (41, 42), (45, 60)]);
        insert_range(&mut r, 0, 100);
        assert_eq!(r, vec![(0, 100)]);
    }

    /// Builds raw IPv4 fragments of a UDP datagram, decodes them with the real decoder, and
    /// checks that the reassembled datagram decodes to the original UDP packet.
    #[test]
    fn with_the_wire_decoder() {
        let payload = datagram(3000, 11);
        let mut udp = vec![0x30, 0x39, 0x00, 0x35];
        udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&payload);
        let mut frames = Vec::new();
        for start in (0..udp.len()).step_by(1480) {
            let chunk = &udp[start..(start + 1480).min(udp.len())];
            let more = start + chunk.len() < udp.len();
            let flags_off = ((start / 8) as u16) | if more { 0x2000 } else { 0 };
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0x12, 0x34]);
            ip.extend_from_slice(&flags_off.to_be_bytes());
            ip.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
            ip.extend_from_slice(chunk);
            frames.push(ip);
        }
        frames.reverse();
        let cfg = DecodeConfig::default();
        let (mut df, budget) = new(DefragConfig::default(), 1 << 20);
        let mut done = None;
        for f in &frames {
            let p = wire::decode(LinkType::Raw, f, &cfg).unwrap();
            assert!(p.fragment.is_some());
            if let Some(r) = df.push(&p, 1) {
                done = Some((p, r));
            }
        }
        let (p, r) = done.unwrap();
        let mut q = p;
        wire::decode_transport(&mut q, r.proto, &r.data, &cfg).unwrap();
        assert_eq!(q.l4.ports(), (12345, 53));
        assert_eq!(q.payload, &payload[..]);
        assert_eq!(q.fragment, None);
        assert_eq!(budget.used(), 0);
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// 10k random fragment sequences (random sizes, splits, order, losses, duplicates,
    /// overlaps, oversize and inconsistent fragments) through a small budget and a small
    /// datagram limit: whatever completes is correct, nothing panics, and after `expire`
    /// everything reserved has been released.
    #[test]
    fn random_sequences_release_everything() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let cfg = DefragConfig { timeout_us: 50_000, max_datagrams: 64, max_datagram_len: 20_000 };
        let (mut df, budget) = new(cfg, 256 * 1024);
        let mut now = 0u64;
        let mut complete = 0;
        for id in 0..10_000u32 {
            now += rng.below(50) as u64;
            let len = 1 + rng.below(24_000);
            let d = datagram(len, id as u8);
            let mut parts = Vec::new();
            let mut at = 0;
            while at < len {
                let l = (8 * (1 + rng.below(200))).min(len - at);
                parts.push((at, l));
                at += l;
            }
            let clean = rng.below(3) != 0;
            if !clean {
                match rng.below(3) {
                    0 if parts.len() > 1 => {
                        let i = rng.below(parts.len());
                        parts.remove(i);
                    }
                    1 => {
                        let i = rng.below(parts.len());
                        parts.push(parts[i]);
                    }
                    _ => {
                        let (o, l) = parts[rng.below(parts.len())];
                        let s = o.saturating_sub(rng.below(16));
                        parts.push((s, (o + l - s).min(len - s)));
                    }
                }
            }
            for i in (1..parts.len()).rev() {
                parts.swap(i, rng.below(i + 1));
            }
            let mut got = None;
            for &(o, l) in &parts {
                let more = o + l < len;
                let mut p = frag(id % 512, o as u32, more, &d[o..o + l]);
                if !clean && rng.below(10) == 0 {
                    p.fragment = Some(Fragment { more: !more, ..p.fragment.unwrap() });
                }
                if let Some(r) = df.push(&p, now) {
                    got = Some(r);
                }
                if rng.below(20) == 0 {
                    df.expire(now);
                }
            }
            if let Some(r) = got {
                complete += 1;
                if clean && r.datagram_len as usize == len {
                    assert_eq!(r.data, d, "datagram {id}");
                }
            }
            assert!(budget.used() <= budget.limit());
            assert_eq!(df.stats().bytes_held as usize, budget.used());
            if rng.below(100) == 0 {
                df.shed(rng.below(100_000));
            }
        }
        assert!(complete > 3000, "{complete} of 10000 completed");
        let s = df.stats();
        assert!(s.timed_out + s.dropped_limit + s.shed + s.dropped_budget > 0, "{s:?}");
        df.expire(now + 50_000);
        assert_eq!(budget.used(), 0, "{:?}", df.stats());
        assert_eq!(df.stats().datagrams_held, 0);
    }
}
