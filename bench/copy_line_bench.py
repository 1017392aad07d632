"""Benchmark (e) of the copies' waiting line ("patch day"): 200 images released within 10
seconds, each copied to 2 Regions, under EC2's copy cap. The path a deployed stack takes, modelled
locally as in the burst benchmark (bench/burst_bench.py: each function's queue per Region, read by
`--concurrency` warm release processes in batches, partial batch responses, a failure queue after 3
receives), plus:

- the stand-in (bench/standin.py) models EC2's cap: at most `--cap` snapshot copies pending per
  destination Region (a slot per snapshot), `ResourceLimitExceeded` past it; and SQS (the copy
  line of each Region: FIFO, groups, visibility, deduplication);
- a copy becomes `available` `--copy-seconds` after `CopyImage`, and its event goes to both event
  functions' queues of its Region, as EventBridge does;
- the copy line's timer: on-copy-complete is invoked with a scheduled event in each destination
  Region every `--timer` seconds (one minute in the stack; scaled like the copies here).

Targets (exit 1 when missed): all 400 copies available and fully shared within 1.2x the floor the
cap sets (ceil(images x snapshots / cap) copy durations: the Regions copy in parallel), printed
beside it; never more than `--cap` slots in use in a Region; at most 1.2 `CopyImage` calls per copy;
0 copies left for the night (every copy made, every line empty); 0 records in a failure queue.

    python3 bench/copy_line_bench.py --dir target/release [--images 200] [--cap 20] [--copy-seconds 20]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import standin  # noqa: E402
from burst_bench import (  # noqa: E402
    ACCOUNT, DESTS, DIRECT, FUNCTIONS, HOME, MEMBERS, OU, OU_ARN, Queue, finish_copies, poller, start_function,
    verdict,
)
from event_bench import event as envelope  # noqa: E402


def policy(cap: int) -> dict:
    return {"rate_limits": {"copies_in_flight": cap}, "rules": [{
        "name": "golden", "match": {"name": "golden-*"},
        "share_with": {"accounts": DIRECT, "organizational_units": [OU_ARN]},
        "copy_to": [{"region": r} for r in DESTS],
    }]}


def build_world(n: int, snapshots: int, cap: int) -> standin.World:
    w = standin.World()
    w.throttling = True
    w.copy_cap = cap
    w.ous[OU] = (list(MEMBERS), [])
    for i in range(n):
        snaps = [f"snap-{i * 4 + k:017x}" for k in range(snapshots)]
        for s in snaps:
            w.add_snapshot(standin.Snapshot(s, f"Created by CreateImage(i-0123456789abcdef0) for ami-{i:017x}"))
        w.add_image(standin.Image(f"ami-{i:017x}", f"golden-{i}", snaps, region=HOME))
    return w


def timer(binary: str, region: str, port: int, args, stop: threading.Event, errors: list[str], log) -> None:
    """The copy line's timer in `region`: a scheduled event into on-copy-complete."""
    rt, proc = start_function(binary, "on-copy-complete", region, port, args, log, policy(args.cap))
    tick = {"version": "0", "id": "tick", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": ACCOUNT, "time": "2026-12-06T10:00:00Z", "region": region, "resources": [], "detail": {}}
    try:
        while not stop.wait(args.timer):
            kind, body = rt.invoke(tick, 120)
            if kind != "response":
                errors.append(f"timer {region}: {kind}: {body[:300]!r}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        rt.server.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="target/release")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--snapshots", type=int, default=1, help="snapshots per image (a slot each)")
    ap.add_argument("--cap", type=int, default=20, help="snapshot copies in flight per destination Region")
    ap.add_argument("--within", type=float, default=10.0, help="seconds over which the events arrive")
    ap.add_argument("--concurrency", type=int, default=2, help="the template's EventConcurrency")
    ap.add_argument("--batch", type=int, default=10, help="the template's EventBatchSize")
    ap.add_argument("--visibility", type=float, default=5.0, help="visibility timeout of a retried record (s)")
    ap.add_argument("--copy-seconds", type=float, default=20.0, help="how long a copy takes")
    ap.add_argument("--timer", type=float, default=2.0, help="the copy line's timer period (s)")
    ap.add_argument("--latency", type=float, default=0.03)
    ap.add_argument("--log", default="target/copy-line-bench.log")
    args = ap.parse_args()

    w = build_world(args.images, args.snapshots, args.cap)
    w.latency = args.latency
    server, port = standin.serve(world=w)
    queues = {(f, r): Queue(f"ami-share-{f}-{r}") for f in FUNCTIONS for r in [HOME] + DESTS}
    stop, errors = threading.Event(), []
    log = open(args.log, "wb")
    threads = [threading.Thread(target=poller, args=(args.dir, f, r, q, port, args, stop, errors, log, policy(args.cap)),
                                daemon=True)
               for (f, r), q in queues.items() for _ in range(args.concurrency)]
    threads += [threading.Thread(target=timer, args=(args.dir, r, port, args, stop, errors, log), daemon=True)
                for r in DESTS]
    for t in threads:
        t.start()
    time.sleep(1.0)  # the processes are up (cold starts are not the subject here)

    announced: set[str] = set()
    started = time.monotonic()

    def announce(region: str, image_id: str) -> None:
        for f in FUNCTIONS:
            queues[(f, region)].send(envelope(region, image_id))

    sources = [f"ami-{i:017x}" for i in range(args.images)]

    def feed() -> None:
        for i, iid in enumerate(sources):
            time.sleep(max(0.0, started + args.within * i / max(1, len(sources)) - time.monotonic()))
            announce(HOME, iid)

    threading.Thread(target=feed, daemon=True).start()
    pending_since: dict[str, float] = {}
    want = args.images * len(DESTS)
    floor = math.ceil(args.images * args.snapshots / args.cap) * args.copy_seconds
    deadline = started + max(600.0, 4 * floor)
    done_at = None
    while time.monotonic() < deadline:
        for iid, r in finish_copies(w, announced, pending_since, args.copy_seconds):
            announce(r, iid)
        if len(announced) == want and all(q.idle() for q in queues.values()):
            with w.lock:
                shared = all("ami-share:plan" in i.tags for i in w.images.values() if i.source)
            if shared:
                done_at = time.monotonic()
                break
        time.sleep(0.05)
    wall = (done_at or time.monotonic()) - started
    stop.set()
    for t in threads:
        t.join(timeout=15)
    server.shutdown()
    log.close()

    copies = [i for i in w.images.values() if i.source]
    active = set(DIRECT) | set(MEMBERS)
    unshared = [i.id for i in copies if i.state != "available" or i.launch != set(DIRECT) or i.launch_ous != {OU_ARN}
                or "ami-share:plan" not in i.tags or any(w.snapshots[s].permissions != active for s in i.snapshots)]
    waiting = {r: len(q.messages) for (r, _), q in w.queues.items() if q.fifo}
    failed = sum(len(q.failed) for q in queues.values())
    copy_calls = w.calls.get("CopyImage", 0)
    refused = w.calls.get("CopyImage:ResourceLimitExceeded", 0)
    per_copy = copy_calls / max(1, len(copies))
    ratio = wall / floor
    peak = max(w.peak_in_flight.values(), default=0)
    print(f"copy line: {args.images} images within {args.within:.0f} s, {args.snapshots} snapshot(s) each, copied to "
          f"{len(DESTS)} Regions; cap {args.cap} snapshot copies per Region; copies take {args.copy_seconds:.0f} s; "
          f"timer every {args.timer:.0f} s; {args.latency * 1000:.0f} ms per call, EC2 and KMS throttling on")
    print(f"  wall {wall:.1f} s; floor {floor:.1f} s (ceil({args.images} x {args.snapshots} / {args.cap}) = "
          f"{math.ceil(args.images * args.snapshots / args.cap)} copy durations per Region); ratio {ratio:.2f}")
    print(f"  copies {len(copies)} of {want}, not available and fully shared {len(unshared)}; most slots in use "
          f"{json.dumps(w.peak_in_flight)}; CopyImage calls {copy_calls} ({per_copy:.2f} per copy, "
          f"{refused} answered ResourceLimitExceeded); left in the lines {json.dumps(waiting)}")
    print(f"  sqs calls: {json.dumps({k: v for k, v in sorted(w.calls.items()) if k.startswith('sqs:')})}")
    print(f"  records in a failure queue {failed}, invocation errors {len(errors)}")
    for e in errors[:5]:
        print("   ", e)
    targets = [
        ("all copies available and fully shared", not unshared and len(copies) == want),
        (f"wall within 1.2x the floor the cap sets ({floor:.0f} s)", ratio <= 1.2),
        (f"never more than {args.cap} slots in use in a Region", peak <= args.cap),
        ("at most 1.2 CopyImage calls per copy", per_copy <= 1.2),
        ("0 copies left for the night", len(copies) == want and not any(waiting.values())),
        ("0 records in a failure queue", failed == 0 and not errors),
    ]
    return verdict(targets)


if __name__ == "__main__":
    sys.exit(main())
