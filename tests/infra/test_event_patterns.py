"""The template's EventBridge rules against every fixture in events/ (events/README.md's table)."""

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


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def rules(template: dict) -> dict[str, list[dict]]:
    """{function: [event pattern, ...]} for every EventBridgeRule event source."""
    out: dict[str, list[dict]] = {}
    for name, (_, res) in cfn.functions(template).items():
        for event in res["Properties"].get("Events", {}).values():
            if event["Type"] in ("EventBridgeRule", "CloudWatchEvent"):
                out.setdefault(name, []).append(event["Properties"]["Pattern"])
    return out


def receivers(all_rules: dict[str, list[dict]], event: dict) -> set[str]:
    return {fn for fn, patterns in all_rules.items() if any(matches(p, event) for p in patterns)}


def test_every_fixture_is_classified():
    # A new file in events/ must be added to the table above (and to events/README.md).
    on_disk = {p.name for p in EVENTS.glob("*.json")}
    assert on_disk == set(EXPECTED) | SCHEDULE_INPUTS


def test_each_event_function_has_exactly_one_rule_and_the_sweeper_none(template):
    all_rules = rules(template)
    assert {fn: len(p) for fn, p in all_rules.items()} == {OIA: 1, OCC: 1}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rule_matrix(template, name):
    assert receivers(rules(template), load_event(name)) == EXPECTED[name]


def test_patterns_are_exactly_the_documented_ones(template):
    # The patterns, spelled out: source, detail-type and the case-sensitive detail.State.
    base = {"source": ["aws.ec2"], "detail-type": ["EC2 AMI State Change"]}
    assert rules(template) == {
        OIA: [{**base, "detail": {"State": ["available"]}}],
        OCC: [{**base, "detail": {"State": ["available", "failed"]}}],
    }


def test_lowercase_state_event_reaches_no_rule(template):
    event = load_event("malformed-lowercase-state.json")
    for fn, patterns in rules(template).items():
        for pattern in patterns:
            assert not matches(pattern, event), f"{fn}'s rule matched detail.state (lowercase)"


def test_a_rule_on_lowercase_state_would_be_caught(template):
    # The classic mistake: `state` instead of `State`. Such a template must fail the matrix.
    broken = copy.deepcopy(template)
    for _, res in cfn.functions(broken).values():
        for event in res["Properties"].get("Events", {}).values():
            if event["Type"] == "EventBridgeRule":
                detail = event["Properties"]["Pattern"]["detail"]
                detail["state"] = detail.pop("State")
    broken_rules = rules(broken)
    failures = [n for n in EXPECTED if receivers(broken_rules, load_event(n)) != EXPECTED[n]]
    assert "image-available.json" in failures and "malformed-lowercase-state.json" in failures
    assert receivers(broken_rules, load_event("image-available.json")) == set()


@pytest.mark.parametrize("name", sorted(SCHEDULE_INPUTS))
def test_schedule_inputs_are_json_objects_not_events(name):
    value = load_event(name)
    assert isinstance(value, dict) and "detail-type" not in value and "source" not in value


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
