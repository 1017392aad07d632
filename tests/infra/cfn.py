"""Reading CloudFormation/SAM templates the way the tests need them.

`load(path)` understands the short-form intrinsic tags (!Ref, !Sub, !GetAtt, !If, ...) and returns
plain dicts in their long form ({"Ref": ...}, {"Fn::If": [...]}), so tests can look inside them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml


class _CfnLoader(yaml.SafeLoader):
    pass


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_CfnLoader)


def resolve_ifs(value: Any, conditions: dict[str, bool]) -> Any:
    """A copy of `value` with every Fn::If replaced by the branch `conditions` selects, and
    AWS::NoValue removed from lists and maps, as CloudFormation would do."""
    no_value = object()

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            if set(v) == {"Fn::If"}:
                name, when_true, when_false = v["Fn::If"]
                return walk(when_true if conditions[name] else when_false)
            if v == {"Ref": "AWS::NoValue"}:
                return no_value
            out = {k: walk(x) for k, x in v.items()}
            return {k: x for k, x in out.items() if x is not no_value}
        if isinstance(v, list):
            return [x for x in (walk(i) for i in v) if x is not no_value]
        return v

    return walk(copy.deepcopy(value))


def functions(template: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """{binary name: (logical id, resource)} for every AWS::Serverless::Function."""
    out = {}
    for logical_id, res in template["Resources"].items():
        if res["Type"] == "AWS::Serverless::Function":
            binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
            assert binary, f"{logical_id} has no Metadata.BuildProperties.Binary"
            out[binary] = (logical_id, res)
    return out


def function_properties(template: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    """The function's properties with Globals.Function applied as SAM does: maps merged
    recursively (so Environment.Variables add up), the function's value wins."""

    def merge(base: dict[str, Any], local: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(base)
        for key, value in local.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
        return out

    return merge(template.get("Globals", {}).get("Function", {}), resource["Properties"])


def ref_target(template: dict[str, Any], value: Any) -> dict[str, Any]:
    """The resource a {"Ref": X} or {"Fn::GetAtt": [X, ...]} points at."""
    assert isinstance(value, dict) and len(value) == 1, f"not a Ref/GetAtt: {value!r}"
    if "Ref" in value:
        name = value["Ref"]
    else:
        name = value["Fn::GetAtt"][0]
    assert name in template["Resources"], f"{value!r} points at no resource"
    return template["Resources"][name]


def event_queue(template: dict[str, Any], res: dict[str, Any]) -> str | None:
    """The logical id of the SQS queue a function is invoked from (its SQS event source)."""
    for event in res["Properties"].get("Events", {}).values():
        if event["Type"] == "SQS":
            return event["Properties"]["Queue"]["Fn::GetAtt"][0]
    return None


def failure_queue(template: dict[str, Any], res: dict[str, Any]) -> str:
    """The logical id of a function's failure queue: its queue's redrive target (the event
    functions) or its OnFailure destination (the sweeper)."""
    queue = event_queue(template, res)
    if queue is not None:
        return template["Resources"][queue]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    return res["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
