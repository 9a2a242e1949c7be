//! WASM plugin call overhead per message (feature `wasm` of deepflow-protocols).
//!
//! * `parser/native` vs `parser/wasm`: 1000 minikv request/response pairs through the L7
//!   engine, parsed by a native Rust [`L7Parser`] and by the example plugin
//!   `plugins/examples/custom-proto` (same fields). The difference per message is the cost of
//!   a guest call (fuel reset, input copy, decode of the emitted records).
//! * `hook/none` vs `hook/http_bizid`: 1000 HTTP/1 pairs with `X-Order-Id` headers and
//!   `/orders/{n}` paths, without and with the example hook `plugins/examples/http-bizid`.
//!
//! Throughput is in messages (2000 per iteration).
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_core::Direction::{self, ClientToServer as C, ServerToClient as S};
use deepflow_core::FlowInfo;
use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_protocols::wasm::{WasmLimits, WasmPlugin};
use deepflow_protocols::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseErrorKind, ParseOutcome, Probe};

#[path = "l7_common.rs"]
mod l7_common;
use l7_common::*;

fn plugin(dir: &str, file: &str) -> WasmPlugin {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples").join(dir).join(file);
    WasmPlugin::from_file(&p, WasmLimits::default()).expect("example plugin")
}

fn frame(ty: u8, op: u8, st: u8, id: u32, p: &[u8]) -> Vec<u8> {
    let mut f = b"DK\x01".to_vec();
    f.extend([ty, op, st]);
    f.extend(id.to_be_bytes());
    f.extend((p.len() as u32).to_be_bytes());
    f.extend(p);
    f
}

fn minikv_conversation() -> Vec<(Direction, Vec<u8>)> {
    let mut v = Vec::new();
    for i in 0..1000u32 {
        v.push((C, frame(0, 1, 0, i, format!("user:{i}").as_bytes())));
        let resp = if i % 10 == 0 { frame(1, 1, 1, i, b"no such key") } else { frame(1, 1, 0, i, &[b'v'; 64]) };
        v.push((S, resp));
    }
    v
}

/// The minikv parser of plugins/examples/custom-proto, natively.
struct NativeMiniKv;

impl L7Parser for NativeMiniKv {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Custom
    }
    fn port_hint(&self, port: u16) -> bool {
        port == 7878
    }
    fn probe(&self, data: &[u8], _dir: Direction, _flow: &FlowInfo) -> Probe {
        match data.get(..3) {
            Some(b"DK\x01") => Probe::Match,
            Some(_) => Probe::NotThis,
            None => Probe::NeedMore,
        }
    }
    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(NativeMiniKv)
    }
    fn pairing(&self) -> Pairing {
        Pairing::ById
    }
    fn parse(&mut self, data: &[u8], _ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        let Some(h) = data.first_chunk::<14>() else { return ParseOutcome::NeedMore(14 - data.len()) };
        if &h[..3] != b"DK\x01" {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let len = u32::from_be_bytes([h[10], h[11], h[12], h[13]]) as usize;
        let Some(payload) = data.get(14..14 + len) else { return ParseOutcome::NeedMore(14 + len - data.len()) };
        let id = u32::from_be_bytes([h[6], h[7], h[8], h[9]]);
        let kind = if h[3] == 1 { MessageKind::Response } else { MessageKind::Request };
        let mut m = L7Message::new(L7Protocol::Custom, kind);
        m.attr("l7_protocol_str", "minikv");
        m.version = Some("1".into());
        m.request_id = Some(id);
        m.length = Some(len as u64);
        if kind == MessageKind::Request {
            m.request_type = Some("GET".into());
            m.endpoint = Some("minikv/GET".into());
            m.request_resource = Some(String::from_utf8_lossy(payload).into_owned());
        } else {
            m.response_code = Some(i32::from(h[5]));
            m.response_status = Some(if h[5] == 0 { ResponseStatus::Ok } else { ResponseStatus::ClientError });
            let t = Some(String::from_utf8_lossy(&payload[..payload.len().min(64)]).into_owned());
            if h[5] == 0 { m.response_result = t } else { m.response_exception = t }
        }
        ParseOutcome::message(m, 14 + len)
    }
}

fn http_conversation() -> Vec<(Direction, Vec<u8>)> {
    let mut v = Vec::new();
    for i in 0..1000 {
        let req = format!(
            "GET /orders/{i} HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\nX-Order-Id: {i}\r\n\r\n"
        );
        v.push((C, req.into_bytes()));
        let body = format!("{{\"order_id\": {i}, \"status\": \"paid\", \"items\": [1, 2, 3]}}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        v.push((S, resp.into_bytes()));
    }
    v
}

fn bench(c: &mut Criterion) {
    let conv = minikv_conversation();
    let f = flow(6, 7878);
    let mut g = c.benchmark_group("wasm");
    g.throughput(Throughput::Elements(conv.len() as u64));

    let mut native = engine();
    native.register(Box::new(NativeMiniKv));
    assert_eq!(feed(&mut native, &f, &conv, 1460), 1000);
    g.bench_function("parser/native", |b| b.iter(|| feed(&mut native, &f, &conv, 1460)));

    let kv = plugin("custom-proto", "custom_proto.wasm");
    let mut wasm = engine();
    kv.install(&mut wasm).expect("install");
    assert_eq!(feed(&mut wasm, &f, &conv, 1460), 1000);
    g.bench_function("parser/wasm", |b| b.iter(|| feed(&mut wasm, &f, &conv, 1460)));
    assert!(!kv.is_disabled(), "{:?}", kv.stats());

    let conv = http_conversation();
    let f = flow(6, 80);
    let mut plain = engine();
    assert_eq!(feed(&mut plain, &f, &conv, 1460), 1000);
    g.bench_function("hook/none", |b| b.iter(|| feed(&mut plain, &f, &conv, 1460)));

    let hook = plugin("http-bizid", "http_bizid.wasm");
    let mut hooked = engine();
    hook.install(&mut hooked).expect("install");
    assert_eq!(feed(&mut hooked, &f, &conv, 1460), 1000);
    g.bench_function("hook/http_bizid", |b| b.iter(|| feed(&mut hooked, &f, &conv, 1460)));
    assert!(!hook.is_disabled() && hook.stats().changed > 0, "{:?}", hook.stats());
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
