#!/usr/bin/env bash
# Long fuzz run of the L7 parsers with cargo-fuzz (nightly + libFuzzer).
# Usage: deepflow-protocols/fuzz/run.sh [RUNS_PER_TARGET=1000000] [targets...]
# Needs: rustup nightly toolchain and `cargo install cargo-fuzz`.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-1000000}"
shift || true
TARGETS=("${@:-http1 dns tls}")
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/fuzz/target}"
for t in ${TARGETS[@]}; do
    mkdir -p "fuzz/corpus/$t"
    echo "== $t: $RUNS runs"
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -runs="$RUNS" -max_len=4096 -rss_limit_mb=2048 2>&1 |
        grep -E "Done [0-9]+ runs|ERROR|panicked|SUMMARY" || true
    test "${PIPESTATUS[0]}" -eq 0
done
