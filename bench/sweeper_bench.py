"""The sweeper benchmark: the real release `nightly-sweeper` binary, served through a local
Lambda Runtime API, against the paginating, latency-injecting, throttling stand-in
(bench/standin.py). Prints one line of figures per scenario and exits non-zero when a target
is missed.

    python3 bench/sweeper_bench.py --binary target/release/nightly-sweeper [--scenario a|b|all]
        [--latency 0.1] [--images N] [--snapshots N] [--orphans N]

Scenarios (issue: reconciliation part 1), 100 ms per call, EC2 throttling on:
  a  first night: 1,000 managed images without a fingerprint, 100,000 snapshots of which
     5,000 orphans, report mode: every image converged and every orphan marked, <= 180 s plus
     the signed marks' floor (one CreateTags per orphan at 4/s, issue 25).
  b  steady night: 10,000 managed images, 100,000 snapshots, nothing changed (a first night
     already recorded the fingerprints, seeded at no latency): <= 180 s, and calls <= listing
     pages + the audit slice's reads + the tag calls that record it.
Every scenario: 0 in-use snapshots deleted or marked, orphans found = ground truth, no
throttling error left unretried (the report's error count is 0).
  j  (issue 10 a, not in `all`) one account joins an OU that all 10,000 images are shared
     with: every snapshot permission converged the same night, each invocation inside its
     deadline, invocations continued while the report says `more` (as the state machine does).
  d  (issue 10 b, not in `all`) 1,000,000 snapshots, 50,000 orphans due, delete mode with
     max_deletions lifted: every round deletes only from a fresh complete inventory, peak RSS
     <= 256 MiB, all deleted within one night; `--max-rounds N` stops after N rounds and
     projects the night from the slowest round measured.
  k  (issue 18 c, not in `all`) a 5,000-account organization (an OU tree of 10 OUs, 500 active
     and 5 suspended accounts each), 10,000 images encrypted with one customer managed key,
     shared with the root OU in `kms_access: key_policy` mode (launch permissions only,
     `share_snapshots: false`), the key's policy admitting the OU: a steady night (after a
     seeded first night) makes no share call per account, one GetKeyPolicy, and the same calls
     at 50 and at 5,000 accounts but for Organizations: since issue 30 the night reads each
     active account's EC2 declarative policy once (Allowed AMIs; every 10th account admits
     only Amazon's images), paced at 8 a second, after listing the OU tree.
  t  control (not in `all`): scenario a with the product's own rate limits lifted, so the
     stand-in throttles it: the stand-in must throttle, and adaptive retry must leave no error.
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
from http.server import BaseHTTPRequestHandler

sys.path.insert(0, os.path.dirname(__file__))
import standin  # noqa: E402

RULE_ACCOUNT = "111122223333"
POLICY = {
    "rules": [{"name": "golden", "match": {"name": "golden-*"}, "share_with": {"accounts": [RULE_ACCOUNT]}}],
    "sweeper": {"mode": "report"},
}


class Runtime:
    """A Lambda Runtime API for one invocation at a time."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.results: dict[str, tuple[str, bytes]] = {}
        # When the process first asked for an event (its init is over), when each event was
        # handed out, and when its result came back (monotonic seconds).
        self.first_next: float | None = None
        self.delivered: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.function_arn = "arn:aws:lambda:us-east-1:123456789012:function:nightly-sweeper"
        runtime = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls (see standin.Handler)

            def log_message(self, *a):
                pass

            def send(self, status, body=b"", headers=None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                if not self.path.endswith("/runtime/invocation/next"):
                    return self.send(404)
                with runtime.cond:
                    if runtime.first_next is None:
                        runtime.first_next = time.monotonic()
                    while not runtime.pending:
                        runtime.cond.wait()
                    rid, payload = runtime.pending.pop(0)
                    runtime.delivered[rid] = time.monotonic()
                deadline = int((time.time() + getattr(runtime, "deadline_s", 900)) * 1000)
                self.send(200, payload, {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": rid,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn": runtime.function_arn,
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                })

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                parts = self.path.split("/")
                kind = parts[-1]
                with runtime.cond:
                    if kind in ("response", "error") and len(parts) >= 2:
                        runtime.results[parts[-2]] = (kind, body)
                        runtime.finished[parts[-2]] = time.monotonic()
                    else:
                        runtime.results["init"] = (kind, body)
                    runtime.cond.notify_all()
                self.send(202, b"{}")

        self.server = standin.QuietServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, payload: dict, deadline_s: float = 900, rid: str | None = None) -> tuple[str, bytes]:
        rid = rid or str(uuid.uuid4())
        timeout = deadline_s + 60
        self.deadline_s = deadline_s
        with self.cond:
            self.pending.append((rid, json.dumps(payload).encode()))
            self.cond.notify_all()
            end = time.time() + timeout
            while rid not in self.results and "init" not in self.results:
                left = end - time.time()
                if left <= 0:
                    raise TimeoutError("the invocation did not finish in time")
                self.cond.wait(left)
            return self.results.get(rid) or self.results["init"]


def build_world(images: int, snapshots: int, orphans: int) -> tuple[standin.World, set[str], set[str]]:
    """`images` managed images already shared with the rule's account (one snapshot each),
    `orphans` snapshots left by deregistered images, the rest snapshots without proof of origin
    (never orphans: kept). Returns the world, the orphan ids and the in-use ids."""
    w = standin.World()
    in_use, orphan_ids = set(), set()
    for n in range(images):
        sid = f"snap-{n:017x}"
        iid = f"ami-{n:017x}"
        w.add_snapshot(standin.Snapshot(sid, f"Created by CreateImage(i-0123456789abcdef0) for {iid}",
                                        permissions={RULE_ACCOUNT}))
        w.add_image(standin.Image(iid, f"golden-{n}", [sid], tags={"ami-share:managed": "golden"},
                                  launch={RULE_ACCOUNT}))
        in_use.add(sid)
    for n in range(orphans):
        sid = f"snap-{0x100000000 + n:017x}"
        gone = f"ami-{0x100000000 + n:017x}"
        w.add_snapshot(standin.Snapshot(sid, f"Created by CreateImage(i-0123456789abcdef0) for {gone}"))
        orphan_ids.add(sid)
    for n in range(max(0, snapshots - images - orphans)):
        w.add_snapshot(standin.Snapshot(f"snap-{0x200000000 + n:017x}", "hand-made backup"))
    return w, orphan_ids, in_use


def vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_sweeper(binary: str, world: standin.World, policy: dict, payload: dict, log_path: str,
                deadline_s: float = 900) -> dict:
    server, port = standin.serve(world)
    rt = Runtime()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{rt.port}",
        "AWS_LAMBDA_FUNCTION_NAME": "nightly-sweeper",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/nightly-sweeper",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AMI_SHARE_POLICY": json.dumps(policy),
        # copy_into's role in the target accounts (bench/targets_bench.py)
        "AMI_SHARE_TARGET_ROLE_NAME": "ami-share-target",
        "RUST_LOG": "warn",
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT)
        peak = 0
        done = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, vm_hwm_kib(proc.pid))
                time.sleep(0.2)

        threading.Thread(target=watch, daemon=True).start()
        start = time.monotonic()
        try:
            kind, body = rt.invoke(payload, deadline_s)
        finally:
            elapsed = time.monotonic() - start
            peak = max(peak, vm_hwm_kib(proc.pid))
            done.set()
            proc.terminate()
            proc.wait(timeout=10)
            server.shutdown()
            rt.server.shutdown()
    result = json.loads(body or b"{}")
    return {"kind": kind, "elapsed": elapsed, "peak_rss_mib": peak / 1024, "report": result}


def check(name: str, ok: bool, failures: list[str]) -> str:
    if not ok:
        failures.append(name)
    return "ok" if ok else "MISSED"


def scenario_a(binary: str, latency: float, images: int, snapshots: int, orphans: int) -> list[str]:
    print(f"a: first night: {images} managed images without a fingerprint, {snapshots} snapshots "
          f"({orphans} orphans), report mode, {latency * 1000:.0f} ms per call, throttling on", flush=True)
    w, orphan_ids, in_use = build_world(images, snapshots, orphans)
    w.latency, w.throttling = latency, True
    out = run_sweeper(binary, w, POLICY, {}, "target/bench-a.log")
    # Issue 25: each orphan mark is signed for its own snapshot, so marking costs one CreateTags
    # per orphan at the night's CreateTags rate (4 a second: 0.8 of EC2's 5): the floor it sets
    # is added to the 180 s of the rest.
    floor = orphans / 4.0
    print(f"a: the marks' floor: {orphans} CreateTags at 4/s = {floor:.0f} s", flush=True)
    return summarise("a", out, w, orphan_ids, in_use, images, expect_converged=images, time_target=180 + floor)


def scenario_t(binary: str, latency: float, images: int, snapshots: int, orphans: int) -> list[str]:
    """Control: the product's own rate limits lifted, so the stand-in's buckets throttle it; the
    SDK's adaptive retry must still leave no error (and the stand-in is shown to throttle)."""
    print(f"t: control: scenario a with the product's rate limits lifted (the stand-in throttles), "
          f"{latency * 1000:.0f} ms per call", flush=True)
    w, orphan_ids, in_use = build_world(images, snapshots, orphans)
    w.latency, w.throttling = latency, True
    policy = json.loads(json.dumps(POLICY))
    policy["rate_limits"] = {"requests_per_second": {a: 100000 for a in (
        "DescribeImageAttribute", "DescribeSnapshotAttribute", "CreateTags", "DescribeImages",
        "DescribeSnapshots")}}
    out = run_sweeper(binary, w, policy, {}, "target/bench-t.log")
    failures = summarise("t", out, w, orphan_ids, in_use, images, expect_converged=images, time_target=None)
    throttled = sum(w.throttled.values())
    print(f"t:   {check('t: the stand-in throttled', throttled > 0, failures):6} the stand-in throttled ({throttled})")
    return failures


def continue_night(name: str, binary: str, w: standin.World, policy: dict, deadline_s: float,
                   max_rounds: int = 24) -> tuple[list[dict], float]:
    """Invoke the sweeper again while its report says `more`, exactly as the template's state
    machine does (at most `max_rounds`; its 30 s pause between rounds is left out of the
    clock). Returns each round's figures and the total time."""
    rounds, total = [], 0.0
    for n in range(max_rounds):
        before = dict(w.calls)
        out = run_sweeper(binary, w, policy, {}, f"target/bench-{name}-{n}.log", deadline_s)
        total += out["elapsed"]
        r = out["report"]
        delta = {k: v - before.get(k, 0) for k, v in w.calls.items() if v - before.get(k, 0)}
        rounds.append({"out": out, "calls": delta})
        if out["kind"] != "response":
            print(f"{name}: round {n + 1} failed: {r}")
            break
        print(f"{name}: round {n + 1}: {out['elapsed']:.0f} s, peak RSS {out['peak_rss_mib']:.0f} MiB, "
              f"more={r.get('more')}, converged {r['drift']['converged']}, deleted {r['orphans']['deleted_count']}, "
              f"snapshot pages {delta.get('DescribeSnapshots', 0)}, writes "
              f"{ {k: v for k, v in delta.items() if k.startswith(('Modify', 'Delete', 'Create'))} }", flush=True)
        if not r.get("more"):
            break
    return rounds, total


def scenario_j(binary: str, latency: float, images: int, snapshots: int, orphans: int, deadline_s: float) -> list[str]:
    """Issue 10 (a): one account joins an OU that every image is shared with."""
    ou_arn = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456"
    print(f"j: one account joins an OU that all {images} images are shared with; {latency * 1000:.0f} ms per "
          f"call, throttling on, {deadline_s:.0f} s invocations continued while there is more", flush=True)
    w = standin.World()
    members = [f"20000000000{n}" for n in range(5)]
    w.ous["ou-ab12-cdef3456"] = (list(members), [])
    for n in range(images):
        sid, iid = f"snap-{n:017x}", f"ami-{n:017x}"
        w.add_snapshot(standin.Snapshot(sid, f"Created by CreateImage(i-0123456789abcdef0) for {iid}",
                                        permissions=set(members)))
        w.add_image(standin.Image(iid, f"golden-{n}", [sid], tags={"ami-share:managed": "golden"},
                                  launch_ous={ou_arn}))
    for n in range(max(0, snapshots - images)):
        w.add_snapshot(standin.Snapshot(f"snap-{0x200000000 + n:017x}", "hand-made backup"))
    policy = {"rules": [{"name": "golden", "match": {"name": "golden-*"},
                         "share_with": {"organizational_units": [ou_arn]}}]}
    seed = json.loads(json.dumps(policy))
    seed["rate_limits"] = {"requests_per_second": {a: 100000 for a in (
        "DescribeImageAttribute", "DescribeSnapshotAttribute", "CreateTags", "DescribeImages", "DescribeSnapshots")}}
    print("j: seeding the first night (no latency, raised rates)...", flush=True)
    run_sweeper(binary, w, seed, {}, "target/bench-j-seed.log")
    joined = "200000000099"
    w.ous["ou-ab12-cdef3456"][0].append(joined)
    w.calls.clear()
    w.throttled.clear()
    w.latency, w.throttling = latency, True
    rounds, total = continue_night("j", binary, w, policy, deadline_s)
    failures: list[str] = []
    shared = sum(1 for i in w.images.values() if all(joined in w.snapshots[s].permissions for s in i.snapshots))
    last = rounds[-1]["out"]["report"]
    print(f"j: {len(rounds)} invocations, {total:.0f} s in all (the night, without the engine's pauses); "
          f"{shared} of {images} images' snapshots shared with the new account; "
          f"{sum(w.throttled.values())} throttled; calls {json.dumps(w.calls, sort_keys=True)}")
    for what, ok in [
        ("every snapshot permission converged", shared == images),
        ("the last round has nothing more", not last.get("more")),
        ("each invocation inside its deadline", all(r["out"]["elapsed"] <= deadline_s for r in rounds)),
        ("no write repeated", w.calls.get("ModifySnapshotAttribute", 0) == images),
        ("within one night (12 h)", total <= 43200),
        ("no error left unretried", all(r["out"]["report"]["errors_total"] == 0 for r in rounds)),
    ]:
        print(f"j:   {check(f'j: {what}', ok, failures):6} {what}")
    return failures


def scenario_d(binary: str, latency: float, images: int, snapshots: int, orphans: int, deadline_s: float,
               delete_rate: float, max_rounds: int) -> list[str]:
    """Issue 10 (b): 1,000,000 snapshots, 50,000 orphans marked long ago, delete mode."""
    print(f"d: delete mode: {snapshots} snapshots, {orphans} orphans due, {images} images, DeleteSnapshot quota "
          f"{delete_rate}/s, {latency * 1000:.0f} ms per call, throttling on, {deadline_s:.0f} s invocations", flush=True)
    w, orphan_ids, in_use = build_world(images, snapshots, orphans)
    for sid in orphan_ids:
        # Marked by an earlier night: signed, as the sweeper writes its marks (issue 25).
        w.snapshots[sid].tags["ami-share:orphaned-since"] = standin.signed_mark("orphaned-since", sid, "2026-01-01")
    for i in w.images.values():
        i.tags["ami-share:plan"] = "seeded-by-the-benchmark"
    w.raised["DeleteSnapshot"] = (max(50.0, delete_rate * 10), delete_rate)
    w.latency, w.throttling = latency, True
    policy = json.loads(json.dumps(POLICY))
    policy["sweeper"] = {"mode": "delete", "grace_days": 7, "max_deletions": 1000000}
    policy["rate_limits"] = {"requests_per_second": {"DeleteSnapshot": delete_rate}}
    rounds, total = continue_night("d", binary, w, policy, deadline_s, max_rounds)
    failures: list[str] = []
    deleted = set(w.deleted)
    peak = max(r["out"]["peak_rss_mib"] for r in rounds)
    print(f"d: {len(rounds)} invocations, {total:.0f} s in all; deleted {len(deleted)} of {len(orphan_ids)} orphans; "
          f"peak RSS {peak:.0f} MiB; {sum(w.throttled.values())} throttled")
    finished = deleted == orphan_ids
    if not finished and len(rounds) == max_rounds and rounds[-1]["out"]["report"].get("more"):
        # Cut short on purpose (--max-rounds): project the night from the rounds measured.
        per_round = min(r["out"]["report"]["orphans"]["deleted_count"] for r in rounds)
        needed = len(rounds) + -(-(len(orphan_ids) - len(deleted)) // max(per_round, 1))
        hours = needed * (deadline_s + 30) / 3600
        print(f"d: projected: {needed} invocations of ~{deadline_s:.0f} s ({per_round} deletions each, the slowest "
              f"round measured) = {hours:.1f} h; the state machine allows 24 invocations and 12 h")
        finished = needed <= 24 and hours <= 12
    for what, ok in [
        ("every orphan deleted within one night (measured, or projected from the rounds run)", finished),
        ("0 in-use snapshots deleted", not (deleted & in_use)),
        ("each round from a fresh complete inventory",
         all(r["calls"].get("DescribeSnapshots", 0) >= snapshots // 1000 and
             r["out"]["report"]["orphans"]["status"] == "complete" for r in rounds)),
        ("orphans found = ground truth in the first round",
         rounds[0]["out"]["report"]["orphans"]["orphans_found"] == len(orphan_ids)),
        ("each invocation inside its deadline", all(r["out"]["elapsed"] <= deadline_s for r in rounds)),
        ("peak RSS <= 256 MiB", peak <= 256),
        ("no error left unretried", all(r["out"]["report"]["errors_total"] == 0 for r in rounds)),
    ]:
        print(f"d:   {check(f'd: {what}', ok, failures):6} {what}")
    return failures


def seed_first_night(name: str, binary: str, w: standin.World, policy: dict, latency: float) -> None:
    """The first night, at no latency and with raised rates: records every fingerprint (and
    marks the orphans). It was yesterday: its convergence times move back a day (the audit
    slice is a night's; rounds of the same night do not audit again). Then the stand-in's
    counters are reset and its latency and throttling turned on for the night measured."""
    seed = json.loads(json.dumps(policy))
    seed["rate_limits"] = {"requests_per_second": {a: 100000 for a in (
        "DescribeImageAttribute", "DescribeSnapshotAttribute", "CreateTags", "DescribeImages",
        "DescribeSnapshots", "ModifyImageAttribute")}}
    print(f"{name}: seeding the first night (no latency, raised rates)...", flush=True)
    first = run_sweeper(binary, w, seed, {}, f"target/bench-{name}-seed.log")
    print(f"{name}: seeded in {first['elapsed']:.0f} s: converged {first['report']['drift']['converged']}", flush=True)
    yesterday = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86400))
    for i in w.images.values():
        if "ami-share:converged-at" in i.tags:
            i.tags["ami-share:converged-at"] = yesterday
    w.calls.clear()
    w.throttled.clear()
    w.latency, w.throttling = latency, True


def scenario_b(binary: str, latency: float, images: int, snapshots: int, orphans: int) -> list[str]:
    print(f"b: steady night: {images} managed images, {snapshots} snapshots, nothing changed, "
          f"{latency * 1000:.0f} ms per call, throttling on", flush=True)
    w, orphan_ids, in_use = build_world(images, snapshots, orphans)
    # The first night, at no latency and with raised rates, records every fingerprint and marks
    # the orphans.
    seed_first_night("b", binary, w, POLICY, latency)
    out = run_sweeper(binary, w, POLICY, {}, "target/bench-b.log")
    return summarise("b", out, w, orphan_ids, in_use, images, expect_converged=0)


def scenario_k(binary: str, latency: float, images: int, accounts_list: list[int]) -> list[str]:
    """Issue 18 (c): the steady night of a 5,000-account organization in key_policy mode."""
    failures: list[str] = []
    root = "ou-ab12-00000001"
    ou_arn = f"arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/{root}"
    policy = {"kms_access": "key_policy", "sweeper": {"mode": "report"},
              "rules": [{"name": "golden", "match": {"name": "golden-*"}, "share_snapshots": False,
                         "share_with": {"organizational_units": [ou_arn]}}]}
    seen: dict[int, dict[str, int]] = {}
    for n_accounts in accounts_list:
        print(f"k: steady night, {images} images on one key, an OU tree of {n_accounts} active accounts, "
              f"key_policy, {latency * 1000:.0f} ms per call, EC2 and KMS throttling on", flush=True)
        w = standin.World()
        children = [f"ou-ab12-{100 + i:08d}" for i in range(10)]
        w.ous[root] = ([], children)
        counter = 0
        for c in children:
            accts = [f"3{counter + i:011d}" for i in range(n_accounts // 10 + 5)]
            counter += len(accts)
            w.suspended.update(accts[-5:])
            w.ous[c] = (accts, [])
        amazon_only = json.dumps({"ec2_attributes": {"allowed_images_settings": {
            "state": {"@@assign": "enabled"},
            "image_criteria": {"criteria_1": {"allowed_image_providers": {"@@assign": ["amazon"]}}}}}})
        w.declarative_policies = {a: amazon_only for c in children for a in w.ous[c][0][::10]}
        key = w.add_key("us-east-1", "alias/golden")
        w.key_policies[key] = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*",
             "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}}]})
        for i in range(images):
            sid, iid = f"snap-{i:017x}", f"ami-{i:017x}"
            w.add_snapshot(standin.Snapshot(sid, f"Created by CreateImage(i-0123456789abcdef0) for {iid}", kms_key_id=key))
            w.add_image(standin.Image(iid, f"golden-{i}", [sid], tags={"ami-share:managed": "golden"}))
        seed_first_night("k", binary, w, policy, latency)
        out = run_sweeper(binary, w, policy, {}, "target/bench-k.log")
        r = out["report"]
        d = r.get("drift", {})
        calls = dict(w.calls)
        seen[n_accounts] = calls
        # Issue 30: the consumers' Allowed AMIs are read once per account and night (each
        # account's EC2 declarative policy, after listing the OU tree); nothing else is per account.
        per_account = {k: v for k, v in calls.items() if k in ("kms:CreateGrant", "ModifySnapshotAttribute")}
        members = sum(len(a) for a, _ in w.ous.values()) - len(w.suspended)
        policies = calls.get("organizations:DescribeEffectivePolicy", 0)
        pace = members / 8.0  # 10 a second, the night's share 0.8
        print(f"k: {n_accounts} accounts: {out['elapsed']:.1f} s, peak RSS {out['peak_rss_mib']:.0f} MiB, "
              f"{sum(calls.values())} calls ({sum(w.throttled.values())} throttled, retried), per action: "
              f"{json.dumps(calls, sort_keys=True)}")
        print(f"k: consumers: {json.dumps(r.get('consumers', {}).get('per_rule'))}, not allowed "
              f"{r.get('consumers', {}).get('not_allowed_total')}, read {r.get('consumers', {}).get('accounts_read')}")
        print(f"k: drift: in sync {d.get('in_sync')}, audited {d.get('audited')}, converged {d.get('converged')}, "
              f"key policies checked {d.get('key_policies_checked')}, refused {d.get('key_policies_refused', [])}, "
              f"errors {r.get('errors_total')}")
        targets = [
            ("the invocation answered", out["kind"] == "response"),
            (f"within 180 s plus the consumers' reads at their pace ({pace:.0f} s)", out["elapsed"] <= 180 + pace * 1.1),
            ("every image in sync (none stale)", d.get("in_sync") == images and d.get("converged") == 0),
            ("no share call per account (CreateGrant, ModifySnapshotAttribute)", not per_account),
            (f"one Allowed AMIs read per active account ({policies} for {members})", policies == members),
            ("each account judged", sum(r.get("consumers", {}).get("per_rule", {}).get("golden", {}).values()) == members),
            ("the key's policy checked once", calls.get("kms:GetKeyPolicy") == 1 and d.get("key_policies_checked") == 1),
            ("no error left unretried", r.get("errors_total") == 0),
        ]
        for what, ok in targets:
            print(f"k:   {check(f'k {n_accounts}: {what}', ok, failures):6} {what}")
    if len(seen) > 1:
        # Apart from the Organizations reads (the OU tree's pages and one policy per account),
        # the night makes the same calls at every account count.
        counts = [{k: v for k, v in c.items() if not k.startswith("organizations:")} for c in seen.values()]
        same = all(c == counts[0] for c in counts)
        print(f"k:   {check('k: the same calls at every account count', same, failures):6} "
              f"the same calls at {', '.join(str(n) for n in seen)} accounts, Organizations reads apart")
    return failures


def summarise(name, out, w, orphan_ids, in_use, images, expect_converged, time_target=180) -> list[str]:
    failures: list[str] = []
    r = out["report"]
    if out["kind"] != "response":
        print(f"{name}: the invocation failed: {r}")
        return [f"{name}: invocation failed"]
    d, o = r["drift"], r["orphans"]
    calls = sum(w.calls.values())
    throttled = sum(w.throttled.values())
    marked_now = {s.id for s in w.snapshots.values() if "ami-share:orphaned-since" in s.tags}
    pages = sum(w.calls.get(a, 0) for a in ("DescribeSnapshots", "DescribeImages", "ListImagesInRecycleBin",
                                            "DescribeLaunchTemplates", "DescribeLaunchTemplateVersions"))
    audit_reads = d["audited"] * 2  # DescribeImageAttribute + DescribeSnapshotAttribute (1 snapshot each)
    record = w.calls.get("CreateTags", 0) + w.calls.get("DeleteTags", 0)
    print(f"{name}: {out['elapsed']:.1f} s, peak RSS {out['peak_rss_mib']:.0f} MiB, {calls} EC2 calls "
          f"({throttled} throttled by the stand-in, retried), per action: {json.dumps(w.calls, sort_keys=True)}")
    print(f"{name}: drift: in scope {d['images_in_scope']}, in sync {d['in_sync']}, converged {d['converged']}, "
          f"audited {d['audited']}, stale {d['stale']}, status {d['status']}; orphans found {o['orphans_found']}, "
          f"marked {o['marked']}, errors {r['errors_total']}")
    targets = [
        *([(f"within {time_target} s", out["elapsed"] <= time_target)] if time_target else []),
        ("drift complete", d["status"] == "complete"),
        ("images converged", d["converged"] == expect_converged),
        ("orphans found = ground truth", o["orphans_found"] == len(orphan_ids)),
        ("every orphan marked", marked_now == orphan_ids),
        ("no in-use snapshot marked or deleted", not (marked_now & in_use) and not (set(w.deleted) & in_use)),
        ("no error left unretried", r["errors_total"] == 0),
    ]
    if name == "b":
        targets.append(("the night's audit slice is ceil(in sync / 7)", d["audited"] == -(-d["in_sync"] // 7)))
        targets.append(("calls <= listing pages + audit slice + its tag calls",
                        calls <= pages + audit_reads + record))
    for what, ok in targets:
        print(f"{name}:   {check(f'{name}: {what}', ok, failures):6} {what}")
    return failures


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/nightly-sweeper")
    ap.add_argument("--scenario", default="all", choices=["a", "b", "t", "j", "d", "k", "all"])
    ap.add_argument("--accounts", type=int, nargs="+", default=[50, 5000], help="account counts (k)")
    ap.add_argument("--deadline", type=float, default=900, help="seconds each invocation gets (j, d)")
    ap.add_argument("--max-rounds", type=int, default=24,
                    help="stop the continued night after this many invocations (d projects the rest)")
    ap.add_argument("--delete-rate", type=float, default=5.0,
                    help="DeleteSnapshot sustained quota (d): EC2's documented 5/s, or a raised one")
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--images", type=int)
    ap.add_argument("--snapshots", type=int, default=100_000)
    ap.add_argument("--orphans", type=int, default=5_000)
    a = ap.parse_args()
    failures: list[str] = []
    if a.scenario in ("a", "all"):
        failures += scenario_a(a.binary, a.latency, a.images or 1_000, a.snapshots, a.orphans)
    if a.scenario == "j":
        failures += scenario_j(a.binary, a.latency, a.images or 10_000, a.snapshots, a.orphans, a.deadline)
    if a.scenario == "d":
        failures += scenario_d(a.binary, a.latency, a.images or 1_000, a.snapshots, a.orphans, a.deadline,
                               a.delete_rate, a.max_rounds)
    if a.scenario == "k":
        failures += scenario_k(a.binary, a.latency, a.images or 10_000, a.accounts)
    if a.scenario == "t":
        failures += scenario_t(a.binary, a.latency, a.images or 1_000, a.snapshots, a.orphans)
    if a.scenario in ("b", "all"):
        failures += scenario_b(a.binary, a.latency, a.images or 10_000, a.snapshots, a.orphans)
    if failures:
        print("targets missed: " + "; ".join(failures))
        return 1
    print("every target met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
