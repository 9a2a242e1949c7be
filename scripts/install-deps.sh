#!/usr/bin/env bash
# Installs the Debian packages deepflow-rs needs to build, test and benchmark.
# Idempotent: only missing packages are installed, `apt-get update` runs at most once.
# Usage: scripts/install-deps.sh [build|test|bench|all]   (default: test)
set -euo pipefail
want=${1:-test}

build_pkgs=(pkg-config libpcap-dev clang llvm libbpf-dev protobuf-compiler)
test_pkgs=(tshark tcpdump iproute2 nftables curl nginx-light dnsmasq-base bind9-dnsutils
           iputils-ping netcat-openbsd ethtool python3 python3-venv golang-go
           redis-server redis-tools openssl)  # redis, openssl: eBPF end-to-end tests
bench_pkgs=(libndpi-bin hyperfine wrk redis-server redis-tools valgrind)
test_pkgs+=(prometheus)  # deepflow-server: PromQL agreement with the real Prometheus 2.x

case "$want" in
  build) pkgs=("${build_pkgs[@]}") ;;
  test)  pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  bench|all) pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test|bench|all]" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "install-deps: missing packages (${missing[*]}) and not root; install them and retry" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
stamp=/var/lib/apt/periodic/deepflow-rs-update-stamp
if [ ! -e "$stamp" ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock | grep -v partial)" ]; then
  echo "install-deps: apt-get update" >&2
  $SUDO apt-get update -qq
  $SUDO mkdir -p "$(dirname "$stamp")" && $SUDO touch "$stamp"
fi
echo "install-deps: installing ${missing[*]}" >&2
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
