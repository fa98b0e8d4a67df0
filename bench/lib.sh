# Sourced by the benchmark scripts (bash, `set -euo pipefail`): a work directory and the
# processes a script starts (it appends their ids to `pids`), both removed when it exits,
# free loopback ports, and a bounded wait for a process to come up.
work=$(mktemp -d)
pids=()
cpu_groups=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for group in "${cpu_groups[@]}"; do rmdir "$group" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The service's Functions library on the Redis at port PORT is timing_<version>, and each of
# its functions' names ends in _<version> (service/src/store/functions.rs). Sets FN_SUFFIX to
# that `_<version>`; exits unless exactly one version is loaded.
function_suffix() { # port
  local names
  names=$(redis-cli -h 127.0.0.1 -p "$1" FUNCTION LIST LIBRARYNAME 'timing_*' | grep -E '^timing_[0-9a-f]{12}$' || true)
  if [ "$(printf '%s' "$names" | grep -c .)" != 1 ]; then
    echo "bench: expected one version of the timing library on port $1, found: ${names:-none}" >&2
    exit 1
  fi
  FN_SUFFIX=${names#timing}
}

# The create service.sh and write_cost.sh measure straight on Redis, as redis-benchmark
# arguments for a fresh bib per call (its __rand_int__): `create_command old SHA`, the EVAL
# script of before issue 11 (bench/baseline/mutate.lua, loaded under SHA); `create_command
# new SUFFIX`, the library's timing_create (its name ending in SUFFIX, see function_suffix) with
# the results row and audit entry as the service sends them (store/writes.rs). Sets CREATE.
AT=2026-11-30T00:00:00.000Z
create_command() { # old SHA | new
  local fields=(first_name Bench last_name Script gender male country FI category men20)
  local row='{"category":"men20","country":"FI","first_name":"Bench","gender":"male","last_name":"Script"}'
  local entry='{"at":"'$AT'","actor":"bench","action":"competitor.created","bib":"n","before":null,"after":{"bib":"n","category":"men20","country":"FI","first_name":"Bench","gender":"male","last_name":"Script"}}'
  case $1 in
    old) CREATE=(EVALSHA "$2" 0 put "o__rand_int__" 0 4 start split1 split2 finish create
           bib "o__rand_int__" "${fields[@]}") ;;
    new) CREATE=(FCALL "timing_create$2" 0 "n__rand_int__" 0 "$row" "$entry"
           "${fields[@]}") ;;
  esac
}

# Whether the Redis on 127.0.0.1 port PORT answers PONG: redis-cli exits 0 on an error reply
# too, such as LOADING while a Redis reads its dataset.
redis_ready() { # port
  [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
}

wait_for() { # seconds description command...: polls the command every 0.1 s until it succeeds
  local seconds=$1 what=$2; shift 2
  for _ in $(seq 1 $((seconds * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "bench: $what did not come up within $seconds s" >&2
  exit 1
}

# A CPU quota group, for a process held to a share of the CPUs as an ECS task's CPU units hold
# it (256 units: a quarter CPU, 25 ms of each 100 ms period): `cpu_group NAME SHARE` makes one
# (cgroup v1's cpu controller, or v2 with the cpu controller), removed when the script exits,
# and sets CPU_GROUP_PROCS to the file a process id is written to to move that process into
# it, CPU_ROOT_PROCS to the one that moves it back out. Fails where cgroups cannot be written
# (not root, no cpu controller).
cpu_group() { # name share
  local quota dir
  quota=$(python3 -c "print(int($2 * 100000))")
  if [ -w /sys/fs/cgroup/cpu/cgroup.procs ]; then
    dir=/sys/fs/cgroup/cpu/$1
    mkdir "$dir" 2>/dev/null || return 1
    cpu_groups+=("$dir")
    echo 100000 >"$dir/cpu.cfs_period_us" && echo "$quota" >"$dir/cpu.cfs_quota_us" || return 1
  elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    dir=/sys/fs/cgroup/$1
    echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || return 1
    mkdir "$dir" 2>/dev/null || return 1
    cpu_groups+=("$dir")
    echo "$quota 100000" >"$dir/cpu.max" || return 1
  else
    return 1
  fi
  CPU_GROUP_PROCS=$dir/cgroup.procs CPU_ROOT_PROCS=$(dirname "$dir")/cgroup.procs
}
