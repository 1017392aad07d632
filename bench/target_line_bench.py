"""Benchmark (f) of the target line: one image copied into 1,000 target accounts x 2 Regions
(2,000 target-owned copies) from one `available` event, with no night. The real release
on-image-available (through a local Lambda Runtime API) against the stand-in (bench/standin.py:
each target account its own EC2 buckets, 30 ms per call, throttling on; SQS with per-message
delays). The event starts the first 500 (Settings::target_copies_per_event) and puts every target
in the target line; the driver plays the event source mapping of that queue: batches of 10 to
`--concurrency` warm processes, partial batch responses, a failure queue after 3 receives. A
target copy becomes `available` `--copy-seconds` after its `CopyImage`. The line's 2-minute
follow delay is scaled by `--delay-scale` (the stand-in multiplies every SQS delay).

Targets (exit 1 when missed): every one of the 2,000 copies started without the night, each
target copied once, every copy followed to its end (finished: deprecated like its source), the
target line empty, 0 messages in the failure queue, 0 invocation errors.

    python3 bench/target_line_bench.py --dir target/release [--accounts 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import standin  # noqa: E402
from burst_bench import start_function, verdict  # noqa: E402
from event_bench import event as envelope  # noqa: E402

HOME = "us-east-1"
REGIONS = ["us-east-1", "eu-west-1"]
OU = "ou-ab12-00000001"
OU_ARN = f"arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/{OU}"
SOURCE = "ami-0000000000fffffff"
DEPRECATE_AT = "2027-06-01T00:00:00.000Z"
LINE = "ami-share-target-line"
MAX_RECEIVES = 3


def policy() -> dict:
    return {"rules": [{
        "name": "regulated", "match": {"name": "regulated-*"},
        "copy_into": {"organizational_units": [OU_ARN],
                      "regions": [{"region": r, "kms_key_id": "alias/consumer-ami"} for r in REGIONS]},
    }]}


def build_world(accounts: int) -> standin.World:
    w = standin.World()
    w.throttling = True
    w.ous[OU] = ([f"3{i:011d}" for i in range(accounts)], [])
    sid = "snap-0000000000fffffff"
    w.add_snapshot(standin.Snapshot(sid, f"Created by CreateImage(i-0123456789abcdef0) for {SOURCE}"))
    w.add_image(standin.Image(SOURCE, "regulated-2026-12", [sid]))
    w.images[SOURCE].deprecation = DEPRECATE_AT
    return w


def records(batch: list[dict]) -> dict:
    return {"Records": [{
        "messageId": m["id"], "receiptHandle": m["receipt"], "body": m["body"],
        "attributes": {"ApproximateReceiveCount": str(m["receives"])}, "messageAttributes": {},
        "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{HOME}:{standin.ACCOUNT}:{LINE}", "awsRegion": HOME,
    } for m in batch]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="target/release")
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=2, help="the template's EventConcurrency")
    ap.add_argument("--copy-seconds", type=float, default=30.0, help="how long a target copy takes")
    ap.add_argument("--delay-scale", type=float, default=0.1, help="SQS delays scaled (120 s -> 12 s)")
    ap.add_argument("--visibility", type=float, default=30.0, help="the line's visibility timeout, scaled (s)")
    ap.add_argument("--latency", type=float, default=0.03)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--log", default="target/target-line-bench.log")
    args = ap.parse_args()

    w = build_world(args.accounts)
    w.latency = args.latency
    w.sqs_delay_scale = args.delay_scale
    server, port = standin.serve(world=w)
    log = open(args.log, "wb")
    env = {"AMI_SHARE_TARGET_ROLE_NAME": "ami-share-target", "AMI_SHARE_TARGET_LINE": LINE}
    procs = [start_function(args.dir, "on-image-available", HOME, port, args, log, policy(), env)
             for _ in range(args.concurrency)]
    time.sleep(1.0)
    n_targets = args.accounts * len(REGIONS)
    errors: list[str] = []
    failed: list[dict] = []
    started = time.monotonic()
    kind, body = procs[0][0].invoke(envelope(HOME, SOURCE), 300)
    event_wall = time.monotonic() - started
    summary = json.loads(body) if kind == "response" else {}
    if kind != "response":
        errors.append(f"event: {kind}: {body[:300]!r}")
    counts = summary.get("target_copy_counts", {})
    print(f"event: {event_wall:.1f} s, target copies {json.dumps(counts)}", flush=True)

    stop = threading.Event()
    created: dict[str, float] = {}
    all_started_at: list[float] = []
    invocations = [0]

    def worker(rt) -> None:
        while not stop.is_set():
            with w.lock:
                q = w.queues.get((HOME, LINE))
                batch = q.receive(args.batch, args.visibility) if q else []
            if not batch:
                time.sleep(0.05)
                continue
            invocations[0] += 1
            kind, body = rt.invoke(records(batch), 300)
            retry = set()
            if kind != "response":
                errors.append(f"batch: {kind}: {body[:300]!r}")
                retry = {m["id"] for m in batch}
            else:
                retry = {f["itemIdentifier"] for f in json.loads(body).get("batchItemFailures", [])}
            with w.lock:
                for m in batch:
                    if m["id"] not in retry:
                        q.messages.remove(m)
                    elif m["receives"] >= MAX_RECEIVES:
                        q.messages.remove(m)
                        failed.append(m)

    threads = [threading.Thread(target=worker, args=(rt,), daemon=True) for rt, _ in procs]
    for t in threads:
        t.start()
    deadline = started + 900
    finished_at = None
    while time.monotonic() < deadline:
        now = time.monotonic()
        with w.lock:
            copies = [i for v in w.targets.values() for i in v]
            for i in copies:
                created.setdefault(i.id, now)
                if i.state == "pending" and now - created[i.id] >= args.copy_seconds:
                    i.state = "available"
            if len(copies) >= n_targets and not all_started_at:
                all_started_at.append(now - started)
            q = w.queues.get((HOME, LINE))
            empty = q is not None and not q.messages
            done = sum(1 for i in copies if (i.deprecation or "")[:19] == DEPRECATE_AT[:19])
        if empty and done >= n_targets:
            finished_at = time.monotonic() - started
            break
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(timeout=15)
    for rt, proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
        rt.server.shutdown()
    server.shutdown()
    log.close()

    copies = [i for v in w.targets.values() for i in v]
    per_target = {}
    for (account, region), v in w.targets.items():
        per_target[(account, region)] = len(v)
    finished = sum(1 for i in copies if (i.deprecation or "")[:19] == DEPRECATE_AT[:19])
    left = len(w.queues[(HOME, LINE)].messages) if (HOME, LINE) in w.queues else -1
    target_calls = {k: v for k, v in sorted(w.calls.items()) if k.endswith("@target")}
    print(f"target line: 1 event, {args.accounts} accounts x {len(REGIONS)} Regions = {n_targets} targets; copies take "
          f"{args.copy_seconds:.0f} s; follow delay 120 s x {args.delay_scale}; EventConcurrency {args.concurrency}; "
          f"{args.latency * 1000:.0f} ms per call, throttling on")
    print(f"  all {len(copies)} copies started after {all_started_at[0] if all_started_at else float('nan'):.1f} s; "
          f"all finished after {finished_at if finished_at else float('nan'):.1f} s; {invocations[0]} batches of the line")
    print(f"  calls in the target accounts: {json.dumps(target_calls)}")
    print(f"  sqs: {json.dumps({k: v for k, v in sorted(w.calls.items()) if k.startswith('sqs:')})}; "
          f"AssumeRole {w.calls.get('sts:AssumeRole', 0)}")
    print(f"  left in the line {left}, in the failure queue {len(failed)}, invocation errors {len(errors)}")
    for e in errors[:5]:
        print("   ", e)
    targets = [
        ("every copy started without the night", len(copies) == n_targets),
        ("each target copied once", len(per_target) == n_targets and all(n == 1 for n in per_target.values())),
        ("every copy followed to its end (finished)", finished == n_targets),
        ("the target line empty", left == 0),
        ("0 in the failure queue, 0 invocation errors", not failed and not errors),
    ]
    return verdict(targets)


if __name__ == "__main__":
    sys.exit(main())
