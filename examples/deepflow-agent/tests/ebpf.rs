//! eBPF end to end (root only): the agent's socket tracer sees curl <-> nginx and
//! redis-cli <-> redis-server on 127.0.0.1 as L7 rows with the right pid and comm, with the
//! same method/path/status as the packet path (libpcap on lo, same run), and the profiler
//! finds the hottest function of a CPU-burning C program. Skips with a message when not root,
//! when the kernel refuses BPF, or when a tool is missing.
#![cfg(all(feature = "ebpf", target_os = "linux"))]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_deepflow-agent"))
}

fn have(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn skip_reason(tools: &[&str]) -> Option<String> {
    if !is_root() {
        return Some("not root (eBPF needs CAP_BPF/CAP_PERFMON)".into());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("kernel has no BTF".into());
    }
    tools.iter().find(|t| !have(t)).map(|t| format!("{t} not installed"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("deepflow-ebpf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        // SIGTERM: nginx's master then stops its workers (SIGKILL would orphan them)
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "port {port} did not open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts an agent and waits until its stderr says it is collecting; returns the child and the
/// first stderr lines (or the error text when it exited).
fn start_agent(args: &[&str], ready: &str) -> Result<Child, String> {
    let mut c = agent().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let err = c.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let t = Instant::now();
    let mut seen = String::new();
    while t.elapsed() < Duration::from_secs(30) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => {
                seen.push_str(&l);
                seen.push('\n');
                if l.contains(ready) {
                    std::thread::spawn(move || for _ in rx.iter() {});
                    return Ok(c);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    let _ = c.kill();
    let _ = c.wait();
    Err(seen)
}

fn rows(c: Child) -> Vec<Value> {
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn key(r: &Value) -> (String, String, String, i64) {
    (
        r["l7_protocol"].as_str().unwrap_or("").to_string(),
        r["request_type"].as_str().unwrap_or("").to_string(),
        r["request_resource"].as_str().unwrap_or("").to_string(),
        r["response_code"].as_i64().unwrap_or(-1),
    )
}

fn nginx_worker_pid(master: u32) -> Option<u32> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        let kids = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap_or_default();
        if let Some(p) = kids.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return Some(p);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn socket_tracer_sees_curl_nginx_and_redis_with_pid_and_comm() {
    if let Some(r) = skip_reason(&["nginx", "curl", "redis-server", "redis-cli"]) {
        eprintln!("SKIP socket_tracer_sees_curl_nginx_and_redis_with_pid_and_comm: {r}");
        return;
    }
    let http = free_port();
    let backend = free_port();
    let redis = free_port();
    let dir = tmpdir("tracer");
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process on; worker_processes 1; pid {d}/nginx.pid; error_log stderr;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {d}/cb; proxy_temp_path {d}/px;\n\
             fastcgi_temp_path {d}/fc; uwsgi_temp_path {d}/uw; scgi_temp_path {d}/sc;\n\
             server {{ listen 127.0.0.1:{http}; keepalive_timeout 0;\n\
             location /api/ {{ proxy_pass http://127.0.0.1:{backend}; }}\n\
             location / {{ return 404; }} }}\n\
             server {{ listen 127.0.0.1:{backend}; keepalive_timeout 0;\n\
             location /api/ {{ return 200 \"hello from the backend\\n\"; }} }} }}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let nginx = Kill(
        Command::new("nginx")
            .args(["-c", conf.to_str().unwrap(), "-p", dir.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let redis_srv = Kill(
        Command::new("redis-server")
            .args(["--port", &redis.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(http);
    wait_port(redis);
    let worker = nginx_worker_pid(nginx.0.id()).expect("nginx worker");
    let redis_pid = redis_srv.0.id();

    let filter = format!("tcp port {http} or tcp port {redis}");
    let ebpf = match start_agent(
        &["run", "--ebpf", "--duration", "6", "--format", "jsonl", "--emit", "sessions"],
        "socket tracer on",
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "SKIP socket_tracer_sees_curl_nginx_and_redis_with_pid_and_comm: the agent could not start the tracer: {e}"
            );
            return;
        }
    };
    let pcap = start_agent(
        &[
            "run",
            "--interface",
            "lo",
            "--filter",
            &filter,
            "--duration",
            "6",
            "--format",
            "jsonl",
            "--emit",
            "sessions",
        ],
        "capturing on",
    )
    .expect("packet capture on lo");
    std::thread::sleep(Duration::from_millis(300));

    let mut curl_pids = Vec::new();
    for path in ["/api/v1/users/7", "/missing"] {
        let c = Command::new("curl")
            .args(["-s", "-o", "/dev/null", &format!("http://127.0.0.1:{http}{path}")])
            .spawn()
            .unwrap();
        curl_pids.push(c.id());
        assert!(c.wait_with_output().unwrap().status.success());
    }
    let mut cli_pids = Vec::new();
    for args in [&["SET", "k1", "v1"][..], &["GET", "k1"][..]] {
        let c = Command::new("redis-cli")
            .args(["-p", &redis.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        cli_pids.push(c.id());
        assert!(c.wait_with_output().unwrap().status.success());
    }
    let ebpf_rows = rows(ebpf);
    let pcap_rows = rows(pcap);
    drop(nginx);
    drop(redis_srv);

    let ours: Vec<&Value> = ebpf_rows.iter().filter(|r| port_of(r) == http || port_of(r) == redis).collect();
    assert!(ours.iter().all(|r| r["signal_source"] == "ebpf"), "{ours:#?}");

    // HTTP seen from curl (client process) and from the nginx worker (server process).
    let cp = |r: &Value, port: u16| port_of(r) == port && r["tap_side"] == "c-p";
    let sp = |r: &Value, port: u16| port_of(r) == port && r["tap_side"] == "s-p";
    let curl_rows: Vec<_> = ours.iter().filter(|r| cp(r, http)).collect();
    let nginx_rows: Vec<_> = ours.iter().filter(|r| sp(r, http)).collect();
    assert_eq!(curl_rows.len(), 2, "curl rows: {ours:#?}");
    assert_eq!(nginx_rows.len(), 2, "nginx rows: {ours:#?}");
    for r in &curl_rows {
        assert_eq!(r["process_kname_0"], "curl");
        let pid = r["process_id_0"].as_u64().unwrap() as u32;
        assert!(curl_pids.contains(&pid), "curl pid {pid} not in {curl_pids:?}");
    }
    for r in &nginx_rows {
        assert_eq!(r["process_kname_1"], "nginx");
        assert_eq!(r["process_id_1"].as_u64(), Some(worker as u64));
    }
    // redis
    let cli_rows: Vec<_> = ours.iter().filter(|r| cp(r, redis)).collect();
    let srv_rows: Vec<_> = ours.iter().filter(|r| sp(r, redis)).collect();
    assert_eq!(cli_rows.len(), 2, "redis-cli rows: {ours:#?}");
    assert_eq!(srv_rows.len(), 2, "redis-server rows: {ours:#?}");
    for r in &cli_rows {
        assert_eq!(r["process_kname_0"], "redis-cli");
        let pid = r["process_id_0"].as_u64().unwrap() as u32;
        assert!(cli_pids.contains(&pid), "redis-cli pid {pid} not in {cli_pids:?}");
    }
    for r in &srv_rows {
        assert_eq!(r["process_kname_1"], "redis-server");
        assert_eq!(r["process_id_1"].as_u64(), Some(redis_pid as u64));
    }

    // Same L7 fields as the packet path, from both ends.
    let packet = keyset(pcap_rows.iter().filter(|r| port_of(r) == http || port_of(r) == redis));
    let client_side = keyset(curl_rows.iter().chain(cli_rows.iter()).map(|r| **r));
    let server_side = keyset(nginx_rows.iter().chain(srv_rows.iter()).map(|r| **r));
    assert_eq!(packet.len(), 4, "packet rows: {pcap_rows:#?}");
    assert_eq!(client_side, packet);
    assert_eq!(server_side, packet);
    assert!(packet.contains(&("http".into(), "GET".into(), "/api/v1/users/7".into(), 200)), "{packet:?}");
    assert!(packet.contains(&("http".into(), "GET".into(), "/missing".into(), 404)), "{packet:?}");

    // Proxy chain: the request nginx read from curl and the request it then wrote to the
    // backend carry the same syscall trace id.
    let front = nginx_rows.iter().find(|r| r["request_resource"] == "/api/v1/users/7").unwrap();
    let to_backend: Vec<_> = ours_all(&ebpf_rows, backend, "c-p");
    assert_eq!(to_backend.len(), 1, "nginx -> backend rows: {ebpf_rows:#?}");
    assert_eq!(to_backend[0]["process_kname_0"], "nginx");
    assert_eq!(to_backend[0]["request_resource"], "/api/v1/users/7");
    let id = front["syscall_trace_id_request"].as_u64().expect("trace id on the front row");
    assert!(id != 0);
    assert_eq!(to_backend[0]["syscall_trace_id_request"].as_u64(), Some(id), "{front:#?}\n{:#?}", to_backend[0]);
    // and the backend's own row is a different request (another id)
    let at_backend = ours_all(&ebpf_rows, backend, "s-p");
    assert_eq!(at_backend.len(), 1);
    assert_ne!(at_backend[0]["syscall_trace_id_request"].as_u64(), Some(id));
}

fn port_of(r: &Value) -> u16 {
    r["server_port"].as_u64().unwrap_or(0) as u16
}

fn keyset<'a>(it: impl Iterator<Item = &'a Value>) -> BTreeSet<(String, String, String, i64)> {
    it.map(key).collect()
}

fn ours_all<'a>(rows: &'a [Value], port: u16, side: &str) -> Vec<&'a Value> {
    rows.iter().filter(|r| r["server_port"].as_u64() == Some(port as u64) && r["tap_side"] == side).collect()
}

#[test]
fn profiler_finds_the_hottest_function() {
    if let Some(r) = skip_reason(&["cc"]) {
        eprintln!("SKIP profiler_finds_the_hottest_function: {r}");
        return;
    }
    let dir = tmpdir("profile");
    let src = dir.join("burn.c");
    std::fs::write(
        &src,
        r#"#include <stdint.h>
#include <time.h>
volatile uint64_t sink;
__attribute__((noinline)) void df_burn_hot(void) { for (uint64_t i = 0; i < 4000000; i++) sink += i * i; }
__attribute__((noinline)) void df_burn_cold(void) { for (uint64_t i = 0; i < 400000; i++) sink += i; }
int main(int argc, char **argv) {
    time_t end = time(0) + 20;
    while (time(0) < end) { df_burn_hot(); df_burn_cold(); }
    return 0;
}
"#,
    )
    .unwrap();
    let bin = dir.join("burn");
    let st = Command::new("cc").args(["-O0", "-fno-omit-frame-pointer", "-o"]).arg(&bin).arg(&src).status().unwrap();
    assert!(st.success());
    let burner = Kill(Command::new(&bin).spawn().unwrap());
    let pid = burner.0.id().to_string();
    let out_dir = dir.join("out");
    let out = agent()
        .args(["profile", "--pid", &pid, "--seconds", "3", "--out", out_dir.to_str().unwrap()])
        .output()
        .unwrap();
    drop(burner);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        eprintln!("SKIP profiler_finds_the_hottest_function: the profiler could not start: {stderr}");
        return;
    }
    assert!(stdout.contains("hottest: df_burn_hot "), "{stdout}\n{stderr}");
    let folded = std::fs::read_to_string(out_dir.join("on_cpu.folded")).unwrap();
    // the leaf of the heaviest folded line is the hot function, called from main
    let (top, _) = folded
        .lines()
        .filter_map(|l| l.rsplit_once(' ').map(|(s, n)| (s.to_string(), n.parse::<u64>().unwrap())))
        .max_by_key(|(_, n)| *n)
        .unwrap();
    assert!(top.ends_with(";main;df_burn_hot") || top.ends_with("main;df_burn_hot"), "{top}");
    assert!(top.starts_with("burn;"), "{top}");
    let svg = std::fs::read_to_string(out_dir.join("on_cpu.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("df_burn_hot"));
}
