#!/usr/bin/env python3
"""Helpers of bench/provisioner.sh (see bench/README.md).

    provisioner_bench.py warm MOTO_URL                 make moto set up its backends
    provisioner_bench.py seed MOTO_URL APP TAG         put an image into moto's ECR; prints URI:TAG
    provisioner_bench.py fill TEMPLATE NAME=VALUE...   a file with ${NAME} placeholders filled
    provisioner_bench.py table RESULTS.jsonl DELAY_MS  the median table of the runs
"""

import hashlib
import json
import re
import statistics
import sys


def client(service, moto_url):
    import boto3

    return boto3.client(
        service,
        endpoint_url=moto_url,
        region_name="eu-north-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def warm(moto_url):
    """After a reset, moto builds each service's backend on its first request: EC2 creates the
    default VPC, IAM loads ~1,000 managed policies (MOTO_IAM_LOAD_MANAGED_POLICIES), which
    takes seconds and, as moto serialises much of it, delays every request arriving
    meanwhile. Real AWS has no such first-call cost, so one read per service, straight to
    moto, pays it before the timing starts."""
    client("sts", moto_url).get_caller_identity()
    client("ec2", moto_url).describe_vpcs()
    client("iam", moto_url).list_roles()
    client("ecs", moto_url).list_clusters()
    client("ecr", moto_url).describe_repositories()
    client("logs", moto_url).describe_log_groups()
    client("servicediscovery", moto_url).list_namespaces()


def seed(moto_url, app, tag):
    """moto's registry accepts no layer pushes, so the image is a manifest only: PutImage with
    a small OCI manifest, into the repository `<app>/api` created (and tagged) as the
    provisioner creates it. Goes straight to moto: not counted, not delayed."""
    ecr = client("ecr", moto_url)
    repository = f"{app}/api"
    try:
        uri = ecr.create_repository(
            repositoryName=repository,
            tags=[
                {"Key": "app", "Value": app},
                {"Key": "managed-by", "Value": "provisioner"},
            ],
        )["repository"]["repositoryUri"]
    except ecr.exceptions.RepositoryAlreadyExistsException:
        uri = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0][
            "repositoryUri"
        ]
    config = b"{}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": len(config),
            "digest": "sha256:" + hashlib.sha256(config + tag.encode()).hexdigest(),
        },
        "layers": [],
    }
    ecr.put_image(
        repositoryName=repository,
        imageManifest=json.dumps(manifest),
        imageManifestMediaType=manifest["mediaType"],
        imageTag=tag,
    )
    print(f"{uri}:{tag}")


def fill(template, pairs):
    """Fills `${NAME}` placeholders as the provisioner does; fails on one left unfilled."""
    values = dict(pair.split("=", 1) for pair in pairs)
    text = open(template, encoding="utf-8").read()
    filled = re.sub(r"\$\{([A-Z_]+)\}", lambda m: values.get(m.group(1), m.group(0)), text)
    left = sorted(set(re.findall(r"\$\{([A-Z_]+)\}", filled)))
    if left:
        sys.exit(f"{template}: no value for {', '.join(left)}")
    sys.stdout.write(filled)


SCENARIOS = [
    ("cold", "provisioner up (cold)"),
    ("noop", "provisioner up --keep-image (no-op)"),
    ("down", "provisioner down --yes"),
    ("manual", "seed steps 1-11, AWS CLI"),
]


def table(results_path, delay_ms):
    runs = [json.loads(line) for line in open(results_path, encoding="utf-8") if line.strip()]
    delay = float(delay_ms) / 1000.0

    def med(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    header = (
        f"{'scenario':<37} {'runs':>4} {'wall s':>7} {'read':>5} {'mut':>5} "
        f"{'bin r/m':>8} {'calls x delay s':>15} {'busy s':>7} {'waited s':>8}"
    )
    lines = [header, "-" * len(header)]
    for key, label in SCENARIOS:
        rows = [r for r in runs if r["scenario"] == key]
        if not rows:
            continue
        read = med([r["proxy"]["read"] for r in rows])
        mutating = med([r["proxy"]["mutating"] for r in rows])
        bin_read = med([r.get("bin_read") for r in rows])
        bin_mut = med([r.get("bin_mutating") for r in rows])
        binary = "-" if bin_read is None else f"{bin_read:g}/{bin_mut:g}"
        lines.append(
            f"{label:<37} {len(rows):>4} {fmt(med([r['wall'] for r in rows]), '7.2f')} "
            f"{read:>5g} {mutating:>5g} {binary:>8} "
            f"{fmt((read + mutating) * delay, '15.2f')} "
            f"{fmt(med([r['proxy']['busy_seconds'] for r in rows]), '7.2f')} "
            f"{fmt(med([r.get('waited') for r in rows]), '8.2f')}"
        )
    manual = [r for r in runs if r["scenario"] == "manual"]
    if manual:
        per_command = med(
            [(r["wall"] - r["proxy"]["busy_seconds"]) / r["proxy"]["requests"] for r in manual]
        )
        lines.append(
            f"(manual: {med([r['proxy']['requests'] for r in manual]):g} `aws` commands; "
            f"{per_command:.2f} s per command outside the AWS call, i.e. the CLI's start-up)"
        )
    noop = [r for r in runs if r["scenario"] == "noop"]
    bad = [r for r in noop if r["proxy"]["mutating"] or r.get("changed")]
    if bad:
        lines.append(f"WARNING: {len(bad)} no-op up run(s) made mutating calls or reported a change")
    print("\n".join(lines))
    print()
    print("Calls by operation (proxy, last run of each scenario; * = mutating):")
    for key, label in SCENARIOS:
        rows = [r for r in runs if r["scenario"] == key]
        if not rows:
            continue
        ops = rows[-1]["proxy"]["operations"]
        read_only = ("Describe", "List", "Get", "BatchGet", "BatchCheck", "Filter")
        parts = [
            f"{name}{'' if name.split('.', 1)[-1].startswith(read_only) else '*'}"
            f"{'' if n == 1 else f' x{n}'}"
            for name, n in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        print(f"  {label}: " + ", ".join(parts))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "warm":
        warm(sys.argv[2])
    elif len(sys.argv) >= 2 and sys.argv[1] == "seed" and len(sys.argv) == 5:
        seed(*sys.argv[2:])
    elif len(sys.argv) >= 3 and sys.argv[1] == "fill":
        fill(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 4 and sys.argv[1] == "table":
        table(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
