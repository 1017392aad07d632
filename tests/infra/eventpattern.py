"""A small EventBridge event-pattern matcher: exactly the subset this project's rules use.

Supported: nested objects, arrays of exact values (strings, numbers, booleans, null), matched
case-sensitively against scalars or against arrays in the event (any element). Anything else
(content filters such as prefix / anything-but / exists / numeric, `$or`) raises
UnsupportedPattern, so a rule that starts using one fails the tests loudly instead of being
judged by rules this matcher does not know.
"""

from __future__ import annotations

from typing import Any


class UnsupportedPattern(ValueError):
    pass


def _same(a: Any, b: Any) -> bool:
    # JSON semantics: "1" != 1 and true != 1 (Python would say True == 1).
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _leaf_matches(allowed: list[Any], value: Any) -> bool:
    for candidate in allowed:
        if isinstance(candidate, (dict, list)):
            raise UnsupportedPattern(f"content filter {candidate!r} is not supported by this matcher")
    values = value if isinstance(value, list) else [value]
    return any(_same(a, v) for a in allowed for v in values)


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    if not isinstance(pattern, dict) or not pattern:
        raise UnsupportedPattern(f"a pattern must be a non-empty object, not {pattern!r}")
    for key, expected in pattern.items():
        if key.startswith("$"):
            raise UnsupportedPattern(f"{key} is not supported by this matcher")
        if key not in event:  # keys are case-sensitive: "state" is not "State"
            return False
        actual = event[key]
        if isinstance(expected, dict):
            if not isinstance(actual, dict) or not matches(expected, actual):
                return False
        elif isinstance(expected, list):
            if not expected:
                raise UnsupportedPattern(f"empty array for {key!r} matches nothing")
            if isinstance(actual, dict) or not _leaf_matches(expected, actual):
                return False
        else:
            raise UnsupportedPattern(f"{key!r}: leaf values must be arrays, not {expected!r}")
    return True
