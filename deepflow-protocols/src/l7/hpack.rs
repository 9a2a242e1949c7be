//! HPACK (RFC 7541) header-block decoder for passive HTTP/2 observation.
//!
//! The decoder keeps one dynamic table per direction of a connection. It is built for a
//! passive observer:
//! - it never panics on network bytes and reports every violation as an [`HpackError`];
//! - memory is bounded: the dynamic table is capped ([`DecoderConfig::max_table_size_cap`]) and
//!   the decoded header list is capped ([`DecoderConfig::max_header_list_size`]; fields past
//!   the cap are dropped but the block is still decoded so the table stays in sync);
//! - it can join a connection mid-stream ([`Decoder::new_mid_stream`]): the dynamic table
//!   content is then unknown, references to entries it has not seen inserted are counted as
//!   unknown fields instead of failing, and the table heals as the encoder inserts new
//!   entries.
//!
//! A decoding error desynchronizes the HPACK state of the direction (the encoder's table and
//! ours may now differ). After an error [`Decoder::decode_block`] puts the decoder back in
//! the mid-stream state ([`TableState::Partial`]) and counts the loss in
//! [`DecoderStats::desyncs`], so the caller can mark the direction as lost and keep going.
//!
//! Huffman strings are decoded with a 4-bit (nibble) state machine built at compile time from
//! the code in RFC 7541 Appendix B: 256 states x 16 entries, one lookup per nibble.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::collections::VecDeque;
use std::fmt;

/// Default `SETTINGS_HEADER_TABLE_SIZE` (RFC 7540 section 6.5.2).
pub const DEFAULT_TABLE_SIZE: usize = 4096;
/// Per-entry overhead counted in the dynamic table size (RFC 7541 section 4.1).
pub const ENTRY_OVERHEAD: usize = 32;

/// Why a header block could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HpackError {
    /// The block ended inside a representation (integer, string or index).
    Truncated,
    /// An integer did not fit in 32 bits (or used too many continuation bytes).
    IntegerOverflow,
    /// Index 0 was used (RFC 7541 section 6.1).
    ZeroIndex,
    /// Index points past the static and (known) dynamic table.
    InvalidIndex(u32),
    /// Huffman string with padding longer than 7 bits, padding that is not all ones, or
    /// an encoded EOS symbol (RFC 7541 section 5.2).
    InvalidHuffman,
    /// A dynamic table size update larger than the limit the decoder allows.
    TableSizeTooLarge {
        /// Size the encoder asked for.
        requested: u32,
        /// Largest size allowed (acknowledged SETTINGS value, capped).
        limit: u32,
    },
    /// A dynamic table size update after the first header field of a block.
    LateTableSizeUpdate,
    /// A string literal longer than the configured cap.
    StringTooLong(u32),
}

impl fmt::Display for HpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("HPACK block truncated inside a representation"),
            Self::IntegerOverflow => f.write_str("HPACK integer overflow"),
            Self::ZeroIndex => f.write_str("HPACK index 0"),
            Self::InvalidIndex(i) => write!(f, "HPACK index {i} out of table"),
            Self::InvalidHuffman => f.write_str("invalid HPACK Huffman string (padding or EOS)"),
            Self::TableSizeTooLarge { requested, limit } => {
                write!(f, "HPACK table size update {requested} above limit {limit}")
            }
            Self::LateTableSizeUpdate => f.write_str("HPACK table size update after a header field"),
            Self::StringTooLong(n) => write!(f, "HPACK string literal of {n} bytes over cap"),
        }
    }
}

impl std::error::Error for HpackError {}

// ---------------------------------------------------------------------------------------
// Primitives
// ---------------------------------------------------------------------------------------

/// Decodes an HPACK integer with an `prefix_bits`-bit prefix (RFC 7541 section 5.1) starting
/// at `buf[*pos]`; advances `pos` past it. Values must fit in `u32`.
pub fn decode_integer(buf: &[u8], pos: &mut usize, prefix_bits: u8) -> Result<u32, HpackError> {
    let first = *buf.get(*pos).ok_or(HpackError::Truncated)?;
    let bits = prefix_bits.clamp(1, 8);
    let mask: u32 = (1u32 << bits) - 1;
    let mut value = u32::from(first) & mask;
    let mut p = *pos + 1;
    if value < mask {
        *pos = p;
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let b = *buf.get(p).ok_or(HpackError::Truncated)?;
        p += 1;
        let add = u64::from(b & 0x7f) << shift;
        let v = u64::from(value) + add;
        if v > u64::from(u32::MAX) {
            return Err(HpackError::IntegerOverflow);
        }
        value = v as u32;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
    }
    *pos = p;
    Ok(value)
}

/// The Huffman code of RFC 7541 Appendix B: `(code, bit length)` for symbols 0..=256
/// (256 is EOS).
pub const HUFFMAN_CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

const NODE_NONE: u16 = 0xffff;
const NODE_LEAF: u16 = 0x8000;

/// Builds the decoding tree: 256 internal nodes (the code is complete), child entries are
/// either an internal node id or `NODE_LEAF | symbol`.
// Evaluated at compile time only: an out-of-range index is a compile error, not a panic.
#[allow(clippy::indexing_slicing)]
const fn build_tree() -> [[u16; 2]; 256] {
    let mut nodes = [[NODE_NONE; 2]; 256];
    let mut count = 1usize;
    let mut sym = 0usize;
    while sym < 257 {
        let (code, len) = HUFFMAN_CODES[sym];
        let mut node = 0usize;
        let mut i = len;
        while i > 0 {
            i -= 1;
            let bit = ((code >> i) & 1) as usize;
            if i == 0 {
                assert!(nodes[node][bit] == NODE_NONE, "Huffman code is not prefix-free");
                nodes[node][bit] = NODE_LEAF | sym as u16;
            } else {
                if nodes[node][bit] == NODE_NONE {
                    nodes[node][bit] = count as u16;
                    count += 1;
                }
                node = nodes[node][bit] as usize;
            }
        }
        sym += 1;
    }
    assert!(count == 256, "Huffman code is not complete");
    nodes
}

const HUFF_EMIT: u8 = 1;
const HUFF_ACCEPT: u8 = 2;
const HUFF_FAIL: u8 = 4;

#[derive(Clone, Copy)]
struct HuffEntry {
    next: u8,
    sym: u8,
    flags: u8,
}

/// Nibble state machine: entry `state * 16 + nibble`. `HUFF_ACCEPT` marks states that are a
/// valid end of string (root, or 1..=7 one-bits of EOS prefix since the last symbol).
#[allow(clippy::indexing_slicing)]
const fn build_decode_table() -> [HuffEntry; 4096] {
    let nodes = build_tree();
    let mut accept = [false; 256];
    accept[0] = true;
    let mut node = 0usize;
    let mut depth = 0;
    while depth < 7 {
        let child = nodes[node][1];
        assert!(child & NODE_LEAF == 0, "all-ones prefix must be internal");
        node = child as usize;
        accept[node] = true;
        depth += 1;
    }
    let mut table = [HuffEntry { next: 0, sym: 0, flags: 0 }; 4096];
    let mut state = 0usize;
    while state < 256 {
        let mut nib = 0usize;
        while nib < 16 {
            let mut node = state;
            let mut flags = 0u8;
            let mut sym = 0u8;
            let mut b = 4;
            while b > 0 {
                b -= 1;
                let bit = (nib >> b) & 1;
                let child = nodes[node][bit];
                if child & NODE_LEAF != 0 {
                    let s = child & 0x1ff;
                    if s == 256 {
                        flags = HUFF_FAIL;
                        node = 0;
                        break;
                    }
                    sym = s as u8;
                    flags |= HUFF_EMIT;
                    node = 0;
                } else {
                    node = child as usize;
                }
            }
            if flags & HUFF_FAIL == 0 && accept[node] {
                flags |= HUFF_ACCEPT;
            }
            table[state * 16 + nib] = HuffEntry { next: node as u8, sym, flags };
            nib += 1;
        }
        state += 1;
    }
    table
}

static HUFF_DECODE: [HuffEntry; 4096] = build_decode_table();

#[inline(always)]
fn huff_step(state: u8, nibble: u8) -> HuffEntry {
    // state < 256 and nibble < 16, so the index is always < 4096; `get` keeps the
    // no-indexing discipline and the optimizer removes the check.
    let idx = (usize::from(state) << 4) | usize::from(nibble & 0x0f);
    match HUFF_DECODE.get(idx) {
        Some(e) => *e,
        None => HuffEntry { next: 0, sym: 0, flags: HUFF_FAIL },
    }
}

/// Decodes a Huffman-coded string (RFC 7541 section 5.2), appending to `out`. Rejects EOS,
/// padding longer than 7 bits and padding that is not a prefix of EOS.
pub fn huffman_decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    out.reserve(src.len() * 8 / 5 + 1);
    let mut state = 0u8;
    let mut accept = true;
    for &b in src {
        let e = huff_step(state, b >> 4);
        if e.flags & HUFF_EMIT != 0 {
            out.push(e.sym);
        }
        let e2 = huff_step(e.next, b & 0x0f);
        if e2.flags & HUFF_EMIT != 0 {
            out.push(e2.sym);
        }
        if (e.flags | e2.flags) & HUFF_FAIL != 0 {
            return Err(HpackError::InvalidHuffman);
        }
        state = e2.next;
        accept = e2.flags & HUFF_ACCEPT != 0;
    }
    if accept { Ok(()) } else { Err(HpackError::InvalidHuffman) }
}

/// Huffman-encodes `src` (used by tests and benchmarks to build header blocks).
pub fn huffman_encode(src: &[u8], out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut nbits: u32 = 0;
    for &b in src {
        let (code, len) = HUFFMAN_CODES.get(usize::from(b)).copied().unwrap_or((0, 0));
        acc = (acc << len) | u64::from(code);
        nbits += u32::from(len);
        while nbits >= 8 {
            nbits -= 8;
            out.push((acc >> nbits) as u8);
        }
        acc &= (1u64 << nbits) - 1;
    }
    if nbits > 0 {
        let pad = 8 - nbits;
        out.push(((acc << pad) | ((1u64 << pad) - 1)) as u8);
    }
}

/// Length of `src` once Huffman-encoded, in bytes.
pub fn huffman_encoded_len(src: &[u8]) -> usize {
    let bits: usize = src.iter().map(|&b| usize::from(HUFFMAN_CODES.get(usize::from(b)).map_or(0, |c| c.1))).sum();
    bits.div_ceil(8)
}

// ---------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------

/// The static table (RFC 7541 Appendix A); index 1 is `STATIC_TABLE[0]`.
pub const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Number of static table entries.
pub const STATIC_LEN: u32 = 61;

#[derive(Debug, Clone)]
struct Entry {
    /// name bytes followed by value bytes.
    data: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn name(&self) -> &[u8] {
        self.data.get(..self.name_len).unwrap_or_default()
    }
    fn value(&self) -> &[u8] {
        self.data.get(self.name_len..).unwrap_or_default()
    }
    fn size(&self) -> usize {
        self.data.len() + ENTRY_OVERHEAD
    }
}

/// Whether the decoder knows the whole dynamic table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableState {
    /// Every entry is known (decoder saw the connection from its start, or the encoder
    /// emptied the table with a size update to 0).
    Complete,
    /// Joined mid-stream or recovered from an error: the newest entries are the ones seen
    /// inserted; older ones are unknown.
    Partial,
}

/// Tunables of a [`Decoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Hard cap on the dynamic table size, whatever SETTINGS says (memory bound).
    pub max_table_size_cap: usize,
    /// Cap on the decoded header list size (sum of name + value + 32 per field); fields
    /// past it are dropped (the block is still decoded to keep the table in sync).
    pub max_header_list_size: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self { max_table_size_cap: 65536, max_header_list_size: 65536 }
    }
}

/// Counters of one decoder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Header blocks decoded without error.
    pub blocks: u64,
    /// Header fields handed to the caller.
    pub fields: u64,
    /// Fields that referenced a dynamic entry unknown to a partial decoder.
    pub unknown_fields: u64,
    /// Fields dropped because the header list exceeded its cap.
    pub dropped_fields: u64,
    /// Errors (each desynchronizes the table; the decoder falls back to partial).
    pub desyncs: u64,
    /// Entries evicted from the dynamic table.
    pub evictions: u64,
}

/// Result of decoding one header block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockSummary {
    /// Fields handed to the callback.
    pub fields: u32,
    /// Fields whose name or value referenced an unknown dynamic entry (not handed over).
    pub unknown: u32,
    /// Fields dropped because the header list size cap was exceeded.
    pub dropped: u32,
}

/// A decoded header field, borrowed from the block, the tables or a scratch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// Field name (lowercase in HTTP/2).
    pub name: &'a [u8],
    /// Field value.
    pub value: &'a [u8],
    /// Literal never-indexed representation (RFC 7541 section 6.2.3).
    pub sensitive: bool,
}

/// HPACK decoder for one direction of an HTTP/2 connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    cfg: DecoderConfig,
    /// Newest entry first.
    entries: VecDeque<Entry>,
    size: usize,
    /// Current maximum size of the dynamic table (changed by size updates).
    max_size: usize,
    /// Upper bound a size update may request (acknowledged SETTINGS value, capped).
    limit: usize,
    state: TableState,
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
    stats: DecoderStats,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DecoderConfig::default())
    }
}

/// A table entry as (name, value).
type NameValue<'a> = (&'a [u8], &'a [u8]);

enum Str<'a> {
    Raw(&'a [u8]),
    Huff,
}

impl Decoder {
    /// A decoder for a connection observed from its start.
    pub fn new(cfg: DecoderConfig) -> Self {
        let limit = DEFAULT_TABLE_SIZE.min(cfg.max_table_size_cap);
        Self {
            cfg,
            entries: VecDeque::new(),
            size: 0,
            max_size: limit,
            limit,
            state: TableState::Complete,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
            stats: DecoderStats::default(),
        }
    }

    /// A decoder joining a connection mid-stream: the dynamic table content is unknown.
    pub fn new_mid_stream(cfg: DecoderConfig) -> Self {
        let mut d = Self::new(cfg);
        d.state = TableState::Partial;
        // The encoder may use a larger table than the default; allow any size up to the cap.
        d.limit = cfg.max_table_size_cap;
        d
    }

    /// Whether the whole dynamic table is known.
    pub fn table_state(&self) -> TableState {
        self.state
    }

    /// Counters.
    pub fn stats(&self) -> &DecoderStats {
        &self.stats
    }

    /// Current dynamic table size (sum of entry sizes known to this decoder).
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// Current dynamic table maximum size.
    pub fn max_table_size(&self) -> usize {
        self.max_size
    }

    /// Number of dynamic entries known.
    pub fn table_len(&self) -> usize {
        self.entries.len()
    }

    /// Applies an acknowledged `SETTINGS_HEADER_TABLE_SIZE` (the largest size the encoder may
    /// use). Capped at [`DecoderConfig::max_table_size_cap`]. A lower value shrinks the table
    /// at once (a conforming encoder must signal it at the start of its next block anyway).
    pub fn set_settings_table_size(&mut self, size: u32) {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        self.limit = size.min(self.cfg.max_table_size_cap);
        if self.max_size > self.limit {
            self.max_size = self.limit;
            self.evict_to(self.max_size);
        }
    }

    /// Forgets the dynamic table content (after a lost header block or a gap in the
    /// stream): subsequent references to older entries become unknown fields.
    pub fn mark_lost(&mut self) {
        self.entries.clear();
        self.size = 0;
        self.state = TableState::Partial;
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            match self.entries.pop_back() {
                Some(e) => {
                    self.size -= e.size();
                    self.stats.evictions += 1;
                }
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            // RFC 7541 section 4.4: an entry larger than the table empties it.
            self.stats.evictions += self.entries.len() as u64;
            self.entries.clear();
            self.size = 0;
            if self.state == TableState::Partial {
                // The real table is now empty too: everything is known again.
                self.state = TableState::Complete;
            }
            return;
        }
        self.evict_to(self.max_size - size);
        let mut data = Vec::with_capacity(name.len() + value.len());
        data.extend_from_slice(name);
        data.extend_from_slice(value);
        self.entries.push_front(Entry { data: data.into_boxed_slice(), name_len: name.len() });
        self.size += size;
    }

    fn size_update(&mut self, new_max: u32) -> Result<(), HpackError> {
        let n = usize::try_from(new_max).unwrap_or(usize::MAX);
        if n > self.limit {
            return Err(HpackError::TableSizeTooLarge {
                requested: new_max,
                limit: u32::try_from(self.limit).unwrap_or(u32::MAX),
            });
        }
        self.max_size = n;
        self.evict_to(n);
        if n == 0 {
            self.state = TableState::Complete;
        }
        Ok(())
    }

    /// Looks up index `idx` (>= 1). `Ok(None)`: an entry of the unknown part of a partial
    /// table.
    fn lookup(&self, idx: u32) -> Result<Option<NameValue<'_>>, HpackError> {
        if idx == 0 {
            return Err(HpackError::ZeroIndex);
        }
        if idx <= STATIC_LEN {
            return match STATIC_TABLE.get(idx as usize - 1) {
                Some((n, v)) => Ok(Some((n.as_bytes(), v.as_bytes()))),
                None => Err(HpackError::InvalidIndex(idx)),
            };
        }
        let d = (idx - STATIC_LEN - 1) as usize;
        match self.entries.get(d) {
            Some(e) => Ok(Some((e.name(), e.value()))),
            None => match self.state {
                TableState::Partial => {
                    // The real table holds at most max_size / 32 entries.
                    if d < self.max_size.max(self.limit) / ENTRY_OVERHEAD {
                        Ok(None)
                    } else {
                        Err(HpackError::InvalidIndex(idx))
                    }
                }
                TableState::Complete => Err(HpackError::InvalidIndex(idx)),
            },
        }
    }

    /// Decodes one complete header block (HEADERS + CONTINUATION fragments concatenated),
    /// calling `on_field` for each known field in order.
    ///
    /// On error the dynamic table can no longer be trusted: the decoder switches to
    /// [`TableState::Partial`] with an empty known table and counts a desync; fields already
    /// handed to `on_field` stay valid.
    pub fn decode_block<F>(&mut self, block: &[u8], mut on_field: F) -> Result<BlockSummary, HpackError>
    where
        F: FnMut(HeaderField<'_>),
    {
        match self.decode_inner(block, &mut on_field) {
            Ok(s) => {
                self.stats.blocks += 1;
                self.stats.fields += u64::from(s.fields);
                self.stats.unknown_fields += u64::from(s.unknown);
                self.stats.dropped_fields += u64::from(s.dropped);
                Ok(s)
            }
            Err(e) => {
                self.stats.desyncs += 1;
                self.mark_lost();
                Err(e)
            }
        }
    }

    fn read_string<'b>(
        buf: &'b [u8],
        pos: &mut usize,
        scratch: &mut Vec<u8>,
        cap: usize,
    ) -> Result<Str<'b>, HpackError> {
        let huff = buf.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
        let len = decode_integer(buf, pos, 7)?;
        let n = len as usize;
        let end = pos.checked_add(n).ok_or(HpackError::Truncated)?;
        let raw = buf.get(*pos..end).ok_or(HpackError::Truncated)?;
        *pos = end;
        if n > cap {
            return Err(HpackError::StringTooLong(len));
        }
        if huff {
            scratch.clear();
            huffman_decode(raw, scratch)?;
            Ok(Str::Huff)
        } else {
            Ok(Str::Raw(raw))
        }
    }

    fn decode_inner<F>(&mut self, block: &[u8], on_field: &mut F) -> Result<BlockSummary, HpackError>
    where
        F: FnMut(HeaderField<'_>),
    {
        let mut sum = BlockSummary::default();
        let mut pos = 0usize;
        let mut list_size = 0usize;
        let mut seen_field = false;
        // Strings longer than the table cap can never be inserted, and longer than the list
        // cap can never be emitted; skip decoding but still validate lengths.
        let str_cap = self.cfg.max_header_list_size.max(self.cfg.max_table_size_cap);
        let mut name_buf = std::mem::take(&mut self.name_buf);
        let mut value_buf = std::mem::take(&mut self.value_buf);
        let res = (|| -> Result<(), HpackError> {
            while let Some(&b) = block.get(pos) {
                if b & 0x80 != 0 {
                    // Indexed header field.
                    seen_field = true;
                    let idx = decode_integer(block, &mut pos, 7)?;
                    match self.lookup(idx)? {
                        Some((n, v)) => {
                            list_size += n.len() + v.len() + ENTRY_OVERHEAD;
                            if list_size > self.cfg.max_header_list_size {
                                sum.dropped += 1;
                            } else {
                                sum.fields += 1;
                                on_field(HeaderField { name: n, value: v, sensitive: false });
                            }
                        }
                        None => sum.unknown += 1,
                    }
                    continue;
                }
                if b & 0xe0 == 0x20 {
                    if seen_field {
                        return Err(HpackError::LateTableSizeUpdate);
                    }
                    let n = decode_integer(block, &mut pos, 5)?;
                    self.size_update(n)?;
                    continue;
                }
                seen_field = true;
                let (prefix, indexing, sensitive) =
                    if b & 0xc0 == 0x40 { (6u8, true, false) } else { (4u8, false, b & 0x10 != 0) };
                let name_idx = decode_integer(block, &mut pos, prefix)?;
                // Name: from a table, or a literal.
                let mut name_known = true;
                let mut name_lit: Option<Str<'_>> = None;
                if name_idx == 0 {
                    name_lit = Some(Self::read_string(block, &mut pos, &mut name_buf, str_cap)?);
                } else if self.lookup(name_idx)?.is_none() {
                    name_known = false;
                }
                let value = Self::read_string(block, &mut pos, &mut value_buf, str_cap)?;
                let value: &[u8] = match value {
                    Str::Raw(r) => r,
                    Str::Huff => &value_buf,
                };
                if !name_known {
                    sum.unknown += 1;
                    // The encoder inserted an entry we cannot name: the table is unknown
                    // again from here on (our known entries stay the newest but one).
                    if indexing {
                        self.insert_unknown(value.len());
                    }
                    continue;
                }
                let name: &[u8] = match &name_lit {
                    Some(Str::Raw(r)) => r,
                    Some(Str::Huff) => &name_buf,
                    None => match self.lookup(name_idx)? {
                        Some((n, _)) => n,
                        None => &[],
                    },
                };
                list_size += name.len() + value.len() + ENTRY_OVERHEAD;
                if list_size > self.cfg.max_header_list_size {
                    sum.dropped += 1;
                } else {
                    sum.fields += 1;
                    on_field(HeaderField { name, value, sensitive });
                }
                if indexing {
                    // Copy the name out before mutating the table (it may borrow from it).
                    if name_lit.is_none() && name_idx > STATIC_LEN {
                        let owned = name.to_vec();
                        self.insert(&owned, value);
                    } else {
                        let name: &[u8] = match &name_lit {
                            Some(Str::Raw(r)) => r,
                            Some(Str::Huff) => &name_buf,
                            None => STATIC_TABLE.get(name_idx as usize - 1).map_or(&[][..], |e| e.0.as_bytes()),
                        };
                        self.insert(name, value);
                    }
                }
            }
            Ok(())
        })();
        self.name_buf = name_buf;
        self.value_buf = value_buf;
        // Do not let one huge string pin memory.
        if self.name_buf.capacity() > 4096 {
            self.name_buf = Vec::new();
        }
        if self.value_buf.capacity() > 4096 {
            self.value_buf = Vec::new();
        }
        res.map(|()| sum)
    }

    /// An insertion whose name is unknown (partial table): we cannot store it, and it shifts
    /// every index. Keep the table consistent by forgetting what we know.
    fn insert_unknown(&mut self, _value_len: usize) {
        self.entries.clear();
        self.size = 0;
        self.state = TableState::Partial;
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn h(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    pub(crate) struct XorShift(pub u64);
    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Minimal HPACK encoder for tests: every field as a literal, optionally indexed.
    pub(crate) fn encode_int(out: &mut Vec<u8>, first: u8, prefix: u8, v: usize) {
        let max = (1usize << prefix) - 1;
        if v < max {
            out.push(first | v as u8);
            return;
        }
        out.push(first | max as u8);
        let mut v = v - max;
        while v >= 128 {
            out.push((v % 128) as u8 | 0x80);
            v /= 128;
        }
        out.push(v as u8);
    }

    pub(crate) fn encode_str(out: &mut Vec<u8>, s: &[u8], huff: bool) {
        if huff {
            let mut enc = Vec::new();
            huffman_encode(s, &mut enc);
            encode_int(out, 0x80, 7, enc.len());
            out.extend_from_slice(&enc);
        } else {
            encode_int(out, 0, 7, s.len());
            out.extend_from_slice(s);
        }
    }

    /// Literal field with a literal name: with incremental indexing if `index`.
    pub(crate) fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8], index: bool, huff: bool) {
        out.push(if index { 0x40 } else { 0x00 });
        encode_str(out, name, huff);
        encode_str(out, value, huff);
    }

    fn decode_all(d: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
        let mut v = Vec::new();
        d.decode_block(block, |f| {
            v.push((String::from_utf8_lossy(f.name).into_owned(), String::from_utf8_lossy(f.value).into_owned()))
        })?;
        Ok(v)
    }

    fn table(d: &Decoder) -> Vec<(String, String)> {
        d.entries
            .iter()
            .map(|e| (String::from_utf8_lossy(e.name()).into_owned(), String::from_utf8_lossy(e.value()).into_owned()))
            .collect()
    }

    fn hv(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn c1_integers() {
        // C.1.1: 10 with 5-bit prefix; C.1.2: 1337 with 5-bit prefix; C.1.3: 42 at octet.
        let mut p = 0;
        assert_eq!(decode_integer(&[0x0a], &mut p, 5), Ok(10));
        p = 0;
        assert_eq!(decode_integer(&[0x1f, 0x9a, 0x0a], &mut p, 5), Ok(1337));
        assert_eq!(p, 3);
        p = 0;
        assert_eq!(decode_integer(&[0x2a], &mut p, 8), Ok(42));
        p = 0;
        assert_eq!(decode_integer(&[0x1f, 0x9a], &mut p, 5), Err(HpackError::Truncated));
        p = 0;
        assert_eq!(decode_integer(&[], &mut p, 5), Err(HpackError::Truncated));
        p = 0;
        let big = [0x1f, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert_eq!(decode_integer(&big, &mut p, 5), Err(HpackError::IntegerOverflow));
        p = 0;
        let long = [0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert_eq!(decode_integer(&long, &mut p, 5), Err(HpackError::IntegerOverflow));
        p = 0;
        // u32::MAX itself is accepted: 31 + 0xffffffe0.
        let max = [0x1f, 0xe0, 0xff, 0xff, 0xff, 0x0f];
        assert_eq!(decode_integer(&max, &mut p, 5), Ok(u32::MAX));
    }

    #[test]
    fn c2_single_fields() {
        let mut d = Decoder::default();
        let r = decode_all(&mut d, &h("400a637573746f6d2d6b65790d637573746f6d2d686561646572")).unwrap();
        assert_eq!(r, hv(&[("custom-key", "custom-header")]));
        assert_eq!(d.table_size(), 55);
        assert_eq!(table(&d), hv(&[("custom-key", "custom-header")]));

        let mut d = Decoder::default();
        let r = decode_all(&mut d, &h("040c2f73616d706c652f70617468")).unwrap();
        assert_eq!(r, hv(&[(":path", "/sample/path")]));
        assert_eq!(d.table_len(), 0);

        let mut d = Decoder::default();
        let mut sens = false;
        d.decode_block(&h("100870617373776f726406736563726574"), |f| {
            assert_eq!(f.name, b"password");
            assert_eq!(f.value, b"secret");
            sens = f.sensitive;
        })
        .unwrap();
        assert!(sens);
        assert_eq!(d.table_len(), 0);

        let mut d = Decoder::default();
        assert_eq!(decode_all(&mut d, &h("82")).unwrap(), hv(&[(":method", "GET")]));
        assert_eq!(d.table_len(), 0);
    }

    /// Expected (fields, table after, table size) of one block.
    type Step = (Vec<(String, String)>, Vec<(String, String)>, usize);

    fn requests_expect() -> [Step; 3] {
        [
            (
                hv(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")]),
                hv(&[(":authority", "www.example.com")]),
                57,
            ),
            (
                hv(&[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":authority", "www.example.com"),
                    ("cache-control", "no-cache"),
                ]),
                hv(&[("cache-control", "no-cache"), (":authority", "www.example.com")]),
                110,
            ),
            (
                hv(&[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":path", "/index.html"),
                    (":authority", "www.example.com"),
                    ("custom-key", "custom-value"),
                ]),
                hv(&[("custom-key", "custom-value"), ("cache-control", "no-cache"), (":authority", "www.example.com")]),
                164,
            ),
        ]
    }

    const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
    const DATE2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
    const LOC: &str = "https://www.example.com";
    const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

    fn responses_expect() -> [Step; 3] {
        [
            (
                hv(&[(":status", "302"), ("cache-control", "private"), ("date", DATE1), ("location", LOC)]),
                hv(&[("location", LOC), ("date", DATE1), ("cache-control", "private"), (":status", "302")]),
                222,
            ),
            (
                hv(&[(":status", "307"), ("cache-control", "private"), ("date", DATE1), ("location", LOC)]),
                hv(&[(":status", "307"), ("location", LOC), ("date", DATE1), ("cache-control", "private")]),
                222,
            ),
            (
                hv(&[
                    (":status", "200"),
                    ("cache-control", "private"),
                    ("date", DATE2),
                    ("location", LOC),
                    ("content-encoding", "gzip"),
                    ("set-cookie", COOKIE),
                ]),
                hv(&[("set-cookie", COOKIE), ("content-encoding", "gzip"), ("date", DATE2)]),
                215,
            ),
        ]
    }

    pub(crate) const C3: [&str; 3] = [
        "828684410f7777772e6578616d706c652e636f6d",
        "828684be58086e6f2d6361636865",
        "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
    ];
    pub(crate) const C4: [&str; 3] = [
        "828684418cf1e3c2e5f23a6ba0ab90f4ff",
        "828684be5886a8eb10649cbf",
        "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
    ];
    pub(crate) const C5: [&str; 3] = [
        "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
        "4803333037c1c0bf",
        "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076657273696f6e3d31",
    ];
    pub(crate) const C6: [&str; 3] = [
        "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
        "4883640effc1c0bf",
        "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
    ];

    fn run_sequence(blocks: &[&str; 3], table_size: Option<u32>, expect: &[Step; 3]) {
        let mut d = Decoder::default();
        if let Some(n) = table_size {
            d.set_settings_table_size(n);
        }
        for (b, (fields, tbl, size)) in blocks.iter().zip(expect.iter()) {
            let r = decode_all(&mut d, &h(b)).unwrap();
            assert_eq!(&r, fields);
            assert_eq!(&table(&d), tbl);
            assert_eq!(d.table_size(), *size);
        }
        assert_eq!(d.stats().desyncs, 0);
    }

    #[test]
    fn c3_requests_plain() {
        run_sequence(&C3, None, &requests_expect());
    }

    #[test]
    fn c4_requests_huffman() {
        run_sequence(&C4, None, &requests_expect());
    }

    #[test]
    fn c5_responses_plain() {
        run_sequence(&C5, Some(256), &responses_expect());
    }

    #[test]
    fn c6_responses_huffman() {
        run_sequence(&C6, Some(256), &responses_expect());
    }

    /// Truncating any block of C.3-C.6 at any offset never panics; it either fails or
    /// yields a prefix of the fields (cut at a field boundary).
    #[test]
    fn truncation_every_offset() {
        for (blocks, size) in [(&C3, None), (&C4, None), (&C5, Some(256)), (&C6, Some(256))] {
            let mut d = Decoder::default();
            if let Some(n) = size {
                d.set_settings_table_size(n);
            }
            for b in blocks.iter() {
                let bytes = h(b);
                let full = decode_all(&mut d.clone(), &bytes).unwrap();
                for cut in 0..bytes.len() {
                    let mut dd = d.clone();
                    match decode_all(&mut dd, &bytes[..cut]) {
                        Ok(fields) => assert_eq!(&full[..fields.len()], &fields[..]),
                        Err(e) => {
                            assert_eq!(dd.table_state(), TableState::Partial, "{e}");
                            assert_eq!(dd.stats().desyncs, 1);
                        }
                    }
                }
                decode_all(&mut d, &bytes).unwrap();
            }
        }
    }

    #[test]
    fn huffman_all_bytes_roundtrip() {
        let all: Vec<u8> = (0..=255u8).collect();
        for len in [0usize, 1, 2, 7, 100, 256] {
            let src: Vec<u8> = all.iter().cycle().skip(len * 3).take(len).copied().collect();
            let mut enc = Vec::new();
            huffman_encode(&src, &mut enc);
            assert_eq!(enc.len(), huffman_encoded_len(&src));
            let mut dec = Vec::new();
            huffman_decode(&enc, &mut dec).unwrap();
            assert_eq!(dec, src);
        }
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let n = rng.below(64);
            let src: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let mut enc = Vec::new();
            huffman_encode(&src, &mut enc);
            let mut dec = Vec::new();
            huffman_decode(&enc, &mut dec).unwrap();
            assert_eq!(dec, src);
        }
    }

    #[test]
    fn huffman_padding_and_eos() {
        let mut out = Vec::new();
        // 'a' = 00011 (5 bits) + 3 bits of 1 padding = 0x1f: valid.
        assert!(huffman_decode(&[0x1f], &mut out).is_ok());
        assert_eq!(out, b"a");
        // Padding with a zero bit: 00011 000.
        assert_eq!(huffman_decode(&[0x18], &mut Vec::new()), Err(HpackError::InvalidHuffman));
        // 'a' then a whole byte of ones: padding of 11 bits.
        assert_eq!(huffman_decode(&[0x1f, 0xff], &mut Vec::new()), Err(HpackError::InvalidHuffman));
        // A whole byte of ones alone: 8 bits of padding.
        assert_eq!(huffman_decode(&[0xff], &mut Vec::new()), Err(HpackError::InvalidHuffman));
        // Explicit EOS (30 ones) followed by padding.
        assert_eq!(huffman_decode(&[0xff, 0xff, 0xff, 0xff], &mut Vec::new()), Err(HpackError::InvalidHuffman));
        // Empty string is valid.
        assert!(huffman_decode(&[], &mut Vec::new()).is_ok());
        // 7 one-bits of padding after a 1-bit-aligned symbol: '0' = 00000 + 3 ones... and
        // a 13-bit symbol + 3 ones: '\0' = 0x1ff8 (13 bits) -> 1111111111111000 | 111
        // encoded by huffman_encode; check it decodes.
        let mut enc = Vec::new();
        huffman_encode(&[0], &mut enc);
        let mut dec = Vec::new();
        huffman_decode(&enc, &mut dec).unwrap();
        assert_eq!(dec, [0]);
    }

    #[test]
    fn size_updates_and_errors() {
        let mut d = Decoder::default();
        // Size update above the SETTINGS limit (4096).
        assert!(matches!(
            decode_all(&mut d, &[0x3f, 0xe2, 0x1f]), // 31 + 4066 = 4097
            Err(HpackError::TableSizeTooLarge { requested: 4097, .. })
        ));
        assert_eq!(d.stats().desyncs, 1);
        let mut d = Decoder::default();
        // Update to 4096 ok, then fields.
        assert_eq!(decode_all(&mut d, &[0x3f, 0xe1, 0x1f, 0x82]).unwrap(), hv(&[(":method", "GET")]));
        // Size update after a field.
        assert_eq!(decode_all(&mut d, &[0x82, 0x20]), Err(HpackError::LateTableSizeUpdate));
        let mut d = Decoder::default();
        assert_eq!(decode_all(&mut d, &[0x80]), Err(HpackError::ZeroIndex));
        let mut d = Decoder::default();
        assert_eq!(decode_all(&mut d, &[0xbe]), Err(HpackError::InvalidIndex(62)));
        // Two size updates in a row (shrink then grow) are allowed.
        let mut d = Decoder::default();
        decode_all(&mut d, &h("400a637573746f6d2d6b65790d637573746f6d2d686561646572")).unwrap();
        assert_eq!(decode_all(&mut d, &[0x20, 0x3f, 0xe1, 0x1f, 0x82]).unwrap().len(), 1);
        assert_eq!(d.table_len(), 0);
        assert_eq!(d.max_table_size(), 4096);
        // SETTINGS lowering the limit evicts.
        let mut d = Decoder::default();
        decode_all(&mut d, &h("400a637573746f6d2d6b65790d637573746f6d2d686561646572")).unwrap();
        d.set_settings_table_size(10);
        assert_eq!(d.table_len(), 0);
        // Entry bigger than the table empties it.
        let mut d = Decoder::default();
        d.set_settings_table_size(100);
        decode_all(&mut d, &h("400a637573746f6d2d6b65790d637573746f6d2d686561646572")).unwrap();
        let mut b = Vec::new();
        encode_literal(&mut b, b"x", &[b'y'; 80], true, false);
        decode_all(&mut d, &b).unwrap();
        assert_eq!(d.table_len(), 0);
        assert_eq!(d.table_size(), 0);
    }

    #[test]
    fn header_list_cap_keeps_table_in_sync() {
        let mut d = Decoder::new(DecoderConfig { max_table_size_cap: 65536, max_header_list_size: 100 });
        let mut b = Vec::new();
        encode_literal(&mut b, b"a", &[b'1'; 50], true, true);
        encode_literal(&mut b, b"b", &[b'2'; 50], true, false);
        b.push(0x82);
        let mut got = Vec::new();
        let s = d.decode_block(&b, |f| got.push(f.name.to_vec())).unwrap();
        assert_eq!(got, vec![b"a".to_vec()]);
        assert_eq!(s.dropped, 2);
        assert_eq!(d.table_len(), 2);
        // The dropped field still went into the table.
        let r = decode_all(&mut d, &[0xbe]).unwrap();
        assert_eq!(r, vec![("b".to_string(), "2".repeat(50))]);
    }

    #[test]
    fn mid_stream_partial_table() {
        let mut d = Decoder::new_mid_stream(DecoderConfig::default());
        // Reference to an unknown dynamic entry, a static entry and a literal.
        let mut b = vec![0xc5, 0x82];
        encode_literal(&mut b, b"x-new", b"v1", true, true);
        let mut got = Vec::new();
        let s = d.decode_block(&b, |f| got.push(f.name.to_vec())).unwrap();
        assert_eq!(s.unknown, 1);
        assert_eq!(got, vec![b":method".to_vec(), b"x-new".to_vec()]);
        // The entry we saw inserted is index 62; 63+ are unknown.
        let mut got = Vec::new();
        let s = d.decode_block(&[0xbe, 0xbf], |f| got.push((f.name.to_vec(), f.value.to_vec()))).unwrap();
        assert_eq!(got, vec![(b"x-new".to_vec(), b"v1".to_vec())]);
        assert_eq!(s.unknown, 1);
        assert_eq!(d.table_state(), TableState::Partial);
        // Literal with an unknown indexed name and incremental indexing: we forget.
        let mut b = vec![0x40 | 0x3f, 0x02]; // name index 63+2 = 65
        encode_str(&mut b, b"zz", false);
        let s = d.decode_block(&b, |_| {}).unwrap();
        assert_eq!(s.unknown, 1);
        assert_eq!(d.table_len(), 0);
        // Size update to 0 makes the table complete.
        d.decode_block(&[0x20], |_| {}).unwrap();
        assert_eq!(d.table_state(), TableState::Complete);
        assert_eq!(d.decode_block(&[0xbe], |_| {}), Err(HpackError::InvalidIndex(62)));
    }

    #[test]
    fn error_switches_to_partial_and_recovers() {
        let mut d = Decoder::default();
        decode_all(&mut d, &h(C3[0])).unwrap();
        assert!(decode_all(&mut d, &[0x82, 0x41]).is_err());
        assert_eq!(d.table_state(), TableState::Partial);
        assert_eq!(d.stats().desyncs, 1);
        // Static references still decode; old dynamic references are unknown.
        let mut n = 0;
        let s = d.decode_block(&[0x82, 0xbe], |_| n += 1).unwrap();
        assert_eq!((n, s.unknown), (1, 1));
    }

    /// Fixed-seed fuzz: random bytes and mutated valid blocks, 60k inputs. Must not panic,
    /// table size must stay within its bound.
    #[test]
    fn fuzz_decoder() {
        let seeds: Vec<Vec<u8>> = C3.iter().chain(C4.iter()).chain(C5.iter()).chain(C6.iter()).map(|s| h(s)).collect();
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        let mut d = Decoder::default();
        let mut dm = Decoder::new_mid_stream(DecoderConfig { max_table_size_cap: 4096, max_header_list_size: 1024 });
        for i in 0..60_000 {
            let input: Vec<u8> = if i % 2 == 0 {
                let n = rng.below(48);
                (0..n).map(|_| rng.next() as u8).collect()
            } else {
                let mut b = seeds[rng.below(seeds.len())].clone();
                for _ in 0..1 + rng.below(4) {
                    match rng.below(4) {
                        0 if !b.is_empty() => {
                            let p = rng.below(b.len());
                            b[p] = rng.next() as u8;
                        }
                        1 if !b.is_empty() => {
                            let p = rng.below(b.len());
                            b[p] ^= 1 << rng.below(8);
                        }
                        2 => {
                            let p = rng.below(b.len() + 1);
                            b.insert(p, rng.next() as u8);
                        }
                        _ => {
                            let p = rng.below(b.len() + 1);
                            b.truncate(p);
                        }
                    }
                }
                b
            };
            let mut total = 0usize;
            let _ = d.decode_block(&input, |f| total += f.name.len() + f.value.len());
            let _ = dm.decode_block(&input, |f| total += f.name.len() + f.value.len());
            assert!(d.table_size() <= d.max_table_size());
            assert!(dm.table_size() <= 4096);
            assert!(total < 1 << 20);
            if i % 1000 == 0 {
                d = Decoder::default();
            }
        }
    }
}
