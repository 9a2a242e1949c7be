//! Socket tracer -> SocketStreams -> the real L7 engine (deepflow-protocols' L7Observer), with
//! the packet path on lo in the same run as the reference (root only; skips otherwise).
#![cfg(all(feature = "ebpf", feature = "live", target_os = "linux"))]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use deepflow_capture::ebpf::socket::{SocketTracer, SocketTracerConfig};
use deepflow_capture::ebpf::streams::SocketStreams;
use deepflow_capture::pipeline::{Pipeline, PipelineConfig};
use deepflow_capture::source::live::{LiveConfig, LiveSource};
use deepflow_capture::source::{Next, PacketSource};
use deepflow_core::record::L7FlowLog;
use deepflow_protocols::L7Config;
use deepflow_protocols::capture::L7Observer;

fn key(r: &L7FlowLog) -> (String, String, String, Option<i32>) {
    (
        r.l7_protocol.name().to_string(),
        r.request_type.clone().unwrap_or_default(),
        r.request_resource.clone().unwrap_or_default(),
        r.response_code,
    )
}

#[test]
fn ebpf_rows_match_packet_rows_for_redis_with_pid_and_comm() {
    let test = "ebpf_rows_match_packet_rows_for_redis_with_pid_and_comm";
    for tool in ["redis-server", "redis-cli"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("SKIP {test}: {tool} not installed");
            return;
        }
    }
    let mut tracer = match SocketTracer::start(&SocketTracerConfig::default()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIP {test}: {e}");
            return;
        }
    };
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut live = match LiveSource::open(LiveConfig {
        interface: "lo".into(),
        filter: Some(format!("tcp port {port}")),
        ..LiveConfig::default()
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("SKIP {test}: no live capture on lo: {e}");
            return;
        }
    };
    let mut server = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut pids = Vec::new();
    for args in [&["SET", "greeting", "hello"][..], &["GET", "greeting"][..], &["INCR", "greeting"][..]] {
        let c =
            Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).stdout(Stdio::null()).spawn().unwrap();
        pids.push(c.id());
        c.wait_with_output().unwrap();
    }
    let mut streams = SocketStreams::new(L7Observer::new(L7Config::default()), tracer.clock());
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        tracer.poll(Duration::from_millis(100), |e, d| streams.on_event(e, d));
    }
    streams.finish(u64::MAX / 2);
    let mut rows = streams.observer_mut().drain_rows();
    streams.annotate(&mut rows);
    let rows: Vec<_> = rows.into_iter().filter(|r| r.server_port == port).collect();

    let mut pipe = Pipeline::new(PipelineConfig::default(), L7Observer::new(L7Config::default()));
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        match live.next_packet().unwrap() {
            Next::Packet(p) => pipe.process_raw(&p),
            Next::Idle => {}
            Next::End => break,
        }
    }
    pipe.finish();
    let packet_rows = pipe.table_mut().observer_mut().drain_rows();
    let server_pid = server.id();
    let _ = server.kill();
    let _ = server.wait();

    let client: Vec<_> = rows.iter().filter(|r| r.tap_side == "c-p").collect();
    let srv: Vec<_> = rows.iter().filter(|r| r.tap_side == "s-p").collect();
    assert_eq!(client.len(), 3, "{rows:#?}");
    assert_eq!(srv.len(), 3, "{rows:#?}");
    for r in &client {
        assert_eq!(r.signal_source, "ebpf");
        assert_eq!(r.process_kname_0.as_deref(), Some("redis-cli"));
        assert!(pids.contains(&r.process_id_0.unwrap()));
        assert!(r.rrt.is_some());
    }
    for r in &srv {
        assert_eq!(r.process_kname_1.as_deref(), Some("redis-server"));
        assert_eq!(r.process_id_1, Some(server_pid));
    }
    let want: BTreeSet<_> = packet_rows.iter().map(key).collect();
    assert_eq!(want.len(), 3, "{packet_rows:#?}");
    assert_eq!(client.iter().map(|r| key(r)).collect::<BTreeSet<_>>(), want);
    assert_eq!(srv.iter().map(|r| key(r)).collect::<BTreeSet<_>>(), want);
}

/// Runs `traffic` while the tracer and a libpcap capture of `filter` on lo both watch; returns
/// the annotated eBPF rows and the packet rows.
fn observe(test: &str, filter: &str, traffic: impl FnOnce()) -> Option<(Vec<L7FlowLog>, Vec<L7FlowLog>)> {
    observe_with(&SocketTracerConfig::default(), test, filter, traffic)
}

fn observe_with(
    cfg: &SocketTracerConfig,
    test: &str,
    filter: &str,
    traffic: impl FnOnce(),
) -> Option<(Vec<L7FlowLog>, Vec<L7FlowLog>)> {
    let mut tracer = match SocketTracer::start(cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIP {test}: {e}");
            return None;
        }
    };
    let mut live = match LiveSource::open(LiveConfig {
        interface: "lo".into(),
        filter: Some(filter.into()),
        ..LiveConfig::default()
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("SKIP {test}: no live capture on lo: {e}");
            return None;
        }
    };
    let mut streams = SocketStreams::new(L7Observer::new(L7Config::default()), tracer.clock());
    traffic();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        tracer.poll(Duration::from_millis(100), |e, d| streams.on_event(e, d));
    }
    streams.finish(u64::MAX / 2);
    let mut rows = streams.observer_mut().drain_rows();
    streams.annotate(&mut rows);
    let mut pipe = Pipeline::new(PipelineConfig::default(), L7Observer::new(L7Config::default()));
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        match live.next_packet().unwrap() {
            Next::Packet(p) => pipe.process_raw(&p),
            Next::Idle => {}
            Next::End => break,
        }
    }
    pipe.finish();
    let packet_rows = pipe.table_mut().observer_mut().drain_rows();
    Some((rows, packet_rows))
}

/// Starts nginx (one worker) with `servers` inside its `http {}` block in `dir`; waits for
/// every port in `ports`; returns the child, the master pid and the worker pid.
fn start_nginx(dir: &std::path::Path, servers: &str, ports: &[u16]) -> (std::process::Child, u32, u32) {
    std::fs::create_dir_all(dir).unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process on; worker_processes 1; pid {d}/nginx.pid; error_log stderr;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {d}/cb; proxy_temp_path {d}/px;\n\
             fastcgi_temp_path {d}/fc; uwsgi_temp_path {d}/uw; scgi_temp_path {d}/sc;\n{servers} }}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let nginx = Command::new("nginx")
        .args(["-c", conf.to_str().unwrap(), "-p", dir.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for &p in ports {
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "nginx did not listen on {p}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let master = nginx.id();
    let worker: u32 = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("nginx worker");
    (nginx, master, worker)
}

fn have(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success())
}

/// curl -> nginx over HTTPS: the packets show only TLS, the OpenSSL uprobes (SSL_write/SSL_read
/// in curl, and in the nginx worker that was already running when the tracer started) give the
/// plaintext, and the same L7 engine turns it into HTTP request logs on both sides.
#[test]
fn ebpf_tls_uprobes_turn_curl_to_nginx_https_into_http_rows() {
    let test = "ebpf_tls_uprobes_turn_curl_to_nginx_https_into_http_rows";
    for tool in ["nginx", "curl", "openssl"] {
        if !have(tool) {
            eprintln!("SKIP {test}: {tool} not installed");
            return;
        }
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("df-ebpf-nginx-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, pkey) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout"])
        .arg(&pkey)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let (mut nginx, master, worker) = start_nginx(
        &dir,
        &format!(
            "server {{ listen 127.0.0.1:{port} ssl; keepalive_timeout 0;\n\
             ssl_certificate {}; ssl_certificate_key {};\n\
             location /secure/ {{ return 200 \"secret\\n\"; }}\n\
             location / {{ return 404; }} }}\n",
            cert.display(),
            pkey.display()
        ),
        &[port],
    );
    let mut curl_pids = Vec::new();
    let mut curl_ok = true;
    let res = observe_with(
        &SocketTracerConfig { tls: true, ..SocketTracerConfig::default() },
        test,
        &format!("tcp port {port}"),
        || {
            for path in ["/secure/orders/42", "/nope"] {
                let c = Command::new("curl")
                    .args(["-sk", "-o", "/dev/null", &format!("https://127.0.0.1:{port}{path}")])
                    .spawn()
                    .unwrap();
                curl_pids.push(c.id());
                curl_ok &= c.wait_with_output().unwrap().status.success();
            }
        },
    );
    let _ = Command::new("kill").args(["-QUIT", &master.to_string()]).status();
    let _ = nginx.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let Some((rows, packet_rows)) = res else { return };
    assert!(curl_ok, "curl https failed");
    // On the wire: TLS, no HTTP.
    let wire: Vec<_> = packet_rows.iter().filter(|r| r.server_port == port).collect();
    assert!(wire.iter().any(|r| r.l7_protocol.name() == "tls"), "{wire:#?}");
    assert!(!wire.iter().any(|r| r.l7_protocol.name() == "http"), "{wire:#?}");
    // From the uprobes: HTTP on both sides.
    let http = |side: &str| {
        rows.iter()
            .filter(|r| r.server_port == port && r.tap_side == side && r.l7_protocol.name() == "http")
            .collect::<Vec<_>>()
    };
    let want: BTreeSet<_> = [
        ("http".to_string(), "GET".to_string(), "/secure/orders/42".to_string(), Some(200)),
        ("http".to_string(), "GET".to_string(), "/nope".to_string(), Some(404)),
    ]
    .into();
    let (client, server) = (http("c-p"), http("s-p"));
    assert_eq!(client.iter().map(|r| key(r)).collect::<BTreeSet<_>>(), want, "{rows:#?}");
    assert_eq!(server.iter().map(|r| key(r)).collect::<BTreeSet<_>>(), want, "{rows:#?}");
    for r in &client {
        assert_eq!(r.process_kname_0.as_deref(), Some("curl"));
        assert!(curl_pids.contains(&r.process_id_0.unwrap()));
    }
    for r in &server {
        assert_eq!((r.process_kname_1.as_deref(), r.process_id_1), (Some("nginx"), Some(worker)));
    }
}

#[test]
fn ebpf_rows_for_curl_nginx_proxy_chain_match_packets_and_share_trace_ids() {
    let test = "ebpf_rows_for_curl_nginx_proxy_chain_match_packets_and_share_trace_ids";
    for tool in ["nginx", "curl"] {
        if !have(tool) {
            eprintln!("SKIP {test}: {tool} not installed");
            return;
        }
    }
    let free = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (front, backend) = (free(), free());
    let dir = std::env::temp_dir().join(format!("df-ebpf-nginx-{}", std::process::id()));
    let (mut nginx, master, worker) = start_nginx(
        &dir,
        &format!(
            "server {{ listen 127.0.0.1:{front}; keepalive_timeout 0;\n\
             location /api/ {{ proxy_pass http://127.0.0.1:{backend}; }}\n\
             location / {{ return 404; }} }}\n\
             server {{ listen 127.0.0.1:{backend}; keepalive_timeout 0;\n\
             location /api/ {{ return 200 \"hello from the backend\\n\"; }} }}\n"
        ),
        &[front, backend],
    );
    let mut curl_pids = Vec::new();
    let res = observe(test, &format!("tcp port {front}"), || {
        for path in ["/api/v1/users/7", "/missing"] {
            let c = Command::new("curl")
                .args(["-s", "-o", "/dev/null", &format!("http://127.0.0.1:{front}{path}")])
                .spawn()
                .unwrap();
            curl_pids.push(c.id());
            c.wait_with_output().unwrap();
        }
    });
    // graceful stop: SIGKILL would leave the worker behind
    let _ = Command::new("kill").args(["-QUIT", &master.to_string()]).status();
    let _ = nginx.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let Some((rows, packet_rows)) = res else { return };

    let at =
        |port: u16, side: &str| rows.iter().filter(|r| r.server_port == port && r.tap_side == side).collect::<Vec<_>>();
    let curl = at(front, "c-p");
    let nginx_front = at(front, "s-p");
    let to_backend = at(backend, "c-p");
    let at_backend = at(backend, "s-p");
    assert_eq!((curl.len(), nginx_front.len(), to_backend.len(), at_backend.len()), (2, 2, 1, 1), "{rows:#?}");
    for r in &curl {
        assert_eq!(r.process_kname_0.as_deref(), Some("curl"));
        assert!(curl_pids.contains(&r.process_id_0.unwrap()));
    }
    for r in nginx_front.iter().chain(&at_backend) {
        assert_eq!((r.process_kname_1.as_deref(), r.process_id_1), (Some("nginx"), Some(worker)));
    }
    assert_eq!((to_backend[0].process_kname_0.as_deref(), to_backend[0].process_id_0), (Some("nginx"), Some(worker)));
    let want: BTreeSet<_> = packet_rows.iter().filter(|r| r.server_port == front).map(key).collect();
    assert!(want.contains(&("http".into(), "GET".into(), "/api/v1/users/7".into(), Some(200))), "{want:?}");
    assert!(want.contains(&("http".into(), "GET".into(), "/missing".into(), Some(404))), "{want:?}");
    assert_eq!(curl.iter().map(|r| key(r)).collect::<BTreeSet<_>>(), want, "{curl:#?}");
    assert_eq!(nginx_front.iter().map(|r| key(r)).collect::<BTreeSet<_>>(), want);
    // proxy chain: the request nginx read from curl and the one it wrote to the backend
    let front_api = nginx_front.iter().find(|r| r.request_resource.as_deref() == Some("/api/v1/users/7")).unwrap();
    let id = front_api.syscall_trace_id_request.expect("trace id");
    assert_eq!(to_backend[0].request_resource.as_deref(), Some("/api/v1/users/7"));
    assert_eq!(to_backend[0].syscall_trace_id_request, Some(id), "{front_api:#?}\n{:#?}", to_backend[0]);
    assert_ne!(at_backend[0].syscall_trace_id_request, Some(id));
}
