//! WASM plugins through the real pipeline (pcap → flows → reassembly → L7 engine): the two
//! example plugins of `plugins/examples` on real captures, and misbehaving plugins (written
//! as WAT here) that must be rejected or disabled while everything else keeps being parsed.
#![cfg(feature = "wasm")]

mod common;

use std::path::{Path, PathBuf};

use deepflow_capture::pipeline::{Pipeline, PipelineConfig};
use deepflow_capture::source::{Next, open_file};
use deepflow_core::record::{L7FlowLog, L7Protocol, LogType};
use deepflow_protocols::capture::L7Observer;
use deepflow_protocols::wasm::{PluginKind, WasmError, WasmLimits, WasmPlugin, install_all};
use deepflow_protocols::{L7Config, L7Counters};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn example(name: &str) -> WasmPlugin {
    let dir = name.replace('_', "-");
    let path = repo().join("plugins/examples").join(dir).join(format!("{name}.wasm"));
    WasmPlugin::from_file(&path, WasmLimits::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture(dir: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir).join(file)
}

/// `common::analyze_with`, with `plugins` installed in the observer's engine first.
fn analyze(path: &Path, plugins: &[WasmPlugin]) -> (Vec<L7FlowLog>, L7Counters) {
    let mut obs = L7Observer::new(L7Config::default());
    install_all(obs.engine_mut(), plugins).expect("install plugins");
    let mut src = open_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut pipe = Pipeline::new(PipelineConfig::default(), obs);
    loop {
        match src.next_packet().unwrap() {
            Next::Packet(p) => pipe.process_raw(&p),
            Next::Idle => {}
            Next::End => break,
        }
    }
    pipe.finish();
    let obs = pipe.table_mut().observer_mut();
    (obs.drain_rows(), obs.engine().counters().clone())
}

fn by_id(rows: &[L7FlowLog], id: u32) -> &L7FlowLog {
    rows.iter().find(|r| r.request_id == Some(id)).unwrap_or_else(|| panic!("no row with id {id}: {rows:#?}"))
}

// ---------------------------------------------------------------- custom protocol (minikv)

fn check_minikv(rows: &[L7FlowLog]) {
    let custom: Vec<_> = rows.iter().filter(|r| r.l7_protocol == L7Protocol::Custom).collect();
    // conn 1: ids 1..=10 (7 is one-way), conn 2: 100..=103
    let mut ids: Vec<u32> = custom.iter().filter_map(|r| r.request_id).collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 101, 102, 103], "{custom:#?}");
    for r in &custom {
        assert_eq!(r.attribute("l7_protocol_str"), Some("minikv"));
        assert_eq!(r.version.as_deref(), Some("1"));
        assert_eq!(r.log_type, LogType::Session);
        assert_eq!(r.server_port, 7878);
    }
    let rows: Vec<L7FlowLog> = custom.into_iter().cloned().collect();
    let r = by_id(&rows, 1);
    assert_eq!((r.request_type.as_deref(), r.endpoint.as_deref()), (Some("PING"), Some("minikv/PING")));
    assert_eq!(r.response_status.name(), "ok");
    assert!(r.rrt.is_some());
    let r = by_id(&rows, 3);
    assert_eq!((r.request_type.as_deref(), r.request_resource.as_deref()), (Some("GET"), Some("user:1")));
    assert_eq!((r.response_code, r.response_result.as_deref()), (Some(0), Some("alice")));
    let r = by_id(&rows, 4);
    assert_eq!((r.response_status.name(), r.response_code), ("client_error", Some(1)));
    assert_eq!(r.response_exception.as_deref(), Some("no such key: user:404"));
    let r = by_id(&rows, 5);
    assert_eq!((r.response_status.name(), r.response_exception.as_deref()), ("client_error", Some("empty key")));
    let r = by_id(&rows, 6);
    assert_eq!((r.request_type.as_deref(), r.response_status.name()), (Some("OP9"), "server_error"));
    assert_eq!(r.response_exception.as_deref(), Some("unknown op 9"));
    let r = by_id(&rows, 7);
    assert_eq!((r.request_type.as_deref(), r.response_result.as_deref()), (Some("NOTIFY"), Some("cache flushed")));
    assert_eq!(r.rrt, None);
    let r = by_id(&rows, 8);
    assert_eq!((r.request_resource.as_deref(), r.request_length), (Some("blob"), Some(5 + 256 * 80)));
    let r = by_id(&rows, 9);
    assert_eq!(r.response_length, Some(256 * 80));
    // the request written in two pieces
    let r = by_id(&rows, 10);
    assert_eq!((r.request_type.as_deref(), r.request_resource.as_deref()), (Some("DEL"), Some("user:1")));
    assert_eq!(r.response_status.name(), "ok");
    // pipelined GETs answered in reverse order: paired by id, not by order
    assert_eq!(by_id(&rows, 101).response_result.as_deref(), Some("r"));
    assert_eq!(by_id(&rows, 102).response_status.name(), "client_error");
    assert_eq!(by_id(&rows, 102).request_resource.as_deref(), Some("revx"));
    assert_eq!(by_id(&rows, 103).response_result.as_deref(), Some("r"));
}

#[test]
fn custom_protocol_plugin_on_real_capture() {
    let plugin = example("custom_proto");
    assert_eq!((plugin.name(), plugin.kind()), ("minikv", PluginKind::Parser));
    let pcap = fixture("wasm_custom", "minikv.pcap");
    // without the plugin nothing is recognised
    let (rows, _) = analyze(&pcap, &[]);
    assert!(rows.is_empty(), "{rows:#?}");
    let (rows, c) = analyze(&pcap, std::slice::from_ref(&plugin));
    check_minikv(&rows);
    assert_eq!((c.parse_errors, c.unmatched_responses, c.timeouts), (0, 0, 0));
    let s = plugin.stats();
    assert!(!s.disabled, "{s:?}");
    assert_eq!(s.messages, 27, "{s:?}"); // 14 requests (one one-way) + 13 responses
}

#[test]
fn custom_protocol_plugin_split_and_truncated_frames() {
    use deepflow_core::{Direction, FlowInfo};
    use deepflow_protocols::{L7Engine, L7FlowState};
    let flow = FlowInfo {
        flow_id: 1,
        protocol: 6,
        client_ip: "10.0.0.1".parse().unwrap(),
        client_port: 40000,
        server_ip: "10.0.0.2".parse().unwrap(),
        server_port: 9999,
        tunnel: Default::default(),
        start_time_us: 0,
    };
    let frame = |ty: u8, op: u8, st: u8, id: u32, p: &[u8]| {
        let mut f = b"DK\x01".to_vec();
        f.extend([ty, op, st]);
        f.extend(id.to_be_bytes());
        f.extend((p.len() as u32).to_be_bytes());
        f.extend(p);
        f
    };
    let mut req = frame(0, 1, 0, 42, b"k1");
    req.extend(frame(0, 3, 0, 43, b"k2"));
    let resp = [frame(1, 3, 1, 43, b"gone"), frame(1, 1, 0, 42, b"v")].concat();
    let plugin = example("custom_proto");
    for cut in 0..=req.len() {
        let mut e = L7Engine::new(L7Config::default());
        plugin.install(&mut e).unwrap();
        let (mut st, mut rows) = (L7FlowState::default(), Vec::new());
        let (a, b) = req.split_at(cut);
        for part in [a, b].into_iter().filter(|p| !p.is_empty()) {
            e.on_payload(&mut st, &flow, Direction::ClientToServer, 10, part, &mut rows);
        }
        e.on_payload(&mut st, &flow, Direction::ServerToClient, 20, &resp, &mut rows);
        e.on_flow_end(&mut st, &flow, 30, &mut rows);
        assert_eq!(rows.len(), 2, "cut {cut}: {rows:#?}");
        assert_eq!(by_id(&rows, 42).response_result.as_deref(), Some("v"), "cut {cut}");
        assert_eq!(by_id(&rows, 43).response_exception.as_deref(), Some("gone"), "cut {cut}");
    }
    // every truncation: no panic, no row but timeouts/nothing
    for cut in 0..req.len() {
        let mut e = L7Engine::new(L7Config::default());
        plugin.install(&mut e).unwrap();
        let (mut st, mut rows) = (L7FlowState::default(), Vec::new());
        e.on_payload(&mut st, &flow, Direction::ClientToServer, 10, &req[..cut], &mut rows);
        e.on_flow_end(&mut st, &flow, 30, &mut rows);
        assert!(rows.iter().all(|r| r.response_status.name() == "timeout"), "cut {cut}: {rows:#?}");
    }
    assert!(!plugin.is_disabled());
}

// ---------------------------------------------------------------- HTTP business-id hook

#[test]
fn http_bizid_hook_on_orders_capture() {
    let hook = example("http_bizid");
    assert_eq!((hook.name(), hook.kind()), ("http-bizid", PluginKind::Hook));
    let pcap = fixture("wasm_http", "wasm_http.pcap");
    let (base, _) = analyze(&pcap, &[]);
    let (rows, _) = analyze(&pcap, std::slice::from_ref(&hook));
    assert_eq!(rows.len(), 6, "{rows:#?}");
    assert_eq!(base.len(), rows.len());
    let get = |res: &str| {
        rows.iter().find(|r| r.request_resource.as_deref() == Some(res)).unwrap_or_else(|| panic!("{res}: {rows:#?}"))
    };
    // header on the request, id in the response body too
    let r = get("/orders/1001");
    assert_eq!(r.attribute("order_id"), Some("1001"));
    assert_eq!(r.endpoint.as_deref(), Some("/orders/{id}"));
    // only in the response's JSON body
    let r = get("/orders/1002?verbose=1");
    assert_eq!(r.attribute("order_id"), Some("1002"));
    assert_eq!(r.endpoint.as_deref(), Some("/orders/{id}"));
    let r = get("/orders/9999");
    assert_eq!((r.attribute("order_id"), r.endpoint.as_deref()), (None, Some("/orders/{id}")));
    assert_eq!(r.response_code, Some(404));
    // a list: first order id of the body, endpoint untouched
    let r = get("/orders?page=2");
    assert_eq!((r.attribute("order_id"), r.endpoint.as_deref()), (Some("1001"), Some("/orders")));
    let r = get("/health");
    assert_eq!((r.attribute("order_id"), r.endpoint.as_deref()), (None, Some("/health")));
    // only in the JSON request body of a POST
    let r = rows.iter().find(|r| r.request_type.as_deref() == Some("POST")).unwrap();
    assert_eq!((r.attribute("order_id"), r.endpoint.as_deref()), (Some("A-77"), Some("/orders")));
    // everything else is what the engine gives without the hook
    for (a, b) in base.iter().zip(&rows) {
        assert_eq!((&a.request_resource, a.response_code, a.rrt), (&b.request_resource, b.response_code, b.rrt));
    }
    let s = hook.stats();
    assert!(!s.disabled && s.messages == 12 && s.changed >= 6, "{s:?}");
}

#[test]
fn http_bizid_hook_on_http1_capture_changes_nothing_there() {
    let hook = example("http_bizid");
    let pcap = common::fixture("http1");
    let (base, _) = analyze(&pcap, &[]);
    let (rows, _) = analyze(&pcap, std::slice::from_ref(&hook));
    assert_eq!(base, rows, "no request of http1.pcap has an order id or an /orders path");
    let s = hook.stats();
    assert!(!s.disabled && s.messages > 100 && s.changed == 0, "{s:?}");
}

// ---------------------------------------------------------------- misbehaving plugins

/// WAT of a plugin: ABI `abi`, info records, input buffer at 64 KiB, plus `body`.
fn wat(abi: i32, info: &[(&str, &str)], body: &str) -> String {
    let mut rec = Vec::new();
    for (k, v) in info {
        for s in [k, v] {
            rec.extend((s.len() as u32).to_le_bytes());
            rec.extend(s.as_bytes());
        }
    }
    let data: String = rec.iter().map(|b| format!("\\{b:02x}")).collect();
    format!(
        r#"(module
  (import "df" "emit" (func $emit (param i32 i32)))
  (memory (export "memory") 4)
  (data (i32.const 0) "{data}")
  (func (export "df_abi_version") (result i32) (i32.const {abi}))
  (func (export "df_alloc") (param i32) (result i32) (i32.const 65536))
  (func (export "df_info") (call $emit (i32.const 0) (i32.const {len})))
  {body}
)"#,
        len = rec.len()
    )
}

const PARSER_INFO: &[(&str, &str)] = &[("name", "bad"), ("ports", "7878"), ("pairing", "id")];
const HOOK_INFO: &[(&str, &str)] = &[("name", "bad-hook"), ("subscribe", "http")];
const PARSE_NOTHING: &str = r#"(func (export "df_parse") (param i32 i32 i32) (result i64) (i64.const -2))"#;

fn load(src: &str) -> Result<WasmPlugin, WasmError> {
    WasmPlugin::from_bytes(src.as_bytes(), WasmLimits::default())
}

#[test]
fn endless_loop_hits_fuel_limit_and_only_that_plugin_stops() {
    // probed first (same port hint, registered first), loops forever
    let bad = load(&wat(
        1,
        PARSER_INFO,
        &format!(r#"(func (export "df_probe") (param i32 i32 i32) (result i32) (loop $l (br $l)) (i32.const 1)) {PARSE_NOTHING}"#),
    ))
    .unwrap();
    let (rows, _) = analyze(&fixture("wasm_custom", "minikv.pcap"), &[bad.clone(), example("custom_proto")]);
    let s = bad.stats();
    assert!(s.disabled && s.fuel_exhausted == 1 && s.calls == 1, "{s:?}");
    assert!(s.last_error.as_deref().unwrap().contains("fuel"), "{s:?}");
    check_minikv(&rows);

    // the same in a hook: HTTP rows come out unchanged
    let bad_hook = load(&wat(
        1,
        HOOK_INFO,
        r#"(func (export "df_on_message") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0))"#,
    ))
    .unwrap();
    let pcap = common::fixture("http1");
    let (base, _) = analyze(&pcap, &[]);
    let (rows, _) = analyze(&pcap, std::slice::from_ref(&bad_hook));
    assert_eq!(base, rows);
    let s = bad_hook.stats();
    assert!(s.disabled && s.fuel_exhausted == 1 && s.calls == 1, "{s:?}");
}

#[test]
fn huge_allocation_hits_memory_limit() {
    // grows memory by 1 GiB on the first parse
    let bad = load(&wat(
        1,
        PARSER_INFO,
        r#"(func (export "df_probe") (param i32 i32 i32) (result i32) (i32.const 1))
           (func (export "df_parse") (param i32 i32 i32) (result i64)
             (drop (memory.grow (i32.const 16384))) (i64.const 14))"#,
    ))
    .unwrap();
    let (rows, c) = analyze(&fixture("wasm_custom", "minikv.pcap"), &[bad.clone(), example("custom_proto")]);
    let s = bad.stats();
    assert!(s.disabled && s.memory_limit == 1 && s.traps == 0, "{s:?}");
    assert!(s.last_error.as_deref().unwrap().contains("memory"), "{s:?}");
    // the first payload of the first connection went to the bad plugin and was dropped:
    // the rest is parsed by minikv
    let custom = rows.iter().filter(|r| r.attribute("l7_protocol_str") == Some("minikv")).count();
    assert!(custom >= 12, "{rows:#?}");
    assert!(c.detect_failed_attempts >= 1);

    // a module whose initial memory is above the limit is not loaded
    let big = wat(1, PARSER_INFO, PARSE_NOTHING)
        .replace("(memory (export \"memory\") 4)", "(memory (export \"memory\") 1024)");
    let e = load(&big.replace(
        PARSE_NOTHING,
        &format!("(func (export \"df_probe\") (param i32 i32 i32) (result i32) (i32.const 0)) {PARSE_NOTHING}"),
    ))
    .unwrap_err();
    assert!(matches!(e, WasmError::Instantiate(_)), "{e}");
}

#[test]
fn trap_disables_plugin_with_counter() {
    let bad = load(&wat(
        1,
        PARSER_INFO,
        r#"(func (export "df_probe") (param i32 i32 i32) (result i32) (i32.const 1))
           (func (export "df_parse") (param i32 i32 i32) (result i64) unreachable)"#,
    ))
    .unwrap();
    let (rows, _) = analyze(&fixture("wasm_custom", "minikv.pcap"), &[bad.clone(), example("custom_proto")]);
    let s = bad.stats();
    assert!(s.disabled && s.traps == 1 && s.calls == 2, "{s:?}");
    assert!(s.last_error.as_deref().unwrap().contains("unreachable"), "{s:?}");
    assert!(rows.iter().filter(|r| r.l7_protocol == L7Protocol::Custom).count() >= 12);

    // a hook that reads out of bounds
    let bad_hook = load(&wat(
        1,
        HOOK_INFO,
        r#"(func (export "df_on_message") (param i32 i32) (result i32) (i32.load (i32.const -4)))"#,
    ))
    .unwrap();
    let pcap = fixture("wasm_http", "wasm_http.pcap");
    let (rows, _) = analyze(&pcap, &[bad_hook.clone(), example("http_bizid")]);
    assert!(bad_hook.stats().disabled && bad_hook.stats().traps == 1);
    // the good hook installed after it still runs
    assert_eq!(rows.iter().filter(|r| r.endpoint.as_deref() == Some("/orders/{id}")).count(), 3);
}

#[test]
fn bad_output_disables_plugin() {
    // emits a record whose length runs past the end, as its message
    let bad = load(&wat(
        1,
        PARSER_INFO,
        r#"(func (export "df_probe") (param i32 i32 i32) (result i32) (i32.const 1))
           (func (export "df_parse") (param i32 i32 i32) (result i64)
             (i32.store (i32.const 200) (i32.const 1000))
             (call $emit (i32.const 200) (i32.const 6)) (i64.const 14))"#,
    ))
    .unwrap();
    analyze(&fixture("wasm_custom", "minikv.pcap"), std::slice::from_ref(&bad));
    let s = bad.stats();
    assert!(s.disabled && s.bad_output == 1, "{s:?}");
}

#[test]
fn load_errors_are_clear() {
    let e = load(&wat(2, PARSER_INFO, PARSE_NOTHING)).unwrap_err();
    assert!(matches!(e, WasmError::AbiVersion { found: 2, expected: 1 }), "{e}");
    assert!(e.to_string().contains("ABI version 2") && e.to_string().contains("rebuild"), "{e}");

    for bytes in [&b"\0asm\x01\0\0\0\xff\xff garbage"[..], b"", b"not wasm at all", b"\0asm"] {
        let e = WasmPlugin::from_bytes(bytes, WasmLimits::default()).unwrap_err();
        assert!(matches!(e, WasmError::Compile(_)), "{e}");
        assert!(e.to_string().starts_with("not a valid WebAssembly module"), "{e}");
    }
    // a truncated real plugin
    let good = std::fs::read(repo().join("plugins/examples/custom-proto/custom_proto.wasm")).unwrap();
    let e = WasmPlugin::from_bytes(&good[..good.len() / 2], WasmLimits::default()).unwrap_err();
    assert!(matches!(e, WasmError::Compile(_)), "{e}");
    // pushed by config: the same bytes, whole
    assert_eq!(WasmPlugin::from_bytes(&good, WasmLimits::default()).unwrap().name(), "minikv");

    let e = WasmPlugin::from_file(Path::new("/nonexistent/x.wasm"), WasmLimits::default()).unwrap_err();
    assert!(matches!(e, WasmError::Io { .. }), "{e}");
    // neither parser nor hook
    let e = load(&wat(1, PARSER_INFO, "")).unwrap_err();
    assert!(matches!(e, WasmError::MissingExport(_)), "{e}");
    // a hook without subscriptions, an unknown protocol
    let on = r#"(func (export "df_on_message") (param i32 i32) (result i32) (i32.const 0))"#;
    assert!(matches!(load(&wat(1, &[("name", "h")], on)).unwrap_err(), WasmError::Info(_)));
    let e = load(&wat(1, &[("name", "h"), ("subscribe", "http,nope")], on)).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    // unknown import
    let e = load(&wat(1, PARSER_INFO, PARSE_NOTHING).replace("(import \"df\" \"emit\"", "(import \"df\" \"nope\""))
        .unwrap_err();
    assert!(matches!(e, WasmError::Instantiate(_)), "{e}");
}
