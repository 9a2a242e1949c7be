//! ActiveMQ OpenWire (`openwire`), tight and loose encodings with the marshalling cache.
//!
//! A command is `[size u32][data type u8][body]`. WireFormatInfo (magic `ActiveMQ`, version,
//! a marshalled property map) is always loose; once both sides sent theirs, the negotiated
//! `TightEncodingEnabled`/`CacheEnabled` apply. Tight bodies start with a boolean stream that
//! holds every null flag, boolean, string-ascii flag and long-size pair of the command in field
//! order; loose bodies write them inline. Decoded here: BaseCommand `commandId` and
//! `responseRequired`; Response* `correlationId`; ExceptionResponse/ConnectionError exception
//! class and message; the first ids and the destination of ProducerInfo, ConsumerInfo,
//! DestinationInfo, MessagePull, MessageDispatch, MessageAck and every ActiveMQ*Message
//! (destinations sent earlier by cache index are resolved from a per-direction cache);
//! BrokerInfo `brokerURL`. Fields follow L7_FIELDS.md "OpenWire": command type name →
//! `request_type`, min(WireFormatInfo versions) → `version`, broker URL → `request_domain`,
//! destination physical name → `request_resource`/`endpoint`, commandId (responses:
//! correlationId) → `request_id`, exception message → `response_exception` (client_error
//! from the client, server_error from the server). Commands without `responseRequired` are
//! one-way. Not decoded: message JMS correlation id and message properties (trace context).
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;

// ---------------------------------------------------------------------------------------------
// constants

const MAX_FRAME: usize = 100 * 1024 * 1024;
const MAGIC: &[u8; 8] = b"ActiveMQ";
const WIREFORMAT_INFO: u8 = 1;
const BROKER_INFO: u8 = 2;
const CONSUMER_INFO: u8 = 5;
const PRODUCER_INFO: u8 = 6;
const DESTINATION_INFO: u8 = 8;
const CONNECTION_ERROR: u8 = 16;
const MESSAGE_PULL: u8 = 20;
const MESSAGE_DISPATCH: u8 = 21;
const MESSAGE_ACK: u8 = 22;
const RESPONSE: u8 = 30;
const EXCEPTION_RESPONSE: u8 = 31;
/// Cache entries kept per direction (ActiveMQ's default cache size is 1024).
const MAX_CACHE: usize = 1024;

/// CommandTypes name of a data type.
pub fn type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        1 => "WireFormatInfo",
        2 => "BrokerInfo",
        3 => "ConnectionInfo",
        4 => "SessionInfo",
        5 => "ConsumerInfo",
        6 => "ProducerInfo",
        7 => "TransactionInfo",
        8 => "DestinationInfo",
        9 => "RemoveSubscriptionInfo",
        10 => "KeepAliveInfo",
        11 => "ShutdownInfo",
        12 => "RemoveInfo",
        14 => "ControlCommand",
        15 => "FlushCommand",
        16 => "ConnectionError",
        17 => "ConsumerControl",
        18 => "ConnectionControl",
        19 => "ProducerAck",
        20 => "MessagePull",
        21 => "MessageDispatch",
        22 => "MessageAck",
        23 => "ActiveMQMessage",
        24 => "ActiveMQBytesMessage",
        25 => "ActiveMQMapMessage",
        26 => "ActiveMQObjectMessage",
        27 => "ActiveMQStreamMessage",
        28 => "ActiveMQTextMessage",
        29 => "ActiveMQBlobMessage",
        30 => "Response",
        31 => "ExceptionResponse",
        32 => "DataResponse",
        33 => "DataArrayResponse",
        34 => "IntegerResponse",
        40 => "DiscoveryEvent",
        50 => "JournalTopicAck",
        52 => "JournalQueueAck",
        53 => "JournalTrace",
        54 => "JournalTransaction",
        55 => "DurableSubscriptionInfo",
        60 => "PartialCommand",
        61 => "LastPartialCommand",
        65 => "ReplayCommand",
        90 => "MessageDispatchNotification",
        91 => "NetworkBridgeFilter",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// readers

/// Tight boolean stream (LSB first).
struct Bits<'a> {
    b: &'a [u8],
    i: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.b.get(self.i / 8)?;
        let v = (byte >> (self.i % 8)) & 1 == 1;
        self.i += 1;
        Some(v)
    }
}

/// Reader over a command body in either encoding.
struct Rd<'a> {
    b: &'a [u8],
    pos: usize,
    /// Tight: the boolean stream; loose: `None`.
    bits: Option<Bits<'a>>,
    cache: bool,
}

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    /// A boolean: a bit (tight) or a byte (loose).
    fn boolean(&mut self) -> Option<bool> {
        match self.bits.as_mut() {
            Some(b) => b.bit(),
            None => Some(self.u8()? != 0),
        }
    }
    fn string(&mut self) -> Option<Option<String>> {
        if !self.boolean()? {
            return Some(None);
        }
        if let Some(b) = self.bits.as_mut() {
            b.bit()?; // ascii flag: both forms are a u16 length + bytes
        }
        let n = usize::try_from(self.i16()?).ok()?;
        Some(Some(String::from_utf8_lossy(self.take(n)?).into_owned()))
    }
    fn long(&mut self) -> Option<()> {
        let n = match self.bits.as_mut() {
            None => 8,
            Some(b) => match (b.bit()?, b.bit()?) {
                (false, false) => 0,
                (false, true) => 2,
                (true, false) => 4,
                (true, true) => 8,
            },
        };
        self.take(n).map(|_| ())
    }
    /// A cached object (`cache` on: new-or-index flag and index, then the nested object when
    /// new); returns the destination name it denotes, if any.
    fn cached(&mut self, cache: &mut HashMap<i16, String>) -> Option<Option<String>> {
        if !self.cache {
            return self.nested(0);
        }
        // tight: a bit says "new"; loose: a boolean byte
        let is_new = self.boolean()?;
        let idx = self.i16()?;
        if !is_new {
            return Some(cache.get(&idx).cloned());
        }
        let v = self.nested(0)?;
        if let Some(d) = &v {
            if cache.len() >= MAX_CACHE && !cache.contains_key(&idx) {
                cache.clear();
            }
            cache.insert(idx, d.clone());
        }
        Some(v)
    }
    /// A nested id or destination object; returns the destination's physical name.
    fn nested(&mut self, depth: u8) -> Option<Option<String>> {
        if depth > 4 || !self.boolean()? {
            return Some(None);
        }
        let t = self.u8()?;
        match t {
            100..=103 => return self.string(),
            120 | 124 => {
                self.string()?;
            }
            121 => {
                self.string()?;
                self.long()?;
            }
            122 | 123 => {
                self.string()?;
                self.long()?;
                self.long()?;
            }
            111 => {
                self.long()?;
                self.nested(depth + 1)?;
            }
            _ => return None, // not an id/destination: stop decoding this command
        }
        Some(None)
    }
}

/// Loose WireFormatInfo: (version, tight, cache) from the body after the type byte.
fn wireformat(b: &[u8]) -> Option<(i32, bool, bool)> {
    if b.get(..8)? != MAGIC {
        return None;
    }
    let mut r = Rd { b, pos: 8, bits: None, cache: false };
    let version = r.i32()?;
    let (mut tight, mut cache) = (false, false);
    if r.u8()? != 0 {
        let n = usize::try_from(r.i32()?).ok()?;
        let map = r.take(n.min(r.b.len().saturating_sub(r.pos)))?;
        let mut m = Rd { b: map, pos: 0, bits: None, cache: false };
        let count = m.i32()?;
        for _ in 0..count.clamp(0, 64) {
            let kl = usize::try_from(m.i16()?).ok()?;
            let k = m.take(kl)?;
            let t = m.u8()?;
            let v: Option<bool> = match t {
                0 => None,
                1 => Some(m.u8()? != 0),
                2 => m.take(1).map(|_| None)?,
                3 | 4 => m.take(2).map(|_| None)?,
                5 | 8 => m.take(4).map(|_| None)?,
                6 | 7 => m.take(8).map(|_| None)?,
                9 => {
                    let n = usize::try_from(m.i16()?).ok()?;
                    m.take(n).map(|_| None)?
                }
                10 | 13 => {
                    let n = usize::try_from(m.i32()?).ok()?;
                    m.take(n).map(|_| None)?
                }
                _ => break,
            };
            match (k, v) {
                (b"TightEncodingEnabled", Some(x)) => tight = x,
                (b"CacheEnabled", Some(x)) => cache = x,
                _ => {}
            }
        }
    }
    Some((version, tight, cache))
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start with a WireFormatInfo?
pub fn probe_frame(data: &[u8]) -> Probe {
    let want: [u8; 1] = [WIREFORMAT_INFO];
    let head = data.get(4..5);
    if head.is_some_and(|h| h != want) {
        return Probe::NotThis;
    }
    let n = data.len().min(13);
    if data.len() > 5 && data.get(5..n) != MAGIC.get(..n - 5) {
        return Probe::NotThis;
    }
    if data.len() < 13 { Probe::NeedMore } else { Probe::Match }
}

// ---------------------------------------------------------------------------------------------
// parser

#[derive(Default)]
struct Side {
    version: Option<i32>,
    tight: bool,
    cache: bool,
    /// Unmarshal cache: index → destination name.
    dests: HashMap<i16, String>,
    skip: usize,
}

/// The OpenWire parser.
pub struct OpenWireParser {
    partial_limit: usize,
    sides: [Side; 2],
    broker_url: Option<String>,
}

impl OpenWireParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        OpenWireParser {
            partial_limit: (cfg.max_buffered_bytes / 2).max(64),
            sides: Default::default(),
            broker_url: None,
        }
    }

    fn negotiated(&self) -> (bool, bool) {
        let [a, b] = &self.sides;
        if a.version.is_some() && b.version.is_some() {
            (a.tight && b.tight, a.cache && b.cache)
        } else {
            (false, false)
        }
    }

    fn command(&mut self, t: u8, body: &[u8], dir: Direction, total: usize) -> Result<L7Message, ParseErrorKind> {
        let m = ParseErrorKind::Malformed;
        let name = type_name(t).ok_or(m)?;
        let mut msg = L7Message::new(L7Protocol::OpenWire, MessageKind::OneWay);
        msg.request_type = Some(name.to_string());
        msg.length = Some(total as u64);
        msg.response_status = Some(ResponseStatus::Ok);
        let d = dir.index();
        if t == WIREFORMAT_INFO {
            let (v, tight, cache) = wireformat(body).ok_or(m)?;
            if let Some(s) = self.sides.get_mut(d) {
                s.version = Some(v);
                s.tight = tight;
                s.cache = cache;
            }
        } else {
            let (tight, cache) = self.negotiated();
            let (bits, start) = if tight {
                let mut r = Rd { b: body, pos: 0, bits: None, cache: false };
                let n = match r.u8().ok_or(m)? {
                    0xc0 => usize::from(r.u8().ok_or(m)?),
                    0x80 => usize::try_from(r.i16().ok_or(m)?).map_err(|_| m)?,
                    n => usize::from(n),
                };
                let b = r.take(n).ok_or(m)?;
                (Some(Bits { b, i: 0 }), r.pos)
            } else {
                (None, 0)
            };
            let mut r = Rd { b: body, pos: start, bits, cache };
            let mut cache_map = self.sides.get_mut(d).map(|s| std::mem::take(&mut s.dests)).unwrap_or_default();
            let _ = self.fields(t, &mut r, &mut cache_map, &mut msg, dir);
            if let Some(s) = self.sides.get_mut(d) {
                s.dests = cache_map;
            }
        }
        let version = self.sides.iter().filter_map(|s| s.version).min();
        msg.version = version.map(|v| v.to_string());
        msg.request_domain = self.broker_url.clone();
        Ok(msg)
    }

    /// Decodes the fields of `t` that are reported; stops silently at anything unexpected.
    fn fields(
        &mut self,
        t: u8,
        r: &mut Rd<'_>,
        cache: &mut HashMap<i16, String>,
        msg: &mut L7Message,
        dir: Direction,
    ) -> Option<()> {
        let command_id = r.i32()?;
        let response_required = r.boolean()?;
        msg.request_id = Some(command_id as u32);
        if response_required {
            msg.kind = Some(MessageKind::Request);
            msg.response_status = None;
        }
        let mut dest: Option<String> = None;
        match t {
            BROKER_INFO => {
                r.cached(cache)?;
                self.broker_url = r.string()?;
            }
            RESPONSE..=34 => {
                let corr = r.i32()?;
                msg.kind = Some(MessageKind::Response);
                msg.request_id = Some(corr as u32);
                msg.response_status = Some(ResponseStatus::Ok);
                if t == EXCEPTION_RESPONSE {
                    self.exception(r, msg, dir)?;
                }
            }
            CONNECTION_ERROR => self.exception(r, msg, dir)?,
            PRODUCER_INFO | DESTINATION_INFO | MESSAGE_PULL | MESSAGE_DISPATCH | 23..=29 => {
                r.cached(cache)?;
                dest = r.cached(cache)?;
            }
            CONSUMER_INFO => {
                r.cached(cache)?;
                r.boolean()?; // browser
                dest = r.cached(cache)?;
            }
            MESSAGE_ACK => dest = r.cached(cache)?,
            _ => {}
        }
        if let Some(d) = dest {
            msg.endpoint = Some(d.clone());
            msg.request_resource = Some(d);
        }
        Some(())
    }

    fn exception(&self, r: &mut Rd<'_>, msg: &mut L7Message, dir: Direction) -> Option<()> {
        msg.response_status = Some(match dir {
            Direction::ClientToServer => ResponseStatus::ClientError,
            Direction::ServerToClient => ResponseStatus::ServerError,
        });
        if !r.boolean()? {
            return Some(());
        }
        let class = r.string()?;
        let text = r.string()?;
        msg.response_exception = text.or(class);
        Some(())
    }
}

impl L7Parser for OpenWireParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::OpenWire
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 61616
    }

    fn probe(&self, data: &[u8], _dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_frame(data)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(OpenWireParser { partial_limit: self.partial_limit, sides: Default::default(), broker_url: None })
    }

    fn pairing(&self) -> Pairing {
        Pairing::ById
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        let d = ctx.dir.index();
        if let Some(s) = self.sides.get_mut(d)
            && s.skip > 0
        {
            let n = s.skip.min(data.len());
            s.skip -= n;
            return ParseOutcome::Skip(n);
        }
        let Some(size) = data.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_be_bytes) else {
            return ParseOutcome::NeedMore(4 - data.len());
        };
        let size = size as usize;
        if !(1..=MAX_FRAME).contains(&size) {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let total = size + 4;
        let need = total.min(self.partial_limit.max(5));
        if data.len() < need {
            return ParseOutcome::NeedMore(need - data.len());
        }
        let avail = total.min(data.len());
        let Some(&t) = data.get(4) else { return ParseOutcome::NeedMore(1) };
        match self.command(t, data.get(5..avail).unwrap_or_default(), ctx.dir, total) {
            Ok(msg) => {
                if let Some(s) = self.sides.get_mut(d) {
                    s.skip = total - avail;
                }
                ParseOutcome::message(msg, avail)
            }
            Err(e) => ParseOutcome::Error(e),
        }
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(s) = self.sides.get_mut(dir.index()) {
            s.skip = 0;
            s.dests.clear();
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::EmitMode;
    use crate::l7::kafka::testkit::*;
    use deepflow_core::record::{L7FlowLog, LogType};

    fn make(cfg: &L7Config) -> Box<dyn L7Parser> {
        Box::new(OpenWireParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "openwire", 61616, emit, segs)
    }

    /// Tight marshaller for the test commands: a boolean stream plus data bytes.
    #[derive(Default)]
    struct Tight {
        bits: Vec<bool>,
        data: Vec<u8>,
    }

    impl Tight {
        fn b(&mut self, v: bool) -> &mut Self {
            self.bits.push(v);
            self
        }
        fn i32(&mut self, v: i32) -> &mut Self {
            self.data.extend(v.to_be_bytes());
            self
        }
        fn s(&mut self, v: &str) -> &mut Self {
            self.b(true).b(true);
            self.data.extend((v.len() as i16).to_be_bytes());
            self.data.extend(v.as_bytes());
            self
        }
        fn long(&mut self, v: u16) -> &mut Self {
            if v == 0 {
                self.b(false).b(false)
            } else {
                self.b(false).b(true);
                self.data.extend(v.to_be_bytes());
                self
            }
        }
        fn cached_new(&mut self, idx: i16, t: u8) -> &mut Self {
            self.b(true);
            self.data.extend(idx.to_be_bytes());
            self.b(true);
            self.data.push(t);
            self
        }
        fn cached_ref(&mut self, idx: i16) -> &mut Self {
            self.b(false);
            self.data.extend(idx.to_be_bytes());
            self
        }
        fn frame(&self, t: u8) -> Vec<u8> {
            let mut bs = vec![0u8; self.bits.len().div_ceil(8)];
            for (i, &v) in self.bits.iter().enumerate() {
                if v {
                    bs[i / 8] |= 1 << (i % 8);
                }
            }
            let mut body = vec![t, bs.len() as u8];
            body.extend(bs);
            body.extend(&self.data);
            let mut v = (body.len() as u32).to_be_bytes().to_vec();
            v.extend(body);
            v
        }
    }

    fn wfi(version: i32) -> Vec<u8> {
        let mut map = 2i32.to_be_bytes().to_vec();
        for (k, v) in [("TightEncodingEnabled", 1u8), ("CacheEnabled", 1)] {
            map.extend((k.len() as i16).to_be_bytes());
            map.extend(k.as_bytes());
            map.extend([1, v]);
        }
        let mut body = vec![WIREFORMAT_INFO];
        body.extend(MAGIC);
        body.extend(version.to_be_bytes());
        body.push(1);
        body.extend((map.len() as i32).to_be_bytes());
        body.extend(map);
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend(body);
        v
    }

    fn exchange() -> Vec<(Direction, Vec<u8>)> {
        let broker = Tight::default()
            .i32(0)
            .b(false)
            .cached_new(0, 124)
            .s("ID:broker-1")
            .s("tcp://broker-1:61616")
            .frame(BROKER_INFO);
        let producer = Tight::default()
            .i32(3)
            .b(true)
            .cached_new(1, 123)
            .s("ID:conn-1")
            .long(1)
            .long(1)
            .cached_new(2, 100)
            .s("orders")
            .frame(PRODUCER_INFO);
        let resp = Tight::default().i32(0).b(false).i32(3).frame(RESPONSE);
        let text = Tight::default().i32(4).b(true).cached_ref(1).cached_ref(2).frame(28);
        let exc = Tight::default()
            .i32(0)
            .b(false)
            .i32(4)
            .b(true)
            .s("javax.jms.ResourceAllocationException")
            .s("Usage Manager memory limit reached")
            .frame(EXCEPTION_RESPONSE);
        let consumer = Tight::default()
            .i32(5)
            .b(false)
            .cached_new(3, 122)
            .s("ID:conn-1")
            .long(1)
            .long(1)
            .b(false)
            .cached_new(4, 101)
            .s("prices")
            .frame(CONSUMER_INFO);
        vec![
            (C2S, wfi(12)),
            (S2C, [wfi(11), broker].concat()),
            (C2S, producer),
            (S2C, resp),
            (C2S, [text, consumer].concat()),
            (S2C, exc),
        ]
    }

    #[test]
    fn sessions() {
        let rows = run(EmitMode::Sessions, &exchange());
        let names: Vec<_> = rows.iter().map(|r| r.request_type.clone().unwrap_or_default()).collect();
        assert_eq!(
            names,
            ["WireFormatInfo", "WireFormatInfo", "BrokerInfo", "ProducerInfo", "ConsumerInfo", "ActiveMQTextMessage"],
            "{rows:#?}"
        );
        assert_eq!(rows[2].request_domain.as_deref(), Some("tcp://broker-1:61616"));
        assert_eq!(rows[2].version.as_deref(), Some("11"));
        let r = &rows[3];
        assert_eq!(r.request_resource.as_deref(), Some("orders"));
        assert_eq!(r.request_id, Some(3));
        assert_eq!(r.response_status, ResponseStatus::Ok);
        assert_eq!(r.log_type, LogType::Session);
        assert_eq!(rows[4].request_resource.as_deref(), Some("prices"));
        assert_eq!(rows[4].log_type, LogType::Session);
        let r = &rows[5];
        assert_eq!(r.request_resource.as_deref(), Some("orders"));
        assert_eq!(r.response_status, ResponseStatus::ServerError);
        assert_eq!(r.response_exception.as_deref(), Some("Usage Manager memory limit reached"));
    }

    #[test]
    fn probe() {
        let f = flow(1);
        let p = OpenWireParser::new(&L7Config::default());
        assert_eq!(p.probe(&wfi(12), C2S, &f), Probe::Match);
        assert_eq!(p.probe(&wfi(12)[..7], C2S, &f), Probe::NeedMore);
        assert_eq!(p.probe(b"GET / HTTP/1.1\r\n", C2S, &f), Probe::NotThis);
    }

    #[test]
    fn splits() {
        check_splits(&make, "openwire", 61616, &exchange());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &exchange());
    }

    #[test]
    fn fuzz_50k() {
        fuzz(&make, "openwire", &exchange(), 50_000);
    }
}
