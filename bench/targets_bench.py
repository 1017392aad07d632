"""The copy_into benchmark: the real release `nightly-sweeper` binary, served through a local
Lambda Runtime API, against the stand-in (bench/standin.py) with target accounts: a rule copies
its newest image into every account of an OU tree of 5,000 active accounts, in 2 Regions
(10,000 targets), 100 ms per call, EC2 and KMS throttling on (each account its own buckets),
and the Region also holds 10,000 managed images (their steady drift repair runs alongside).

    python3 bench/targets_bench.py --binary target/release/nightly-sweeper [--accounts 5000]
        [--images 10000] [--latency 0.1]

Nights, every event lost (no on-image-available ever ran):
  1  the first night opens the source to the targets and starts every copy (10,000 CopyImage
     in the target accounts);
  2  EC2 has finished the copies: the night finishes each (the source's deprecation time);
  3  steady: one listing per target account and Region, no write.
Targets: each night inside the sweeper's 900 s (one invocation), every target copied once (no
duplicate however often a night runs), one AssumeRole per target account, no error left
unretried.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import standin  # noqa: E402
from sweeper_bench import check, run_sweeper, seed_first_night  # noqa: E402

REGIONS = ["us-east-1", "eu-west-1"]
ROOT = "ou-ab12-00000001"
OU_ARN = f"arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/{ROOT}"
DEPRECATE_AT = "2027-06-01T00:00:00.000Z"


def policy() -> dict:
    return {"sweeper": {"mode": "report"}, "rules": [
        {"name": "golden", "match": {"name": "golden-*"}, "share_snapshots": False,
         "share_with": {"accounts": ["111122223333"]}},
        {"name": "regulated", "match": {"name": "regulated-*"},
         "copy_into": {"organizational_units": [OU_ARN],
                       "regions": [{"region": r, "kms_key_id": "alias/consumer-ami"} for r in REGIONS]}},
    ]}


def build_world(accounts: int, images: int) -> tuple[standin.World, set[str]]:
    w = standin.World()
    children = [f"ou-ab12-{100 + i:08d}" for i in range(10)]
    w.ous[ROOT] = ([], children)
    active: set[str] = set()
    counter = 0
    for c in children:
        accts = [f"3{counter + i:011d}" for i in range(accounts // 10 + 5)]
        counter += len(accts)
        w.suspended.update(accts[-5:])
        active.update(accts[:-5])
        w.ous[c] = (accts, [])
    for i in range(images):
        sid, iid = f"snap-{i:017x}", f"ami-{i:017x}"
        w.add_snapshot(standin.Snapshot(sid, f"Created by CreateImage(i-0123456789abcdef0) for {iid}"))
        w.add_image(standin.Image(iid, f"golden-{i}", [sid], tags={"ami-share:managed": "golden"}))
    sid, iid = "snap-0000000000fffffff", "ami-0000000000fffffff"
    w.add_snapshot(standin.Snapshot(sid, f"Created by CreateImage(i-0123456789abcdef0) for {iid}"))
    w.add_image(standin.Image(iid, "regulated-2026-12", [sid]))
    w.images[iid].deprecation = DEPRECATE_AT
    return w, active


def night(name: str, binary: str, w: standin.World, n_targets: int, failures: list[str]) -> dict:
    w.calls.clear()
    w.throttled.clear()
    out = run_sweeper(binary, w, policy(), {}, f"target/bench-targets-{name}.log")
    r = out["report"]
    t = r.get("target_copies", {})
    calls = dict(sorted(w.calls.items()))
    print(f"{name}: {out['elapsed']:.1f} s, peak RSS {out['peak_rss_mib']:.0f} MiB, {sum(calls.values())} calls "
          f"({sum(w.throttled.values())} throttled, retried): {json.dumps(calls)}", flush=True)
    print(f"{name}: target copies {json.dumps({k: v for k, v in t.items() if k != 'problems'})}, "
          f"problems {t.get('problems', [])[:2]}, drift in sync {r.get('drift', {}).get('in_sync')}, "
          f"errors {r.get('errors_total')}, more {r.get('more')}", flush=True)
    for what, ok in [
        ("the invocation answered, inside one invocation (900 s)", out["kind"] == "response" and out["elapsed"] < 900),
        ("every target followed", t.get("targets") == n_targets and not r.get("more")),
        ("no error left unretried", r.get("errors_total") == 0 and t.get("failed") == 0),
    ]:
        print(f"{name}:   {check(f'{name}: {what}', ok, failures):6} {what}")
    return {"elapsed": out["elapsed"], "report": r, "calls": calls}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default="target/release/nightly-sweeper")
    ap.add_argument("--accounts", type=int, default=5000)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--latency", type=float, default=0.1)
    a = ap.parse_args()
    failures: list[str] = []
    w, active = build_world(a.accounts, a.images)
    n_targets = len(active) * len(REGIONS)
    print(f"targets: {a.images} managed images + 1 image copied into {len(active)} accounts x {len(REGIONS)} Regions "
          f"({n_targets} targets), {a.latency * 1000:.0f} ms per call, EC2 and KMS throttling on", flush=True)
    # The 10,000 images' first night (fingerprints), seeded at no latency; its target pass too,
    # which is then undone so that night 1 starts every copy.
    seed_first_night("targets", a.binary, w, policy(), a.latency)
    w.targets.clear()
    w.target_tokens.clear()
    w.latency = a.latency
    w.throttling = True

    started = time.monotonic()
    n1 = night("night-1", a.binary, w, n_targets, failures)
    t1 = n1["report"].get("target_copies", {})
    print(f"night-1:   {check('night-1: every copy started', t1.get('started') == n_targets, failures):6} every copy started")
    for images in w.targets.values():
        for i in images:
            i.state = "available"
    n2 = night("night-2", a.binary, w, n_targets, failures)
    t2 = n2["report"].get("target_copies", {})
    # (the SDK writes the time without its milliseconds)
    deprecated = sum(1 for v in w.targets.values() for i in v if (i.deprecation or "")[:19] == DEPRECATE_AT[:19])
    print(f"night-2:   {check('night-2: every copy finished, deprecated like its source', t2.get('finished') == n_targets and deprecated == n_targets, failures):6} every copy finished, deprecated like its source ({deprecated})")
    n3 = night("night-3", a.binary, w, n_targets, failures)
    writes = {k: v for k, v in n3["calls"].items() if k.endswith("@target") and not k.startswith("Describe")}
    print(f"night-3:   {check('night-3: steady, no write in a target account', not writes, failures):6} steady, no write in a target account {writes or ''}")
    assumed = n3["calls"].get("sts:AssumeRole", 0)
    print(f"night-3:   {check('night-3: one AssumeRole per target account', assumed == len(active), failures):6} one AssumeRole per target account ({assumed})")
    copies = sum(len(v) for v in w.targets.values())
    print(f"targets:   {check('one copy per target', copies == n_targets, failures):6} one copy per target ({copies})")
    print(f"targets: nights {n1['elapsed']:.1f} s, {n2['elapsed']:.1f} s, {n3['elapsed']:.1f} s "
          f"(total {time.monotonic() - started:.0f} s)")
    print("BENCH OK" if not failures else f"BENCH FAILED: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
