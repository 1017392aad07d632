"""What issue 5 asks of template.yaml, checked on the template itself (and against the Cargo
workspace, so a renamed binary cannot silently break `sam build`)."""

from __future__ import annotations

import re
import tomllib

import pytest

import cfn
from conftest import REPO

FUNCTIONS = ["on-image-available", "on-copy-complete", "nightly-sweeper"]


def java_full_match(pattern: str, value: str) -> bool:
    # CloudFormation AllowedPattern must match the whole value; the patterns used here mean the
    # same in Java and Python regex syntax.
    return re.fullmatch(pattern, value) is not None


def test_the_three_functions_and_nothing_else(template):
    assert sorted(cfn.functions(template)) == sorted(FUNCTIONS)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_build_metadata_matches_the_cargo_workspace(template, name):
    _, res = cfn.functions(template)[name]
    assert res["Metadata"]["BuildMethod"] == "rust-cargolambda"
    assert res["Metadata"]["BuildProperties"] == {"Binary": name}
    assert res["Properties"]["CodeUri"] == "."  # the workspace root: one shared target/
    workspace = tomllib.loads((REPO / "Cargo.toml").read_text())
    assert f"functions/{name}" in workspace["workspace"]["members"]
    manifest = tomllib.loads((REPO / "functions" / name / "Cargo.toml").read_text())
    bins = [b["name"] for b in manifest.get("bin", [])] or [manifest["package"]["name"]]
    assert name in bins, f"functions/{name}/Cargo.toml builds no binary named {name}"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_runtime_logging_and_limits(template, name):
    _, res = cfn.functions(template)[name]
    props = cfn.function_properties(template, res)
    assert props["Runtime"] == "provided.al2023"
    assert props["Handler"] == "bootstrap"
    assert props["Architectures"] == [{"Ref": "Architecture"}]
    logging = props["LoggingConfig"]
    assert logging["LogFormat"] == "JSON"
    assert logging["ApplicationLogLevel"] == {"Ref": "LogLevel"}
    group = cfn.ref_target(template, logging["LogGroup"])
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert 128 <= props["MemorySize"] <= 10240
    assert 1 <= props["Timeout"] <= 900
    if name == "nightly-sweeper":
        assert 850 <= props["Timeout"] <= 900  # near Lambda's 15 minutes


@pytest.mark.parametrize("name", FUNCTIONS)
def test_environment_is_the_functions_contract(template, name):
    _, res = cfn.functions(template)[name]
    env = dict(cfn.function_properties(template, res)["Environment"]["Variables"])
    # The event functions' concurrency bound (tests/infra/test_event_patterns.py pins it).
    if name != "nightly-sweeper":
        assert env.pop("AMI_SHARE_EVENT_CONCURRENCY") == {"Ref": "EventConcurrency"}
    else:
        # The HMAC key its marks are signed with (issue 25; tests/infra/test_iam.py).
        assert env.pop("AMI_SHARE_MARK_KEY_ID") == {"Fn::GetAtt": ["MarkKey", "Arn"]}
    if name == "on-image-available":
        # The target line it reads and writes (issue 26).
        assert env.pop("AMI_SHARE_TARGET_LINE") == {"Fn::GetAtt": ["TargetLine", "QueueName"]}
    assert env == {
        "AMI_SHARE_POLICY": {"Fn::If": ["PolicyInLayer", {"Ref": "AWS::NoValue"}, {"Ref": "Policy"}]},
        "AMI_SHARE_POLICY_FILE": {"Fn::If": ["PolicyInLayer", "/opt/ami-share/policy.json", {"Ref": "AWS::NoValue"}]},
        "AMI_SHARE_ORG_ROLE_ARN": {"Fn::If": ["HasOrgRole", {"Ref": "OrgRoleArn"}, {"Ref": "AWS::NoValue"}]},
        "AMI_SHARE_TARGET_ROLE_NAME": {
            "Fn::If": ["HasTargetRole", {"Ref": "TargetAccountRoleName"}, {"Ref": "AWS::NoValue"}]},
        # The copies' waiting line, the same name in every Region (issue 26).
        "AMI_SHARE_COPY_LINE": {"Fn::Sub": "${AWS::StackName}-copy-line.fifo"},
    }
    # exactly one policy source, whichever way the Policy parameter is set
    for in_layer in (True, False):
        resolved = cfn.resolve_ifs(env, {"HasOrgRole": False, "PolicyInLayer": in_layer, "HasTargetRole": False})
        assert ("AMI_SHARE_POLICY_FILE" in resolved) == in_layer
        assert ("AMI_SHARE_POLICY" in resolved) != in_layer
    # without a role the variable is absent, not empty
    unset = cfn.resolve_ifs(env, {"HasOrgRole": False, "PolicyInLayer": True, "HasTargetRole": False})
    assert "AMI_SHARE_ORG_ROLE_ARN" not in unset and "AMI_SHARE_TARGET_ROLE_NAME" not in unset


def test_log_groups_are_distinct(template):
    groups = [
        cfn.function_properties(template, res)["LoggingConfig"]["LogGroup"]["Ref"]
        for _, res in cfn.functions(template).values()
    ]
    assert len(set(groups)) == 3


@pytest.mark.parametrize("name", FUNCTIONS)
def test_failures_go_to_an_encrypted_queue_of_its_own(template, name):
    _, res = cfn.functions(template)[name]
    if name == "nightly-sweeper":
        cfg = res["Properties"]["EventInvokeConfig"]
        assert 0 <= cfg["MaximumRetryAttempts"] <= 2
        assert 60 <= cfg["MaximumEventAgeInSeconds"] <= 21600
        assert cfg["DestinationConfig"]["OnFailure"]["Type"] == "SQS"
    queue = template["Resources"][cfn.failure_queue(template, res)]
    assert queue["Type"] == "AWS::SQS::Queue"
    qp = queue["Properties"]
    assert qp.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in qp
    assert qp["MessageRetentionPeriod"] == 1209600  # 14 days, SQS's longest


def test_one_failure_queue_per_function(template):
    queues = {cfn.failure_queue(template, res) for _, res in cfn.functions(template).values()}
    assert len(queues) == 3


def _alarms(template):
    """The alarms on one metric (the metric-math alarms are tested on their own)."""
    return [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and "Metrics" not in r["Properties"]
    ]


def test_an_alarm_on_every_image_not_distributed(template):
    """Failed or refused outcomes of either event function: the EMF metric AmiShare/Undistributed
    (shared/src/metrics.rs; functions/on-image-available/tests/handler.rs proves a refused image
    raises it), summed over both functions, to the same topic as the other alarms."""
    alarm = template["Resources"]["UndistributedImagesAlarm"]["Properties"]
    stats = [m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m]
    assert {(s["Metric"]["Namespace"], s["Metric"]["MetricName"], s["Stat"]) for s in stats} == {("AmiShare", "Undistributed", "Sum")}
    fns = {s["Metric"]["Dimensions"][0]["Value"]["Ref"] for s in stats}
    assert fns == {"OnImageAvailableFunction", "OnCopyCompleteFunction"}
    assert all(s["Metric"]["Dimensions"][0]["Name"] == "Function" for s in stats)
    [total] = [m for m in alarm["Metrics"] if m.get("ReturnData")]
    assert total["Expression"] == "SUM(METRICS())"
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == {"Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]}


def test_a_dashboard_of_the_three_functions(template):
    import json as _json

    dash = template["Resources"]["Dashboard"]["Properties"]
    body, names = dash["DashboardBody"]["Fn::Sub"]
    assert names == {
        "ImageFn": {"Ref": "OnImageAvailableFunction"},
        "CopyFn": {"Ref": "OnCopyCompleteFunction"},
        "SweepFn": {"Ref": "NightlySweeperFunction"},
    }
    # valid JSON once substituted, and every widget draws something
    text = body
    for k in ("ImageFn", "CopyFn", "SweepFn"):
        text = text.replace("${" + k + "}", k)
    text = text.replace("${AWS::Region}", "us-east-1")
    widgets = _json.loads(text)["widgets"]
    assert len(widgets) >= 5 and all(w["properties"]["metrics"] for w in widgets)
    drawn = _json.dumps(widgets)
    for metric in ("Undistributed", "Invocations", "Duration", "Errors", "SnapshotsDeleted"):
        assert metric in drawn, metric


def test_alarms_on_every_queue_and_on_every_functions_errors(template):
    alarms = _alarms(template)
    watched = {(a["Namespace"], a["MetricName"], str(a["Dimensions"][0]["Value"])) for a in alarms}
    for name, (logical_id, res) in cfn.functions(template).items():
        queue = cfn.failure_queue(template, res)
        assert ("AWS/Lambda", "Errors", str({"Ref": logical_id})) in watched, name
        assert (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            str({"Fn::GetAtt": [queue, "QueueName"]}),
        ) in watched, name
    for a in alarms:
        if a["MetricName"] == "OldestCopyWaitSeconds":
            continue  # a duration (test_the_copy_line)
        assert a["Threshold"] == 1 and a["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_notifications_only_when_an_email_is_given(template):
    assert template["Conditions"]["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    topics = {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::SNS::Topic"}
    assert list(topics) == ["AlarmTopic"] and topics["AlarmTopic"]["Condition"] == "HasAlarmEmail"
    for a in _alarms(template):
        assert a["AlarmActions"] == {"Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]}
    for name, out in template["Outputs"].items():
        if "AlarmTopic" in str(out["Value"]):
            assert out.get("Condition") == "HasAlarmEmail", name


PARAMETER_SAMPLES = {
    # parameter: (accepted values, refused values)
    "Policy": (['', '{"rules":[]}', ' {\n "rules": [] }\n'], ["[]", "rules", '{"a":1'],),
    "OrgRoleArn": (
        ["", "arn:aws:iam::123456789012:role/ami-share-organizations-read",
         "arn:aws-us-gov:iam::123456789012:role/path/name"],
        ["x", "arn:aws:iam::12345:role/r", "arn:aws:iam::123456789012:user/u", " arn:aws:iam::123456789012:role/r"],
    ),
    "SweeperSchedule": (
        ["cron(30 3 * * ? *)", "cron(0 2 ? * SUN *)", "rate(1 day)", "rate(12 hours)"],
        ["", "cron()", "0 3 * * *", "rate(0 days)", "at(2026-01-01T00:00:00)"],
    ),
    "SweeperTimezone": (["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Etc/GMT+5"], ["", "Europe Paris", "/UTC"]),
    "AlarmEmail": (["", "ops@example.com", "a.b+c@d.example.org"], ["ops", "ops@", "@example.com", "a b@c.d"]),
}


@pytest.mark.parametrize("param", sorted(PARAMETER_SAMPLES))
def test_parameter_validation(template, param):
    spec = template["Parameters"][param]
    good, bad = PARAMETER_SAMPLES[param]
    pattern = spec["AllowedPattern"]
    assert "ConstraintDescription" in spec
    if "Default" in spec:
        assert java_full_match(pattern, spec["Default"]), f"{param}'s default breaks its own pattern"
    for value in good:
        assert java_full_match(pattern, value), f"{param} should accept {value!r}"
    for value in bad:
        assert not java_full_match(pattern, value), f"{param} should refuse {value!r}"


def test_choice_parameters(template):
    params = template["Parameters"]
    assert params["Architecture"]["Default"] == "arm64"
    assert params["Architecture"]["AllowedValues"] == ["arm64", "x86_64"]
    assert params["LogLevel"]["Default"] in params["LogLevel"]["AllowedValues"]
    assert set(params["LogLevel"]["AllowedValues"]) <= {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
    assert params["LogRetentionDays"]["Default"] in params["LogRetentionDays"]["AllowedValues"]
    assert params["Policy"]["MaxLength"] <= 3800  # Lambda: 4 KB of environment in total
    for name in ("OrgRoleArn", "AlarmEmail"):
        assert params[name]["Default"] == ""  # optional


def _queue_policies(template):
    """{queue logical id: [statements of the queue policies naming it]}."""
    out = {}
    for res in template["Resources"].values():
        if res["Type"] != "AWS::SQS::QueuePolicy":
            continue
        for q in res["Properties"]["Queues"]:
            out.setdefault(q["Ref"], []).extend(res["Properties"]["PolicyDocument"]["Statement"])
    return out


def test_every_queue_denies_requests_without_tls(template):
    # Issue 25: every queue refuses plain HTTP, for every principal and action.
    queues = [rid for rid, r in template["Resources"].items() if r["Type"] == "AWS::SQS::Queue"]
    policies = _queue_policies(template)
    assert len(queues) == 7
    for q in queues:
        denies = [
            s for s in policies.get(q, [])
            if s["Effect"] == "Deny" and s["Principal"] == "*" and s["Action"] == "sqs:*"
            and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert len(denies) == 1, q
        resources = denies[0]["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        assert {"Fn::GetAtt": [q, "Arn"]} in resources, q


def test_the_sweepers_failure_queue_takes_no_redrive(template):
    # The event queues' failure queues are their redrive targets (a RedriveAllowPolicy naming
    # the source queue would make the two queues depend on each other); the sweeper's takes
    # only Lambda's failure destination, never a redrive.
    _, res = cfn.functions(template)["nightly-sweeper"]
    queue = cfn.failure_queue(template, res)
    assert template["Resources"][queue]["Properties"]["RedriveAllowPolicy"] == {"redrivePermission": "denyAll"}


def test_the_copy_line(template):
    """Issue 26: a FIFO queue per Region that copies wait in, read by the functions themselves
    (no event source mapping, no redrive: an entry is received once per drain while it waits),
    drained by on-copy-complete once a minute, with an alarm on the oldest wait."""
    res = template["Resources"]
    line = res["CopyLine"]["Properties"]
    assert line["QueueName"] == {"Fn::Sub": "${AWS::StackName}-copy-line.fifo"}
    assert line["FifoQueue"] is True and line["ContentBasedDeduplication"] is False
    assert line["SqsManagedSseEnabled"] is True
    assert "RedrivePolicy" not in line
    assert line["VisibilityTimeout"] > 60  # longer than a drain (shared/src/copy/line.rs DRAIN_BUDGET)
    assert line["MessageRetentionPeriod"] == 1209600
    for _, fn in cfn.functions(template).values():
        assert cfn.event_queue(template, fn) != "CopyLine"
    timer = res["CopyLineTimer"]["Properties"]
    assert timer["ScheduleExpression"] == "rate(1 minute)"
    (target,) = timer["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["OnCopyCompleteFunction", "Arn"]}
    perm = res["CopyLineTimerPermission"]["Properties"]
    assert perm["FunctionName"] == {"Ref": "OnCopyCompleteFunction"}
    assert perm["Principal"] == "events.amazonaws.com"
    assert perm["SourceArn"] == {"Fn::GetAtt": ["CopyLineTimer", "Arn"]}
    alarm = res["CopyWaitingAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AmiShare", "OldestCopyWaitSeconds", "Maximum")
    assert alarm["Dimensions"] == [{"Name": "Region", "Value": {"Ref": "AWS::Region"}}]
    assert alarm["Threshold"] == {"Ref": "CopyWaitAlarmSeconds"}
    assert template["Parameters"]["CopyWaitAlarmSeconds"]["Default"] == 21600  # 6 h
    assert alarm["TreatMissingData"] == "notBreaching"
    body = res["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][0]
    for metric in ("CopiesWaiting", "OldestCopyWaitSeconds", "CopyWaitSeconds", "CopiesStartedFromLine"):
        assert metric in body, metric


def test_the_target_line(template):
    """Issue 26: copies into target accounts wait and are followed in a queue on-image-available
    reads (bounded like its events, partial batch responses) and writes; a message failing
    three times moves to its failure queue."""
    res = template["Resources"]
    q = res["TargetLine"]["Properties"]
    assert q["QueueName"] == {"Fn::Sub": "${AWS::StackName}-target-line"}
    assert "FifoQueue" not in q  # per-message delays
    assert q["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["OnImageAvailableFailureQueue", "Arn"]}, "maxReceiveCount": 3}
    assert q["VisibilityTimeout"] >= 6 * 300
    _, fn = cfn.functions(template)["on-image-available"]
    ev = fn["Properties"]["Events"]["TargetLine"]
    assert ev["Type"] == "SQS"
    assert ev["Properties"]["Queue"] == {"Fn::GetAtt": ["TargetLine", "Arn"]}
    assert ev["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert ev["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "EventConcurrency"}}
