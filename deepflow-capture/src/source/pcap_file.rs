//! Classic libpcap files: microsecond and nanosecond magics in either byte order.
//!
//! Layout: a 24-byte file header (magic, version, zone, sigfigs, snaplen, link type), then
//! records of a 16-byte header (seconds, fraction, captured length, wire length) followed by
//! the captured bytes.

use std::io::Read;
use std::path::{Path, PathBuf};

use deepflow_core::wire::LinkType;

use super::stream::Stream;
use super::{CaptureError, DEFAULT_BUFFER_SIZE, MAX_RECORD_LEN, Next, PacketSource, RawPacket, SourceStats};

const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// Byte order and timestamp resolution of a pcap file, from its magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Fields are big-endian.
    pub big_endian: bool,
    /// Record timestamps carry nanoseconds (magic `a1b23c4d`) rather than microseconds.
    pub nanos: bool,
}

impl Format {
    /// The format of a file starting with these four bytes, if they are a pcap magic.
    pub fn from_magic(m: [u8; 4]) -> Option<Format> {
        Some(match u32::from_le_bytes(m) {
            0xa1b2_c3d4 => Format { big_endian: false, nanos: false },
            0xa1b2_3c4d => Format { big_endian: false, nanos: true },
            0xd4c3_b2a1 => Format { big_endian: true, nanos: false },
            0x4d3c_b2a1 => Format { big_endian: true, nanos: true },
            _ => return None,
        })
    }

    #[inline]
    fn u32(self, b: [u8; 4]) -> u32 {
        if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
    }
}

/// Streaming reader of a classic pcap file.
pub struct PcapReader<R> {
    s: Stream<R>,
    path: PathBuf,
    format: Format,
    /// The file's link type; `None` when unsupported (every record is then skipped).
    link: Option<LinkType>,
    dlt: u32,
    snaplen: u32,
    stats: SourceStats,
    done: bool,
}

impl PcapReader<std::fs::File> {
    /// Opens a pcap file.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let f = std::fs::File::open(path).map_err(|source| CaptureError::Open { path: path.to_path_buf(), source })?;
        Self::new(f, path)
    }
}

impl<R: Read> PcapReader<R> {
    /// Reads the file header from `reader` (`name` is used in error messages).
    pub fn new(reader: R, name: impl Into<PathBuf>) -> Result<Self, CaptureError> {
        Self::with_buffer(reader, name, DEFAULT_BUFFER_SIZE)
    }

    /// Like [`PcapReader::new`] with a chosen buffer size.
    pub fn with_buffer(reader: R, name: impl Into<PathBuf>, buffer_size: usize) -> Result<Self, CaptureError> {
        Self::from_stream(Stream::new(reader, buffer_size), name.into())
    }

    pub(crate) fn from_stream(mut s: Stream<R>, path: PathBuf) -> Result<Self, CaptureError> {
        let have =
            s.ensure(FILE_HEADER_LEN).map_err(|source| CaptureError::Io { path: path.clone(), offset: 0, source })?;
        let Some(format) = s.array::<4>(0).and_then(Format::from_magic) else {
            return Err(CaptureError::NotCapture { path });
        };
        if !have {
            return Err(CaptureError::Corrupt { path, offset: 0, what: "pcap file header truncated".into() });
        }
        let field = |at: usize| s.array::<4>(at).map(|b| format.u32(b)).unwrap_or(0);
        let snaplen = field(16);
        // The upper bits of the link type field carry FCS information (pcap-savefile(5)).
        let dlt = field(20) & 0xffff;
        s.consume(FILE_HEADER_LEN);
        let stats = SourceStats { offset: s.offset(), ..SourceStats::default() };
        Ok(PcapReader { s, path, format, link: LinkType::from_dlt(dlt), dlt, snaplen, stats, done: false })
    }

    /// Byte order and timestamp resolution.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The file's link type, `None` when [`LinkType`] does not support its `dlt`.
    pub fn link_type(&self) -> Option<LinkType> {
        self.link
    }

    /// The file's raw link type (LINKTYPE_ value).
    pub fn dlt(&self) -> u32 {
        self.dlt
    }

    /// The snap length in the file header.
    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    fn io_err(&self, source: std::io::Error) -> CaptureError {
        CaptureError::Io { path: self.path.clone(), offset: self.s.offset(), source }
    }

    fn truncated(&mut self) -> Next<'static> {
        self.stats.truncated_at = Some(self.s.offset());
        self.done = true;
        Next::End
    }
}

impl<R: Read> PacketSource for PcapReader<R> {
    #[inline]
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        loop {
            if self.done {
                return Ok(Next::End);
            }
            match self.s.ensure(RECORD_HEADER_LEN) {
                Ok(true) => {}
                Ok(false) => {
                    if self.s.available().is_empty() {
                        self.done = true;
                        return Ok(Next::End);
                    }
                    return Ok(self.truncated());
                }
                Err(e) => return Err(self.io_err(e)),
            }
            let Some(h) = self.s.array::<RECORD_HEADER_LEN>(0) else { return Ok(self.truncated()) };
            let [s0, s1, s2, s3, f0, f1, f2, f3, c0, c1, c2, c3, w0, w1, w2, w3] = h;
            let f = self.format;
            let secs = f.u32([s0, s1, s2, s3]);
            let frac = f.u32([f0, f1, f2, f3]);
            let caplen = f.u32([c0, c1, c2, c3]);
            let wire_len = f.u32([w0, w1, w2, w3]);
            if caplen > MAX_RECORD_LEN {
                self.done = true;
                return Err(CaptureError::Corrupt {
                    path: self.path.clone(),
                    offset: self.s.offset(),
                    what: format!("record captured length {caplen} exceeds the {MAX_RECORD_LEN}-byte limit"),
                });
            }
            let total = RECORD_HEADER_LEN + caplen as usize;
            match self.s.ensure(total) {
                Ok(true) => {}
                Ok(false) => return Ok(self.truncated()),
                Err(e) => return Err(self.io_err(e)),
            }
            self.s.consume(total);
            self.stats.offset = self.s.offset();
            let Some(link) = self.link else {
                self.stats.unsupported_link += 1;
                self.stats.last_unsupported_dlt = Some(self.dlt);
                continue;
            };
            let frac_us = if f.nanos { frac / 1000 } else { frac };
            let timestamp_us = u64::from(secs) * 1_000_000 + u64::from(frac_us);
            self.stats.packets += 1;
            self.stats.bytes += u64::from(caplen);
            // The record was consumed above; its bytes stay in the buffer until the next call.
            let data = self.s.slice_back(caplen as usize);
            return Ok(Next::Packet(RawPacket { timestamp_us, wire_len, link, interface: 0, data }));
        }
    }

    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
}
