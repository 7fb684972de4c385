"""Faults, throttling and reboots: the behaviour a fan-out engine must survive."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError
from sandbox_aws_helpers import Ssm

from ops.sandbox.aws_side import AwsSandbox
from ops.sandbox.emulator import Dist, SyntheticProfile

QUICK = SyntheticProfile(pickup_seconds=Dist.fixed(0.0), duration_seconds=Dist.fixed(0.05))


def hosts(aws: AwsSandbox, count: int, role: str) -> list[str]:
    return aws.add_synthetic(count, tags={"Role": role}, name_prefix=role, profile=QUICK)


def test_throttling_without_retries_raises(ssm: Ssm, aws: AwsSandbox, fleet: list[str]) -> None:
    aws.set_throttle(enabled=True, rates={"DescribeInstanceInformation": (0.05, 2.0)})
    codes = []
    for _ in range(6):
        try:
            ssm.client.describe_instance_information(MaxResults=5)
            codes.append("ok")
        except ClientError as exc:
            codes.append(exc.response["Error"]["Code"])
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            assert exc.response["Error"]["Message"] == "Rate exceeded"
    assert codes[:2] == ["ok", "ok"]
    assert codes[2:] == ["ThrottlingException"] * 4
    throttled = [c for c in aws.calls() if c["throttled"]]
    assert throttled and throttled[-1]["error"] == "ThrottlingException"


def test_throttling_with_adaptive_retries_succeeds(aws: AwsSandbox, fleet: list[str]) -> None:
    # 1 a second: eight calls in a row meet the limit even on a slow, busy machine
    aws.set_throttle(enabled=True, rates={"GetCommandInvocation": (1.0, 1.0)})
    patient = aws.client("ssm", mode="adaptive", max_attempts=10)
    command_id = Ssm(patient).shell([fleet[0]], "true")
    Ssm(patient).get(command_id, fleet[0])  # readable (reads lag behind the send)
    mark = aws.calls()[-1]["seq"]
    for _ in range(8):
        patient.get_command_invocation(CommandId=command_id, InstanceId=fleet[0])
    calls = [c for c in aws.calls(since=mark) if c["operation"] == "GetCommandInvocation"]
    assert sum(1 for c in calls if c["status"] == 200) == 8
    assert any(c["throttled"] for c in calls)


def test_throttle_multiplier_scales_burst(ssm: Ssm, aws: AwsSandbox) -> None:
    aws.set_throttle(enabled=True, rates={"ListCommands": (0.1, 4.0)}, multiplier=0.5)
    outcomes = []
    for _ in range(4):
        try:
            ssm.client.list_commands(MaxResults=1)
            outcomes.append(True)
        except ClientError:
            outcomes.append(False)
    assert outcomes == [True, True, False, False]


def test_agent_offline_delays_then_delivery_times_out(ssm: Ssm, aws: AwsSandbox) -> None:
    [instance] = hosts(aws, 1, "offline")
    aws.set_fault("agent_offline", instances=[instance])
    # the deadline is TimeoutSeconds + executionTimeout: (30 + 1) s, scaled -> 1.55 s
    aws.admin.settings(delivery_timeout_scale=0.05)
    assert ssm.ping(instance) == "ConnectionLost"
    command_id = ssm.client.send_command(
        InstanceIds=[instance],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["true"], "executionTimeout": ["1"]},
        TimeoutSeconds=30,
    )["Command"]["CommandId"]
    time.sleep(0.3)
    assert ssm.get(command_id, instance)["Status"] == "Delayed"
    command = ssm.wait(command_id, timeout=10)
    assert (command["Status"], command["StatusDetails"]) == ("TimedOut", "DeliveryTimedOut")
    assert command["DeliveryTimedOutCount"] == 1 and command["ErrorCount"] == 0
    reply = ssm.get(command_id, instance)
    assert (reply["Status"], reply["StatusDetails"], reply["ResponseCode"]) == (
        "TimedOut",
        "DeliveryTimedOut",
        -1,
    )


def test_agent_back_online_delivers_delayed_command(ssm: Ssm, aws: AwsSandbox) -> None:
    [instance] = hosts(aws, 1, "flaky")
    aws.set_fault("agent_offline", instances=[instance])
    command_id = ssm.shell([instance], "echo late")
    time.sleep(0.3)
    assert ssm.get(command_id, instance)["Status"] == "Delayed"
    aws.clear_faults()
    assert ssm.wait(command_id, timeout=10)["Status"] == "Success"
    assert ssm.ping(instance) == "Online"


def test_undeliverable_does_not_count_as_error(ssm: Ssm, aws: AwsSandbox) -> None:
    ids = hosts(aws, 3, "undeliverable")
    aws.set_fault("undeliverable", instances=[ids[0]])
    command = ssm.wait(ssm.shell(ids, "true"))
    assert command["Status"] == "Success"
    assert command["ErrorCount"] == 0 and command["CompletedCount"] == 3
    reply = ssm.get(command["CommandId"], ids[0])
    assert (reply["Status"], reply["StatusDetails"]) == ("Failed", "Undeliverable")


def test_slow_pickup(ssm: Ssm, aws: AwsSandbox) -> None:
    ids = hosts(aws, 2, "slow")
    aws.set_fault("slow_pickup", instances=[ids[0]], seconds=4.0)
    command_id = ssm.shell(ids, "true")
    # wait for the prompt host rather than a fixed time: a busy machine only delays it
    deadline = time.monotonic() + 3.5
    while ssm.get(command_id, ids[1])["Status"] != "Success" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ssm.get(command_id, ids[1])["Status"] == "Success"
    assert ssm.get(command_id, ids[0])["Status"] == "Pending"
    assert ssm.wait(command_id, timeout=10)["Status"] == "Success"


def test_forced_failure_exit_code(ssm: Ssm, aws: AwsSandbox) -> None:
    ids = hosts(aws, 2, "forced")
    aws.set_fault("fail", instances=[ids[1]], exit_code=42)
    command = ssm.wait(ssm.shell(ids, "echo fine"))
    assert command["Status"] == "Failed" and command["ErrorCount"] == 1
    assert ssm.get(command["CommandId"], ids[1])["ResponseCode"] == 42
    assert ssm.get(command["CommandId"], ids[0])["ResponseCode"] == 0


def test_hang_until_execution_timeout(ssm: Ssm, aws: AwsSandbox) -> None:
    [instance] = hosts(aws, 1, "hang")
    aws.set_fault("hang", instances=[instance])
    command_id = ssm.client.send_command(
        InstanceIds=[instance],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["true"], "executionTimeout": ["1"]},
    )["Command"]["CommandId"]
    time.sleep(0.5)
    assert ssm.get(command_id, instance)["Status"] == "InProgress"
    command = ssm.wait(command_id, timeout=10)
    assert (command["Status"], command["StatusDetails"]) == ("TimedOut", "ExecutionTimedOut")


def test_terminated_mid_command(ssm: Ssm, aws: AwsSandbox) -> None:
    ids = hosts(aws, 2, "doomed")
    aws.set_fault("terminate", instances=[ids[0]], after_seconds=0.2)
    command = ssm.wait(ssm.shell(ids, "sleep 1"), timeout=10)
    reply = ssm.get(command["CommandId"], ids[0])
    assert (reply["Status"], reply["StatusDetails"]) == ("Failed", "Terminated")
    # ErrorCount counts Failed and ExecutionTimedOut details only (the model)
    assert command["CompletedCount"] == 2 and command["ErrorCount"] == 0
    assert ssm.ping(ids[0]) == "absent"
    with pytest.raises(ClientError) as exc:
        ssm.shell([ids[0]], "true")
    assert exc.value.response["Error"]["Code"] == "InvalidInstanceId"
    ec2 = aws.client("ec2")
    deadline = time.monotonic() + 10
    state = ""
    while time.monotonic() < deadline and state not in ("shutting-down", "terminated"):
        reservations = ec2.describe_instances(InstanceIds=[ids[0]])["Reservations"]
        state = reservations[0]["Instances"][0]["State"]["Name"]
        time.sleep(0.1)
    assert state in ("shutting-down", "terminated")


def test_error_5xx_fraction(ssm: Ssm, aws: AwsSandbox) -> None:
    aws.set_fault("error_5xx", fraction=0.5)
    results = []
    for _ in range(40):
        try:
            ssm.client.list_commands(MaxResults=1)
            results.append(200)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "InternalServerError"
            results.append(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    assert set(results) == {200, 500}
    assert 8 <= results.count(500) <= 32


def test_fraction_fault_picks_that_share_of_the_fleet(ssm: Ssm, aws: AwsSandbox) -> None:
    ids = hosts(aws, 20, "fraction")
    status = aws.admin.status()
    fleet_size = status["instances"] - status["terminated"]
    chosen = set(aws.admin.set_fault("fail", fraction=0.25, params={"exit_code": 9}))
    assert len(chosen) == round(fleet_size * 0.25)
    command = ssm.wait(
        ssm.client.send_command(
            Targets=[{"Key": "tag:Role", "Values": ["fraction"]}],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["true"]},
            MaxErrors="100%",
        )["Command"]["CommandId"]
    )
    codes = {
        i: inv["CommandPlugins"][0]["ResponseCode"]
        for i, inv in ssm.invocations(command["CommandId"], details=True).items()
    }
    assert set(codes) == set(ids)
    assert {i for i, code in codes.items() if code == 9} == chosen & set(ids)
    assert command["ErrorCount"] == len(chosen & set(ids))


def test_exit_194_reboots_and_runs_again(ssm: Ssm, aws: AwsSandbox) -> None:
    [instance] = hosts(aws, 1, "reboot194")
    aws.admin.settings(reboot_seconds=1.0)
    command_id = ssm.shell([instance], "echo run", "exit 194")
    pings = ssm.pings_until_success(command_id, instance, timeout=10)
    assert "ConnectionLost" in pings
    assert pings[-1] == "Online" or ssm.ping(instance) == "Online"
    reply = ssm.get(command_id, instance)
    assert (reply["Status"], reply["ResponseCode"]) == ("Success", 0)
    assert reply["StandardOutputContent"] == "run\n"


def test_exit_3010_is_194_on_linux(ssm: Ssm, aws: AwsSandbox) -> None:
    """3010 is the Windows agent's reboot code; on Linux an exit status is 8 bits, so
    `exit 3010` is status 194 (3010 mod 256), the Linux agent's reboot code."""
    [instance] = hosts(aws, 1, "reboot3010")
    aws.admin.settings(reboot_seconds=2.0)  # longer than reads lag, so a ping sees it
    command_id = ssm.shell([instance], "echo run", "exit 3010")
    pings = ssm.pings_until_success(command_id, instance, timeout=10)
    assert "ConnectionLost" in pings
    reply = ssm.get(command_id, instance)
    assert (reply["Status"], reply["ResponseCode"]) == ("Success", 0)
