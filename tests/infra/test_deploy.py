"""scripts/deploy.sh: one build, one deploy per Region, same stack and policy everywhere.

`sam` is replaced by a recorder (SAM=...), so these tests also prove that --dry-run runs nothing
and that a real run runs exactly what --dry-run printed.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import textwrap

import pytest

from conftest import REPO, SAM_PYTHON, TEMPLATE, require

DEPLOY = REPO / "scripts" / "deploy.sh"
REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]
# Spaces, quotes, an apostrophe, a backslash and non-ASCII: everything sam's
# --parameter-overrides parsing could mangle.
POLICY = {
    "rules": [
        {
            "name": "golden-images",
            "match": {"name": "golden-*", "tags": {"Share": "org's \"best\" \\ images ü"}},
            "share_with": {"accounts": ["111122223333"],
                           "organizational_units": ["arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456"]},
            "copy_to": [{"region": "us-west-2", "kms_key_id": "arn:aws:kms:us-west-2:123456789012:alias/ami-share"}],
        }
    ],
    "allow_public": False,
    "sweeper": {"mode": "report", "min_age_days": 7, "grace_days": 7},
}
ORG_ROLE = "arn:aws:iam::123456789012:role/ami-share-organizations-read"


@pytest.fixture
def env(tmp_path):
    fake = tmp_path / "fake-sam"
    fake.write_text(textwrap.dedent("""\
        #!/usr/bin/env python3
        import json, os, sys
        with open(os.environ["FAKE_SAM_LOG"], "a") as f:
            f.write(json.dumps(sys.argv[1:]) + "\\n")
        """))
    fake.chmod(0o755)
    cli = tmp_path / "fake-ami-share"
    cli.write_text(textwrap.dedent("""\
        #!/usr/bin/env python3
        import json, os, sys
        with open(os.environ["FAKE_PLAN_LOG"], "a") as f:
            f.write(json.dumps(sys.argv[1:]) + "\\n")
        print("us-east-1: the next night would make 3 writes")
        """))
    cli.chmod(0o755)
    e = dict(os.environ, SAM=str(fake), FAKE_SAM_LOG=str(tmp_path / "sam-calls.log"),
             AMI_SHARE_CLI=str(cli), FAKE_PLAN_LOG=str(tmp_path / "plan-calls.log"))
    return e


@pytest.fixture
def policy_file(tmp_path):
    p = tmp_path / "policy.json"
    p.write_text(json.dumps(POLICY, indent=2, ensure_ascii=False))
    return p


def deploy(env, *args):
    return subprocess.run([str(DEPLOY), *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def sam_calls(env) -> list[list[str]]:
    log = env["FAKE_SAM_LOG"]
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [json.loads(line) for line in f]


def plan_calls(env) -> list[list[str]]:
    log = env["FAKE_PLAN_LOG"]
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [json.loads(line) for line in f]


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def overrides(argv: list[str]) -> list[str]:
    return argv[argv.index("--parameter-overrides") + 1:]


def test_dry_run_prints_one_build_and_one_deploy_per_region(env, policy_file):
    r = deploy(env, "--regions", " ".join(REGIONS), "--policy-file", policy_file, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert sam_calls(env) == []  # ran nothing
    lines = [shlex.split(line) for line in r.stdout.splitlines()]
    assert len(lines) == 1 + len(REGIONS)
    build, *deploys = lines
    assert build[0] == env["SAM"] and build[1] == "build"
    assert option(build, "--template-file") == str(TEMPLATE)
    assert overrides(build) == ["Architecture=arm64"]
    assert [option(d, "--region") for d in deploys] == REGIONS
    for d in deploys:
        assert d[:2] == [env["SAM"], "deploy"]
        assert option(d, "--template-file") == str(REPO / ".aws-sam" / "build" / "template.yaml")
        assert option(d, "--stack-name") == "ami-share"
        assert option(d, "--capabilities") == "CAPABILITY_IAM"
        assert "--resolve-s3" in d and "--no-fail-on-empty-changeset" in d and "--no-confirm-changeset" in d
        assert overrides(d) == overrides(deploys[0])  # same policy and parameters in every Region
        assert not any(o.startswith("OrgRoleArn=") for o in overrides(d))


def test_reading_allowed_amis_through_the_role_gives_the_stacks_its_name(env, tmp_path):
    """allowed_amis.read_through_role without copy_into: the functions assume the role in the
    consumers (its read-only StackSet is deployed as docs/deploy.md says), so the stacks get
    TargetAccountRoleName; without it they do not."""
    for read, expected in [(True, True), (False, False)]:
        p = tmp_path / f"policy-{read}.json"
        p.write_text(json.dumps(dict(POLICY, allowed_amis={"read_through_role": read})))
        r = deploy(env, "--regions", "us-east-1", "--policy-file", p, "--dry-run", "--no-plan")
        assert r.returncode == 0, r.stderr
        _, *deploys = [shlex.split(line) for line in r.stdout.splitlines()]
        has = any(o == "TargetAccountRoleName=ami-share-target" for d in deploys for o in overrides(d))
        assert has is expected, r.stdout


def test_options_and_extra_sam_arguments(env, policy_file):
    r = deploy(env, "--regions", "us-east-1 us-west-2 us-east-1", "--policy-file", policy_file,
               "--org-role-arn", ORG_ROLE, "--stack-name", "images-prod", "--architecture", "x86_64",
               "--dry-run", "--profile", "prod", "--parameter-overrides", "AlarmEmail=ops@example.com", "LogLevel=DEBUG",
               "--tags", "team=platform")
    assert r.returncode == 0, r.stderr
    build, *deploys = [shlex.split(line) for line in r.stdout.splitlines()]
    assert overrides(build) == ["Architecture=x86_64"]
    assert [option(d, "--region") for d in deploys] == ["us-east-1", "us-west-2"]  # duplicates dropped
    for d in deploys:
        assert option(d, "--stack-name") == "images-prod"
        assert option(d, "--profile") == "prod" and option(d, "--tags") == "team=platform"
        o = overrides(d)
        assert o[0] == "Architecture=x86_64"
        assert not any(x.startswith("Policy=") for x in o), "the policy travels in the layer"
        assert o[1:] == [f"OrgRoleArn={ORG_ROLE}", "AlarmEmail=ops@example.com", "LogLevel=DEBUG"]


def test_a_real_run_runs_exactly_what_the_dry_run_printed(env, policy_file):
    args = ["--regions", " ".join(REGIONS), "--policy-file", policy_file, "--org-role-arn", ORG_ROLE]
    printed = [shlex.split(line) for line in deploy(env, *args, "--dry-run").stdout.splitlines()]
    r = deploy(env, *args)
    assert r.returncode == 0, r.stderr
    assert sam_calls(env) == [argv[1:] for argv in printed]


LAYER_FILE = REPO / "policy-layer" / "ami-share" / "policy.json"


def big_policy() -> dict:
    """50 rules with OU ARNs: about 20 KB, five times Lambda's 4 KB of environment."""
    rules = [
        {
            "name": f"team-{i:02}",
            "match": {"name": f"team-{i:02}-golden-*", "tags": {"Team": f"team-{i:02}"}},
            "share_with": {
                "accounts": [f"3000000000{i:02}"],
                "organizational_units": [
                    f"arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-{k}-{i:08}" for k in ("ab12", "cd34", "ef56")
                ],
            },
            "copy_to": [{"region": "us-west-2", "kms_key_id": "arn:aws:kms:us-west-2:123456789012:alias/ami-share"}],
        }
        for i in range(50)
    ]
    return {"rules": rules}


def test_a_20_kb_policy_is_validated_and_deployed_as_the_policy_layer(env, tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(big_policy(), indent=1))
    assert path.stat().st_size > 20_000
    before = LAYER_FILE.read_bytes() if LAYER_FILE.exists() else None
    try:
        r = deploy(env, "--regions", "us-east-1 us-west-2", "--policy-file", path)
        assert r.returncode == 0, r.stderr
        assert "a valid policy (50 rules" in r.stderr
        # the layer holds exactly the policy; the template's layer folder is where sam builds it from
        assert json.loads(LAYER_FILE.read_text()) == big_policy()
        calls = sam_calls(env)
        assert [c[0] for c in calls] == ["build", "deploy", "deploy"]
        assert not any(o.startswith("Policy=") for c in calls[1:] for o in overrides(c))
    finally:
        if before is None:
            LAYER_FILE.unlink(missing_ok=True)
        else:
            LAYER_FILE.write_bytes(before)


def test_the_template_reads_the_policy_from_the_layer_unless_given_inline(template):
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["AMI_SHARE_POLICY_FILE"] == {"Fn::If": ["PolicyInLayer", "/opt/ami-share/policy.json", {"Ref": "AWS::NoValue"}]}
    assert env["AMI_SHARE_POLICY"] == {"Fn::If": ["PolicyInLayer", {"Ref": "AWS::NoValue"}, {"Ref": "Policy"}]}
    assert template["Globals"]["Function"]["Layers"] == {"Fn::If": ["PolicyInLayer", [{"Ref": "PolicyLayer"}], {"Ref": "AWS::NoValue"}]}
    layer = template["Resources"]["PolicyLayer"]
    assert layer["Condition"] == "PolicyInLayer"
    assert layer["Properties"]["ContentUri"] == "policy-layer/"
    assert (REPO / "policy-layer").is_dir()
    assert template["Conditions"]["PolicyInLayer"] == {"Fn::Equals": [{"Ref": "Policy"}, ""]}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--regions", "us-east-1 us-east-9x"], "'us-east-9x' is not an AWS Region code"),
        (["--regions", "US-EAST-1"], "'US-EAST-1' is not an AWS Region code"),
        (["--regions", "us_east_1"], "'us_east_1' is not an AWS Region code"),
        (["--regions", "   "], "--regions is empty"),
        ([], "--regions is required"),
        (["--regions", "us-east-1", "--org-role-arn", "arn:aws:iam::123:role/x"], "is not an IAM role ARN"),
        (["--regions", "us-east-1", "--architecture", "arm"], "--architecture must be arm64 or x86_64"),
        (["--regions", "us-east-1", "--stack-name", "1bad_name"], "is not a valid stack name"),
        (["--regions", "us-east-1", "--region", "us-west-2"], "--region is set by this script"),
    ],
)
def test_bad_arguments_fail_clearly_and_run_nothing(env, policy_file, args, message):
    for dry in ([], ["--dry-run"]):
        r = deploy(env, *args, "--policy-file", policy_file, *dry)
        assert r.returncode != 0 and r.stdout == ""
        assert message in r.stderr
    assert sam_calls(env) == []


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        ("{not json", "would be refused by the functions"),
        ("[1, 2]", "would be refused by the functions"),
        # the functions' own validation: every problem, with its JSON path
        ('{"rules": [{"name": "a", "match": {}, "share_with": {"accounts": ["12"]}}], "colour": "blue"}',
         "rules[0].share_with.accounts[0]"),
    ],
)
def test_bad_policy_file_fails_clearly_and_runs_nothing(env, tmp_path, content, message):
    path = tmp_path / "policy.json"
    if content is not None:
        path.write_text(content)
    for dry in ([], ["--dry-run"]):
        r = deploy(env, "--regions", " ".join(REGIONS), "--policy-file", path, *dry)
        assert r.returncode != 0 and r.stdout == ""
        assert message in r.stderr and "policy" in r.stderr
    assert sam_calls(env) == []


def test_missing_policy_file_option(env):
    r = deploy(env, "--regions", "us-east-1", "--dry-run")
    assert r.returncode != 0 and "--policy-file is required" in r.stderr


def test_a_missing_sam_is_reported_before_anything_runs(env, policy_file):
    env = dict(env, SAM=str(REPO / "no-such-sam"))
    r = deploy(env, "--regions", "us-east-1", "--policy-file", policy_file)
    assert r.returncode != 0 and "not found: run scripts/setup.sh" in r.stderr


def test_help(env):
    r = deploy(env, "--help")
    assert r.returncode == 0 and "--policy-file" in r.stdout and "--dry-run" in r.stdout
    # the whole header, down to the plan's paragraph and AMI_SHARE_CLI
    assert "--no-plan" in r.stdout and "AMI_SHARE_CLI" in r.stdout and "set -euo" not in r.stdout


@pytest.fixture
def layer():
    """The policy layer's copy of the last deployed policy, restored after the test."""
    before = LAYER_FILE.read_bytes() if LAYER_FILE.exists() else None
    yield LAYER_FILE
    if before is None:
        LAYER_FILE.unlink(missing_ok=True)
    else:
        LAYER_FILE.write_bytes(before)


def test_a_changed_policy_is_planned_in_every_region_before_anything_is_deployed(env, policy_file, layer):
    layer.parent.mkdir(parents=True, exist_ok=True)
    layer.write_text(json.dumps({"rules": []}))
    r = deploy(env, "--regions", "us-east-1 eu-west-1", "--policy-file", policy_file, "--profile", "prod")
    assert r.returncode == 0, r.stderr
    # us-west-2 joins: the policy copies there.
    assert plan_calls(env) == [
        ["plan", "--policy", str(policy_file), "--region", reg, "--profile", "prod"]
        for reg in ("us-east-1", "eu-west-1", "us-west-2")
    ]
    assert "the next night would make 3 writes" in r.stderr
    assert r.stderr.index("what the next night would do in us-east-1") < r.stderr.index("building once")


def test_no_plan_skips_it_and_an_unchanged_policy_is_not_planned(env, policy_file, layer):
    layer.parent.mkdir(parents=True, exist_ok=True)
    layer.write_text(json.dumps({"rules": []}))
    r = deploy(env, "--regions", "us-east-1", "--policy-file", policy_file, "--no-plan")
    assert r.returncode == 0, r.stderr
    assert plan_calls(env) == []
    # That deployment made the layer the policy: the next one has nothing to plan.
    r = deploy(env, "--regions", "us-east-1", "--policy-file", policy_file)
    assert r.returncode == 0, r.stderr
    assert plan_calls(env) == []
    assert "no plan" in r.stderr


def test_a_plan_that_fails_is_reported_and_the_deployment_goes_on(env, policy_file, layer, tmp_path):
    layer.unlink(missing_ok=True)
    failing = tmp_path / "failing-cli"
    failing.write_text("#!/bin/sh\necho 'ami-share: no credentials' >&2\nexit 2\n")
    failing.chmod(0o755)
    env = dict(env, AMI_SHARE_CLI=str(failing))
    r = deploy(env, "--regions", "us-east-1", "--policy-file", policy_file)
    assert r.returncode == 0, r.stderr
    assert "could not be computed completely" in r.stderr
    assert [c[0] for c in sam_calls(env)] == ["build", "deploy", "deploy"]


def test_a_dry_run_shows_the_plan_command_and_runs_nothing(env, policy_file, layer):
    layer.unlink(missing_ok=True)
    r = deploy(env, "--regions", "us-east-1", "--policy-file", policy_file, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert plan_calls(env) == []
    assert f"would show the plan: ami-share plan --policy {policy_file} --region us-east-1" in r.stderr
