//! pcapng files: sections in either byte order, interface descriptions with `if_tsresol` and
//! `if_tsoffset`, enhanced, simple and (obsolete) packet blocks.
//!
//! Every block is `type, total length, body, total length`. A Section Header Block starts a
//! section (its byte-order magic decides how the rest of the section is read) and forgets the
//! interfaces of the previous section. Blocks that carry no packets (name resolution,
//! interface statistics, decryption secrets, custom, unknown) are skipped by their length and
//! counted in [`SourceStats::skipped_blocks`].

use std::io::Read;
use std::path::{Path, PathBuf};

use deepflow_core::wire::LinkType;

use super::stream::Stream;
use super::{CaptureError, DEFAULT_BUFFER_SIZE, MAX_RECORD_LEN, Next, PacketSource, RawPacket, SourceStats};

/// Section Header Block type (the same in both byte orders).
const SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const IDB: u32 = 1;
const PB: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;

/// Largest block the reader parses (packet and header blocks). Skipped blocks may be longer.
const MAX_PARSED_BLOCK: u32 = 4 << 20;

/// Option codes in interface description blocks.
const OPT_END: u16 = 0;
const IF_TSRESOL: u16 = 9;
const IF_TSOFFSET: u16 = 14;

/// How an interface's timestamp units convert to microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsScale {
    /// Units are microseconds (the default).
    Micros,
    /// Units are coarser than microseconds: multiply.
    Mul(u64),
    /// Units are finer than microseconds: divide.
    Div(u64),
    /// Units are 2^-k seconds.
    Pow2(u32),
    /// Units so fine that every timestamp is below one microsecond of its epoch.
    Zero,
}

impl TsScale {
    /// From the `if_tsresol` option byte: high bit clear = 10^-v, set = 2^-(v & 0x7f).
    fn from_tsresol(v: u8) -> TsScale {
        if v & 0x80 != 0 {
            let k = u32::from(v & 0x7f);
            return if k == 0 { TsScale::Mul(1_000_000) } else { TsScale::Pow2(k) };
        }
        let k = u32::from(v);
        match k {
            6 => TsScale::Micros,
            0..6 => TsScale::Mul(10u64.pow(6 - k)),
            _ => 10u64.checked_pow(k - 6).map_or(TsScale::Zero, TsScale::Div),
        }
    }

    #[inline]
    fn to_us(self, ts: u64) -> u64 {
        match self {
            TsScale::Micros => ts,
            TsScale::Mul(m) => ts.wrapping_mul(m),
            TsScale::Div(d) => ts / d,
            TsScale::Pow2(k) => {
                let us = (u128::from(ts) * 1_000_000) >> k;
                u64::try_from(us).unwrap_or(u64::MAX)
            }
            TsScale::Zero => 0,
        }
    }
}

/// One interface of the current section.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: Option<LinkType>,
    dlt: u32,
    snaplen: u32,
    scale: TsScale,
    /// `if_tsoffset`, in microseconds.
    offset_us: u64,
}

/// Streaming reader of a pcapng file.
pub struct PcapNgReader<R> {
    s: Stream<R>,
    path: PathBuf,
    big_endian: bool,
    interfaces: Vec<Interface>,
    last_ts_us: u64,
    stats: SourceStats,
    done: bool,
}

impl PcapNgReader<std::fs::File> {
    /// Opens a pcapng file.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let f = std::fs::File::open(path).map_err(|source| CaptureError::Open { path: path.to_path_buf(), source })?;
        Self::new(f, path)
    }
}

/// An enhanced packet block taken by the fast path (consumed; its data is lent afterwards).
struct FastEpb {
    timestamp_us: u64,
    wire_len: u32,
    link: LinkType,
    interface: u32,
    caplen: usize,
    block_len: usize,
}

/// What one parsed block turned out to be.
enum Block {
    /// A packet: (interface, timestamp, wire length, data offset and length within the block).
    Packet { interface: u32, timestamp_us: u64, wire_len: u32, from: usize, len: usize },
    /// A block that updated the reader's state or was skipped.
    Other,
}

impl<R: Read> PcapNgReader<R> {
    /// Reads the first section header from `reader` (`name` is used in error messages).
    pub fn new(reader: R, name: impl Into<PathBuf>) -> Result<Self, CaptureError> {
        Self::with_buffer(reader, name, DEFAULT_BUFFER_SIZE)
    }

    /// Like [`PcapNgReader::new`] with a chosen buffer size.
    pub fn with_buffer(reader: R, name: impl Into<PathBuf>, buffer_size: usize) -> Result<Self, CaptureError> {
        Self::from_stream(Stream::new(reader, buffer_size), name.into())
    }

    pub(crate) fn from_stream(s: Stream<R>, path: PathBuf) -> Result<Self, CaptureError> {
        let mut r = PcapNgReader {
            s,
            path,
            big_endian: false,
            interfaces: Vec::new(),
            last_ts_us: 0,
            stats: SourceStats::default(),
            done: false,
        };
        let have = r.s.ensure(12).map_err(|e| r.io_err(e))?;
        if r.s.array::<4>(0) != Some(SHB) {
            return Err(CaptureError::NotCapture { path: r.path });
        }
        if !have {
            return Err(r.corrupt(0, "section header block truncated".into()));
        }
        match r.read_block()? {
            Some(_) => Ok(r),
            None => Err(r.corrupt(0, "section header block truncated".into())),
        }
    }

    /// Link type of interface `id` of the current section, if described and supported.
    pub fn link_type(&self, id: u32) -> Option<LinkType> {
        self.interfaces.get(id as usize).and_then(|i| i.link)
    }

    /// Number of interfaces described in the current section.
    pub fn interface_count(&self) -> usize {
        self.interfaces.len()
    }

    fn io_err(&self, source: std::io::Error) -> CaptureError {
        CaptureError::Io { path: self.path.clone(), offset: self.s.offset(), source }
    }

    fn corrupt(&self, offset: u64, what: String) -> CaptureError {
        CaptureError::Corrupt { path: self.path.clone(), offset, what }
    }

    #[inline]
    fn u32(&self, b: [u8; 4]) -> u32 {
        if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
    }

    #[inline]
    fn u16(&self, b: [u8; 2]) -> u16 {
        if self.big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) }
    }

    /// A u32 at `at` bytes into the (buffered) current block.
    #[inline]
    fn field32(&self, at: usize) -> u32 {
        self.s.array::<4>(at).map_or(0, |b| self.u32(b))
    }

    /// Reads one block and consumes it. `Ok(None)` at the end of the file (clean, or a block
    /// cut short: then `truncated_at` is set).
    fn read_block(&mut self) -> Result<Option<Block>, CaptureError> {
        let start = self.s.offset();
        match self.s.ensure(12) {
            Ok(true) => {}
            Ok(false) => {
                if !self.s.available().is_empty() {
                    self.stats.truncated_at = Some(start);
                }
                return Ok(None);
            }
            Err(e) => return Err(self.io_err(e)),
        }
        let Some([t0, t1, t2, t3, l0, l1, l2, l3, b0, b1, b2, b3]) = self.s.array::<12>(0) else { return Ok(None) };
        let is_shb = [t0, t1, t2, t3] == SHB;
        if is_shb {
            self.big_endian = match [b0, b1, b2, b3] {
                [0x1a, 0x2b, 0x3c, 0x4d] => true,
                [0x4d, 0x3c, 0x2b, 0x1a] => false,
                _ => return Err(self.corrupt(start, "section header with an invalid byte-order magic".into())),
            };
        }
        let btype = self.u32([t0, t1, t2, t3]);
        let len = self.u32([l0, l1, l2, l3]);
        if len < 12 || !len.is_multiple_of(4) {
            return Err(self.corrupt(start, format!("block length {len} is not a multiple of 4 of at least 12")));
        }
        if !is_shb && !matches!(btype, IDB | PB | SPB | EPB) {
            return match self.s.skip(u64::from(len)) {
                Ok(true) => {
                    self.stats.skipped_blocks += 1;
                    Ok(Some(Block::Other))
                }
                Ok(false) => {
                    self.stats.truncated_at = Some(start);
                    Ok(None)
                }
                Err(e) => Err(self.io_err(e)),
            };
        }
        if len > MAX_PARSED_BLOCK {
            return Err(self.corrupt(start, format!("block of type {btype} is {len} bytes long")));
        }
        let blen = len as usize;
        match self.s.ensure(blen) {
            Ok(true) => {}
            Ok(false) => {
                self.stats.truncated_at = Some(start);
                return Ok(None);
            }
            Err(e) => return Err(self.io_err(e)),
        }
        if self.field32(blen - 4) != len {
            return Err(self.corrupt(start, "block trailing length differs from its leading length".into()));
        }
        let body_len = blen - 12;
        let block = if is_shb {
            self.section_header(start, body_len)?
        } else {
            match btype {
                EPB => self.enhanced_packet(start, body_len)?,
                SPB => self.simple_packet(start, body_len)?,
                PB => self.obsolete_packet(start, body_len)?,
                _ => self.interface_description(start, body_len)?,
            }
        };
        self.s.consume(blen);
        Ok(Some(block))
    }

    fn section_header(&mut self, start: u64, body_len: usize) -> Result<Block, CaptureError> {
        if body_len < 16 {
            return Err(self.corrupt(start, "section header block too short".into()));
        }
        let major = self.s.array::<2>(12).map_or(0, |b| self.u16(b));
        if major != 1 {
            return Err(self.corrupt(start, format!("unsupported pcapng major version {major}")));
        }
        self.interfaces.clear();
        self.stats.sections += 1;
        Ok(Block::Other)
    }

    fn interface_description(&mut self, start: u64, body_len: usize) -> Result<Block, CaptureError> {
        if body_len < 8 {
            return Err(self.corrupt(start, "interface description block too short".into()));
        }
        let dlt = u32::from(self.s.array::<2>(8).map_or(0, |b| self.u16(b)));
        let snaplen = self.field32(12);
        let mut iface = Interface { link: LinkType::from_dlt(dlt), dlt, snaplen, scale: TsScale::Micros, offset_us: 0 };
        // Options are read leniently: a malformed option ends the list.
        let mut at = 16usize;
        let end = 8 + body_len;
        while at + 4 <= end {
            let code = self.s.array::<2>(at).map_or(0, |b| self.u16(b));
            let olen = usize::from(self.s.array::<2>(at + 2).map_or(0, |b| self.u16(b)));
            let vstart = at + 4;
            if code == OPT_END || vstart + olen > end {
                break;
            }
            match (code, olen) {
                (IF_TSRESOL, 1) => {
                    if let Some([v]) = self.s.array::<1>(vstart) {
                        iface.scale = TsScale::from_tsresol(v);
                    }
                }
                (IF_TSOFFSET, 8) => {
                    if let Some(b) = self.s.array::<8>(vstart) {
                        let secs = if self.big_endian { i64::from_be_bytes(b) } else { i64::from_le_bytes(b) };
                        iface.offset_us = secs.wrapping_mul(1_000_000) as u64;
                    }
                }
                _ => {}
            }
            at = vstart + olen.next_multiple_of(4);
        }
        self.interfaces.push(iface);
        self.stats.interfaces += 1;
        Ok(Block::Other)
    }

    fn interface(&self, start: u64, id: u32) -> Result<Interface, CaptureError> {
        match self.interfaces.get(id as usize) {
            Some(i) => Ok(*i),
            None => Err(self.corrupt(
                start,
                format!("packet names interface {id} but the section describes {}", self.interfaces.len()),
            )),
        }
    }

    fn check_caplen(&self, start: u64, caplen: u32, room: usize) -> Result<(), CaptureError> {
        if caplen > MAX_RECORD_LEN {
            return Err(
                self.corrupt(start, format!("captured length {caplen} exceeds the {MAX_RECORD_LEN}-byte limit"))
            );
        }
        if caplen as usize > room {
            return Err(self.corrupt(start, format!("captured length {caplen} exceeds its block")));
        }
        Ok(())
    }

    #[inline]
    fn enhanced_packet(&mut self, start: u64, body_len: usize) -> Result<Block, CaptureError> {
        if body_len < 20 {
            return Err(self.corrupt(start, "enhanced packet block too short".into()));
        }
        let id = self.field32(8);
        let iface = self.interface(start, id)?;
        let ts = (u64::from(self.field32(12)) << 32) | u64::from(self.field32(16));
        let caplen = self.field32(20);
        let wire_len = self.field32(24);
        self.check_caplen(start, caplen, body_len - 20)?;
        let timestamp_us = iface.scale.to_us(ts).wrapping_add(iface.offset_us);
        self.last_ts_us = timestamp_us;
        Ok(Block::Packet { interface: id, timestamp_us, wire_len, from: 28, len: caplen as usize })
    }

    fn simple_packet(&mut self, start: u64, body_len: usize) -> Result<Block, CaptureError> {
        if body_len < 4 {
            return Err(self.corrupt(start, "simple packet block too short".into()));
        }
        let iface = self.interface(start, 0)?;
        let wire_len = self.field32(8);
        let mut caplen = (wire_len as usize).min(body_len - 4);
        if iface.snaplen > 0 {
            caplen = caplen.min(iface.snaplen as usize);
        }
        self.check_caplen(start, u32::try_from(caplen).unwrap_or(u32::MAX), body_len - 4)?;
        // A simple packet has no timestamp: it inherits the previous packet's.
        Ok(Block::Packet { interface: 0, timestamp_us: self.last_ts_us, wire_len, from: 12, len: caplen })
    }

    fn obsolete_packet(&mut self, start: u64, body_len: usize) -> Result<Block, CaptureError> {
        if body_len < 20 {
            return Err(self.corrupt(start, "packet block too short".into()));
        }
        let id = u32::from(self.s.array::<2>(8).map_or(0, |b| self.u16(b)));
        let iface = self.interface(start, id)?;
        let ts = (u64::from(self.field32(12)) << 32) | u64::from(self.field32(16));
        let caplen = self.field32(20);
        let wire_len = self.field32(24);
        self.check_caplen(start, caplen, body_len - 20)?;
        let timestamp_us = iface.scale.to_us(ts).wrapping_add(iface.offset_us);
        self.last_ts_us = timestamp_us;
        Ok(Block::Packet { interface: id, timestamp_us, wire_len, from: 28, len: caplen as usize })
    }
}

impl<R: Read> PacketSource for PcapNgReader<R> {
    #[inline]
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        // Fast path: a whole enhanced packet block, buffered, of a known supported interface.
        if let Some(m) = self.fast_epb() {
            let data = self.s.slice_back(m.block_len).get(28..28 + m.caplen).unwrap_or(&[]);
            let FastEpb { timestamp_us, wire_len, link, interface, .. } = m;
            return Ok(Next::Packet(RawPacket { timestamp_us, wire_len, link, interface, data }));
        }
        self.next_slow()
    }

    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
}

impl<R: Read> PcapNgReader<R> {
    /// The next packet when it is an enhanced packet block that is entirely buffered, well
    /// formed and of a supported interface; `None` (nothing consumed) for anything else.
    /// Consumes the block and returns what the caller needs to lend its bytes.
    #[inline(always)]
    fn fast_epb(&mut self) -> Option<FastEpb> {
        let [
            t0,
            t1,
            t2,
            t3,
            l0,
            l1,
            l2,
            l3,
            i0,
            i1,
            i2,
            i3,
            h0,
            h1,
            h2,
            h3,
            w0,
            w1,
            w2,
            w3,
            c0,
            c1,
            c2,
            c3,
            o0,
            o1,
            o2,
            o3,
        ] = self.s.array::<28>(0)?;
        if self.done || self.u32([t0, t1, t2, t3]) != EPB {
            return None;
        }
        let len = self.u32([l0, l1, l2, l3]);
        let caplen = self.u32([c0, c1, c2, c3]);
        let blen = len as usize;
        // Same checks as the slow path; anything unusual takes the slow path for its error.
        if caplen > MAX_RECORD_LEN
            || !len.is_multiple_of(4)
            || blen < 32 + caplen as usize
            || len > MAX_PARSED_BLOCK
            || blen > self.s.available().len()
            || self.field32(blen - 4) != len
        {
            return None;
        }
        let interface = self.u32([i0, i1, i2, i3]);
        let iface = self.interfaces.get(interface as usize)?;
        let link = iface.link?;
        let ts = (u64::from(self.u32([h0, h1, h2, h3])) << 32) | u64::from(self.u32([w0, w1, w2, w3]));
        let timestamp_us = iface.scale.to_us(ts).wrapping_add(iface.offset_us);
        let wire_len = self.u32([o0, o1, o2, o3]);
        self.last_ts_us = timestamp_us;
        self.s.consume(blen);
        self.stats.offset = self.s.offset();
        self.stats.packets += 1;
        self.stats.bytes += u64::from(caplen);
        Some(FastEpb { timestamp_us, wire_len, link, interface, caplen: caplen as usize, block_len: blen })
    }

    #[inline(never)]
    fn next_slow(&mut self) -> Result<Next<'_>, CaptureError> {
        while !self.done {
            let start = self.s.offset();
            let block = match self.read_block() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            let block_len = (self.s.offset() - start) as usize;
            self.stats.offset = self.s.offset();
            let Block::Packet { interface, timestamp_us, wire_len, from, len } = block else { continue };
            let Some(iface) = self.interfaces.get(interface as usize) else { continue };
            let Some(link) = iface.link else {
                self.stats.unsupported_link += 1;
                self.stats.last_unsupported_dlt = Some(iface.dlt);
                continue;
            };
            self.stats.packets += 1;
            self.stats.bytes += len as u64;
            let data = self.s.slice_back(block_len).get(from..from + len).unwrap_or(&[]);
            return Ok(Next::Packet(RawPacket { timestamp_us, wire_len, link, interface, data }));
        }
        self.done = true;
        Ok(Next::End)
    }
}
