//! SOFARPC over the Bolt protocol (`sofarpc`), Bolt v1 and v2.
//!
//! Bolt v1 request header: `proto=1, type u8 (1 request, 0 response, 2 one-way), cmd code u16
//! (0 heartbeat, 1 request, 2 response), ver2 u8, request id u32, codec u8, timeout i32,
//! class len u16, header len u16, content len u32` (22 bytes); a response has `resp status
//! u16` instead of the timeout (20 bytes). Bolt v2 adds `ver1` after the proto byte and a
//! `switch` byte after the codec, and a trailing CRC32 when switch bit 0 is set. Then the
//! class name, the header map (`[key len i32][key][value len i32][value]`...) and the content.
//!
//! Fields follow L7_FIELDS.md "SOFARPC": `sofa_head_method_name` header (else the Hessian
//! SofaRequest's methodName) → `request_type`, `sofa_head_target_service` (else
//! targetServiceUniqueName) → `request_resource`, `service/method` → `endpoint`, request id →
//! `request_id` (pairing key), response status → `response_code` (0 ok, 8 client_error,
//! others server_error). Heartbeats are skipped. Trace: `rpc_trace_context.sofaTraceId`
//! header (or the SofaRequest's requestProps, nested as Java SOFARPC sends it or flat as
//! sofa-rpc-node does) → trace id; `new_rpc_trace_context`
//! (`tcid`/`spid`/`pspid`) → trace/span/parent span; then the configured header names.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, LazyLock};

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::hessian::Reader;
use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;
use crate::trace::{TraceConfig, TraceExtractor};

// ---------------------------------------------------------------------------------------------
// constants

const PROTO_V1: u8 = 1;
const PROTO_V2: u8 = 2;
const TYPE_RESPONSE: u8 = 0;
const TYPE_REQUEST: u8 = 1;
const TYPE_ONEWAY: u8 = 2;
const CMD_HEARTBEAT: u16 = 0;
const CMD_REQUEST: u16 = 1;
const CMD_RESPONSE: u16 = 2;
const MAX_FRAME: usize = 64 * 1024 * 1024;
/// The largest fixed header (v2 request).
const MAX_FIXED: usize = 24;

const H_METHOD: &str = "sofa_head_method_name";
const H_SERVICE: &str = "sofa_head_target_service";
const H_TRACE_ID: &str = "rpc_trace_context.sofaTraceId";
const H_NEW_CTX: &str = "new_rpc_trace_context";

/// Decoder for `new_rpc_trace_context` (tcid/spid/pspid).
static SOFA_TRACE: LazyLock<TraceConfig> = LazyLock::new(|| TraceConfig {
    trace_id_headers: vec![H_NEW_CTX.into()],
    span_id_headers: vec![H_NEW_CTX.into()],
    parent_span_id_headers: vec![H_NEW_CTX.into()],
    keep_as_attribute: Vec::new(),
    x_request_id_header: String::new(),
    proxy_client_header: String::new(),
    extra_headers: Vec::new(),
});

/// Bolt response status name.
pub fn status_name(s: u16) -> &'static str {
    match s {
        0 => "SUCCESS",
        1 => "ERROR",
        2 => "SERVER_EXCEPTION",
        3 => "UNKNOWN",
        4 => "SERVER_THREADPOOL_BUSY",
        5 => "ERROR_COMM",
        6 => "NO_PROCESSOR",
        7 => "TIMEOUT",
        8 => "CLIENT_SEND_ERROR",
        9 => "CODEC_EXCEPTION",
        0x10 => "CONNECTION_CLOSED",
        0x11 => "SERVER_SERIAL_EXCEPTION",
        0x12 => "SERVER_DESERIAL_EXCEPTION",
        _ => "UNKNOWN_STATUS",
    }
}

/// Status of a response status code (L7_FIELDS.md "SOFARPC").
pub fn response_status(s: u16) -> ResponseStatus {
    match s {
        0 => ResponseStatus::Ok,
        8 => ResponseStatus::ClientError,
        _ => ResponseStatus::ServerError,
    }
}

// ---------------------------------------------------------------------------------------------
// header

#[derive(Debug, Clone, Copy)]
struct Header {
    ty: u8,
    cmd: u16,
    id: u32,
    status: u16,
    fixed: usize,
    class_len: usize,
    header_len: usize,
    content_len: usize,
    crc: usize,
}

impl Header {
    fn total(&self) -> usize {
        self.fixed + self.class_len + self.header_len + self.content_len + self.crc
    }
}

/// Decodes the fixed header; `Err(true)` = need more bytes, `Err(false)` = not Bolt.
fn header(b: &[u8]) -> Result<Header, bool> {
    let byte = |i: usize| b.get(i).copied().ok_or(true);
    let u16_at = |i: usize| Ok(u16::from_be_bytes([byte(i)?, byte(i + 1)?]));
    let u32_at = |i: usize| Ok(u32::from_be_bytes([byte(i)?, byte(i + 1)?, byte(i + 2)?, byte(i + 3)?]));
    let (v2, o) = match byte(0)? {
        PROTO_V1 => (false, 1),
        PROTO_V2 => (true, 2),
        _ => return Err(false),
    };
    let ty = byte(o)?;
    let cmd = u16_at(o + 1)?;
    let ok_cmd = match ty {
        TYPE_RESPONSE => matches!(cmd, CMD_RESPONSE | CMD_HEARTBEAT),
        TYPE_REQUEST | TYPE_ONEWAY => matches!(cmd, CMD_REQUEST | CMD_HEARTBEAT),
        _ => false,
    };
    if !ok_cmd {
        return Err(false);
    }
    let id = u32_at(o + 4)?;
    // codec (and v2 switch)
    let mut p = o + 9;
    let switch = if v2 {
        p += 1;
        byte(o + 9)?
    } else {
        0
    };
    let status = if ty == TYPE_RESPONSE {
        let s = u16_at(p)?;
        p += 2;
        s
    } else {
        p += 4; // timeout
        0
    };
    let class_len = usize::from(u16_at(p)?);
    let header_len = usize::from(u16_at(p + 2)?);
    let content_len = u32_at(p + 4)? as usize;
    let h = Header {
        ty,
        cmd,
        id,
        status,
        fixed: p + 8,
        class_len,
        header_len,
        content_len,
        crc: if v2 && switch & 1 != 0 { 4 } else { 0 },
    };
    if h.total() > MAX_FRAME {
        return Err(false);
    }
    Ok(h)
}

/// `[key len i32][key][value len i32][value]`... (a negative length is null).
fn header_map(mut b: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    std::iter::from_fn(move || {
        let mut field = || -> Option<String> {
            let l: [u8; 4] = b.get(..4)?.try_into().ok()?;
            let l = i32::from_be_bytes(l);
            b = b.get(4..)?;
            let n = usize::try_from(l).unwrap_or(0);
            let s = String::from_utf8_lossy(b.get(..n)?).into_owned();
            b = b.get(n..)?;
            Some(s)
        };
        let k = field()?;
        let v = field()?;
        Some((k, v))
    })
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start with a Bolt request/response carrying a class name?
pub fn probe_frame(data: &[u8]) -> Probe {
    match header(data) {
        Err(true) => Probe::NeedMore,
        Err(false) => Probe::NotThis,
        Ok(h) if h.cmd == CMD_HEARTBEAT => Probe::NotThis,
        Ok(h) => {
            if h.class_len == 0 || h.class_len > 256 {
                return Probe::NotThis;
            }
            let end = h.fixed + h.class_len;
            match data.get(h.fixed..end) {
                None => Probe::NeedMore,
                Some(c) if c.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'$')) => {
                    Probe::Match
                }
                Some(_) => Probe::NotThis,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// parser

/// The SOFARPC (Bolt) parser.
pub struct SofaRpcParser {
    trace: Arc<TraceConfig>,
    partial_limit: usize,
    skip: [usize; 2],
}

impl SofaRpcParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        SofaRpcParser {
            trace: Arc::new(cfg.trace.clone()),
            partial_limit: (cfg.max_buffered_bytes / 2).max(64),
            skip: [0; 2],
        }
    }

    fn frame(&self, h: Header, f: &[u8]) -> L7Message {
        let kind = match h.ty {
            TYPE_RESPONSE => MessageKind::Response,
            TYPE_ONEWAY => MessageKind::OneWay,
            _ => MessageKind::Request,
        };
        let mut msg = L7Message::new(L7Protocol::SofaRpc, kind);
        msg.request_id = Some(h.id);
        msg.length = Some(h.total() as u64);
        let class_end = h.fixed + h.class_len;
        let hdr_end = class_end + h.header_len;
        let class = f.get(h.fixed..class_end).map(String::from_utf8_lossy);
        let headers = f.get(class_end..hdr_end).unwrap_or_default();
        let mut sofa = TraceExtractor::new(&SOFA_TRACE);
        let mut sofa_trace_id = None;
        for (k, v) in header_map(headers) {
            match k.as_str() {
                H_METHOD => msg.request_type = Some(v),
                H_SERVICE => msg.request_resource = Some(v),
                H_TRACE_ID => sofa_trace_id = Some(v),
                H_NEW_CTX => {
                    sofa.header(&k, &v, &mut msg);
                }
                _ => {}
            }
        }
        // string entries of the SofaRequest's requestProps, for the configured trace headers
        let mut props: Vec<(String, String)> = Vec::new();
        if kind != MessageKind::Response
            && (msg.request_type.is_none() || msg.request_resource.is_none() || sofa_trace_id.is_none())
            && class.as_deref() == Some("com.alipay.sofa.rpc.core.request.SofaRequest")
        {
            let content = f.get(hdr_end..h.total()).unwrap_or_else(|| f.get(hdr_end..).unwrap_or_default());
            if let Some(req) = Reader::new(content).value() {
                let s = |k: &str| req.get(k).and_then(|v| v.as_str()).map(str::to_string);
                msg.request_type = msg.request_type.take().or_else(|| s("methodName"));
                msg.request_resource = msg.request_resource.take().or_else(|| s("targetServiceUniqueName"));
                let rp = req.get("requestProps");
                if sofa_trace_id.is_none() {
                    // Java SOFARPC nests `rpc_trace_context` → {sofaTraceId}; sofa-rpc-node
                    // (npm) sends flat `rpc_trace_context.sofaTraceId` keys
                    sofa_trace_id = rp
                        .and_then(|p| p.get("rpc_trace_context"))
                        .and_then(|c| c.get("sofaTraceId"))
                        .or_else(|| rp.and_then(|p| p.get(H_TRACE_ID)))
                        .and_then(|v| v.as_str())
                        .map(str::to_string);
                }
                if let Some(p) = rp {
                    props = p.str_pairs().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                }
            }
        }
        if let Some(t) = sofa_trace_id.filter(|t| !t.is_empty()) {
            msg.trace.trace_id = Some(t);
        }
        // configured headers fill what the SOFA-specific ones did not
        let found = msg.trace.clone();
        let mut ex = TraceExtractor::new(&self.trace);
        for (k, v) in header_map(headers) {
            ex.header(&k, &v, &mut msg);
        }
        for (k, v) in &props {
            ex.header(k, v, &mut msg);
        }
        msg.trace.trace_id = found.trace_id.or(msg.trace.trace_id.take());
        msg.trace.span_id = found.span_id.or(msg.trace.span_id.take());
        msg.trace.parent_span_id = found.parent_span_id.or(msg.trace.parent_span_id.take());
        if let (Some(svc), Some(m)) = (&msg.request_resource, &msg.request_type) {
            msg.endpoint = Some(format!("{svc}/{m}"));
        }
        match kind {
            MessageKind::Response => {
                msg.response_code = Some(i32::from(h.status));
                msg.response_status = Some(response_status(h.status));
                if h.status != 0 {
                    msg.response_exception = Some(status_name(h.status).to_string());
                }
            }
            MessageKind::OneWay => msg.response_status = Some(ResponseStatus::Ok),
            MessageKind::Request => {}
        }
        msg
    }
}

impl L7Parser for SofaRpcParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::SofaRpc
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 12200
    }

    fn probe(&self, data: &[u8], _dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_frame(data)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(SofaRpcParser { trace: Arc::clone(&self.trace), partial_limit: self.partial_limit, skip: [0; 2] })
    }

    fn pairing(&self) -> Pairing {
        Pairing::ById
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        let d = ctx.dir.index();
        if let Some(skip) = self.skip.get_mut(d)
            && *skip > 0
        {
            let n = (*skip).min(data.len());
            *skip -= n;
            return ParseOutcome::Skip(n);
        }
        let h = match header(data) {
            Ok(h) => h,
            Err(true) => return ParseOutcome::NeedMore(MAX_FIXED.saturating_sub(data.len()).max(1)),
            Err(false) => return ParseOutcome::Error(ParseErrorKind::Malformed),
        };
        let total = h.total();
        let take = total.min(h.fixed + self.partial_limit);
        if data.len() < take {
            return ParseOutcome::NeedMore(take - data.len());
        }
        if let Some(s) = self.skip.get_mut(d) {
            *s = total - take;
        }
        if h.cmd == CMD_HEARTBEAT {
            return ParseOutcome::Skip(take);
        }
        let msg = self.frame(h, data.get(..take).unwrap_or_default());
        ParseOutcome::message(msg, take)
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(s) = self.skip.get_mut(dir.index()) {
            *s = 0;
        }
    }
}

/// Test helpers: Bolt v1 frames.
#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(crate) mod build {
    /// Header map bytes.
    pub fn map(kv: &[(&str, &str)]) -> Vec<u8> {
        let mut v = Vec::new();
        for (k, val) in kv {
            v.extend((k.len() as i32).to_be_bytes());
            v.extend(k.as_bytes());
            v.extend((val.len() as i32).to_be_bytes());
            v.extend(val.as_bytes());
        }
        v
    }
    /// A v1 request (`ty` 1 or 2; cmd 1, or 0 for heartbeat).
    pub fn request(ty: u8, cmd: u16, id: u32, class: &str, hdr: &[u8], content: &[u8]) -> Vec<u8> {
        let mut v = vec![1, ty];
        v.extend(cmd.to_be_bytes());
        v.push(1);
        v.extend(id.to_be_bytes());
        v.push(1); // hessian2
        v.extend(3000i32.to_be_bytes());
        v.extend((class.len() as u16).to_be_bytes());
        v.extend((hdr.len() as u16).to_be_bytes());
        v.extend((content.len() as u32).to_be_bytes());
        v.extend(class.as_bytes());
        v.extend(hdr);
        v.extend(content);
        v
    }
    /// A v1 response.
    pub fn response(cmd: u16, id: u32, status: u16, class: &str, content: &[u8]) -> Vec<u8> {
        let mut v = vec![1, 0];
        v.extend(cmd.to_be_bytes());
        v.push(1);
        v.extend(id.to_be_bytes());
        v.push(1);
        v.extend(status.to_be_bytes());
        v.extend((class.len() as u16).to_be_bytes());
        v.extend(0u16.to_be_bytes());
        v.extend((content.len() as u32).to_be_bytes());
        v.extend(class.as_bytes());
        v.extend(content);
        v
    }
    /// A Hessian SofaRequest object with methodName, targetServiceUniqueName, requestProps.
    pub fn sofa_request(method: &str, service: &str, trace_id: &str) -> Vec<u8> {
        use crate::l7::hessian::write;
        let mut v = vec![b'C'];
        write::string(&mut v, "com.alipay.sofa.rpc.core.request.SofaRequest");
        write::int(&mut v, 4);
        for f in ["targetAppName", "methodName", "targetServiceUniqueName", "requestProps"] {
            write::string(&mut v, f);
        }
        v.push(0x60);
        v.push(b'N');
        write::string(&mut v, method);
        write::string(&mut v, service);
        v.push(b'H');
        write::string(&mut v, "rpc_trace_context");
        write::map(&mut v, &[("sofaTraceId", trace_id), ("sofaRpcId", "0")]);
        v.push(b'Z');
        v
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::build::*;
    use super::*;
    use crate::EmitMode;
    use crate::l7::kafka::testkit::*;
    use deepflow_core::record::{L7FlowLog, LogType};

    fn make(cfg: &L7Config) -> Box<dyn L7Parser> {
        Box::new(SofaRpcParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "sofarpc", 12200, emit, segs)
    }

    const REQ: &str = "com.alipay.sofa.rpc.core.request.SofaRequest";
    const RESP: &str = "com.alipay.sofa.rpc.core.response.SofaResponse";

    fn exchange() -> Vec<(Direction, Vec<u8>)> {
        let h1 = map(&[
            ("service", "com.demo.HelloService:1.0"),
            (H_METHOD, "sayHello"),
            (H_SERVICE, "com.demo.HelloService:1.0"),
            (H_TRACE_ID, "0a0fe8ec1700000000001100137420"),
            (H_NEW_CTX, "tcid=0a0fe8ec1700000000001100137420&spid=0.1&pspid=0"),
        ]);
        vec![
            (C2S, request(1, 1, 1, REQ, &h1, b"\x00payload")),
            (S2C, response(2, 1, 0, RESP, b"\x00ok")),
            (C2S, request(1, 0, 2, "", &[], &[])),
            (S2C, response(0, 2, 0, "", &[])),
            (C2S, request(1, 1, 3, REQ, &[], &sofa_request("echo", "com.demo.EchoService:1.0", "tid-3"))),
            (S2C, response(2, 3, 4, RESP, b"")),
            (C2S, request(2, 1, 4, REQ, &map(&[(H_METHOD, "notify"), (H_SERVICE, "S")]), b"")),
            (C2S, request(1, 1, 5, REQ, &map(&[(H_METHOD, "m"), (H_SERVICE, "S"), ("traceparent", "00-t-s-01")]), b"")),
            (S2C, response(2, 5, 8, RESP, b"")),
        ]
    }

    #[test]
    fn sessions() {
        let rows = run(EmitMode::Sessions, &exchange());
        let names: Vec<_> = rows.iter().map(|r| r.request_type.clone().unwrap_or_default()).collect();
        assert_eq!(names, ["sayHello", "echo", "notify", "m"], "{rows:#?}");
        let r = &rows[0];
        assert_eq!(r.request_resource.as_deref(), Some("com.demo.HelloService:1.0"));
        assert_eq!(r.endpoint.as_deref(), Some("com.demo.HelloService:1.0/sayHello"));
        assert_eq!(r.request_id, Some(1));
        assert_eq!(r.response_code, Some(0));
        assert_eq!(r.response_status, ResponseStatus::Ok);
        assert_eq!(r.trace_id.as_deref(), Some("0a0fe8ec1700000000001100137420"));
        assert_eq!(r.span_id.as_deref(), Some("0.1"));
        assert_eq!(r.parent_span_id.as_deref(), Some("0"));
        let r = &rows[1];
        assert_eq!(r.endpoint.as_deref(), Some("com.demo.EchoService:1.0/echo"));
        assert_eq!(r.trace_id.as_deref(), Some("tid-3"));
        assert_eq!(r.response_status, ResponseStatus::ServerError);
        assert_eq!(r.response_exception.as_deref(), Some("SERVER_THREADPOOL_BUSY"));
        assert_eq!(rows[2].log_type, LogType::Session);
        assert_eq!(rows[2].response_status, ResponseStatus::Ok);
        assert_eq!(rows[3].response_status, ResponseStatus::ClientError);
        assert_eq!(rows[3].trace_id.as_deref(), Some("t"));
    }

    #[test]
    fn bolt_v2() {
        // v2: proto 2, ver1, ..., codec, switch (crc on), ... + crc32
        let h = map(&[(H_METHOD, "v2m"), (H_SERVICE, "V2")]);
        let mut v = vec![2, 1, 1, 0, 1, 1, 0, 0, 0, 9, 1, 1];
        v.extend(1000i32.to_be_bytes());
        v.extend((REQ.len() as u16).to_be_bytes());
        v.extend((h.len() as u16).to_be_bytes());
        v.extend(0u32.to_be_bytes());
        v.extend(REQ.as_bytes());
        v.extend(&h);
        v.extend([0xde, 0xad, 0xbe, 0xef]);
        let mut r = vec![2, 1, 0, 0, 2, 1, 0, 0, 0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        r.extend([0; 0]);
        let rows = run(EmitMode::Sessions, &[(C2S, v), (S2C, r)]);
        assert_eq!(rows.len(), 1, "{rows:#?}");
        assert_eq!(rows[0].endpoint.as_deref(), Some("V2/v2m"));
        assert_eq!(rows[0].response_status, ResponseStatus::Ok);
    }

    #[test]
    fn probe() {
        let f = flow(1);
        let p = SofaRpcParser::new(&L7Config::default());
        let ex = exchange();
        assert_eq!(p.probe(&ex[0].1, C2S, &f), Probe::Match);
        assert_eq!(p.probe(&ex[1].1, S2C, &f), Probe::Match);
        assert_eq!(p.probe(&ex[0].1[..10], C2S, &f), Probe::NeedMore);
        assert_eq!(p.probe(&ex[2].1, C2S, &f), Probe::NotThis);
        assert_eq!(p.probe(b"GET / HTTP/1.1\r\n\r\n", C2S, &f), Probe::NotThis);
    }

    #[test]
    fn splits() {
        check_splits(&make, "sofarpc", 12200, &exchange());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &exchange());
    }

    #[test]
    fn fuzz_50k() {
        fuzz(&make, "sofarpc", &exchange(), 50_000);
    }
}
