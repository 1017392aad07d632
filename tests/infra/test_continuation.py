"""Issue 10: the continuation engine. The schedule starts a state machine that invokes the
sweeper again while its report says `more`, with a bound on rounds. The definition is walked
here by a small interpreter of the states it uses, with a stand-in sweeper."""

from __future__ import annotations

import json

import pytest

import cfn
from conftest import EVENTS


def machine(template: dict) -> tuple[str, dict]:
    (found,) = [(k, r) for k, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::StateMachine"]
    return found


def path(doc: dict, p: str):
    assert p.startswith("$")
    cur = doc
    for part in [x for x in p[2:].split(".") if x]:
        cur = cur[part]
    return cur


def parameters(spec: dict, doc: dict) -> dict:
    out = {}
    for k, v in spec.items():
        if k.endswith(".$"):
            if v.startswith("States.MathAdd("):
                a, b = v[len("States.MathAdd("):-1].split(",")
                out[k[:-2]] = path(doc, a.strip()) + int(b.strip())
            else:
                out[k[:-2]] = path(doc, v)
        else:
            out[k] = v
    return out


def choice_holds(rule: dict, doc: dict) -> bool:
    if "And" in rule:
        return all(choice_holds(r, doc) for r in rule["And"])
    value = path(doc, rule["Variable"])
    if "BooleanEquals" in rule:
        return value is rule["BooleanEquals"]
    if "NumericLessThan" in rule:
        return value < rule["NumericLessThan"]
    raise AssertionError(f"operator not modelled: {rule}")


def execute(definition: dict, execution_input: dict, sweeper) -> list[dict]:
    """Run the definition; `sweeper(payload)` answers each invocation. Returns the payloads."""
    calls, doc, name = [], json.loads(json.dumps(execution_input)), definition["StartAt"]
    for _ in range(10_000):
        st = definition["States"][name]
        kind = st["Type"]
        if kind == "Task":
            assert st["Resource"] == "arn:aws:states:::lambda:invoke"
            params = parameters(st["Parameters"], doc)
            calls.append(params["Payload"])
            result = {"Payload": sweeper(params["Payload"])}
            selected = parameters(st["ResultSelector"], result)
            assert st["ResultPath"] == "$.result"
            doc = {**doc, "result": selected}
            name = st["Next"]
        elif kind == "Choice":
            name = next((c["Next"] for c in st["Choices"] if choice_holds(c, doc)), st["Default"])
        elif kind == "Wait":
            assert 0 < st["Seconds"] <= 300
            name = st["Next"]
        elif kind == "Pass":
            doc = parameters(st["Parameters"], doc)
            name = st["Next"]
        elif kind == "Succeed":
            return calls
        else:
            raise AssertionError(f"state type not modelled: {kind}")
    raise AssertionError("the state machine never ended")


def schedule_input(template: dict) -> dict:
    _, sm = machine(template)
    (schedule,) = [e["Properties"] for e in sm["Properties"]["Events"].values() if e["Type"] == "ScheduleV2"]
    return json.loads(schedule["Input"])


def test_the_schedule_starts_the_engine_not_the_function(template):
    _, sweeper = cfn.functions(template)["nightly-sweeper"]
    assert "Events" not in sweeper["Properties"], "the schedule must start the state machine"
    _, sm = machine(template)
    (schedule,) = [e["Properties"] for e in sm["Properties"]["Events"].values() if e["Type"] == "ScheduleV2"]
    assert schedule["ScheduleExpression"] == {"Ref": "SweeperSchedule"}
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["RetryPolicy"]["MaximumRetryAttempts"] <= 5
    queue = sweeper["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"]
    assert schedule["DeadLetterConfig"] == {"Arn": queue}
    doc = schedule_input(template)
    assert doc["round"] == 0
    assert doc["input"] == json.loads((EVENTS / "sweeper-scheduled.json").read_text())


def test_invokes_again_while_the_report_says_more_and_stops_when_done(template):
    _, sm = machine(template)
    definition = sm["Properties"]["Definition"]
    answers = iter([True, True, True, False])
    calls = execute(definition, schedule_input(template), lambda payload: {"more": next(answers), "mode": "report"})
    assert len(calls) == 4
    assert all(c == {} for c in calls), "every round gets the schedule's input"


def test_the_number_of_rounds_is_bounded(template):
    _, sm = machine(template)
    calls = execute(sm["Properties"]["Definition"], schedule_input(template), lambda payload: {"more": True})
    assert len(calls) == 24  # MAX_ROUNDS in template.yaml and the README
    assert sm["Properties"]["Definition"]["TimeoutSeconds"] <= 86400


def test_sweeper_invocations_are_bounded_and_transient_failures_retried(template):
    _, sm = machine(template)
    task = sm["Properties"]["Definition"]["States"]["Sweep"]
    assert task["TimeoutSeconds"] > 900  # never cuts the function's own 15 minutes short
    assert task["Parameters"]["FunctionName"] == "${SweeperArn}"
    assert sm["Properties"]["DefinitionSubstitutions"]["SweeperArn"] == {"Fn::GetAtt": ["NightlySweeperFunction", "Arn"]}
    retried = {e for r in task["Retry"] for e in r["ErrorEquals"]}
    assert "Transient.InventoryIncomplete" in retried and "Lambda.TooManyRequestsException" in retried
    assert all(r["MaxAttempts"] <= 3 for r in task["Retry"])


def test_the_engine_may_invoke_the_sweeper_and_nothing_else(template):
    _, sm = machine(template)
    role = cfn.ref_target(template, sm["Properties"]["Role"])
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    (policy,) = role["Properties"]["Policies"]
    (st,) = policy["PolicyDocument"]["Statement"]
    assert st["Action"] == "lambda:InvokeFunction"
    assert st["Resource"] == [{"Fn::GetAtt": ["NightlySweeperFunction", "Arn"]},
                              {"Fn::Sub": "${NightlySweeperFunction.Arn}:*"}]


@pytest.mark.parametrize("metric", ["ExecutionsFailed", "ExecutionsTimedOut"])
def test_failed_nights_alarm(template, metric):
    name, _ = machine(template)
    alarms = [r["Properties"] for r in template["Resources"].values()
              if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("MetricName") == metric]
    assert len(alarms) == 1
    assert alarms[0]["Namespace"] == "AWS/States"
    assert alarms[0]["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": name}}]
