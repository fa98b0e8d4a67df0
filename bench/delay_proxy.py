#!/usr/bin/env python3
"""HTTP proxy in front of an AWS emulator: adds a fixed delay to every request (a model of
real AWS API latency) and counts requests by operation.

    delay_proxy.py --listen-port PORT --upstream http://127.0.0.1:MOTO --delay-ms 50

The operation of a request is the part after the last dot of `X-Amz-Target` (JSON protocols:
ECS, ECR, CloudWatch Logs, Cloud Map), else the `Action` field of the form body or query
string (query protocols: IAM, EC2, STS). The service is taken from the credential scope of the
`Authorization` header. An operation is read-only when it starts with Describe, List, Get,
BatchGet, BatchCheck or Filter (the same rule as the provisioner's own counter), else mutating.

Control endpoints (answered by the proxy, never forwarded, never counted or delayed):
    GET  /__proxy/stats   JSON: requests, read, mutating, busy_seconds (sum of the requests'
                          time in the proxy, delay included), operations (`service.Operation`
                          -> count), operation_seconds (-> time)
    POST /__proxy/reset   forget the counts

Each request is handled on its own thread: the delay is a sleep on that thread, so
concurrent requests overlap their delays exactly as concurrent calls to AWS overlap their
latencies. Listens on 127.0.0.1 only.
"""

import argparse
import http.client
import json
import re
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

READ_PREFIXES = ("Describe", "List", "Get", "BatchGet", "BatchCheck", "Filter")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


def is_read_only(operation):
    return operation.startswith(READ_PREFIXES)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.operations = {}
            self.seconds = {}
            self.requests = 0
            self.read = 0
            self.mutating = 0
            self.busy = 0.0

    def record(self, service, operation, seconds):
        with self.lock:
            key = f"{service}.{operation}"
            self.operations[key] = self.operations.get(key, 0) + 1
            self.seconds[key] = self.seconds.get(key, 0.0) + seconds
            self.requests += 1
            if is_read_only(operation):
                self.read += 1
            else:
                self.mutating += 1
            self.busy += seconds

    def snapshot(self):
        with self.lock:
            return {
                "requests": self.requests,
                "read": self.read,
                "mutating": self.mutating,
                "busy_seconds": round(self.busy, 4),
                "operations": dict(sorted(self.operations.items())),
                "operation_seconds": {k: round(v, 4) for k, v in sorted(self.seconds.items())},
            }


def operation_of(headers, method, path, body):
    """`headers` is case-insensitive (SDKs differ in the case of header names)."""
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    fields = {}
    query = urllib.parse.urlsplit(path).query
    if query:
        fields.update(urllib.parse.parse_qs(query))
    content_type = headers.get("Content-Type", "")
    if body and "x-www-form-urlencoded" in content_type:
        fields.update(urllib.parse.parse_qs(body.decode("utf-8", "replace")))
    if "Action" in fields:
        return fields["Action"][0]
    # REST protocols (EFS) name the operation by method and path only: a GET only reads.
    verb = "Describe" if method in ("GET", "HEAD") else method
    return f"{verb} {urllib.parse.urlsplit(path).path}"


def service_of(headers):
    match = SCOPE.search(headers.get("Authorization", ""))
    return match.group(1) if match else "unknown"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs expect
    # TCP_NODELAY: headers and body go out in separate writes; with Nagle's algorithm the
    # body would wait for the client's delayed ACK (~40 ms on Linux) on a kept-alive
    # connection, adding latency to every sequential call.
    disable_nagle_algorithm = True
    server_version = "delay-proxy"

    def log_message(self, fmt, *args):  # quiet
        pass

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def control(self):
        stats = self.server.stats
        if self.path == "/__proxy/stats":
            body = json.dumps(stats.snapshot()).encode()
        elif self.path == "/__proxy/reset" and self.command == "POST":
            stats.reset()
            body = b"{}"
        else:
            self.reply(404, b"unknown control path")
            return
        self.reply(200, body, [("Content-Type", "application/json")])

    def handle_any(self):
        body = self.read_body()
        if self.path.startswith("/__proxy/"):
            self.control()
            return
        started = time.monotonic()
        operation = operation_of(self.headers, self.command, self.path, body)
        service = service_of(self.headers)
        if self.server.delay > 0:
            time.sleep(self.server.delay)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = self.server.upstream_netloc
        headers["Content-Length"] = str(len(body))
        try:
            conn = http.client.HTTPConnection(
                self.server.upstream_host, self.server.upstream_port, timeout=120
            )
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.request(self.command, self.path, body=body, headers=headers)
            upstream = conn.getresponse()
            data = upstream.read()
            status = upstream.status
            out_headers = [
                (k, v) for k, v in upstream.getheaders() if k.lower() not in HOP_BY_HOP
            ]
            conn.close()
        except OSError as err:
            status, data, out_headers = 502, f"delay proxy: {err}".encode(), []
        self.server.stats.record(service, operation, time.monotonic() - started)
        self.reply(status, data, out_headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:5000")
    parser.add_argument("--delay-ms", type=float, default=50.0)
    args = parser.parse_args()
    upstream = urllib.parse.urlsplit(args.upstream)
    server = Server(("127.0.0.1", args.listen_port), Handler)
    server.upstream_host = upstream.hostname
    server.upstream_port = upstream.port or 80
    server.upstream_netloc = upstream.netloc
    server.delay = args.delay_ms / 1000.0
    server.stats = Stats()
    print(
        f"delay proxy on 127.0.0.1:{args.listen_port} -> {args.upstream}, +{args.delay_ms:g} ms",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
