#!/usr/bin/env bash
# Long fuzz run of the L7 parsers with cargo-fuzz (nightly + libFuzzer), one target per parser
# (targets.txt). Seeds each corpus from the real captures first (seed_corpus.py, needs tshark).
# Usage: deepflow-protocols/fuzz/run.sh [RUNS_PER_TARGET=1000000] [targets...]
# Needs: rustup nightly toolchain and `cargo install cargo-fuzz`. Not part of the test command:
# tests/fuzz_stack.rs and the per-parser split/truncation tests run a fixed-seed share on stable.
# Built without a sanitizer (`-s none`, release): the crates forbid `unsafe`, so ASan adds cost
# and no findings; a panic or abort still fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-1000000}"
shift || true
if [ $# -gt 0 ]; then TARGETS=("$@"); else mapfile -t TARGETS < <(awk '{print $1}' fuzz/targets.txt); fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/fuzz/target}"
python3 fuzz/seed_corpus.py "${TARGETS[@]}" >/dev/null
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    start=$(date +%s)
    log=$(mktemp)
    if cargo +nightly fuzz run -s none -O "$t" "fuzz/corpus/$t" -- -runs="$RUNS" -max_len=4096 \
        -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
        echo "$t: $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1), corpus $(ls "fuzz/corpus/$t" | wc -l), $(( $(date +%s) - start )) s wall"
    else
        echo "$t: FAILED"; grep -E "panicked|ERROR|SUMMARY|artifact" "$log" | head -20; rm -f "$log"; exit 1
    fi
    rm -f "$log"
done
