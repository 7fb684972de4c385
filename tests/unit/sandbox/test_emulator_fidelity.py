"""The emulator as strict as the service: lagging reads, timeouts, rate control, agent output."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ops.sandbox.emulator import Dist, SyntheticProfile
from ops.sandbox.emulator.agentoutput import content, detail_output
from ops.sandbox.emulator.calllog import CallLog
from ops.sandbox.emulator.executors import reboot_code
from ops.sandbox.emulator.model import Model
from ops.sandbox.emulator.server import Emulator, serve_in_thread
from ops.sandbox.emulator.validate import ApiError

IDS = [f"i-{n:017x}" for n in range(40)]


def profile(pickup: float = 0.0, duration: float = 0.0) -> dict[str, Any]:
    return SyntheticProfile(
        pickup_seconds=Dist.fixed(pickup), duration_seconds=Dist.fixed(duration)
    ).to_json()


def make_model(seed: int = 3, **settings: float) -> Model:
    model = Model(seed=seed)
    for key, value in settings.items():
        setattr(model.settings, key, value)
    model.register(
        {"InstanceId": i, "Tags": {"Role": "web" if n < 8 else "db"}, "Profile": profile()}
        for n, i in enumerate(IDS)
    )
    return model


@pytest.fixture
def model() -> Iterator[Model]:
    model = make_model()
    yield model
    model.close()


def until(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 10) -> Any:
    """Read again until `done(result)`; reads lag a little behind writes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = read()
        except ApiError:
            result = None
        if (result is not None and done(result)) or time.monotonic() > deadline:
            return result
        time.sleep(0.02)


def send(model: Model, *commands: str, **extra: Any) -> str:
    request: dict[str, Any] = {
        "DocumentName": "AWS-RunShellScript",
        "Parameters": {"commands": list(commands)},
        **extra,
    }
    if "Targets" not in request:
        request.setdefault("InstanceIds", IDS[:2])
    return str(model.send_command(request)["Command"]["CommandId"])


def command(model: Model, command_id: str) -> dict[str, Any]:
    result: dict[str, Any] = model.list_commands({"CommandId": command_id})["Commands"][0]
    return result


def finished(model: Model, command_id: str, timeout: float = 15) -> dict[str, Any]:
    return dict(
        until(
            lambda: command(model, command_id),
            lambda c: (
                c["Status"] not in ("Pending", "InProgress", "Cancelling")
                and c["CompletedCount"] == c["TargetCount"]
            ),
            timeout,
        )
    )


def invocations(model: Model, command_id: str, **extra: Any) -> list[dict[str, Any]]:
    request = {"CommandId": command_id, "MaxResults": 50, **extra}
    return list(model.list_command_invocations(request)["CommandInvocations"])


# ---- eventual consistency -------------------------------------------------


def test_reads_lag_behind_send_command(model: Model) -> None:
    command_id = send(model, "true")
    with pytest.raises(ApiError) as got:
        model.get_command_invocation({"CommandId": command_id, "InstanceId": IDS[0]})
    assert got.value.code == "InvocationDoesNotExist"
    with pytest.raises(ApiError) as listed:
        model.list_commands({"CommandId": command_id})
    assert listed.value.code == "InvalidCommandId"
    assert model.list_commands({})["Commands"] == []
    assert model.list_command_invocations({"InstanceId": IDS[0]})["CommandInvocations"] == []
    later = until(
        lambda: model.get_command_invocation({"CommandId": command_id, "InstanceId": IDS[0]}),
        lambda reply: reply is not None,
    )
    assert later["CommandId"] == command_id
    assert until(lambda: invocations(model, command_id), lambda got: len(got) == 2)


def test_lags_are_seeded_and_can_be_switched_off() -> None:
    def lags(model: Model) -> list[float]:
        command_id = send(model, "true")
        sent = model.commands[command_id]
        return [sent.visible_at - sent.requested] + [
            inv.visible_at - sent.requested for inv in sent.order
        ]

    first, again, other = make_model(seed=5), make_model(seed=5), make_model(seed=6)
    instant = make_model(consistency_lag_min=0.0, consistency_lag_max=0.0)
    try:
        drawn = lags(first)
        assert all(0.2 <= lag <= 0.85 for lag in drawn)
        assert [round(v, 2) for v in drawn] == [round(v, 2) for v in lags(again)]
        assert [round(v, 2) for v in drawn] != [round(v, 2) for v in lags(other)]
        assert all(lag < 0.05 for lag in lags(instant))
    finally:
        for model in (first, again, other, instant):
            model.close()


def test_targets_resolve_after_the_answer(model: Model) -> None:
    reply = model.send_command(
        {
            "DocumentName": "AWS-RunShellScript",
            "Targets": [{"Key": "tag:Role", "Values": ["web"]}],
            "Parameters": {"commands": ["true"]},
        }
    )["Command"]
    assert (reply["TargetCount"], reply["Status"]) == (0, "Pending")
    done = finished(model, reply["CommandId"])
    assert (done["TargetCount"], done["CompletedCount"], done["Status"]) == (8, 8, "Success")


# ---- timeouts -------------------------------------------------------------


def test_delivery_deadline_is_timeout_plus_execution_timeout(model: Model) -> None:
    # scaled by 0.02: TimeoutSeconds 30 + executionTimeout 70 = 100 s -> 2.0 s
    model.settings.delivery_timeout_scale = 0.02
    model.faults.set("slow_pickup", known=IDS, instances=[IDS[0]], params={"seconds": 0.8})
    model.faults.set("agent_offline", known=IDS, instances=[IDS[1]])
    command_id = model.send_command(
        {
            "DocumentName": "AWS-RunShellScript",
            "InstanceIds": IDS[:2],
            "Parameters": {"commands": ["sleep 60"], "executionTimeout": ["70"]},
            "TimeoutSeconds": 30,
        }
    )["Command"]["CommandId"]
    sent = model.commands[command_id]
    running = until(lambda: sent.invocations[IDS[0]].status, lambda s: s == "InProgress")
    assert running == "InProgress"  # picked up after 0.8 s, past TimeoutSeconds alone (0.6 s)
    done = finished(model, command_id)
    for instance_id in IDS[:2]:
        inv = sent.invocations[instance_id]
        assert (inv.status, inv.details) == ("TimedOut", "DeliveryTimedOut")
        assert inv.end is not None and inv.end - sent.requested >= 1.95
    assert (done["DeliveryTimedOutCount"], done["ErrorCount"]) == (2, 0)
    assert (done["Status"], done["StatusDetails"]) == ("TimedOut", "DeliveryTimedOut")


# ---- rate control ---------------------------------------------------------


def test_targets_widen_one_two_four(model: Model) -> None:
    for inv in IDS[:8]:
        model.instances[inv].profile = SyntheticProfile(
            pickup_seconds=Dist.fixed(0.0), duration_seconds=Dist.fixed(0.25)
        )
    command_id = send(
        model,
        "work",
        Targets=[{"Key": "tag:Role", "Values": ["web"]}],
        MaxConcurrency="100%",
        MaxErrors="100%",
    )
    finished(model, command_id)
    starts = sorted(inv.start or 0.0 for inv in model.commands[command_id].order)
    waves: list[int] = [1]
    for before, after in itertools.pairwise(starts):
        if after - before > 0.15:
            waves.append(1)
        else:
            waves[-1] += 1
    assert waves == [1, 2, 4, 1]


def test_max_errors_terminates_the_rest_and_error_count_follows_the_model(model: Model) -> None:
    model.faults.set("undeliverable", known=IDS, instances=[IDS[0]])
    model.faults.set("hang", known=IDS, instances=[IDS[2]])
    command_id = model.send_command(
        {
            "DocumentName": "AWS-RunShellScript",
            "Targets": [{"Key": "InstanceIds", "Values": IDS[:8]}],
            "Parameters": {"commands": ["exit 3"], "executionTimeout": ["1"]},
            "MaxConcurrency": "1",
            "MaxErrors": "1",
        }
    )["Command"]["CommandId"]
    done = finished(model, command_id)
    details = [inv.details for inv in model.commands[command_id].order]
    # Undeliverable, Failed, ExecutionTimedOut (errors 2 > 1), then Terminated
    assert details[:3] == ["Undeliverable", "Failed", "ExecutionTimedOut"]
    assert details[3:] == ["Terminated"] * 5
    assert (done["ErrorCount"], done["CompletedCount"], done["Status"]) == (2, 8, "Failed")
    skipped = invocations(model, command_id, Filters=[{"key": "Status", "value": "Terminated"}])
    assert {i["Status"] for i in skipped} == {"Cancelled"} and len(skipped) == 5


# ---- reads ----------------------------------------------------------------


def test_describe_instance_information_default_page_is_ten(model: Model) -> None:
    page = model.describe_instance_information({})
    assert len(page["InstanceInformationList"]) == 10 and page["NextToken"]


def test_status_filter_matches_detailed_statuses(model: Model) -> None:
    model.settings.delivery_timeout_scale = 0.01
    model.faults.set("undeliverable", known=IDS, instances=[IDS[0]])
    model.faults.set("agent_offline", known=IDS, instances=[IDS[1]])
    command_id = model.send_command(
        {
            "DocumentName": "AWS-RunShellScript",
            "InstanceIds": IDS[:3],
            "Parameters": {"commands": ["true"], "executionTimeout": ["30"]},
            "TimeoutSeconds": 30,
        }
    )["Command"]["CommandId"]
    finished(model, command_id)
    until(lambda: invocations(model, command_id), lambda got: len(got) == 3)

    def matching(value: str) -> list[str]:
        found = invocations(model, command_id, Filters=[{"key": "Status", "value": value}])
        return [inv["InstanceId"] for inv in found]

    assert matching("Undeliverable") == [IDS[0]]
    assert matching("Failed") == [IDS[0]]
    assert matching("DeliveryTimedOut") == [IDS[1]]
    assert matching("TimedOut") == [IDS[1]]
    assert matching("Success") == [IDS[2]]
    assert matching("ExecutionTimedOut") == []


@pytest.mark.parametrize(
    ("call", "request_body", "code"),
    [
        ("list_command_invocations", {"Filters": [{"key": "Status", "value": "Bogus"}]}, "Value"),
        (
            "list_command_invocations",
            {"Filters": [{"key": "ExecutionStage", "value": "Executing"}]},
            "Key",
        ),
        (
            "list_commands",
            {"InstanceId": IDS[0], "Filters": [{"key": "Status", "value": "Pending"}]},
            "Key",
        ),
        ("list_commands", {"Filters": [{"key": "Status", "value": "Undeliverable"}]}, "Value"),
        (
            "list_commands",
            {
                "Filters": [
                    {"key": "Status", "value": "Success"},
                    {"key": "Status", "value": "Failed"},
                ]
            },
            "Key",
        ),
        (
            "describe_instance_information",
            {
                "Filters": [
                    {"Key": "tag:Role", "Values": ["web"]},
                    {"Key": "PingStatus", "Values": ["Online"]},
                ]
            },
            "Key",
        ),
    ],
    ids=["bad-status", "stage-on-invocations", "instance-and-pending", "command-status",
         "repeated-key", "tags-with-others"],
)  # fmt: skip
def test_forbidden_filters_are_refused(
    model: Model, call: str, request_body: dict[str, Any], code: str
) -> None:
    with pytest.raises(ApiError) as refused:
        getattr(model, call)(request_body)
    assert refused.value.code == f"InvalidFilter{code}"
    assert refused.value.message and "[" not in refused.value.message


# ---- output as the agent builds it ------------------------------------------


def test_detail_output_joins_streams_with_the_agents_markers() -> None:
    assert detail_output("out\n", "") == "out\n"
    assert detail_output("out\n", "err\n") == "out\n\n----------ERROR-------\nerr\n"
    cut = detail_output("é" * 2000, "")  # 4,000 bytes, cut at byte 2,477: inside an é
    assert cut.endswith("\ufffd\n---Output truncated---")
    assert len(cut.replace("\ufffd", "x").encode()) == 2500
    both = detail_output("o" * 3000, "e" * 3000)
    assert "\n---Output truncated---\n----------ERROR-------\n" in both
    assert both.endswith("\n---Error truncated----") and len(both.encode()) <= 2500
    short_out = detail_output("ok\n", "e" * 5000)
    assert short_out.startswith("ok\n\n----------ERROR-------\neee")
    assert short_out.endswith("---Error truncated----") and len(short_out.encode()) <= 2500


def test_content_limit_counts_bytes() -> None:
    assert content("a" * 23999, 24000) == "a" * 23999
    cut = content("é" * 13000, 24000)  # 26,000 bytes, 13,000 characters
    assert cut.endswith("--output truncated--") and len(cut.encode("utf-8", "replace")) <= 24000
    assert content("x" * 24000, 24000).endswith("--output truncated--")


def test_invocation_outputs_as_the_agent_reports_them(model: Model) -> None:
    wide = "é" * 1300  # 1,300 characters, 2,600 bytes: over the detail limit in bytes only
    command_id = send(model, f"echo {wide}", "echo warn >&2", "exit 4", InstanceIds=IDS[:1])
    finished(model, command_id)
    [inv] = until(lambda: invocations(model, command_id, Details=True), lambda got: len(got) == 1)
    output = inv["CommandPlugins"][0]["Output"]
    assert "\n---Output truncated---\n----------ERROR-------\nwarn\n" in output
    assert output.endswith("failed to run commands: exit status 4")
    assert len(output.encode()) <= 2500
    reply = model.get_command_invocation({"CommandId": command_id, "InstanceId": IDS[0]})
    assert reply["StandardOutputContent"] == wide + "\n"
    assert reply["StandardErrorContent"] == "warn\n\nfailed to run commands: exit status 4"


def test_empty_stream_is_not_uploaded_and_upload_comes_before_the_status() -> None:
    written: dict[str, str] = {}
    seen_open: list[bool] = []
    holder: dict[str, Model] = {}

    def writer(bucket: str, key: str, text: str) -> None:
        command_id = key.split("/")[1]
        inv = holder["model"].commands[command_id].order[0]
        seen_open.append(not inv.terminal)
        written[key] = text

    model = Model(seed=2, s3_writer=writer)
    holder["model"] = model
    model.register([{"InstanceId": IDS[0], "Profile": profile()}])
    try:
        command_id = send(
            model, "echo hi", InstanceIds=IDS[:1], OutputS3BucketName="out", OutputS3KeyPrefix="p"
        )
        finished(model, command_id)
        assert [key.rsplit("/", 1)[1] for key in written] == ["stdout"]
        assert seen_open == [True]
        [inv] = until(lambda: invocations(model, command_id), lambda got: len(got) == 1)
        assert inv["StandardErrorUrl"].endswith("/stderr")  # named, though nothing is there
    finally:
        model.close()


# ---- reboot codes -----------------------------------------------------------


def test_reboot_codes_on_linux(model: Model) -> None:
    """194 reboots and runs again; 3010 (Windows' code) is status 194 on Linux, where
    an exit status has 8 bits, so it reboots too; 195 is a plain failure."""
    model.settings.reboot_seconds = 0.1
    sent = {
        code: send(model, "echo run", f"exit {code}", InstanceIds=IDS[n : n + 1])
        for n, code in enumerate((194, 3010, 195))
    }
    for command_id in sent.values():
        finished(model, command_id)
    ran = {code: model.commands[cid].order[0] for code, cid in sent.items()}
    assert (ran[194].details, ran[194].response_code, ran[194].attempt) == ("Success", 0, 1)
    assert (ran[3010].details, ran[3010].response_code, ran[3010].attempt) == ("Success", 0, 1)
    assert (ran[195].details, ran[195].response_code, ran[195].attempt) == ("Failed", 195, 0)
    assert reboot_code("Linux") == 194 and reboot_code("Windows") == 3010


# ---- errors on the wire -------------------------------------------------------


@pytest.fixture
def endpoint(model: Model) -> Iterator[tuple[str, int]]:
    emulator = Emulator(model, moto_url="http://127.0.0.1:9", call_log=CallLog(None))
    emulator.throttle.configure(enabled=False)
    server, _ = serve_in_thread(emulator)
    yield "127.0.0.1", int(server.server_address[1])
    server.shutdown()
    server.server_close()


def raw_call(endpoint: tuple[str, int], operation: str, body: dict[str, Any]) -> Any:
    """An awsJson1_1 call without botocore, as any other SDK would make it."""
    connection = http.client.HTTPConnection(*endpoint, timeout=10)
    try:
        connection.request(
            "POST",
            "/",
            body=json.dumps(body),
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"AmazonSSM.{operation}",
            },
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_errors_carry_type_and_message_for_any_client(endpoint: tuple[str, int]) -> None:
    unknown = ["i-0123456789abcdef0", "i-0123456789abcdef1"]
    status, body = raw_call(
        endpoint,
        "SendCommand",
        {"DocumentName": "AWS-RunShellScript", "InstanceIds": unknown,
         "Parameters": {"commands": ["true"]}},
    )  # fmt: skip
    assert status == 400 and body["__type"] == "InvalidInstanceId"
    assert body["message"] == body["Message"]
    assert "[[i-0123456789abcdef0, i-0123456789abcdef1]]" in body["message"]
    assert "'" not in body["message"]
    status, body = raw_call(
        endpoint,
        "GetCommandInvocation",
        {"CommandId": "00000000-0000-4000-8000-000000000000", "InstanceId": unknown[0]},
    )
    assert (status, body["__type"]) == (400, "InvocationDoesNotExist")
    assert body["message"] and body["Message"] == body["message"]
    status, body = raw_call(endpoint, "ListCommands", {"MaxResults": 51, "Filters": []})
    assert body["__type"] == "ValidationException" and body["Message"]
    assert "'[" not in body["message"]
    status, body = raw_call(
        endpoint,
        "SendCommand",
        {"DocumentName": "AWS-RunShellScript", "InstanceIds": [IDS[0]],
         "Parameters": {"commands": ["true"], "shell": ["bash"], "env": ["x"]}},
    )  # fmt: skip
    assert body["__type"] == "InvalidParameters"
    assert "[env, shell]" in body["message"] and "'" not in body["message"]


def test_concurrent_reads_during_resolution_are_safe(model: Model) -> None:
    """Reads racing the resolution of Targets see either nothing or whole invocations."""
    command_id = send(model, "true", Targets=[{"Key": "tag:Role", "Values": ["db"]}])
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(200):
                try:
                    invocations(model, command_id)
                except ApiError as exc:
                    assert exc.code == "InvalidCommandId"
                time.sleep(0.002)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert finished(model, command_id)["TargetCount"] == 32
