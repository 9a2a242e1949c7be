"""records/s through the Python binding (Arrow batches into pyarrow). Usage: bench.py PCAP [RUNS]"""
import sys
import time

import deepflow

pcap, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
best, n = 1e9, 0
for _ in range(runs):
    t0 = time.perf_counter()
    with deepflow.Analyzer() as a:  # flows + l7, like the other benches
        a.open_file(pcap)
        n = 0
        ended = False
        while not ended:
            ended, _ = a.poll(65536)
            n += a.take("flows").num_rows + a.take("l7").num_rows
    best = min(best, time.perf_counter() - t0)
print(f"python-arrow: {n} records in {best:.3f} s = {n / best:.0f} records/s")
