#!/usr/bin/env bash
# The main job on an embedded default: installs what is missing, builds the agent, and analyzes
# a bundled real capture, printing flows and a summary.
#   ./run.sh                 # analyze the bundled capture
#   ./run.sh FILE.pcap [...] # analyze another file (extra args go to `deepflow-agent analyze`)
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh build
if ! command -v cargo >/dev/null; then
  echo "run.sh: cargo not found: install Rust 1.95 (rustup) first" >&2; exit 1
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deepflow-rs-target}"
cargo build --release -q -p deepflow-agent
agent="$CARGO_TARGET_DIR/release/deepflow-agent"
if [ $# -eq 0 ]; then
  demo=examples/data/demo.pcap
  echo "== deepflow-agent analyze $demo (l4_flow_log)"
  "$agent" analyze "$demo"
else
  "$agent" analyze "$@"
fi
