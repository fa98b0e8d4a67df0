#!/usr/bin/env bash
# Instructions the service runs per create (POST /api/v1/competitors), counted by callgrind:
# its user-space side of the route (HTTP, JSON, the FCALL's sending and answer, the log line,
# the change announcement it receives), repeatable whatever else the machine is doing, unlike
# its CPU microseconds. The kernel's side (sockets, wake-ups) is not counted. Called by
# service.sh; usable alone.
#
# Usage: bench/service_cost.sh BIN REDIS_PORT [CALLS]
#   BIN: the release binary; REDIS_PORT: a Redis on 127.0.0.1 (the creates go to database 0,
#   fresh bibs `sc<run>-<n>`). The service runs under `valgrind --tool=callgrind`, takes 500
#   creates, then CALLS more (default 2,000) counted, from 8 keep-alive connections.
#   Prints one line: SERVICECOST <instructions per create>.
# Needs: valgrind (callgrind_control), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1 REDIS_PORT=$2 CALLS=${3:-2000}
# shellcheck source=bench/lib.sh
. bench/lib.sh
port=$(free_port)
# (One tokio worker, as in the service's task and in service.sh.)
LISTEN_ADDR="127.0.0.1:$port" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" RUST_LOG=info \
  TOKIO_WORKER_THREADS="${SERVICE_WORKERS:-1}" \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.out" \
  "$BIN" 2>"$work/service.log" &
pid=$!; pids+=("$pid")
# (Under valgrind the service takes seconds to start.)
wait_for 60 "the service under callgrind" \
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/ready', timeout=1)"
creates() { # count name: creates `count` competitors, fails on any answer but 201
  timeout 600 python3 - "$port" "$1" "$2" <<'EOF'
import http.client, sys, threading
port, count, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
failures = []
def post(first):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for n in range(first, count, 8):
        body = ('{"bib":"%s-%d","first_name":"Bench","last_name":"Runner","gender":"male",'
                '"country":"FI","category":"men20"}' % (name, n))
        conn.request("POST", "/api/v1/competitors", body, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        if answer.status != 201:
            failures.append(answer.status)
threads = [threading.Thread(target=post, args=(first,)) for first in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
if failures:
    sys.exit(f"service_cost: {len(failures)} creates answered {sorted(set(failures))}")
EOF
}
run=sc$(date +%s%N | tail -c 7)
creates 500 "${run}w"
callgrind_control -i on "$pid" >/dev/null 2>&1
creates "$CALLS" "${run}c"
callgrind_control -d "$pid" >/dev/null 2>&1
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
# The dump taken above (the file written at exit holds what ran after it).
out=$(ls "$work"/cg.out.* | head -1)
awk -v n="$CALLS" '/^(summary|totals):/ { total = $2 } END { printf "SERVICECOST %d\n", total / n }' "$out"
