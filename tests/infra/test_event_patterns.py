"""The template's EventBridge rules against every fixture in events/ (events/README.md's table).

The deployed path is EventBridge rule → the function's SQS queue → the function (at most
EventConcurrency at once): a function "receives" an event when the rule that targets the queue
its SQS event source reads matches it."""

from __future__ import annotations

import copy
import json

import pytest

import cfn
from conftest import EVENTS
from eventpattern import UnsupportedPattern, matches

OIA, OCC, SWEEPER = "on-image-available", "on-copy-complete", "nightly-sweeper"

# events/README.md, "who should receive it". malformed-no-image-id.json looks like any other AMI
# event to a pattern (a rule cannot require a field and still let the function reject it with a
# clear error), so both functions receive it and reject it.
EXPECTED = {
    "image-available.json": {OIA, OCC},
    "image-failed.json": {OCC},
    "image-deregistered.json": set(),
    "image-disabled.json": set(),
    "copy-available.json": {OIA, OCC},
    "copy-failed.json": {OCC},
    "other-detail-type.json": set(),
    "malformed-no-image-id.json": {OIA, OCC},
    "malformed-lowercase-state.json": set(),
}
# Not events: inputs of the sweeper's schedule (the scheduled one) and of manual runs.
SCHEDULE_INPUTS = {"sweeper-scheduled.json", "sweeper-report-only.json", "sweeper-delete.json"}
# Batches from a function's queue, as the event source mapping delivers them: {file: receiver}.
QUEUE_BATCHES = {"sqs-image-available.json": OIA}


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def queue_rules(template: dict) -> dict[str, list[tuple[str, dict]]]:
    """{queue logical id: [(rule logical id, event pattern), ...]} of the AWS::Events::Rule
    resources that target a queue."""
    out: dict[str, list[tuple[str, dict]]] = {}
    for rid, res in template["Resources"].items():
        if res["Type"] != "AWS::Events::Rule" or "EventPattern" not in res["Properties"]:
            continue  # a schedule (the copy line's timer) matches no event
        for target in res["Properties"]["Targets"]:
            arn = target["Arn"]
            if isinstance(arn, dict) and "Fn::GetAtt" in arn:
                out.setdefault(arn["Fn::GetAtt"][0], []).append((rid, res["Properties"]["EventPattern"]))
    return out


def sqs_sources(template: dict) -> dict[str, list[dict]]:
    """{function: [SQS event source properties, ...]} of the queues EventBridge feeds (the
    target line carries no EC2 events: tests/infra/test_template.py::test_the_target_line)."""
    out: dict[str, list[dict]] = {}
    for name, (_, res) in cfn.functions(template).items():
        for event in res["Properties"].get("Events", {}).values():
            if event["Type"] == "SQS" and event["Properties"]["Queue"] != {"Fn::GetAtt": ["TargetLine", "Arn"]}:
                out.setdefault(name, []).append(event["Properties"])
    return out


# The account the stack is deployed in (the fixtures' `account`): `!Ref AWS::AccountId` in a
# pattern resolves to it.
DEPLOYED_ACCOUNT = "123456789012"


def resolve(pattern, account: str = DEPLOYED_ACCOUNT):
    """The pattern as deployed in `account`: {"Ref": "AWS::AccountId"} replaced."""
    if pattern == {"Ref": "AWS::AccountId"}:
        return account
    if isinstance(pattern, dict):
        return {k: resolve(v, account) for k, v in pattern.items()}
    if isinstance(pattern, list):
        return [resolve(v, account) for v in pattern]
    return pattern


def rules(template: dict, account: str = DEPLOYED_ACCOUNT) -> dict[str, list[dict]]:
    """{function: [event pattern, ...]}: rules on the function itself, and the rules that feed
    the queues it reads, as deployed in `account`."""
    out: dict[str, list[dict]] = {}
    by_queue = queue_rules(template)
    for name, (_, res) in cfn.functions(template).items():
        for event in res["Properties"].get("Events", {}).values():
            if event["Type"] in ("EventBridgeRule", "CloudWatchEvent"):
                out.setdefault(name, []).append(resolve(event["Properties"]["Pattern"], account))
            if event["Type"] == "SQS":
                queue = event["Properties"]["Queue"]["Fn::GetAtt"][0]
                out.setdefault(name, []).extend(resolve(p, account) for _, p in by_queue.get(queue, []))
    return out


def receivers(all_rules: dict[str, list[dict]], event: dict) -> set[str]:
    return {fn for fn, patterns in all_rules.items() if any(matches(p, event) for p in patterns)}


def test_every_fixture_is_classified():
    # A new file in events/ must be added to the table above (and to events/README.md).
    on_disk = {p.name for p in EVENTS.glob("*.json")}
    assert on_disk == set(EXPECTED) | SCHEDULE_INPUTS | set(QUEUE_BATCHES)


def test_each_event_function_has_exactly_one_rule_and_the_sweeper_none(template):
    all_rules = rules(template)
    assert {fn: len(p) for fn, p in all_rules.items()} == {OIA: 1, OCC: 1}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rule_matrix(template, name):
    assert receivers(rules(template), load_event(name)) == EXPECTED[name]


def test_patterns_are_exactly_the_documented_ones(template):
    # The patterns, spelled out: source, detail-type and the case-sensitive detail.State.
    base = {"source": ["aws.ec2"], "account": [DEPLOYED_ACCOUNT], "detail-type": ["EC2 AMI State Change"]}
    assert rules(template) == {
        OIA: [{**base, "detail": {"State": ["available"]}}],
        OCC: [{**base, "detail": {"State": ["available", "failed"]}}],
    }


@pytest.mark.parametrize("name", sorted(n for n, fns in EXPECTED.items() if fns))
def test_another_accounts_events_reach_no_function(template, name):
    # Forwarded from another account (an organization bus, a forwarding rule): the rules
    # match this account's events only (issue 25).
    event = load_event(name)
    event["account"] = "999999999999"
    assert receivers(rules(template), event) == set()
    # Deployed in that account, the same rule takes that account's events.
    assert receivers(rules(template, "999999999999"), event) == EXPECTED[name]


def test_lowercase_state_event_reaches_no_rule(template):
    event = load_event("malformed-lowercase-state.json")
    for fn, patterns in rules(template).items():
        for pattern in patterns:
            assert not matches(pattern, event), f"{fn}'s rule matched detail.state (lowercase)"


def test_a_rule_on_lowercase_state_would_be_caught(template):
    # The classic mistake: `state` instead of `State`. Such a template must fail the matrix.
    broken = copy.deepcopy(template)
    for res in broken["Resources"].values():
        if res["Type"] == "AWS::Events::Rule" and "EventPattern" in res["Properties"]:
            detail = res["Properties"]["EventPattern"]["detail"]
            detail["state"] = detail.pop("State")
    broken_rules = rules(broken)
    failures = [n for n in EXPECTED if receivers(broken_rules, load_event(n)) != EXPECTED[n]]
    assert "image-available.json" in failures and "malformed-lowercase-state.json" in failures
    assert receivers(broken_rules, load_event("image-available.json")) == set()


@pytest.mark.parametrize("name", sorted(SCHEDULE_INPUTS))
def test_schedule_inputs_are_json_objects_not_events(name):
    value = load_event(name)
    assert isinstance(value, dict) and "detail-type" not in value and "source" not in value


@pytest.mark.parametrize("name", sorted(QUEUE_BATCHES))
def test_queue_batches_carry_events_their_function_receives(template, name):
    batch = load_event(name)
    assert batch["Records"], name
    for record in batch["Records"]:
        assert record["eventSource"] == "aws:sqs" and record["messageId"]
        body = json.loads(record["body"])
        assert QUEUE_BATCHES[name] in receivers(rules(template), body)


def test_each_event_function_reads_its_own_queue_bounded_and_with_partial_batch_responses(template):
    sources = sqs_sources(template)
    assert set(sources) == {OIA, OCC}
    by_queue = queue_rules(template)
    queues = set()
    for fn, (src,) in sources.items():
        queue = src["Queue"]["Fn::GetAtt"][0]
        queues.add(queue)
        assert len(by_queue[queue]) == 1, f"{fn}: one rule feeds {queue}"
        assert src["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "EventConcurrency"}}
        assert src["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert src["BatchSize"] == {"Ref": "EventBatchSize"}
        _, res = cfn.functions(template)[fn]
        assert res["Properties"]["Environment"]["Variables"]["AMI_SHARE_EVENT_CONCURRENCY"] == {"Ref": "EventConcurrency"}
        assert "EventInvokeConfig" not in res["Properties"], f"{fn} is invoked by its queue only"
        q = template["Resources"][queue]["Properties"]
        # Lambda asks for 6 x the function's timeout, so a batch being retried is not delivered twice.
        assert q["VisibilityTimeout"] >= 6 * res["Properties"]["Timeout"]
        failure_queue = q["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert failure_queue.endswith("FailureQueue")
        assert 1 < q["RedrivePolicy"]["maxReceiveCount"] <= 5
        assert q["SqsManagedSseEnabled"] is True
        ((rule_id, _),) = by_queue[queue]
        rule = template["Resources"][rule_id]["Properties"]
        (target,) = rule["Targets"]
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [failure_queue, "Arn"]}}
        # Only that rule may send to the queues.
        (policy,) = [r["Properties"] for r in template["Resources"].values()
                     if r["Type"] == "AWS::SQS::QueuePolicy" and {"Ref": queue} in r["Properties"]["Queues"]]
        (st,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
        assert st["Principal"] == {"Service": "events.amazonaws.com"} and st["Action"] == "sqs:SendMessage"
        assert st["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}}
    assert len(queues) == 2


def test_the_concurrency_bound_is_a_parameter_sqs_accepts(template):
    p = template["Parameters"]
    assert p["EventConcurrency"]["MinValue"] == 2  # SQS event sources: 2 to 1000
    assert p["EventConcurrency"]["MaxValue"] == 1000
    assert 1 <= p["EventBatchSize"]["MinValue"] <= p["EventBatchSize"]["MaxValue"] <= 10


# --- the matcher itself -------------------------------------------------------------------------


def test_matcher_exact_values_nested_and_case_sensitive():
    p = {"source": ["aws.ec2"], "detail": {"State": ["available", "failed"]}}
    assert matches(p, {"source": "aws.ec2", "detail": {"State": "failed", "Other": 1}})
    assert not matches(p, {"source": "aws.ec2", "detail": {"State": "Failed"}})
    assert not matches(p, {"source": "aws.ec2", "detail": {"state": "failed"}})
    assert not matches(p, {"Source": "aws.ec2", "detail": {"State": "failed"}})
    assert not matches(p, {"source": "aws.ec2"})
    assert not matches(p, {"source": "aws.ec2", "detail": "available"})
    assert not matches(p, {"source": "aws.ec2", "detail": {"State": {"x": "available"}}})


def test_matcher_arrays_in_the_event_and_json_types():
    assert matches({"resources": ["a"]}, {"resources": ["b", "a"]})
    assert not matches({"resources": ["a"]}, {"resources": []})
    assert not matches({"n": [1]}, {"n": "1"})
    assert not matches({"n": [1]}, {"n": True})
    assert matches({"n": [None]}, {"n": None})


@pytest.mark.parametrize(
    "pattern",
    [
        {"detail": {"State": [{"prefix": "avail"}]}},
        {"detail": {"State": "available"}},
        {"detail": {"State": []}},
        {"$or": [{"a": ["b"]}]},
        {},
    ],
)
def test_matcher_refuses_what_it_does_not_know(pattern):
    with pytest.raises(UnsupportedPattern):
        matches(pattern, {"detail": {"State": "available"}, "a": "b"})
