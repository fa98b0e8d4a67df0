#!/usr/bin/env bash
# Benchmark of the provisioner (issue 3), against moto on loopback, every step bounded in time.
#
# Starts its own moto_server and, in front of it, bench/delay_proxy.py, which adds a fixed
# delay to every AWS request (a model of real API latency) and counts requests by operation,
# read-only vs mutating. Builds the provisioner, then per run: resets and warms moto, seeds the
# service image into moto's ECR, and times a cold `up --image`, a no-op `up --keep-image` and
# `down --yes`; then, on a reset moto, the seed's manual sequence (steps 1-11 of
# ../shared/seeds/000_711d91c972fb84f7.txt) with the AWS CLI, one command after another.
# Prints the median of RUNS runs per scenario. Cleans up its processes.
#
# Usage: bench/provisioner.sh [--delay-ms MS] [--runs N] [--bin PATH] [--results FILE]
#   --delay-ms  delay added to every AWS request (default 50; 0 for none)
#   --runs      runs per scenario (default 3)
#   --bin       use this provisioner binary instead of building one
#   --results   also keep the raw runs (JSON lines, with per-operation counts and times) here
#   CARGO_TARGET_DIR is honoured for the build (default target/).
# Needs: cargo, python3 with moto[server] (pip install 'moto[server]==5.2.1', brings boto3);
# the AWS CLI (installed into a venv under /tmp when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DELAY_MS=50
RUNS=3
BIN=""
RESULTS_COPY=""
while [ $# -gt 0 ]; do
  case $1 in
    --delay-ms) DELAY_MS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --results) RESULTS_COPY=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "bench: unknown argument $1 (see --help)" >&2; exit 1 ;;
  esac
done
[[ $DELAY_MS =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "bench: --delay-ms takes a number" >&2; exit 1; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "bench: --runs takes a positive number" >&2; exit 1; }

for tool in python3 moto_server curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (pip install 'moto[server]==5.2.1')" >&2; exit 1; }
done
python3 -c 'import boto3' 2>/dev/null || { echo "bench: python3 lacks boto3 (pip install 'moto[server]==5.2.1')" >&2; exit 1; }

# shellcheck source=bench/lib.sh
. bench/lib.sh

log() { echo "==> $*" >&2; }

# --- the AWS CLI ------------------------------------------------------------------------
if command -v aws >/dev/null; then
  AWS=$(command -v aws)
else
  venv=/tmp/bench-awscli-venv
  if [ ! -x "$venv/bin/aws" ]; then
    log "installing the AWS CLI into $venv"
    timeout 300 python3 -m venv "$venv" >&2
    timeout 300 "$venv/bin/pip" install -q awscli >&2
  fi
  AWS=$venv/bin/aws
fi

# --- the provisioner binary, copied aside so a rebuild meanwhile does not change it ---------
if [ -z "$BIN" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
  log "cargo build -p provisioner (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  timeout 1800 cargo build -p provisioner >&2
  BIN=$CARGO_TARGET_DIR/debug/provisioner
fi
cp "$BIN" "$work/provisioner"
BIN=$work/provisioner
# The files, copied too, for the same reason.
mkdir -p "$work/files"
cp -r "$ROOT/task-definitions" "$ROOT/policies" "$work/files/"
mkdir -p "$work/home"

# --- moto and the delay proxy -----------------------------------------------------------
MOTO_PORT=$(free_port)
MOTO=http://127.0.0.1:$MOTO_PORT
MOTO_IAM_LOAD_MANAGED_POLICIES=true MOTO_ECS_SERVICE_RUNNING=1 \
  moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$work/moto.log" 2>&1 &
pids+=($!)
wait_for 20 moto_server curl -fsS -m 2 -o /dev/null "$MOTO/moto-api/data.json"

PROXY_PORT=$(free_port)
PROXY=http://127.0.0.1:$PROXY_PORT
python3 "$ROOT/bench/delay_proxy.py" --listen-port "$PROXY_PORT" --upstream "$MOTO" \
  --delay-ms "$DELAY_MS" 2>"$work/proxy.log" &
pids+=($!)
wait_for 20 "delay proxy" curl -fsS -m 2 -o /dev/null "$PROXY/__proxy/stats"
log "moto on $MOTO, delay proxy on $PROXY (+$DELAY_MS ms per request)"

REGION=eu-north-1
APP=timing
# Dummy credentials, no profile, no instance metadata: nothing from this machine leaks in.
aws_env=(env -i "PATH=$PATH" "HOME=$work/home" "AWS_CONFIG_FILE=$work/home/config"
  "AWS_SHARED_CREDENTIALS_FILE=$work/home/credentials" AWS_EC2_METADATA_DISABLED=true
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "AWS_REGION=$REGION"
  "AWS_DEFAULT_REGION=$REGION" "AWS_ENDPOINT_URL=$PROXY" NO_COLOR=1 AWS_PAGER=)

# A reset emulator, its backends set up (see `warm` in provisioner_bench.py): untimed.
moto_reset() {
  curl -fsS -m 30 -X POST "$MOTO/moto-api/reset" >/dev/null
  timeout 120 python3 "$ROOT/bench/provisioner_bench.py" warm "$MOTO"
}
proxy_reset() { curl -fsS -m 10 -X POST "$PROXY/__proxy/reset" >/dev/null; }
proxy_stats() { curl -fsS -m 10 "$PROXY/__proxy/stats"; }
now() { echo "$EPOCHREALTIME"; }

results=$work/results.jsonl
: >"$results"

# Appends one run: scenario, wall seconds, the proxy's counts, the binary's JSON report.
record() { # scenario start end report-file
  python3 - "$@" "$(proxy_stats)" >>"$results" <<'EOF'
import json, sys
scenario, start, end, report_path, stats = sys.argv[1:6]
row = {"scenario": scenario, "wall": float(end) - float(start), "proxy": json.loads(stats)}
if report_path != "-":
    report = json.load(open(report_path))
    row["bin_read"] = report["aws_calls"]["read"]
    row["bin_mutating"] = report["aws_calls"]["mutating"]
    row["bin_mutating_operations"] = report["aws_calls"]["mutating_operations"]
    row["changed"] = report["changed"]
    if report.get("wait"):
        row["waited"] = report["wait"]["waited_seconds"]
print(json.dumps(row))
EOF
}

run_provisioner() { # scenario args...
  local scenario=$1; shift
  local out=$work/$scenario.json err=$work/$scenario.err start end code=0
  proxy_reset
  start=$(now)
  timeout 300 "${aws_env[@]}" "$BIN" --root "$work/files" --app "$APP" --output json "$@" \
    >"$out" 2>"$err" </dev/null || code=$?
  end=$(now)
  if [ "$code" != 0 ]; then
    echo "bench: provisioner $* exited with $code; stderr:" >&2
    tail -n 30 "$err" >&2
    exit 1
  fi
  record "$scenario" "$start" "$end" "$out"
}

# --- the seed's manual sequence (steps 1-11), as a person would script it -----------------
# Steps 3-4 (docker login, tag, push) are left out, as the provisioner runs are given an
# image that is already in ECR. What the seed pastes by hand (account ID, VPC, subnets) is
# looked up: three read calls. The seed uses one role as execution and task role, no log
# group, one security group for both services, and no service discovery.
manual_files() {
  local dir=$work/manual
  mkdir -p "$dir"
  cat >"$dir/trust.json" <<'EOF'
{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
  "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
EOF
  allow "$dir/B.json" '"*"' ecr:GetAuthorizationToken ecr:BatchCheckLayerAvailability \
    ecr:GetDownloadUrlForLayer ecr:BatchGetImage secretsmanager:GetSecretValue
  allow "$dir/C.json" '"*"' ecs:ListTasks ecs:DescribeTasks
  allow "$dir/D.json" '"*"' ec2:DescribeNetworkInterfaces
  allow "$dir/E.json" '"*"' ecs:ListClusters ecs:DescribeClusters
  allow "$dir/F.json" '["arn:aws:servicediscovery:eu-north-1:ACCOUNT_ID:namespace/*",
    "arn:aws:servicediscovery:eu-north-1:ACCOUNT_ID:service/*"]' \
    servicediscovery:RegisterInstance servicediscovery:DeregisterInstance \
    servicediscovery:DiscoverInstances servicediscovery:GetNamespace \
    servicediscovery:GetService servicediscovery:ListInstances
}

# allow FILE RESOURCE ACTION...: writes a policy document allowing the actions on RESOURCE
# (JSON: a string or a list), as the seed's rights B-F are written.
allow() {
  local file=$1 resource=$2 actions
  shift 2
  actions=$(printf '"%s", ' "$@")
  printf '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": [%s], "Resource": %s}]}\n' \
    "${actions%, }" "$resource" >"$file"
}

manual_sequence() {
  local dir=$work/manual aws=(timeout 60 "${aws_env[@]}" "$AWS")
  local account vpc subnets sg role_arn registry
  account=$("${aws[@]}" sts get-caller-identity --query Account --output text)
  vpc=$("${aws[@]}" ec2 describe-vpcs --filters Name=isDefault,Values=true \
    --query 'Vpcs[0].VpcId' --output text)
  subnets=$("${aws[@]}" ec2 describe-subnets --filters "Name=vpc-id,Values=$vpc" \
    --query 'Subnets[].SubnetId' --output text | tr '\t' ',')
  registry=$account.dkr.ecr.$REGION.amazonaws.com
  # 1) cluster
  "${aws[@]}" ecs create-cluster --cluster-name my-cluster >/dev/null
  # 2) repositories
  "${aws[@]}" ecr create-repository --repository-name redis-repo >/dev/null
  "${aws[@]}" ecr create-repository --repository-name flask-repo >/dev/null
  # 5) the execution role and its rights A-F
  role_arn=$("${aws[@]}" iam create-role --role-name my-ecs-execution-role \
    --assume-role-policy-document "file://$dir/trust.json" --query Role.Arn --output text)
  "${aws[@]}" iam attach-role-policy --role-name my-ecs-execution-role \
    --policy-arn arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy
  sed -i "s/ACCOUNT_ID/$account/g" "$dir/F.json"
  for p in B C D E F; do
    "${aws[@]}" iam put-role-policy --role-name my-ecs-execution-role \
      --policy-name "rights-$p" --policy-document "file://$dir/$p.json"
  done
  # 6) task definitions: the repository's files, placeholders filled by hand
  local fill=(python3 "$ROOT/bench/provisioner_bench.py" fill)
  local values=("APP=$APP" "ACCOUNT_ID=$account" "REGION=$REGION" PARTITION=aws
    "EXECUTION_ROLE_ARN=$role_arn" "API_TASK_ROLE_ARN=$role_arn"
    "API_IMAGE=$registry/flask-repo:latest" "REDIS_IMAGE=$registry/redis-repo:latest"
    "LOG_GROUP=/ecs/$APP" "NAMESPACE=$APP.local" "REDIS_HOST=redis.$APP.local"
    # The seed kept its data on the task and its token nowhere: these name resources the
    # manual sequence does not create (the emulator registers the definitions regardless).
    "REDIS_TASK_ROLE_ARN=$role_arn" "EFS_FILE_SYSTEM_ID=fs-00000000" "EFS_ACCESS_POINT_ID=fsap-00000000"
    "EFS_FILE_SYSTEM_ARN=arn:aws:elasticfilesystem:$REGION:$account:file-system/fs-00000000"
    "EFS_ACCESS_POINT_ARN=arn:aws:elasticfilesystem:$REGION:$account:access-point/fsap-00000000"
    "API_TOKEN_PARAMETER_ARN=arn:aws:ssm:$REGION:$account:parameter/$APP/api-token"
    "REDIS_PASSWORD_PARAMETER_ARN=arn:aws:ssm:$REGION:$account:parameter/$APP/redis-password"
    "REDIS_URL_PARAMETER_ARN=arn:aws:ssm:$REGION:$account:parameter/$APP/redis-url")
  "${fill[@]}" "$work/files/task-definitions/api.json" "${values[@]}" >"$dir/api.json"
  "${fill[@]}" "$work/files/task-definitions/redis.json" "${values[@]}" >"$dir/redis.json"
  "${aws[@]}" ecs register-task-definition --cli-input-json "file://$dir/api.json" >/dev/null
  "${aws[@]}" ecs register-task-definition --cli-input-json "file://$dir/redis.json" >/dev/null
  # 7) security group with the incoming ports
  sg=$("${aws[@]}" ec2 create-security-group --group-name my-fargate-sg \
    --description "flask and redis" --vpc-id "$vpc" --query GroupId --output text)
  "${aws[@]}" ec2 authorize-security-group-ingress --group-id "$sg" --ip-permissions \
    "IpProtocol=tcp,FromPort=8080,ToPort=8080,IpRanges=[{CidrIp=0.0.0.0/0}]" \
    "IpProtocol=tcp,FromPort=6379,ToPort=6379,UserIdGroupPairs=[{GroupId=$sg}]" >/dev/null
  # 9) services
  local network="awsvpcConfiguration={subnets=[$subnets],securityGroups=[$sg],assignPublicIp=ENABLED}"
  "${aws[@]}" ecs create-service --cluster my-cluster --service-name redis-service \
    --task-definition "$APP-redis" --desired-count 1 --launch-type FARGATE \
    --network-configuration "$network" >/dev/null
  "${aws[@]}" ecs create-service --cluster my-cluster --service-name flask-service \
    --task-definition "$APP-api" --desired-count 1 --launch-type FARGATE \
    --network-configuration "$network" >/dev/null
  # 10) new deployments for the uploaded images; 11) start the services
  for s in flask-service redis-service; do
    "${aws[@]}" ecs update-service --cluster my-cluster --service "$s" --force-new-deployment >/dev/null
  done
  for s in flask-service redis-service; do
    "${aws[@]}" ecs update-service --cluster my-cluster --service "$s" --desired-count 1 >/dev/null
  done
}

# --- the runs ---------------------------------------------------------------------------
for run in $(seq 1 "$RUNS"); do
  log "run $run/$RUNS: provisioner cold up, no-op up, down"
  moto_reset
  image=$(timeout 60 python3 "$ROOT/bench/provisioner_bench.py" seed "$MOTO" "$APP" "bench-$run")
  run_provisioner cold up --image "$image" --timeout 2m
  run_provisioner noop up --keep-image --timeout 2m
  run_provisioner down down --yes --timeout 2m

  log "run $run/$RUNS: the seed's manual sequence with the AWS CLI"
  moto_reset
  manual_files
  proxy_reset
  start=$(now)
  manual_sequence
  end=$(now)
  record manual "$start" "$end" -
done

if [ -n "$RESULTS_COPY" ]; then cp "$results" "$RESULTS_COPY"; fi
echo
echo "provisioner benchmark: moto $(python3 -c 'import moto; print(moto.__version__)'), $("$AWS" --version 2>&1 | cut -d' ' -f1),"
echo "+${DELAY_MS} ms per AWS request, median of $RUNS run(s); $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 "$ROOT/bench/provisioner_bench.py" table "$results" "$DELAY_MS"
cat <<'EOF'

read/mut: requests seen by the delay proxy (read-only = Describe/List/Get/BatchGet/BatchCheck/
Filter*); bin r/m: the binary's own `aws_calls` (logical calls, retries not counted);
calls x delay: the latency the calls would add up to if made one after another; busy s: sum
of the requests' time in the proxy (delay + emulator); waited s: of the wall time, the wait
for stable services (polls DescribeServices every 5 s).
EOF
