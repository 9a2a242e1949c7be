#!/bin/bash
# Overhead of the eBPF socket tracer on real servers driven by load tools (root).
# Usage: deepflow-capture/examples/ebpf_overhead.sh [ROUNDS]
#   builds target/release/examples/ebpf_trace unless TRACE=path is given.
# Alternates runs without and with the tracer (same server processes), ROUNDS times (default 3):
#   - redis-benchmark -t set,get -n 100000 -c 20 against redis-server (plain TCP, small messages);
#   - wrk -t1 -c20 -d5s against nginx returning a small body (HTTP/1.1 keep-alive);
#   - wrk over HTTPS against nginx with ssl (the OpenSSL uprobes fire on every SSL_read/SSL_write);
#   - a syscall microbenchmark (built with cc when present): ns per getpid() (a syscall the
#     tracer does not trace) and per write()+read() pair of 64 bytes on a TCP loopback socket.
# Prints one line per run (requests/s) and the tracer's final counters (events, lost).
set -u
cd "$(dirname "$0")/../.."
rounds=${1:-3}
[ "$(id -u)" = 0 ] || { echo "ebpf_overhead: needs root (BPF)" >&2; exit 1; }
scripts/install-deps.sh bench >/dev/null
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deepflow-rs-target}"
if [ -z "${TRACE:-}" ]; then
  # the same selection as benches/e2e.sh and bindings/bench/run.sh (one release build for all)
  cargo build -q --release --workspace --bins --examples
  TRACE=$CARGO_TARGET_DIR/release/examples/ebpf_trace
fi
work=$(mktemp -d /tmp/ebpf-overhead.XXXXXX)
RPORT=16399 HPORT=18080 SPORT=18443
redis-server --port $RPORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
redis=$!
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat > "$work/nginx.conf" <<EOF
daemon off; master_process on; worker_processes 1; pid $work/nginx.pid; error_log stderr;
events { worker_connections 256; }
http { access_log off; client_body_temp_path $work/cb; proxy_temp_path $work/px;
  fastcgi_temp_path $work/fc; uwsgi_temp_path $work/uw; scgi_temp_path $work/sc;
  server { listen 127.0.0.1:$HPORT; location / { return 200 "ok\n"; } }
  server { listen 127.0.0.1:$SPORT ssl; ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    location / { return 200 "ok\n"; } } }
EOF
nginx -c "$work/nginx.conf" -p "$work" 2>/dev/null &
nginx=$!
cat > "$work/sysbench.c" <<'EOF'
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
int main(int argc, char **argv) {
	long n = argc > 1 ? atol(argv[1]) : 300000;
	double t0 = now();
	for (long i = 0; i < n; i++) syscall(SYS_getpid);
	double t1 = now();
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	if (bind(l, (void *)&a, sizeof(a)) || listen(l, 1) || getsockname(l, (void *)&a, &al) ||
	    connect(c, (void *)&a, sizeof(a))) return 1;
	int s = accept(l, 0, 0);
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	char buf[64]; memset(buf, 'x', sizeof(buf));
	double t2 = now();
	for (long i = 0; i < n; i++) {
		if (write(c, buf, sizeof(buf)) != sizeof(buf)) return 1;
		for (long got = 0; got < (long)sizeof(buf);) { long r = read(s, buf, sizeof(buf) - got); if (r <= 0) return 1; got += r; }
	}
	printf("getpid=%.0fns write+read=%.0fns ", (t1 - t0) / n, (now() - t2) / n);
	return 0;
}
EOF
cc -O2 -o "$work/sysbench" "$work/sysbench.c" 2>/dev/null || echo "ebpf_overhead: no cc, no syscall microbenchmark" >&2
cleanup() { kill -QUIT $nginx 2>/dev/null; kill $redis 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
sleep 1

redis_run() { redis-benchmark -p $RPORT -q -t set,get -n 100000 -c 20 --csv 2>/dev/null \
  | awk -F, '/"(SET|GET)"/{gsub(/"/,"");printf "redis %s=%s ", $1, $2}'; }
wrk_run() { wrk -t1 -c20 -d5s "$1" 2>/dev/null | awk -v n="$2" '/Requests\/sec/ {printf "%s=%s ", n, $2}'; }
sys_run() { [ -x "$work/sysbench" ] && "$work/sysbench" 300000; }
all() { redis_run; wrk_run "http://127.0.0.1:$HPORT/" http; wrk_run "https://127.0.0.1:$SPORT/" https; sys_run; echo; }

for i in $(seq "$rounds"); do
  echo -n "off: "; all
  rm -f "$work/stop"; "$TRACE" 120 1024 "$work/stop" > "$work/trace.txt" 2>&1 & T=$!
  sleep 2
  echo -n "on:  "; all
  touch "$work/stop"; wait $T; tail -1 "$work/trace.txt"
done
