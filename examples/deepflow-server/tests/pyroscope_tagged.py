#!/usr/bin/env python3
"""pyroscope-io profiling a busy loop with Kubernetes tags, for tests/otlp_tagging.rs.

Usage: pyroscope_tagged.py SERVER_URL APP_NAME SECONDS TOKEN
Tags: pod=cart-1, namespace=shop (a pod of the test inventory). Uploads at shutdown.
"""
import sys
import time

import pyroscope

url, app, seconds, token = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
pyroscope.configure(
    application_name=app,
    server_address=url,
    auth_token=token,
    sample_rate=100,
    tags={"pod": "cart-1", "namespace": "shop"},
)


def busy_tagged(n):
    s = 0
    for i in range(n):
        s += i * i % 7
    return s


t0 = time.time()
while time.time() - t0 < seconds:
    busy_tagged(200_000)
pyroscope.shutdown()
print("done", flush=True)
