"""The CloudWatch alarms a run is gated on, read with DescribeAlarms (paginated)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def alarm_states(cloudwatch: Any, names: Sequence[str]) -> dict[str, str]:
    """State of each named alarm; a name CloudWatch does not know maps to "MISSING",
    so a gate can refuse to pass on an alarm that was deleted or mistyped."""
    if not names:
        return {}
    found = {name: "MISSING" for name in names}
    names = list(names)
    for start in range(0, len(names), 100):  # AlarmNames takes at most 100
        paginator = cloudwatch.get_paginator("describe_alarms")
        for page in paginator.paginate(AlarmNames=names[start : start + 100]):
            for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                found[alarm["AlarmName"]] = alarm["StateValue"]
    return found


def not_ok(cloudwatch: Any, names: Sequence[str]) -> dict[str, str]:
    """The named alarms that are not OK (ALARM, INSUFFICIENT_DATA or MISSING)."""
    return {name: state for name, state in alarm_states(cloudwatch, names).items() if state != "OK"}
