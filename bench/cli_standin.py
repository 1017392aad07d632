"""`ami-share status` and `ami-share plan` (the operator CLI binary) against the stand-in
(bench/standin.py): a Region of managed images, one converged by the night first. Checks the
exit codes and the answers; prints how long each took and what it called. Not part of CI.

    python3 bench/cli_standin.py [--binary target/debug/ami-share] [--sweeper target/release/nightly-sweeper]
        [--images 2000] [--snapshots 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import standin  # noqa: E402
from sweeper_bench import POLICY, RULE_ACCOUNT, build_world, check, seed_first_night  # noqa: E402


def run_cli(binary: str, port: int, *args: str) -> tuple[int, str, str, float]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
        "AMI_SHARE_ACCOUNT_ID": standin.ACCOUNT,
    }
    t0 = time.monotonic()
    r = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=1800)
    return r.returncode, r.stdout, r.stderr, time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/debug/ami-share")
    ap.add_argument("--sweeper", default="target/release/nightly-sweeper")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--snapshots", type=int, default=20000)
    ap.add_argument("--latency", type=float, default=0.03)
    a = ap.parse_args()
    failures: list[str] = []
    w, _, _ = build_world(a.images, a.snapshots, 10)
    seed_first_night("cli", a.sweeper, w, POLICY, a.latency)
    server, port = standin.serve(w)
    try:
        with tempfile.TemporaryDirectory() as d:
            deployed = os.path.join(d, "policy.json")
            with open(deployed, "w") as f:
                json.dump(POLICY, f)
            changed = json.loads(json.dumps(POLICY))
            changed["rules"][0]["share_with"]["accounts"] = [RULE_ACCOUNT, "222233334444"]
            changed_file = os.path.join(d, "changed.json")
            with open(changed_file, "w") as f:
                json.dump(changed, f)
            image = next(iter(w.images))

            w.calls.clear()
            rc, out, err, took = run_cli(a.binary, port, "status", image, "--policy", deployed, "--json")
            st = json.loads(out or "{}")
            print(f"status {image}: exit {rc}, {took:.1f} s, {sum(w.calls.values())} calls {json.dumps(w.calls, sort_keys=True)}")
            for what, ok in [
                ("status: served, exit 0", rc == 0 and st.get("served") is True),
                ("status: one row for the rule's account", [r["target"] for r in st.get("rows", [])] == [RULE_ACCOUNT]),
            ]:
                print(f"  {check(what, ok, failures):6} {what}")

            w.calls.clear()
            rc, out, err, took = run_cli(a.binary, port, "status", image, "--policy", changed_file, "--json")
            st = json.loads(out or "{}")
            codes = sorted({x["code"] for r in st.get("rows", []) for x in r["reasons"]})
            print(f"status under the changed policy: exit {rc}, reasons {codes}")
            print(f"  {check('status: the new account not-shared, exit 1', rc == 1 and codes == ['not-shared', 'snapshot-not-shared'], failures):6} "
                  "the new account not-shared, exit 1")

            w.calls.clear()
            rc, out, err, took = run_cli(a.binary, port, "plan", "--policy", changed_file, "--json")
            plan = json.loads(out or "{}").get("plan", {})
            added = plan.get("sections", {}).get("launch-permissions-added", {})
            writes = {k: v for k, v in w.calls.items() if k.split(":")[-1].startswith(("Modify", "Create", "Delete", "Copy", "Put", "Tag"))}
            print(f"plan: exit {rc}, {took:.1f} s, {sum(w.calls.values())} calls {json.dumps(w.calls, sort_keys=True)}; "
                  f"launch permissions to add {added.get('count')}; writes made {writes}")
            for what, ok in [
                ("plan: exit 0", rc == 0),
                ("plan: every image's new launch permission listed", added.get("count") == a.images
                 and added.get("by_principal") == {"222233334444": a.images}),
                ("plan: nothing written", writes == {}),
            ]:
                print(f"  {check(what, ok, failures):6} {what}")
    finally:
        server.shutdown()
    print("BENCH OK" if not failures else f"BENCH MISSED: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
