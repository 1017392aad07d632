"""The local run (scripts/demo.py) end to end, so it cannot rot.

Slow: it starts moto, builds (first time only: a few minutes) and serves the three Lambda
binaries with `cargo lambda watch`, and invokes them; about 15-60 s once the binaries are built.
Runs in the normal suite (scripts/test.sh); skip it locally with `-k "not slow_demo"`.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

DEMO = REPO / "scripts" / "demo.py"


def test_slow_demo_runs_the_whole_product_and_every_check_passes():
    r = subprocess.run(
        [sys.executable, str(DEMO)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,  # the first build of the debug binaries may take minutes
    )
    out = r.stdout
    assert r.returncode == 0, f"demo failed ({r.returncode}):\n{out[-6000:]}\n{r.stderr[-4000:]}"
    assert "DEMO OK: every step did what it claims" in out
    assert "[FAIL]" not in out
    # the steps ran through the runtime interface and answered
    assert "on-image-available (golden) answered" in out
    assert "on-image-available (scratch) answered" in out and "outcome=skipped" in out
    assert "on-copy-complete (copy-us-west-2) answered" in out
    assert "on-copy-complete (copy-eu-west-1) answered" in out
    assert "[ok] golden image: outcome shared" in out
    assert "[ok] copies started in us-west-2, eu-west-1" in out
    for where in ("golden in us-east-1", "golden copy in us-west-2", "golden copy in eu-west-1"):
        assert f"[ok] {where}: launch permission for OU workloads" in out
        assert f"[ok] {where}: snapshot shared with 6 accounts" in out
        assert f"[ok] {where}: grants on the" in out
        assert f"[ok] {where}: suspended account" in out
    assert "[ok] scratch in us-east-1: untouched" in out
    # the default run reads a policy over 20 KB from a file, as the stack's policy layer provides it
    assert "the functions read it from " in out and "policy.json: 51 rules" in out
    assert "is over 20 KB" in out
    # the sweeper's report run marks the orphan, the delete run reclaims it and keeps the rest
    assert "[ok] sweeper (report): the whole sweep ran" in out
    assert "[ok] sweeper (report): the orphan is marked ami-share:orphaned-since" in out
    assert "[ok] sweeper (report): nothing deleted" in out
    assert "[ok] sweeper (delete): the orphan is gone from EC2" in out
    assert "used only by a launch template, kept" in out
    assert "[ok] sweeper (delete): every live image's snapshot kept" in out
    # the newest image published per Region, shared through RAM, resolved by a consumer account
    for region in ("us-east-1", "us-west-2", "eu-west-1"):
        assert f"[ok] /golden/demo/latest in {region}: one RAM share with the rule's accounts and OU" in out
        assert f"parameter/golden/demo/latest to ami-" in out
        assert f"[ok] account 999988887777, outside the rule, cannot read it in {region}" in out
    assert '[ok] one "AMI Distributed" event per Region' in out
    # retirement: report mode says what it would do; act mode takes the stages over four nights
    assert "[ok] retirement (report mode): would deprecate" in out
    assert "[ok] retirement: the newest legacy image is never selected" in out
    assert "[ok] retirement night 2: disabling is due; a consumer usage report is requested" in out
    assert "[ok] retirement night 4: " in out and "deregistered" in out
    # the table and the summaries
    assert "stage  | image" in out
    for row in ("before | golden ", "after  | golden copy | us-west-2", "after  | golden copy | eu-west-1"):
        assert row in out
    assert '"function": "on-copy-complete"' in out
    # the operator CLI (issue 29): status and plan against moto; the night does what the plan said
    assert "served everywhere, exit 0" in out and "[ok] status shows its progress on stderr" in out
    assert "its copies not shared yet elsewhere (not-shared), exit 1" in out
    assert "[ok] plan: nothing was written" in out
    assert "[ok] the night removed exactly the launch permissions the plan listed (2 images)" in out
    assert "[ok] the night deleted exactly the orphans the plan listed" in out
    assert "is role-not-assumable, exit 1" in out
