"""scripts/deploy.sh with copy_into: the whole installation from one command.

The stack in every build Region and every Region the policy copies to; the organization read
role in the management account (with --management-account); the target-account role through a
StackSet with service-managed permissions and automatic deployment to the policy's OUs, and a
second one without automatic deployment for its plain accounts (through the root, filtered to
them). `sam` and `aws` are recorders (SAM=..., AWS=...),
so these tests pin every operation, prove --dry-run runs nothing and that a real run runs
exactly what --dry-run printed.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import textwrap

import pytest

from conftest import REPO

DEPLOY = REPO / "scripts" / "deploy.sh"
OU = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456"
OU2 = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-9876zyxw"
PUBLISHER = "444455556666"
MANAGEMENT = "123456789012"
POLICY = {
    "rules": [
        {
            "name": "golden",
            "match": {"name": "golden-*"},
            "share_with": {"organizational_units": [OU2]},
            "copy_to": [{"region": "us-west-2"}],
            "copy_into": {"accounts": ["111122223333", "777788889999"], "organizational_units": [OU],
                          "regions": [{"region": "eu-west-1", "kms_key_id": "alias/consumer-ami"}]},
            "publish": {"parameter": "/golden/al2023/latest", "in_target_accounts": True},
        }
    ],
}


@pytest.fixture
def env(tmp_path):
    env = dict(os.environ)
    for tool in ("sam", "aws"):
        fake = tmp_path / f"fake-{tool}"
        fake.write_text(textwrap.dedent(f"""\
            #!/usr/bin/env python3
            import json, os, sys
            args = sys.argv[1:]
            if args[:2] == ["cloudformation", "describe-stack-set"]:
                sys.exit(0 if os.environ.get("FAKE_STACKSET_EXISTS") else 255)
            with open(os.environ["FAKE_LOG"], "a") as f:
                f.write(json.dumps(["{tool}", *args]) + "\\n")
            """))
        fake.chmod(0o755)
        env[tool.upper()] = str(fake)
    env["FAKE_LOG"] = str(tmp_path / "calls.log")
    return env


@pytest.fixture
def policy_file(tmp_path):
    p = tmp_path / "policy.json"
    p.write_text(json.dumps(POLICY))
    return p


def deploy(env, *args):
    return subprocess.run([str(DEPLOY), *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)


def calls(env) -> list[list[str]]:
    if not os.path.exists(env["FAKE_LOG"]):
        return []
    with open(env["FAKE_LOG"]) as f:
        return [json.loads(line) for line in f]


def option(argv, name):
    return argv[argv.index(name) + 1]


ARGS = ["--regions", "us-east-1", "--publisher-account", PUBLISHER, "--management-account", MANAGEMENT,
        "--management-profile", "org-admin"]


def printed(env, policy_file, *extra):
    r = deploy(env, *ARGS, "--policy-file", policy_file, *extra, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert calls(env) == []  # ran nothing
    return [shlex.split(line) for line in r.stdout.splitlines()]


def test_one_command_installs_every_region_the_org_read_role_and_the_target_role_stack_set(env, policy_file):
    org_role, build, east, west, set_ous, by_ou, set_listed, by_account = printed(env, policy_file)
    aws, sam = env["AWS"], env["SAM"]

    # The organization read role, in the management account, trusting the publisher.
    assert org_role[:3] == [aws, "cloudformation", "deploy"]
    assert option(org_role, "--template-file") == str(REPO / "templates" / "org-read-role.yaml")
    assert option(org_role, "--profile") == "org-admin"
    assert "OrganizationId=o-a1b2c3d4e5" in org_role and f"TrustedAccountIds={PUBLISHER}" in org_role

    # The stack in the build Region and the Region the policy copies to, with both roles.
    assert build[:2] == [sam, "build"]
    assert [option(d, "--region") for d in (east, west)] == ["us-east-1", "us-west-2"]
    for d in (east, west):
        o = d[d.index("--parameter-overrides") + 1:]
        assert f"OrgRoleArn=arn:aws:iam::{MANAGEMENT}:role/ami-share-organizations-read" in o
        assert "TargetAccountRoleName=ami-share-target" in o

    # The target-account role: two service-managed StackSets of the same template.
    for stack_set in (set_ous, set_listed):
        assert stack_set[:3] == [aws, "cloudformation", "create-stack-set"]
        assert option(stack_set, "--template-body") == f"file://{REPO / 'templates' / 'target-account-role.yaml'}"
        assert option(stack_set, "--permission-model") == "SERVICE_MANAGED"
        assert option(stack_set, "--capabilities") == "CAPABILITY_NAMED_IAM"
        params = stack_set[stack_set.index("--parameters") + 1:stack_set.index("--parameters") + 5]
        assert params == [
            "ParameterKey=RoleName,ParameterValue=ami-share-target",
            f"ParameterKey=PublisherAccountId,ParameterValue={PUBLISHER}",
            "ParameterKey=OrganizationId,ParameterValue=o-a1b2c3d4e5",
            "ParameterKey=ParameterPathPrefix,ParameterValue=/golden/",
        ]
    # copy_into's OUs: automatic deployment, so accounts that join the OU get the role.
    assert option(set_ous, "--stack-set-name") == "ami-share-target-accounts"
    assert option(set_ous, "--auto-deployment") == "Enabled=true,RetainStacksOnAccountRemoval=false"
    # copy_into's plain accounts: no automatic deployment (issue 25), so an account that joins
    # the organization later never gets the role through the root they are reached by.
    assert option(set_listed, "--stack-set-name") == "ami-share-target-accounts-listed"
    assert option(set_listed, "--auto-deployment") == "Enabled=false"
    for inst, name in ((by_ou, "ami-share-target-accounts"), (by_account, "ami-share-target-accounts-listed")):
        assert inst[:3] == [aws, "cloudformation", "create-stack-instances"]
        assert option(inst, "--stack-set-name") == name
        assert option(inst, "--regions") == "us-east-1"  # IAM is global: one Region
        assert option(inst, "--profile") == "org-admin"
    # copy_into's OU only (not share_with's): the role goes where copies go.
    assert option(by_ou, "--deployment-targets") == "OrganizationalUnitIds=ou-ab12-cdef3456"
    assert option(by_account, "--deployment-targets") == (
        "OrganizationalUnitIds=r-ab12,Accounts=111122223333,777788889999,AccountFilterType=INTERSECTION")


def test_only_plain_accounts_make_only_the_stack_set_without_automatic_deployment(env, tmp_path):
    policy = json.loads(json.dumps(POLICY))
    del policy["rules"][0]["copy_into"]["organizational_units"]
    p = tmp_path / "accounts-only.json"
    p.write_text(json.dumps(policy))
    lines = printed(env, p)
    sets = [argv for argv in lines if argv[1:3] == ["cloudformation", "create-stack-set"]]
    assert [(option(a, "--stack-set-name"), option(a, "--auto-deployment")) for a in sets] == [
        ("ami-share-target-accounts-listed", "Enabled=false")]


def test_a_delegated_administrator_and_another_role_name(env, policy_file):
    lines = printed(env, policy_file, "--delegated-admin", "--target-role-name", "images-in")
    stack_sets_and_instances = lines[-4:]
    for argv in stack_sets_and_instances:
        assert option(argv, "--call-as") == "DELEGATED_ADMIN"
    for stack_set in (stack_sets_and_instances[0], stack_sets_and_instances[2]):
        assert "ParameterKey=RoleName,ParameterValue=images-in" in stack_set
    deploys = [argv for argv in lines if argv[1:2] == ["deploy"] and argv[0] == env["SAM"]]
    assert all("TargetAccountRoleName=images-in" in d for d in deploys)


@pytest.mark.parametrize("exists, op", [(False, "create-stack-set"), (True, "update-stack-set")])
def test_a_real_run_runs_exactly_what_the_dry_run_printed(env, policy_file, exists, op):
    expected = [argv[:] for argv in printed(env, policy_file)]
    if exists:
        env["FAKE_STACKSET_EXISTS"] = "1"
        expected[4][2] = "update-stack-set"
        expected[6][2] = "update-stack-set"
    r = deploy(env, *ARGS, "--policy-file", policy_file)
    assert r.returncode == 0, r.stderr
    ran = calls(env)
    assert [[env[a[0].upper()], *a[1:]] for a in ran] == expected
    assert ran[4][2] == op and ran[6][2] == op


def test_without_copy_into_no_stack_set_and_no_target_role(env, tmp_path):
    p = tmp_path / "plain.json"
    p.write_text(json.dumps({"rules": [{"name": "a", "match": {"name": "a-*"},
                                        "share_with": {"organizational_units": [OU]}}]}))
    r = deploy(env, "--regions", "us-east-1", "--policy-file", p, "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = [shlex.split(line) for line in r.stdout.splitlines()]
    assert [argv[1] for argv in lines] == ["build", "deploy"]
    assert not any(o.startswith("TargetAccountRoleName=") for o in lines[1])


@pytest.mark.parametrize(
    "policy, args, message",
    [
        (POLICY, ["--regions", "us-east-1"], "--publisher-account is required"),
        ({"rules": [{"name": "a", "match": {"name": "a-*"},
                     "copy_into": {"accounts": ["111122223333"], "regions": [{"region": "eu-west-1"}]}}]},
         ["--regions", "us-east-1", "--publisher-account", PUBLISHER, "--organization-id", "o-a1b2c3d4e5"],
         "give --org-root-id"),
        ({"rules": [{"name": "a", "match": {"name": "a-*"},
                     "copy_into": {"accounts": ["111122223333"], "regions": [{"region": "eu-west-1"}]}}]},
         ["--regions", "us-east-1", "--publisher-account", PUBLISHER],
         "give --organization-id"),
        (POLICY, ARGS + ["--org-role-arn", "arn:aws:iam::123456789012:role/x"], "not both"),
        (POLICY, ["--regions", "us-east-1", "--publisher-account", "1234"], "is not a 12-digit account id"),
    ],
)
def test_what_is_missing_is_named_before_anything_runs(env, tmp_path, policy, args, message):
    p = tmp_path / "policy.json"
    p.write_text(json.dumps(policy))
    for dry in ([], ["--dry-run"]):
        r = deploy(env, *args, "--policy-file", p, *dry)
        assert r.returncode != 0 and r.stdout == "", r.stdout
        assert message in r.stderr, r.stderr
    assert calls(env) == []
