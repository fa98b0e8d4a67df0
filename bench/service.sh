#!/usr/bin/env bash
# Benchmark of the timing service (issue 2), on loopback only, every step bounded in time.
#
# Builds the release binary, starts its own redis-server and the service on free 127.0.0.1
# ports, loads N competitors (default 10,000) with start and finish times, then runs wrk
# (Debian package `wrk`) for DURATION per scenario at 16 connections, and redis-benchmark
# (non-pipelined, 16 connections) on the same Redis as the ceiling. Prints a table of req/s,
# p50 and p99, and the service's peak resident memory (VmHWM). Cleans up its processes.
#
# Usage: bench/service.sh            (DURATION=10s COMPETITORS=10000 CONNECTIONS=16 by default)
# Needs: cargo, redis-server, redis-benchmark, wrk, python3.
# Targets: each single-key route >= 1/3 of redis-benchmark's ops/s; results page p99 < 10 ms
# with 10,000 competitors; service RSS < 30 MB.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
COMPETITORS=${COMPETITORS:-10000}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

for tool in cargo redis-server redis-benchmark wrk python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install -y redis-server redis-tools wrk)" >&2; exit 1; }
done

echo "==> cargo build --release -p timing-service" >&2
cargo build --release -p timing-service >&2
BIN="$CARGO_TARGET_DIR/release/timing-service"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() { # description, command...
  local what=$1; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "bench: $what did not come up within 10 s" >&2
  exit 1
}

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
wait_for redis redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
LISTEN_ADDR="127.0.0.1:$PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" RUST_LOG=${RUST_LOG:-info} \
  "$BIN" 2>"$work/service.log" &
SERVICE_PID=$!
pids+=("$SERVICE_PID")
wait_for service python3 -c "import urllib.request; urllib.request.urlopen('$BASE/ready', timeout=1)"

echo "==> loading $COMPETITORS competitors with times" >&2
timeout 300 python3 bench/load.py "$BASE" "$COMPETITORS"

rows=()
row() { # label req/s p50 p99 non2xx errors ceiling
  local ratio="-"
  if [ -n "${7:-}" ]; then ratio=$(python3 -c "print(f'{$2 / $7:.2f}')"); fi
  rows+=("$(printf '%-44s %10s %8s %8s %8s %8s' "$1" "$2" "$3" "$4" "$5/$6" "$ratio")")
}

echo "==> redis-benchmark -c $CONNECTIONS -t set,get (non-pipelined)" >&2
declare -A RB
while IFS=, read -r test rps avg min p50 p95 p99 max; do
  test=${test//\"/}; rps=${rps//\"/}; p50=${p50//\"/}; p99=${p99//\"/}
  case "$test" in SET|GET) RB[$test]=$rps; row "redis-benchmark $test (ceiling)" "${rps%.*}" "$p50" "$p99" 0 0 ;; esac
done < <(timeout 120 redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$CONNECTIONS" -n 300000 -t set,get --csv)

scenario() { # label scenario ceiling
  local out
  out=$(timeout 120 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/wrk/timing.lua "$BASE" -- "$2" "$COMPETITORS" | grep '^RESULT')
  read -r _ _requests rps p50 p99 non2xx errors <<<"$out"
  row "$1" "$rps" "$p50" "$p99" "$non2xx" "$errors" "$3"
  if [ "$2" = create ]; then CREATE_RPS=$rps; fi
}

echo "==> wrk -t$THREADS -c$CONNECTIONS -d$DURATION per scenario" >&2
scenario "GET /api/v1/results?limit=50 (random page)" results "${RB[GET]}"
scenario "GET /api/v1/competitors/{bib}/times" gettimes "${RB[GET]}"
scenario "GET /gettimes/{bib} (legacy)" legacy "${RB[GET]}"
scenario "PUT /api/v1/competitors/{bib}/times/finish" settime "${RB[SET]}"
scenario "POST /api/v1/competitors (new bib)" create "${RB[SET]}"

# The ceiling of a create in Redis itself: the service's own write script (mutate.lua), run by
# redis-benchmark with no HTTP and no service in the way, on fresh bibs. A create writes the
# record, its results row and seven index entries atomically (store.rs), so this is the most
# any create route on this Redis can reach; run last, as it adds competitors.
echo "==> redis-benchmark EVALSHA mutate.lua put create (the write script alone)" >&2
SHA=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" SCRIPT LOAD "$(cat service/src/store/mutate.lua)")
while IFS=, read -r _test rps _avg _min p50 _p95 p99 _max; do
  rps=${rps//\"/}; p50=${p50//\"/}; p99=${p99//\"/}
  SCRIPT_RPS=$rps
  row "redis-benchmark create script (ceiling)" "${rps%.*}" "$p50" "$p99" 0 0 "${RB[SET]}"
done < <(timeout 120 redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$CONNECTIONS" -n 100000 \
  -r 1000000000 --csv EVALSHA "$SHA" 0 put "s__rand_int__" 0 4 start split1 split2 finish create \
  bib "s__rand_int__" first_name Bench last_name Script gender male country FI category men20 |
  tail -n +2)

hwm=$(awk '/VmHWM/ {print $2}' "/proc/$SERVICE_PID/status")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$SERVICE_PID/status")

echo
echo "timing-service benchmark: $COMPETITORS competitors ranked, $CONNECTIONS connections, $DURATION per scenario, $(nproc) CPUs"
printf '%-44s %10s %8s %8s %8s %8s\n' "scenario" "req/s" "p50 ms" "p99 ms" "non2xx/err" "x redis"
for r in "${rows[@]}"; do echo "$r"; done
echo "service peak RSS (VmHWM): $((hwm / 1024)) MB (current VmRSS $((rss / 1024)) MB)"
echo "(x redis = req/s divided by redis-benchmark's GET for reads, SET for writes; target >= 0.33)"
if [ -n "${SCRIPT_RPS:-}" ] && [ -n "${CREATE_RPS:-}" ]; then
  echo "(POST /api/v1/competitors reaches $(python3 -c "print(f'{$CREATE_RPS / $SCRIPT_RPS:.2f}')") of its write script's own ceiling in Redis)"
fi
