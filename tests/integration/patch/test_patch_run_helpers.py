"""The helpers a patch run calls, against the session sandbox: drain and register with
the ELBv2 waiters, the alarm gate, and reboot-and-wait through SSM."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from ops.transports import alarms, elb, reboot
from tests.support.patch_sandbox import client
from tests.support.sandbox import SandboxSession


def _host(session: SandboxSession, role: str) -> dict[str, Any]:
    hosts = session.status["hosts"]
    assert isinstance(hosts, list)
    return next(h for h in hosts if h["role"] == role and h["platform"] == "debian")


def test_drain_then_register_with_the_waiters(sandbox: SandboxSession) -> None:
    elbv2 = client(sandbox, "elbv2")
    web = _host(sandbox, "web")
    [arn] = elb.target_group_arns(elbv2, ["web"])
    members = elb.memberships(elbv2, web["instance_id"], [arn])
    assert members == [elb.Membership(arn, web["app_port"])]
    elb.register(elbv2, web["instance_id"], members, delay=1, max_attempts=60)  # healthy first
    healthy = elb.healthy_count(elbv2, arn)

    # one poll cannot see a 5 s drain finish: the waiter gives up and says so
    with pytest.raises(elb.DrainTimeout, match="target_deregistered not reached"):
        elb.drain(elbv2, web["instance_id"], members, delay=1, max_attempts=1)
    assert elb.memberships(elbv2, web["instance_id"], [arn]) == []  # draining is not a member
    assert elb.healthy_count(elbv2, arn) == healthy - 1
    elb.register(elbv2, web["instance_id"], members, delay=1, max_attempts=60)
    assert elb.healthy_count(elbv2, arn) == healthy

    elb.drain(elbv2, web["instance_id"], members, delay=1, max_attempts=60)
    state = elbv2.describe_target_health(
        TargetGroupArn=arn, Targets=[{"Id": web["instance_id"], "Port": web["app_port"]}]
    )["TargetHealthDescriptions"][0]["TargetHealth"]["State"]
    assert state == "unused"
    elb.register(elbv2, web["instance_id"], members, delay=1, max_attempts=60)
    assert elb.healthy_count(elbv2, arn) == healthy


def test_alarm_gate_reads_ok_alarm_and_missing(sandbox: SandboxSession) -> None:
    cloudwatch = client(sandbox, "cloudwatch")
    assert alarms.not_ok(cloudwatch, ["sandbox-5xx"]) == {}
    assert alarms.not_ok(cloudwatch, ["no-such"]) == {"no-such": "MISSING"}
    done = sandbox.ops("sandbox", "fault", "set", "alarm", "--param", "name=sandbox-5xx")
    assert done.returncode == 0, done.stderr
    try:
        assert alarms.not_ok(cloudwatch, ["sandbox-5xx"]) == {"sandbox-5xx": "ALARM"}
    finally:
        sandbox.ops("sandbox", "fault", "clear")
    assert alarms.alarm_states(cloudwatch, []) == {}


def _started_at(container: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", "{{.State.StartedAt}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_reboot_and_wait_sees_a_new_boot(sandbox: SandboxSession) -> None:
    ssm = client(sandbox, "ssm")
    worker = _host(sandbox, "worker")
    started = _started_at(worker["container"])
    done = reboot.reboot_and_wait(ssm, worker["instance_id"], timeout=180, poll=1)
    assert done.boot_before and done.boot_after and done.boot_before != done.boot_after
    assert _started_at(worker["container"]) != started  # the container really restarted
    assert reboot.boot_id(ssm, worker["instance_id"]) == done.boot_after
