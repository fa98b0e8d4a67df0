#!/usr/bin/env bash
# Instructions Redis runs per create (issue 11), counted by callgrind: repeatable whatever else
# the machine is doing, unlike microseconds. Called by service.sh; usable alone.
#
# Usage: bench/write_cost.sh REDIS_PORT [PREFILL] [CALLS]
#   REDIS_PORT: a Redis on 127.0.0.1 where the service loaded its `timing` library (copied
#   from there). For the old EVAL script (bench/baseline/mutate.lua) and for the library, one
#   at a time: a plain redis-server takes PREFILL creates of fresh bibs (default 100,000, as
#   service.sh's redis-benchmark rows), saves them, and a redis-server under
#   `valgrind --tool=callgrind` loads them and runs CALLS more (default 2,000, one
#   connection). Prints one line: WRITECOST <old instructions per call> <library's>, the
#   instructions of EVALSHA resp. FCALL, nested commands included (the request's reading and
#   answering left out).
# Needs: valgrind (callgrind_control, callgrind_annotate), redis-server, redis-benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCE_PORT=$1 PREFILL=${2:-100000} CALLS=${3:-2000}
# shellcheck source=bench/lib.sh
. bench/lib.sh
# (Redis under valgrind takes seconds to start, and longer to load the prefilled data.)
up() { wait_for 150 "redis on port $1" redis_ready "$1"; } # port
function_suffix "$SOURCE_PORT"
redis-cli -p "$SOURCE_PORT" FUNCTION LIST LIBRARYNAME "timing$FN_SUFFIX" WITHCODE | sed -n '/^library_code$/,$p' | tail -n +2 >"$work/library.lua"
grep -q '^#!lua name=timing_' "$work/library.lua" || { echo "write_cost: no timing library on port $SOURCE_PORT" >&2; exit 1; }

load() { # variant port: loads the script or library, sets CMD (see create_command, lib.sh)
  case $1 in
    old)
      local sha
      sha=$(redis-cli -p "$2" SCRIPT LOAD "$(cat bench/baseline/mutate.lua)")
      create_command old "$sha"
      TOP=evalShaCommand ;;
    new)
      redis-cli -p "$2" -x FUNCTION LOAD REPLACE <"$work/library.lua" >/dev/null
      create_command new "$FN_SUFFIX"
      TOP=fcallCommand ;;
  esac
  CMD=("${CREATE[@]}")
}
count() { # variant: prints instructions per call
  local dir="$work/$1" port pid
  mkdir -p "$dir"
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >/dev/null 2>&1 &
  pid=$!; pids+=("$pid")
  up "$port"
  load "$1" "$port"
  timeout 600 redis-benchmark -p "$port" -c 16 -n "$PREFILL" -r 1000000000 -q "${CMD[@]}" >/dev/null
  redis-cli -p "$port" SAVE >/dev/null
  redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  wait "$pid" 2>/dev/null || true
  port=$(free_port)
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/cg.out" \
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/valgrind.log" 2>&1 &
  pid=$!; pids+=("$pid")
  up "$port"
  load "$1" "$port" # scripts are not kept in the RDB; the library is loaded again alike
  timeout 300 redis-benchmark -p "$port" -c 1 -n 200 -r 1000000000 -q "${CMD[@]}" >/dev/null
  callgrind_control -i on "$pid" >/dev/null 2>&1
  timeout 600 redis-benchmark -p "$port" -c 1 -n "$CALLS" -r 1000000000 -q "${CMD[@]}" >/dev/null
  callgrind_control -i off "$pid" >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  wait "$pid" 2>/dev/null || true
  local out
  out=$(ls "$dir"/cg.out.* | head -1)
  callgrind_annotate --inclusive=yes "$out" 2>/dev/null |
    awk -v f="???:$TOP" -v n="$CALLS" '$3 == f || $2 == f { gsub(",", "", $1); printf "%d\n", $1 / n; exit }'
}
echo "WRITECOST $(count old) $(count new)"
