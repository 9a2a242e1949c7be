#!/bin/sh
# Builds the example WASM plugins (wasm32-unknown-unknown, release) and copies the .wasm files
# next to their sources, where tests, benches and the agent load them from:
#   plugins/examples/custom-proto/custom_proto.wasm
#   plugins/examples/http-bizid/http_bizid.wasm
# Needs `rustup target add wasm32-unknown-unknown`. The built files are committed, so tests do
# not need the wasm target; rerun this after changing the SDK or an example.
set -eu
cd "$(dirname "$0")"
TARGET_DIR=${PLUGINS_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}}
for ex in custom-proto http-bizid; do
    crate=$(echo "$ex" | tr - _)
    (cd "examples/$ex" && cargo test --quiet --target-dir "$TARGET_DIR" \
        && cargo build --release --target wasm32-unknown-unknown --target-dir "$TARGET_DIR")
    cp "$TARGET_DIR/wasm32-unknown-unknown/release/df_plugin_$crate.wasm" "examples/$ex/$crate.wasm"
    echo "built examples/$ex/$crate.wasm ($(wc -c < "examples/$ex/$crate.wasm") bytes)"
done
