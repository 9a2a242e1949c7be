#!/bin/bash
# Usage (root): cargo build --release -p deepflow-capture --features ebpf --example ebpf_trace
#   TRACE=target/release/examples/ebpf_trace deepflow-capture/examples/ebpf_overhead.sh
# Alternates redis-benchmark runs without and with the eBPF socket tracer (same redis-server).
set -u
TRACE=${TRACE:-target/release/examples/ebpf_trace}
PORT=16399
redis-cli -p $PORT ping >/dev/null 2>&1 || { redis-server --port $PORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & sleep 1; }
run() { redis-benchmark -p $PORT -q -t set,get -n 100000 -c 20 --csv 2>/dev/null | awk -F, '/"(SET|GET)"/{gsub(/"/,"");printf "%s=%s ", $1, $2}'; echo; }
for i in 1 2 3; do
  echo -n "off: "; run
  rm -f /tmp/trace-stop; $TRACE 60 1024 /tmp/trace-stop > /tmp/trace-$i.txt 2>&1 & T=$!
  sleep 2
  echo -n "on:  "; run
  touch /tmp/trace-stop; wait $T; cat /tmp/trace-$i.txt | tail -1
done
