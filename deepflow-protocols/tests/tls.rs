//! TLS handshake parser tests through the engine.
mod l7util;

use deepflow_core::record::{LogType, ResponseStatus};
use deepflow_protocols::L7Config;
use l7util::*;

fn u16b(v: usize) -> [u8; 2] {
    (v as u16).to_be_bytes()
}

fn ext(t: u16, data: &[u8]) -> Vec<u8> {
    [&t.to_be_bytes()[..], &u16b(data.len()), data].concat()
}

fn hs(t: u8, body: &[u8]) -> Vec<u8> {
    let l = body.len();
    [&[t, (l >> 16) as u8, (l >> 8) as u8, l as u8][..], body].concat()
}

fn record(ct: u8, body: &[u8]) -> Vec<u8> {
    [&[ct, 3, 3][..], &u16b(body.len()), body].concat()
}

fn client_hello(sni: &str, tls13: bool) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend([7u8; 32]);
    b.push(0); // session id
    b.extend([0, 4, 0x13, 0x01, 0xc0, 0x2f]);
    b.extend([1, 0]);
    let mut exts = Vec::new();
    let name = sni.as_bytes();
    let mut sni_list = vec![0];
    sni_list.extend(u16b(name.len()));
    sni_list.extend(name);
    exts.extend(ext(0, &[&u16b(sni_list.len())[..], &sni_list].concat()));
    let alpn = [&[2u8][..], b"h2", &[8], b"http/1.1"].concat();
    exts.extend(ext(16, &[&u16b(alpn.len())[..], &alpn].concat()));
    if tls13 {
        exts.extend(ext(43, &[6, 0x0a, 0x0a, 0x03, 0x04, 0x03, 0x03]));
    }
    b.extend(u16b(exts.len()));
    b.extend(exts);
    hs(1, &b)
}

fn server_hello(tls13: bool, cs: u16) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend([9u8; 32]);
    b.push(0);
    b.extend(cs.to_be_bytes());
    b.push(0);
    if tls13 {
        let e = ext(43, &[3, 4]);
        b.extend(u16b(e.len()));
        b.extend(e);
    }
    hs(2, &b)
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let l = content.len();
    let mut v = vec![tag];
    if l < 128 {
        v.push(l as u8);
    } else {
        v.extend([0x82, (l >> 8) as u8, l as u8]);
    }
    v.extend(content);
    v
}

fn cert(cn: &str) -> Vec<u8> {
    let cn_atv = der(0x30, &[der(0x06, &[0x55, 4, 3]), der(0x0c, cn.as_bytes())].concat());
    let subject = der(0x30, &der(0x31, &cn_atv));
    let issuer = der(0x30, &der(0x31, &der(0x30, &[der(0x06, &[0x55, 4, 10]), der(0x13, b"Test CA")].concat())));
    let validity = der(0x30, &[der(0x17, b"240101000000Z"), der(0x18, b"20341231235959Z")].concat());
    let tbs = der(
        0x30,
        &[
            der(0xa0, &der(0x02, &[2])),
            der(0x02, &[1, 2, 3]),
            der(0x30, &der(0x06, &[0x2a, 0x86, 0x48])),
            issuer,
            validity,
            subject,
            der(0x30, &[0u8; 200]), // stands in for the public key
        ]
        .concat(),
    );
    der(0x30, &[tbs, der(0x30, &der(0x06, &[1])), der(0x03, &[0; 64])].concat())
}

fn certificate_msg(cn: &str) -> Vec<u8> {
    let c = cert(cn);
    let l = c.len();
    let entry = [&[(l >> 16) as u8, (l >> 8) as u8, l as u8][..], &c].concat();
    let tl = entry.len();
    hs(11, &[&[(tl >> 16) as u8, (tl >> 8) as u8, tl as u8][..], &entry].concat())
}

fn tls12() -> Vec<Ev> {
    let ch = record(22, &client_hello("api.example.com", false));
    let server_flight = record(
        22,
        &[server_hello(false, 0xc02f), certificate_msg("api.example.com"), hs(12, &[1; 40]), hs(14, &[])].concat(),
    );
    let client2 = [record(22, &hs(16, &[5; 33])), record(20, &[1]), record(22, &[0xaa; 40])].concat();
    let server2 = [record(20, &[1]), record(22, &[0xbb; 40]), record(23, &[0xcc; 100])].concat();
    vec![d(C2S, ch), d(S2C, server_flight), d(C2S, client2), d(S2C, server2), d(C2S, record(23, &[0xdd; 300]))]
}

fn tls13() -> Vec<Ev> {
    let ch = record(22, &client_hello("h2.example.org", true));
    // ClientHello split over 3 segments
    let (a, rest) = ch.split_at(3);
    let (b, c) = rest.split_at(40);
    let server = [record(22, &server_hello(true, 0x1302)), record(20, &[1]), record(23, &[0xee; 500])].concat();
    vec![d(C2S, a), d(C2S, b), d(C2S, c), d(S2C, server), d(C2S, [record(20, &[1]), record(23, &[0xdd; 60])].concat())]
}

#[test]
fn tls13_client_hello_split_over_three_segments() {
    let (rows, c) = run_cfg(L7Config::default(), &flow(6, 443), &tls13());
    assert_eq!(c.parse_errors, 0);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let r = &rows[0];
    assert_eq!(r.log_type, LogType::Session);
    assert_eq!(r.l7_protocol.name(), "tls");
    assert_eq!(r.version.as_deref(), Some("1.3"));
    assert_eq!(r.request_type.as_deref(), Some("ClientHello"));
    assert_eq!(r.request_domain.as_deref(), Some("h2.example.org"));
    assert_eq!(r.request_resource.as_deref(), Some("h2.example.org"));
    assert_eq!(r.response_result.as_deref(), Some("ServerHello|ChangeCipherSpec"));
    assert_eq!(r.response_status, ResponseStatus::Ok);
    assert_eq!(r.attribute("alpn"), Some("h2,http/1.1"));
    assert_eq!(r.attribute("cipher_suite"), Some("TLS_AES_256_GCM_SHA384"));
    // the client's trailing ChangeCipherSpec: one-way session, ok
    assert_eq!(rows[1].log_type, LogType::Session);
    assert_eq!(rows[1].request_type.as_deref(), Some("ChangeCipherSpec"));
    assert_eq!(rows[1].response_status, ResponseStatus::Ok);
    assert_eq!(c.tls_encrypted_records, 2);
}

#[test]
fn tls12_full_handshake_with_certificate() {
    let (rows, c) = run_cfg(L7Config::default(), &flow(6, 443), &tls12());
    assert_eq!(c.parse_errors, 0);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let r = &rows[0];
    assert_eq!(r.version.as_deref(), Some("1.2"));
    assert_eq!(r.response_result.as_deref(), Some("ServerHello|Certificate|ServerKeyExchange|ServerHelloDone"));
    assert_eq!(r.attribute("cipher_suite"), Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"));
    assert_eq!(r.attribute("server_cert_subject_cn"), Some("api.example.com"));
    assert_eq!(r.attribute("server_cert_not_before"), Some("2024-01-01T00:00:00Z"));
    assert_eq!(r.attribute("server_cert_not_after"), Some("2034-12-31T23:59:59Z"));
    let r = &rows[1];
    assert_eq!(r.request_type.as_deref(), Some("ClientKeyExchange|ChangeCipherSpec"));
    assert_eq!(r.response_result.as_deref(), Some("ChangeCipherSpec"));
    assert_eq!(r.log_type, LogType::Session);
    assert_eq!(c.tls_encrypted_records, 4);
}

#[test]
fn handshake_message_spanning_records() {
    let ch = client_hello("span.example", false);
    let (a, b) = ch.split_at(30);
    let evs = vec![
        d(C2S, [record(22, a), record(22, b)].concat()),
        d(S2C, record(22, &[server_hello(false, 0x002f), hs(14, &[])].concat())),
    ];
    let (rows, c) = run_cfg(L7Config::default(), &flow(6, 443), &evs);
    assert_eq!(c.parse_errors, 0);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].request_domain.as_deref(), Some("span.example"));
    assert_eq!(rows[0].attribute("cipher_suite"), Some("TLS_RSA_WITH_AES_128_CBC_SHA"));
}

#[test]
fn alerts_set_status() {
    let f = flow(6, 443);
    let evs = vec![d(C2S, record(22, &client_hello("x", false))), d(S2C, record(21, &[2, 40]))];
    let rows = run(&f, &evs);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].response_status, ResponseStatus::ServerError);
    assert_eq!(rows[0].response_exception.as_deref(), Some("handshake_failure"));
    assert_eq!(rows[0].request_domain.as_deref(), Some("x"));

    let evs = vec![
        d(C2S, record(22, &client_hello("x", false))),
        d(S2C, record(22, &[server_hello(false, 0x002f), certificate_msg("x"), hs(14, &[])].concat())),
        d(C2S, record(21, &[2, 48])),
    ];
    let rows = run(&f, &evs);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].log_type, LogType::Session);
    assert_eq!(rows[1].response_status, ResponseStatus::ClientError);
    assert_eq!(rows[1].response_exception.as_deref(), Some("unknown_ca"));
}

#[test]
fn unknown_version_rejected() {
    let mut ch = client_hello("x", false);
    ch[4] = 0x09; // legacy_version 3.9
    let (rows, c) = run_cfg(L7Config::default(), &flow(6, 443), &[d(C2S, record(22, &ch))]);
    assert!(rows.is_empty());
    assert!(c.detect_failed_attempts >= 1);
}

#[test]
fn split_at_every_offset() {
    assert_split_invariant(&flow(6, 443), &tls12());
    assert_split_invariant(&flow(6, 443), &tls13());
}

#[test]
fn truncation_never_panics() {
    assert_truncation_safe(&flow(6, 443), &tls12());
    assert_truncation_safe(&flow(6, 443), &tls13());
}

#[test]
fn fuzz_50k() {
    let c = fuzz(&flow(6, 443), &[tls12(), tls13()], 50_000, 0x7777_1234_abcd_0001);
    assert!(c.messages > 10_000, "{c:?}");
}

#[test]
fn der_walk_handles_garbage() {
    use deepflow_protocols::l7::tls::parse_certificate;
    let c = cert("cn");
    let info = parse_certificate(&c).unwrap();
    assert_eq!(info.subject_cn.as_deref(), Some("cn"));
    for k in 0..c.len() {
        let _ = parse_certificate(&c[..k]);
    }
    let mut rng = XorShift(99);
    for _ in 0..20_000 {
        let mut m = c.clone();
        mutate(&mut rng, &mut m);
        let _ = parse_certificate(&m);
    }
}
