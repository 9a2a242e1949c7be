#!/usr/bin/env bash
# Records/s through the Rust API, the C ABI, Python and Go on the same capture.
# Usage: bindings/bench/run.sh [PCAP] [RUNS]
# Without PCAP, builds /tmp/deepflow-bench/big.pcap: 100 copies of examples/data/demo.pcap (real
# traffic) shifted by one hour each with editcap and concatenated with mergecap, so every copy
# is its own set of flows. Release builds; best of RUNS (default 3) for each path.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${2:-3}
work=/tmp/deepflow-bench
mkdir -p "$work"
pcap=${1:-}
if [ -z "$pcap" ]; then
  pcap=$work/big.pcap
  if [ ! -s "$pcap" ]; then
    parts=()
    for i in $(seq 0 99); do
      editcap -F pcap -t $((i * 3600)) examples/data/demo.pcap "$work/part$i.pcap"
      parts+=("$work/part$i.pcap")
    done
    mergecap -F pcap -a -w "$pcap" "${parts[@]}"
    rm -f "${parts[@]}"
  fi
fi
echo "capture: $pcap ($(stat -c %s "$pcap") bytes, $(capinfos -c -M "$pcap" 2>/dev/null | awk '/Number of packets/ {print $NF}') packets)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deepflow-rs-target}"
target=$CARGO_TARGET_DIR
# the same selection as benches/e2e.sh: another selection (`--example X`, `-p X`) resolves other
# features and rebuilds most of the workspace in release
cargo build -q --release --workspace --bins --examples
lib=$target/release
[ -e "$lib/libdeepflow.so" ] || lib=$target/release/deps  # built as a dependency, not selected
"$target/release/examples/rust_baseline" "$pcap" "$runs"
cc -O2 -o "$work/bench_c" bindings/bench/bench.c -I bindings/c/include -L "$lib" -Wl,-rpath,"$lib" -ldeepflow
"$work/bench_c" "$pcap" "$runs"
DEEPFLOW_LIB=$lib/libdeepflow.so PYTHONPATH=bindings/python ${DEEPFLOW_VENV:-/opt/deepflow-venv}/bin/python \
  bindings/bench/bench.py "$pcap" "$runs"
(cd bindings/go && DEEPFLOW_BENCH_PCAP=$pcap CGO_LDFLAGS="-L$lib -Wl,-rpath,$lib" \
  go test -run '^$' -bench . -benchtime "${runs}x" -count 1)
