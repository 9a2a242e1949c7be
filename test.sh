#!/usr/bin/env bash
# Runs every test of the project: installs what is missing, then the Rust workspace tests
# (unit, integration against real captures with tshark as the oracle, doc tests).
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh test
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deepflow-rs-target}"
export CARGO_TERM_COLOR=never
cargo test --workspace 2>&1 | tee /tmp/deepflow-rs-test.log | grep -vE '^test .* \.\.\. ok$'
status=${PIPESTATUS[0]}
passed=$(grep -Eo '[0-9]+ passed' /tmp/deepflow-rs-test.log | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' /tmp/deepflow-rs-test.log | awk '{s+=$1} END {print s+0}')
ignored=$(grep -Eo '[0-9]+ ignored' /tmp/deepflow-rs-test.log | awk '{s+=$1} END {print s+0}')
echo "cargo: $passed passed, $failed failed, $ignored skipped"
exit "$status"
