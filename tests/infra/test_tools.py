"""cfn-lint, `sam validate --lint` and checkov on the templates, offline.

Each tool also gets a negative control (a deliberately broken copy of the template must fail),
so a tool that silently checks nothing cannot make these tests pass.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

import cfn
from conftest import (
    CFN_LINT, CHECKOV, ORG_ROLE_TEMPLATE, REPO, SAM, TARGET_ROLE_TEMPLATE, TEMPLATE, offline_env, require,
)

# IAM checks checkov can only run once the policy's Fn::If is resolved (see test_checkov_iam_*).
CLOUDSPLAINING_CHECKS = {"CKV_AWS_107", "CKV_AWS_108", "CKV_AWS_109", "CKV_AWS_110", "CKV_AWS_111"}


def run(cmd, tmp_path, **kw):
    return subprocess.run(
        [str(c) for c in cmd], cwd=REPO, env=offline_env(tmp_path), capture_output=True, text=True,
        timeout=300, **kw,
    )


def broken_copy(tmp_path, old: str, new: str):
    text = TEMPLATE.read_text()
    assert text.count(old) == 1, old
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace(old, new))
    return path


# --- cfn-lint -----------------------------------------------------------------------------------


def test_cfn_lint_is_clean(tmp_path):
    r = run([require(CFN_LINT), "--format", "parseable", TEMPLATE, ORG_ROLE_TEMPLATE, TARGET_ROLE_TEMPLATE], tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_cfn_lint_catches_a_bad_function_property(tmp_path):
    # Lambda's timeout limit is 900 s: cfn-lint sees it through the SAM transform.
    bad = broken_copy(tmp_path, "Timeout: 890", "Timeout: 9000")
    r = run([require(CFN_LINT), "--format", "parseable", bad], tmp_path)
    assert r.returncode & 2, r.stdout + r.stderr  # 2 = errors
    assert "9000" in r.stdout


# --- sam validate ---------------------------------------------------------------------------------


def test_sam_validate_lint(tmp_path):
    r = run([require(SAM), "validate", "--lint", "--template-file", TEMPLATE, "--region", "us-east-1"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "is a valid SAM Template" in r.stdout + r.stderr


def test_sam_validate_translates_the_template(tmp_path):
    # Without --lint, sam runs the SAM translator itself (EventBridgeRule, ScheduleV2, EventInvokeConfig).
    r = run([require(SAM), "validate", "--template-file", TEMPLATE, "--region", "us-east-1"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_sam_validate_lint_catches_a_broken_template(tmp_path):
    bad = broken_copy(tmp_path, "Timeout: 890", "Timeout: 9000")
    r = run([require(SAM), "validate", "--lint", "--template-file", bad, "--region", "us-east-1"], tmp_path)
    assert r.returncode != 0
    assert "9000" in r.stdout + r.stderr


# --- checkov --------------------------------------------------------------------------------------


def checkov(paths, tmp_path) -> dict:
    cmd = [require(CHECKOV), "--framework", "cloudformation", "--skip-download", "--output", "json"]
    for p in paths:
        cmd += ["-f", p]
    r = run(cmd, tmp_path)
    assert r.returncode in (0, 1), r.stderr  # 1 = findings; anything else: checkov itself failed
    report = json.loads(r.stdout) if r.stdout.strip() else {}
    return report if isinstance(report, dict) else {"results": {}, "summary": {}}


def results(report, kind):
    return report.get("results", {}).get(kind, [])


def skips_in(tpl: dict) -> dict[tuple[str, str], str]:
    out = {}
    for logical_id, res in tpl["Resources"].items():
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
            out[(logical_id, skip["id"])] = skip.get("comment", "")
    return out


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("checkov")
    # checkov needs the whole set in one run: one report, ~4 s
    variants = {}
    tpl = cfn.load(TEMPLATE)
    for has_role in (False, True):
        # The IAM checks (cloudsplaining) give up on a policy with an Fn::If statement (result
        # UNKNOWN, shown as nothing), so scan each branch of HasOrgRole resolved as well.
        resolved = json.loads(json.dumps(tpl))
        for res in resolved["Resources"].values():
            if res["Type"] == "AWS::IAM::Role":
                res["Properties"] = cfn.resolve_ifs(
                    res["Properties"], {"HasOrgRole": has_role, "HasEventBus": has_role, "HasTargetRole": has_role})
        path = tmp / f"template-org-role-{str(has_role).lower()}.json"
        path.write_text(json.dumps(resolved, indent=1))
        variants[has_role] = path
    copy = tmp / "template.yaml"
    shutil.copy(TEMPLATE, copy)
    org_copy = tmp / "org-read-role.yaml"
    shutil.copy(ORG_ROLE_TEMPLATE, org_copy)
    target_copy = tmp / "target-account-role.yaml"
    shutil.copy(TARGET_ROLE_TEMPLATE, target_copy)
    report = checkov([copy, org_copy, target_copy, *variants.values()], tmp)
    return report, copy, org_copy, variants


def test_checkov_has_no_findings(scan):
    report, *_ = scan
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in results(report, "failed_checks")]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    templates = [cfn.load(TEMPLATE)] * 3 + [cfn.load(ORG_ROLE_TEMPLATE), cfn.load(TARGET_ROLE_TEMPLATE)]
    assert report["summary"]["resource_count"] == sum(len(t["Resources"]) for t in templates)


def test_checkov_iam_checks_really_ran_on_every_role(scan):
    report, copy, org_copy, variants = scan
    passed = {(c["file_path"].rsplit("/", 1)[-1], c["resource"], c["check_id"]) for c in results(report, "passed_checks")}
    roles = [k for k, r in cfn.load(TEMPLATE)["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    for path in variants.values():
        for role in roles:
            for check in CLOUDSPLAINING_CHECKS | {"CKV_AWS_60", "CKV_AWS_61", "CKV_AWS_62", "CKV_AWS_63"}:
                assert (path.name, f"AWS::IAM::Role.{role}", check) in passed
    for check in CLOUDSPLAINING_CHECKS:
        assert (org_copy.name, "AWS::IAM::Role.OrganizationsReadRole", check) in passed
        assert ("target-account-role.yaml", "AWS::IAM::Role.TargetAccountRole", check) in passed


def test_every_checkov_skip_is_justified_and_needed(scan, tmp_path):
    report, copy, *_ = scan
    declared = skips_in(cfn.load(TEMPLATE))
    for (logical_id, check), comment in declared.items():
        assert len(comment.split()) >= 5, f"{logical_id} skips {check} without a justification"
    skipped = {
        (c["resource"].split(".", 1)[1], c["check_id"])
        for c in results(report, "skipped_checks")
        if c["file_path"].endswith("/" + copy.name)
    }
    assert skipped == set(declared)
    # Without the skip annotations, exactly those checks fail: none is stale, checkov really looks.
    stripped = yaml.safe_load(json.dumps(cfn.load(TEMPLATE)))
    for res in stripped["Resources"].values():
        res.get("Metadata", {}).pop("checkov", None)
    path = tmp_path / "no-skips.json"
    path.write_text(json.dumps(stripped))
    failed = {(c["resource"].split(".", 1)[1], c["check_id"]) for c in results(checkov([path], tmp_path), "failed_checks")}
    assert failed == set(declared)


def test_the_bench_stand_in_signs_marks_as_the_sweeper_does():
    # shared/src/marks.rs `the_signature_is_pinned` pins the same value on the Rust side.
    import sys
    sys.path.insert(0, str(REPO / "bench"))
    import standin
    assert standin.signed_mark("orphaned-since", "snap-1", "2026-12-01", b"fixed-secret") == (
        "2026-12-01/4531f7bc32e4459e3a9b887278fc2366")
