//! The socket tracer and profiler load on this kernel and see real syscalls (root only; skips
//! with a message otherwise). End-to-end L7 checks live in examples/deepflow-agent/tests/ebpf.rs.
#![cfg(all(feature = "ebpf", target_os = "linux"))]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use deepflow_capture::ebpf::shared::{self, DfSocketEvent, comm_str, event_type};
use deepflow_capture::ebpf::socket::{SocketTracer, SocketTracerConfig};

fn start(cfg: &SocketTracerConfig, test: &str) -> Option<SocketTracer> {
    match SocketTracer::start(cfg) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("SKIP {test}: {e}");
            None
        }
    }
}

/// The events `keep` accepts, with their payloads, in ring order: polled for at most `limit`,
/// or until `done` holds for those kept so far.
fn collect(
    t: &mut SocketTracer,
    limit: Duration,
    keep: impl Fn(&DfSocketEvent) -> bool,
    done: impl Fn(&[(DfSocketEvent, Vec<u8>)]) -> bool,
) -> Vec<(DfSocketEvent, Vec<u8>)> {
    let mut evs = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < limit && !done(&evs) {
        t.poll(Duration::from_millis(100), |e, d| {
            if keep(e) {
                evs.push((*e, d.to_vec()));
            }
        });
    }
    evs
}

#[test]
fn tracer_sees_curl_request_and_response_with_tuple_role_and_sequence() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIP tracer_sees_curl_request_and_response_with_tuple_role_and_sequence: curl not installed");
        return;
    }
    let cfg = SocketTracerConfig { max_data: 64, ..SocketTracerConfig::default() };
    let Some(mut t) = start(&cfg, "tracer_sees_curl_request_and_response_with_tuple_role_and_sequence") else {
        return;
    };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let body = "x".repeat(300);
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).unwrap();
        let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        s.write_all(resp.as_bytes()).unwrap();
    });
    let curl = Command::new("curl")
        .args(["-s", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/traced")])
        .spawn()
        .unwrap();
    let curl_pid = curl.id();
    assert!(curl.wait_with_output().unwrap().status.success());
    server.join().unwrap();

    let evs = collect(
        &mut t,
        Duration::from_secs(3),
        |e| e.pid == curl_pid,
        |evs| evs.iter().any(|(e, _)| e.event_type == event_type::CLOSE),
    );
    let stats = t.stats();
    assert!(stats.events > 0, "{stats:?}");
    let connect = evs.iter().find(|(e, _)| e.event_type == event_type::CONNECT).expect("connect event");
    assert_eq!(connect.0.role, shared::ROLE_CLIENT);
    assert_eq!(connect.0.tuple.dport, port);
    assert_eq!(&connect.0.tuple.daddr[..4], &[127, 0, 0, 1]);
    assert_eq!(comm_str(&connect.0.comm), "curl");
    let data: Vec<_> = evs.iter().filter(|(e, _)| e.event_type == event_type::DATA).collect();
    let req = data.iter().find(|(e, _)| e.direction == shared::DIR_EGRESS).expect("request event");
    assert!(req.1.starts_with(b"GET /traced HTTP/1.1\r\n"), "{:?}", String::from_utf8_lossy(&req.1));
    assert_eq!(req.0.role, shared::ROLE_CLIENT);
    assert_eq!(req.0.sock_id, connect.0.sock_id);
    let resp = data.iter().find(|(e, _)| e.direction == shared::DIR_INGRESS).expect("response event");
    assert!(resp.1.starts_with(b"HTTP/1.1 200 OK"));
    assert!(resp.1.len() <= 64 && resp.0.ret as usize > resp.1.len(), "cap: {} of {}", resp.1.len(), resp.0.ret);
    // per-socket sequence: 1, 2, ... in ring order
    let seqs: Vec<u64> = data.iter().filter(|(e, _)| e.sock_id == req.0.sock_id).map(|(e, _)| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(data.iter().all(|(e, _)| e.ts_ns >= e.enter_ts_ns && e.tid != 0));
}

/// A socket dropped without close(2) (here dup2 over its fd) leaves its per-socket state in the
/// tracer's map; when the kernel hands the same `struct sock` address to the next socket, its
/// sequence must still start at 1 (CI once saw 25, 26: a stale entry continued).
#[test]
fn sequence_restarts_on_a_reused_socket_address() {
    let test = "sequence_restarts_on_a_reused_socket_address";
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIP {test}: python3 not installed");
        return;
    }
    let Some(mut t) = start(&SocketTracerConfig { max_data: 64, ..SocketTracerConfig::default() }, test) else {
        return;
    };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    const ROUNDS: usize = 30;
    let server = std::thread::spawn(move || {
        for _ in 0..ROUNDS {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut buf = [0u8; 64];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    // each round: connect, three writes, then the fd is replaced by dup2 (no close(2) on it)
    let script = format!(
        "import os, socket\nnull = os.open('/dev/null', os.O_RDONLY)\n\
         for i in range({ROUNDS}):\n    s = socket.create_connection(('127.0.0.1', {port}))\n\
         \x20   for j in range(3): s.send(b'round %d write %d' % (i, j))\n\
         \x20   os.dup2(null, s.fileno())\n    s.detach()\n"
    );
    let child = Command::new("python3").arg("-c").arg(&script).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    server.join().unwrap();
    let evs = collect(
        &mut t,
        Duration::from_secs(3),
        |e| e.pid == pid,
        |evs| evs.iter().filter(|(e, _)| e.event_type == event_type::DATA).count() >= 3 * ROUNDS,
    );
    assert!(t.stats().lost == 0, "{:?}", t.stats());
    // in ring order: each connect restarts its socket; data events count from 1 after it
    let mut next: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    let mut connects = std::collections::HashMap::<u64, usize>::new();
    let mut checked = 0;
    for (e, _) in &evs {
        if e.event_type == event_type::CONNECT {
            next.insert(e.sock_id, 1);
            *connects.entry(e.sock_id).or_default() += 1;
        } else if e.event_type == event_type::DATA && e.direction == shared::DIR_EGRESS {
            let want = next.entry(e.sock_id).or_insert(1);
            assert_eq!(e.seq, *want, "socket {:#x}", e.sock_id);
            *want += 1;
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * ROUNDS, "every write seen");
    let reused = connects.values().filter(|&&n| n > 1).count();
    eprintln!("{test}: {} sockets, {reused} addresses reused", connects.len());
}

#[test]
fn files_and_pipes_give_no_events_sockets_of_the_same_process_do() {
    let test = "files_and_pipes_give_no_events_sockets_of_the_same_process_do";
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIP {test}: curl not installed");
        return;
    }
    let Some(cat) = ["/bin/cat", "/usr/bin/cat"].into_iter().find(|p| std::path::Path::new(p).exists()) else {
        eprintln!("SKIP {test}: no cat");
        return;
    };
    let Some(mut t) = start(&SocketTracerConfig { max_data: 256, ..SocketTracerConfig::default() }, test) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("df-nosock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // a copy of cat with a comm of its own: every read/write it does is on a file or a pipe
    let nosock = dir.join("dfnosock");
    std::fs::copy(cat, &nosock).unwrap();
    const MARK: &str = "DF-NOT-A-SOCKET-MARKER";
    std::fs::write(dir.join("in"), MARK.repeat(100)).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").unwrap();
    });
    // file -> pipe -> file, then the same process (exec) talks HTTP
    let script = format!(
        "\"$0\" in | \"$0\" > out && \"$0\" out > /dev/null && exec curl -s -o /dev/null http://127.0.0.1:{port}/after-files"
    );
    let child = Command::new("sh").arg("-c").arg(&script).arg(&nosock).current_dir(&dir).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    server.join().unwrap();
    let evs = collect(
        &mut t,
        Duration::from_secs(3),
        |_| true,
        |evs| evs.iter().any(|(e, _)| e.pid == pid && e.event_type == event_type::CLOSE),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        evs.iter().any(|(e, d)| e.pid == pid
            && e.direction == shared::DIR_EGRESS
            && d.starts_with(b"GET /after-files")
            && e.tuple.dport == port),
        "the socket of the same process is traced"
    );
    assert!(!evs.iter().any(|(e, _)| comm_str(&e.comm) == "dfnosock"), "events from file/pipe I/O");
    assert!(!evs.iter().any(|(_, d)| d.windows(MARK.len()).any(|w| w == MARK.as_bytes())), "file bytes captured");
    assert!(evs.iter().all(|(e, _)| e.tuple.family == 2 || e.tuple.family == 10));
    assert!(t.stats().not_socket > 0, "{:?}", t.stats());
}

#[test]
fn profiler_hottest_function_of_a_cpu_burner_is_on_top() {
    use deepflow_capture::ebpf::profiler::{Profile, Profiler, ProfilerConfig};
    let test = "profiler_hottest_function_of_a_cpu_burner_is_on_top";
    let dir = std::env::temp_dir().join(format!("df-prof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("burn.c");
    std::fs::write(
        &src,
        "#include <stdint.h>\n#include <time.h>\n#include <unistd.h>\nvolatile uint64_t sink;\n\
         __attribute__((noinline)) void df_burn_hot(void) { for (uint64_t i = 0; i < 4000000; i++) sink += i * i; }\n\
         __attribute__((noinline)) void df_burn_cold(void) { for (uint64_t i = 0; i < 400000; i++) sink += i; }\n\
         int main(void) { time_t end = time(0) + 15; while (time(0) < end) { df_burn_hot(); df_burn_cold(); usleep(1000); } return 0; }\n",
    )
    .unwrap();
    let bin = dir.join("burn");
    match Command::new("cc").args(["-O0", "-fno-omit-frame-pointer", "-o"]).arg(&bin).arg(&src).status() {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("SKIP {test}: cannot compile the burner with cc: {other:?}");
            return;
        }
    }
    let mut burner = Command::new(&bin).spawn().unwrap();
    let cfg = ProfilerConfig { pid: Some(burner.id()), frequency: 99, off_cpu: true };
    let mut p = match Profiler::start(&cfg) {
        Ok(p) => p,
        Err(e) => {
            let _ = burner.kill();
            let _ = burner.wait();
            eprintln!("SKIP {test}: {e}");
            return;
        }
    };
    std::thread::sleep(Duration::from_secs(2));
    let prof = p.collect().unwrap();
    let _ = burner.kill();
    let _ = burner.wait();
    let (hot, n) = Profile::hottest(&prof.on_cpu).expect("samples");
    assert_eq!(hot, "df_burn_hot", "{}", Profile::folded(&prof.on_cpu));
    // the burner competes for the CPU with whatever else runs: only require a few samples
    assert!(n >= 5, "{n} samples of df_burn_hot");
    assert!(prof.on_cpu.iter().all(|s| s.pid == cfg.pid.unwrap() && s.comm == "burn"));
    let folded = Profile::folded(&prof.on_cpu);
    assert!(folded.lines().any(|l| l.starts_with("burn;") && l.contains(";main;df_burn_hot ")), "{folded}");
    // off-CPU: the burner sleeps 1 ms per round in nanosleep
    let off_ns: u64 = prof.off_cpu.iter().filter(|s| s.pid == cfg.pid.unwrap()).map(|s| s.value).sum();
    assert!(off_ns > 1_000_000, "off-CPU ns {off_ns}");
    let sleeping: u64 = prof
        .off_cpu
        .iter()
        .filter(|s| s.frames.iter().any(|f| f.contains("nanosleep") && f.ends_with("_[k]")))
        .map(|s| s.value)
        .sum();
    assert!(sleeping > 0, "no nanosleep kernel stack off-CPU: {}", Profile::folded(&prof.off_cpu));
    let files = prof.write_dir(&dir.join("out")).unwrap();
    assert!(files.iter().any(|f| f.ends_with("on_cpu.svg")));
    assert!(files.iter().any(|f| f.ends_with("off_cpu.folded")));
    assert!(files.iter().any(|f| f.ends_with("on_cpu.pb")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_uprobes_see_curl_plaintext_over_https() {
    let test = "tls_uprobes_see_curl_plaintext_over_https";
    for tool in ["curl", "openssl"] {
        if Command::new(tool).arg("version").output().is_err() {
            eprintln!("SKIP {test}: {tool} not installed");
            return;
        }
    }
    let dir = std::env::temp_dir().join(format!("df-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let Some(mut t) = start(&SocketTracerConfig::default(), test) else { return };
    if !t.attached().iter().any(|a| a.contains("libssl")) {
        eprintln!("SKIP {test}: no libssl to attach to ({:?})", t.skipped());
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept", &port.to_string(), "-cert"])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    let curl = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", &format!("https://127.0.0.1:{port}/tls-path")])
        .spawn()
        .unwrap();
    let curl_pid = curl.id();
    let ok = curl.wait_with_output().unwrap().status.success();
    let evs = collect(&mut t, Duration::from_secs(2), |e| e.source == shared::SRC_OPENSSL, |_| false);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "curl https failed");
    let req = evs
        .iter()
        .find(|(e, d)| {
            e.pid == curl_pid && e.direction == shared::DIR_EGRESS && d.starts_with(b"GET /tls-path HTTP/1.1")
        })
        .unwrap_or_else(|| panic!("no plaintext request from curl: {evs:?}"));
    assert_eq!(req.0.tuple.dport, port);
    assert_eq!(comm_str(&req.0.comm), "curl");
    assert!(
        evs.iter()
            .any(|(e, d)| e.pid == curl_pid && e.direction == shared::DIR_INGRESS && d.starts_with(b"HTTP/1.0 200")),
        "no plaintext response read by curl"
    );
    // (`openssl s_server -www` reads through an SSL BIO, which calls OpenSSL's internal read
    // function rather than SSL_read: its side is not seen, see the README's limits.)
}
