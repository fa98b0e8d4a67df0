#!/usr/bin/env python3
"""Posts chip-read batches at a steady rate, for bench/service.sh's results-while-ingesting row.

Usage: ingest.py http://127.0.0.1:PORT COMPETITORS BATCHES_PER_SECOND SECONDS
Each batch is 500 split1 reads of random bibs (000000000001 .. COMPETITORS, as load.py names
them) at random times of day, unique ids, as bench/wrk/timing.lua's `passings` scenario. A
batch goes out every 1/BATCHES_PER_SECOND s (sooner if the previous one was late). Prints one
line: INGEST batches reads non_200 seconds.
"""
import http.client
import json
import random
import sys
import time
from urllib.parse import urlparse

url, competitors, rate, seconds = urlparse(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
rnd = random.Random()
prefix = f"ing{int(time.time() * 1000)}"
start = time.monotonic()
batches = failed = 0
while time.monotonic() - start < seconds:
    due = start + batches / rate
    if due > time.monotonic():
        time.sleep(due - time.monotonic())
    reads = [{"id": f"{prefix}-{batches}-{i}", "checkpoint": "split1",
              "bib": f"{rnd.randint(1, competitors):012d}",
              "time": f"{rnd.randint(10, 12):02}:{rnd.randint(0, 59):02}:{rnd.randint(0, 59):02}.{rnd.randint(0, 999):03}",
              "source": "bench"} for i in range(500)]
    conn.request("POST", "/api/v1/passings", json.dumps({"passings": reads}), {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    batches += 1
    if response.status != 200:
        failed += 1
print(f"INGEST {batches} {batches * 500} {failed} {time.monotonic() - start:.1f}")
