#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the real captures in tests/fixtures/<target>/ (and the
extra ones below): each TCP stream / UDP datagram becomes one input in the format of
fuzz_targets/common.rs ([ctl][len][bytes]..., ctl bit 0 = server-to-client), so libFuzzer starts
from real conversations. Needs tshark. Usage: fuzz/seed_corpus.py [targets...]"""
import os, subprocess, sys, hashlib, collections

here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.join(here, "..", "tests", "fixtures")
extra = {"http2": ["grpc"], "http1": ["h2c"]}
targets = [l.split() for l in open(os.path.join(here, "targets.txt")) if l.strip()]
want = set(sys.argv[1:])

def conversations(pcap):
    out = subprocess.run(["tshark", "-n", "-r", pcap, "-T", "fields", "-E", "separator=;",
                          "-e", "tcp.stream", "-e", "udp.stream", "-e", "tcp.srcport", "-e", "udp.srcport",
                          "-e", "tcp.payload", "-e", "udp.payload"], capture_output=True, text=True).stdout
    convs, client = collections.OrderedDict(), {}
    for line in out.splitlines():
        f = line.split(";")
        if len(f) < 6:
            continue
        key = ("t", f[0]) if f[0] else ("u", f[1])
        payload = f[4] or f[5]
        if not payload or not key[1]:
            continue
        port = f[2] or f[3]
        client.setdefault(key, port)
        data = bytes.fromhex(payload.replace(":", ""))
        conv = convs.setdefault(key, bytearray())
        if key[0] == "u" and not conv:
            conv += b"\x00"  # datagram targets: first byte even = UDP
        ctl = 0 if port == client[key] else 1
        for i in range(0, len(data), 255):
            chunk = data[i:i + 255]
            conv += bytes([ctl, len(chunk)]) + chunk
    return convs.values()

for name, _port, tr in targets:
    if want and name not in want:
        continue
    dirs = [name] + extra.get(name, [])
    corpus = os.path.join(here, "corpus", name)
    os.makedirs(corpus, exist_ok=True)
    n = 0
    for d in dirs:
        p = os.path.join(fixtures, d, d + ".pcap")
        if not os.path.exists(p):
            continue
        for conv in conversations(p):
            conv = bytes(conv[:16384])
            if tr == "both" and not conv.startswith(b"\x00"):
                conv = b"\x01" + conv  # odd first byte = TCP
            open(os.path.join(corpus, hashlib.sha1(conv).hexdigest()), "wb").write(conv)
            n += 1
    print(f"{name}: {n} seeds")
