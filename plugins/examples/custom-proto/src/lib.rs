//! Example protocol plugin: **minikv**, a small length-prefixed binary key/value RPC
//! (`tests/fixtures/wasm_custom/minikv.py` is a real server and client speaking it).
//!
//! Every frame is a 14-byte header followed by the payload, integers big-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic `"DK"` |
//! | 2 | 1 | version (1) |
//! | 3 | 1 | type: 0 request, 1 response, 2 one-way |
//! | 4 | 1 | op: 1 GET, 2 PUT, 3 DEL, 4 PING, 5 NOTIFY |
//! | 5 | 1 | status (responses): 0 OK, 1 NOT_FOUND, 2 BAD_REQUEST, 3 SERVER_ERROR |
//! | 6 | 4 | id (a response carries its request's id) |
//! | 10 | 4 | payload length (≤ 1 MiB) |
//!
//! Request payloads: GET/DEL `key`, PUT `key \0 value`, NOTIFY free text. Response payloads:
//! the value (GET OK) or an error text (status ≠ 0).
//!
//! Fields: `version` 1, `request_type` op name, `request_resource` key, `endpoint`
//! `minikv/<OP>`, `request_id` id (pairing by id), `response_code` status, `response_status`
//! OK → ok, NOT_FOUND/BAD_REQUEST → client_error, SERVER_ERROR and others → server_error,
//! `response_exception` the error text, `response_result` the first 64 bytes of a GET value.

use deepflow_plugin_sdk::{Dir, Info, Kind, Message, Parse, Parser, Probe, Status};

const HEADER: usize = 14;
const MAX_PAYLOAD: usize = 1 << 20;

/// The minikv parser.
pub struct MiniKv;

fn op_name(op: u8) -> Option<&'static str> {
    Some(match op {
        1 => "GET",
        2 => "PUT",
        3 => "DEL",
        4 => "PING",
        5 => "NOTIFY",
        _ => return None,
    })
}

fn text(b: &[u8], max: usize) -> String {
    let b = b.get(..max.min(b.len())).unwrap_or(b);
    String::from_utf8_lossy(b).into_owned()
}

struct Header {
    ty: u8,
    op: u8,
    status: u8,
    id: u32,
    len: usize,
}

fn header(data: &[u8]) -> Option<Header> {
    let h: &[u8; HEADER] = data.first_chunk()?;
    if &h[..2] != b"DK" || h[2] != 1 || h[3] > 2 {
        return None;
    }
    Some(Header {
        ty: h[3],
        op: h[4],
        status: h[5],
        id: u32::from_be_bytes([h[6], h[7], h[8], h[9]]),
        len: u32::from_be_bytes([h[10], h[11], h[12], h[13]]) as usize,
    })
}

impl Parser for MiniKv {
    fn info() -> Info {
        Info { name: "minikv", transport: "tcp", ports: "7878", pairing: "id", subscribe: "" }
    }

    fn probe(data: &[u8], _dir: Dir) -> Probe {
        if data.len() < HEADER {
            // a prefix of the magic could still become one
            return if b"DK\x01".starts_with(data.get(..data.len().min(3)).unwrap_or_default()) {
                Probe::NeedMore
            } else {
                Probe::NotThis
            };
        }
        match header(data) {
            Some(h) if h.len <= MAX_PAYLOAD && (h.ty == 1 || op_name(h.op).is_some()) => Probe::Match,
            _ => Probe::NotThis,
        }
    }

    fn parse(data: &[u8], _dir: Dir) -> Parse {
        if data.len() < HEADER {
            return Parse::NeedMore(HEADER - data.len());
        }
        let Some(h) = header(data) else { return Parse::Malformed };
        if h.len > MAX_PAYLOAD {
            return Parse::Malformed;
        }
        let total = HEADER + h.len;
        let Some(payload) = data.get(HEADER..total) else { return Parse::NeedMore(total - data.len()) };
        let op = op_name(h.op);
        let kind = match h.ty {
            0 => Kind::Request,
            1 => Kind::Response,
            _ => Kind::OneWay,
        };
        let mut m = Message::new(kind);
        m.version = Some("1".into());
        m.request_id = Some(h.id);
        m.length = Some(h.len as u64);
        let op_s = op.map(str::to_string).unwrap_or_else(|| format!("OP{}", h.op));
        match kind {
            Kind::Request | Kind::OneWay => {
                let key = match h.op {
                    2 => payload.split(|&b| b == 0).next().unwrap_or_default(),
                    1 | 3 => payload,
                    _ => &[],
                };
                if !key.is_empty() {
                    m.request_resource = Some(text(key, 256));
                }
                m.endpoint = Some(format!("minikv/{op_s}"));
                m.request_type = Some(op_s);
                if kind == Kind::OneWay {
                    m.response_status = Some(Status::Ok);
                    m.response_result = Some(text(payload, 64));
                }
            }
            Kind::Response => {
                m.response_code = Some(i32::from(h.status));
                m.response_status = Some(match h.status {
                    0 => Status::Ok,
                    1 | 2 => Status::ClientError,
                    _ => Status::ServerError,
                });
                if h.status != 0 {
                    m.response_exception = Some(text(payload, 256));
                } else if h.op == 1 {
                    m.response_result = Some(text(payload, 64));
                }
            }
        }
        Parse::Message(m, total)
    }
}

deepflow_plugin_sdk::export_parser!(MiniKv);
