#!/usr/bin/env python3
"""Long-poll benchmark for bench/service.sh: holds N waiting long polls on one service process,
then makes one write and measures the time until the last waiter is answered.

Usage: longpoll.py http://127.0.0.1:PORT N SERVICE_PID
Prints one line: LONGPOLL held answered_200 write_to_last_ms rss_idle_kb rss_held_kb
write_to_first_ms write_to_median_ms (this client reads the answers in one Python process, so
the spread from first to last is partly its own)
Every waiter asks `GET /api/v1/results?limit=50&wait=25s` with the current ETag (scope `all`);
the write is a new finish time through the API, which changes that scope.
"""
import asyncio
import http.client
import json
import sys
import time
from urllib.parse import urlparse


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def current_etag(host, port):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/api/v1/results?limit=50")
    response = conn.getresponse()
    response.read()
    return response.getheader("ETag")


def write(host, port):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("PUT", "/api/v1/competitors/000000000001/times/finish",  # load.py's first bib
                 json.dumps({"time": "09:01:02.345"}), {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    if response.status != 204:
        sys.exit(f"longpoll: the write answered {response.status}")


async def waiter(host, port, etag, parked, answered):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write((f"GET /api/v1/results?limit=50&wait=25s HTTP/1.1\r\nHost: {host}\r\n"
                  f"If-None-Match: {etag}\r\n\r\n").encode())
    await writer.drain()
    parked.append(1)
    status_line = await reader.readline()
    answered.append((time.monotonic(), status_line.split(b" ")[1] if status_line else b"-"))
    writer.close()


async def main():
    url, n, pid = urlparse(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    host, port = url.hostname, url.port
    etag = current_etag(host, port)
    rss_idle = rss_kb(pid)
    parked, answered, tasks = [], [], []
    for start in range(0, n, 250):  # open in steps: the listen backlog is finite
        for _ in range(start, min(n, start + 250)):
            tasks.append(asyncio.create_task(waiter(host, port, etag, parked, answered)))
        while len(parked) < min(n, start + 250):
            await asyncio.sleep(0.01)
    # The requests are sent; give the service a moment to read and park them all.
    await asyncio.sleep(2)
    held = n - len(answered)
    rss_held = rss_kb(pid)
    before = time.monotonic()
    await asyncio.to_thread(write, host, port)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    last = max(t for t, _ in answered)
    ok = sum(1 for _, status in answered if status == b"200")
    others = {}
    for _, status in answered:
        if status != b"200":
            others[status.decode()] = others.get(status.decode(), 0) + 1
    if others:
        print(f"longpoll: answers other than 200: {others}", file=sys.stderr)
    times = sorted(t for t, _ in answered)
    first, median = times[0], times[len(times) // 2]
    print(f"LONGPOLL {held} {ok} {(last - before) * 1000:.0f} {rss_idle} {rss_held} "
          f"{(first - before) * 1000:.0f} {(median - before) * 1000:.0f}")


asyncio.run(main())
