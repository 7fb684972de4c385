"""`ops sandbox fault set alarm`: a CloudWatch alarm named in settings goes to ALARM in moto."""

from __future__ import annotations

from typing import Any

import boto3

from tests.support.sandbox import SandboxSession


def _states(session: SandboxSession) -> dict[str, str]:
    env = session.env
    cloudwatch: Any = boto3.client(
        "cloudwatch",
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
    )
    alarms = cloudwatch.describe_alarms()["MetricAlarms"]
    return {a["AlarmName"]: a["StateValue"] for a in alarms}


def test_alarm_fault_sets_and_clear_resets_the_alarm(sandbox: SandboxSession) -> None:
    assert _states(sandbox) == {"sandbox-5xx": "OK"}  # created at up from alarm_names

    done = sandbox.ops("sandbox", "fault", "set", "alarm", "--param", "name=sandbox-5xx")
    assert done.returncode == 0, done.stderr
    assert _states(sandbox) == {"sandbox-5xx": "ALARM"}

    cleared = sandbox.ops("sandbox", "fault", "clear")
    assert cleared.returncode == 0, cleared.stderr
    assert _states(sandbox) == {"sandbox-5xx": "OK"}

    served = sandbox.ops("--output", "json", "sandbox", "calls", "--operation", "SetAlarmState")
    assert served.stdout.count('"SetAlarmState"') >= 3  # created OK, ALARM, cleared


def test_alarm_fault_refuses_what_it_cannot_do(sandbox: SandboxSession) -> None:
    unknown = sandbox.ops("sandbox", "fault", "set", "alarm", "--param", "name=no-such-alarm")
    assert unknown.returncode == 2
    assert "no CloudWatch alarm named 'no-such-alarm'" in unknown.stderr
    assert "sandbox-5xx" in unknown.stderr
    unnamed = sandbox.ops("sandbox", "fault", "set", "alarm")
    assert unnamed.returncode == 2 and "name=ALARM_NAME" in unnamed.stderr
    scoped = sandbox.ops(
        "sandbox", "fault", "set", "alarm", "--fraction", "0.5", "--param", "name=sandbox-5xx"
    )
    assert scoped.returncode == 2 and "no --instance or --fraction" in scoped.stderr
    assert _states(sandbox) == {"sandbox-5xx": "OK"}
