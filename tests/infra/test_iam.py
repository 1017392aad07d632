"""Least privilege: each function's role allows exactly the AWS calls that function makes."""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest

import cfn
from conftest import REPO

# Convergence reads the image's snapshots (keys, permissions) before writing what is missing.
EC2_SHARE = {
    "ec2:DescribeImages", "ec2:DescribeImageAttribute", "ec2:DescribeSnapshots",
    "ec2:DescribeSnapshotAttribute", "ec2:ModifyImageAttribute",
    "ec2:ModifySnapshotAttribute", "ec2:CreateTags", "ec2:GetImageBlockPublicAccessState",
    # A rule's watermark, before the image's first share (issue 30).
    "ec2:AttachImageWatermark",
}
# GetKeyPolicy: `kms_access: key_policy` checks the key policy admits the rule's organizations / OUs
# (read only: the product never writes a key policy).
KMS_GRANTS = {"kms:DescribeKey", "kms:GetKeyPolicy", "kms:ListGrants", "kms:CreateGrant"}
# The event path's grant receipt on a key (ami-share:grants): read, and written after a full pass.
KMS_RECEIPTS = {"kms:ListResourceTags", "kms:TagResource"}
# CopyImage with a KMS key: EC2 re-encrypts on the caller's behalf.
KMS_VIA_EC2 = {"kms:Decrypt", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo"}
# DescribeAccount: a plain account of share_with / copy_into must be a member (issue 25).
ORG_READS = {
    "organizations:DescribeAccount",
    "organizations:DescribeOrganization", "organizations:ListAccounts",
    "organizations:ListAccountsForParent", "organizations:ListChildren",
}
# Publishing a rule's newest image: the parameter, its RAM share, the "AMI Distributed" event.
PUBLISH = {
    "ssm:GetParameters", "ssm:GetParameterHistory", "ssm:PutParameter",
    "ssm:LabelParameterVersion", "ssm:UnlabelParameterVersion",
    "ram:GetResourceShares", "ram:GetResourceShareAssociations", "ram:CreateResourceShare",
    "ram:TagResource", "ram:AssociateResourceShare", "ram:DisassociateResourceShare",
    "ram:UpdateResourceShare", "events:PutEvents",
}
# What Lambda itself needs of the execution role: its log group, and the sweeper's OnFailure
# destination or the event functions' queue (the event source mapping polls it with the role).
PLUMBING = {"logs:CreateLogStream", "logs:PutLogEvents"}
SWEEPER_PLUMBING = {"sqs:SendMessage"}
QUEUE_PLUMBING = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"}

# The copies' waiting line (issue 26): every function joins, reads and starts from it.
COPY_LINE = {
    "sqs:GetQueueUrl", "sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
}
# DeleteTags (ami-share:plan only): a copy EC2 refuses for good while it waits in a line clears
# its source's fingerprint, in whichever function drains the line (issue 26).
ON_IMAGE_AVAILABLE = EC2_SHARE | {"ec2:CopyImage", "ec2:DeleteTags"} | KMS_GRANTS | KMS_VIA_EC2 | PUBLISH | COPY_LINE
CALLS = {
    "on-image-available": ON_IMAGE_AVAILABLE | KMS_RECEIPTS,
    # DeleteTags: a failed copy clears its source's fingerprint (ami-share:plan). CopyImage: a
    # copy's end frees a slot, and the next waiting copy starts (issue 26).
    "on-copy-complete": EC2_SHARE | {"ec2:EnableImageDeprecation", "ec2:DeleteTags", "ec2:CopyImage"} | KMS_GRANTS
    | KMS_VIA_EC2 | PUBLISH | KMS_RECEIPTS | COPY_LINE,
    # The night never trusts a receipt; it removes those of a key whose grants it revokes.
    "nightly-sweeper": ON_IMAGE_AVAILABLE | {
        "kms:UntagResource",
        # the marks' secret, derived once per cold start (issue 25)
        "kms:GenerateMac",
        "ec2:DeleteSnapshot", "ec2:DeleteTags",
        "ec2:DescribeLaunchTemplates", "ec2:DescribeLaunchTemplateVersions", "ec2:ListImagesInRecycleBin",
        "autoscaling:DescribeLaunchConfigurations", "kms:RevokeGrant",
        # retirement: what uses an image, and the stages past sharing
        "ec2:DescribeImageReferences", "ec2:DescribeImageUsageReports", "ec2:DescribeImageUsageReportEntries",
        "ec2:CreateImageUsageReport", "ec2:EnableImageDeprecation", "ec2:DisableImage", "ec2:DeregisterImage",
    },
}
BRANCHES = {"without an Organizations role": False, "with an Organizations role": True}
# The functions that assume the target accounts' role (copy_into).
COPY_INTO_FUNCTIONS = {"on-image-available", "nightly-sweeper"}


def as_list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


def role_of(template: dict, name: str) -> dict:
    _, res = cfn.functions(template)[name]
    role = cfn.ref_target(template, res["Properties"]["Role"])
    assert role["Type"] == "AWS::IAM::Role"
    return role


def statements(template: dict, name: str, has_org_role: bool) -> list[dict]:
    # The "given" branch gives both roles: the Organizations read role and the target accounts'.
    conds = {"HasOrgRole": has_org_role, "HasEventBus": True, "HasTargetRole": has_org_role}
    role = cfn.resolve_ifs(role_of(template, name), conds)
    (policy,) = role["Properties"]["Policies"]
    return policy["PolicyDocument"]["Statement"]


def all_statements(template: dict) -> Iterator[tuple[str, dict]]:
    """Every statement of every IAM policy in a template, with Fn::If resolved both ways."""
    for logical_id, res in template["Resources"].items():
        if res["Type"] not in ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        for branch in (False, True):
            conds = {c: branch for c in template.get("Conditions", {})}
            r = cfn.resolve_ifs(res, conds)["Properties"]
            docs = [p["PolicyDocument"] for p in r.get("Policies", [])]
            docs += [r[k] for k in ("PolicyDocument", "AssumeRolePolicyDocument") if k in r]
            for doc in docs:
                for st in as_list(doc["Statement"]):
                    yield logical_id, st


@pytest.mark.parametrize("name", sorted(CALLS))
def test_one_inline_policy_and_no_managed_policies(template, name):
    props = role_of(template, name)["Properties"]
    assert len(props["Policies"]) == 1
    assert "ManagedPolicyArns" not in props and "PermissionsBoundary" not in props
    # templates/org-read-role.yaml trusts /ami-share/ (and below); the target accounts' role
    # trusts only /ami-share/copy-into/, the path of the two functions that assume it.
    assert props["Path"] == ("/ami-share/copy-into/" if name in COPY_INTO_FUNCTIONS else "/ami-share/")
    trust = props["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]


@pytest.mark.parametrize("branch", sorted(BRANCHES))
@pytest.mark.parametrize("name", sorted(CALLS))
def test_exactly_the_actions_the_function_calls(template, name, branch):
    has_role = BRANCHES[branch]
    actions = {a for st in statements(template, name, has_role) for a in as_list(st["Action"])}
    # Organizations is read through the assumed role when one is given, directly otherwise.
    plumbing = PLUMBING | (SWEEPER_PLUMBING if name == "nightly-sweeper" else QUEUE_PLUMBING)
    # every function reads the consumers' Allowed AMIs (the night, and the events' warnings)
    org = ORG_READS | {"organizations:DescribeEffectivePolicy"}
    expected = CALLS[name] | plumbing | ({"sts:AssumeRole"} if has_role else org)
    assert sorted(actions) == sorted(expected)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_assume_role_only_on_the_given_role(template, name):
    assert template["Conditions"]["HasOrgRole"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "OrgRoleArn"}, ""]}]}
    sts = [st for st in statements(template, name, True) if "sts:AssumeRole" in as_list(st["Action"])]
    org_read = {"Sid": "AssumeOrganizationsReadRole", "Effect": "Allow", "Action": "sts:AssumeRole",
                "Resource": {"Ref": "OrgRoleArn"}}
    # copy_into: the functions that copy into target accounts assume the target-account role
    # there, by name, only in accounts of their own organization; on-copy-complete never does.
    target = {"Sid": "AssumeTargetAccountRole", "Effect": "Allow", "Action": "sts:AssumeRole",
              "Resource": {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${TargetAccountRoleName}"},
              "Condition": {"StringEquals": {"aws:ResourceOrgID": "${aws:PrincipalOrgID}"}}}
    expected = [target, org_read] if name in ("on-image-available", "nightly-sweeper") else [org_read]
    assert sts == expected
    # Without a target role name, no target-account role may be assumed.
    none = cfn.resolve_ifs(role_of(template, name), {"HasOrgRole": False, "HasEventBus": True, "HasTargetRole": False})
    (policy,) = none["Properties"]["Policies"]
    assert not [st for st in policy["PolicyDocument"]["Statement"] if "sts:AssumeRole" in as_list(st["Action"])]


@pytest.mark.parametrize("name", sorted(CALLS))
def test_plumbing_is_scoped_to_the_functions_own_resources(template, name):
    logical_id, res = cfn.functions(template)[name]
    props = res["Properties"]
    log_group = props["LoggingConfig"]["LogGroup"]["Ref"]
    failures = cfn.failure_queue(template, res)
    source = cfn.event_queue(template, res)
    for st in statements(template, name, False):
        acts = set(as_list(st["Action"]))
        if st["Sid"] == "TargetLine":
            # The target line on-image-available reads (its event source) and writes.
            assert name == "on-image-available"
            assert acts == COPY_LINE and st["Resource"] == {"Fn::GetAtt": ["TargetLine", "Arn"]}
            continue
        if st["Sid"] == "CopyLine":
            # The line of every Region the stack is deployed to, and nothing else.
            assert acts == COPY_LINE
            assert st["Resource"] == {
                "Fn::Sub": "arn:${AWS::Partition}:sqs:*:${AWS::AccountId}:${AWS::StackName}-copy-line.fifo"}
            continue
        if acts & {"logs:CreateLogStream", "logs:PutLogEvents"}:
            assert st["Resource"] == {"Fn::GetAtt": [log_group, "Arn"]}
        if "sqs:SendMessage" in acts:
            assert st["Resource"] == {"Fn::GetAtt": [failures, "Arn"]}
        if acts & QUEUE_PLUMBING:
            assert source is not None and st["Resource"] == {"Fn::GetAtt": [source, "Arn"]}


WRITE = re.compile(r":(Modify|Copy|Create|Delete|Enable|Retire|Revoke|Decrypt|GenerateDataKey|ReEncrypt|TagResource|UntagResource)")


@pytest.mark.parametrize("name", sorted(CALLS))
def test_writes_are_scoped_to_images_snapshots_and_keys_of_this_account(template, name):
    for st in statements(template, name, False):
        acts = as_list(st["Action"])
        # logs and sqs: the function's own resources; ssm, ram, events: pinned by the publishing test
        if not any(WRITE.search(a) for a in acts) or acts[0].startswith(("logs:", "sqs:", "ssm:", "ram:", "events:")):
            continue
        resources = [r["Fn::Sub"] for r in as_list(st["Resource"])]
        for r in resources:
            assert r in (
                "arn:${AWS::Partition}:ec2:*::image/*",
                "arn:${AWS::Partition}:ec2:*::snapshot/*",
                "arn:${AWS::Partition}:kms:*:${AWS::AccountId}:key/*",
                "arn:${AWS::Partition}:ec2:*:${AWS::AccountId}:image-usage-report/*",
            ), (st["Sid"], r)
        if acts[0] in ("kms:TagResource", "kms:UntagResource"):
            assert st["Condition"] == {"ForAllValues:StringEquals": {"aws:TagKeys": ["ami-share:grants"]},
                                       "Null": {"aws:TagKeys": "false"}}, st["Sid"]
        if any(a.split(":")[1] in {"Decrypt", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo"}
               for a in acts):
            assert st["Condition"] == {"StringLike": {"kms:ViaService": {"Fn::Sub": "ec2.*.${AWS::URLSuffix}"}}}
        if "kms:CreateGrant" in acts:
            assert acts == ["kms:CreateGrant"], st["Sid"]
            assert st["Condition"] in (CONSUMER_GRANTS, EC2_OWN_GRANT), st["Sid"]


# Issue 25: CreateGrant only to account roots with exactly the operations consumers need, or
# EC2's own grant while it copies (GrantIsForAWSResource, through EC2).
GRANT_OPERATIONS = [
    "Decrypt", "DescribeKey", "CreateGrant", "ReEncryptFrom", "ReEncryptTo",
    "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
]
CONSUMER_GRANTS = {
    "ForAllValues:StringEquals": {"kms:GrantOperations": GRANT_OPERATIONS},
    "Null": {"kms:GrantOperations": "false"},
    "StringLike": {"kms:GranteePrincipal": {"Fn::Sub": "arn:${AWS::Partition}:iam::*:root"}},
}
EC2_OWN_GRANT = {
    "Bool": {"kms:GrantIsForAWSResource": "true"},
    "StringLike": {"kms:ViaService": {"Fn::Sub": "ec2.*.${AWS::URLSuffix}"}},
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_create_grant_has_one_statement_for_consumers_and_one_for_ec2(template, name):
    sts = grants(template, name, "kms:CreateGrant")
    assert sorted(st["Sid"] for st in sts) == ["GrantConsumersLaunchAndCopy", "LetEc2GrantItselfDuringCopies"]
    by_sid = {st["Sid"]: st for st in sts}
    assert by_sid["GrantConsumersLaunchAndCopy"]["Condition"] == CONSUMER_GRANTS
    assert by_sid["LetEc2GrantItselfDuringCopies"]["Condition"] == EC2_OWN_GRANT


def test_the_grant_operations_are_the_ones_the_code_asks_for():
    # names.rs GRANT_OPERATIONS, as the IAM condition lists them.
    src = (REPO / "shared" / "src" / "names.rs").read_text()
    block = re.search(r"GRANT_OPERATIONS: \[&str; \d+\] = \[(.*?)\];", src, re.S).group(1)
    assert re.findall(r'"([A-Za-z]+)"', block) == GRANT_OPERATIONS


@pytest.mark.parametrize("bus", [False, True])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_publishing_only_under_the_prefix_on_tagged_shares_and_the_named_buses(template, name, bus):
    role = cfn.resolve_ifs(role_of(template, name), {"HasOrgRole": False, "HasEventBus": bus, "HasTargetRole": False})
    (policy,) = role["Properties"]["Policies"]
    sts = {st["Sid"]: st for st in policy["PolicyDocument"]["Statement"]}
    ssm = sts["PublishLatestImageParameters"]
    assert {a.split(":")[0] for a in ssm["Action"]} == {"ssm"}
    assert ssm["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:*:${AWS::AccountId}:parameter${ParameterPathPrefix}*"
    }
    assert sts["FindParameterShares"]["Action"] == ["ram:GetResourceShares", "ram:GetResourceShareAssociations"]
    create = sts["CreateParameterShares"]
    assert create["Condition"] == {
        "StringEquals": {"ram:RequestedResourceType": "ssm:Parameter"},
        "ForAllValues:StringEquals": {"aws:TagKeys": ["ami-share:rule"]},
        "Null": {"aws:RequestTag/ami-share:rule": "false"},
    }
    step = sts["KeepParameterSharesInStep"]
    assert step["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:ram:*:${AWS::AccountId}:resource-share/*"}
    assert step["Condition"] == {"Null": {"aws:ResourceTag/ami-share:rule": "false"}}
    events = sts["AnnounceDistributions"]
    assert events["Action"] == "events:PutEvents"
    assert events["Condition"] == {"StringEquals": {"events:source": "ami-share"}}
    buses = [{"Fn::Sub": "arn:${AWS::Partition}:events:*:${AWS::AccountId}:event-bus/default"}]
    assert events["Resource"] == buses + ([{"Ref": "DistributionEventBusArn"}] if bus else [])


def test_publishing_parameters_are_validated(template):
    prefix = template["Parameters"]["ParameterPathPrefix"]
    assert prefix["Default"] == "/golden/"
    for good in ["/golden/", "/a/b-c/", "/x.y_z/"]:
        assert re.fullmatch(prefix["AllowedPattern"], good), good
    for bad in ["", "/", "golden/", "/golden", "/gol den/", "/golden//"]:
        assert not re.fullmatch(prefix["AllowedPattern"], bad), bad
    bus = template["Parameters"]["DistributionEventBusArn"]
    assert bus["Default"] == ""
    for good in ["", "arn:aws:events:us-east-1:123456789012:event-bus/org-images"]:
        assert re.fullmatch(bus["AllowedPattern"], good), good
    for bad in ["arn:aws:sns:us-east-1:123456789012:topic", "arn:aws:events:us-east-1:1234:event-bus/x"]:
        assert not re.fullmatch(bus["AllowedPattern"], bad), bad


def grants(template: dict, name: str, action: str) -> list[dict]:
    """The statements of a function's role that allow `action`."""
    return [st for st in statements(template, name, False) if action in as_list(st["Action"])]


OWN_TAG_KEYS = {
    "ForAllValues:StringLike": {"aws:TagKeys": ["ami-share:*"]},
    # ForAllValues holds for an empty key list, and DeleteTags without keys deletes every tag
    "Null": {"aws:TagKeys": "false"},
}


def test_delete_snapshot_only_on_snapshots_marked_orphaned(template):
    """The sweeper deletes only what it marked first: the IAM condition enforces it too."""
    (st,) = grants(template, "nightly-sweeper", "ec2:DeleteSnapshot")
    assert as_list(st["Action"]) == ["ec2:DeleteSnapshot"]
    assert st["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:ec2:*::snapshot/*"}
    assert st["Condition"] == {"Null": {"aws:ResourceTag/ami-share:orphaned-since": "false"}}
    for other in ("on-image-available", "on-copy-complete"):
        assert grants(template, other, "ec2:DeleteSnapshot") == []


@pytest.mark.parametrize("name", sorted(CALLS))
def test_tags_are_written_only_under_the_products_keys_or_at_copy_creation(template, name):
    sts = grants(template, name, "ec2:CreateTags")
    assert sts and all(as_list(st["Action"]) == ["ec2:CreateTags"] for st in sts)
    for st in sts:
        cond = st["Condition"]
        # a copy is tagged by CopyImage itself (its TagSpecifications and the source's tags); a
        # usage report by CreateImageUsageReport, on the report only
        usage_report = {"StringEquals": {"ec2:CreateAction": "CreateImageUsageReport"}}
        assert cond in (OWN_TAG_KEYS, {"StringEquals": {"ec2:CreateAction": "CopyImage"}}, usage_report), st["Sid"]
        if cond == usage_report:
            assert st["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:ec2:*:${AWS::AccountId}:image-usage-report/*"}
    at_creation = [st for st in sts if "StringEquals" in st["Condition"]]
    assert bool(at_creation) == ("ec2:CopyImage" in CALLS[name])


def test_retirement_acts_only_on_the_products_images(template):
    (st,) = grants(template, "nightly-sweeper", "ec2:DisableImage")
    assert sorted(as_list(st["Action"])) == ["ec2:DeregisterImage", "ec2:DisableImage", "ec2:EnableImageDeprecation"]
    assert st["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:ec2:*::image/*"}
    assert st["Condition"] == {"Null": {"aws:ResourceTag/ami-share:managed": "false"}}
    for other in ("on-image-available", "on-copy-complete"):
        assert grants(template, other, "ec2:DisableImage") == []
        assert grants(template, other, "ec2:DeregisterImage") == []


def test_tags_are_removed_only_under_the_products_keys(template):
    # The sweeper removes from snapshots only the orphan mark (issue 25).
    fingerprint = {
        "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["ami-share:plan"]}, "Null": {"aws:TagKeys": "false"}},
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ec2:*::image/*"},
    }
    snap, image = sorted(grants(template, "nightly-sweeper", "ec2:DeleteTags"), key=lambda st: st["Sid"])[::-1]
    assert snap["Condition"] == {
        "ForAllValues:StringEquals": {"aws:TagKeys": ["ami-share:orphaned-since"]},
        "Null": {"aws:TagKeys": "false"},
    }
    assert snap["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:ec2:*::snapshot/*"}
    # From images, every function removes one tag only: the source's fingerprint (a failed copy,
    # or one EC2 refuses for good in a line: issue 26).
    assert {k: image[k] for k in fingerprint} == fingerprint
    for name in ("on-image-available", "on-copy-complete"):
        (st,) = grants(template, name, "ec2:DeleteTags")
        assert {k: st[k] for k in fingerprint} == fingerprint


@pytest.mark.parametrize("which", ["template", "org_role_template", "target_role_template"])
def test_no_wildcard_actions_anywhere(request, which):
    tpl = request.getfixturevalue(which)
    seen = 0
    for logical_id, st in all_statements(tpl):
        assert "NotAction" not in st and "NotResource" not in st, logical_id
        for action in as_list(st["Action"]):
            seen += 1
            assert isinstance(action, str) and re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), (
                f"{logical_id}: {action!r} is a wildcard or malformed action"
            )
    assert seen > 0


def test_org_read_role(org_role_template):
    res = org_role_template["Resources"]["OrganizationsReadRole"]["Properties"]
    (policy,) = res["Policies"]
    (st,) = policy["PolicyDocument"]["Statement"]
    # + the sweeper's look at the consumers' EC2 declarative policies (issue 30)
    assert set(st["Action"]) == ORG_READS | {"organizations:DescribeEffectivePolicy"} and st["Effect"] == "Allow"
    (trust,) = res["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Principal"] == {"AWS": {"Fn::Split": [",", {"Ref": "TrustedAccountIds"}]}}
    assert trust["Condition"]["StringEquals"] == {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}
    assert trust["Condition"]["ArnLike"] == {
        "aws:PrincipalArn": {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role${TrustedRolePath}*"}
    }
    assert org_role_template["Parameters"]["TrustedRolePath"]["Default"] == "/ami-share/"
    assert "ManagedPolicyArns" not in res


def assert_pattern(spec: dict, param: str, good: list[str], bad: list[str]) -> None:
    """A template parameter's AllowedPattern accepts `good` (and its default), refuses `bad`."""
    for value in good + ([spec["Default"]] if "Default" in spec else []):
        assert re.fullmatch(spec["AllowedPattern"], value), f"{param} should accept {value!r}"
    for value in bad:
        assert not re.fullmatch(spec["AllowedPattern"], value), f"{param} should refuse {value!r}"


ORG_PARAMETER_SAMPLES = {
    "OrganizationId": (["o-a1b2c3d4e5"], ["", "o-", "a1b2c3d4e5", "o-A1B2C3D4E5"]),
    "TrustedAccountIds": (["111122223333", "111122223333,444455556666"],
                          ["", "1111", "111122223333, 444455556666", "111122223333,"]),
    "TrustedRolePath": (["/", "/ami-share/", "/a/b/"], ["", "ami-share", "/ami-share", "ami-share/"]),
    "RoleName": (["ami-share-organizations-read"], ["", "a b", "x" * 65]),
}


@pytest.mark.parametrize("param", sorted(ORG_PARAMETER_SAMPLES))
def test_org_role_parameters_are_validated(org_role_template, param):
    assert_pattern(org_role_template["Parameters"][param], param, *ORG_PARAMETER_SAMPLES[param])


def test_target_account_role(target_role_template):
    """templates/target-account-role.yaml: trusts only the publisher's ami-share roles (by ARN path,
    in the organization); copies, tags at creation, tags and deprecates only the publisher's copies;
    uses keys only through EC2; writes parameters only under the prefix."""
    res = target_role_template["Resources"]["TargetAccountRole"]["Properties"]
    (trust,) = res["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Ref": "PublisherAccountId"}}
    assert trust["Condition"]["StringEquals"] == {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}
    assert trust["Condition"]["ArnLike"] == {
        "aws:PrincipalArn": {"Fn::Sub": "arn:${AWS::Partition}:iam::${PublisherAccountId}:role${TrustedRolePath}*"}
    }
    # Issue 25: only the two functions that copy into target accounts have that path; the
    # publisher's other /ami-share/ roles (on-copy-complete, the state machine) do not.
    assert target_role_template["Parameters"]["TrustedRolePath"]["Default"] == "/ami-share/copy-into/"
    by_sid = {st["Sid"]: st for st in target_role_statements(target_role_template, "copy-into")}
    actions = {a for st in by_sid.values() for a in as_list(st["Action"])}
    assert actions == {
        "ec2:CopyImage", "ec2:CreateTags", "ec2:EnableImageDeprecation", "ec2:DescribeImages",
        "ec2:GetEbsDefaultKmsKeyId", "ec2:GetAllowedImagesSettings",
        "kms:DescribeKey", "kms:CreateGrant", "kms:Decrypt",
        "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo",
        "ssm:GetParameters", "ssm:PutParameter", "ssm:LabelParameterVersion",
        "ssm:GetParameterHistory", "ssm:UnlabelParameterVersion",
    }
    # Never disables, deregisters or deletes anything: the copies are the target's.
    assert not any(a.split(":")[1].startswith(("Disable", "Deregister", "Delete")) for a in actions)
    assert by_sid["TagTheCopiesAtCreation"]["Condition"] == {"StringEquals": {"ec2:CreateAction": "CopyImage"}}
    ours = {"aws:ResourceTag/ami-share:copied-from-account": {"Ref": "PublisherAccountId"}}
    assert by_sid["MarkSupersededCopies"]["Condition"]["StringEquals"] == ours
    assert by_sid["MarkSupersededCopies"]["Condition"]["ForAllValues:StringEquals"] == {
        "aws:TagKeys": ["ami-share:superseded-by"]}
    assert by_sid["DeprecateTheCopiesOnly"]["Condition"] == {"StringEquals": ours}
    assert by_sid["EncryptTheCopiesThroughEc2Only"]["Condition"] == {
        "StringLike": {"kms:ViaService": {"Fn::Sub": "ec2.*.${AWS::URLSuffix}"}}}
    assert by_sid["PublishTheNewestCopy"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:*:${AWS::AccountId}:parameter${ParameterPathPrefix}*"}
    star = sorted(sid for sid, st in by_sid.items() if st["Resource"] == "*")
    assert star == ["FindTheCopiesAndTheDefaultKey", "ReadAllowedAmis"]  # no resource-level permissions
    assert "ManagedPolicyArns" not in res


def target_role_statements(template: dict, access: str) -> list[dict]:
    """The role's statements when deployed with `Access=access` (the CopyInto condition
    resolved)."""
    assert template["Conditions"]["CopyInto"] == {"Fn::Equals": [{"Ref": "Access"}, "copy-into"]}
    out = []
    for policy in template["Resources"]["TargetAccountRole"]["Properties"]["Policies"]:
        if "Fn::If" in policy:
            cond, yes, no = policy["Fn::If"]
            assert cond == "CopyInto" and no == {"Ref": "AWS::NoValue"}
            if access != "copy-into":
                continue
            policy = yes
        out.extend(policy["PolicyDocument"]["Statement"])
    return out


def test_target_account_role_read_only(target_role_template):
    """Access=read-only (the rules' other consumer OUs, allowed_amis.read_through_role): the same
    trust, and only the account's Allowed AMIs may be read."""
    assert target_role_template["Parameters"]["Access"]["AllowedValues"] == ["copy-into", "read-only"]
    assert target_role_template["Parameters"]["Access"]["Default"] == "copy-into"
    (only,) = target_role_statements(target_role_template, "read-only")
    assert only["Effect"] == "Allow" and as_list(only["Action"]) == ["ec2:GetAllowedImagesSettings"]


TARGET_PARAMETER_SAMPLES = {
    "PublisherAccountId": (["111122223333"], ["", "1111", "11112222333a"]),
    "OrganizationId": (["o-a1b2c3d4e5"], ["", "o-", "o-A1B2C3D4E5"]),
    "TrustedRolePath": (["/", "/ami-share/"], ["", "ami-share", "/ami-share"]),
    "RoleName": (["ami-share-target"], ["", "a b", "x" * 65, "arn:aws:iam::111122223333:role/x"]),
    "ParameterPathPrefix": (["/golden/", "/a/b/"], ["", "golden/", "/golden"]),
}


@pytest.mark.parametrize("param", sorted(TARGET_PARAMETER_SAMPLES))
def test_target_role_parameters_are_validated(target_role_template, param):
    assert_pattern(target_role_template["Parameters"][param], param, *TARGET_PARAMETER_SAMPLES[param])


# --- granted vs called (issue 25) ------------------------------------------------------------------
# Actions authorised for a call the code makes without naming them: EC2 uses the keys on the
# caller's behalf during CopyImage; RAM tags a share created with tags (CreateResourceShare).
IMPLICIT = {
    "kms:Decrypt", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo",
    "ram:TagResource",
}
# What Lambda needs of an execution role, not called by the code.
LAMBDA_PLUMBING = PLUMBING | SWEEPER_PLUMBING | QUEUE_PLUMBING


def called_actions() -> set[str]:
    """Every AWS operation the adapters (shared/src/aws/) call, as `service:Operation`: each
    call maps its SDK error with `aws_error("service", "Operation", ...)`."""
    out = set()
    for path in (REPO / "shared" / "src" / "aws").glob("*.rs"):
        text = path.read_text()
        text = text.split("#[cfg(test)]")[0]
        for svc, op in re.findall(r'(?:aws_error|AwsError::new)\(\s*"([a-z0-9-]+)",\s*"([A-Za-z]+)"', text, re.S):
            out.add(f"{svc}:{op}")
    return out


def granted_actions(template, target_role_template) -> set[str]:
    acts = set()
    for name in CALLS:
        for has_role in (False, True):
            acts |= {a for st in statements(template, name, has_role) for a in as_list(st["Action"])}
    acts |= {a for st in target_role_statements(target_role_template, "copy-into") for a in as_list(st["Action"])}
    return acts


# Calls IAM authorises under another action's name.
AUTHORISED_AS = {"sqs:SendMessageBatch": "sqs:SendMessage"}
# Made by the operator CLI only (its account), and never denied by IAM.
OPERATOR_ONLY = {"sts:GetCallerIdentity"}


def test_every_granted_action_is_called_and_every_called_action_granted(template, target_role_template):
    called = {AUTHORISED_AS.get(a, a) for a in called_actions()} - OPERATOR_ONLY
    assert len(called) > 40, sorted(called)
    granted = granted_actions(template, target_role_template)
    assert sorted(granted - IMPLICIT - called - LAMBDA_PLUMBING) == [], "granted but never called"
    assert sorted(called - granted) == [], "called but never granted"
    assert IMPLICIT <= granted


def test_only_the_two_copying_functions_have_the_path_the_target_role_trusts(template):
    under = sorted(
        rid for rid, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Role" and r["Properties"].get("Path", "").startswith("/ami-share/copy-into/")
    )
    assert under == ["NightlySweeperRole", "OnImageAvailableRole"]


def test_the_marks_key_signs_for_the_sweeper_alone(template):
    key = template["Resources"]["MarkKey"]["Properties"]
    assert (key["KeySpec"], key["KeyUsage"]) == ("HMAC_256", "GENERATE_VERIFY_MAC")
    sts = {st["Sid"]: st for st in key["KeyPolicy"]["Statement"]}
    admin = sts["AccountAdministersTheKey"]
    assert not any(a in admin["Action"] for a in ("kms:GenerateMac", "kms:VerifyMac", "kms:*"))
    use = sts["OnlyTheSweeperDerivesTheMarksSecret"]
    assert use["Principal"] == {"AWS": {"Fn::GetAtt": ["NightlySweeperRole", "Arn"]}}
    assert use["Action"] == "kms:GenerateMac"
    assert use["Condition"] == {"StringEquals": {"kms:MacAlgorithm": "HMAC_SHA_256"}}
    assert {"Key": "ami-share:key", "Value": "marks"} in key["Tags"]
    # The sweeper's own statement reaches only a key with that tag.
    (st,) = grants(template, "nightly-sweeper", "kms:GenerateMac")
    assert st["Condition"]["StringEquals"]["aws:ResourceTag/ami-share:key"] == "marks"
    for other in ("on-image-available", "on-copy-complete"):
        assert grants(template, other, "kms:GenerateMac") == []
    _, fn = cfn.functions(template)["nightly-sweeper"]
    assert fn["Properties"]["Environment"]["Variables"]["AMI_SHARE_MARK_KEY_ID"] == {"Fn::GetAtt": ["MarkKey", "Arn"]}


@pytest.mark.parametrize("name", ["on-image-available", "on-copy-complete", "nightly-sweeper"])
def test_watermarks_only_on_this_accounts_images(template, name):
    sts = [st for st in statements(template, name, False) if "ec2:AttachImageWatermark" in as_list(st["Action"])]
    assert len(sts) == 1, sts
    st = sts[0]
    assert as_list(st["Action"]) == ["ec2:AttachImageWatermark"]
    assert st["Condition"] == {"StringEquals": {"ec2:Owner": {"Ref": "AWS::AccountId"}}}
