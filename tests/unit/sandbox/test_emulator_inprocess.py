"""The emulator served in this process (no moto): state machine and wire shapes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from ops.sandbox.emulator import Dist, SyntheticProfile
from ops.sandbox.emulator.calllog import CallLog
from ops.sandbox.emulator.model import Model
from ops.sandbox.emulator.server import Emulator, serve_in_thread
from ops.sandbox.emulator.validate import ApiError

INSTANT = SyntheticProfile(
    pickup_seconds=Dist.fixed(0.0), duration_seconds=Dist.fixed(0.0), output_chars=Dist.fixed(5)
).to_json()


@pytest.fixture
def model() -> Iterator[Model]:
    model = Model(seed=11)
    model.register(
        {"InstanceId": f"i-{n:017x}", "Tags": {"Role": "web"}, "Profile": INSTANT}
        for n in range(3000)
    )
    yield model
    model.close()


def wait_done(model: Model, command_id: str, timeout: float = 20) -> dict[str, Any]:
    """Until every invocation is terminal; a command reads cannot see yet is waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            command = model.list_commands({"CommandId": command_id})["Commands"][0]
        except ApiError as exc:
            assert exc.code == "InvalidCommandId"
            time.sleep(0.02)
            continue
        if command["CompletedCount"] == command["TargetCount"] > 0 or (
            command["StatusDetails"] == "NoInstancesInTag"
        ):
            return command
        time.sleep(0.02)
    raise AssertionError("command did not finish")


def until(read: Any, done: Any, timeout: float = 10) -> Any:
    """Read again until `done(result)`: reads lag a little behind writes."""
    deadline = time.monotonic() + timeout
    while True:
        result = read()
        if done(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.02)


def send(model: Model, **extra: Any) -> str:
    reply = model.send_command(
        {
            "DocumentName": "AWS-RunShellScript",
            "Targets": [{"Key": "tag:Role", "Values": ["web"]}],
            "Parameters": {"commands": ["exit 1"]},
            **extra,
        }
    )
    return str(reply["Command"]["CommandId"])


def test_error_budget_cancels_thousands_of_queued_hosts(model: Model) -> None:
    command = wait_done(model, send(model, MaxConcurrency="1", MaxErrors="0"))
    assert (command["TargetCount"], command["ErrorCount"]) == (3000, 1)
    assert command["Status"] == "Failed"
    # hosts skipped once MaxErrors was passed end Terminated, not Cancelled
    page = model.list_command_invocations(
        {"CommandId": command["CommandId"], "Filters": [{"key": "Status", "value": "Terminated"}]}
    )
    assert len(page["CommandInvocations"]) == 50 and page["NextToken"]
    assert {i["StatusDetails"] for i in page["CommandInvocations"]} == {"Terminated"}


def test_full_fan_out_counts(model: Model) -> None:
    command = wait_done(model, send(model, MaxConcurrency="100%", MaxErrors="100%"))
    assert (command["CompletedCount"], command["ErrorCount"]) == (3000, 3000)
    assert model.status()["commands_running"] == 0


def test_no_matching_targets(model: Model) -> None:
    reply = model.send_command(
        {
            "DocumentName": "AWS-RunShellScript",
            "Targets": [{"Key": "tag:Role", "Values": ["db"]}],
            "Parameters": {"commands": ["true"]},
        }
    )
    # Targets resolve after SendCommand answers: NoInstancesInTag arrives later
    assert reply["Command"]["TargetCount"] == 0
    assert reply["Command"]["Status"] == "Pending"
    command = wait_done(model, reply["Command"]["CommandId"])
    assert (command["Status"], command["StatusDetails"]) == ("Success", "NoInstancesInTag")


@pytest.fixture
def ssm(model: Model, tmp_path: Any) -> Iterator[tuple[Any, Emulator]]:
    emulator = Emulator(model, moto_url="http://127.0.0.1:9", call_log=CallLog(None))
    server, _ = serve_in_thread(emulator)
    client = boto3.session.Session().client(
        "ssm",
        endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    yield client, emulator
    server.shutdown()
    server.server_close()


def test_throttling_wire_shape(ssm: tuple[Any, Emulator]) -> None:
    client, emulator = ssm
    emulator.throttle.configure(rates={"ListCommands": (0.01, 1.0)})
    client.list_commands()
    with pytest.raises(ClientError) as exc:
        client.list_commands()
    error = exc.value.response
    assert error["Error"] == {"Code": "ThrottlingException", "Message": "Rate exceeded"}
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert emulator.calls.since(0)[-1]["throttled"] is True


def test_internal_server_error_wire_shape(ssm: tuple[Any, Emulator]) -> None:
    client, emulator = ssm
    emulator.model.faults.set("error_5xx", known=[], fraction=1.0)
    with pytest.raises(ClientError) as exc:
        client.describe_instance_information()
    assert exc.value.response["Error"]["Code"] == "InternalServerError"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_lost_response_creates_the_command_and_answers_500(ssm: tuple[Any, Emulator]) -> None:
    client, emulator = ssm
    emulator.throttle.configure(enabled=False)
    emulator.model.faults.set("lost_response", known=[], fraction=1.0)
    before = len(client.list_commands()["Commands"])
    with pytest.raises(ClientError) as exc:
        client.send_command(
            InstanceIds=["i-00000000000000001"],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["true"]},
            Comment="ops run #marker",
        )
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    # the client retried once on its own (max_attempts 1): each attempt took
    # effect, so a blind retry has already run the command twice (seen once
    # ListCommands has caught up)
    listed = until(lambda: client.list_commands()["Commands"], lambda got: len(got) >= before + 2)
    assert len(listed) == before + 2
    assert [c["Comment"] for c in listed] == ["ops run #marker"] * 2
    client.describe_instance_information()  # other operations answer as usual


def test_responses_parse_through_boto3(ssm: tuple[Any, Emulator]) -> None:
    client, emulator = ssm
    emulator.throttle.configure(enabled=False)
    ids = [f"i-{n:017x}" for n in range(2)]
    sent = client.send_command(
        InstanceIds=ids, DocumentName="AWS-RunShellScript", Parameters={"commands": ["echo x"]}
    )["Command"]
    assert (
        sent["RequestedDateTime"].year >= 2024 and sent["ExpiresAfter"] > sent["RequestedDateTime"]
    )
    wait_done(emulator.model, sent["CommandId"])
    [inv, _] = until(
        lambda: client.list_command_invocations(CommandId=sent["CommandId"], Details=True)[
            "CommandInvocations"
        ],
        lambda got: len(got) == 2,
    )
    plugin = inv["CommandPlugins"][0]
    assert plugin["ResponseFinishDateTime"] >= plugin["ResponseStartDateTime"]
    assert plugin["Output"] == "x\n"
    got = client.get_command_invocation(CommandId=sent["CommandId"], InstanceId=ids[1])
    assert got["StandardOutputContent"] == "x\n" and got["ExecutionElapsedTime"].startswith("PT")
    assert client.cancel_command(CommandId=sent["CommandId"])["ResponseMetadata"]
