//! A tiny HTTP(S)/1.1 server on 127.0.0.1 that replays recorded apiserver responses.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s").join(name)
}

/// One canned response.
#[derive(Clone, Debug)]
pub enum Resp {
    /// Status and JSON body (Content-Length).
    Json(u16, String),
    /// A chunked watch stream, one chunk per line; ends cleanly.
    Stream(String),
    /// A chunked watch stream cut after `n` bytes (connection closed mid-chunk).
    CutStream(String, usize),
    /// A JSON body whose Content-Length promises more than is sent.
    CutBody(String, usize),
}

type Routes = HashMap<(String, bool), VecDeque<Resp>>;

pub struct TestServer {
    pub addr: SocketAddr,
    pub tls: bool,
    routes: Arc<Mutex<Routes>>,
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

pub const TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.test-token.signature";

impl TestServer {
    pub fn start(tls: bool) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let routes: Arc<Mutex<Routes>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let tls_config = tls.then(server_tls_config);
        {
            let (routes, requests, stop) = (routes.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                // bounded: the server ends with the test process or when stopped
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                            let (routes, requests) = (routes.clone(), requests.clone());
                            let tls_config = tls_config.clone();
                            std::thread::spawn(move || match tls_config {
                                Some(cfg) => {
                                    let conn = rustls::ServerConnection::new(cfg).unwrap();
                                    let mut s = rustls::StreamOwned::new(conn, s);
                                    serve(&mut s, &routes, &requests);
                                    s.conn.send_close_notify();
                                    let _ = s.flush();
                                }
                                None => {
                                    let mut s = s;
                                    serve(&mut s, &routes, &requests);
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        TestServer { addr, tls, routes, requests, stop }
    }

    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.tls { "https" } else { "http" }, self.addr.port())
    }

    /// Queues a response for `path` (list when `watch` is false, watch otherwise).
    pub fn push(&self, path: &str, watch: bool, r: Resp) {
        self.routes.lock().unwrap().entry((path.to_string(), watch)).or_default().push_back(r);
    }

    pub fn list(&self, path: &str, file: &str) {
        self.push(path, false, Resp::Json(200, fixture(file)));
    }

    pub fn requests_for(&self, path: &str) -> Vec<String> {
        self.requests.lock().unwrap().iter().filter(|r| r.starts_with(path)).cloned().collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn server_tls_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixture_path("tls/apiserver.crt")).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(fixture_path("tls/apiserver.key")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(cfg)
}

fn serve<S: Read + Write>(s: &mut S, routes: &Mutex<Routes>, requests: &Mutex<Vec<String>>) {
    let mut r = BufReader::new(&mut *s);
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut auth = String::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some(v) = h.strip_prefix("authorization: ").or_else(|| h.strip_prefix("Authorization: ")) {
            auth = v.trim().to_string();
        }
    }
    drop(r);
    requests.lock().unwrap().push(target.clone());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    let resp = if auth != format!("Bearer {TOKEN}") {
        Resp::Json(401, super_fixture("status-401.json"))
    } else {
        let next = routes.lock().unwrap().get_mut(&(path.to_string(), watch)).and_then(|q| q.pop_front());
        match next {
            Some(r) => r,
            None if watch => Resp::Stream(String::new()),
            None => Resp::Json(404, format!(r#"{{"kind":"Status","message":"no fixture for {path}","code":404}}"#)),
        }
    };
    let _ = write_resp(s, resp);
}

fn super_fixture(name: &str) -> String {
    fixture(name)
}

fn write_resp<S: Write>(s: &mut S, resp: Resp) -> std::io::Result<()> {
    match resp {
        Resp::Json(code, body) => {
            write!(
                s,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
        }
        Resp::CutBody(body, n) => {
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            s.write_all(&body.as_bytes()[..n])?;
        }
        Resp::Stream(text) => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")?;
            for l in text.lines() {
                let chunk = format!("{l}\n");
                write!(s, "{:x}\r\n{chunk}\r\n", chunk.len())?;
                s.flush()?;
            }
            s.write_all(b"0\r\n\r\n")?;
        }
        Resp::CutStream(text, n) => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")?;
            let mut sent = 0;
            for l in text.lines() {
                let chunk = format!("{l}\n");
                if sent + chunk.len() > n {
                    let part = &chunk[..n - sent];
                    write!(s, "{:x}\r\n{part}", chunk.len())?;
                    break;
                }
                write!(s, "{:x}\r\n{chunk}\r\n", chunk.len())?;
                sent += chunk.len();
            }
        }
    }
    s.flush()
}
