//! TLS handshakes (`tls`): record layer, ClientHello, ServerHello, Certificate, alerts.
//!
//! A *flight* is what one side sends before waiting for the other; each flight is one message:
//! * client: the flight ending with ClientHello is a request (`request_type` = names joined
//!   with `|`, SNI → `request_domain`/`request_resource`, ALPN → attribute `alpn`, version = the
//!   highest `supported_versions` entry or the legacy version); the flight ending with its
//!   ChangeCipherSpec is a request when the server has not sent ChangeCipherSpec yet (TLS 1.2
//!   full handshake), otherwise a one-way `session` with status `ok` (L7_FIELDS.md: "a trailing
//!   ChangeCipherSpec with no reply");
//! * server: a flight ends at ServerHelloDone, at its ChangeCipherSpec, at a HelloRetryRequest
//!   or at its first encrypted record; it is the response (`response_result` = names, version
//!   from `supported_versions`, attribute `cipher_suite`, certificate validity and CN);
//! * a plaintext Alert (other than close_notify) from the client is a `client_error` session,
//!   from the server a `server_error` response to the pending ClientHello (or a session).
//!
//! Handshake messages are reassembled across records and records across TCP segments.
//! Records after a side's ChangeCipherSpec and application data are counted
//! (`tls_encrypted_records`) and skipped without buffering.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::{L7Message, L7Parser, MessageKind, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;

const REC_HDR: usize = 5;
const MAX_RECORD: usize = (1 << 14) + 2048;
const MAX_HANDSHAKE: usize = 64 * 1024;

const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91, 0xC2, 0xA2, 0x11,
    0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// `1.0` .. `1.3` for TLS protocol versions; `None` for anything else.
pub fn version_name(v: u16) -> Option<&'static str> {
    match v {
        0x0301 => Some("1.0"),
        0x0302 => Some("1.1"),
        0x0303 => Some("1.2"),
        0x0304 => Some("1.3"),
        _ => None,
    }
}

/// IANA name of common cipher suites; others print as `0xNNNN`.
pub fn cipher_suite_name(cs: u16) -> std::borrow::Cow<'static, str> {
    std::borrow::Cow::Borrowed(match cs {
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0x1304 => "TLS_AES_128_CCM_SHA256",
        0x1305 => "TLS_AES_128_CCM_8_SHA256",
        0xc02b => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xc02c => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xc02f => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xc030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xcca8 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xcca9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0xccaa => "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xc009 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        0xc00a => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        0xc013 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        0xc014 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        0xc023 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        0xc024 => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
        0xc027 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        0xc028 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        0x009c => "TLS_RSA_WITH_AES_128_GCM_SHA256",
        0x009d => "TLS_RSA_WITH_AES_256_GCM_SHA384",
        0x009e => "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        0x009f => "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        0x002f => "TLS_RSA_WITH_AES_128_CBC_SHA",
        0x0035 => "TLS_RSA_WITH_AES_256_CBC_SHA",
        0x003c => "TLS_RSA_WITH_AES_128_CBC_SHA256",
        0x003d => "TLS_RSA_WITH_AES_256_CBC_SHA256",
        0x000a => "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        _ => return std::borrow::Cow::Owned(format!("0x{cs:04x}")),
    })
}

fn handshake_name(t: u8) -> &'static str {
    match t {
        0 => "HelloRequest",
        1 => "ClientHello",
        2 => "ServerHello",
        4 => "NewSessionTicket",
        5 => "EndOfEarlyData",
        8 => "EncryptedExtensions",
        11 => "Certificate",
        12 => "ServerKeyExchange",
        13 => "CertificateRequest",
        14 => "ServerHelloDone",
        15 => "CertificateVerify",
        16 => "ClientKeyExchange",
        20 => "Finished",
        22 => "CertificateStatus",
        24 => "KeyUpdate",
        _ => "UnknownHandshake",
    }
}

/// Name of a TLS alert description.
pub fn alert_name(d: u8) -> std::borrow::Cow<'static, str> {
    std::borrow::Cow::Borrowed(match d {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => return std::borrow::Cow::Owned(format!("alert_{d}")),
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be24(b: &[u8], at: usize) -> Option<usize> {
    Some((usize::from(*b.get(at)?) << 16) | (usize::from(*b.get(at + 1)?) << 8) | usize::from(*b.get(at + 2)?))
}

/// A cursor over a byte slice with checked reads.
struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        be16(self.take(2)?, 0)
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

#[derive(Default)]
struct DirState {
    /// Handshake bytes not yet forming a complete handshake message.
    hs: Vec<u8>,
    /// Names of the records/messages of the current flight.
    names: Vec<&'static str>,
    /// Message being built for the current flight.
    cur: Option<Box<L7Message>>,
    /// This side sent ChangeCipherSpec: its later records are encrypted.
    ccs: bool,
    /// Bytes of an encrypted record still to skip.
    skip: usize,
    /// This side's flight emitted by the current record.
    flight_end: bool,
}

/// The TLS parser.
pub struct TlsParser {
    _cfg: Arc<()>,
    dirs: [DirState; 2],
    /// A client flight is waiting for the server's.
    client_waiting: bool,
    /// ServerHello seen (server flights may end at their first encrypted record).
    server_hello: bool,
}

impl TlsParser {
    /// A prototype configured from `cfg`.
    pub fn new(_cfg: &L7Config) -> Self {
        TlsParser { _cfg: Arc::new(()), dirs: Default::default(), client_waiting: false, server_hello: false }
    }
}

fn cur(st: &mut DirState, kind: MessageKind) -> &mut L7Message {
    st.cur.get_or_insert_with(|| Box::new(L7Message::new(L7Protocol::Tls, kind)))
}

fn parse_client_hello(body: &[u8], msg: &mut L7Message) -> Option<()> {
    let mut r = Rd(body);
    let legacy = r.u16()?;
    r.take(32)?;
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression
    let mut version = legacy;
    if let Some(mut exts) = r.vec16().map(Rd) {
        while let (Some(t), Some(data)) = (exts.u16(), exts.vec16()) {
            let mut d = Rd(data);
            match t {
                0 => {
                    let mut list = Rd(d.vec16()?);
                    while let (Some(kind), Some(name)) = (list.u8(), list.vec16()) {
                        if kind == 0 {
                            let sni = String::from_utf8_lossy(name).into_owned();
                            msg.request_domain = Some(sni.clone());
                            msg.request_resource = Some(sni);
                            break;
                        }
                    }
                }
                16 => {
                    let mut list = Rd(d.vec16()?);
                    let mut alpn = Vec::new();
                    while let Some(p) = list.vec8() {
                        alpn.push(String::from_utf8_lossy(p).into_owned());
                    }
                    if !alpn.is_empty() {
                        msg.attr("alpn", alpn.join(","));
                    }
                }
                43 => {
                    let mut list = Rd(d.vec8()?);
                    while let Some(v) = list.u16() {
                        if !is_grease(v) && version_name(v).is_some() && v > version {
                            version = v;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    msg.version = Some(version_name(version)?.to_string());
    Some(())
}

/// Returns whether this ServerHello is a HelloRetryRequest.
fn parse_server_hello(body: &[u8], msg: &mut L7Message) -> Option<bool> {
    let mut r = Rd(body);
    let legacy = r.u16()?;
    let random = r.take(32)?;
    r.vec8()?;
    let cs = r.u16()?;
    r.u8()?;
    let mut version = legacy;
    if let Some(mut exts) = r.vec16().map(Rd) {
        while let (Some(t), Some(data)) = (exts.u16(), exts.vec16()) {
            if t == 43 {
                version = be16(data, 0)?;
            }
        }
    }
    msg.version = Some(version_name(version)?.to_string());
    msg.attr("cipher_suite", cipher_suite_name(cs));
    Some(random == HRR_RANDOM)
}

// ---- minimal DER walk for X.509 validity and subject CN ----

/// Reads one DER TLV: (tag, content, rest).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    if tag & 0x1f == 0x1f {
        return None; // multi-byte tags are not used by the fields we read
    }
    let l0 = *b.get(1)?;
    let (len, hdr) = if l0 < 0x80 {
        (usize::from(l0), 2)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let content = b.get(hdr..hdr.checked_add(len)?)?;
    let rest = b.get(hdr + len..)?;
    Some((tag, content, rest))
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Parses a UTCTime/GeneralizedTime into (ISO-8601 text, seconds since the epoch).
fn der_time(tag: u8, v: &[u8]) -> Option<(String, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = s.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let num = |a: usize| -> Option<i64> { rest.get(a..a + 2)?.parse().ok() };
    let (mo, d, h, mi) = (num(0)?, num(2)?, num(4)?, num(6)?);
    let sec = num(8).unwrap_or(0);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let epoch = days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    Some((format!("{year:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}Z"), epoch))
}

/// Certificate facts read from a DER X.509 certificate.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject common name.
    pub subject_cn: Option<String>,
    /// notBefore as ISO-8601 and epoch seconds.
    pub not_before: Option<(String, i64)>,
    /// notAfter as ISO-8601 and epoch seconds.
    pub not_after: Option<(String, i64)>,
}

/// Walks a DER certificate for validity and subject CN.
pub fn parse_certificate(cert: &[u8]) -> Option<CertInfo> {
    let (t, c, _) = der(cert)?;
    if t != 0x30 {
        return None;
    }
    let (t, tbs, _) = der(c)?;
    if t != 0x30 {
        return None;
    }
    let mut rest = tbs;
    let (mut tag, mut val, mut next) = der(rest)?;
    if tag == 0xa0 {
        rest = next;
        (tag, val, next) = der(rest)?; // serial
    }
    let _ = (tag, val);
    let (_, _, next) = der(next)?; // signature algorithm
    let (_, _, next) = der(next)?; // issuer
    let (t, validity, next) = der(next)?;
    if t != 0x30 {
        return None;
    }
    let mut info = CertInfo::default();
    if let Some((t1, v1, r)) = der(validity) {
        info.not_before = der_time(t1, v1);
        if let Some((t2, v2, _)) = der(r) {
            info.not_after = der_time(t2, v2);
        }
    }
    let (t, subject, _) = der(next)?;
    if t == 0x30 {
        let mut sets = subject;
        while let Some((_, set, r)) = der(sets) {
            sets = r;
            let mut atvs = set;
            while let Some((_, atv, r2)) = der(atvs) {
                atvs = r2;
                if let Some((0x06, oid, vr)) = der(atv)
                    && oid == [0x55, 0x04, 0x03]
                    && let Some((vt, v, _)) = der(vr)
                    && matches!(vt, 0x0c | 0x13 | 0x16 | 0x14)
                {
                    info.subject_cn = Some(String::from_utf8_lossy(v).into_owned());
                }
            }
        }
    }
    Some(info)
}

impl TlsParser {
    /// Handles one complete handshake message of `dir`.
    fn on_handshake(&mut self, dir: Direction, t: u8, body: &[u8], ts_us: u64) -> Result<(), ParseErrorKind> {
        let d = dir.index();
        let is_client = dir == Direction::ClientToServer;
        let kind = if is_client { MessageKind::Request } else { MessageKind::Response };
        let mut hrr = false;
        {
            let st = self.dirs.get_mut(d).ok_or(ParseErrorKind::Malformed)?;
            st.names.push(handshake_name(t));
            let msg = cur(st, kind);
            match t {
                1 => parse_client_hello(body, msg).ok_or(ParseErrorKind::Malformed)?,
                2 => hrr = parse_server_hello(body, msg).ok_or(ParseErrorKind::Malformed)?,
                11 => {
                    // TLS ≤ 1.2: certificate_list<3> of cert<3>
                    if let (Some(_), Some(len)) = (be24(body, 0), be24(body, 3))
                        && let Some(info) = body.get(6..6 + len).and_then(parse_certificate)
                    {
                        {
                            let side = if is_client { "client" } else { "server" };
                            if let Some(cn) = info.subject_cn {
                                msg.attr(format!("{side}_cert_subject_cn"), cn);
                            }
                            if let Some((s, _)) = info.not_before {
                                msg.attr(format!("{side}_cert_not_before"), s);
                            }
                            if let Some((s, e)) = info.not_after {
                                msg.attr(format!("{side}_cert_not_after"), s);
                                let now = i64::try_from(ts_us / 1_000_000).unwrap_or(i64::MAX);
                                msg.attr(format!("{side}_cert_valid_days"), ((e - now) / 86400).to_string());
                            }
                        }
                    }
                }
                _ => {}
            }
            if (t == 1 && is_client) || (!is_client && (t == 14 || (t == 2 && hrr))) {
                st.flight_end = true;
            }
        }
        if t == 2 && !is_client {
            self.server_hello = true;
        }
        Ok(())
    }

    /// Ends the current flight of `dir` and returns its message.
    fn end_flight(&mut self, dir: Direction) -> Option<Box<L7Message>> {
        let is_client = dir == Direction::ClientToServer;
        let server_ccs = self.dirs.get(1).is_some_and(|s| s.ccs);
        let st = self.dirs.get_mut(dir.index())?;
        st.flight_end = false;
        let names = std::mem::take(&mut st.names).join("|");
        let kind = if is_client { MessageKind::Request } else { MessageKind::Response };
        let mut msg = st.cur.take().unwrap_or_else(|| Box::new(L7Message::new(L7Protocol::Tls, kind)));
        if is_client {
            msg.request_type = Some(names);
            if st.ccs && server_ccs {
                msg.kind = Some(MessageKind::OneWay);
                msg.response_status = Some(ResponseStatus::Ok);
            } else {
                self.client_waiting = true;
            }
        } else {
            msg.response_result = Some(names);
            msg.response_status = Some(ResponseStatus::Ok);
            self.client_waiting = false;
        }
        Some(msg)
    }
}

impl L7Parser for TlsParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Tls
    }

    fn port_hint(&self, port: u16) -> bool {
        matches!(port, 443 | 8443 | 465 | 636 | 853 | 993 | 995 | 6443)
    }

    fn probe(&self, data: &[u8], _dir: Direction, _flow: &FlowInfo) -> Probe {
        let (Some(&ct), Some(&major)) = (data.first(), data.get(1)) else { return Probe::NeedMore };
        if ct != 22 || major != 3 {
            return Probe::NotThis;
        }
        let (Some(minor), Some(len), Some(&ht)) = (data.get(2), be16(data, 3), data.get(5)) else {
            return Probe::NeedMore;
        };
        if *minor > 4 || len < 4 || usize::from(len) > MAX_RECORD || !matches!(ht, 1 | 2) {
            return Probe::NotThis;
        }
        Probe::Match
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(TlsParser {
            _cfg: self._cfg.clone(),
            dirs: Default::default(),
            client_waiting: false,
            server_hello: false,
        })
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        let dir = ctx.dir;
        let is_client = dir == Direction::ClientToServer;
        let Some(st) = self.dirs.get_mut(dir.index()) else { return ParseOutcome::Error(ParseErrorKind::Malformed) };
        if st.skip > 0 {
            let n = st.skip.min(data.len());
            st.skip -= n;
            return ParseOutcome::Skip(n.max(1));
        }
        let (Some(&ct), Some(ver), Some(len)) = (data.first(), be16(data, 1), be16(data, 3)) else {
            return ParseOutcome::NeedMore(REC_HDR.saturating_sub(data.len()));
        };
        let len = usize::from(len);
        if !(0x0300..=0x0304).contains(&ver) || len > MAX_RECORD || !(20..=24).contains(&ct) {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let encrypted = ct == 23 || (st.ccs && (ct == 21 || ct == 22));
        if encrypted || ct == 24 {
            ctx.counters.tls_encrypted_records += 1;
            // the server's first encrypted record ends its flight (TLS 1.3 without CCS)
            let end = !is_client && self.server_hello && !st.names.is_empty() && !st.ccs;
            st.skip = len;
            if end && let Some(m) = self.end_flight(dir) {
                return ParseOutcome::Message(m, REC_HDR);
            }
            return ParseOutcome::Skip(REC_HDR);
        }
        let total = REC_HDR + len;
        let Some(body) = data.get(REC_HDR..total) else {
            return ParseOutcome::NeedMore(total - data.len());
        };
        match ct {
            20 => {
                st.ccs = true;
                st.names.push("ChangeCipherSpec");
                st.hs.clear();
                match self.end_flight(dir) {
                    Some(m) => ParseOutcome::Message(m, total),
                    None => ParseOutcome::Skip(total),
                }
            }
            21 => {
                let (Some(&_level), Some(&desc)) = (body.first(), body.get(1)) else {
                    return ParseOutcome::Error(ParseErrorKind::Malformed);
                };
                if desc == 0 {
                    return ParseOutcome::Skip(total); // close_notify is not an error
                }
                let kind = if is_client || !self.client_waiting { MessageKind::OneWay } else { MessageKind::Response };
                let mut m = L7Message::new(L7Protocol::Tls, kind);
                m.request_type = Some("Alert".to_string());
                m.response_exception = Some(alert_name(desc).into_owned());
                m.response_status =
                    Some(if is_client { ResponseStatus::ClientError } else { ResponseStatus::ServerError });
                if kind == MessageKind::Response {
                    m.response_result = Some("Alert".to_string());
                    self.client_waiting = false;
                }
                ParseOutcome::message(m, total)
            }
            22 => {
                if st.hs.len() + body.len() > MAX_HANDSHAKE {
                    st.hs.clear();
                    return ParseOutcome::Error(ParseErrorKind::Oversize);
                }
                st.hs.extend_from_slice(body);
                let hs = std::mem::take(&mut st.hs);
                let mut off = 0;
                let mut result = Ok(());
                while let (Some(&t), Some(l)) = (hs.get(off), be24(&hs, off + 1)) {
                    if l > MAX_HANDSHAKE {
                        result = Err(ParseErrorKind::Oversize);
                        break;
                    }
                    let Some(msg_body) = hs.get(off + 4..off + 4 + l) else { break };
                    if let Err(e) = self.on_handshake(dir, t, msg_body, ctx.ts_us) {
                        result = Err(e);
                        break;
                    }
                    off += 4 + l;
                }
                let Some(st) = self.dirs.get_mut(dir.index()) else { return ParseOutcome::Skip(total) };
                if let Err(e) = result {
                    st.hs.clear();
                    return ParseOutcome::Error(e);
                }
                st.hs = hs;
                st.hs.drain(..off.min(st.hs.len()));
                if st.flight_end
                    && let Some(m) = self.end_flight(dir)
                {
                    return ParseOutcome::Message(m, total);
                }
                ParseOutcome::Skip(total)
            }
            _ => ParseOutcome::Skip(total),
        }
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(st) = self.dirs.get_mut(dir.index()) {
            let ccs = st.ccs;
            // record boundaries are lost for good once the direction is encrypted
            let skip = if ccs { usize::MAX } else { 0 };
            *st = DirState { ccs, skip, ..Default::default() };
        }
    }
}
