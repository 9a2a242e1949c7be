"""A CPU-busy Python program profiled by pyroscope-io, uploading to deepflow-server /ingest.

Usage: pyroscope_busy.py SERVER_URL APP_NAME SECONDS
Spins in busy_work_deepflow() for SECONDS (pyroscope-io uploads every 10 s, and once more at
shutdown), with the tag env=test.
"""
import sys
import time

import pyroscope

url, app, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
pyroscope.configure(application_name=app, server_address=url, sample_rate=100, tags={"env": "test"})


def busy_work_deepflow(n):
    s = 0
    for i in range(n):
        s += i * i % 7
    return s


t0 = time.time()
while time.time() - t0 < seconds:
    busy_work_deepflow(200_000)
pyroscope.shutdown()
print("done", flush=True)
