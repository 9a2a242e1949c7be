//! Packet sources: pcap and pcapng files, and live capture through libpcap (feature `live`).
//!
//! A [`PacketSource`] lends one captured frame at a time as a [`RawPacket`] that borrows the
//! source's buffer until the next call: file readers stream through one large reused buffer
//! (no allocation and no system call per packet), live capture lends libpcap's ring slot.
//!
//! ```no_run
//! use deepflow_capture::source::{open_file, Next};
//!
//! let mut src = open_file("capture.pcapng".as_ref())?;
//! let mut bytes = 0u64;
//! loop {
//!     match src.next_packet()? {
//!         Next::Packet(p) => bytes += p.data.len() as u64,
//!         Next::Idle => continue,
//!         Next::End => break,
//!     }
//! }
//! let stats = src.stats();
//! if let Some(offset) = stats.truncated_at {
//!     eprintln!("last record cut at byte {offset}; {} packets read before it", stats.packets);
//! }
//! # Ok::<(), deepflow_capture::source::CaptureError>(())
//! ```
//!
//! Files are read leniently: a record cut short by the end of the file ends the stream
//! normally ([`SourceStats::truncated_at`] tells where), blocks of unknown types and packets
//! of link types the decoder does not support are skipped and counted. Structural damage that
//! makes the rest of the file meaningless (an impossible record length, a packet naming an
//! interface that was never described) is a [`CaptureError::Corrupt`] naming the byte offset.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use deepflow_core::wire::LinkType;

#[cfg(feature = "live")]
pub mod live;
pub mod pcap_file;
pub mod pcapng;
mod stream;
#[cfg(test)]
mod tests;

pub use pcap_file::PcapReader;
pub use pcapng::PcapNgReader;

/// Largest captured length of one record the file readers accept (256 KiB). Larger values
/// only appear in corrupt files; accepting them would let one bad length allocate gigabytes.
pub const MAX_RECORD_LEN: u32 = 256 * 1024;

/// Default size of the file readers' buffer (1 MiB): one `read` system call per buffer.
pub const DEFAULT_BUFFER_SIZE: usize = 1 << 20;

/// One captured frame, borrowed from the source until the next call to
/// [`PacketSource::next_packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPacket<'a> {
    /// Capture time, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// Length of the frame on the wire (`data` may be shorter when the snap length cut it).
    pub wire_len: u32,
    /// Data link type of `data`.
    pub link: LinkType,
    /// Interface the frame was captured on: the pcapng interface id within its section, 0 for
    /// classic pcap files and live capture.
    pub interface: u32,
    /// The captured bytes, starting at the link-layer header.
    pub data: &'a [u8],
}

/// What [`PacketSource::next_packet`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next<'a> {
    /// A captured frame.
    Packet(RawPacket<'a>),
    /// Live capture only: the read timeout passed without a packet. Lets the caller advance
    /// its timers (flow timeouts, metric windows) on an idle link.
    Idle,
    /// No more packets: end of file (or the live capture ended). Every later call returns
    /// `End` again.
    End,
}

/// A stream of captured frames.
pub trait PacketSource {
    /// The next frame, [`Next::Idle`] (live capture timeout) or [`Next::End`].
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError>;
    /// Counters so far.
    fn stats(&self) -> SourceStats;
}

impl<S: PacketSource + ?Sized> PacketSource for Box<S> {
    #[inline]
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        (**self).next_packet()
    }
    fn stats(&self) -> SourceStats {
        (**self).stats()
    }
}

/// Counters of a [`PacketSource`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceStats {
    /// Frames returned.
    pub packets: u64,
    /// Captured bytes of the frames returned (`data.len()` summed).
    pub bytes: u64,
    /// Live: packets the kernel/libpcap dropped for lack of buffer space.
    pub dropped: u64,
    /// Live: packets the interface or its driver dropped.
    pub if_dropped: u64,
    /// Live: packets libpcap received (before filtering drops, platform dependent).
    pub received: u64,
    /// Files: byte offset of a record that the end of the file cut short. Everything before
    /// it was returned; the partial record was not.
    pub truncated_at: Option<u64>,
    /// Files: bytes consumed from the file so far (for progress reports).
    pub offset: u64,
    /// pcapng: blocks skipped because they carry no packets (name resolution, interface
    /// statistics, decryption secrets, custom and unknown blocks).
    pub skipped_blocks: u64,
    /// Frames skipped because their link type is not one [`LinkType`] supports.
    pub unsupported_link: u64,
    /// The last unsupported link type (DLT/LINKTYPE value) seen, if any.
    pub last_unsupported_dlt: Option<u32>,
    /// pcapng: section header blocks read.
    pub sections: u64,
    /// pcapng: interface description blocks read.
    pub interfaces: u64,
}

/// Why a packet source failed. Every file variant names the file; those raised while reading
/// name the byte offset of the record or block at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file could not be opened (missing, permissions).
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file does not start with a pcap or pcapng magic number (or is shorter than one).
    #[error("{}: not a pcap or pcapng file", path.display())]
    NotCapture {
        /// The file.
        path: PathBuf,
    },
    /// The file is damaged at `offset`: the rest of it cannot be read reliably. Packets
    /// returned before the error are good.
    #[error("{}: corrupt capture at byte offset {offset}: {what}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the record or block at fault.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// Reading failed (I/O error from the operating system).
    #[error("{}: read error at byte offset {offset}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Byte offset where reading failed.
        offset: u64,
        /// What the operating system said.
        source: io::Error,
    },
    /// libpcap failed (opening the interface, setting the filter, reading).
    #[error("live capture on {interface}: {message}")]
    Live {
        /// The interface.
        interface: String,
        /// libpcap's message.
        message: String,
    },
}

/// pcapng section header block type; also the first four bytes of every pcapng file.
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Opens a pcap or pcapng file (told apart by its magic number) for streaming.
pub fn open_file(path: &Path) -> Result<Box<dyn PacketSource + Send>, CaptureError> {
    let file = File::open(path).map_err(|source| CaptureError::Open { path: path.to_path_buf(), source })?;
    // Files of more than a few blocks are read by a thread of their own (the kernel's copy
    // into user space is then off the packet loop); small ones and pipes directly.
    let big = file.metadata().map(|m| m.is_file() && m.len() > 4 * DEFAULT_BUFFER_SIZE as u64).unwrap_or(false);
    if big {
        // headroom: a record header plus the largest record, so a straddling record never
        // needs a copy beyond its own bytes
        let head = MAX_RECORD_LEN as usize + 64;
        match stream::Stream::read_ahead(file, head, DEFAULT_BUFFER_SIZE) {
            Ok(s) => return from_stream(s, path.to_path_buf()),
            // no thread (resource limits): read directly
            Err(_) => {
                let file =
                    File::open(path).map_err(|source| CaptureError::Open { path: path.to_path_buf(), source })?;
                return from_reader(file, path);
            }
        }
    }
    from_reader(file, path)
}

/// Like [`open_file`], over any reader (`name` is used in error messages).
pub fn from_reader<'r, R: Read + Send + 'r>(
    reader: R,
    name: impl Into<PathBuf>,
) -> Result<Box<dyn PacketSource + Send + 'r>, CaptureError> {
    from_reader_with_buffer(reader, name, DEFAULT_BUFFER_SIZE)
}

/// Like [`from_reader`] with a chosen buffer size (records larger than it still work: the
/// buffer grows to hold them).
pub fn from_reader_with_buffer<'r, R: Read + Send + 'r>(
    reader: R,
    name: impl Into<PathBuf>,
    buffer_size: usize,
) -> Result<Box<dyn PacketSource + Send + 'r>, CaptureError> {
    from_stream(stream::Stream::new(reader, buffer_size), name.into())
}

/// Detects the format at the start of `s`.
fn from_stream<'r, R: Read + Send + 'r>(
    mut s: stream::Stream<R>,
    path: PathBuf,
) -> Result<Box<dyn PacketSource + Send + 'r>, CaptureError> {
    let have4 = s.ensure(4).map_err(|source| CaptureError::Io { path: path.clone(), offset: 0, source })?;
    let magic = if have4 { s.array::<4>(0) } else { None };
    match magic {
        Some(m) if m == PCAPNG_MAGIC => Ok(Box::new(PcapNgReader::from_stream(s, path)?)),
        Some(m) if pcap_file::Format::from_magic(m).is_some() => Ok(Box::new(PcapReader::from_stream(s, path)?)),
        _ => Err(CaptureError::NotCapture { path }),
    }
}
