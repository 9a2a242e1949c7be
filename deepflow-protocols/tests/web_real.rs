//! HTTP/1, HTTP/2, DNS and TLS on real captures (nginx, curl, nghttp, h2load, ab, dnsmasq, dig,
//! openssl; see tests/fixtures/README.md) through the whole pipeline, compared with tshark's
//! decode of the same files. Skips with a message when tshark is missing.

mod common;

use std::collections::BTreeMap;

use common::{column, fixture, have_tshark, sessions, tshark_fields};
use deepflow_core::record::{L7FlowLog, L7Protocol};

/// Multiset of values.
fn bag<I: IntoIterator<Item = String>>(it: I) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for v in it {
        *m.entry(v).or_insert(0) += 1;
    }
    m
}

fn of(rows: &[L7FlowLog], p: L7Protocol) -> Vec<&L7FlowLog> {
    rows.iter().filter(|r| r.l7_protocol == p).collect()
}

macro_rules! need_tshark {
    () => {
        if !have_tshark() {
            eprintln!("SKIP: tshark not installed (scripts/install-deps.sh test)");
            return;
        }
    };
}

#[test]
fn http1_requests_and_statuses_match_tshark() {
    need_tshark!();
    let pcap = fixture("http1");
    let rows = sessions(&pcap);
    let http = of(&rows, L7Protocol::Http1);
    let t = tshark_fields(&pcap, "http.request", &["http.request.method", "http.request.uri", "http.host"]);
    let theirs = bag(column(&t, 0).into_iter().zip(column(&t, 1)).map(|(m, u)| format!("{m} {u}")));
    let ours = bag(http
        .iter()
        .filter_map(|r| Some(format!("{} {}", r.request_type.as_deref()?, r.request_resource.as_deref()?))));
    assert!(theirs.values().sum::<usize>() > 40, "{theirs:?}");
    assert_eq!(ours, theirs, "HTTP/1 method + path");
    assert_eq!(bag(http.iter().filter_map(|r| r.request_domain.clone())), bag(column(&t, 2)), "HTTP/1 Host");
    let codes = tshark_fields(&pcap, "http.response", &["http.response.code"]);
    assert_eq!(
        bag(http.iter().filter_map(|r| r.response_code.map(|c| c.to_string()))),
        bag(column(&codes, 0)),
        "HTTP/1 status codes"
    );
}

#[test]
fn http2_requests_and_statuses_match_tshark() {
    need_tshark!();
    let pcap = fixture("http2");
    let rows = sessions(&pcap);
    let h2 = of(&rows, L7Protocol::Http2);
    let t = tshark_fields(
        &pcap,
        "http2.type == 1",
        &["http2.headers.method", "http2.headers.path", "http2.headers.status"],
    );
    let theirs = bag(column(&t, 0).into_iter().zip(column(&t, 1)).map(|(m, u)| format!("{m} {u}")));
    let ours = bag(h2
        .iter()
        .filter_map(|r| Some(format!("{} {}", r.request_type.as_deref()?, r.request_resource.as_deref()?))));
    assert!(theirs.values().sum::<usize>() > 20, "{theirs:?}");
    assert_eq!(ours, theirs, "HTTP/2 :method + :path");
    assert_eq!(
        bag(h2.iter().filter_map(|r| r.response_code.map(|c| c.to_string()))),
        bag(column(&t, 2)),
        "HTTP/2 :status"
    );
    assert!(h2.iter().all(|r| r.version.as_deref() == Some("2")));
}

#[test]
fn dns_queries_and_rcodes_match_tshark() {
    need_tshark!();
    let pcap = fixture("dns");
    let rows = sessions(&pcap);
    let dns = of(&rows, L7Protocol::Dns);
    let q = tshark_fields(&pcap, "dns.flags.response == 0", &["dns.qry.name", "dns.id"]);
    // One row per query: a query's name (tshark prints `<Root>` for the root).
    let theirs = bag(column(&q, 0).into_iter().map(|n| if n == "<Root>" { String::new() } else { n }));
    let ours = bag(dns.iter().map(|r| r.request_resource.clone().unwrap_or_default()));
    assert!(theirs.values().sum::<usize>() > 20, "{theirs:?}");
    assert_eq!(ours, theirs, "DNS query names");
    let r = tshark_fields(&pcap, "dns.flags.response == 1", &["dns.flags.rcode"]);
    assert_eq!(
        bag(dns.iter().filter_map(|r| r.response_code.map(|c| c.to_string()))),
        bag(column(&r, 0)),
        "DNS rcodes"
    );
    // NXDOMAIN is a client error, REFUSED a server error (L7_FIELDS.md).
    for row in &dns {
        match row.response_code {
            Some(3) => assert_eq!(row.response_status.name(), "client_error"),
            Some(5) => assert_eq!(row.response_status.name(), "server_error"),
            Some(0) => assert_eq!(row.response_status.name(), "ok"),
            _ => {}
        }
    }
}

#[test]
fn tls_server_names_match_tshark() {
    need_tshark!();
    let pcap = fixture("tls");
    let rows = sessions(&pcap);
    let tls = of(&rows, L7Protocol::Tls);
    let t = tshark_fields(&pcap, "tls.handshake.type == 1", &["tls.handshake.extensions_server_name"]);
    let hellos = t.len();
    let theirs = bag(column(&t, 0));
    let ours = bag(tls.iter().filter_map(|r| r.request_domain.clone()));
    assert!(theirs.values().sum::<usize>() >= 5, "{theirs:?}");
    assert_eq!(ours, theirs, "TLS SNI");
    let ours_hellos =
        tls.iter().filter(|r| r.request_type.as_deref().is_some_and(|t| t.contains("ClientHello"))).count();
    assert_eq!(ours_hellos, hellos, "ClientHello count");
}

/// HTTP/1.1 `Upgrade: h2c` (curl --http2 against hypercorn): the `101` ends the HTTP/1 session
/// and the HTTP/2 parser takes over, with the upgraded request as stream 1, so its response
/// (sent only as HTTP/2) is paired with the method and path of the HTTP/1.1 request.
#[test]
fn h2c_upgrade_continues_as_http2() {
    need_tshark!();
    let pcap = fixture("h2c");
    let rows = sessions(&pcap);
    let h1 = of(&rows, L7Protocol::Http1);
    let h2 = of(&rows, L7Protocol::Http2);
    let req = tshark_fields(&pcap, "http.request", &["http.request.method", "http.request.uri"]);
    let up = tshark_fields(&pcap, "http.response", &["http.response.code"]);
    let st = tshark_fields(&pcap, "http2.headers.status", &["http2.headers.status"]);
    assert_eq!(req.len(), 3, "{req:?}");
    // HTTP/1: each upgrade request paired with its 101
    assert_eq!(bag(h1.iter().filter_map(|r| r.response_code.map(|c| c.to_string()))), bag(column(&up, 0)));
    assert!(h1.iter().all(|r| r.response_code == Some(101)), "{h1:?}");
    // HTTP/2: stream 1 of each connection carries the upgraded request's method + path and the
    // status tshark sees in the HTTP/2 HEADERS
    let paths = bag(column(&req, 0).into_iter().zip(column(&req, 1)).map(|(m, u)| format!("{m} {u}")));
    let ours = bag(h2
        .iter()
        .filter_map(|r| Some(format!("{} {}", r.request_type.as_deref()?, r.request_resource.as_deref()?))));
    assert_eq!(ours, paths, "HTTP/2 stream 1 method + path");
    assert_eq!(bag(h2.iter().filter_map(|r| r.response_code.map(|c| c.to_string()))), bag(column(&st, 0)));
    let big = h2.iter().find(|r| r.request_resource.as_deref() == Some("/big")).expect("/big");
    assert_eq!(big.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert!(big.response_length.unwrap_or(0) >= 20_000, "{big:?}");
}
