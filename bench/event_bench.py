"""The event-path benchmark: the real release binaries of on-image-available and
on-copy-complete, each started cold and served one event through a local Lambda Runtime API,
against the stand-in (bench/standin.py) answering every AWS call after `--latency` (30 ms).

Scenario (issue: event path at its critical path): one image in us-east-1, its snapshot
encrypted with a customer managed key, shared with 2 accounts and an OU tree of 48 accounts
(3 levels: 6 + 3x6 + 3x8), copied to 3 Regions; each copy, once available, shared again in its
Region by on-copy-complete (a cold process per Region, as Lambda runs one function per Region).

For each invocation it prints the init time (process start to its first request for an event),
the invocation's wall time (event handed out to result received), the critical path (the
longest chain of calls that depend on each other, see docs/critical-path.md, times the latency)
and the calls it made, operation by operation, against the minimum. It exits non-zero when a
target is missed: init <= 30 ms, wall <= 1.5x the critical path (plus the time KMS's
CreateGrant quota sets for the 50 grants, at the functions' share), calls == the minimum, and the
end state (every account shared and granted in every Region) is wrong.

    python3 bench/event_bench.py --dir target/release [--latency 0.03] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter

sys.path.insert(0, os.path.dirname(__file__))
import standin  # noqa: E402
from sweeper_bench import Runtime  # noqa: E402

ACCOUNT = standin.ACCOUNT
HOME = "us-east-1"
DESTS = ["us-west-2", "eu-west-1", "ap-southeast-2"]
DIRECT = ["111122223333", "444455556666"]
ROOT_OU = "ou-ab12-00000001"

# The chain of dependent calls of each function in this scenario (docs/critical-path.md): each
# level needs an answer of the one before. Organizations is listed one OU level at a time.
CRITICAL = {
    "on-image-available": [
        "DescribeImages (the image)",
        "DescribeAccount x2 (the plain accounts are members of the organization: before anything is written)",
        "OU level 1 | DescribeSnapshots | DescribeImageAttribute, DescribeSnapshotAttribute",
        "OU level 2 | DescribeKey",
        "OU level 3 | ListResourceTags (the key's grant receipt: the last check)",
        "ListGrants (no receipt for these accounts yet) | GetQueueUrl x3 (each copy Region's line, once per cold start)",
        "ModifySnapshotAttribute | CreateGrant x50 | GetQueueAttributes x3 (does a copy wait in the line?)",
        "ModifyImageAttribute (launch permissions last: consumers see the image once they can use it) | TagResource (the receipt) | CopyImage x3",
        "CreateTags (the fingerprint, once everything succeeded)",
        "DescribeEffectivePolicy x8 (the consumers' Allowed AMIs for the summary's warnings, after everything: 8 at a time)",
        "DescribeEffectivePolicy x2 (the rest of the invocation's 10)",
    ],
    "on-copy-complete": [
        "DescribeImages (the copy)",
        "DescribeImages (the source EC2's lineage names: verifies the copy, gives its rules)",
        "DescribeAccount x2 (the plain accounts are members of the organization)",
        "OU level 1 | DescribeSnapshots | DescribeImageAttribute, DescribeSnapshotAttribute",
        "OU level 2 | DescribeKey",
        "OU level 3 | ListResourceTags",
        "ListGrants",
        "ModifySnapshotAttribute | CreateGrant x50",
        "ModifyImageAttribute | TagResource",
        "CreateTags",
        "DescribeEffectivePolicy x8 (the consumers' Allowed AMIs for the summary's warnings: 8 at a time)",
        "DescribeEffectivePolicy x2 (the rest of the invocation's 10)",
        "GetQueueUrl (the Region's copy line, once per cold start)",
        "ReceiveMessage (a copy ended: does one wait for its slot? nothing here)",
    ],
}
OU_CALLS = {"organizations:ListAccountsForParent": 7, "organizations:ListChildren": 7,
            # each plain account's membership (issue 25), once per cold start
            "organizations:DescribeAccount": 2}
# KMS allows 50 CreateGrant a second per account and Region; the functions use 0.8 of it (one
# second of that at once, then evenly spaced: shared/src/aws/rate.rs). 50 grants therefore
# need (50 - 40) / 40 s beyond the chain of calls, whatever the scheduling.
GRANTS, KMS_SHARE_RATE = 50, 0.8 * 50
QUOTA_FLOOR_MS = max(0, GRANTS - int(KMS_SHARE_RATE)) / KMS_SHARE_RATE * 1000
# Issue 30: the summary's look at the consumers reads rate_limits.consumer_reads_per_invocation
# (10) of the 50 accounts' EC2 declarative policies, after the shares, eight at a time. The
# events' pace for Organizations (its 10 a second x events_share / EventConcurrency: 8 a
# second here) is a sustained rate with the same saved-up allowance as the reads of EC2
# (shared/src/aws/rate.rs), so a cold start's ten reads are not spaced: no floor beyond the
# two round trips.
CONSUMER_READS = 10
# The account whose declarative policy admits only Amazon's images: read first (a plain
# account), so every summary warns of it.
STRICT = "444455556666"
MINIMUM = {
    "on-image-available": {
        "ec2:DescribeImages": 1, "ec2:DescribeSnapshots": 1, "ec2:DescribeImageAttribute": 1,
        "ec2:DescribeSnapshotAttribute": 1, "ec2:ModifySnapshotAttribute": 1, "ec2:ModifyImageAttribute": 1,
        "ec2:CopyImage": 3, "ec2:CreateTags": 1,
        "kms:DescribeKey": 1, "kms:ListResourceTags": 1, "kms:ListGrants": 1, "kms:CreateGrant": 50,
        "kms:TagResource": 1, **OU_CALLS,
        # each copy Region's line: found once per cold start, and asked whether a copy waits
        "sqs:GetQueueUrl": 3, "sqs:GetQueueAttributes": 3,
        "organizations:DescribeEffectivePolicy": CONSUMER_READS,
    },
    "on-copy-complete": {
        "ec2:DescribeImages": 2, "ec2:DescribeSnapshots": 1, "ec2:DescribeImageAttribute": 1,
        "ec2:DescribeSnapshotAttribute": 1, "ec2:ModifySnapshotAttribute": 1, "ec2:ModifyImageAttribute": 1,
        "ec2:CreateTags": 1, "kms:DescribeKey": 1, "kms:ListResourceTags": 1, "kms:ListGrants": 1,
        "kms:CreateGrant": 50, "kms:TagResource": 1, **OU_CALLS,
        # the copy's end frees a slot: the Region's line is read once (nothing waits)
        "sqs:GetQueueUrl": 1, "sqs:ReceiveMessage": 1,
        "organizations:DescribeEffectivePolicy": CONSUMER_READS,
    },
}


def build_world() -> tuple[standin.World, str, set[str]]:
    w = standin.World()
    accounts = set(DIRECT)
    counter = iter(range(10**6))

    def accts(n: int) -> list[str]:
        out = [f"2000000{next(counter):05d}" for _ in range(n)]
        accounts.update(out)
        return out

    level2 = [f"ou-ab12-{10 + i:08d}" for i in range(3)]
    level3 = [f"ou-ab12-{20 + i:08d}" for i in range(3)]
    w.ous[ROOT_OU] = (accts(6), level2)
    for a, b in zip(level2, level3):
        w.ous[a] = (accts(6), [b])
        w.ous[b] = (accts(8), [])
    assert len(accounts) == 50
    w.declarative_policies = {STRICT: json.dumps({"ec2_attributes": {"allowed_images_settings": {
        "state": {"@@assign": "enabled"},
        "image_criteria": {"criteria_1": {"allowed_image_providers": {"@@assign": ["amazon"]}}}}}})}
    key = w.add_key(HOME, "alias/ami-share")
    for r in DESTS:
        w.add_key(r, "alias/ami-share")
    w.add_snapshot(standin.Snapshot("snap-00000000000000001", "Created by CreateImage(i-0123456789abcdef0) for ami-00000000000000001",
                                    kms_key_id=key))
    w.add_image(standin.Image("ami-00000000000000001", "golden-1", ["snap-00000000000000001"], region=HOME))
    return w, "ami-00000000000000001", accounts


def policy() -> dict:
    return {
        "rules": [{
            "name": "golden",
            "match": {"name": "golden-*"},
            "share_with": {"accounts": DIRECT,
                           "organizational_units": [f"arn:aws:organizations::{ACCOUNT}:ou/o-a1b2c3d4e5/{ROOT_OU}"]},
            "copy_to": [{"region": r, "kms_key_id": f"arn:aws:kms:{r}:{ACCOUNT}:alias/ami-share"} for r in DESTS],
        }],
    }


def event(region: str, image_id: str) -> dict:
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "EC2 AMI State Change", "source": "aws.ec2",
        "account": ACCOUNT, "time": "2026-12-02T00:00:00Z", "region": region,
        "resources": [f"arn:aws:ec2:{region}::image/{image_id}"],
        "detail": {"RequestId": str(uuid.uuid4()), "ImageId": image_id, "State": "available", "ErrorMessage": ""},
    }


def invoke_cold(binary: str, function: str, region: str, port: int, payload: dict, log_path: str,
                policy_doc: dict | None = None, extra_env: dict | None = None) -> dict:
    """Start `binary` cold, hand it one event, stop it. Returns init, wall and the result."""
    rt = Runtime()
    rt.function_arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:ami-share-{function}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{rt.port}",
        "AWS_LAMBDA_FUNCTION_NAME": f"ami-share-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/ami-share-{function}",
        "AWS_REGION": region,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AMI_SHARE_POLICY": json.dumps(policy_doc if policy_doc is not None else policy()),
        "RUST_LOG": "warn",
        **(extra_env or {}),
    }
    with open(log_path, "ab") as log:
        spawned = time.monotonic()
        proc = subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            rid = str(uuid.uuid4())
            kind, body = rt.invoke(payload, 300, rid)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            rt.server.shutdown()
    if kind != "response":
        raise SystemExit(f"{function} in {region} answered {kind}: {body[:2000]!r}")
    return {
        "init_ms": ((rt.first_next or spawned) - spawned) * 1000,
        "wall_ms": (rt.finished[rid] - rt.delivered[rid]) * 1000,
        "window": (rt.delivered[rid], rt.finished[rid]),
        "result": json.loads(body),
    }


def calls_in(world: standin.World, window: tuple[float, float]) -> Counter:
    return Counter(op for op, _, start, _ in world.log if window[0] <= start <= window[1])


def one_run(dir_: str, latency: float, log_path: str) -> list[dict]:
    world, image_id, accounts = build_world()
    world.latency = latency
    server, port = standin.serve(world)
    rows = []
    try:
        r = invoke_cold(os.path.join(dir_, "on-image-available"), "on-image-available", HOME, port, event(HOME, image_id), log_path)
        r.update(function="on-image-available", region=HOME, calls=calls_in(world, r["window"]))
        rows.append(r)
        if r["result"].get("outcome") != "shared":
            raise SystemExit(f"on-image-available: {json.dumps(r['result'])[:2000]}")
        check_warning(r["result"])
        copies = {c["region"]: c["image_id"] for c in r["result"]["copies"]}
        for region in DESTS:
            with world.lock:
                world.images[copies[region]].state = "available"
            c = invoke_cold(os.path.join(dir_, "on-copy-complete"), "on-copy-complete", region, port,
                            event(region, copies[region]), log_path)
            c.update(function="on-copy-complete", region=region, calls=calls_in(world, c["window"]))
            if c["result"].get("outcome") != "shared":
                raise SystemExit(f"on-copy-complete {region}: {json.dumps(c['result'])[:2000]}")
            check_warning(c["result"])
            rows.append(c)
        check_end_state(world, image_id, copies, accounts)
    finally:
        server.shutdown()
    return rows


def check_warning(summary: dict) -> None:
    """The summary warns of the strict consumer, judged the rest it read, and never failed."""
    c = summary.get("consumers") or {}
    warned = [(w["account"], w["verdict"]) for w in c.get("warnings", [])]
    assert warned == [(STRICT, "not-allowed")], c
    assert (c.get("accounts"), c.get("judged"), c.get("not_read")) == (50, CONSUMER_READS, 50 - CONSUMER_READS), c


def check_end_state(world: standin.World, image_id: str, copies: dict[str, str], accounts: set[str]) -> None:
    for region, iid in [(HOME, image_id)] + list(copies.items()):
        img = world.images[iid]
        ou = f"arn:aws:organizations::{ACCOUNT}:ou/o-a1b2c3d4e5/{ROOT_OU}"
        assert img.launch == set(DIRECT) and img.launch_ous == {ou}, (region, img.launch, img.launch_ous)
        for sid in img.snapshots:
            snap = world.snapshots[sid]
            assert snap.permissions == accounts, (region, len(snap.permissions))
            grantees = {g["GranteePrincipal"].split(":")[4] for g in world.keys[snap.kms_key_id]}
            assert grantees == accounts, (region, len(grantees))
        assert "ami-share:plan" in img.tags, (region, img.tags)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="target/release", help="where the release binaries are")
    ap.add_argument("--latency", type=float, default=0.03)
    ap.add_argument("--runs", type=int, default=5, help="whole scenarios run; medians are reported")
    ap.add_argument("--log", default="target/event-bench.log")
    args = ap.parse_args()
    open(args.log, "wb").close()
    runs = [one_run(args.dir, args.latency, args.log) for _ in range(args.runs)]
    ok = True
    print(f"event path, {args.latency * 1000:.0f} ms per AWS call, {args.runs} cold runs each (medians; max in brackets)")
    for i, first in enumerate(runs[0]):
        fn, region = first["function"], first["region"]
        inits = [r[i]["init_ms"] for r in runs]
        walls = [r[i]["wall_ms"] for r in runs]
        critical = len(CRITICAL[fn]) * args.latency * 1000 + QUOTA_FLOOR_MS
        calls = first["calls"]
        minimum = Counter(MINIMUM[fn])
        ratio = statistics.median(walls) / critical
        good = statistics.median(inits) <= 30 and ratio <= 1.5 and calls == minimum and all(r[i]["calls"] == calls for r in runs)
        ok &= good
        print(f"  {fn:18} {region:14} init {statistics.median(inits):5.1f} ms [{max(inits):5.1f}]  "
              f"wall {statistics.median(walls):6.1f} ms [{max(walls):6.1f}]  critical path {critical:.0f} ms "
              f"({len(CRITICAL[fn])} calls + {QUOTA_FLOOR_MS:.0f} ms of KMS quota)  ratio {ratio:.2f}  calls {sum(calls.values())} (minimum {sum(minimum.values())})"
              f"  {'ok' if good else 'MISSED'}")
        if calls != minimum:
            print(f"    calls beyond the minimum: {dict(calls - minimum)}; missing: {dict(minimum - calls)}")
    print("  calls per operation (each invocation):")
    for fn in MINIMUM:
        print(f"    {fn}: " + ", ".join(f"{k} {v}" for k, v in sorted(MINIMUM[fn].items())))
    print("BENCH OK" if ok else "BENCH MISSED A TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
