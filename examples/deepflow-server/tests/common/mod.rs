#![allow(dead_code, clippy::unwrap_used, clippy::panic)]
//! Starting the server binary and talking HTTP to it (loopback only).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub token: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    // never the same port twice in one test process: a port handed out for a server that has not
    // bound it yet is free again for the kernel, and a second server would be given it too
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Runs `deepflow-server run --data DATA ARGS [--token T]` with stderr echoed, and waits up to
/// `wait` until a line has announced the address after each of `keys`; the addresses in `keys`
/// order.
fn launch(
    data: &std::path::Path,
    token: Option<&str>,
    args: &[&str],
    keys: &'static [&'static str],
    wait: Duration,
) -> (Child, Vec<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deepflow-server"));
    cmd.args(["run", "--data"]).arg(data).args(args);
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            for (i, key) in keys.iter().enumerate() {
                if let Some(rest) = line.split(key).nth(1) {
                    let _ = tx.send((i, rest.split_whitespace().next().unwrap_or("").to_string()));
                }
            }
            eprintln!("[server] {line}");
        }
    });
    let mut addrs: Vec<Option<String>> = vec![None; keys.len()];
    while addrs.iter().any(Option::is_none) {
        let (i, addr) = rx.recv_timeout(wait).expect("server did not start");
        addrs[i].get_or_insert(addr);
    }
    (child, addrs.into_iter().map(Option::unwrap).collect())
}

pub fn start(data: &std::path::Path, token: Option<&str>, extra: &[&str]) -> Server {
    let args: Vec<&str> = ["--listen", "127.0.0.1:0"].iter().chain(extra).copied().collect();
    let (child, mut addrs) = launch(data, token, &args, &["listening on http://"], Duration::from_secs(60));
    Server { child, addr: addrs.remove(0), token: token.map(str::to_string) }
}

/// A server with its HTTP address and its agent gRPC ingest address (`--grpc-listen`).
pub struct GrpcServer {
    pub http: Server,
    pub grpc: String,
}

impl GrpcServer {
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http.addr)
    }
    /// The single value of a one-row, one-column SQL result (0 when absent).
    pub fn count(&self, sql: &str) -> u64 {
        let v = self.http.sql(sql);
        let row = &v["rows"][0];
        row.as_object().and_then(|o| o.values().next()).and_then(|x| x.as_u64()).unwrap_or(0)
    }
}

/// Starts the server with HTTP and gRPC on free loopback ports (`--commit-ms 20` unless
/// `extra` sets it).
pub fn start_with_grpc(data: &std::path::Path, token: Option<&str>, extra: &[&str]) -> GrpcServer {
    let mut args: Vec<&str> =
        ["--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"].iter().chain(extra).copied().collect();
    if !extra.contains(&"--commit-ms") {
        args.extend(["--commit-ms", "20"]);
    }
    let keys = &["listening on http://", "agent gRPC ingest on "];
    let (child, addrs) = launch(data, token, &args, keys, Duration::from_secs(120));
    let [http, grpc] = <[String; 2]>::try_from(addrs).unwrap();
    GrpcServer { http: Server { child, addr: http, token: token.map(str::to_string) }, grpc }
}

/// Another binary of the workspace, next to the server's (`cargo build --workspace` builds it).
pub fn bin(name: &str) -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_BIN_EXE_deepflow-server")).with_file_name(name);
    assert!(p.exists(), "{} not built: run `cargo build --workspace` first", p.display());
    p
}

/// The bundled demo capture (examples/data/demo.pcap).
pub fn demo_pcap() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/demo.pcap")
}

/// Starts `deepflow-loadgen ARGS`; the receiver gets its whole stdout once it exits.
pub fn run_loadgen(args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(bin("deepflow-loadgen"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            s.push_str(&l);
        }
        let _ = tx.send(s);
    });
    (child, rx)
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn post(&self, path: &str, content_type: &str, accept: Option<&str>, body: &[u8]) -> Resp {
        let mut req = agent().post(self.url(path)).header("Content-Type", content_type);
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        into(req.send(body).unwrap())
    }

    pub fn get(&self, path_and_query: &str) -> Resp {
        let mut req = agent().get(self.url(path_and_query));
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        into(req.call().unwrap())
    }

    pub fn sql(&self, sql: &str) -> serde_json::Value {
        let r =
            self.post("/v1/query", "application/json", None, serde_json::json!({"sql": sql}).to_string().as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Polls `sql` (its first row's first column, a number) until `ok` or the deadline.
    pub fn wait_sql(&self, sql: &str, deadline: Duration, ok: impl Fn(f64) -> bool) -> f64 {
        let t0 = Instant::now();
        let mut last = f64::NAN;
        for _ in 0..600 {
            let v = self.sql(sql);
            let row = &v["rows"][0];
            last = row.as_object().and_then(|o| o.values().next()).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
            if ok(last) || t0.elapsed() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        last
    }
}

fn into(mut r: ureq::http::Response<ureq::Body>) -> Resp {
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = r.body_mut().with_config().limit(256 << 20).read_to_vec().unwrap();
    Resp { status, content_type, body }
}

pub fn urlenc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}
