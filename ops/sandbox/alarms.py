"""The CloudWatch alarms a rollout's gate watches, as the sandbox keeps them in moto.

`up` creates every alarm named in the environment's `alarm_names`, in state
OK, on the load balancer's 5xx count (nothing feeds that metric here, so an
alarm changes state only when a test or an operator says so). `ops sandbox
fault set alarm --param name=NAME` puts one in ALARM through CloudWatch's own
SetAlarmState, exactly as a gate will see it in production; `fault clear`
puts every sandbox alarm back to OK.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3

from ops.errors import BadInput

STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")


def _cloudwatch(env: Mapping[str, str]) -> Any:
    return boto3.client(
        "cloudwatch",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def create_alarms(env: Mapping[str, str], names: list[str], load_balancer: str = "") -> None:
    cloudwatch = _cloudwatch(env)
    for name in names:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            AlarmDescription="fleetops sandbox: a rollout gate",
            Namespace="AWS/ApplicationELB",
            MetricName="HTTPCode_Target_5XX_Count",
            Dimensions=[{"Name": "LoadBalancer", "Value": load_balancer or "fleetops-sandbox"}],
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=10,
            ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching",
        )
        set_state(env, name, "OK", "created by the sandbox")


def set_state(env: Mapping[str, str], name: str, state: str, reason: str) -> None:
    """Set one alarm's state; an alarm CloudWatch does not have is the caller's bad input."""
    if state not in STATES:
        raise BadInput(f"alarm state {state!r} is not one of {', '.join(STATES)}")
    cloudwatch = _cloudwatch(env)
    found = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    if not found:
        known = [a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"]]
        raise BadInput(
            f"no CloudWatch alarm named {name!r}; the sandbox has: {', '.join(known) or 'none'}"
        )
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)


def states(env: Mapping[str, str], names: list[str]) -> dict[str, str]:
    """Each named alarm's state (a name CloudWatch does not know is left out)."""
    if not names:
        return {}
    paginator = _cloudwatch(env).get_paginator("describe_alarms")
    found: dict[str, str] = {}
    for page in paginator.paginate(AlarmNames=names):
        found.update({a["AlarmName"]: a["StateValue"] for a in page["MetricAlarms"]})
    return found
