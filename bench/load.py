#!/usr/bin/env python3
"""Loads N competitors with start and finish times into the timing service (bench/service.sh).

Usage: load.py http://127.0.0.1:PORT N. Bibs are 000000000001 .. N, 12 digits as
redis-benchmark's __rand_int__ writes them, so its runs of the write functions hit them. Uses a few keep-alive connections; fails loudly on any
non-2xx answer. Start times vary per runner and finish times repeat, so the ranking has ties.
"""
import http.client
import json
import random
import sys
import threading
from urllib.parse import urlparse

GENDERS = ["male", "female", "na"]
CATEGORIES = ["men20", "men30", "men40", "men50+", "women20", "women30", "women40", "women50+"]


def worker(host, port, bibs, errors):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    headers = {"Content-Type": "application/json"}
    rnd = random.Random(bibs[0])
    for number in bibs:
        bib = f"{number:012d}"  # as redis-benchmark's __rand_int__ writes it (service.sh)
        competitor = {"bib": bib, "first_name": f"First{bib}", "last_name": f"Last{bib}",
                      "gender": GENDERS[number % 3], "country": "Finland",
                      "category": CATEGORIES[number % 8]}
        start_s = 9 * 3600 + rnd.randrange(0, 1800)
        finish_s = start_s + 3600 + rnd.randrange(0, 3600)
        times = {"start": f"{start_s // 3600:02}:{start_s // 60 % 60:02}:{start_s % 60:02}.000",
                 "finish": f"{finish_s // 3600:02}:{finish_s // 60 % 60:02}:{finish_s % 60:02}.000"}
        for method, path, body in (("POST", "/api/v1/competitors", competitor),
                                   ("PATCH", f"/api/v1/competitors/{bib}/times", times)):
            conn.request(method, path, json.dumps(body), headers)
            response = conn.getresponse()
            text = response.read()
            if response.status >= 300:
                errors.append(f"{method} {path}: {response.status} {text[:200]!r}")
                return


def main():
    url, n = urlparse(sys.argv[1]), int(sys.argv[2])
    errors, workers = [], 4
    threads = [threading.Thread(target=worker,
                                args=(url.hostname, url.port, list(range(1 + i, n + 1, workers)), errors))
               for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("load failed: " + "; ".join(errors[:3]))


if __name__ == "__main__":
    main()
