"""The sweeper benchmark: the real release `nightly-sweeper` binary, served through a local
Lambda Runtime API, against the paginating, latency-injecting, throttling stand-in
(bench/standin.py). Prints one line of figures per scenario and exits non-zero when a target
is missed.

    python3 bench/sweeper_bench.py --binary target/release/nightly-sweeper [--scenario a|b|all]
        [--latency 0.1] [--images N] [--snapshots N] [--orphans N]

Scenarios (issue: reconciliation part 1), 100 ms per call, EC2 throttling on:
  a  first night: 1,000 managed images without a fingerprint, 100,000 snapshots of which
     5,000 orphans, report mode: every image converged and every orphan marked, <= 180 s.
  b  steady night: 10,000 managed images, 100,000 snapshots, nothing changed (a first night
     already recorded the fingerprints, seeded at no latency): <= 180 s, and calls <= listing
     pages + the audit slice's reads + the tag calls that record it.
Every scenario: 0 in-use snapshots deleted or marked, orphans found = ground truth, no
throttling error left unretried (the report's error count is 0).
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
        runtime = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

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
                    while not runtime.pending:
                        runtime.cond.wait()
                    rid, payload = runtime.pending.pop(0)
                deadline = int((time.time() + 900) * 1000)
                self.send(200, payload, {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": rid,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:nightly-sweeper",
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                })

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                parts = self.path.split("/")
                kind = parts[-1]
                with runtime.cond:
                    if kind in ("response", "error") and len(parts) >= 2:
                        runtime.results[parts[-2]] = (kind, body)
                    else:
                        runtime.results["init"] = (kind, body)
                    runtime.cond.notify_all()
                self.send(202, b"{}")

        self.server = standin.QuietServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, payload: dict, timeout: float = 900) -> tuple[str, bytes]:
        rid = str(uuid.uuid4())
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


def run_sweeper(binary: str, world: standin.World, policy: dict, payload: dict, log_path: str) -> dict:
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
            kind, body = rt.invoke(payload)
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
    return summarise("a", out, w, orphan_ids, in_use, images, expect_converged=images)


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


def scenario_b(binary: str, latency: float, images: int, snapshots: int, orphans: int) -> list[str]:
    print(f"b: steady night: {images} managed images, {snapshots} snapshots, nothing changed, "
          f"{latency * 1000:.0f} ms per call, throttling on", flush=True)
    w, orphan_ids, in_use = build_world(images, snapshots, orphans)
    # The first night, at no latency and with raised rates, records every fingerprint and marks
    # the orphans.
    seed_policy = json.loads(json.dumps(POLICY))
    seed_policy["rate_limits"] = {"requests_per_second": {a: 100000 for a in (
        "DescribeImageAttribute", "DescribeSnapshotAttribute", "CreateTags", "DescribeImages",
        "DescribeSnapshots")}}
    print("b: seeding the first night (no latency, raised rates)...", flush=True)
    seed = run_sweeper(binary, w, seed_policy, {}, "target/bench-b-seed.log")
    print(f"b: seeded in {seed['elapsed']:.0f} s", flush=True)
    w.calls.clear()
    w.throttled.clear()
    w.latency, w.throttling = latency, True
    out = run_sweeper(binary, w, POLICY, {}, "target/bench-b.log")
    return summarise("b", out, w, orphan_ids, in_use, images, expect_converged=0)


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
        targets.append(("calls <= listing pages + audit slice + its tag calls",
                        calls <= pages + audit_reads + record))
    for what, ok in targets:
        print(f"{name}:   {check(f'{name}: {what}', ok, failures):6} {what}")
    return failures


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/nightly-sweeper")
    ap.add_argument("--scenario", default="all", choices=["a", "b", "t", "all"])
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--images", type=int)
    ap.add_argument("--snapshots", type=int, default=100_000)
    ap.add_argument("--orphans", type=int, default=5_000)
    a = ap.parse_args()
    failures: list[str] = []
    if a.scenario in ("a", "all"):
        failures += scenario_a(a.binary, a.latency, a.images or 1_000, a.snapshots, a.orphans)
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
