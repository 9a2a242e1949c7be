#!/usr/bin/env bash
# Creates the Python virtualenv the tests use (/opt/deepflow-venv, or $DEEPFLOW_VENV) and
# installs the Python packages into it. Idempotent: an existing venv is reused and pip is only
# called when a package is missing.
# Usage: scripts/install-python-deps.sh   (prints nothing when everything is there)
set -euo pipefail
venv=${DEEPFLOW_VENV:-/opt/deepflow-venv}
# bindings/python: pyarrow (analyze -> Table), cffi (the C ABI), pytest.
# deepflow-store interop tests: pyarrow, duckdb (and chdb when it installs here: optional).
pkgs=(pyarrow cffi pytest duckdb)
optional=(chdb)

py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
if [ ! -x "$venv/bin/python" ]; then
  echo "install-python-deps: creating $venv" >&2
  "$py" -m venv "$venv"
fi
missing=()
for p in "${pkgs[@]}"; do
  "$venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$p') is None)" 2>/dev/null \
    || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-python-deps: installing ${missing[*]} into $venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${missing[@]}" >&2
fi
# deepflow-store S3 tests: moto's S3-compatible server (the `moto_server` command).
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "install-python-deps: installing moto[server] into $venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check 'moto[server]' >&2
fi
# deepflow-server SkyWalking / Pyroscope ingest tests: the real Python agents
# (apache-skywalking 1.2.0 with its HTTP and gRPC reporters, pyroscope-io 0.8.x).
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(not (m.version('apache-skywalking') == '1.2.0' and m.version('pyroscope-io').startswith('0.8.')))" 2>/dev/null; then
  echo "install-python-deps: installing apache-skywalking==1.2.0 and pyroscope-io 0.8.x into $venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check 'apache-skywalking==1.2.0' 'pyroscope-io>=0.8,<0.9' >&2
fi
# deepflow-server OTLP ingest test: the OpenTelemetry Python SDK with its OTLP exporters
# (proto-http and proto-grpc).
if ! "$venv/bin/python" -c "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, opentelemetry.exporter.otlp.proto.grpc" 2>/dev/null; then
  echo "install-python-deps: installing the OpenTelemetry SDK and OTLP exporters into $venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check opentelemetry-sdk \
    opentelemetry-exporter-otlp-proto-http opentelemetry-exporter-otlp-proto-grpc >&2
fi
for p in "${optional[@]}"; do
  "$venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$p') is None)" 2>/dev/null && continue
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$p" >&2 \
    || echo "install-python-deps: optional $p did not install; its tests are skipped" >&2
done
