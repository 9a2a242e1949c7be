//! DNS parser tests through the engine.
mod l7util;

use deepflow_core::record::{LogType, ResponseStatus};
use deepflow_protocols::L7Config;
use l7util::*;

fn name(n: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for l in n.split('.').filter(|l| !l.is_empty()) {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
    v
}

fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar].iter().flat_map(|x| x.to_be_bytes()).collect()
}

fn query(id: u16, qname: &str, qtype: u16) -> Vec<u8> {
    let mut m = header(id, 0x0100, 1, 0, 0, 0);
    m.extend(name(qname));
    m.extend(qtype.to_be_bytes());
    m.extend(1u16.to_be_bytes());
    m
}

/// Response to `qname` A with a CNAME (compressed) and two A records, plus an NS authority.
fn response_a(id: u16, qname: &str) -> Vec<u8> {
    let mut m = header(id, 0x8180, 1, 3, 1, 0);
    m.extend(name(qname));
    m.extend(1u16.to_be_bytes());
    m.extend(1u16.to_be_bytes());
    // CNAME: name = pointer to qname (offset 12), target "x." + pointer
    m.extend([0xc0, 12]);
    m.extend(5u16.to_be_bytes());
    m.extend(1u16.to_be_bytes());
    m.extend(300u32.to_be_bytes());
    m.extend(4u16.to_be_bytes());
    m.extend([1, b'x', 0xc0, 12]);
    for ip in [[1, 2, 3, 4], [5, 6, 7, 8]] {
        m.extend([0xc0, 12]);
        m.extend(1u16.to_be_bytes());
        m.extend(1u16.to_be_bytes());
        m.extend(60u32.to_be_bytes());
        m.extend(4u16.to_be_bytes());
        m.extend(ip);
    }
    // NS authority: ns1.<qname> compressed
    m.extend([0xc0, 12]);
    m.extend(2u16.to_be_bytes());
    m.extend(1u16.to_be_bytes());
    m.extend(3600u32.to_be_bytes());
    m.extend(6u16.to_be_bytes());
    m.extend([3, b'n', b's', b'1', 0xc0, 12]);
    m
}

fn response_rcode(id: u16, qname: &str, qtype: u16, rcode: u16) -> Vec<u8> {
    let mut m = header(id, 0x8180 | rcode, 1, 0, 0, 0);
    m.extend(name(qname));
    m.extend(qtype.to_be_bytes());
    m.extend(1u16.to_be_bytes());
    m
}

fn tcp(m: &[u8]) -> Vec<u8> {
    let mut v = (m.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(m);
    v
}

#[test]
fn udp_query_response_fields() {
    let f = flow(17, 53);
    let rows = run(&f, &[d(C2S, query(0xbeef, "www.example.com", 1)), d(S2C, response_a(0xbeef, "www.example.com"))]);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.log_type, LogType::Session);
    assert_eq!(r.l7_protocol.name(), "dns");
    assert_eq!(r.protocol, "UDP");
    assert_eq!(r.request_type.as_deref(), Some("A"));
    assert_eq!(r.request_domain.as_deref(), Some("www.example.com"));
    assert_eq!(r.request_resource.as_deref(), Some("www.example.com"));
    assert_eq!(r.endpoint.as_deref(), Some("www.example.com"));
    assert_eq!(r.request_id, Some(0xbeef));
    assert_eq!(r.response_code, Some(0));
    assert_eq!(r.response_status, ResponseStatus::Ok);
    assert_eq!(
        r.response_result.as_deref(),
        Some("CNAME; A=1.2.3.4 TTL=60; A=5.6.7.8 TTL=60; NS=ns1.www.example.com TTL=3600")
    );
    assert_eq!(r.attribute("opcode"), Some("QUERY"));
    assert_eq!(r.rrt, Some(1000));
}

#[test]
fn statuses_and_types() {
    let f = flow(17, 53);
    let cases: &[(u16, u16, ResponseStatus, &str)] = &[
        (28, 3, ResponseStatus::ClientError, "AAAA"),
        (15, 1, ResponseStatus::ClientError, "MX"),
        (16, 2, ResponseStatus::ServerError, "TXT"),
        (65, 5, ResponseStatus::ServerError, "HTTPS"),
        (64, 0, ResponseStatus::Ok, "SVCB"),
        (65280, 0, ResponseStatus::Ok, "Unknown(65280)"),
    ];
    for &(qt, rcode, st, tn) in cases {
        let rows = run(&f, &[d(C2S, query(7, "a.b", qt)), d(S2C, response_rcode(7, "a.b", qt, rcode))]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].response_status, st, "{tn}");
        assert_eq!(rows[0].request_type.as_deref(), Some(tn));
        assert_eq!(rows[0].response_code, Some(rcode as i32));
        let domain = if qt == 28 { Some("a.b") } else { None };
        assert_eq!(rows[0].request_domain.as_deref(), domain);
    }
    // unconcerned NXDOMAIN suffix → ok
    let cfg = L7Config { dns_unconcerned_nxdomain_suffixes: vec!["cluster.local".into()], ..L7Config::default() };
    let (rows, _) = run_cfg(
        cfg,
        &f,
        &[d(C2S, query(9, "svc.ns.cluster.local", 1)), d(S2C, response_rcode(9, "svc.ns.cluster.local", 1, 3))],
    );
    assert_eq!(rows[0].response_status, ResponseStatus::Ok);
}

#[test]
fn pairs_by_id_out_of_order_and_times_out() {
    let f = flow(17, 53);
    let rows = run(
        &f,
        &[
            d(C2S, query(1, "one.io", 1)),
            d(C2S, query(2, "two.io", 28)),
            d(S2C, response_rcode(2, "two.io", 28, 0)),
            d(C2S, query(3, "three.io", 1)),
            d(S2C, response_rcode(1, "one.io", 1, 0)),
        ],
    );
    let got: Vec<_> =
        rows.iter().map(|r| (r.request_id.unwrap(), r.request_resource.clone().unwrap(), r.response_status)).collect();
    assert_eq!(
        got,
        vec![
            (2, "two.io".into(), ResponseStatus::Ok),
            (1, "one.io".into(), ResponseStatus::Ok),
            (3, "three.io".into(), ResponseStatus::Timeout),
        ]
    );
}

#[test]
fn tcp_length_prefixed() {
    let f = flow(6, 53);
    let mut c = tcp(&query(5, "x.org", 2));
    c.extend(tcp(&query(6, "y.org", 12)));
    let mut s = tcp(&response_rcode(6, "y.org", 12, 0));
    s.extend(tcp(&response_a(5, "x.org")));
    let rows = run(&f, &[d(C2S, &c), d(S2C, &s)]);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].request_type.as_deref(), Some("PTR"));
    assert_eq!(rows[1].request_type.as_deref(), Some("NS"));
    assert!(rows[1].response_result.as_deref().unwrap().contains("A=1.2.3.4"));
}

#[test]
fn compression_loops_are_errors() {
    let f = flow(17, 53);
    // query name is a pointer to itself
    let mut m = header(1, 0x0100, 1, 0, 0, 0);
    m.extend([0xc0, 12, 0, 1, 0, 1]);
    // two pointers pointing at each other inside a response answer
    let mut r = header(1, 0x8180, 1, 1, 0, 0);
    r.extend(name("a.b"));
    r.extend([0, 1, 0, 1]);
    let at = r.len() as u8;
    r.extend([0xc0, at + 2, 0xc0, at]);
    r.extend([0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 1, 1, 1]);
    let (rows, c) = run_cfg(L7Config::default(), &f, &[d(C2S, query(1, "a.b", 1)), d(S2C, &r), d(C2S, &m)]);
    assert!(c.parse_errors >= 1, "{c:?}");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].response_status, ResponseStatus::Timeout);
    assert!(deepflow_protocols::l7::dns::read_name(&m, 12).is_none());
}

fn conversations() -> Vec<Vec<Ev>> {
    vec![
        vec![d(C2S, tcp(&query(5, "x.org", 1))), d(S2C, tcp(&response_a(5, "x.org")))],
        vec![
            d(C2S, [tcp(&query(5, "x.org", 1)), tcp(&query(6, "z.org", 33))].concat()),
            d(S2C, [tcp(&response_rcode(6, "z.org", 33, 3)), tcp(&response_a(5, "x.org"))].concat()),
        ],
    ]
}

#[test]
fn split_at_every_offset_tcp() {
    for conv in conversations() {
        assert_split_invariant(&flow(6, 53), &conv);
    }
}

#[test]
fn truncation_never_panics() {
    for conv in conversations() {
        assert_truncation_safe(&flow(6, 53), &conv);
    }
    let udp = vec![d(C2S, query(1, "a.b", 1)), d(S2C, response_a(1, "a.b"))];
    assert_truncation_safe(&flow(17, 53), &udp);
}

#[test]
fn fuzz_50k() {
    let udp = vec![
        vec![d(C2S, query(1, "www.example.com", 1)), d(S2C, response_a(1, "www.example.com"))],
        vec![d(C2S, query(2, "b.c", 28)), d(S2C, response_rcode(2, "b.c", 28, 3))],
    ];
    let c = fuzz(&flow(17, 53), &udp, 30_000, 0xdead_beef_1234_5678);
    assert!(c.messages > 5_000, "{c:?}");
    let c = fuzz(&flow(6, 53), &conversations(), 20_000, 0x0bad_cafe_f00d_0001);
    assert!(c.messages > 5_000, "{c:?}");
}
