"""Benchmark (b) of "bursts of images": 200 `available` events within 10 seconds, driven through
the path a deployed stack takes, modelled locally: each (function, Region) has its queue, read by
at most `--concurrency` warm release processes at once (the event source mapping's maximum
concurrency), in batches of up to `--batch` records, with partial batch responses; a record
answered in `batchItemFailures` becomes visible again after `--visibility` seconds (1,800 in the
stack; shortened here, said in the output) and moves to the failure queue after 3 receives.
As EventBridge does, every `available` event of a Region goes to both functions' queues of that
Region (on-image-available ignores copies, on-copy-complete ignores non-copies). A copy becomes
available `--copy-seconds` after CopyImage, which raises its event in its destination Region.

The stand-in (bench/standin.py) answers after `--latency` (30 ms) with EC2's token buckets per
Region and action (mutating: 50 burst, 5 a second) and KMS's on.

Scenario: 200 distinct images in us-east-1, each with 2 snapshots, shared with 20 accounts and
one OU of 30 accounts, copied to us-west-2 and eu-west-1.

Targets (exit 1 when missed): every image and copy fully shared; 0 records in a failure queue;
0 records retried (no `RequestLimitExceeded` left unabsorbed by the SDK's retries); total wall
within 1.5x the floor the sustained mutating rates set for that work (per Region and action:
(calls - 50 burst) / 5 a second, the largest), printed next to it.

    python3 bench/burst_bench.py --dir target/release [--images 200] [--concurrency 2] [--batch 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import standin  # noqa: E402
from event_bench import event as envelope  # noqa: E402
from sweeper_bench import Runtime  # noqa: E402

ACCOUNT = standin.ACCOUNT
HOME = "us-east-1"
DESTS = ["us-west-2", "eu-west-1"]
OU = "ou-ab12-00000001"
OU_ARN = f"arn:aws:organizations::{ACCOUNT}:ou/o-a1b2c3d4e5/{OU}"
DIRECT = [f"1111{i:08d}" for i in range(20)]
MEMBERS = [f"2222{i:08d}" for i in range(30)]
FUNCTIONS = ["on-image-available", "on-copy-complete"]
MAX_RECEIVES = 3


def policy() -> dict:
    return {"rules": [{
        "name": "golden", "match": {"name": "golden-*"},
        "share_with": {"accounts": DIRECT, "organizational_units": [OU_ARN]},
        "copy_to": [{"region": r} for r in DESTS],
    }]}


class Queue:
    """One SQS queue: visible messages, in flight, receive counts, a failure queue."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cond = threading.Condition()
        self.visible: list[dict] = []  # {"id", "body", "receives", "visible_at"}
        self.in_flight = 0
        self.failed: list[dict] = []
        self.retried = 0

    def send(self, body: dict) -> None:
        with self.cond:
            self.visible.append({"id": str(uuid.uuid4()), "body": json.dumps(body), "receives": 0, "visible_at": 0.0})
            self.cond.notify_all()

    def receive(self, n: int, stop: threading.Event) -> list[dict]:
        with self.cond:
            while not stop.is_set():
                now = time.monotonic()
                ready = [m for m in self.visible if m["visible_at"] <= now]
                if ready:
                    batch = ready[:n]
                    for m in batch:
                        self.visible.remove(m)
                        m["receives"] += 1
                    self.in_flight += len(batch)
                    return batch
                self.cond.wait(0.05)
            return []

    def done(self, batch: list[dict], retry_ids: set[str], visibility: float) -> None:
        with self.cond:
            self.in_flight -= len(batch)
            for m in batch:
                if m["id"] not in retry_ids:
                    continue
                self.retried += 1
                if m["receives"] >= MAX_RECEIVES:
                    self.failed.append(m)
                else:
                    m["visible_at"] = time.monotonic() + visibility
                    self.visible.append(m)
            self.cond.notify_all()

    def idle(self) -> bool:
        with self.cond:
            return not self.visible and self.in_flight == 0


def sqs_batch(queue: Queue, region: str, batch: list[dict]) -> dict:
    return {"Records": [{
        "messageId": m["id"], "receiptHandle": m["id"], "body": m["body"],
        "attributes": {"ApproximateReceiveCount": str(m["receives"])}, "messageAttributes": {},
        "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{region}:{ACCOUNT}:{queue.name}", "awsRegion": region,
    } for m in batch]}


def start_function(binary: str, function: str, region: str, port: int, args, log,
                   policy_doc: dict | None = None, extra_env: dict | None = None) -> tuple[Runtime, subprocess.Popen]:
    """One warm execution environment of `function` in `region` (its Runtime API and process)."""
    rt = Runtime()
    rt.function_arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:ami-share-{function}"
    env = {
        "PATH": os.environ.get("PATH", ""), "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{rt.port}",
        "AWS_LAMBDA_FUNCTION_NAME": f"ami-share-{function}", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/ami-share-{function}", "AWS_REGION": region,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench", "AWS_EC2_METADATA_DISABLED": "true",
        "AMI_SHARE_POLICY": json.dumps(policy_doc or policy()), "AMI_SHARE_EVENT_CONCURRENCY": str(args.concurrency),
        "RUST_LOG": "warn", **(extra_env or {}),
    }
    proc = subprocess.Popen([os.path.join(binary, function)], env=env, stdout=log, stderr=subprocess.STDOUT)
    return rt, proc


def poller(binary: str, function: str, region: str, queue: Queue, port: int, args, stop: threading.Event,
           errors: list[str], log, policy_doc: dict | None = None) -> None:
    """One warm execution environment of `function` in `region`, fed batches from `queue`."""
    rt, proc = start_function(binary, function, region, port, args, log, policy_doc)
    try:
        while not stop.is_set():
            batch = queue.receive(args.batch, stop)
            if not batch:
                continue
            kind, body = rt.invoke(sqs_batch(queue, region, batch), 300)
            if kind != "response":
                errors.append(f"{function} {region}: invocation {kind}: {body[:500]!r}")
                queue.done(batch, {m["id"] for m in batch}, args.visibility)
                continue
            result = json.loads(body)
            retry = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
            queue.done(batch, retry, args.visibility)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        rt.server.shutdown()


def build_world(n: int) -> standin.World:
    w = standin.World()
    w.throttling = True
    w.ous[OU] = (list(MEMBERS), [])
    for i in range(n):
        snaps = [f"snap-{i * 2 + k:017x}" for k in range(2)]
        for s in snaps:
            w.add_snapshot(standin.Snapshot(s, f"Created by CreateImage(i-0123456789abcdef0) for ami-{i:017x}"))
        w.add_image(standin.Image(f"ami-{i:017x}", f"golden-{i}", snaps, region=HOME))
    return w


def floor_seconds(w: standin.World) -> tuple[float, str]:
    """The least time the mutating calls made need at EC2's sustained rates, per Region and
    action (50 burst, 5 a second): the largest."""
    best, what = 0.0, ""
    for (region, action), n in w.calls_by_region.items():
        if action.startswith(standin.MUTATING_PREFIXES):
            t = max(0.0, (n - 50) / 5)
            if t > best:
                best, what = t, f"{n} {action} in {region}"
    return best, what


def finish_copies(w: standin.World, announced: set[str], pending_since: dict[str, float],
                  copy_seconds: float) -> list[tuple[str, str]]:
    """Copies `copy_seconds` old become available: (copy id, Region) of each, marked announced
    (the caller raises their events, as EventBridge would)."""
    now = time.monotonic()
    with w.lock:
        copies = [(i.id, i.region) for i in w.images.values() if i.source and i.id not in announced]
        for iid, _ in copies:
            pending_since.setdefault(iid, now)
        ready = [(iid, r) for iid, r in copies if now - pending_since[iid] >= copy_seconds]
        for iid, _ in ready:
            w.images[iid].state = "available"
    announced.update(iid for iid, _ in ready)
    return ready


def verdict(targets: list[tuple[str, bool]]) -> int:
    """Print each target met or missed; the exit status (1 when one was missed)."""
    ok = True
    for what, good in targets:
        ok &= good
        print(f"  {'ok' if good else 'MISSED':6} {what}")
    print("BENCH OK" if ok else "BENCH MISSED A TARGET")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="target/release")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--within", type=float, default=10.0, help="seconds over which the events arrive")
    ap.add_argument("--concurrency", type=int, default=2, help="the template's EventConcurrency")
    ap.add_argument("--batch", type=int, default=10, help="the template's EventBatchSize")
    ap.add_argument("--visibility", type=float, default=5.0, help="visibility timeout of a retried record (s)")
    ap.add_argument("--copy-seconds", type=float, default=5.0, help="how long a copy takes")
    ap.add_argument("--latency", type=float, default=0.03)
    ap.add_argument("--log", default="target/burst-bench.log")
    args = ap.parse_args()

    w = build_world(args.images)
    w.latency = args.latency
    server, port = standin.serve(world=w)
    queues = {(f, r): Queue(f"ami-share-{f}-{r}") for f in FUNCTIONS for r in [HOME] + DESTS}
    stop, errors = threading.Event(), []
    log = open(args.log, "wb")
    threads = [threading.Thread(target=poller, args=(args.dir, f, r, q, port, args, stop, errors, log), daemon=True)
               for (f, r), q in queues.items() for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # the pollers' processes are up (cold starts are not the subject here)

    announced: set[str] = set()
    started = time.monotonic()

    def announce(region: str, image_id: str) -> None:
        for f in FUNCTIONS:
            queues[(f, region)].send(envelope(region, image_id))

    sources = [f"ami-{i:017x}" for i in range(args.images)]
    feeder_done = threading.Event()

    def feed() -> None:
        for i, iid in enumerate(sources):
            target = started + args.within * i / max(1, len(sources))
            time.sleep(max(0.0, target - time.monotonic()))
            announce(HOME, iid)
        feeder_done.set()

    threading.Thread(target=feed, daemon=True).start()
    pending_since: dict[str, float] = {}
    deadline = started + 1800
    while time.monotonic() < deadline:
        for iid, r in finish_copies(w, announced, pending_since, args.copy_seconds):
            announce(r, iid)
        if (feeder_done.is_set() and len(announced) == args.images * len(DESTS)
                and all(q.idle() for q in queues.values())):
            break
        time.sleep(0.05)
    wall = time.monotonic() - started
    stop.set()
    for t in threads:
        t.join(timeout=15)
    server.shutdown()
    log.close()

    # The end state.
    active = set(DIRECT) | set(MEMBERS)
    unshared = []
    for img in w.images.values():
        if img.launch != set(DIRECT) or img.launch_ous != {OU_ARN} or "ami-share:plan" not in img.tags:
            unshared.append(img.id)
            continue
        if any(w.snapshots[s].permissions != active for s in img.snapshots):
            unshared.append(img.id)
    copies = [i for i in w.images.values() if i.source]
    failed = sum(len(q.failed) for q in queues.values())
    retried = sum(q.retried for q in queues.values())
    floor, what = floor_seconds(w)
    ratio = wall / floor if floor else float("inf")
    mutating = {f"{r} {a}": n for (r, a), n in sorted(w.calls_by_region.items()) if a.startswith(standin.MUTATING_PREFIXES)}
    print(f"burst: {args.images} images announced within {args.within:.0f} s, EventConcurrency {args.concurrency}, "
          f"batches of {args.batch}, {args.latency * 1000:.0f} ms per call, EC2 and KMS throttling on "
          f"(retry visibility shortened to {args.visibility:.0f} s, copies take {args.copy_seconds:.0f} s)")
    print(f"  wall {wall:.1f} s; floor {floor:.1f} s ({what} at 5/s after the 50 burst); ratio {ratio:.2f}")
    print(f"  mutating calls: {json.dumps(mutating)}")
    print(f"  throttled by the stand-in and absorbed by the SDK's retries: {json.dumps(w.throttled)}")
    print(f"  images {len(sources)}, copies {len(copies)}, not fully shared {len(unshared)}, "
          f"records retried {retried}, in a failure queue {failed}, invocation errors {len(errors)}")
    for e in errors[:5]:
        print("   ", e)
    targets = [
        ("every image and copy fully shared", not unshared and len(copies) == args.images * len(DESTS)),
        ("0 records in a failure queue", failed == 0),
        ("0 records retried (no RequestLimitExceeded left unabsorbed)", retried == 0 and not errors),
        ("wall within 1.5x the floor", ratio <= 1.5),
    ]
    return verdict(targets)


if __name__ == "__main__":
    sys.exit(main())
