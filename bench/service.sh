#!/usr/bin/env bash
# Benchmark of the timing service (issue 2), on loopback only, every step bounded in time.
#
# Builds the release binary, starts its own redis-server and the service on free 127.0.0.1
# ports, loads N competitors (default 10,000) with start and finish times, then runs wrk
# (Debian package `wrk`) for DURATION per scenario at 16 connections, and redis-benchmark
# (non-pipelined, 16 connections) on the same Redis as the ceiling. Prints a table of req/s,
# p50 and p99, and the service's peak resident memory (VmHWM). Cleans up its processes.
#
# Usage: bench/service.sh            (DURATION=10s COMPETITORS=10000 CONNECTIONS=16 by default;
#        ROUNDS=3 runs of the create route between ceilings, and interleaved runs of the create
#        before/after; CALLGRIND=0 skips the instruction count of bench/write_cost.sh, which
#        needs valgrind and takes a minute; SERVICE_WORKERS=1 tokio worker threads, as in the
#        service's task, see start_service; QUOTA_CPU=0.25, the CPUs Redis and the service
#        are each held to in the create route's runs as deployed, which need root)
# Needs: cargo, redis-server, redis-benchmark, wrk, python3.
# Targets: each single-key route >= 1/3 of redis-benchmark's ops/s; results page p99 < 10 ms
# with 10,000 competitors; service RSS < 30 MB. Live reads (issue 12): a results page answered
# 304 >= 0.3 of GET, the full 50-row page >= 0.1 of GET; a 10,000-row import in well under a
# second of Redis work; 5,000 long polls held, all answered within a second of a write.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
COMPETITORS=${COMPETITORS:-10000}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
INGEST_RATE=${INGEST_RATE:-2}
PACE_MS=${PACE_MS:-10}
CALLGRIND=${CALLGRIND:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

for tool in cargo redis-server redis-benchmark wrk python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install -y redis-server redis-tools wrk)" >&2; exit 1; }
done

echo "==> cargo build --release -p timing-service" >&2
cargo build --release -p timing-service >&2
BIN="$CARGO_TARGET_DIR/release/timing-service"

# shellcheck source=bench/lib.sh
. bench/lib.sh

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
REDIS_PID=$!
pids+=("$REDIS_PID")
wait_for 10 redis redis_ready "$REDIS_PORT"

# The service runs as it does in its task (task-definitions/api.json): 256 CPU units there
# are a CFS quota of a quarter CPU, std's available_parallelism() reads the quota and answers
# 1 (a process in a cgroup with cpu.cfs_quota_us 25000 of 100000 on this 2-CPU machine: 1;
# outside it: 2), so tokio starts one worker thread. Here, with the whole machine in view, it
# would start two, which on two CPUs shared with Redis and wrk cost the create route some
# 2 µs of CPU per request more in wake-ups between the two (SERVICE_WORKERS=2 measures that).
export SERVICE_WORKERS=${SERVICE_WORKERS:-1}

# Starts a service process on a free port against the Redis, with more environment if given;
# sets STARTED_BASE and STARTED_PID.
start_service() { # name [VAR=value ...]
  local name=$1 port
  shift
  port=$(free_port)
  env LISTEN_ADDR="127.0.0.1:$port" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    RUST_LOG="${RUST_LOG:-info}" TOKIO_WORKER_THREADS="$SERVICE_WORKERS" "$@" "$BIN" 2>"$work/$name.log" &
  STARTED_PID=$!
  pids+=("$STARTED_PID")
  STARTED_BASE="http://127.0.0.1:$port"
  wait_for 10 "$name" python3 -c "import urllib.request; urllib.request.urlopen('$STARTED_BASE/ready', timeout=1)"
}
start_service service
BASE=$STARTED_BASE SERVICE_PID=$STARTED_PID

echo "==> loading $COMPETITORS competitors with times" >&2
timeout 300 python3 bench/load.py "$BASE" "$COMPETITORS"

rows=()
row() { # label req/s p50 p99 non2xx errors ceiling [redis-cpu-us service-cpu-us]
  local ratio="-"
  if [ -n "${7:-}" ]; then ratio=$(python3 -c "print(f'{$2 / $7:.2f}')"); fi
  rows+=("$(printf '%-44s %10s %8s %8s %8s %8s %9s %9s' "$1" "$2" "$3" "$4" "$5/$6" "$ratio" "${8:--}" "${9:--}")")
}
# CPU seconds used so far by Redis (INFO cpu) and by the service (/proc/PID/stat, in clock
# ticks): per request, the costs a shared machine's load does not change much, unlike req/s.
redis_cpu() {
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" INFO cpu | tr -d '\r' |
    awk -F: '$1 == "used_cpu_user" || $1 == "used_cpu_sys" {s += $2} END {printf "%.3f", s}'
}
service_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$SERVICE_PID/stat"; }
per() { python3 -c "print(f'{($2 - $1) * 1e6 / $3:.1f}')"; } # before after count: µs each
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# One non-pipelined redis-benchmark test (its arguments, -c CONNECTIONS added): prints its
# requests/s (whole), p50 and p99 ms. (A test named by its command line, JSON arguments with
# commas included, is not escaped in the CSV: the figures are the last seven fields.)
rb_csv() {
  timeout 120 redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$CONNECTIONS" --csv "$@" |
    tail -n +2 | tr -d '"' | awk -F, '{printf "%d %s %s\n", $(NF-6), $(NF-3), $(NF-1)}'
}

echo "==> redis-benchmark -c $CONNECTIONS -t set,get (non-pipelined)" >&2
declare -A RB CPU_US
for test in SET GET; do
  cpu0=$(redis_cpu)
  read -r rps p50 p99 < <(rb_csv -n 300000 -t "${test,,}")
  RB[$test]=$rps
  CPU_US[$test]=$(per "$cpu0" "$(redis_cpu)" 300000)
  row "redis-benchmark $test (ceiling)" "$rps" "$p50" "$p99" 0 0 "" "${CPU_US[$test]}"
done

scenario() { # label scenario ceiling [etag]
  local out cpu0 svc0
  cpu0=$(redis_cpu); svc0=$(service_cpu)
  out=$(timeout 120 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/wrk/timing.lua "$BASE" -- "$2" "$COMPETITORS" ${4:+"$4"} | grep '^RESULT')
  read -r _ requests rps p50 p99 non2xx errors applied <<<"$out"
  LAST_REDIS_US=$(per "$cpu0" "$(redis_cpu)" "$requests")
  LAST_SERVICE_US=$(per "$svc0" "$(service_cpu)" "$requests")
  row "$1" "$rps" "$p50" "$p99" "$non2xx" "$errors" "$3" "$LAST_REDIS_US" "$LAST_SERVICE_US"
  LAST_RPS=$rps LAST_REQUESTS=$requests LAST_APPLIED=${applied:-0}
  if [ "$2" = create ]; then CREATE_RPS=$rps; fi
}

# SET's ops/s and Redis CPU per SET now (100,000 non-pipelined, as the ceiling rows): this
# machine's speed drifts by up to a half from one minute to the next (redis-benchmark's GET
# ran at 82,000-123,000 ops/s in one session's runs), so a chip-read row is compared with
# SET measured just before and after it, not with the ceiling rows of minutes earlier.
set_now() { # prints: ops/s, µs of Redis CPU per SET
  local cpu0 rps
  cpu0=$(redis_cpu)
  read -r rps _ < <(rb_csv -n 100000 -t set)
  echo "$rps $(per "$cpu0" "$(redis_cpu)" 100000)"
}

# A chip-read scenario between two SET measurements, and the row under it: its reads per
# second (500 a request) against SET's ops/s (the mean of the two); the share of its reads
# that changed a time, its Redis CPU per read and SET's are kept for the summary (READ_ROWS:
# name, share, µs per read, x SET, µs per SET, SET's ops/s before and after).
READ_ROWS=()
passings_scenario() { # name label
  local before before_us after after_us reads ratio
  read -r before before_us < <(set_now)
  scenario "$2" passings ""
  read -r after after_us < <(set_now)
  reads=$((LAST_RPS * 500))
  ratio=$(python3 -c "print(f'{$reads * 2 / ($before + $after):.2f}')")
  rows+=("$(printf '%-44s %10s %8s %8s %8s %8s' "  = chip reads ingested per second" "$reads" "-" "-" "-" "$ratio")")
  READ_ROWS+=("$1" "$(python3 -c "print(f'{$LAST_APPLIED / ($LAST_REQUESTS * 500):.3f}')")" \
    "$(python3 -c "print(f'{$LAST_REDIS_US / 500:.1f}')")" "$ratio" \
    "$(python3 -c "print(f'{($before_us + $after_us) / 2:.1f}')")" "$before" "$after")
}

# Redis time per call of a command, from INFO commandstats since the last CONFIG RESETSTAT.
usec_per_call() { # command
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" INFO commandstats | tr -d '\r' |
    awk -F'[:,=]' -v c="cmdstat_$1" '$1 == c { for (i = 2; i < NF; i += 2) if ($i == "usec_per_call") print $(i + 1) }'
}
reset_stats() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null; }
notes=()

echo "==> wrk -t$THREADS -c$CONNECTIONS -d$DURATION per scenario" >&2
# A ranking that does not change is kept whole after as many page reads as it has pages
# (service/src/store/rankings.rs): this row reads pages of a kept ranking. The next one reads
# them from Redis, as every page is read while the ranking changes faster than that: a second
# service process on the same Redis keeps none (KEPT_RANKING_ROWS=0).
scenario "GET /api/v1/results?limit=50 (random page)" results "${RB[GET]}"
start_service service-keeping-none KEPT_RANKING_ROWS=0
# (Assignments before a function call hold for that call only.)
BASE=$STARTED_BASE SERVICE_PID=$STARTED_PID \
  scenario "GET .../results?limit=50 (random, from Redis)" results "${RB[GET]}"
kill "$STARTED_PID" 2>/dev/null || true
# Live reads (issue 12): a spectator's poll whose page has not changed costs one HGET.
ETAG=$(curl -fsS -D - -o /dev/null "$BASE/api/v1/results?limit=50" | awk 'tolower($1) == "etag:" {print $2}' | tr -d '\r')
code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAG" "$BASE/api/v1/results?limit=50")
[ "$code" = 304 ] || { echo "bench: If-None-Match: $ETAG answered $code, not 304" >&2; exit 1; }
scenario "GET /api/v1/results?limit=50 (304)" notmodified "${RB[GET]}" "$ETAG"
scenario "GET /api/v1/competitors/{bib}/times" gettimes "${RB[GET]}"
scenario "GET /gettimes/{bib} (legacy)" legacy "${RB[GET]}"
reset_stats
scenario "PUT /api/v1/competitors/{bib}/times/finish" settime "${RB[SET]}"
SETTIME_RPS=$LAST_RPS
SERVICE_TIMES_US=$(usec_per_call fcall)

# Chip reads in batches of 500 (bench/wrk/timing.lua `passings`): reads/s = requests/s x 500,
# beside redis-benchmark's non-pipelined SET (target >= 1x: a batch must cost Redis less per
# read than one round trip per key).
reset_stats
passings_scenario "first row" "POST /api/v1/passings (500 reads per batch)"
PASSING_CALL_US=$(usec_per_call fcall)
READ_REDIS_US=${READ_ROWS[2]}
READ_SERVICE_US=$(python3 -c "print(f'{$LAST_SERVICE_US / 500:.1f}')")
# The Redis time per read in function calls (timing_passings_planned, timing_passings for
# the few the service leaves to Lua), and in commands: those the functions call (a command
# called from a function counts in its own commandstats too) and the service's own HMGETs
# (the chips' holders; the entries it has not seen, and on a second try the ids too). What
# the functions take beyond their commands is Lua.
read -r READ_FUNCTION_US READ_COMMANDS_US < <(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" INFO commandstats | tr -d '\r' |
  awk -F'[:,=]' -v n=$((LAST_REQUESTS * 500)) '
    $1 == "cmdstat_fcall" { f = $5 } $1 ~ /^cmdstat_/ && $1 != "cmdstat_fcall" { c += $5 }
    END { printf "%.1f %.1f\n", f / n, c / n }')
# The same kind of reads again. Their times are random, so a competitor's read after k others
# changes their time 1 time in k + 1: above, every competitor's first few reads, one in four
# changing a time; here, with some 15 reads each already, about one in twenty. A race's mat
# sees one applied read per runner and crossing and several kept or duplicate: between the
# two rows. (No read goes the long way, store/timing.lua's INDEX: load.py's manual times
# wrote every competitor's entry.)
passings_scenario "again" "POST /api/v1/passings again (most kept)"
# The same once more with the rules applied by the library in Redis (PLANNED_READS=false, as
# before the service decided reads itself): compare with the row above, where most are kept.
start_service service-library-rules PLANNED_READS=false
BASE=$STARTED_BASE SERVICE_PID=$STARTED_PID \
  passings_scenario "rules in Lua" "POST /api/v1/passings again, rules in Lua"
kill "$STARTED_PID" 2>/dev/null || true
# The floor under that: a script that makes nothing but the writes a chip read at a split
# requires (issue 11: the raw read stored and listed for its competitor; for a read that
# changes a time, the time, the times index entry and the three rank entries, and the change
# announced), with the arguments it cannot do without (per read its id, raw JSON, bib and
# list entry; per changed time the new entry, the time and the ranking score), grouped as
# the service groups them (one HMGET, HSET or ZADD per hash or sorted set and call, one RPUSH
# and race ZADD per competitor), for calls of READS_PER_CALL random loaded competitors. No
# checks and no rules: what any Redis Function doing this work costs. Arguments are unique
# per read, as real reads are (__rand_int__ in them). Writes go to copies under bench:, so
# the data stay as loaded. Redis CPU per read, round trips included.
echo "==> redis-benchmark EVALSHA: a chip read's writes alone" >&2
READS_PER_CALL=$(sed -n 's/^const READS_PER_CALL: usize = \([0-9]*\);/\1/p' service/src/store/passings.rs)
[ -n "$READS_PER_CALL" ] || { echo "bench: no READS_PER_CALL in service/src/store/passings.rs" >&2; exit 1; }
WRITES_ALONE="local n = $READS_PER_CALL
local changed = (#ARGV - 4 * n) / 3
local ids, bibs, raw = {}, {}, {}
for k = 1, n do
  local p = 4 * k - 3
  ids[k], bibs[k] = ARGV[p], ARGV[p + 2]
  raw[2 * k - 1], raw[2 * k] = ARGV[p], ARGV[p + 1]
end
redis.call('HMGET', 'passings', unpack(ids))
redis.call('HMGET', 'times_index:start,split1,split2,finish', unpack(bibs))
redis.call('HSET', 'bench:passings', unpack(raw))
for k = 1, n do redis.call('RPUSH', 'bench:reads:' .. bibs[k], ARGV[4 * k]) end
if changed > 0 then
  local gender = { [0] = 'bench:rank:split1:gender:0', 'bench:rank:split1:gender:1', 'bench:rank:split1:gender:2' }
  local category = {}
  for c = 0, 7 do category[c] = 'bench:rank:split1:category:' .. c end
  local index, sets, order = {}, {}, {}
  local function add(key, score, bib)
    local set = sets[key]
    if not set then set = {}; sets[key] = set; order[#order + 1] = key end
    set[#set + 1] = score
    set[#set + 1] = bib
  end
  for k = 1, changed do
    local p, bib = 4 * n + 3 * k - 2, bibs[k]
    index[2 * k - 1], index[2 * k] = bib, ARGV[p]
    redis.call('ZADD', 'bench:race:' .. bib, ARGV[p + 1], 'split1')
    local number = tonumber(bib)
    add('bench:rank:split1:all', ARGV[p + 2], bib)
    add(gender[number % 3], ARGV[p + 2], bib)
    add(category[number % 8], ARGV[p + 2], bib)
  end
  redis.call('HSET', 'bench:index', unpack(index))
  for _, key in ipairs(order) do redis.call('ZADD', key, unpack(sets[key])) end
  redis.call('HSET', 'bench:live', 'all', '1', 'gender:0', '1', 'category:0', '1')
  redis.call('PUBLISH', 'bench:changes', '1 all gender:0 category:0')
end
return 1"
WRITES_ALONE_SHA=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" SCRIPT LOAD "$WRITES_ALONE")
writes_alone() { # changed reads per call: prints Redis CPU us per read
  local args=() cpu0 k
  for k in $(seq "$READS_PER_CALL"); do
    args+=("bench-__rand_int__"
      "{\"bib\":\"__rand_int__\",\"checkpoint\":\"split1\",\"id\":\"bench-__rand_int__\",\"received_at\":\"2026-11-30T00:00:00.000Z\",\"source\":\"bench\",\"time\":\"10:00:00.000\"}"
      "__rand_int__" "2 36000000 bench-__rand_int__")
  done
  for k in $(seq "$1"); do
    args+=("32400000--------__rand_int__36000000--------000-$(printf '\037')male$(printf '\037')men20$(printf '\037')" __rand_int__ __rand_int__)
  done
  cpu0=$(redis_cpu)
  timeout 120 redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$CONNECTIONS" -n 8000 -r "$COMPETITORS" \
    EVALSHA "$WRITES_ALONE_SHA" 0 "${args[@]}" >/dev/null
  per "$cpu0" "$(redis_cpu)" $((8000 * READS_PER_CALL))
}
# Three rounds, each a SET measurement then the writes alone, all reads kept and all
# changing a time; each round's figures in SETs (SET's µs per op over the script's µs per
# read), and the median round of each kind: the machine's speed drifts within seconds too.
FLOOR_KEPT=() FLOOR_APPLIED=() FLOOR_KEPT_US=() FLOOR_APPLIED_US=()
for _ in 1 2 3; do
  read -r _ set_us < <(set_now)
  kept_us=$(writes_alone 0)
  applied_us=$(writes_alone "$READS_PER_CALL")
  FLOOR_KEPT_US+=("$kept_us") FLOOR_APPLIED_US+=("$applied_us")
  FLOOR_KEPT+=("$(python3 -c "print(f'{$set_us / $kept_us:.3f}')")")
  FLOOR_APPLIED+=("$(python3 -c "print(f'{$set_us / $applied_us:.3f}')")")
done
KEPT_IN_SETS=$(median "${FLOOR_KEPT[@]}")
APPLIED_IN_SETS=$(median "${FLOOR_APPLIED[@]}")

# The results page while reads are being ingested: at a steady INGEST_RATE batches of 500 per
# second (bench/ingest.py; default 2, 1,000 reads/s, several big races' finish mats at their
# busiest), and flat out (two connections posting batches back to back, which keeps both CPUs
# of a small machine busy with ingesting alone).
echo "==> results while ingesting reads" >&2
secs=${DURATION%s}
timeout 120 python3 bench/ingest.py "$BASE" "$COMPETITORS" "$INGEST_RATE" "$secs" >"$work/ingest.out" &
INGEST_PID=$!
scenario "GET /api/v1/results while ingesting $((INGEST_RATE * 500)) reads/s" results "${RB[GET]}"
wait "$INGEST_PID" || true
read -r _ _ ingested ingest_failed _ <"$work/ingest.out" || true
notes+=("while ingesting at a steady rate: $ingested reads posted, $ingest_failed batches not 200")
# The same at a fixed load below saturation (each connection waits PACE_MS between requests):
# 16 closed-loop connections keep both CPUs busy, so the row above measures a queue as much
# as the service; this one the service while reads are ingested.
timeout 120 python3 bench/ingest.py "$BASE" "$COMPETITORS" "$INGEST_RATE" "$secs" >"$work/ingest.out" &
INGEST_PID=$!
scenario "GET /api/v1/results paced (${PACE_MS} ms), ingesting" paced "" "$PACE_MS"
wait "$INGEST_PID" || true
timeout 120 wrk -t1 -c2 -d"$DURATION" -s bench/wrk/timing.lua "$BASE" -- passings "$COMPETITORS" >/dev/null &
INGEST_PID=$!
scenario "GET /api/v1/results while ingesting flat out" results "${RB[GET]}"
wait "$INGEST_PID" || true

# Creates, last among the routes. The route is set beside its function's ceiling measured just
# before and after it (redis-benchmark, 100,000 creates of fresh bibs): the ceiling rows below
# come a minute later, and this machine's speed drifts by up to a half between minutes.
# ROUNDS runs of the route, each between two ceilings (ceiling, route, ceiling, ..., ceiling);
# the ratio is their median, since one run said 0.58 and the next 0.78 with the same binary.
# Both write into database 4, emptied before each run, through a service process of its own
# (REDIS_URL ending in /4): a create costs Redis more in a database holding many competitors
# (its sorted sets are longer), and before the twelfth session the route wrote into the
# loaded race, 10,000 competitors and every earlier run's creates, while its ceiling started
# from empty (in a run held to a quarter CPU each, with 150,000 competitors already there:
# 29-31.5 µs of Redis CPU per create against 23-27 from empty).
function_suffix "$REDIS_PORT"
create_command new "$FN_SUFFIX"
NEW_CREATE=("${CREATE[@]}")
empty_create_db() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n 4 FLUSHDB >/dev/null; }
create_ceiling_now() { # prints creates/s
  local rps
  empty_create_db
  read -r rps _ < <(rb_csv --dbnum 4 -n 100000 -r 1000000000 "${NEW_CREATE[@]}")
  echo "$rps"
}
start_service service-creates REDIS_URL="redis://127.0.0.1:$REDIS_PORT/4"
CREATES_BASE=$STARTED_BASE CREATES_PID=$STARTED_PID
create_route_now() { # label [x redis's divisor, SET's ops/s unless given]: one run into the emptied database
  empty_create_db
  BASE=$CREATES_BASE SERVICE_PID=$CREATES_PID scenario "$1" create "${2-${RB[SET]}}"
}
CREATE_CEILINGS=("$(create_ceiling_now)") CREATE_RATIOS=() SERVICE_CREATE_RUNS=()
for round in $(seq 1 "$ROUNDS"); do
  reset_stats
  create_route_now "POST /api/v1/competitors (new bib)$([ "$ROUNDS" = 1 ] || echo ", run $round")"
  SERVICE_CREATE_RUNS+=("$(usec_per_call fcall)")
  CREATE_CEILINGS+=("$(create_ceiling_now)")
  CREATE_RATIOS+=("$(python3 -c "print(f'{$CREATE_RPS * 2 / (${CREATE_CEILINGS[-2]} + ${CREATE_CEILINGS[-1]}):.2f}')")")
done
SERVICE_CREATE_US=$(median "${SERVICE_CREATE_RUNS[@]}")
SHARED_CREATE_RPS=$CREATE_RPS

# The same route on CPUs of their own, as deployed: Redis and the service each held to
# QUOTA_CPU by a CPU quota group (0.25 by default, the 256 CPU units of
# task-definitions/api.json and redis.json), wrk outside both. On the two shared CPUs above,
# wrk and the service take about as much CPU per create as Redis does, so the route is held
# by the machine, not by Redis; here each side has the share its task has, and the ceiling is
# the function's with Redis held the same. ROUNDS runs between ceilings, as above. Needs a
# writable cgroup (root); skipped with a note otherwise.
QUOTA_CPU=${QUOTA_CPU:-0.25}
QUOTA_RATIOS=() QUOTA_CEILINGS=() QUOTA_NOTE=""
if cpu_group timing-bench-redis "$QUOTA_CPU" && REDIS_PROCS=$CPU_GROUP_PROCS &&
  cpu_group timing-bench-service "$QUOTA_CPU"; then
  echo "$CREATES_PID" >"$CPU_GROUP_PROCS"
  echo "$REDIS_PID" >"$REDIS_PROCS"
  QUOTA_CEILINGS=("$(create_ceiling_now)")
  for round in $(seq 1 "$ROUNDS"); do
    # (No x redis: SET's ops/s were measured with Redis on the whole machine.)
    create_route_now "POST .../competitors, $QUOTA_CPU CPU each, run $round" ""
    QUOTA_CEILINGS+=("$(create_ceiling_now)")
    QUOTA_RATIOS+=("$(python3 -c "print(f'{$CREATE_RPS * 2 / (${QUOTA_CEILINGS[-2]} + ${QUOTA_CEILINGS[-1]}):.2f}')")")
  done
  echo "$REDIS_PID" >"$CPU_ROOT_PROCS"
else
  QUOTA_NOTE="not measured: no writable cgroup with a cpu controller (run as root)"
fi
kill "$CREATES_PID" 2>/dev/null || true
CREATE_RPS=$SHARED_CREATE_RPS
empty_create_db

# The write functions alone, run by redis-benchmark with no HTTP and no service in the way:
# the most any write route can reach on this Redis. PUT .../times/finish on the loaded bibs
# (000000000001 .. N, as load.py names them); creates on fresh bibs in database 3, from
# empty. Before issue 11 every write was one EVAL script (bench/baseline/mutate.lua, measured
# the same way in database 2, from empty): its Redis time per create beside the function's.
echo "==> redis-benchmark FCALL timing_times / timing_create, EVALSHA of the old script" >&2
rb_script() { # label database range command...
  local label=$1 db=$2 range=$3 rps p50 p99; shift 3
  read -r rps p50 p99 < <(rb_csv --dbnum "$db" -n 100000 -r "$range" "$@")
  LAST_RPS=$rps
  row "$label" "$rps" "$p50" "$p99" 0 0 "${RB[SET]}"
}
reset_stats
rb_script "redis-benchmark FCALL timing_times (ceiling)" 0 "$COMPETITORS" \
  FCALL "timing_times$FN_SUFFIX" 0 __rand_int__ bench "$AT" finish 39600000
TIMES_CEILING=$LAST_RPS
TIMES_US=$(usec_per_call fcall)
# The create, before (the EVAL script, database 2) and after (the function, database 3),
# ROUNDS times each, interleaved and each from an emptied database: on a shared machine one
# pair of runs says little (one run can be twice the other), the median of interleaved runs
# more. The first round's FCALL run is also the create ceiling of the table.
SHA=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" SCRIPT LOAD "$(cat bench/baseline/mutate.lua)")
create_command old "$SHA"
OLD_CREATE=("${CREATE[@]}")
OLD_RUNS=() NEW_RUNS=()
for round in $(seq 1 "$ROUNDS"); do
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n 2 FLUSHDB >/dev/null
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n 3 FLUSHDB >/dev/null
  reset_stats
  rb_script "redis-benchmark EVALSHA old mutate.lua create" 2 1000000000 "${OLD_CREATE[@]}"
  OLD_RUNS+=("$(usec_per_call evalsha)")
  reset_stats
  rb_script "redis-benchmark FCALL timing_create (ceiling)" 3 1000000000 "${NEW_CREATE[@]}"
  NEW_RUNS+=("$(usec_per_call fcall)")
  # The table keeps the first round's two rows.
  if [ "$round" = 1 ]; then CREATE_CEILING=$LAST_RPS; kept=${#rows[@]}; else rows=("${rows[@]:0:$kept}"); fi
done
OLD_US=$(median "${OLD_RUNS[@]}")
NEW_US=$(median "${NEW_RUNS[@]}")
# The same creates counted in instructions by callgrind (bench/write_cost.sh), and the
# service's side of the create route (bench/service_cost.sh), unless CALLGRIND=0 or valgrind
# is missing.
WRITECOST=""
if [ "$CALLGRIND" != 0 ] && command -v valgrind >/dev/null; then
  echo "==> callgrind: instructions per create, old script and library (bench/write_cost.sh)" >&2
  read -r _ OLD_IR NEW_IR < <(timeout 900 bench/write_cost.sh "$REDIS_PORT" 100000 2000) || true
  [ -n "${NEW_IR:-}" ] || { echo "bench: bench/write_cost.sh counted nothing (its errors above)" >&2; exit 1; }
  WRITECOST="$OLD_IR $NEW_IR"
  echo "==> callgrind: instructions per create in the service (bench/service_cost.sh)" >&2
  read -r _ SERVICE_IR < <(timeout 900 bench/service_cost.sh "$BIN" "$REDIS_PORT" 2000) || true
  [ -n "${SERVICE_IR:-}" ] || { echo "bench: bench/service_cost.sh counted nothing (its errors above)" >&2; exit 1; }
fi

# Start-list import (issue 12): 10,000 new bibs, then the same file again (10,000 upserts of
# existing competitors). Redis's work is its CPU time (INFO cpu) during the request.
python3 - "$work/import.csv" <<'PY'
import sys
categories = ["men20", "men30", "men40", "men50+", "women20", "women30", "women40", "women50+"]
with open(sys.argv[1], "w") as out:
    out.write("bib,first_name,last_name,gender,country,category\n")
    for i in range(1, 10001):
        out.write(f"imp{i},First{i},\"Last, {i}\",{['male', 'female', 'na'][i % 3]},Finland,{categories[i % 8]}\n")
PY
imports=()
for what in "10,000 new bibs" "10,000 existing (upserts)"; do
  echo "==> POST /api/v1/competitors/import: $what" >&2
  cpu_before=$(redis_cpu)
  wall=$(timeout 120 curl -fsS -o "$work/import.json" -w '%{time_total}' -X POST \
    -H 'Content-Type: text/csv' --data-binary @"$work/import.csv" "$BASE/api/v1/competitors/import")
  cpu_after=$(redis_cpu)
  imports+=("$(printf '%-44s %8.3f s wall %8.3f s Redis CPU   %s' "import $what" "$wall" \
    "$(python3 -c "print($cpu_after - $cpu_before)")" "$(cat "$work/import.json" | head -c 60)")")
done

# Long polls (issue 12): 5,000 waiting on one process, one write wakes them all.
echo "==> 5000 long polls held, then one write" >&2
read -r _ held answered write_to_last rss_idle rss_held write_to_first write_to_median < <(timeout 120 python3 bench/longpoll.py "$BASE" 5000 "$SERVICE_PID")

hwm=$(awk '/VmHWM/ {print $2}' "/proc/$SERVICE_PID/status")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$SERVICE_PID/status")

echo
echo "timing-service benchmark: $COMPETITORS competitors ranked, $CONNECTIONS connections, $DURATION per scenario, $(nproc) CPUs, $SERVICE_WORKERS service worker thread(s)"
printf '%-44s %10s %8s %8s %8s %8s %9s %9s\n' "scenario" "req/s" "p50 ms" "p99 ms" "non2xx/err" "x redis" "redis us" "svc us"
for r in "${rows[@]}"; do echo "$r"; done
for r in "${imports[@]}"; do echo "$r"; done
echo "long poll: $held waiters held; one write answered $answered of them 200, the first ${write_to_first} ms, half within ${write_to_median} ms, the last ${write_to_last} ms after the write; service RSS $((rss_idle / 1024)) MB idle, $((rss_held / 1024)) MB holding them"
echo "service peak RSS (VmHWM): $((hwm / 1024)) MB (current VmRSS $((rss / 1024)) MB)"
echo "(x redis = req/s divided by redis-benchmark's GET for reads, SET for writes, and for chip reads/s
 SET measured just before and after the row;"
echo " targets: single-key reads >= 0.33, 304: >= 0.3, results page: >= 0.1, chip reads >= 1,"
echo " the random page row reads a kept ranking, the one from Redis a ranking that is not kept;"
echo " results p99 < 10 ms also while ingesting)"
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo "(POST /api/v1/competitors reaches a median $(median "${CREATE_RATIOS[@]}") of its function's own ceiling in Redis measured just before and after each run (runs: ${CREATE_RATIOS[*]}; ceilings: ${CREATE_CEILINGS[*]} creates/s; the last run $(ratio "$CREATE_RPS" "$CREATE_CEILING") of the ceiling row), PUT .../times/finish $(ratio "$SETTIME_RPS" "$TIMES_CEILING"); target >= 0.8)"
if [ -n "$QUOTA_NOTE" ]; then
  echo "(POST /api/v1/competitors with Redis and the service each held to $QUOTA_CPU CPU, as in their tasks: $QUOTA_NOTE)"
else
  echo "(POST /api/v1/competitors with Redis and the service each held to $QUOTA_CPU CPU by a quota, as in their tasks (wrk outside): a median $(median "${QUOTA_RATIOS[@]}") of the function's ceiling with Redis held the same (runs: ${QUOTA_RATIOS[*]}; ceilings: ${QUOTA_CEILINGS[*]} creates/s); target >= 0.8)"
fi
echo "Redis time per call (INFO commandstats usec_per_call; creates: 100,000 fresh bibs per run, redis-benchmark -c $CONNECTIONS, $ROUNDS runs each, interleaved):"
echo "  create, before (EVALSHA mutate.lua):  median $OLD_US us  (runs: ${OLD_RUNS[*]})"
echo "  create, after  (FCALL timing_create): median $NEW_US us  (runs: ${NEW_RUNS[*]})  ($(python3 -c "print(f'{(1 - $NEW_US / $OLD_US) * 100:.1f}')")% less; target >= 33%)"
if [ -n "$WRITECOST" ]; then
  read -r OLD_IR NEW_IR <<<"$WRITECOST"
  echo "  instructions per create (callgrind, 2,000 after 100,000; bench/write_cost.sh):"
  echo "    before $OLD_IR, after $NEW_IR  ($(python3 -c "print(f'{(1 - $NEW_IR / $OLD_IR) * 100:.1f}')")% less)"
  echo "  the service's own instructions per create (callgrind, user space: HTTP, JSON, the call, the log line; bench/service_cost.sh): $SERVICE_IR"
fi
echo "  create through the service (FCALL timing_create):      $SERVICE_CREATE_US us  (median of the route's runs: ${SERVICE_CREATE_RUNS[*]})"
echo "  manual time through the service (FCALL timing_times):  $SERVICE_TIMES_US us (redis-benchmark: $TIMES_US us)"
echo "  a function call of up to $READS_PER_CALL chip reads (FCALL timing_passings_planned, a few timing_passings): $PASSING_CALL_US us"
for n in "${notes[@]}"; do echo "($n)"; done
echo "Redis CPU (INFO cpu) per chip read: $READ_REDIS_US us, per non-pipelined SET: ${CPU_US[SET]} us; service CPU per chip read: $READ_SERVICE_US us"
echo "  per read in function calls: $READ_FUNCTION_US us; in commands (those the functions call, and the service's HMGETs): $READ_COMMANDS_US us"
echo "  a read's writes alone in a script (no checks, no rules; $READS_PER_CALL a call), three rounds each after a SET measurement:"
echo "    kept ${FLOOR_KEPT_US[*]} us per read (${FLOOR_KEPT[*]} reads per SET's Redis time; median $KEPT_IN_SETS)"
echo "    changing a time ${FLOOR_APPLIED_US[*]} us per read (${FLOOR_APPLIED[*]}; median $APPLIED_IN_SETS)"
echo "  (chip reads/s can reach SET's ops/s only if a read costs Redis no more than a SET; per row: SET"
echo "   just before and after it, and the most that the writes alone allow at its share of reads"
echo "   changing a time, from the medians above:)"
for ((i = 0; i < ${#READ_ROWS[@]}; i += 7)); do
  python3 -c "
share, us, set_us = ${READ_ROWS[i + 1]}, ${READ_ROWS[i + 2]}, ${READ_ROWS[i + 4]}
bound = 1 / ((1 - share) / $KEPT_IN_SETS + share / $APPLIED_IN_SETS)
print(f'  {\"${READ_ROWS[i]}\":<13} SET ${READ_ROWS[i + 5]} and ${READ_ROWS[i + 6]} ops/s at {set_us} us; {share * 100:4.1f}% changing a time:'
      f' Redis {us} us per read; the writes alone allow at most {bound:.2f} x SET (measured: ${READ_ROWS[i + 3]})')"
done
