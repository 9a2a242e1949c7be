#!/usr/bin/env bash
# End-to-end benchmark: `deepflow-agent analyze` against peers on the same capture, same run.
#   benches/e2e.sh [FILE.pcap]     (default: makes a 10 s mixed capture with ../shared/realtraffic/bigpcap.sh)
# Prints a markdown table (packets/s, ratios, peak RSS) and writes it to bench-out/e2e.md.
# Peers: tcpdump -r FILE -w /dev/null (the floor of reading the file), ndpiReader -i FILE
# (flows + DPI classification), tshark -r FILE -q -z conv,tcp (flows).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh bench
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deepflow-rs-target}"
file=${1:-}
if [ -z "$file" ]; then
  file=bench-out/big10s.pcap
  if [ ! -s "$file" ]; then
    mkdir -p bench-out
    rt=../shared/realtraffic
    [ -x "$rt/bigpcap.sh" ] || { echo "e2e: no FILE given and $rt/bigpcap.sh missing" >&2; exit 1; }
    "$rt/install.sh" >/dev/null
    "$rt/bigpcap.sh" "$file" 10
  fi
fi
# --workspace: the same feature set as every other build here (a -p build would resolve other
# features and rebuild DataFusion)
agent="${AGENT:-$CARGO_TARGET_DIR/release/deepflow-agent}"
# AGENT=path skips the build (a `--bin` build resolves other features than `--bins --examples`)
[ -n "${AGENT:-}" ] || cargo build --release -q --workspace --bins --examples
mkdir -p bench-out
packets=$(capinfos -c -M "$file" | awk -F: '/Number of packets/ {gsub(/ /,"",$2); print $2}')
runs=${RUNS:-3}
# Warm the page cache so every tool reads from memory.
cat "$file" >/dev/null

tf=$(mktemp)
trap 'rm -f "$tf"' EXIT
measure() { # name cmd...: best-of-$runs wall seconds, the CPU seconds (user + system) of that run, max RSS (KiB)
  local name=$1; shift
  local best="" cpu="" rss=0
  for _ in $(seq "$runs"); do
    local out
    # -o: the tool's own stderr goes to /dev/null, time's figures to a file
    /usr/bin/time -o "$tf" -f '%e %U %S %M' "$@" >/dev/null 2>&1 || true
    out=$(tail -1 "$tf")
    local t u s m
    read -r t u s m <<<"$out"
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; cpu=$(awk "BEGIN{printf \"%.2f\", $u+$s}"); fi
    [ "$m" -gt "$rss" ] && rss=$m
  done
  echo "$name|$best|$rss|$cpu"
}

results=()
results+=("$(measure 'deepflow-agent analyze --no-l7 (decode, flows, L4 metrics, reassembly)' "$agent" analyze "$file" --format jsonl --emit flows --no-l7 --no-progress)")
results+=("$(measure 'deepflow-agent analyze --emit sessions (+ every L7 parser)' "$agent" analyze "$file" --format jsonl --emit sessions --no-progress)")
results+=("$(measure 'tcpdump -r FILE -w /dev/null (read floor)' tcpdump -r "$file" -w /dev/null)")
results+=("$(measure 'ndpiReader -i FILE -q' ndpiReader -i "$file" -q)")
if [ "${SKIP_TSHARK:-0}" != 1 ]; then
  results+=("$(runs=1; measure 'tshark -r FILE -q -z conv,tcp' tshark -r "$file" -q -z conv,tcp)")
  # (no '|' in a name: the rows are '|'-separated)
  results+=("$(runs=1; measure "tshark -r FILE -Y 'http or dns' -T fields" tshark -r "$file" -Y 'http||dns' -T fields -e http.request.method -e http.request.uri -e http.response.code -e dns.qry.name -e dns.flags.rcode)")
fi

ours=$(echo "${results[0]}" | cut -d'|' -f2)
# Coverage: the requests tshark finds vs the rows the agent emits.
"$agent" analyze "$file" --format jsonl --emit sessions --no-progress > bench-out/sessions.jsonl
our_http=$(grep -c '"l7_protocol":"http".*"request_type":"[A-Z]' bench-out/sessions.jsonl || true)
our_dns=$(grep -c '"l7_protocol":"dns"' bench-out/sessions.jsonl || true)
if [ "${SKIP_TSHARK:-0}" != 1 ]; then
  their_http=$(tshark -r "$file" -Y http.request -T fields -e frame.number -E occurrence=a -e http.request.method 2>/dev/null | awk -F'\t' '{n+=split($2,a,",")} END {print n+0}')
  their_dns=$(tshark -r "$file" -Y 'dns.flags.response==0' -T fields -e frame.number 2>/dev/null | wc -l)
else
  their_http=n/a; their_dns=n/a
fi
{
  echo "file: $file ($packets packets, $(du -h "$file" | cut -f1)); best of $runs runs (tshark: 1); $(nproc) cores; $(date -u +%Y-%m-%d)"
  echo
  echo "| tool | seconds | CPU seconds (user+sys) | packets/s | deepflow-agent (L4) speed-up | peak RSS MiB |"
  echo "|---|---:|---:|---:|---:|---:|"
  for r in "${results[@]}"; do
    IFS='|' read -r name t rss cpu <<<"$r"
    pps=$(awk "BEGIN{printf \"%.0f\", $packets/($t>0?$t:0.001)}")
    ratio=$(awk "BEGIN{printf \"%.2fx\", ($t>0?$t:0.001)/($ours>0?$ours:0.001)}")
    echo "| $name | $t | $cpu | $pps | $ratio | $((rss/1024)) |"
  done
  echo
  echo "requests found: HTTP $our_http (tshark $their_http), DNS queries $our_dns (tshark $their_dns)"
} | tee bench-out/e2e.md
