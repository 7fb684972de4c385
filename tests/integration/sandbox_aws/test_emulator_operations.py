"""Every emulated SSM operation through a real boto3 client, as a fan-out engine would call it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sandbox_aws_helpers import Ssm

from ops.sandbox.aws_side import AwsSandbox
from ops.sandbox.emulator import Dist, SyntheticProfile


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_send_command_runs_and_reports_output(ssm: Ssm, fleet: list[str]) -> None:
    command_id = ssm.shell(fleet[:3], "hostname", "echo done", "echo warn >&2", Comment="smoke")
    command = ssm.wait(command_id)
    assert command["Status"] == "Success"
    assert (command["TargetCount"], command["CompletedCount"], command["ErrorCount"]) == (3, 3, 0)
    assert command["Comment"] == "smoke"
    assert command["DocumentName"] == "AWS-RunShellScript"
    reply = ssm.get(command_id, fleet[0])
    assert reply["Status"] == "Success" and reply["ResponseCode"] == 0
    assert reply["StandardOutputContent"] == "basic-00000.sandbox.internal\ndone\n"
    assert reply["StandardErrorContent"] == "warn\n"
    assert reply["PluginName"] == "aws:runShellScript"
    assert reply["ExecutionStartDateTime"] and reply["ExecutionEndDateTime"]


def test_lifecycle_pending_inprogress_success(ssm: Ssm, aws: AwsSandbox) -> None:
    [instance] = aws.add_synthetic(
        1,
        tags={"Role": "lifecycle"},
        profile=SyntheticProfile(pickup_seconds=Dist.fixed(1.0), duration_seconds=Dist.fixed(0.3)),
    )
    command_id = ssm.shell([instance], "sleep 0.8")  # picked up after every read has caught up
    seen = [ssm.get(command_id, instance)["Status"]]
    deadline = time.monotonic() + 10
    while seen[-1] != "Success" and time.monotonic() < deadline:
        status = ssm.get(command_id, instance)["Status"]
        if status != seen[-1]:
            seen.append(status)
        time.sleep(0.05)
    assert seen == ["Pending", "InProgress", "Success"]


def test_failed_exit_code_and_command_status(ssm: Ssm, fleet: list[str]) -> None:
    command_id = ssm.shell(fleet[:2], "echo before", "exit 7")
    command = ssm.wait(command_id)
    assert command["Status"] == "Failed"
    assert command["ErrorCount"] == 2
    reply = ssm.get(command_id, fleet[1])
    assert (reply["Status"], reply["StatusDetails"], reply["ResponseCode"]) == (
        "Failed",
        "Failed",
        7,
    )
    assert reply["StandardOutputContent"] == "before\n"


def test_max_errors_allows_incomplete(ssm: Ssm, aws: AwsSandbox, fleet: list[str]) -> None:
    aws.set_fault("fail", instances=[fleet[0]], exit_code=3)
    command_id = ssm.shell(fleet[:4], "true", MaxErrors="1")
    command = ssm.wait(command_id)
    assert (command["Status"], command["StatusDetails"]) == ("Failed", "Incomplete")
    assert command["ErrorCount"] == 1 and command["CompletedCount"] == 4
    assert ssm.get(command_id, fleet[0])["ResponseCode"] == 3


def test_execution_timeout_kills(ssm: Ssm, fleet: list[str]) -> None:
    command_id = ssm.client.send_command(
        InstanceIds=[fleet[0]],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["sleep 30"], "executionTimeout": ["1"]},
    )["Command"]["CommandId"]
    command = ssm.wait(command_id, timeout=10)
    assert (command["Status"], command["StatusDetails"]) == ("TimedOut", "ExecutionTimedOut")
    reply = ssm.get(command_id, fleet[0])
    assert (reply["Status"], reply["StatusDetails"], reply["ResponseCode"]) == (
        "TimedOut",
        "ExecutionTimedOut",
        137,
    )


def test_targets_by_tag_with_max_concurrency(ssm: Ssm, aws: AwsSandbox) -> None:
    ids = aws.add_synthetic(
        6,
        tags={"Role": "waves"},
        profile=SyntheticProfile(pickup_seconds=Dist.fixed(0.0), duration_seconds=Dist.fixed(0.4)),
    )
    reply = ssm.client.send_command(
        Targets=[{"Key": "tag:Role", "Values": ["waves"]}],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["do-work"]},
        MaxConcurrency="2",
    )
    command_id = reply["Command"]["CommandId"]
    assert reply["Command"]["TargetCount"] == 0  # Targets are resolved after the answer
    assert ssm.wait(command_id)["TargetCount"] == 6
    command_id = ssm.client.send_command(
        Targets=[{"Key": "tag:Role", "Values": ["waves"]}],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["do-work"]},
        MaxConcurrency="2",
    )["Command"]["CommandId"]
    peak = 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        statuses = [inv["Status"] for inv in ssm.invocations(command_id).values()]
        peak = max(peak, statuses.count("InProgress"))
        if all(s == "Success" for s in statuses):
            break
        time.sleep(0.05)
    assert set(ssm.invocations(command_id)) == set(ids)
    assert 1 <= peak <= 2
    assert ssm.wait(command_id)["Status"] == "Success"


def test_max_errors_stops_new_hosts(ssm: Ssm, aws: AwsSandbox) -> None:
    ids = aws.add_synthetic(
        5,
        tags={"Role": "budget"},
        profile=SyntheticProfile(pickup_seconds=Dist.fixed(0.0), duration_seconds=Dist.fixed(0.1)),
    )
    reply = ssm.client.send_command(
        Targets=[{"Key": "InstanceIds", "Values": ids}],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["exit 1"]},
        MaxConcurrency="1",
        MaxErrors="1",
    )
    command = ssm.wait(reply["Command"]["CommandId"])
    assert command["Status"] == "Failed"
    assert command["ErrorCount"] == 2
    listed = ssm.invocations(command["CommandId"]).values()
    statuses = [(inv["Status"], inv["StatusDetails"]) for inv in listed]
    assert statuses.count(("Failed", "Failed")) == 2
    assert statuses.count(("Cancelled", "Terminated")) == 3


def test_output_truncation(ssm: Ssm, fleet: list[str]) -> None:
    command_id = ssm.shell([fleet[0]], "seq 10000")
    ssm.wait(command_id)
    full = "".join(f"{i}\n" for i in range(1, 10001))
    assert len(full) > 24000
    reply = ssm.get(command_id, fleet[0])
    # the agent's own cut: 24,000 bytes ending with its suffix
    assert reply["StandardOutputContent"] == full[:23980] + "--output truncated--"
    [inv] = ssm.invocations(command_id, details=True).values()
    assert inv["CommandPlugins"][0]["Output"] == full[:2477] + "\n---Output truncated---"
    [plain] = ssm.invocations(command_id).values()
    assert plain["CommandPlugins"] == []


def test_full_output_written_to_s3(ssm: Ssm, aws: AwsSandbox, fleet: list[str]) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="ssm-output")
    command_id = ssm.shell(
        [fleet[0]],
        "seq 10000",
        "echo oops >&2",
        OutputS3BucketName="ssm-output",
        OutputS3KeyPrefix="runs/patch",
    )
    ssm.wait(command_id)
    base = f"runs/patch/{command_id}/{fleet[0]}/awsrunShellScript/0.awsrunShellScript"
    deadline = time.monotonic() + 10
    keys: set[str] = set()
    while time.monotonic() < deadline and len(keys) < 2:
        listing = s3.list_objects_v2(Bucket="ssm-output", Prefix=f"runs/patch/{command_id}/")
        keys = {item["Key"] for item in listing.get("Contents", [])}
        time.sleep(0.1)
    assert keys == {f"{base}/stdout", f"{base}/stderr"}
    body = s3.get_object(Bucket="ssm-output", Key=f"{base}/stdout")["Body"].read().decode()
    assert body == "".join(f"{i}\n" for i in range(1, 10001))
    reply = ssm.get(command_id, fleet[0])
    assert reply["StandardOutputUrl"].endswith(f"/ssm-output/{base}/stdout")


def test_list_command_invocations_paging_and_filters(ssm: Ssm, aws: AwsSandbox) -> None:
    ids = aws.add_synthetic(
        7,
        tags={"Role": "paging"},
        profile=SyntheticProfile(pickup_seconds=Dist.fixed(0.0), duration_seconds=Dist.fixed(0.0)),
    )
    command_id = ssm.shell(ids, "true")
    ssm.wait(command_id)
    assert len(ssm.invocations(command_id)) == 7  # every invocation readable
    first = ssm.client.list_command_invocations(CommandId=command_id, MaxResults=3)
    assert len(first["CommandInvocations"]) == 3 and "NextToken" in first
    seen = [inv["InstanceId"] for inv in first["CommandInvocations"]]
    token = first["NextToken"]
    while token:
        page = ssm.client.list_command_invocations(
            CommandId=command_id, MaxResults=3, NextToken=token
        )
        seen += [inv["InstanceId"] for inv in page["CommandInvocations"]]
        token = page.get("NextToken")
    assert seen == ids
    one = ssm.client.list_command_invocations(CommandId=command_id, InstanceId=ids[2])
    assert [inv["InstanceId"] for inv in one["CommandInvocations"]] == [ids[2]]
    by_instance = ssm.client.list_command_invocations(InstanceId=ids[4])["CommandInvocations"]
    assert [inv["CommandId"] for inv in by_instance] == [command_id]
    done = ssm.client.list_command_invocations(
        CommandId=command_id, Filters=[{"key": "Status", "value": "Success"}]
    )
    assert len(done["CommandInvocations"]) == 7
    with pytest.raises(ClientError) as refused:  # the model: "ListCommands operations only"
        ssm.client.list_command_invocations(
            CommandId=command_id, Filters=[{"key": "ExecutionStage", "value": "Executing"}]
        )
    assert error_code(refused) == "InvalidFilterKey"


def test_list_commands_filters_and_paging(ssm: Ssm, fleet: list[str]) -> None:
    ids = [ssm.shell([fleet[5]], "true") for _ in range(3)]
    for command_id in ids:
        ssm.wait(command_id)
    newest_first = ssm.client.list_commands(InstanceId=fleet[5], MaxResults=2)
    assert [c["CommandId"] for c in newest_first["Commands"]] == ids[::-1][:2]
    rest = ssm.client.list_commands(InstanceId=fleet[5], NextToken=newest_first["NextToken"])
    assert ids[0] in [c["CommandId"] for c in rest["Commands"]]
    future = ssm.client.list_commands(
        Filters=[{"key": "InvokedAfter", "value": "2999-01-01T00:00:00Z"}]
    )
    assert future["Commands"] == []


def test_cancel_command(ssm: Ssm, aws: AwsSandbox) -> None:
    ids = aws.add_synthetic(
        3,
        tags={"Role": "cancel"},
        profile=SyntheticProfile(pickup_seconds=Dist.fixed(0.0)),
    )
    command_id = ssm.shell(ids, "sleep 60", MaxConcurrency="1")
    deadline = time.monotonic() + 5
    while ssm.get(command_id, ids[0])["Status"] != "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ssm.client.cancel_command(CommandId=command_id)
    assert ssm.command(command_id)["Status"] in ("Cancelling", "Cancelled")
    command = ssm.wait(command_id, timeout=5)
    assert command["Status"] == "Cancelled"
    assert command["CompletedCount"] == 3
    reply = ssm.get(command_id, ids[0])
    assert (reply["Status"], reply["ResponseCode"]) == ("Cancelled", 137)
    assert ssm.get(command_id, ids[2])["Status"] == "Cancelled"


def test_describe_instance_information(ssm: Ssm, fleet: list[str]) -> None:
    reply = ssm.client.describe_instance_information(
        Filters=[{"Key": "tag:Role", "Values": ["basic"]}], MaxResults=5
    )
    assert len(reply["InstanceInformationList"]) == 5 and reply["NextToken"]
    rest = ssm.client.describe_instance_information(
        Filters=[{"Key": "tag:Role", "Values": ["basic"]}], NextToken=reply["NextToken"]
    )
    rows = reply["InstanceInformationList"] + rest["InstanceInformationList"]
    assert [row["InstanceId"] for row in rows] == fleet
    row = rows[0]
    assert row["PingStatus"] == "Online"
    assert row["PlatformType"] == "Linux" and row["PlatformName"] == "Amazon Linux"
    assert row["PlatformVersion"] == "2023" and row["AgentVersion"]
    assert row["ComputerName"] == "basic-00000.sandbox.internal"
    assert row["IPAddress"].startswith("127.")
    old_style = ssm.client.describe_instance_information(
        InstanceInformationFilterList=[{"key": "InstanceIds", "valueSet": fleet[:2]}]
    )
    assert [r["InstanceId"] for r in old_style["InstanceInformationList"]] == fleet[:2]
    paginator = ssm.client.get_paginator("describe_instance_information")
    total = sum(len(p["InstanceInformationList"]) for p in paginator.paginate(MaxResults=5))
    assert total >= len(fleet)


def test_instances_exist_in_moto_ec2(aws: AwsSandbox, fleet: list[str]) -> None:
    ec2 = aws.client("ec2")
    reply = ec2.describe_instances(InstanceIds=fleet[:2])
    tags = {
        i["InstanceId"]: {t["Key"]: t["Value"] for t in i["Tags"]}
        for r in reply["Reservations"]
        for i in r["Instances"]
    }
    assert tags[fleet[0]] == {"Env": "sandbox", "Role": "basic", "Name": "basic-00000"}
    assert tags[fleet[1]]["Name"] == "basic-00001"


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (
            lambda c, ids: c.send_command(
                InstanceIds=[f"i-{n:017x}" for n in range(51)],
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": ["true"]},
            ),
            "ValidationException",
        ),
        (
            lambda c, ids: c.send_command(
                InstanceIds=["i-0123456789abcdef0"],
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": ["true"]},
            ),
            "InvalidInstanceId",
        ),
        (
            lambda c, ids: c.send_command(
                InstanceIds=[ids[0]], DocumentName="AWS-Nope", Parameters={"commands": ["x"]}
            ),
            "InvalidDocument",
        ),
        (
            lambda c, ids: c.send_command(
                InstanceIds=[ids[0]],
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": ["x"], "shell": ["bash"]},
            ),
            "InvalidParameters",
        ),
        (
            lambda c, ids: c.send_command(
                InstanceIds=[ids[0], ids[0]],
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": ["x"]},
            ),
            "DuplicateInstanceId",
        ),
        (
            lambda c, ids: c.get_command_invocation(
                CommandId="00000000-0000-4000-8000-000000000000", InstanceId=ids[0]
            ),
            "InvocationDoesNotExist",
        ),
        (lambda c, ids: c.list_command_invocations(MaxResults=51), "ValidationException"),
        (lambda c, ids: c.list_command_invocations(CommandId="short"), "ValidationException"),
        (
            lambda c, ids: c.list_command_invocations(NextToken="not-a-token"),
            "InvalidNextToken",
        ),
        (
            lambda c, ids: c.describe_instance_information(
                Filters=[{"Key": "Colour", "Values": ["blue"]}]
            ),
            "InvalidFilterKey",
        ),
    ],
    ids=[
        "51-instances",
        "unknown-instance",
        "unknown-document",
        "bad-parameter",
        "duplicate-instance",
        "unknown-command",
        "max-results",
        "command-id-length",
        "next-token",
        "filter-key",
    ],
)
def test_errors_carry_real_codes(aws: AwsSandbox, fleet: list[str], call: Any, code: str) -> None:
    unchecked = aws.client("ssm", mode="standard", max_attempts=1, parameter_validation=False)
    with pytest.raises(ClientError) as exc:
        call(unchecked, fleet)
    assert error_code(exc) == code
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_invocation_does_not_exist(ssm: Ssm, fleet: list[str]) -> None:
    command_id = ssm.shell([fleet[0]], "true")
    with pytest.raises(ClientError) as exc:  # just sent: not readable yet
        ssm.client.get_command_invocation(CommandId=command_id, InstanceId=fleet[0])
    assert error_code(exc) == "InvocationDoesNotExist"
    assert ssm.get(command_id, fleet[0])["CommandId"] == command_id  # readable once caught up
    with pytest.raises(ClientError) as other:  # an instance the command was not sent to
        ssm.client.get_command_invocation(CommandId=command_id, InstanceId=fleet[1])
    assert error_code(other) == "InvocationDoesNotExist"


def test_unimplemented_operation_forwarded_to_moto(ssm: Ssm, aws: AwsSandbox) -> None:
    ssm.client.put_parameter(Name="/fleetops/test", Value="forwarded", Type="String")
    assert ssm.client.get_parameter(Name="/fleetops/test")["Parameter"]["Value"] == "forwarded"
    direct = aws.client("ssm")
    direct._endpoint.host = aws.moto_url  # the same parameter, read from moto itself
    assert direct.get_parameter(Name="/fleetops/test")["Parameter"]["Value"] == "forwarded"
    assert any(c["operation"] == "PutParameter" for c in aws.calls())


def test_call_log_records_outcomes(ssm: Ssm, aws: AwsSandbox, fleet: list[str]) -> None:
    mark = aws.calls()[-1]["seq"]
    ssm.shell([fleet[0]], "true")
    with pytest.raises(ClientError):
        ssm.client.list_command_invocations(MaxResults=51)
    calls = aws.calls(since=mark)
    assert [c["operation"] for c in calls] == ["SendCommand", "ListCommandInvocations"]
    assert calls[0]["status"] == 200 and calls[0]["params"]["InstanceIds"] == [fleet[0]]
    assert calls[1]["status"] == 400 and calls[1]["error"] == "ValidationException"
    assert all(c["throttled"] is False for c in calls)
    log = (aws.state_dir / "ssm-calls.jsonl").read_text().splitlines()
    assert any(f'"seq": {calls[1]["seq"]},' in line for line in log)
