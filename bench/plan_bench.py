"""The plan's benchmark (issue 29): `{"mode": "plan"}` of the real release `nightly-sweeper`
(the computation `ami-share plan` runs) against the paginating, latency-injecting, throttling
stand-in, at the yardstick: 10,000 managed images and 1,000,000 snapshots in the Region,
100 ms per call, EC2 and KMS throttling on.

    python3 bench/plan_bench.py --binary target/release/nightly-sweeper [--images N] [--snapshots N]

  s  steady: the policy deployed, nothing changed since the last night. The plan writes
     nothing, says the night has nothing to share, and makes exactly the night's reads: the
     inventory's pages, the audit slice's reads, no call per image beyond them.
  c  changed: the policy adds an account to the rule of all the images. The plan writes nothing
     and lists 10,000 launch permissions and 10,000 snapshot shares to add; every image is stale,
     so it reads each image as the night will (its cost is the night's reads, not more).

Exits non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import standin  # noqa: E402
from sweeper_bench import POLICY, RULE_ACCOUNT, build_world, check, run_sweeper, seed_first_night  # noqa: E402

WRITES = ("Modify", "Create", "Delete", "Copy", "Enable", "Disable", "Deregister", "Put", "Label",
          "Unlabel", "Associate", "Disassociate", "Update", "Revoke", "Tag", "Untag", "Send")
ADDED = "222233334444"


def writes(calls: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in calls.items() if k.split(":")[-1].startswith(WRITES)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/nightly-sweeper")
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--snapshots", type=int, default=1_000_000)
    ap.add_argument("--latency", type=float, default=0.1)
    a = ap.parse_args()
    failures: list[str] = []
    print(f"plan: {a.images} managed images, {a.snapshots} snapshots, {a.latency * 1000:.0f} ms per call, "
          f"throttling on", flush=True)
    w, _, _ = build_world(a.images, a.snapshots, 0)
    seed_first_night("plan", a.binary, w, POLICY, a.latency)

    # s: steady. The plan, then the night it plans.
    out = run_sweeper(a.binary, w, POLICY, {"mode": "plan"}, "target/bench-plan-s.log")
    plan_calls = dict(w.calls)
    plan = out["report"].get("plan", {})
    w.calls.clear()
    night = run_sweeper(a.binary, w, POLICY, {}, "target/bench-plan-s-night.log")
    night_calls = dict(w.calls)
    night_reads = {k: v for k, v in night_calls.items() if k not in writes(night_calls)}
    pages = night_calls.get("DescribeSnapshots", 0) + night_calls.get("DescribeImages", 0)
    per_image = (sum(plan_calls.values()) - pages) / a.images
    print(f"s: plan {out['elapsed']:.1f} s, {sum(plan_calls.values())} calls {json.dumps(plan_calls, sort_keys=True)}; "
          f"planned writes {plan.get('writes')}")
    print(f"s: the night {night['elapsed']:.1f} s, {sum(night_calls.values())} calls, of which writes "
          f"{json.dumps(writes(night_calls), sort_keys=True)}")
    print(f"s: calls per image beyond the listing pages: {per_image:.3f}")
    for what, ok in [
        ("the plan wrote nothing", writes(plan_calls) == {}),
        ("the plan made exactly the night's reads", plan_calls == night_reads),
        ("the plan's writes are the night's", plan.get("writes") == sum(writes(night_calls).values())),
        ("nothing to share in the plan", "launch-permissions-added" not in plan.get("sections", {})),
        ("no error", out["report"].get("night", {}).get("errors_total") == 0),
    ]:
        print(f"s:   {check(f's: {what}', ok, failures):6} {what}")

    # c: a changed policy: one account more for every image.
    changed = json.loads(json.dumps(POLICY))
    changed["rules"][0]["share_with"]["accounts"] = [RULE_ACCOUNT, ADDED]
    w.calls.clear()
    out = run_sweeper(a.binary, w, changed, {"mode": "plan"}, "target/bench-plan-c.log")
    calls = dict(w.calls)
    sections = out["report"].get("plan", {}).get("sections", {})
    added = sections.get("launch-permissions-added", {})
    snaps = sections.get("snapshot-shares-added", {})
    print(f"c: plan {out['elapsed']:.1f} s, {sum(calls.values())} calls {json.dumps(calls, sort_keys=True)}")
    print(f"c: launch permissions to add {added.get('count')} (by principal {added.get('by_principal')}, "
          f"by rule {added.get('by_rule')}), snapshot shares {snaps.get('count')}")
    for what, ok in [
        ("the plan wrote nothing", writes(calls) == {}),
        ("every image's launch permission planned", added.get("count") == a.images
         and added.get("by_principal") == {ADDED: a.images} and added.get("by_rule") == {"golden": a.images}),
        ("every snapshot share planned", snaps.get("count") == a.images),
        ("no error", out["report"].get("night", {}).get("errors_total") == 0),
    ]:
        print(f"c:   {check(f'c: {what}', ok, failures):6} {what}")
    print("BENCH OK" if not failures else f"BENCH MISSED: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
