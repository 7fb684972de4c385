"""The sandbox's package repository and its load balancer, as `up` leaves them.

Debian hosts install from the loopback archive with real apt; the Amazon
Linux hosts are stand-ins whose yum/dnf shims read the same archive's index.
Target health comes from real HTTP checks of each host's app port.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import boto3
import pytest

from ops.sandbox import packages
from ops.sandbox.hosts import reboot_host
from tests.support.sandbox import SandboxSession


def _elb(session: SandboxSession) -> Any:
    env = session.env
    return boto3.client(
        "elbv2",
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
    )


def _hosts(session: SandboxSession) -> list[dict[str, Any]]:
    hosts = session.status["hosts"]
    assert isinstance(hosts, list)
    return hosts


def _exec(container: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", container, *argv], capture_output=True, text=True, timeout=120
    )


def test_debian_hosts_start_on_the_old_versions_with_updates_pending(
    sandbox: SandboxSession,
) -> None:
    debian = [h for h in _hosts(sandbox) if h["platform"] == "debian"]
    assert debian
    names = [p.name for p in packages.PACKAGES]
    for host in debian:
        query = _exec(
            host["container"], "dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *names
        )
        assert query.returncode == 0, query.stderr
        assert sorted(query.stdout.split("\n")[:-1]) == sorted(f"{n} 1.0-1" for n in names)
        upgradable = _exec(host["container"], "apt", "list", "--upgradable").stdout
        assert f"fleetops-libsec/{packages.SECURITY_SUITE} 1.1-1" in upgradable
        assert f"fleetops-fresh/{packages.UPDATES_SUITE} 1.1-1" in upgradable


def test_standins_answer_updateinfo_from_the_same_repository(sandbox: SandboxSession) -> None:
    standins = [h for h in _hosts(sandbox) if h["platform"] in ("al2", "al2023")]
    assert standins
    for host in standins:
        tool = "yum" if host["platform"] == "al2" else "dnf"
        listing = _exec(host["container"], tool, "-q", "updateinfo", "list")
        assert listing.returncode == 0, listing.stderr
        security = [line for line in listing.stdout.splitlines() if "/Sec." in line]
        assert len(security) == 1 and "fleetops-libsec-1.1-1" in security[0]
        assert _exec(host["container"], "needs-restarting", "-r").returncode == 0


def _state(elb: Any, group: str, instance: str) -> str:
    reply = elb.describe_target_health(TargetGroupArn=group, Targets=[{"Id": instance}])
    return str(reply["TargetHealthDescriptions"][0]["TargetHealth"]["State"])


def _wait_state(elb: Any, group: str, instance: str, wanted: str, timeout: float) -> list[str]:
    """Poll until the target reaches `wanted`; every state seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _state(elb, group, instance)
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == wanted:
            return seen
        time.sleep(0.5)
    pytest.fail(f"{instance} never became {wanted}; seen {seen}")


def test_target_health_follows_the_app_port_and_deregistration_drains(
    sandbox: SandboxSession,
) -> None:
    elb = _elb(sandbox)
    group = elb.describe_target_groups(Names=["web"])["TargetGroups"][0]
    arn = group["TargetGroupArn"]
    web = next(h for h in _hosts(sandbox) if h["role"] == "web")
    instance, port = web["instance_id"], web["app_port"]
    target = [{"Id": instance, "Port": port}]
    fast = {"Delay": 1, "MaxAttempts": 60}
    elb.get_waiter("target_in_service").wait(TargetGroupArn=arn, Targets=target, WaiterConfig=fast)

    # the service stops: unhealthy after UnhealthyThresholdCount failed checks
    killed = _exec(web["container"], "sh", "-c", "kill $(cat /run/fleetops/app.pid)")
    assert killed.returncode == 0, killed.stderr
    stopped = time.monotonic()
    seen = _wait_state(elb, arn, instance, "unhealthy", timeout=60)
    took = time.monotonic() - stopped
    interval = group["HealthCheckIntervalSeconds"]
    assert seen[0] == "healthy"
    assert took >= (group["UnhealthyThresholdCount"] - 1) * interval - 1, took

    # a reboot brings the service back with the host; the waiter sees it in service
    reboot_host(web["container"])
    elb.get_waiter("target_in_service").wait(TargetGroupArn=arn, Targets=target, WaiterConfig=fast)

    # deregistered: draining for the deregistration delay, then gone
    delay = next(
        int(a["Value"])
        for a in elb.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
        if a["Key"] == "deregistration_delay.timeout_seconds"
    )
    elb.deregister_targets(TargetGroupArn=arn, Targets=target)
    drained_from = time.monotonic()
    assert _state(elb, arn, instance) == "draining"
    listed = elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    assert {"Id": instance, "Port": port} in [d["Target"] for d in listed]
    elb.get_waiter("target_deregistered").wait(
        TargetGroupArn=arn, Targets=target, WaiterConfig=fast
    )
    assert time.monotonic() - drained_from >= delay - 1
    listed = elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    assert instance not in [d["Target"]["Id"] for d in listed]

    # registered again: initial until the healthy threshold, then in service
    elb.register_targets(TargetGroupArn=arn, Targets=target)
    assert _state(elb, arn, instance) == "initial"
    elb.get_waiter("target_in_service").wait(TargetGroupArn=arn, Targets=target, WaiterConfig=fast)

    served = sandbox.ops("--output", "json", "sandbox", "calls")
    assert served.returncode == 0, served.stderr
    for operation in ("DescribeTargetHealth", "DeregisterTargets", "RegisterTargets"):
        assert f'"{operation}"' in served.stdout
