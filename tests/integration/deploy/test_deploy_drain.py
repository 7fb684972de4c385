"""A deploy's drain on the sandbox load balancer: bounded by the spec's drain_seconds.

The sandbox's ELBv2 keeps a deregistered target `draining` for its group's
deregistration delay and checks health over real HTTP, so these tests see
the waits a real Application Load Balancer imposes: a group whose delay is
longer than the spec's drain is cut at drain_seconds (and the target left
draining), a shorter one ends the drain early, and a group that vanished
mid-drain is an error, not a cut.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.config import Settings
from ops.fleet.discovery import Host
from ops.fleet.inventory import APP_PORT_TAG
from ops.sandbox.aws_side import AwsSandbox
from ops.transports import elb
from ops.workflows.deploy_spec import parse_spec
from ops.workflows.deploy_steps import DrainStep, Fleet, RegisterStep

LONG_DELAY_S = 120  # longer than any drain these tests allow
SHORT_DELAY_S = 1


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    """The host's app on loopback, answering the load balancer's health checks."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def lb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsSandbox]:
    sandbox = AwsSandbox(tmp_path_factory.mktemp("drain-sandbox"), seed=11)
    sandbox.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in sandbox.env().items():
                mp.setenv(key, value)
            yield sandbox
    finally:
        sandbox.stop()


def _group(lb: AwsSandbox, name: str, delay: int, port: int) -> str:
    elbv2 = lb.client("elbv2")
    ec2 = lb.client("ec2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    arn = elbv2.create_target_group(
        Name=name,
        Protocol="HTTP",
        Port=port,
        VpcId=vpc,
        HealthCheckPath="/",
        HealthCheckIntervalSeconds=5,
        HealthyThresholdCount=2,
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.modify_target_group_attributes(
        TargetGroupArn=arn,
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(delay)}],
    )
    return str(arn)


def _registered(lb: AwsSandbox, arn: str, instance: str, port: int) -> None:
    elbv2 = lb.client("elbv2")
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance, "Port": port}])
    elbv2.get_waiter("target_in_service").wait(
        TargetGroupArn=arn,
        Targets=[{"Id": instance, "Port": port}],
        WaiterConfig={"Delay": 1, "MaxAttempts": 60},
    )


def _state(lb: AwsSandbox, arn: str, instance: str, port: int) -> str:
    reply = lb.client("elbv2").describe_target_health(
        TargetGroupArn=arn, Targets=[{"Id": instance, "Port": port}]
    )
    return str(reply["TargetHealthDescriptions"][0]["TargetHealth"]["State"])


def _fleet(groups: list[str], drain_seconds: int, host: Host) -> Fleet:
    spec = parse_spec(
        "svc",
        Path("svc.yml"),
        {
            "repository": "127.0.0.1:5000/hello",
            "port": 8080,
            "health_check": {"http": "/health"},
            "target_groups": groups,
            "drain_seconds": drain_seconds,
        },
        environ={},
    )
    return Fleet(spec=spec, hosts={host.instance_id: host}, ansible={})


def _timed_drain(fleet: Fleet, host: Host) -> tuple[str, float]:
    """The drain step's detail for the host, and how long it took."""
    started = time.monotonic()
    detail = DrainStep(Settings(), fleet).one(host)
    return detail, time.monotonic() - started


@pytest.fixture
def host(lb: AwsSandbox, app_port: int) -> Host:
    instance = lb.add_synthetic(1, name_prefix="drain")[0]
    return Host(instance, "drain-1", tags={APP_PORT_TAG: str(app_port)})


def test_a_longer_deregistration_delay_is_cut_at_drain_seconds(
    lb: AwsSandbox, app_port: int, host: Host
) -> None:
    arn = _group(lb, "drain-long", LONG_DELAY_S, app_port)
    _registered(lb, arn, host.instance_id, app_port)
    fleet = _fleet(["drain-long"], 3, host)

    detail, took = _timed_drain(fleet, host)

    assert detail == "drain cut at drain_seconds 3: still draining in drain-long"
    assert 3 <= took < 3 + 2 + 10, took  # the last look at or one poll past the bound
    assert _state(lb, arn, host.instance_id, app_port) == "draining"  # the LB still drains it

    # registered back while it drains: the load balancer takes it again and it passes
    assert RegisterStep(Settings(), fleet).one(host) == "in service"
    assert _state(lb, arn, host.instance_id, app_port) == "healthy"


def test_a_shorter_deregistration_delay_ends_the_drain_first(
    lb: AwsSandbox, app_port: int, host: Host
) -> None:
    arn = _group(lb, "drain-short", SHORT_DELAY_S, app_port)
    _registered(lb, arn, host.instance_id, app_port)
    detail, took = _timed_drain(_fleet(["drain-short"], 60, host), host)
    assert detail == "drained"
    assert took < 30, took  # ended by the group's 1 s delay, not by the 60 s bound
    assert _state(lb, arn, host.instance_id, app_port) == "unused"


def test_a_target_left_draining_by_an_earlier_process_is_waited_for_within_the_bound(
    lb: AwsSandbox, app_port: int, host: Host
) -> None:
    arn = _group(lb, "drain-resumed", LONG_DELAY_S, app_port)
    _registered(lb, arn, host.instance_id, app_port)
    lb.client("elbv2").deregister_targets(
        TargetGroupArn=arn, Targets=[{"Id": host.instance_id, "Port": app_port}]
    )  # the killed process's deregistration
    detail, took = _timed_drain(_fleet(["drain-resumed"], 0, host), host)
    assert detail == "drain cut at drain_seconds 0: still draining in drain-resumed"
    assert took < 10, took  # one look, no wait
    assert _state(lb, arn, host.instance_id, app_port) == "draining"


def test_a_group_that_vanishes_mid_drain_is_an_error_not_a_cut(
    lb: AwsSandbox, app_port: int, host: Host
) -> None:
    arn = _group(lb, "drain-gone", LONG_DELAY_S, app_port)
    lb.client("elbv2").delete_target_group(TargetGroupArn=arn)
    with pytest.raises(elb.DrainTimeout, match="TargetGroupNotFound"):
        elb.drained_within(
            lb.client("elbv2"),
            host.instance_id,
            [elb.Membership(arn, app_port)],
            seconds=5,
            delay=1,
        )
