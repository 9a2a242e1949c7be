//! DNS over UDP (one message per datagram) and TCP (2-byte length prefix) (`dns`).
//!
//! Names are decoded with compression pointers; a pointer must point strictly before the
//! position it is read from and a name is at most 255 bytes, so malicious loops terminate.
//! Fields follow L7_FIELDS.md "DNS": QTYPE name → `request_type`, first QNAME →
//! `request_resource`/`endpoint` (and `request_domain` for A/AAAA), transaction id →
//! `request_id` (pairing key), RCODE → `response_code`, answer + authority records →
//! `response_result`, opcode → attribute `opcode`.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo, flow::ip_proto};

use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;

const HEADER_LEN: usize = 12;
const MAX_NAME: usize = 255;
/// More than this many records in a section is treated as malformed.
const MAX_RECORDS: u16 = 512;

/// Name of a DNS RR type; unknown types print as `Unknown(n)`.
pub fn qtype_name(t: u16) -> std::borrow::Cow<'static, str> {
    let s = match t {
        1 => "A",
        2 => "NS",
        3 => "MD",
        4 => "MF",
        5 => "CNAME",
        6 => "SOA",
        7 => "MB",
        8 => "MG",
        9 => "MR",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        14 => "MINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        24 => "SIG",
        25 => "KEY",
        28 => "AAAA",
        29 => "LOC",
        33 => "SRV",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        39 => "DNAME",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        53 => "SMIMEA",
        55 => "HIP",
        59 => "CDS",
        60 => "CDNSKEY",
        61 => "OPENPGPKEY",
        62 => "CSYNC",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        253 => "MAILB",
        254 => "MAILA",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        _ => return std::borrow::Cow::Owned(format!("Unknown({t})")),
    };
    std::borrow::Cow::Borrowed(s)
}

/// Name of a DNS header opcode.
pub fn opcode_name(op: u8) -> std::borrow::Cow<'static, str> {
    std::borrow::Cow::Borrowed(match op {
        0 => "QUERY",
        1 => "IQUERY",
        2 => "STATUS",
        4 => "NOTIFY",
        5 => "UPDATE",
        6 => "DSO",
        _ => return std::borrow::Cow::Owned(format!("Unknown({op})")),
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes(s.try_into().ok()?))
}

/// Reads a (possibly compressed) name at `pos` of message `msg`. Returns the dotted name
/// and the position after the name's in-place encoding.
pub fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    // most names fit: one allocation instead of a few growths
    let mut out = String::with_capacity(32);
    let mut wire_len = 0usize;
    let mut end_after: Option<usize> = None;
    // every pointer must go strictly backwards: bounded by the message length
    let mut limit = pos;
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    let end = end_after.unwrap_or(pos + 1);
                    if out.is_empty() {
                        out.push('.');
                    }
                    return Some((out, end));
                }
                let l = usize::from(len);
                wire_len += l + 1;
                if wire_len > MAX_NAME {
                    return None;
                }
                let label = msg.get(pos + 1..pos + 1 + l)?;
                if !out.is_empty() {
                    out.push('.');
                }
                for &c in label {
                    if c.is_ascii_graphic() && c != b'.' && c != b'\\' {
                        out.push(char::from(c));
                    } else {
                        let _ = write!(out, "\\{c:03}");
                    }
                }
                pos += l + 1;
            }
            0xc0 => {
                let p = usize::from(be16(msg, pos)? & 0x3fff);
                if end_after.is_none() {
                    end_after = Some(pos + 2);
                }
                if p >= limit {
                    return None; // forward or self pointer: possible loop
                }
                limit = p;
                pos = p;
            }
            _ => return None, // 0x40 / 0x80 label types are obsolete
        }
    }
}

/// A parsed DNS message header + first question.
#[derive(Debug)]
struct Parsed {
    msg: L7Message,
}

struct Shared {
    unconcerned: Vec<String>,
}

/// The DNS parser.
pub struct DnsParser {
    shared: Arc<Shared>,
}

impl DnsParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        DnsParser {
            shared: Arc::new(Shared {
                unconcerned: cfg
                    .dns_unconcerned_nxdomain_suffixes
                    .iter()
                    .map(|s| s.trim_end_matches('.').to_ascii_lowercase())
                    .collect(),
            }),
        }
    }

    fn parse_message(&self, m: &[u8]) -> Result<Parsed, ParseErrorKind> {
        let t = ParseErrorKind::Truncated;
        if m.len() < HEADER_LEN {
            return Err(t);
        }
        let id = be16(m, 0).ok_or(t)?;
        let flags = be16(m, 2).ok_or(t)?;
        let qd = be16(m, 4).ok_or(t)?;
        let an = be16(m, 6).ok_or(t)?;
        let ns = be16(m, 8).ok_or(t)?;
        let ar = be16(m, 10).ok_or(t)?;
        if qd > MAX_RECORDS || an > MAX_RECORDS || ns > MAX_RECORDS || ar > MAX_RECORDS {
            return Err(ParseErrorKind::Malformed);
        }
        let is_resp = flags & 0x8000 != 0;
        let opcode = ((flags >> 11) & 0xf) as u8;
        let rcode = flags & 0xf;
        let kind = if is_resp { MessageKind::Response } else { MessageKind::Request };
        let mut msg = L7Message::new(L7Protocol::Dns, kind);
        msg.request_id = Some(u32::from(id));
        msg.attr("opcode", opcode_name(opcode));
        let mut pos = HEADER_LEN;
        for i in 0..qd {
            let (name, p) = read_name(m, pos).ok_or(ParseErrorKind::Malformed)?;
            let qtype = be16(m, p).ok_or(t)?;
            be16(m, p + 2).ok_or(t)?;
            pos = p + 4;
            if i == 0 {
                let tn = qtype_name(qtype);
                if qtype == 1 || qtype == 28 {
                    msg.request_domain = Some(name.clone());
                }
                msg.request_type = Some(tn.into_owned());
                msg.endpoint = Some(name.clone());
                msg.request_resource = Some(name);
            }
        }
        if is_resp {
            let mut result = String::new();
            for _ in 0..(u32::from(an) + u32::from(ns)) {
                let (_, p) = read_name(m, pos).ok_or(ParseErrorKind::Malformed)?;
                let rtype = be16(m, p).ok_or(t)?;
                let ttl = be32(m, p + 4).ok_or(t)?;
                let rdlen = usize::from(be16(m, p + 8).ok_or(t)?);
                let rd_start = p + 10;
                let rdata = m.get(rd_start..rd_start + rdlen).ok_or(t)?;
                pos = rd_start + rdlen;
                if !result.is_empty() {
                    result.push_str("; ");
                }
                let tn = qtype_name(rtype);
                let value = match rtype {
                    1 | 11 => {
                        rdata.get(..4).and_then(|a| <[u8; 4]>::try_from(a).ok()).map(|a| Ipv4Addr::from(a).to_string())
                    }
                    28 => <[u8; 16]>::try_from(rdata).ok().map(|a| Ipv6Addr::from(a).to_string()),
                    2 | 12 | 6 => read_name(m, rd_start).map(|(n, _)| n),
                    _ => None,
                };
                match value {
                    Some(v) => {
                        let _ = write!(result, "{tn}={v} TTL={ttl}");
                    }
                    None => result.push_str(&tn),
                }
            }
            if !result.is_empty() {
                msg.response_result = Some(result);
            }
            msg.response_code = Some(i32::from(rcode));
            let mut status = match rcode {
                0 => ResponseStatus::Ok,
                1 | 3 => ResponseStatus::ClientError,
                _ => ResponseStatus::ServerError,
            };
            if rcode == 3 && !self.shared.unconcerned.is_empty() {
                let q = msg.request_resource.as_deref().unwrap_or("").trim_end_matches('.').to_ascii_lowercase();
                if self.shared.unconcerned.iter().any(|s| q == *s || q.ends_with(&format!(".{s}"))) {
                    status = ResponseStatus::Ok;
                }
            }
            msg.response_status = Some(status);
        }
        Ok(Parsed { msg })
    }
}

/// Cheap header plausibility check on a DNS message prefix.
fn header_plausible(m: &[u8]) -> Probe {
    if m.len() < HEADER_LEN {
        return Probe::NeedMore;
    }
    let (Some(flags), Some(qd), Some(an), Some(ns)) = (be16(m, 2), be16(m, 4), be16(m, 6), be16(m, 8)) else {
        return Probe::NeedMore;
    };
    let opcode = (flags >> 11) & 0xf;
    let is_resp = flags & 0x8000 != 0;
    let z = flags & 0x0040;
    if opcode > 6 || opcode == 3 || z != 0 || qd != 1 || (!is_resp && (an > 0 || ns > 0) && opcode == 0) {
        return Probe::NotThis;
    }
    match read_name(m, HEADER_LEN) {
        Some((_, p)) if p + 4 <= m.len() => {
            // class IN, CH, HS, NONE or ANY
            match be16(m, p + 2) {
                Some(1 | 3 | 4 | 254 | 255) => Probe::Match,
                Some(c) if c & 0x7fff == 1 => Probe::Match, // mDNS unicast-response bit
                _ => Probe::NotThis,
            }
        }
        Some(_) => Probe::NeedMore,
        None => {
            // an incomplete first name needs more bytes; a broken one is not DNS
            if m.len() < 64 { Probe::NeedMore } else { Probe::NotThis }
        }
    }
}

impl L7Parser for DnsParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Dns
    }

    fn supports_transport(&self, p: u8) -> bool {
        p == ip_proto::TCP || p == ip_proto::UDP
    }

    fn port_hint(&self, port: u16) -> bool {
        matches!(port, 53 | 5353 | 5355)
    }

    fn probe(&self, data: &[u8], _dir: Direction, flow: &FlowInfo) -> Probe {
        if flow.protocol == ip_proto::UDP {
            match header_plausible(data) {
                Probe::NeedMore => Probe::NotThis, // a datagram is all there is
                p => p,
            }
        } else {
            let Some(len) = be16(data, 0) else { return Probe::NeedMore };
            if usize::from(len) < HEADER_LEN + 5 {
                return Probe::NotThis;
            }
            let body = data.get(2..).unwrap_or_default();
            let body = body.get(..usize::from(len)).unwrap_or(body);
            header_plausible(body)
        }
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(DnsParser { shared: self.shared.clone() })
    }

    fn pairing(&self) -> Pairing {
        Pairing::ById
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        if ctx.datagram {
            return match self.parse_message(data) {
                Ok(p) => ParseOutcome::message(p.msg, data.len()),
                Err(e) => ParseOutcome::Error(e),
            };
        }
        let Some(len) = be16(data, 0) else { return ParseOutcome::NeedMore(2 - data.len()) };
        let len = usize::from(len);
        if len < HEADER_LEN {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let Some(m) = data.get(2..2 + len) else {
            return ParseOutcome::NeedMore(2 + len - data.len());
        };
        match self.parse_message(m) {
            Ok(p) => ParseOutcome::message(p.msg, 2 + len),
            Err(ParseErrorKind::Truncated) => ParseOutcome::Error(ParseErrorKind::Malformed),
            Err(e) => ParseOutcome::Error(e),
        }
    }
}
