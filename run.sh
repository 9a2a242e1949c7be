#!/usr/bin/env bash
# The main job on an embedded default: installs what is missing, builds the agent and the server,
# analyzes a bundled real capture (flows and a summary), then starts deepflow-server with its
# store under ./data, ships the capture's rows to it, captures live loopback traffic with an agent
# that sends to the server while a little real traffic runs, and prints what is stored and where
# to query it.
#   ./run.sh                 # the whole job (keeps serving until Ctrl-C when run from a terminal)
#   ./run.sh FILE.pcap [...] # only analyze another file (extra args go to `deepflow-agent analyze`)
# Environment: DEEPFLOW_DATA (default ./data), DEEPFLOW_HTTP (default 127.0.0.1:20416),
# DEEPFLOW_GRPC (default 127.0.0.1:30033), DEEPFLOW_SERVE=0|1 (keep serving; default: 1 on a tty).
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh build
if ! command -v cargo >/dev/null; then
  echo "run.sh: cargo not found: install Rust 1.95 (rustup) first" >&2; exit 1
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deepflow-rs-target}"
bin=${DEEPFLOW_BIN_DIR:-}
if [ -z "$bin" ]; then
  # --workspace: one feature set for every binary (a -p build would resolve others)
  cargo build --release -q --workspace --bin deepflow-agent --bin deepflow-server
  bin="$CARGO_TARGET_DIR/release"
fi
agent="$bin/deepflow-agent" server="$bin/deepflow-server"
if [ $# -gt 0 ]; then
  exec "$agent" analyze "$@"
fi

demo=examples/data/demo.pcap
echo "== 1. deepflow-agent analyze $demo (l4_flow_log, then a summary)"
"$agent" analyze "$demo"

data=${DEEPFLOW_DATA:-./data} http=${DEEPFLOW_HTTP:-127.0.0.1:20416} grpc=${DEEPFLOW_GRPC:-127.0.0.1:30033}
mkdir -p "$data"
echo
echo "== 2. deepflow-server run --data $data (HTTP $http, agent gRPC $grpc; log: $data/server.log)"
"$server" run --data "$data" --listen "$http" --grpc-listen "$grpc" > "$data/server.log" 2>&1 &
srv=$!
pids=("$srv")
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do
  curl -sf "http://$http/-/healthy" >/dev/null 2>&1 && break
  kill -0 "$srv" 2>/dev/null || { echo "run.sh: the server exited:" >&2; cat "$data/server.log" >&2; exit 1; }
  sleep 0.1
done
sql() { curl -sf "http://$http/v1/query" --data-urlencode "sql=$1"; }   # JSON (or Arrow IPC)
show() { "$agent" query "$data" "$1"; }   # the same store and SQL engine, printed as a table

echo
echo "== 3. deepflow-agent analyze $demo --server http://$grpc (rows sent as acknowledged batches)"
"$agent" analyze "$demo" --server "http://$grpc" --no-progress

echo
echo "== 4. deepflow-agent run --interface lo --server http://$grpc, with live HTTP traffic on loopback"
"$agent" run --interface lo --filter "tcp port ${http##*:}" --server "http://$grpc" --duration 6 \
  > "$data/agent-live.log" 2>&1 &
live=$!
pids+=("$live")
sleep 1.5
for q in "SELECT 1" "SELECT count(*) FROM l4_flow_log" "SELECT l7_protocol FROM l7_flow_log LIMIT 1"; do
  sql "$q" >/dev/null || true
done
curl -sf "http://$http/api/v1/query?query=up" >/dev/null || true
curl -s "http://$http/no/such/page" >/dev/null || true
wait "$live" || { echo "run.sh: the live agent failed:" >&2; cat "$data/agent-live.log" >&2; }
ebpf_note="eBPF: not run (needs root)"
if [ "$(id -u)" = 0 ]; then
  echo
  echo "== 5. deepflow-agent run --ebpf --server (socket tracer inside the server process: the same requests with pid and comm)"
  ( sleep 1.5; for _ in 1 2 3; do curl -s "http://$http/v1/query?sql=SELECT%202" >/dev/null || true; done ) &
  traffic=$!
  if "$agent" run --ebpf --duration 4 --ebpf-pid "$srv" --server "http://$grpc" 2> "$data/agent-ebpf.log"; then
    ebpf_note="eBPF: the rows with signal_source = ebpf above came from the socket tracer"
  else
    ebpf_note="eBPF: unavailable here ($(tail -1 "$data/agent-ebpf.log"))"
  fi
  wait "$traffic" || true
fi

sleep 1.5  # the server's group commit
echo
echo "== what the server stored (the server's SQL over HTTP returns the same: see below)"
show "SELECT l7_protocol, count(*) AS rows, sum(CASE WHEN response_status <> 'ok' THEN 1 ELSE 0 END) AS errors FROM l7_flow_log GROUP BY l7_protocol ORDER BY rows DESC"
echo
show "SELECT request_type, request_resource, response_code, rrt FROM l7_flow_log WHERE server_port = ${http##*:} AND signal_source = 'packet' ORDER BY start_time LIMIT 8"
echo
[ "$(id -u)" = 0 ] && show "SELECT signal_source, tap_side, process_id_1, process_kname_1, request_type, request_resource, response_code FROM l7_flow_log WHERE signal_source = 'ebpf' AND l7_protocol = 'http' LIMIT 5" && echo
show "SELECT 'l4_flow_log' AS t, count(*) AS rows FROM l4_flow_log UNION ALL SELECT 'network', count(*) FROM network UNION ALL SELECT 'application', count(*) FROM application"
echo "$ebpf_note"
echo
echo "SQL over HTTP: $(sql "SELECT count(*) AS l7_rows FROM l7_flow_log" | head -c 300)"
cat <<EOF

== where to query
  SQL:        curl http://$http/v1/query --data-urlencode "sql=SELECT * FROM l7_flow_log LIMIT 5"
  PromQL:     curl 'http://$http/api/v1/query?query=sum%20by%20(l7_protocol)%20(flow_metrics__application__request__1m)'
  Grafana:    add a Prometheus data source with URL http://$http
  Files:      $data (Parquet, Hive partitions: DuckDB, pyarrow, Spark read them as they are)
  Ingest:     agents gRPC $grpc; Prometheus remote_write http://$http/api/v1/write; OTLP 127.0.0.1:4317/4318
EOF
serve=${DEEPFLOW_SERVE:-}
[ -z "$serve" ] && { [ -t 0 ] && serve=1 || serve=0; }
if [ "$serve" = 1 ]; then
  echo "Serving until Ctrl-C."
  wait "$srv"
fi
