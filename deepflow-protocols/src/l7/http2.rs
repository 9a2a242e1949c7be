//! HTTP/2 (RFC 9113) parser for passive observation: frames, per-direction HPACK state,
//! streams paired by stream id, and gRPC on top (see [`super::grpc`]).
//!
//! # Layers
//! - Frame layer ([`FrameHeader`], [`H2Connection`]): the connection preface, frame headers
//!   and every frame type of RFC 9113 section 6. Bytes may arrive split at any offset: the
//!   connection buffers partial frame headers and control/header frames (bounded by
//!   [`H2Config::max_frame_buffer`]) and streams DATA payloads through without copying them.
//! - HPACK ([`super::hpack`]): one decoder per direction. `SETTINGS_HEADER_TABLE_SIZE` is
//!   applied when the peer acknowledges the SETTINGS frame, as the encoder does. A decoding
//!   error (or a header block too large to buffer) is counted and the direction's table falls
//!   back to the "partial" state: later blocks still decode, fields that reference lost
//!   dynamic entries are counted as unknown.
//! - Streams: keyed by id, bounded ([`H2Config::max_streams`], overflow counted). Each stream
//!   yields one request message (when the client half-closes, or earlier if the stream is
//!   answered or reset first) and one response message (when the server half-closes or the
//!   stream is reset / refused by GOAWAY), paired by the engine on `request_id` = stream id.
//!
//! # Starting points
//! - Prior knowledge (`h2c` or decrypted `h2`): [`H2Connection::new`]; the client direction
//!   starts with the 24-byte preface.
//! - `Upgrade: h2c`: [`H2Connection::after_upgrade`]: the server direction starts with its
//!   SETTINGS frame, the client direction with the preface, stream 1 is the upgraded request.
//! - Mid-stream: [`H2Connection::new_mid_stream`]: each direction looks for a run of two
//!   plausible frame headers before it trusts the framing, and HPACK starts in the partial
//!   state.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::grpc::{self, GrpcFramer};
use super::hpack::{Decoder, DecoderConfig, HeaderField};
use super::http1::http_endpoint;
use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe, http_status};
use crate::config::L7Config;
use crate::trace::{TraceConfig, TraceExtractor};

/// The client connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Size of a frame header.
pub const FRAME_HEADER_LEN: usize = 9;
/// Largest frame payload the protocol allows (2^24 - 1).
pub const MAX_FRAME_LEN: u32 = (1 << 24) - 1;

/// Frame type codes (RFC 9113 section 6).
pub mod frame_type {
    /// DATA frame.
    pub const DATA: u8 = 0x0;
    /// HEADERS frame.
    pub const HEADERS: u8 = 0x1;
    /// PRIORITY frame.
    pub const PRIORITY: u8 = 0x2;
    /// RST_STREAM frame.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS frame.
    pub const SETTINGS: u8 = 0x4;
    /// PUSH_PROMISE frame.
    pub const PUSH_PROMISE: u8 = 0x5;
    /// PING frame.
    pub const PING: u8 = 0x6;
    /// GOAWAY frame.
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE frame.
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION frame.
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flags {
    /// DATA/HEADERS: last frame of the stream in this direction.
    pub const END_STREAM: u8 = 0x1;
    /// SETTINGS/PING acknowledgement.
    pub const ACK: u8 = 0x1;
    /// HEADERS/PUSH_PROMISE/CONTINUATION: the header block ends here.
    pub const END_HEADERS: u8 = 0x4;
    /// DATA/HEADERS/PUSH_PROMISE: a pad-length byte and padding are present.
    pub const PADDED: u8 = 0x8;
    /// HEADERS: stream dependency and weight are present.
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS_HEADER_TABLE_SIZE identifier.
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;

/// A parsed 9-byte frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameHeader {
    /// Payload length.
    pub length: u32,
    /// Frame type ([`frame_type`]).
    pub kind: u8,
    /// Flags ([`flags`]).
    pub flags: u8,
    /// Stream id (reserved bit cleared).
    pub stream_id: u32,
    /// The reserved bit was set.
    pub reserved: bool,
}

impl FrameHeader {
    /// Parses the first 9 bytes of `b`.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let h: &[u8; 9] = b.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *h;
        let sid = u32::from_be_bytes([s0, s1, s2, s3]);
        Some(FrameHeader {
            length: u32::from_be_bytes([0, l0, l1, l2]),
            kind,
            flags,
            stream_id: sid & 0x7fff_ffff,
            reserved: sid & 0x8000_0000 != 0,
        })
    }

    /// Serializes the header (tests, benches, synthetic traffic).
    pub fn encode(&self) -> [u8; 9] {
        let l = self.length.to_be_bytes();
        let s = (self.stream_id | if self.reserved { 0x8000_0000 } else { 0 }).to_be_bytes();
        let [_, l0, l1, l2] = l;
        let [s0, s1, s2, s3] = s;
        [l0, l1, l2, self.kind, self.flags, s0, s1, s2, s3]
    }

    /// Strict plausibility check used for detection and resynchronisation: a known type,
    /// only defined flags, reserved bit clear, the stream-id rule and the fixed lengths of
    /// its type, and a length of at most `max_len`.
    pub fn is_plausible(&self, max_len: u32) -> bool {
        use frame_type::*;
        if self.reserved || self.length > max_len {
            return false;
        }
        let (allowed, on_stream) = match self.kind {
            DATA => (flags::END_STREAM | flags::PADDED, Some(true)),
            HEADERS => (flags::END_STREAM | flags::END_HEADERS | flags::PADDED | flags::PRIORITY, Some(true)),
            PRIORITY => (0, Some(true)),
            RST_STREAM => (0, Some(true)),
            SETTINGS => (flags::ACK, Some(false)),
            PUSH_PROMISE => (flags::END_HEADERS | flags::PADDED, Some(true)),
            PING => (flags::ACK, Some(false)),
            GOAWAY => (0, Some(false)),
            WINDOW_UPDATE => (0, None),
            CONTINUATION => (flags::END_HEADERS, Some(true)),
            _ => return false,
        };
        if self.flags & !allowed != 0 {
            return false;
        }
        match on_stream {
            Some(true) if self.stream_id == 0 => return false,
            Some(false) if self.stream_id != 0 => return false,
            _ => {}
        }
        match self.kind {
            PRIORITY => self.length == 5,
            RST_STREAM | WINDOW_UPDATE => self.length == 4,
            PING => self.length == 8,
            GOAWAY => self.length >= 8,
            SETTINGS => self.length.is_multiple_of(6) && (self.flags & flags::ACK == 0 || self.length == 0),
            HEADERS | CONTINUATION | PUSH_PROMISE => self.length > 0,
            _ => true,
        }
    }
}

/// Name of an HTTP/2 error code (RFC 9113 section 7).
pub fn error_code_name(code: u32) -> &'static str {
    match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => "UNKNOWN_ERROR",
    }
}

/// Answers whether `data` (the first payload of a direction) starts an HTTP/2 connection:
/// the client preface (or a prefix of it), or — for the server side and mid-stream joins —
/// a plausible frame header followed by another one or ending exactly at the end of `data`.
pub fn probe_bytes(data: &[u8]) -> Probe {
    let n = data.len().min(PREFACE.len());
    if n > 0 && data.get(..n) == PREFACE.get(..n) {
        return if n == PREFACE.len() { Probe::Match } else { Probe::NeedMore };
    }
    let Some(h) = FrameHeader::parse(data) else {
        // Not enough for a frame header: reject unless every byte so far could be one.
        return if data.is_empty() || data.first() == Some(&0) { Probe::NeedMore } else { Probe::NotThis };
    };
    if !h.is_plausible(1 << 16) {
        return Probe::NotThis;
    }
    let next = FRAME_HEADER_LEN + h.length as usize;
    if next == data.len() {
        return Probe::Match;
    }
    match data.get(next..).and_then(FrameHeader::parse) {
        Some(h2) if h2.is_plausible(MAX_FRAME_LEN) => Probe::Match,
        Some(_) => Probe::NotThis,
        None => Probe::NeedMore,
    }
}

/// Finds the first offset in `buf` where two plausible frame headers chain (the first frame
/// no longer than `max_first`), for resynchronisation. `None`: no confirmed boundary yet.
pub fn find_frame_boundary(buf: &[u8], max_first: u32) -> Option<usize> {
    let mut off = 0;
    while off + FRAME_HEADER_LEN <= buf.len() {
        if let Some(h) = buf.get(off..).and_then(FrameHeader::parse)
            && h.is_plausible(max_first)
        {
            let next = off + FRAME_HEADER_LEN + h.length as usize;
            // A candidate whose second header is not there yet is passed over: a confirmed
            // chain later in the buffer is stronger evidence, and if there is none the
            // caller keeps the bytes and scans again with more.
            if let Some(h2) = buf.get(next..).and_then(FrameHeader::parse)
                && h2.is_plausible(MAX_FRAME_LEN)
            {
                return Some(off);
            }
        }
        off += 1;
    }
    None
}

/// Limits and options of an [`H2Connection`].
#[derive(Debug, Clone)]
pub struct H2Config {
    /// Streams tracked at once; new streams beyond it are not recorded (counted in
    /// [`H2Stats::streams_overflow`]) but their headers are still decoded.
    pub max_streams: usize,
    /// Largest non-DATA frame payload buffered; larger header frames lose the block
    /// (HPACK state of that direction falls back to partial), others are skipped.
    pub max_frame_buffer: usize,
    /// Largest header block (HEADERS/PUSH_PROMISE + CONTINUATION) assembled.
    pub max_header_block: usize,
    /// Bytes buffered while looking for a frame boundary (mid-stream or after a gap).
    pub max_sync_buffer: usize,
    /// HPACK limits.
    pub hpack: DecoderConfig,
    /// Trace / X-Request-ID / proxy / extra header names.
    pub trace: TraceConfig,
    /// HTTP endpoint = first N path segments (as HTTP/1).
    pub endpoint_segments: usize,
}

impl Default for H2Config {
    fn default() -> Self {
        H2Config {
            max_streams: 512,
            max_frame_buffer: 64 * 1024,
            max_header_block: 128 * 1024,
            max_sync_buffer: 128 * 1024,
            hpack: DecoderConfig::default(),
            trace: TraceConfig::default(),
            endpoint_segments: 2,
        }
    }
}

impl H2Config {
    /// Takes the trace and endpoint settings of an engine configuration.
    pub fn from_l7(cfg: &L7Config) -> Self {
        H2Config { trace: cfg.trace.clone(), endpoint_segments: cfg.http_endpoint_segments, ..Default::default() }
    }
}

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct H2Stats {
    /// Frames parsed (both directions).
    pub frames: u64,
    /// DATA payload bytes (without padding).
    pub data_bytes: u64,
    /// Header blocks decoded.
    pub header_blocks: u64,
    /// HPACK errors (each desynchronises that direction's table).
    pub hpack_errors: u64,
    /// Header blocks lost without decoding (oversize, broken CONTINUATION sequence, gap).
    pub lost_header_blocks: u64,
    /// Header fields that referenced an unknown dynamic-table entry.
    pub unknown_fields: u64,
    /// Streams not recorded because `max_streams` were open.
    pub streams_overflow: u64,
    /// RST_STREAM frames.
    pub resets: u64,
    /// GOAWAY frames.
    pub goaways: u64,
    /// Frames that violate the protocol (bad padding, bad lengths, stray CONTINUATION...).
    pub protocol_errors: u64,
    /// Frames for streams not tracked (closed, never seen, or over the limit).
    pub orphan_frames: u64,
    /// Times a direction re-found the frame boundary (mid-stream start or after a gap).
    pub resyncs: u64,
    /// Bytes dropped while looking for a frame boundary.
    pub sync_discarded: u64,
    /// Messages dropped at connection close beyond the one `on_close` can return.
    pub dropped_at_close: u64,
}

/// The request an `Upgrade: h2c` handshake turned into stream 1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// Method of the HTTP/1.1 request.
    pub method: String,
    /// Request target.
    pub path: String,
    /// `Host` header.
    pub authority: Option<String>,
    /// Other headers (name, value), for content-type and trace headers.
    pub headers: Vec<(String, String)>,
    /// Time of the HTTP/1.1 request, µs.
    pub start_us: u64,
    /// The `HTTP2-Settings` header value (base64url SETTINGS payload), if any.
    pub http2_settings: Option<String>,
}

const C2S: usize = 0;
const S2C: usize = 1;

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::ClientToServer => C2S,
        Direction::ServerToClient => S2C,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rx {
    /// Client direction: `n` bytes of the preface matched.
    Preface(usize),
    /// Collecting a frame header.
    Header,
    /// Collecting the payload of a non-DATA frame.
    Buffered,
    /// DATA frame with PADDED: waiting for the pad-length byte.
    DataPad,
    /// DATA payload: data bytes then padding bytes still to come.
    Data { data_left: u32, pad_left: u32 },
    /// Skipping the rest of the current frame.
    Skip,
    /// Framing unknown: buffering until two plausible frame headers chain.
    Sync,
}

#[derive(Debug, Clone, Copy)]
struct BlockCtx {
    stream: u32,
    end_stream: bool,
    /// PUSH_PROMISE: the promised stream whose request this block is.
    promised: Option<u32>,
}

#[derive(Debug)]
struct DirState {
    rx: Rx,
    hdr: [u8; FRAME_HEADER_LEN],
    hdr_len: usize,
    cur: FrameHeader,
    /// Payload bytes of the current frame still to read.
    remaining: u32,
    payload: Vec<u8>,
    /// Header block under assembly (waiting for CONTINUATION).
    block_ctx: Option<BlockCtx>,
    block: Vec<u8>,
    block_dropped: bool,
    hpack: Decoder,
    /// SETTINGS_HEADER_TABLE_SIZE of each unacknowledged SETTINGS frame sent in this
    /// direction (None: the frame did not set it).
    pending_settings: VecDeque<Option<u32>>,
    sync_buf: Vec<u8>,
}

impl DirState {
    fn new(rx: Rx, hpack: Decoder) -> Self {
        DirState {
            rx,
            hdr: [0; FRAME_HEADER_LEN],
            hdr_len: 0,
            cur: FrameHeader::default(),
            remaining: 0,
            payload: Vec::new(),
            block_ctx: None,
            block: Vec::new(),
            block_dropped: false,
            hpack,
            pending_settings: VecDeque::new(),
            sync_buf: Vec::new(),
        }
    }
}

/// One side (request or response) of a stream.
#[derive(Debug, Default)]
struct Side {
    /// Collects trace ids and attributes while headers are decoded.
    msg: L7Message,
    /// Final (non-1xx) headers seen.
    headers_seen: bool,
    ended: bool,
    emitted: bool,
    start_us: u64,
    end_us: u64,
    method: Option<String>,
    path: Option<String>,
    authority: Option<String>,
    status: Option<u16>,
    grpc_ct: bool,
    tri_version: Option<String>,
    content_length: Option<u64>,
    data_bytes: u64,
    grpc: GrpcFramer,
    grpc_status: Option<u32>,
    grpc_message: Option<String>,
    unknown_fields: u32,
    /// RST_STREAM / GOAWAY that ended the stream (code, sent by client).
    reset: Option<(String, bool)>,
}

#[derive(Debug, Default)]
struct Stream {
    req: Side,
    resp: Side,
}

impl Stream {
    fn protocol(&self) -> L7Protocol {
        if self.req.tri_version.is_some() {
            L7Protocol::Triple
        } else if self.req.grpc_ct || self.resp.grpc_ct {
            L7Protocol::Grpc
        } else {
            L7Protocol::Http2
        }
    }
}

fn lossy(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

fn parse_num<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

fn apply_field(side: &mut Side, f: HeaderField<'_>, ex: &mut TraceExtractor<'_>) {
    match f.name {
        b":method" => side.method = Some(lossy(f.value)),
        b":path" => side.path = Some(lossy(f.value)),
        b":authority" | b"host" => side.authority = Some(lossy(f.value)),
        b":status" => side.status = parse_num(f.value),
        b"content-type" => side.grpc_ct = grpc::is_grpc_content_type(f.value),
        b"content-length" => side.content_length = parse_num(f.value),
        b"grpc-status" => side.grpc_status = parse_num(f.value),
        b"grpc-message" => side.grpc_message = Some(grpc::percent_decode(f.value)),
        b"tri-service-version" => side.tri_version = Some(lossy(f.value)),
        _ => {}
    }
    if f.name.first() != Some(&b':')
        && let Ok(name) = std::str::from_utf8(f.name)
    {
        ex.header(name, &String::from_utf8_lossy(f.value), &mut side.msg);
    }
}

/// Passive HTTP/2 connection state: both directions' framing and HPACK, and the streams.
///
/// ```
/// use deepflow_core::Direction;
/// use deepflow_protocols::l7::http2::{H2Config, H2Connection, PREFACE};
///
/// let mut conn = H2Connection::new(H2Config::default().into());
/// conn.feed_all(Direction::ClientToServer, PREFACE, 1);
/// // HEADERS, stream 1, END_STREAM|END_HEADERS: :method GET, :path /, :scheme http
/// conn.feed_all(Direction::ClientToServer, &[0, 0, 3, 1, 5, 0, 0, 0, 1, 0x82, 0x84, 0x86], 2);
/// let req = conn.pop_message().unwrap();
/// assert_eq!(req.request_type.as_deref(), Some("GET"));
/// assert_eq!(req.request_id, Some(1));
/// ```
#[derive(Debug)]
pub struct H2Connection {
    cfg: Arc<H2Config>,
    dirs: [DirState; 2],
    streams: HashMap<u32, Stream>,
    /// Highest stream id seen per parity (0 = even/server, 1 = odd/client).
    max_stream: [u32; 2],
    out: VecDeque<L7Message>,
    stats: H2Stats,
}

impl H2Connection {
    /// A connection seen from its start with prior knowledge (client sends the preface).
    pub fn new(cfg: Arc<H2Config>) -> Self {
        let hp = cfg.hpack;
        H2Connection {
            dirs: [DirState::new(Rx::Preface(0), Decoder::new(hp)), DirState::new(Rx::Header, Decoder::new(hp))],
            cfg,
            streams: HashMap::new(),
            max_stream: [0; 2],
            out: VecDeque::new(),
            stats: H2Stats::default(),
        }
    }

    /// A connection joined mid-stream: framing is searched for, HPACK tables are unknown.
    pub fn new_mid_stream(cfg: Arc<H2Config>) -> Self {
        let hp = cfg.hpack;
        let mut c = Self::new(cfg);
        c.dirs = [
            DirState::new(Rx::Sync, Decoder::new_mid_stream(hp)),
            DirState::new(Rx::Sync, Decoder::new_mid_stream(hp)),
        ];
        c
    }

    /// A connection upgraded from HTTP/1.1 (`Upgrade: h2c` answered by `101`): the client
    /// still sends the preface, the server starts with its SETTINGS frame, and stream 1 is
    /// the upgraded request (its request message is queued at once).
    pub fn after_upgrade(cfg: Arc<H2Config>, req: UpgradeRequest) -> Self {
        let mut c = Self::new(cfg);
        if let Some(s) = req.http2_settings.as_deref().and_then(base64url_decode) {
            // The client's SETTINGS apply to the server's encoder (our S2C decoder), as if
            // acknowledged by the 101.
            if let Some(sz) = settings_table_size(&s)
                && let Some(d) = c.dirs.get_mut(S2C)
            {
                d.hpack.set_settings_table_size(sz);
            }
        }
        let mut st = Stream::default();
        {
            let cfg = Arc::clone(&c.cfg);
            let mut ex = TraceExtractor::new(&cfg.trace);
            let r = &mut st.req;
            r.method = Some(req.method);
            r.path = Some(req.path);
            r.authority = req.authority;
            for (n, v) in &req.headers {
                let name = n.to_ascii_lowercase();
                if name == "host" {
                    continue;
                }
                apply_field(r, HeaderField { name: name.as_bytes(), value: v.as_bytes(), sensitive: false }, &mut ex);
            }
            r.headers_seen = true;
            r.ended = true;
            r.start_us = req.start_us;
            r.end_us = req.start_us;
        }
        c.streams.insert(1, st);
        c.max_stream = [0, 1];
        c.maybe_emit(1);
        c
    }

    /// Counters.
    pub fn stats(&self) -> H2Stats {
        let mut s = self.stats;
        s.unknown_fields = self.dirs.iter().map(|d| d.hpack.stats().unknown_fields).sum();
        s
    }

    /// HPACK decoder of a direction (for its counters and table state).
    pub fn hpack(&self, dir: Direction) -> Option<&Decoder> {
        self.dirs.get(dir_index(dir)).map(|d| &d.hpack)
    }

    /// Streams currently tracked.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Next queued message.
    pub fn pop_message(&mut self) -> Option<L7Message> {
        self.out.pop_front()
    }

    /// Messages queued.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Feeds bytes of one direction, stopping after the first frame that queued a message.
    /// Returns the bytes consumed (all of `data` unless a message was queued). Partial frames
    /// are kept internally, so the caller never has to re-send bytes.
    pub fn feed(&mut self, dir: Direction, data: &[u8], ts: u64) -> usize {
        let d = dir_index(dir);
        let mut pos = 0;
        let before = self.out.len();
        while pos < data.len() {
            let n = self.step(d, data.get(pos..).unwrap_or_default(), ts);
            pos += n.max(1);
            if self.out.len() > before {
                break;
            }
        }
        pos.min(data.len())
    }

    /// Feeds all of `data` (messages accumulate in the queue).
    pub fn feed_all(&mut self, dir: Direction, data: &[u8], ts: u64) {
        let d = dir_index(dir);
        let mut pos = 0;
        while pos < data.len() {
            let n = self.step(d, data.get(pos..).unwrap_or_default(), ts);
            pos += n.max(1);
        }
    }

    /// Bytes were lost in `dir`: drop partial frames, search for the next frame boundary and
    /// treat that direction's HPACK table as partially unknown.
    pub fn on_gap(&mut self, dir: Direction) {
        let d = dir_index(dir);
        if let Some(st) = self.dirs.get_mut(d) {
            if st.block_ctx.take().is_some() || st.rx == Rx::Buffered {
                self.stats.lost_header_blocks += u64::from(matches!(
                    st.cur.kind,
                    frame_type::HEADERS | frame_type::CONTINUATION | frame_type::PUSH_PROMISE
                ));
            }
            st.rx = Rx::Sync;
            st.hdr_len = 0;
            st.payload.clear();
            st.block.clear();
            st.block_dropped = false;
            st.sync_buf.clear();
            st.hpack.mark_lost();
        }
    }

    /// Flow end: queue what every open stream has (requests not yet emitted, responses with
    /// headers), oldest stream first.
    pub fn close(&mut self, ts: u64) {
        let mut ids: Vec<u32> = self.streams.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(s) = self.streams.get_mut(&id) {
                if s.req.headers_seen && !s.req.ended {
                    s.req.ended = true;
                    s.req.end_us = s.req.end_us.max(ts);
                }
                if s.resp.headers_seen && !s.resp.ended {
                    s.resp.ended = true;
                    s.resp.end_us = s.resp.end_us.max(ts);
                }
            }
            self.maybe_emit(id);
        }
        self.streams.clear();
    }

    // ---------------------------------------------------------------------------------
    // Framing
    // ---------------------------------------------------------------------------------

    /// Consumes a prefix of `data` (at least one byte when `data` is not empty).
    fn step(&mut self, d: usize, data: &[u8], ts: u64) -> usize {
        let Some(st) = self.dirs.get_mut(d) else { return data.len() };
        match st.rx {
            Rx::Preface(m) => {
                let want = PREFACE.get(m..).unwrap_or_default();
                let n = want.len().min(data.len());
                if data.get(..n) == want.get(..n) {
                    st.rx = if m + n == PREFACE.len() { Rx::Header } else { Rx::Preface(m + n) };
                    n
                } else {
                    // Not a preface after all: look for frames (mid-stream semantics).
                    self.stats.protocol_errors += 1;
                    st.rx = Rx::Sync;
                    st.hpack.mark_lost();
                    self.step(d, data, ts)
                }
            }
            Rx::Header => {
                let take = (FRAME_HEADER_LEN - st.hdr_len).min(data.len());
                if let (Some(dst), Some(src)) = (st.hdr.get_mut(st.hdr_len..st.hdr_len + take), data.get(..take)) {
                    dst.copy_from_slice(src);
                }
                st.hdr_len += take;
                if st.hdr_len == FRAME_HEADER_LEN {
                    st.hdr_len = 0;
                    let hdr = st.hdr;
                    if let Some(h) = FrameHeader::parse(&hdr) {
                        self.begin_frame(d, h, ts);
                    }
                }
                take
            }
            Rx::Buffered => {
                let take = (st.remaining as usize).min(data.len());
                st.payload.extend_from_slice(data.get(..take).unwrap_or_default());
                st.remaining -= take as u32;
                if st.remaining == 0 {
                    st.rx = Rx::Header;
                    let payload = std::mem::take(&mut st.payload);
                    let h = st.cur;
                    self.on_frame(d, h, &payload, ts);
                    if let Some(st) = self.dirs.get_mut(d) {
                        st.payload = payload;
                        st.payload.clear();
                        if st.payload.capacity() > 16 * 1024 {
                            st.payload = Vec::new();
                        }
                    }
                }
                take
            }
            Rx::Skip => {
                let take = (st.remaining as usize).min(data.len());
                st.remaining -= take as u32;
                if st.remaining == 0 {
                    st.rx = Rx::Header;
                }
                take
            }
            Rx::DataPad => {
                let Some(&pad) = data.first() else { return 0 };
                let h = st.cur;
                let rest = st.remaining - 1;
                if u32::from(pad) > rest {
                    self.stats.protocol_errors += 1;
                    st.remaining = rest;
                    st.rx = if rest == 0 { Rx::Header } else { Rx::Skip };
                    return 1;
                }
                st.rx = Rx::Data { data_left: rest - u32::from(pad), pad_left: u32::from(pad) };
                st.remaining = rest;
                if rest == 0 {
                    st.rx = Rx::Header;
                    self.end_data(d, h, ts);
                }
                1
            }
            Rx::Data { data_left, pad_left } => {
                let h = st.cur;
                let take_data = (data_left as usize).min(data.len());
                let take_pad = (pad_left as usize).min(data.len() - take_data);
                let (data_left, pad_left) = (data_left - take_data as u32, pad_left - take_pad as u32);
                st.rx = Rx::Data { data_left, pad_left };
                if take_data > 0 {
                    self.on_data(d, h.stream_id, data.get(..take_data).unwrap_or_default());
                }
                if data_left == 0 && pad_left == 0 {
                    if let Some(st) = self.dirs.get_mut(d) {
                        st.rx = Rx::Header;
                    }
                    self.end_data(d, h, ts);
                }
                take_data + take_pad
            }
            Rx::Sync => {
                let cap = self.cfg.max_sync_buffer.max(2 * FRAME_HEADER_LEN);
                st.sync_buf.extend_from_slice(data);
                match find_frame_boundary(&st.sync_buf, 1 << 15) {
                    Some(off) => {
                        let buf = std::mem::take(&mut st.sync_buf);
                        st.rx = Rx::Header;
                        st.hdr_len = 0;
                        self.stats.resyncs += 1;
                        self.stats.sync_discarded += off as u64;
                        // Replay the buffered bytes from the boundary.
                        let rest = buf.get(off..).unwrap_or_default();
                        let mut p = 0;
                        while p < rest.len() {
                            let n = self.step(d, rest.get(p..).unwrap_or_default(), ts);
                            p += n.max(1);
                        }
                    }
                    None => {
                        if st.sync_buf.len() > cap {
                            // Keep the tail that may hold the start of a frame.
                            let drop = st.sync_buf.len() - cap / 2;
                            st.sync_buf.drain(..drop);
                            self.stats.sync_discarded += drop as u64;
                        }
                    }
                }
                data.len()
            }
        }
    }

    fn begin_frame(&mut self, d: usize, h: FrameHeader, ts: u64) {
        self.stats.frames += 1;
        let max_buf = self.cfg.max_frame_buffer;
        let Some(st) = self.dirs.get_mut(d) else { return };
        st.cur = h;
        st.remaining = h.length;
        // A header block in progress must be followed by its CONTINUATION frames.
        if st.block_ctx.is_some()
            && (h.kind != frame_type::CONTINUATION || st.block_ctx.is_some_and(|b| b.stream != h.stream_id))
        {
            self.stats.protocol_errors += 1;
            self.stats.lost_header_blocks += 1;
            st.block_ctx = None;
            st.block.clear();
            st.block_dropped = false;
            st.hpack.mark_lost();
        }
        if h.kind == frame_type::CONTINUATION && st.block_ctx.is_none() {
            // Stray CONTINUATION (e.g. right after a mid-stream sync): its block is lost.
            self.stats.orphan_frames += 1;
            st.rx = if h.length == 0 { Rx::Header } else { Rx::Skip };
            if h.flags & flags::END_HEADERS != 0 {
                st.hpack.mark_lost();
            }
            return;
        }
        if h.kind == frame_type::DATA {
            st.rx = if h.flags & flags::PADDED != 0 {
                if h.length == 0 {
                    self.stats.protocol_errors += 1;
                    Rx::Header
                } else {
                    Rx::DataPad
                }
            } else {
                Rx::Data { data_left: h.length, pad_left: 0 }
            };
            if h.length == 0 {
                st.rx = Rx::Header;
                self.end_data(d, h, ts);
            }
            return;
        }
        if h.kind > frame_type::CONTINUATION {
            // Unknown frame types are ignored (RFC 9113 section 4.1).
            st.rx = if h.length == 0 { Rx::Header } else { Rx::Skip };
            return;
        }
        if h.length as usize > max_buf {
            let is_block = matches!(h.kind, frame_type::HEADERS | frame_type::CONTINUATION | frame_type::PUSH_PROMISE);
            if is_block {
                // Cannot decode it: the HPACK state of this direction is lost from here.
                self.stats.lost_header_blocks += 1;
                st.block_ctx = None;
                st.block.clear();
                st.hpack.mark_lost();
                if h.kind == frame_type::HEADERS
                    && h.flags & flags::END_STREAM != 0
                    && h.flags & flags::END_HEADERS != 0
                {
                    self.end_side(d, h.stream_id, ts);
                }
            } else {
                self.stats.protocol_errors += 1;
            }
            if let Some(st) = self.dirs.get_mut(d) {
                st.rx = Rx::Skip;
            }
            return;
        }
        if h.length == 0 {
            st.rx = Rx::Header;
            self.on_frame(d, h, &[], ts);
        } else {
            st.payload.clear();
            st.rx = Rx::Buffered;
        }
    }

    fn on_data(&mut self, d: usize, sid: u32, bytes: &[u8]) {
        self.stats.data_bytes += bytes.len() as u64;
        let Some(s) = self.streams.get_mut(&sid) else { return };
        let side = if is_request_side(d, sid) { &mut s.req } else { &mut s.resp };
        side.data_bytes += bytes.len() as u64;
        side.grpc.feed(bytes);
    }

    fn end_data(&mut self, d: usize, h: FrameHeader, ts: u64) {
        if !self.streams.contains_key(&h.stream_id) {
            self.stats.orphan_frames += 1;
        }
        if h.flags & flags::END_STREAM != 0 {
            self.end_side(d, h.stream_id, ts);
        }
    }

    fn end_side(&mut self, d: usize, sid: u32, ts: u64) {
        let Some(s) = self.streams.get_mut(&sid) else { return };
        let side = if is_request_side(d, sid) { &mut s.req } else { &mut s.resp };
        if !side.ended {
            side.ended = true;
            side.end_us = ts;
        }
        self.maybe_emit(sid);
    }

    fn on_frame(&mut self, d: usize, h: FrameHeader, p: &[u8], ts: u64) {
        use frame_type::*;
        match h.kind {
            HEADERS => {
                let Some(frag) = strip_padding(h, p, if h.flags & flags::PRIORITY != 0 { 5 } else { 0 }) else {
                    self.stats.protocol_errors += 1;
                    return;
                };
                let ctx =
                    BlockCtx { stream: h.stream_id, end_stream: h.flags & flags::END_STREAM != 0, promised: None };
                self.block_fragment(d, ctx, frag, h.flags & flags::END_HEADERS != 0, ts);
            }
            CONTINUATION => {
                let Some(ctx) = self.dirs.get(d).and_then(|s| s.block_ctx) else { return };
                self.block_fragment(d, ctx, p, h.flags & flags::END_HEADERS != 0, ts);
            }
            PUSH_PROMISE => {
                let Some(rest) = strip_padding(h, p, 0) else {
                    self.stats.protocol_errors += 1;
                    return;
                };
                let (Some(id), Some(frag)) = (rest.get(..4), rest.get(4..)) else {
                    self.stats.protocol_errors += 1;
                    return;
                };
                let promised = be32(id, 0).unwrap_or(0) & 0x7fff_ffff;
                let ctx = BlockCtx { stream: h.stream_id, end_stream: false, promised: Some(promised) };
                self.block_fragment(d, ctx, frag, h.flags & flags::END_HEADERS != 0, ts);
            }
            SETTINGS => self.on_settings(d, h, p),
            RST_STREAM => {
                self.stats.resets += 1;
                let code = be32(p, 0).unwrap_or(0);
                self.reset_stream(h.stream_id, code, d == C2S, "RST_STREAM", ts);
            }
            GOAWAY => {
                self.stats.goaways += 1;
                let (Some(l), Some(c)) = (p.get(..4), p.get(4..8)) else {
                    self.stats.protocol_errors += 1;
                    return;
                };
                let last = be32(l, 0).unwrap_or(0) & 0x7fff_ffff;
                let code = be32(c, 0).unwrap_or(0);
                // Streams the receiver initiated above `last` were not processed.
                let receiver_odd = d == S2C;
                let mut ids: Vec<u32> =
                    self.streams.keys().copied().filter(|&id| id > last && (id % 2 == 1) == receiver_odd).collect();
                ids.sort_unstable();
                for id in ids {
                    self.reset_stream(id, code, d == C2S, "GOAWAY", ts);
                }
            }
            PRIORITY if p.len() != 5 => self.stats.protocol_errors += 1,
            PING if p.len() != 8 => self.stats.protocol_errors += 1,
            WINDOW_UPDATE if p.len() != 4 => self.stats.protocol_errors += 1,
            _ => {}
        }
    }

    fn on_settings(&mut self, d: usize, h: FrameHeader, p: &[u8]) {
        let other = 1 - d;
        if h.flags & flags::ACK != 0 {
            // Acknowledges the oldest SETTINGS of the other direction: its table size now
            // binds the encoder of this direction.
            let pending = self.dirs.get_mut(other).and_then(|s| s.pending_settings.pop_front());
            if let Some(Some(sz)) = pending
                && let Some(st) = self.dirs.get_mut(d)
            {
                st.hpack.set_settings_table_size(sz);
            }
            return;
        }
        if !p.len().is_multiple_of(6) {
            self.stats.protocol_errors += 1;
        }
        let sz = settings_table_size(p);
        if let Some(st) = self.dirs.get_mut(d) {
            if st.pending_settings.len() >= 16 {
                st.pending_settings.pop_front();
            }
            st.pending_settings.push_back(sz);
        }
    }

    fn block_fragment(&mut self, d: usize, ctx: BlockCtx, frag: &[u8], end: bool, ts: u64) {
        let max = self.cfg.max_header_block;
        let Some(st) = self.dirs.get_mut(d) else { return };
        if st.block_ctx.is_none() {
            st.block.clear();
            st.block_dropped = false;
            st.block_ctx = Some(ctx);
        }
        if !st.block_dropped {
            if st.block.len() + frag.len() > max {
                st.block_dropped = true;
                st.block.clear();
            } else if end && st.block.is_empty() {
                // Single-frame block: decode straight from the frame payload.
                st.block_ctx = None;
                self.on_header_block(d, ctx, frag, ts);
                return;
            } else {
                st.block.extend_from_slice(frag);
            }
        }
        if !end {
            return;
        }
        st.block_ctx = None;
        if st.block_dropped {
            st.block_dropped = false;
            st.hpack.mark_lost();
            self.stats.lost_header_blocks += 1;
            if ctx.end_stream {
                self.end_side(d, ctx.stream, ts);
            }
            return;
        }
        let block = std::mem::take(&mut st.block);
        self.on_header_block(d, ctx, &block, ts);
        if let Some(st) = self.dirs.get_mut(d) {
            st.block = block;
            st.block.clear();
        }
    }

    // ---------------------------------------------------------------------------------
    // Streams
    // ---------------------------------------------------------------------------------

    fn on_header_block(&mut self, d: usize, ctx: BlockCtx, block: &[u8], ts: u64) {
        self.stats.header_blocks += 1;
        let (sid, request) = match ctx.promised {
            Some(p) => (p, true),
            None => (ctx.stream, is_request_side(d, ctx.stream)),
        };
        let parity = (sid % 2) as usize;
        let known = self.streams.contains_key(&sid);
        let mut track = known;
        if !known {
            let fresh = self.max_stream.get(parity).is_some_and(|&m| sid > m);
            let plausible_new = request || d == S2C;
            if fresh && plausible_new {
                if self.streams.len() >= self.cfg.max_streams {
                    self.stats.streams_overflow += 1;
                } else {
                    track = true;
                }
            } else {
                self.stats.orphan_frames += 1;
            }
            if fresh && let Some(m) = self.max_stream.get_mut(parity) {
                *m = sid;
            }
        }
        let Self { dirs, streams, cfg, stats, .. } = self;
        let Some(st) = dirs.get_mut(d) else { return };
        if !track {
            // Keep the HPACK state in sync even for streams we do not record.
            if st.hpack.decode_block(block, |_| {}).is_err() {
                stats.hpack_errors += 1;
            }
            return;
        }
        let stream = streams.entry(sid).or_default();
        let side = if request { &mut stream.req } else { &mut stream.resp };
        let was_seen = side.headers_seen;
        let prev_status = side.status;
        let mut ex = TraceExtractor::new(&cfg.trace);
        let res = st.hpack.decode_block(block, |f| apply_field(side, f, &mut ex));
        match res {
            Ok(sum) => side.unknown_fields += sum.unknown,
            Err(_) => stats.hpack_errors += 1,
        }
        if !was_seen {
            // 1xx responses are interim: wait for the final headers.
            if !request && side.status.is_some_and(|s| (100..200).contains(&s)) {
                side.status = prev_status;
            } else {
                side.headers_seen = true;
                side.start_us = ts;
                side.end_us = ts;
            }
        }
        if ctx.promised.is_some() {
            // A pushed request has no body.
            side.ended = true;
        }
        if ctx.end_stream && !side.ended {
            side.ended = true;
            side.end_us = ts;
        }
        self.maybe_emit(sid);
        if !request && let Some(s) = self.streams.get(&sid) {
            // The server answered: a request still open (streaming upload) is emitted now.
            if s.resp.headers_seen && !s.req.emitted && s.req.headers_seen && !s.req.ended {
                self.emit_request(sid, ts);
            }
        }
    }

    fn reset_stream(&mut self, sid: u32, code: u32, by_client: bool, what: &str, ts: u64) {
        let Some(s) = self.streams.get_mut(&sid) else {
            self.stats.orphan_frames += 1;
            return;
        };
        if s.resp.emitted || (s.resp.ended && code == 0) {
            // The response is complete; a late reset (e.g. NO_ERROR to stop an upload)
            // changes nothing.
            self.maybe_emit(sid);
            self.streams.remove(&sid);
            return;
        }
        s.resp.reset = Some((format!("{what} {}", error_code_name(code)), by_client));
        if !s.req.ended {
            s.req.ended = true;
            s.req.end_us = ts;
        }
        s.resp.ended = true;
        s.resp.end_us = ts;
        if s.resp.start_us == 0 {
            s.resp.start_us = ts;
        }
        self.maybe_emit(sid);
        self.streams.remove(&sid);
    }

    fn emit_request(&mut self, sid: u32, ts: u64) {
        let cfg = Arc::clone(&self.cfg);
        let Some(s) = self.streams.get_mut(&sid) else { return };
        if s.req.emitted || !s.req.headers_seen {
            return;
        }
        let proto = s.protocol();
        let r = &mut s.req;
        r.emitted = true;
        if r.end_us == 0 {
            r.end_us = ts;
        }
        let mut m = std::mem::take(&mut r.msg);
        m.kind = Some(MessageKind::Request);
        m.protocol = proto;
        m.request_id = Some(sid);
        m.request_type = r.method.clone();
        m.request_domain = r.authority.clone();
        m.start_us = r.start_us;
        m.end_us = r.end_us;
        let path = r.path.clone().unwrap_or_default();
        match proto {
            L7Protocol::Grpc => {
                m.version = Some("2".into());
                m.request_resource = grpc::service_of_path(&path).map(str::to_string);
                if let Some(svc) = &m.request_resource {
                    m.attr("rpc_service", svc.clone());
                }
                m.endpoint = r.path.clone();
                m.length = (r.grpc.messages > 0).then_some(r.grpc.message_bytes);
            }
            _ => {
                m.version = Some(r.tri_version.clone().unwrap_or_else(|| "2".into()));
                if proto == L7Protocol::Triple {
                    m.request_type = Some("POST".into());
                }
                m.endpoint = r.path.as_deref().and_then(|p| http_endpoint(p, cfg.endpoint_segments));
                m.request_resource = r.path.clone();
                m.length = r.content_length.or((r.data_bytes > 0).then_some(r.data_bytes));
            }
        }
        if r.unknown_fields > 0 {
            m.attr("http2_unknown_headers", r.unknown_fields.to_string());
        }
        self.out.push_back(m);
    }

    fn emit_response(&mut self, sid: u32) {
        let Some(s) = self.streams.get_mut(&sid) else { return };
        if s.resp.emitted {
            return;
        }
        let proto = s.protocol();
        let version = s.req.tri_version.clone().unwrap_or_else(|| "2".into());
        let r = &mut s.resp;
        r.emitted = true;
        let mut m = std::mem::take(&mut r.msg);
        m.kind = Some(MessageKind::Response);
        m.protocol = proto;
        m.version = Some(version);
        m.request_id = Some(sid);
        m.start_us = r.start_us;
        m.end_us = r.end_us;
        let grpc_like = proto == L7Protocol::Grpc || r.grpc_status.is_some();
        if let (true, Some(gs)) = (grpc_like, r.grpc_status) {
            m.response_code = i32::try_from(gs).ok();
            let st = grpc::grpc_status(gs);
            m.response_status = Some(st);
            if st != ResponseStatus::Ok {
                m.response_exception = r
                    .grpc_message
                    .clone()
                    .filter(|s| !s.is_empty())
                    .or_else(|| Some(grpc::grpc_status_name(gs).to_string()));
            }
        } else if let Some(code) = r.status {
            m.response_code = Some(i32::from(code));
            m.response_status = Some(http_status(code));
        } else if r.reset.is_none() {
            m.response_status = Some(ResponseStatus::Ok);
        }
        if let Some((what, by_client)) = r.reset.take() {
            let bad = m.response_status.is_none() || m.response_status == Some(ResponseStatus::Ok);
            if bad {
                m.response_status =
                    Some(if by_client { ResponseStatus::ClientError } else { ResponseStatus::ServerError });
            }
            if m.response_exception.is_none() {
                m.response_exception = Some(what);
            }
        }
        m.length = if proto == L7Protocol::Grpc {
            (r.grpc.messages > 0).then_some(r.grpc.message_bytes)
        } else {
            r.content_length.or((r.data_bytes > 0).then_some(r.data_bytes))
        };
        if r.unknown_fields > 0 {
            m.attr("http2_unknown_headers", r.unknown_fields.to_string());
        }
        self.out.push_back(m);
    }

    /// Emits what a stream has completed, request always before its response; forgets the
    /// stream once both are out.
    fn maybe_emit(&mut self, sid: u32) {
        let Some(s) = self.streams.get(&sid) else { return };
        let (req_ready, resp_ready) =
            (s.req.headers_seen && s.req.ended && !s.req.emitted, s.resp.ended && !s.resp.emitted);
        let ts = s.resp.end_us.max(s.req.end_us);
        if req_ready || (resp_ready && s.req.headers_seen && !s.req.emitted) {
            self.emit_request(sid, ts);
        }
        if resp_ready {
            self.emit_response(sid);
        }
        if let Some(s) = self.streams.get(&sid)
            && s.resp.emitted
            && (s.req.emitted || !s.req.headers_seen)
        {
            self.streams.remove(&sid);
        }
    }
}

/// Request side of stream `sid` for bytes travelling in direction `d`: client-initiated
/// (odd) streams carry requests client → server; server-pushed (even) streams carry only
/// responses after their PUSH_PROMISE.
fn is_request_side(d: usize, sid: u32) -> bool {
    d == C2S && sid % 2 == 1
}

/// Big-endian u32 at `at`.
fn be32(p: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = p.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// Removes the pad-length byte, the padding and `skip` more leading bytes (HEADERS priority
/// fields). `None` when the padding is larger than the payload.
fn strip_padding(h: FrameHeader, p: &[u8], skip: usize) -> Option<&[u8]> {
    let (start, pad) = if h.flags & flags::PADDED != 0 { (1usize, usize::from(*p.first()?)) } else { (0, 0) };
    let end = p.len().checked_sub(pad)?;
    p.get(start + skip..end)
}

/// The SETTINGS_HEADER_TABLE_SIZE value of a SETTINGS payload (last one wins).
fn settings_table_size(p: &[u8]) -> Option<u32> {
    let mut v = None;
    for e in p.chunks_exact(6) {
        if let [a, b, c0, c1, c2, c3] = *e
            && u16::from_be_bytes([a, b]) == SETTINGS_HEADER_TABLE_SIZE
        {
            v = Some(u32::from_be_bytes([c0, c1, c2, c3]));
        }
    }
    v
}

/// Decodes unpadded base64url (the `HTTP2-Settings` header).
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim().trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// -----------------------------------------------------------------------------------------
// Engine adapter
// -----------------------------------------------------------------------------------------

/// The HTTP/2 (and gRPC) parser registered with the engine. Emits `http2`, `grpc` or
/// `triple` messages, paired by stream id.
#[derive(Debug)]
pub struct Http2Parser {
    cfg: Arc<H2Config>,
    conn: Option<Box<H2Connection>>,
}

impl Http2Parser {
    /// The prototype, configured from the engine configuration.
    pub fn new(cfg: &L7Config) -> Self {
        Http2Parser { cfg: Arc::new(H2Config::from_l7(cfg)), conn: None }
    }

    /// A prototype with explicit HTTP/2 limits.
    pub fn with_config(cfg: H2Config) -> Self {
        Http2Parser { cfg: Arc::new(cfg), conn: None }
    }

    /// A per-flow parser continuing an HTTP/1.1 connection upgraded with `Upgrade: h2c`
    /// (see [`H2Connection::after_upgrade`]).
    pub fn after_upgrade(cfg: &L7Config, req: UpgradeRequest) -> Self {
        let cfg = Arc::new(H2Config::from_l7(cfg));
        let conn = H2Connection::after_upgrade(Arc::clone(&cfg), req);
        Http2Parser { cfg, conn: Some(Box::new(conn)) }
    }

    /// The connection state (after the first `parse`).
    pub fn connection(&self) -> Option<&H2Connection> {
        self.conn.as_deref()
    }

    fn conn_for(&mut self, data: &[u8], dir: Direction) -> &mut H2Connection {
        let cfg = &self.cfg;
        self.conn.get_or_insert_with(|| {
            // Seen from the start when the client's first bytes are the preface (or the
            // server's first bytes are frames and the client has not spoken yet).
            let from_start = match dir {
                Direction::ClientToServer => data.starts_with(PREFACE),
                Direction::ServerToClient => false,
            };
            Box::new(if from_start {
                H2Connection::new(Arc::clone(cfg))
            } else {
                H2Connection::new_mid_stream(Arc::clone(cfg))
            })
        })
    }
}

impl L7Parser for Http2Parser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Http2
    }

    fn port_hint(&self, _port: u16) -> bool {
        false
    }

    fn probe(&self, data: &[u8], _dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_bytes(data)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(Http2Parser { cfg: Arc::clone(&self.cfg), conn: None })
    }

    fn pairing(&self) -> Pairing {
        Pairing::ById
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        let conn = self.conn_for(data, ctx.dir);
        // Always make progress on the input, even while handing out queued messages (one
        // frame can complete several: a reset answering a pending request, a GOAWAY).
        let n = if data.is_empty() { 0 } else { conn.feed(ctx.dir, data, ctx.ts_us) };
        match conn.pop_message() {
            Some(m) => ParseOutcome::Message(Box::new(m), n),
            None if n > 0 => ParseOutcome::Skip(n),
            None => ParseOutcome::NeedMore(0),
        }
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(c) = self.conn.as_deref_mut() {
            c.on_gap(dir);
        }
    }

    fn on_close(&mut self, _dir: Direction, ctx: &mut ParseCtx<'_>) -> Option<L7Message> {
        let c = self.conn.as_deref_mut()?;
        // Idempotent: the engine calls this until it returns None, one message at a time.
        c.close(ctx.ts_us);
        c.pop_message()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use crate::l7::hpack::tests::{XorShift, encode_int, encode_literal, encode_str};
    use Direction::{ClientToServer as C, ServerToClient as S};

    pub(crate) fn frame(kind: u8, fl: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
        let h = FrameHeader { length: payload.len() as u32, kind, flags: fl, stream_id: sid, reserved: false };
        let mut v = h.encode().to_vec();
        v.extend_from_slice(payload);
        v
    }

    /// Literal with incremental indexing, indexed name.
    fn lit_idx_name(out: &mut Vec<u8>, name_idx: usize, value: &[u8], huff: bool) {
        encode_int(out, 0x40, 6, name_idx);
        encode_str(out, value, huff);
    }

    fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
        let mut p = Vec::new();
        for (id, v) in entries {
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&v.to_be_bytes());
        }
        frame(frame_type::SETTINGS, 0, 0, &p)
    }

    fn grpc_msg(body: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// A full h2c prior-knowledge conversation exercising every frame type.
    pub(crate) fn convo() -> Vec<(Direction, Vec<u8>)> {
        use flags::*;
        use frame_type::*;
        let mut v: Vec<(Direction, Vec<u8>)> = Vec::new();
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[(1, 4096), (3, 100)]));
        c.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0x0f, 0, 1]));
        v.push((C, c));
        let mut s = settings(&[(1, 8192), (4, 65535)]);
        s.extend(frame(SETTINGS, ACK, 0, &[]));
        v.push((S, s));
        // Stream 1: GET with indexed/literal/Huffman fields and trace headers.
        let mut b = vec![0x82, 0x86];
        lit_idx_name(&mut b, 4, b"/api/v1/users/7?x=1", false);
        lit_idx_name(&mut b, 1, b"example.com", true);
        encode_literal(&mut b, b"traceparent", TP.as_bytes(), true, true);
        encode_literal(&mut b, b"x-request-id", b"req-1", true, false);
        encode_int(&mut b, 0x00, 4, 58);
        encode_str(&mut b, b"curl/8.0", false);
        let mut c = frame(SETTINGS, ACK, 0, &[]);
        c.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &b));
        v.push((C, c));
        // Server: push promise for stream 2, response to 1 with padded DATA.
        let mut pp = vec![0, 0, 0, 2, 0x82, 0x86];
        lit_idx_name(&mut pp, 4, b"/style.css", true);
        lit_idx_name(&mut pp, 1, b"example.com", false);
        let mut s = frame(PUSH_PROMISE, END_HEADERS, 1, &pp);
        let mut b = vec![0x88];
        lit_idx_name(&mut b, 31, b"text/plain", true);
        lit_idx_name(&mut b, 28, b"5", false);
        encode_literal(&mut b, b"x-request-id", b"resp-1", false, false);
        s.extend(frame(HEADERS, END_HEADERS, 1, &b));
        s.extend(frame(DATA, END_STREAM | PADDED, 1, &[3, b'h', b'e', b'l', b'l', b'o', 0, 0, 0]));
        v.push((S, s));
        // Stream 3: gRPC unary, :authority from the dynamic table (index 64).
        let mut b = vec![0x83, 0x86];
        lit_idx_name(&mut b, 4, b"/helloworld.Greeter/SayHello", true);
        b.push(0x80 | 65); // :authority (the :path above pushed it from 64 to 65)
        lit_idx_name(&mut b, 31, b"application/grpc", false);
        encode_literal(&mut b, b"te", b"trailers", false, true);
        let mut c = frame(HEADERS, END_HEADERS, 3, &b);
        let mut body = grpc_msg(b"abc");
        body.extend(grpc_msg(b"de"));
        c.extend(frame(DATA, 0, 3, &body[..4]));
        c.extend(frame(DATA, END_STREAM | PADDED, 3, &[[2].as_slice(), &body[4..], &[0, 0]].concat()));
        v.push((C, c));
        let mut b = vec![0x88];
        let mut s = Vec::new();
        lit_idx_name(&mut b, 31, b"application/grpc", true);
        s.extend(frame(HEADERS, END_HEADERS, 3, &b));
        s.extend(frame(DATA, 0, 3, &grpc_msg(b"wxyz")));
        let mut t = Vec::new();
        encode_literal(&mut t, b"grpc-status", b"5", false, false);
        encode_literal(&mut t, b"grpc-message", b"not%20found", false, true);
        s.extend(frame(HEADERS, END_STREAM | END_HEADERS, 3, &t));
        // Pushed stream 2 response.
        s.extend(frame(HEADERS, END_STREAM | END_HEADERS, 2, &[0x88]));
        v.push((S, s));
        // Stream 5: padded+priority HEADERS split over two CONTINUATIONs.
        let mut b = vec![0x82, 0x86];
        lit_idx_name(&mut b, 4, b"/x/y/z", false);
        b.push(0x80 | 67); // :authority (table: path 62, ct 63, path 64, x-req 65, tp 66, auth 67)
        let mut hp = vec![4, 0, 0, 0, 0, 16];
        hp.extend_from_slice(&b[..3]);
        hp.extend_from_slice(&[0; 4]);
        let mut c = frame(HEADERS, END_STREAM | PADDED | flags::PRIORITY, 5, &hp);
        c.extend(frame(CONTINUATION, 0, 5, &b[3..6]));
        c.extend(frame(CONTINUATION, END_HEADERS, 5, &b[6..]));
        c.extend(frame(frame_type::PRIORITY, 0, 5, &[0, 0, 0, 0, 7]));
        // Stream 7: upload cancelled by the client.
        let mut b = vec![0x83, 0x86];
        lit_idx_name(&mut b, 4, b"/upload", false);
        c.extend(frame(HEADERS, END_HEADERS, 7, &b));
        c.extend(frame(DATA, 0, 7, b"partial"));
        c.extend(frame(RST_STREAM, 0, 7, &8u32.to_be_bytes()));
        c.extend(frame(PING, 0, 0, b"12345678"));
        v.push((C, c));
        let mut s = frame(HEADERS, END_STREAM | END_HEADERS, 5, &[0x8d]);
        s.extend(frame(PING, ACK, 0, b"12345678"));
        v.push((S, s));
        // Stream 9: never answered, refused by GOAWAY(last=7).
        let mut c = frame(HEADERS, END_STREAM | END_HEADERS, 9, &[0x82, 0x86, 0x84]);
        c.extend(frame(0xfa, 0x3, 0, b"unknown frame type"));
        v.push((C, c));
        let mut g = 7u32.to_be_bytes().to_vec();
        g.extend_from_slice(&0u32.to_be_bytes());
        g.extend_from_slice(b"bye");
        v.push((S, frame(GOAWAY, 0, 0, &g)));
        v
    }

    /// A comparable projection of a message.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct Proj(
        pub String,
        pub Option<u32>,
        pub L7Protocol,
        pub Option<String>,
        pub Option<String>,
        pub Option<String>,
        pub Option<String>,
        pub Option<i32>,
        pub Option<ResponseStatus>,
        pub Option<String>,
        pub Option<u64>,
        pub Option<String>,
        pub Option<String>,
        pub u64,
        pub u64,
    );

    pub(crate) fn proj(m: &L7Message) -> Proj {
        Proj(
            format!("{:?}", m.kind()),
            m.request_id,
            m.protocol,
            m.request_type.clone(),
            m.request_domain.clone(),
            m.request_resource.clone(),
            m.endpoint.clone(),
            m.response_code,
            m.response_status,
            m.response_exception.clone(),
            m.length,
            m.trace.trace_id.clone(),
            m.trace.x_request_id.clone(),
            m.start_us,
            m.end_us,
        )
    }

    fn run(conn: &mut H2Connection, segs: &[(Direction, Vec<u8>)], splits: &[Vec<usize>]) -> Vec<Proj> {
        let mut out = Vec::new();
        for (i, (d, bytes)) in segs.iter().enumerate() {
            let ts = 1000 * (i as u64 + 1);
            let mut last = 0;
            let cuts = splits.get(i).cloned().unwrap_or_default();
            for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
                let cut = cut.clamp(last, bytes.len());
                // Drive through `feed` like the engine adapter: repeat until consumed.
                let mut chunk = &bytes[last..cut];
                while !chunk.is_empty() {
                    let n = conn.feed(*d, chunk, ts);
                    chunk = &chunk[n..];
                    while let Some(m) = conn.pop_message() {
                        out.push(proj(&m));
                    }
                }
                last = cut;
            }
        }
        conn.close(99_000);
        while let Some(m) = conn.pop_message() {
            out.push(proj(&m));
        }
        out
    }

    fn fresh() -> H2Connection {
        H2Connection::new(Arc::new(H2Config::default()))
    }

    fn find<'a>(v: &'a [Proj], kind: &str, id: u32) -> &'a Proj {
        v.iter().find(|p| p.0 == kind && p.1 == Some(id)).unwrap_or_else(|| panic!("{kind} {id} missing in {v:#?}"))
    }

    #[test]
    fn conversation_fields() {
        let segs = convo();
        let mut conn = fresh();
        let msgs = run(&mut conn, &segs, &[]);
        let st = conn.stats();
        assert_eq!(st.hpack_errors, 0, "{st:?}");
        assert_eq!(st.protocol_errors, 0, "{st:?}");
        assert_eq!(st.unknown_fields, 0, "{st:?}");
        let r1 = find(&msgs, "Request", 1);
        assert_eq!(r1.2, L7Protocol::Http2);
        assert_eq!(r1.3.as_deref(), Some("GET"));
        assert_eq!(r1.4.as_deref(), Some("example.com"));
        assert_eq!(r1.5.as_deref(), Some("/api/v1/users/7?x=1"));
        assert_eq!(r1.6.as_deref(), Some("/api/v1"));
        assert_eq!(r1.11.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(r1.12.as_deref(), Some("req-1"));
        let p1 = find(&msgs, "Response", 1);
        assert_eq!((p1.7, p1.8, p1.10), (Some(200), Some(ResponseStatus::Ok), Some(5)));
        assert_eq!(p1.12.as_deref(), Some("resp-1"));
        let r2 = find(&msgs, "Request", 2);
        assert_eq!(r2.5.as_deref(), Some("/style.css"));
        assert_eq!(find(&msgs, "Response", 2).7, Some(200));
        let r3 = find(&msgs, "Request", 3);
        assert_eq!(r3.2, L7Protocol::Grpc);
        assert_eq!(r3.3.as_deref(), Some("POST"));
        assert_eq!(r3.4.as_deref(), Some("example.com"));
        assert_eq!(r3.5.as_deref(), Some("helloworld.Greeter"));
        assert_eq!(r3.6.as_deref(), Some("/helloworld.Greeter/SayHello"));
        assert_eq!(r3.10, Some(5));
        let p3 = find(&msgs, "Response", 3);
        assert_eq!(p3.2, L7Protocol::Grpc);
        assert_eq!((p3.7, p3.8), (Some(5), Some(ResponseStatus::ClientError)));
        assert_eq!(p3.9.as_deref(), Some("not found"));
        assert_eq!(p3.10, Some(4));
        let r5 = find(&msgs, "Request", 5);
        assert_eq!(
            (r5.4.as_deref(), r5.5.as_deref(), r5.6.as_deref()),
            (Some("example.com"), Some("/x/y/z"), Some("/x/y"))
        );
        let p5 = find(&msgs, "Response", 5);
        assert_eq!((p5.7, p5.8), (Some(404), Some(ResponseStatus::ClientError)));
        let p7 = find(&msgs, "Response", 7);
        assert_eq!(find(&msgs, "Request", 7).5.as_deref(), Some("/upload"));
        assert_eq!((p7.7, p7.8, p7.9.as_deref()), (None, Some(ResponseStatus::ClientError), Some("RST_STREAM CANCEL")));
        let p9 = find(&msgs, "Response", 9);
        assert_eq!((p9.8, p9.9.as_deref()), (Some(ResponseStatus::ServerError), Some("GOAWAY NO_ERROR")));
        assert_eq!(find(&msgs, "Request", 9).3.as_deref(), Some("GET"));
        assert_eq!(msgs.len(), 12, "{msgs:#?}");
        // Every response follows its request.
        for (i, m) in msgs.iter().enumerate() {
            if m.0 == "Response" {
                assert!(msgs[..i].iter().any(|r| r.0 == "Request" && r.1 == m.1), "{m:?}");
            }
        }
        assert_eq!(conn.open_streams(), 0);
    }

    #[test]
    fn split_at_every_offset() {
        let segs = convo();
        let base = run(&mut fresh(), &segs, &[]);
        for i in 0..segs.len() {
            for k in 0..=segs[i].1.len() {
                let mut splits = vec![Vec::new(); segs.len()];
                splits[i] = vec![k];
                assert_eq!(run(&mut fresh(), &segs, &splits), base, "segment {i} split at {k}");
            }
        }
        // Byte-at-a-time and random chunking.
        let splits: Vec<Vec<usize>> = segs.iter().map(|(_, b)| (1..b.len()).collect()).collect();
        assert_eq!(run(&mut fresh(), &segs, &splits), base);
        let mut rng = XorShift(77);
        for _ in 0..200 {
            let splits: Vec<Vec<usize>> = segs
                .iter()
                .map(|(_, b)| {
                    let mut v: Vec<usize> = (0..rng.below(6)).map(|_| rng.below(b.len() + 1)).collect();
                    v.sort_unstable();
                    v
                })
                .collect();
            assert_eq!(run(&mut fresh(), &segs, &splits), base);
        }
    }

    #[test]
    fn truncation_never_panics() {
        let segs = convo();
        let base = run(&mut fresh(), &segs, &[]);
        for i in 0..segs.len() {
            for k in 0..=segs[i].1.len() {
                let mut t: Vec<(Direction, Vec<u8>)> = segs[..i].to_vec();
                t.push((segs[i].0, segs[i].1[..k].to_vec()));
                let got = run(&mut fresh(), &t, &[]);
                // Only messages of the full run (possibly ended early by close) appear.
                for m in &got {
                    assert!(base.iter().any(|b| b.0 == m.0 && b.1 == m.1), "{m:?}");
                }
            }
        }
    }

    #[test]
    fn mid_stream_join() {
        let segs = convo();
        // Join at the gRPC stream (segment 3): framing is found, the :authority reference
        // into the unknown dynamic table is counted, the rest decodes.
        let mut conn = H2Connection::new_mid_stream(Arc::new(H2Config::default()));
        let msgs = run(&mut conn, &segs[3..], &[]);
        let r3 = find(&msgs, "Request", 3);
        assert_eq!(r3.2, L7Protocol::Grpc);
        assert_eq!(r3.4, None);
        assert_eq!(r3.6.as_deref(), Some("/helloworld.Greeter/SayHello"));
        let p3 = find(&msgs, "Response", 3);
        assert_eq!(p3.7, Some(5));
        assert!(conn.stats().unknown_fields >= 1);
        assert_eq!(conn.stats().hpack_errors, 0);
        // Joining in the middle of a frame: the garbage prefix is skipped.
        let mut conn = H2Connection::new_mid_stream(Arc::new(H2Config::default()));
        let mut segs2 = segs[3..].to_vec();
        segs2[0].1.drain(..5);
        let msgs = run(&mut conn, &segs2, &[]);
        assert!(msgs.iter().any(|m| m.0 == "Response" && m.1 == Some(5)));
        assert!(conn.stats().resyncs >= 1);
    }

    #[test]
    fn gap_recovers() {
        let segs = convo();
        let mut conn = fresh();
        run(&mut conn, &segs[..3], &[]);
        conn.on_gap(C);
        let msgs = run(&mut conn, &segs[3..], &[]);
        assert!(msgs.iter().any(|m| m.0 == "Response" && m.1 == Some(3) && m.7 == Some(5)));
    }

    #[test]
    fn upgrade_h2c() {
        let req = UpgradeRequest {
            method: "GET".into(),
            path: "/index.html".into(),
            authority: Some("h2c.example".into()),
            headers: vec![("X-Request-ID".into(), "up-1".into())],
            start_us: 10,
            http2_settings: Some("AAMAAABkAAQAAP__".into()),
        };
        let mut conn = H2Connection::after_upgrade(Arc::new(H2Config::default()), req);
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[]));
        let mut s = settings(&[]);
        s.extend(frame(frame_type::HEADERS, flags::END_STREAM | flags::END_HEADERS, 1, &[0x88]));
        let msgs = run(&mut conn, &[(S, s), (C, c)], &[]);
        let r = find(&msgs, "Request", 1);
        assert_eq!((r.3.as_deref(), r.4.as_deref(), r.12.as_deref()), (Some("GET"), Some("h2c.example"), Some("up-1")));
        assert_eq!(find(&msgs, "Response", 1).7, Some(200));
        assert_eq!(base64url_decode("AAMAAABkAAQAAP__").unwrap(), [0, 3, 0, 0, 0, 100, 0, 4, 0, 0, 255, 255]);
    }

    #[test]
    fn settings_table_size_applies_on_ack() {
        use flags::*;
        use frame_type::*;
        let mut conn = fresh();
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[]));
        conn.feed_all(C, &c, 1);
        // Server limits the client's encoder to 100 bytes; client acks, then must shrink.
        conn.feed_all(S, &settings(&[(1, 100)]), 2);
        assert_eq!(conn.hpack(C).unwrap().max_table_size(), 4096);
        conn.feed_all(C, &frame(SETTINGS, ACK, 0, &[]), 3);
        assert_eq!(conn.hpack(C).unwrap().max_table_size(), 100);
        // A size update above 100 is now a decoding error (counted, not fatal).
        conn.feed_all(C, &frame(HEADERS, END_STREAM | END_HEADERS, 1, &[0x3f, 0xe1, 0x1f, 0x82, 0x84, 0x86]), 4);
        assert_eq!(conn.stats().hpack_errors, 1);
        // Later streams still decode static fields.
        conn.feed_all(C, &frame(HEADERS, END_STREAM | END_HEADERS, 3, &[0x82, 0x84, 0x86]), 5);
        let mut got = Vec::new();
        while let Some(m) = conn.pop_message() {
            got.push((m.request_id, m.request_type));
        }
        assert!(got.contains(&(Some(3), Some("GET".into()))), "{got:?}");
    }

    #[test]
    fn stream_limit_counts_overflow() {
        let cfg = H2Config { max_streams: 2, ..Default::default() };
        let mut conn = H2Connection::new(Arc::new(cfg));
        conn.feed_all(C, PREFACE, 1);
        for sid in [1u32, 3, 5, 7] {
            conn.feed_all(C, &frame(frame_type::HEADERS, flags::END_HEADERS, sid, &[0x83, 0x84, 0x86]), 2);
        }
        assert_eq!(conn.open_streams(), 2);
        assert_eq!(conn.stats().streams_overflow, 2);
    }

    #[test]
    fn probe_detection() {
        assert_eq!(probe_bytes(PREFACE), Probe::Match);
        assert_eq!(probe_bytes(&PREFACE[..10]), Probe::NeedMore);
        assert_eq!(probe_bytes(b"GET / HTTP/1.1\r\n\r\n"), Probe::NotThis);
        assert_eq!(probe_bytes(&settings(&[(4, 65535)])), Probe::Match);
        let mut two = settings(&[]);
        two.extend(frame(frame_type::HEADERS, 5, 1, &[0x88]));
        assert_eq!(probe_bytes(&two), Probe::Match);
        assert_eq!(probe_bytes(&two[..12]), Probe::NeedMore);
        assert_eq!(probe_bytes(&[0x16, 3, 1, 0, 0x50, 1, 0, 0, 0x4c, 3, 3]), Probe::NotThis);
    }

    /// Fixed-seed fuzz: mutated conversations and random bytes through prior-knowledge and
    /// mid-stream connections; nothing may panic and memory stays bounded.
    #[test]
    fn fuzz_connection() {
        let segs = convo();
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        let cfg = Arc::new(H2Config { max_streams: 16, ..Default::default() });
        for i in 0..50_000u32 {
            let mut conn = if i % 3 == 0 {
                H2Connection::new_mid_stream(Arc::clone(&cfg))
            } else {
                H2Connection::new(Arc::clone(&cfg))
            };
            let start = rng.below(segs.len());
            let take = 1 + rng.below(3);
            for (d, bytes) in segs.iter().skip(start).take(take) {
                let mut b = bytes.clone();
                if i % 5 == 4 {
                    b = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                } else {
                    for _ in 0..1 + rng.below(3) {
                        let p = rng.below(b.len().max(1));
                        match rng.below(3) {
                            0 if !b.is_empty() => b[p] = rng.next() as u8,
                            1 => b.insert(p.min(b.len()), rng.next() as u8),
                            _ if !b.is_empty() => {
                                b.remove(p);
                            }
                            _ => {}
                        }
                    }
                }
                let cut = rng.below(b.len() + 1);
                conn.feed_all(*d, &b[..cut], 1);
                conn.feed_all(*d, &b[cut..], 2);
            }
            conn.close(3);
            let mut n = 0;
            while conn.pop_message().is_some() {
                n += 1;
            }
            assert!(n <= 64);
            assert!(conn.open_streams() <= 16);
        }
    }

    /// The whole conversation through the engine, split at every offset of one segment:
    /// detection by the preface, pairing by stream id, the same rows every time.
    #[test]
    fn engine_sessions() {
        use crate::{L7Config, L7Engine, L7FlowState};
        use deepflow_core::FlowInfo;
        use deepflow_core::record::{L7FlowLog, LogType};
        use std::net::{IpAddr, Ipv4Addr};
        let flow = FlowInfo {
            flow_id: 1,
            protocol: 6,
            client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            client_port: 40000,
            server_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            server_port: 50051,
            tunnel: Default::default(),
            start_time_us: 0,
        };
        let segs = convo();
        let rows_for = |split: Option<(usize, usize)>| -> Vec<L7FlowLog> {
            let mut engine = L7Engine::new(L7Config::default());
            let mut st = L7FlowState::default();
            let mut rows = Vec::new();
            for (i, (d, b)) in segs.iter().enumerate() {
                let ts = 1000 * (i as u64 + 1);
                match split {
                    Some((si, k)) if si == i => {
                        engine.on_payload(&mut st, &flow, *d, ts, &b[..k], &mut rows);
                        engine.on_payload(&mut st, &flow, *d, ts, &b[k..], &mut rows);
                    }
                    _ => engine.on_payload(&mut st, &flow, *d, ts, b, &mut rows),
                }
            }
            engine.on_flow_end(&mut st, &flow, 99_000, &mut rows);
            rows.sort_by_key(|r| r.request_id);
            rows
        };
        let rows = rows_for(None);
        let by_id = |id: u32| rows.iter().find(|r| r.request_id == Some(id)).unwrap();
        assert_eq!(rows.len(), 6, "{rows:#?}");
        let r1 = by_id(1);
        assert_eq!((r1.l7_protocol, r1.log_type), (L7Protocol::Http2, LogType::Session));
        assert_eq!(r1.version.as_deref(), Some("2"));
        assert_eq!(r1.endpoint.as_deref(), Some("/api/v1"));
        assert_eq!(r1.response_code, Some(200));
        assert_eq!(r1.x_request_id_0.as_deref(), Some("req-1"));
        assert_eq!(r1.x_request_id_1.as_deref(), Some("resp-1"));
        assert_eq!(r1.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(r1.rrt, Some(1000));
        let r3 = by_id(3);
        assert_eq!(r3.l7_protocol, L7Protocol::Grpc);
        assert_eq!(r3.request_resource.as_deref(), Some("helloworld.Greeter"));
        assert_eq!(r3.endpoint.as_deref(), Some("/helloworld.Greeter/SayHello"));
        assert_eq!((r3.response_code, r3.response_status), (Some(5), ResponseStatus::ClientError));
        assert_eq!(r3.response_exception.as_deref(), Some("not found"));
        assert_eq!((r3.request_length, r3.response_length), (Some(5), Some(4)));
        assert_eq!(by_id(7).response_exception.as_deref(), Some("RST_STREAM CANCEL"));
        assert_eq!(by_id(9).response_status, ResponseStatus::ServerError);
        for (i, (_, b)) in segs.iter().enumerate() {
            for k in 0..=b.len() {
                assert_eq!(rows_for(Some((i, k))), rows, "segment {i} split at {k}");
            }
        }
    }
}
