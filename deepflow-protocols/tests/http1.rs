//! HTTP/1 parser tests through the engine.
mod l7util;

use deepflow_core::record::{LogType, ResponseStatus};
use deepflow_protocols::{EmitMode, L7Config, L7Engine, L7FlowState};
use l7util::*;

fn http() -> deepflow_core::FlowInfo {
    flow(6, 8080)
}

fn conversations() -> Vec<Vec<Ev>> {
    vec![
        vec![
            d(
                C2S,
                "GET /api/v1/users/42?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\nX-Request-ID: r-1\r\ntraceparent: 00-aaaa-bbbb-01\r\n\r\n",
            ),
            d(S2C, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Request-ID: r-2\r\n\r\nhello"),
        ],
        vec![
            d(
                C2S,
                "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n0\r\nX-Trailer: t\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
            ),
            d(
                S2C,
                "HTTP/1.1 201 Created\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            ),
        ],
        vec![
            d(
                C2S,
                "HEAD /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c HTTP/1.1\r\nHost: h\r\n\r\n",
            ),
            d(
                S2C,
                "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            ),
        ],
        vec![
            d(C2S, "PUT /obj HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"),
            d(S2C, "HTTP/1.1 100 Continue\r\n\r\n"),
            d(C2S, "data"),
            d(S2C, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\nno"),
        ],
        vec![
            d(C2S, "GET /old HTTP/1.0\r\nHost: h\r\n\r\n"),
            d(S2C, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close"),
        ],
        vec![
            d(C2S, "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            d(
                S2C,
                [
                    &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"[..],
                    b"\x81\x05hello",
                ]
                .concat(),
            ),
            d(C2S, b"\x81\x85\x00\x00\x00\x00hello"),
        ],
    ]
}

#[test]
fn simple_get_fields_and_trace() {
    let rows = run(&http(), &conversations()[0]);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.log_type, LogType::Session);
    assert_eq!(r.l7_protocol.name(), "http");
    assert_eq!(r.version.as_deref(), Some("1.1"));
    assert_eq!(r.request_type.as_deref(), Some("GET"));
    assert_eq!(r.request_domain.as_deref(), Some("example.com"));
    assert_eq!(r.request_resource.as_deref(), Some("/api/v1/users/42?x=1"));
    assert_eq!(r.endpoint.as_deref(), Some("/api/v1"));
    assert_eq!(r.response_code, Some(200));
    assert_eq!(r.response_status, ResponseStatus::Ok);
    assert_eq!(r.response_length, Some(5));
    assert_eq!(r.request_length, None);
    assert_eq!(r.trace_id.as_deref(), Some("aaaa"));
    assert_eq!(r.span_id.as_deref(), Some("bbbb"));
    assert_eq!(r.x_request_id_0.as_deref(), Some("r-1"));
    assert_eq!(r.x_request_id_1.as_deref(), Some("r-2"));
    assert_eq!(r.attribute("http_user_agent"), Some("curl/8.0"));
    assert_eq!((r.start_time, r.end_time, r.rrt), (1_001_000, 1_002_000, Some(1000)));
    assert_eq!(r.protocol, "TCP");
    let json = serde_json::to_value(r).unwrap();
    assert_eq!(json["type"], "session");
    assert_eq!(json["l7_protocol"], "http");
    assert_eq!(json["response_status"], "ok");
    assert!(json["request_id"].is_null());
}

#[test]
fn chunked_with_extensions_trailers_and_pipelining() {
    let (rows, c) = run_cfg(L7Config::default(), &http(), &conversations()[1]);
    assert_eq!(c.parse_errors, 0);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].request_type.as_deref(), Some("POST"));
    assert_eq!(rows[0].response_code, Some(201));
    assert_eq!(rows[1].request_resource.as_deref(), Some("/next"));
    assert_eq!(rows[1].response_code, Some(404));
    assert_eq!(rows[1].response_status, ResponseStatus::ClientError);
}

#[test]
fn head_304_204_have_no_body() {
    let (rows, c) = run_cfg(L7Config::default(), &http(), &conversations()[2]);
    assert_eq!(c.parse_errors, 0);
    let got: Vec<_> = rows.iter().map(|r| (r.request_resource.clone().unwrap(), r.response_code.unwrap())).collect();
    assert_eq!(got, vec![("/a".into(), 200), ("/b".into(), 304), ("/c".into(), 204)]);
    assert_eq!(rows[0].response_length, Some(1000));
}

#[test]
fn expect_100_continue() {
    let (rows, c) = run_cfg(L7Config::default(), &http(), &conversations()[3]);
    assert_eq!(c.parse_errors, 0);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].request_type.as_deref(), Some("PUT"));
    assert_eq!(rows[0].request_length, Some(4));
    assert_eq!(rows[0].response_code, Some(500));
    assert_eq!(rows[0].response_status, ResponseStatus::ServerError);
}

#[test]
fn expect_100_continue_rejected_without_body() {
    let evs = vec![
        d(C2S, "PUT /obj HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"),
        d(S2C, "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n"),
        d(C2S, "GET /after HTTP/1.1\r\nHost: h\r\n\r\n"),
        d(S2C, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ];
    let (rows, c) = run_cfg(L7Config::default(), &http(), &evs);
    assert_eq!(c.parse_errors, 0);
    let got: Vec<_> = rows.iter().map(|r| (r.request_resource.clone().unwrap(), r.response_code.unwrap())).collect();
    assert_eq!(got, vec![("/obj".into(), 417), ("/after".into(), 200)]);
}

#[test]
fn close_delimited_body_ends_with_flow() {
    let rows = run(&http(), &conversations()[4]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].version.as_deref(), Some("1.0"));
    assert_eq!(rows[0].response_code, Some(200));
    // the response ends when the flow ends (flow end is 1000 µs after the last segment)
    assert_eq!(rows[0].end_time, 1_003_000);
}

#[test]
fn websocket_upgrade_stops_parsing() {
    let f = http();
    let mut e = L7Engine::new(L7Config::default());
    let mut st = L7FlowState::default();
    let mut out = Vec::new();
    for (i, ev) in conversations()[5].iter().enumerate() {
        if let Ev::Data(dir, b) = ev {
            e.on_payload(&mut st, &f, *dir, 1000 + i as u64, b, &mut out);
        }
    }
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].response_code, Some(101));
    assert_eq!(out[0].response_status, ResponseStatus::Ok);
    assert!(st.is_ignored());
    assert_eq!(st.protocol().unwrap().name(), "http");
    assert_eq!(e.counters().parse_errors, 0);
    assert!(e.counters().ignored_bytes > 0);
}

#[test]
fn many_requests_per_keepalive_flow() {
    let f = http();
    let mut e = L7Engine::new(L7Config::default());
    let mut st = L7FlowState::default();
    let mut out = Vec::new();
    for i in 0..1000u64 {
        let req = format!("GET /item/{i} HTTP/1.1\r\nHost: h\r\n\r\n");
        e.on_payload(&mut st, &f, C2S, i * 10, req.as_bytes(), &mut out);
        e.on_payload(&mut st, &f, S2C, i * 10 + 3, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", &mut out);
    }
    assert_eq!(out.len(), 1000);
    assert!(out.iter().all(|r| r.rrt == Some(3)));
    assert_eq!(out[999].request_resource.as_deref(), Some("/item/999"));
    assert_eq!(st.pending_requests(), 0);
}

#[test]
fn timeout_pending_cap_and_messages_mode() {
    let f = http();
    let cfg = L7Config { max_pending_requests: 2, response_timeout_ms: 1000, ..L7Config::default() };
    let mut e = L7Engine::new(cfg);
    let mut st = L7FlowState::default();
    let mut out = Vec::new();
    e.on_payload(
        &mut st,
        &f,
        C2S,
        1_000_000,
        b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n",
        &mut out,
    );
    assert_eq!(e.counters().pending_dropped, 1);
    e.on_tick(&mut st, &f, 1_500_000, &mut out);
    assert!(out.is_empty());
    e.on_tick(&mut st, &f, 2_000_000, &mut out);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|r| r.response_status == ResponseStatus::Timeout && r.log_type == LogType::Request));
    assert_eq!(out[0].request_resource.as_deref(), Some("/2"));
    assert_eq!(e.counters().timeouts, 2);

    // messages mode: request row, response row with rrt
    let cfg = L7Config { emit: EmitMode::Messages, ..L7Config::default() };
    let (rows, _) = run_cfg(cfg, &f, &conversations()[0]);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].log_type, LogType::Request);
    assert_eq!(rows[0].response_status, ResponseStatus::Unknown);
    assert_eq!(rows[1].log_type, LogType::Response);
    assert_eq!(rows[1].rrt, Some(1000));
    assert_eq!(rows[1].x_request_id_1.as_deref(), Some("r-2"));
}

#[test]
fn gap_resyncs_and_oversize_is_counted() {
    let f = http();
    let evs = vec![
        d(C2S, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"),
        d(S2C, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"),
        Ev::Gap(S2C, 50),
        d(S2C, "tail of the body\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        d(C2S, "GET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
        d(S2C, "HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n"),
    ];
    let (rows, c) = run_cfg(L7Config::default(), &f, &evs);
    assert_eq!(c.gaps, 1);
    assert_eq!(c.gap_bytes, 50);
    assert!(rows.iter().any(|r| r.request_resource.as_deref() == Some("/b")), "{rows:?}");
    assert!(rows.iter().any(|r| r.response_code == Some(503)));

    // a header block that never ends is dropped at the cap
    let cfg = L7Config { max_buffered_bytes: 2048, ..L7Config::default() };
    let mut e = L7Engine::new(cfg);
    let mut st = L7FlowState::default();
    let mut out = Vec::new();
    e.on_payload(&mut st, &f, C2S, 1, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", &mut out);
    e.on_payload(&mut st, &f, C2S, 2, b"GET / HTTP/1.1\r\n", &mut out);
    for _ in 0..100 {
        e.on_payload(&mut st, &f, C2S, 3, b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", &mut out);
    }
    assert!(e.counters().parse_errors + e.counters().oversize >= 1, "{:?}", e.counters());
}

#[test]
fn not_http_is_given_up() {
    let f = http();
    let mut e = L7Engine::new(L7Config::default());
    let mut st = L7FlowState::default();
    let mut out = Vec::new();
    for i in 0..20 {
        e.on_payload(&mut st, &f, C2S, i, b"\x00\x01binary junk that is nothing", &mut out);
    }
    assert!(st.is_ignored());
    assert_eq!(st.protocol(), None);
    assert_eq!(e.counters().flows_ignored, 1);
    assert_eq!(e.counters().detect_failed_attempts, 8);
}

#[test]
fn endpoint_rules() {
    use deepflow_protocols::l7::http1::http_endpoint;
    assert_eq!(http_endpoint("/a/b/c?d", 2).as_deref(), Some("/a/b"));
    assert_eq!(http_endpoint("//a//b", 2).as_deref(), Some("/a/b"));
    assert_eq!(http_endpoint("/", 2).as_deref(), Some("/"));
    assert_eq!(http_endpoint("/a?x=/y/z", 2).as_deref(), Some("/a"));
    assert_eq!(http_endpoint("http://h:80/p/q/r", 1).as_deref(), Some("/p"));
    assert_eq!(http_endpoint("/a/b", 0), None);
}

#[test]
fn split_at_every_offset() {
    for conv in conversations() {
        assert_split_invariant(&http(), &conv);
    }
}

#[test]
fn truncation_never_panics() {
    for conv in conversations() {
        assert_truncation_safe(&http(), &conv);
    }
}

#[test]
fn fuzz_50k() {
    let c = fuzz(&http(), &conversations(), 50_000, 0x1234_5678_9abc_def1);
    assert!(c.messages > 10_000, "{c:?}");
}

#[test]
fn idle_flow_state_is_small() {
    assert!(std::mem::size_of::<L7FlowState>() <= 16);
}
