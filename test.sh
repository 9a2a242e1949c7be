#!/usr/bin/env bash
# Runs every test of the project: installs what is missing, then the Rust workspace tests
# (unit, integration against real captures with tshark as the oracle, doc tests), then the
# Python (pytest) and Go (go test) bindings over the C ABI library (bindings/).
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh test
scripts/install-python-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deepflow-rs-target}"
export CARGO_TERM_COLOR=never
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/deepflow-rs-test.log | grep -vE '^test .* \.\.\. ok$'
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '[0-9]+ passed' /tmp/deepflow-rs-test.log | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' /tmp/deepflow-rs-test.log | awk '{s+=$1} END {print s+0}')
ignored=$(grep -Eo '[0-9]+ ignored' /tmp/deepflow-rs-test.log | awk '{s+=$1} END {print s+0}')
cargo_line="cargo: $passed passed, $failed failed, $ignored skipped"

# Bindings: the C ABI library (libdeepflow.so) once, then pytest and go test against it.
# `cargo test --workspace` above built the cdylib next to the test binaries (target/debug/deps);
# build it only when it is missing (a plain `cargo build -p deepflow-c` resolves other features).
lib_dir="$CARGO_TARGET_DIR/debug/deps"
py_line="pytest: not run (cargo build -p deepflow-c failed)"
go_line="go test: not run (cargo build -p deepflow-c failed)"
have_lib() { [ -e "$lib_dir/libdeepflow.so" ] || { cargo build -p deepflow-c && lib_dir="$CARGO_TARGET_DIR/debug"; }; }
if have_lib; then
  venv=${DEEPFLOW_VENV:-/opt/deepflow-venv}
  set +e
  DEEPFLOW_LIB="$lib_dir/libdeepflow.so" "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider bindings/python/tests \
    2>&1 | tee /tmp/deepflow-rs-pytest.log
  py_status=${PIPESTATUS[0]}
  (cd bindings/go && CGO_LDFLAGS="-L$lib_dir -Wl,-rpath,$lib_dir" go test -count=1 -v ./... 2>&1) \
    | tee /tmp/deepflow-rs-gotest.log | grep -vE '^(=== RUN|--- PASS)'
  go_status=${PIPESTATUS[0]}
  # pytest's last line: "10 passed, 1 skipped in 2.70s" (-q) or "=== ... in 2.70s ===".
  summary=$(grep -E '(passed|failed|skipped|error).* in [0-9.]+s' /tmp/deepflow-rs-pytest.log | tail -1)
  count() { local n; n=$(echo "$summary" | grep -Eo "[0-9]+ $1" | awk '{print $1}' | tail -1); echo "${n:-0}"; }
  py_line="pytest: $(count passed) passed, $(count failed) failed, $(count skipped) skipped"
  go_line="go test: $(grep -c -- '--- PASS' /tmp/deepflow-rs-gotest.log) passed, $(grep -c -- '--- FAIL' /tmp/deepflow-rs-gotest.log) failed, $(grep -c -- '--- SKIP' /tmp/deepflow-rs-gotest.log) skipped"
  set -e
  [ "$py_status" -eq 0 ] || status=1
  [ "$go_status" -eq 0 ] || status=1
else
  status=1
fi
echo "$cargo_line"
echo "$py_line"
echo "$go_line"
exit "$status"
