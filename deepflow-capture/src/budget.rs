//! One memory budget shared by the flow table, IP defragmentation and TCP reassembly.
//!
//! Every component that holds per-flow state reserves its bytes here before growing and
//! releases them when it frees state. When a reservation fails the component sheds its least
//! useful state (oldest idle first) and counts what it shed; the process never grows past the
//! budget because of packet data.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A byte budget shared by many owners (cheap to share behind an `Arc`).
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
    refused: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        MemoryBudget { limit, used: AtomicUsize::new(0), peak: AtomicUsize::new(0), refused: AtomicU64::new(0) }
    }

    /// An effectively unlimited budget (for tests and tools that want no cap).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX / 2)
    }

    /// Reserves `n` bytes; false (and nothing reserved) when that would pass the limit.
    #[inline]
    pub fn try_reserve(&self, n: usize) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(n).filter(|&v| v <= self.limit) else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return false;
            };
            match self.used.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::Relaxed);
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Returns `n` bytes reserved earlier.
    #[inline]
    pub fn release(&self, n: usize) {
        let prev = self.used.fetch_sub(n, Ordering::Relaxed);
        debug_assert!(prev >= n, "memory budget released more than reserved");
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Highest `used()` seen.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many reservations were refused.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Parses sizes such as `256MiB`, `1GiB`, `512k`, `1000000`.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_and_release() {
        let b = MemoryBudget::new(100);
        assert!(b.try_reserve(60));
        assert!(!b.try_reserve(41));
        assert!(b.try_reserve(40));
        b.release(100);
        assert_eq!(b.used(), 0);
        assert_eq!(b.peak(), 100);
        assert_eq!(b.refused(), 1);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB"), Some(256 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("42"), Some(42));
        assert_eq!(parse_size("x"), None);
    }
}
