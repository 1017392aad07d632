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


OWN = "arn:aws:states:us-east-1:123456789012:execution:stack-nightly-sweep:tonight"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:stack-nightly-sweep"
CONTEXT = {"Execution": {"Id": OWN}, "StateMachine": {"Id": MACHINE}}


def path(doc: dict, p: str):
    """A JSONPath of the forms the definition uses: `$.a.b`, `$$.a.b` (the context object),
    `$.list[*].field`."""
    if p.startswith("$$."):
        doc, p = CONTEXT, p[1:]
    assert p.startswith("$")
    cur = doc
    for part in [x for x in p[2:].split(".") if x]:
        if part.endswith("[*]"):
            cur = cur[part[:-3]]
            continue
        cur = [c[part] for c in cur] if isinstance(cur, list) else cur[part]
    return cur


def intrinsic(v: str, doc: dict):
    name, args = v.split("(", 1)
    args = [a.strip() for a in args[:-1].split(",")]
    if name == "States.MathAdd":
        return path(doc, args[0]) + int(args[1])
    if name == "States.ArrayLength":
        return len(path(doc, args[0]))
    if name == "States.ArrayContains":
        return path(doc, args[1]) in path(doc, args[0])
    if name == "States.JsonMerge":
        assert args[2] == "false", "a shallow merge"
        return {**path(doc, args[0]), **path(doc, args[1])}
    raise AssertionError(f"intrinsic not modelled: {v}")


def parameters(spec: dict, doc: dict) -> dict:
    out = {}
    for k, v in spec.items():
        if k.endswith(".$"):
            out[k[:-2]] = intrinsic(v, doc) if v.startswith("States.") else path(doc, v)
        else:
            out[k] = v
    return out


def choice_holds(rule: dict, doc: dict) -> bool:
    if "And" in rule:
        return all(choice_holds(r, doc) for r in rule["And"])
    if "Or" in rule:
        return any(choice_holds(r, doc) for r in rule["Or"])
    value = path(doc, rule["Variable"])
    if "BooleanEquals" in rule:
        return value is rule["BooleanEquals"]
    if "NumericLessThan" in rule:
        return value < rule["NumericLessThan"]
    if "NumericGreaterThanEquals" in rule:
        return value >= rule["NumericGreaterThanEquals"]
    raise AssertionError(f"operator not modelled: {rule}")


def result_into(st: dict, doc: dict, result: dict) -> dict:
    selected = parameters(st["ResultSelector"], result) if "ResultSelector" in st else result
    if st.get("ResultPath", "$") is None:
        return doc
    key = st["ResultPath"][2:]
    assert "." not in key
    return {**doc, key: selected}


def execute(definition: dict, execution_input: dict, sweeper, running=(OWN,), metrics=None) -> list[dict]:
    """Run the definition; `sweeper(payload)` answers each invocation, `running` is what
    ListExecutions(RUNNING) lists, `metrics` collects PutMetricData calls. Returns the payloads."""
    calls, doc, name = [], json.loads(json.dumps(execution_input)), definition["StartAt"]
    metrics = [] if metrics is None else metrics
    for _ in range(10_000):
        st = definition["States"][name]
        kind = st["Type"]
        if kind == "Task" and st["Resource"] == "arn:aws:states:::aws-sdk:sfn:listExecutions":
            params = parameters(st["Parameters"], doc)
            assert params["StateMachineArn"] == MACHINE and params["StatusFilter"] == "RUNNING"
            listed = list(running)[: params["MaxResults"]]
            doc = result_into(st, doc, {"Executions": [{"ExecutionArn": a, "StateMachineArn": MACHINE} for a in listed]})
            name = st["Next"]
        elif kind == "Task" and st["Resource"] == "arn:aws:states:::aws-sdk:cloudwatch:putMetricData":
            metrics.append(parameters(st["Parameters"], doc))
            doc = result_into(st, doc, {})
            name = st["Next"]
        elif kind == "Task":
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
    calls = execute(definition, schedule_input(template),
                    lambda payload: {"more": next(answers), "mode": "report", "carry": {}})
    assert len(calls) == 4
    assert all(c == {} for c in calls), "every round gets the schedule's input"


def test_what_a_round_carries_reaches_every_later_round(template):
    """The sweeper's `carry` (the consumers judged tonight) is merged into the next rounds'
    input, on top of the schedule's (or a manual start's) own input."""
    _, sm = machine(template)
    definition = sm["Properties"]["Definition"]
    answers = iter([
        {"more": True, "carry": {}},
        {"more": True, "carry": {"consumers_judged": True}},
        {"more": True, "carry": {"consumers_judged": True}},
        {"more": False, "carry": {"consumers_judged": True}},
    ])
    calls = execute(definition, {"input": {"mode": "report"}, "round": 0}, lambda payload: next(answers))
    assert calls == [
        {"mode": "report"},
        {"mode": "report"},
        {"mode": "report", "consumers_judged": True},
        {"mode": "report", "consumers_judged": True},
    ]


def test_the_number_of_rounds_is_bounded(template):
    _, sm = machine(template)
    calls = execute(sm["Properties"]["Definition"], schedule_input(template), lambda payload: {"more": True, "carry": {}})
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
    st, *others = policy["PolicyDocument"]["Statement"]
    assert [o["Sid"] for o in others] == ["ListTheseExecutions", "CountSkippedNights"]
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


def test_one_night_at_a_time(template):
    """A start while another execution runs is skipped and counted; its own listing (or its
    absence, the listing being eventually consistent) never makes a night skip itself."""
    _, sm = machine(template)
    definition = sm["Properties"]["Definition"]
    other = OWN.replace("tonight", "last-night")
    cases = {
        "only this execution running": ([OWN], 1),
        "this execution not listed yet, nothing else": ([], 1),
        "another night still running": ([other, OWN], 0),
        "another night, this one not listed yet": ([other], 0),
    }
    for what, (running, sweeps) in cases.items():
        metrics: list = []
        calls = execute(definition, schedule_input(template), lambda payload: {"more": False, "carry": {}},
                        running=running, metrics=metrics)
        assert len(calls) == sweeps, what
        skipped = [m for m in metrics if m["MetricData"][0]["MetricName"] == "NightsSkipped"]
        assert len(skipped) == 1 - sweeps, what
        if skipped:
            assert skipped[0]["Namespace"] == "AmiShare"
            assert skipped[0]["MetricData"][0]["Value"] == 1


def test_the_engine_may_list_only_its_own_executions_and_count_only_in_its_namespace(template):
    name, sm = machine(template)
    role = cfn.ref_target(template, sm["Properties"]["Role"])
    statements = {st["Sid"]: st for st in role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]}
    assert statements["ListTheseExecutions"]["Action"] == "states:ListExecutions"
    assert statements["ListTheseExecutions"]["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:" + sm["Properties"]["Name"]["Fn::Sub"]}
    assert statements["CountSkippedNights"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "AmiShare"}}
