"""The operator's read-only policy (templates/operator-readonly-policy.json): exactly the reads
`ami-share status` and `ami-share plan` make, nothing that writes (issue 29)."""

from __future__ import annotations

import json
import re

from conftest import REPO
from test_iam import called_actions

POLICY = REPO / "templates" / "operator-readonly-policy.json"
NIGHT_PLAN = REPO / "shared" / "src" / "night_plan"

# Not IAM-authorised (GetCallerIdentity), or not made by the operator: the target-account and
# organization roles trust the product's own roles only (docs/operations.md#status).
NOT_GRANTED = {"sts:GetCallerIdentity", "sts:AssumeRole"}
# The line is only counted (GetQueueAttributes): receiving would hide its entries from the drains.
LINE_CONSUMPTION = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}


def granted() -> set[str]:
    doc = json.loads(POLICY.read_text())
    out = set()
    for st in doc["Statement"]:
        assert st["Effect"] == "Allow"
        acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        out |= set(acts)
    return out


def recorded_writes() -> set[str]:
    """The actions the plan's recorder keeps instead of calling: every write of the ports."""
    return {a for f in NIGHT_PLAN.glob("recorded_*.rs")
            for a in re.findall(r'"([a-z0-9]+:[A-Z][A-Za-z]+)"', f.read_text())}


def test_the_operator_may_make_exactly_the_reads_of_the_adapters():
    writes = recorded_writes()
    assert {"ec2:ModifyImageAttribute", "ec2:DeleteSnapshot", "kms:CreateGrant", "ssm:PutParameter"} <= writes
    reads = called_actions() - writes - NOT_GRANTED - LINE_CONSUMPTION - {"sqs:SendMessageBatch"}
    assert sorted(granted() - reads) == [], "granted but never read"
    assert sorted(reads - granted()) == [], "read but not granted"


def test_nothing_in_it_writes():
    for action in granted():
        op = action.split(":")[1]
        assert op.startswith(("Describe", "Get", "List")) or action == "kms:GenerateMac", action


def test_the_mac_only_with_the_marks_key_and_the_queue_only_the_copy_line():
    doc = json.loads(POLICY.read_text())
    by_sid = {st["Sid"]: st for st in doc["Statement"]}
    mac = by_sid["VerifyTheMarksWithTheStacksMarksKey"]
    assert mac["Action"] == "kms:GenerateMac"
    assert mac["Condition"] == {"ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/ami-share-marks"}}
    assert by_sid["CountTheCopyLineWithoutReadingIt"]["Resource"].endswith("-copy-line.fifo")
