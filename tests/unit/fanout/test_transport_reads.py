"""SsmTransport against an eventually consistent SSM: reads that lag, empty streams, skewed clocks.

Each fake answers the way the service (and the stricter emulator) does in the
moments after a send; the integration tests run the same paths for real.
"""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from ops.transports.pacing import Pacer
from ops.transports.ssm import CommandSpec, SendStopped, SendUnsure, SsmTransport


def error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Op",
    )


class Lagging:
    """Answers `code` for the first `misses` calls of each operation, then `answer`."""

    def __init__(self, code: str, misses: int, answer: dict[str, Any]) -> None:
        self.code = code
        self.misses = misses
        self.answer = answer
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _serve(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((operation, kwargs))
        if sum(1 for op, _ in self.calls if op == operation) <= self.misses:
            raise error(self.code)
        return self.answer

    def list_commands(self, **kwargs: Any) -> dict[str, Any]:
        return self._serve("list_commands", kwargs)

    def list_command_invocations(self, **kwargs: Any) -> dict[str, Any]:
        return self._serve("list_command_invocations", kwargs)

    def get_command_invocation(self, **kwargs: Any) -> dict[str, Any]:
        return self._serve("get_command_invocation", kwargs)

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        return self._serve("send_command", kwargs)


CUT = "x" * 2477 + "\n---Output truncated---"


def invocation(output: str = CUT) -> dict[str, Any]:
    return {
        "CommandId": "c" * 36,
        "InstanceId": "i-00000000000000001",
        "Status": "Success",
        "StatusDetails": "Success",
        "CommandPlugins": [
            {
                "ResponseCode": 0,
                "Output": output,
                "StandardOutputUrl": "https://s3.amazonaws.com/out/p/stdout",
                "StandardErrorUrl": "https://s3.amazonaws.com/out/p/stderr",
            }
        ],
    }


def test_a_command_not_readable_yet_is_not_listed() -> None:
    ssm = Lagging("InvalidCommandId", 1, {"Commands": [{"CommandId": "c" * 36}]})
    transport = SsmTransport(ssm)
    since = datetime.now(UTC)
    assert transport.command_states(["c" * 36], since) == {}
    assert list(transport.invocations("c" * 36)) == []
    assert transport.command_states(["c" * 36], since) == {"c" * 36: {"CommandId": "c" * 36}}


def test_other_errors_while_listing_are_raised() -> None:
    transport = SsmTransport(Lagging("AccessDeniedException", 5, {}))
    with pytest.raises(ClientError):
        transport.command_states(["c" * 36], datetime.now(UTC))
    with pytest.raises(ClientError):
        list(transport.invocations("c" * 36))


def test_invocation_does_not_exist_after_a_send_is_a_wait() -> None:
    full = {"StandardOutputContent": "x" * 3000, "StandardErrorContent": ""}
    ssm = Lagging("InvocationDoesNotExist", 2, full)
    result = SsmTransport(ssm).result(invocation(), "web-1")
    assert result.stdout == "x" * 3000 and not result.output_truncated
    assert [op for op, _ in ssm.calls] == ["get_command_invocation"] * 3


def test_invocation_that_never_appears_fails_after_the_catch_up_time() -> None:
    transport = SsmTransport(Lagging("InvocationDoesNotExist", 1000, {}))
    transport.catch_up_seconds = 0.3
    with pytest.raises(ClientError) as failed:
        transport.result(invocation(), "web-1")
    assert failed.value.response["Error"]["Code"] == "InvocationDoesNotExist"


def test_detail_output_cut_in_its_stderr_part_is_fetched_whole() -> None:
    cut = "ok\n\n----------ERROR-------\n" + "e" * 100 + "\n---Error truncated----"
    full = {"StandardOutputContent": "ok\n", "StandardErrorContent": "e" * 4000}
    result = SsmTransport(Lagging("none", 0, full)).result(invocation(cut), "web-1")
    assert (result.stdout, result.stderr) == ("ok\n", "e" * 4000)


class S3:
    def __init__(self, objects: dict[str, str]) -> None:
        self.objects = objects

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        if Bucket != "out":
            raise error("NoSuchBucket", 404)
        if Key not in self.objects:
            raise error("NoSuchKey", 404)
        return {"Body": io.BytesIO(self.objects[Key].encode())}


def test_no_such_key_is_an_empty_stream_and_never_costs_the_text_in_hand() -> None:
    transport = SsmTransport(None, S3({"p/stdout": "full\n" * 6000}))
    assert transport._from_s3("https://s3.amazonaws.com/out/p/stderr") == ""
    assert transport._from_s3("https://s3.amazonaws.com/gone/p/stderr") is None
    assert transport._from_s3("https://s3.amazonaws.com/out/p/stdout") == "full\n" * 6000
    # stdout cut at 24,000, its object missing: what GetCommandInvocation gave is kept
    cut = "y" * 23980 + "--output truncated--"
    ssm = Lagging("none", 0, {"StandardOutputContent": cut, "StandardErrorContent": ""})
    result = SsmTransport(ssm, S3({})).result(invocation(), "web-1")
    assert result.stdout == "y" * 23980 and result.output_truncated


class Listing:
    """ListCommands that shows a sent command only from its `shows_from`-th call on."""

    def __init__(self, shows_from: int) -> None:
        self.shows_from = shows_from
        self.listed = 0
        self.filters: list[Any] = []

    def list_commands(self, **kwargs: Any) -> dict[str, Any]:
        self.listed += 1
        self.filters.append(kwargs.get("Filters"))
        if self.listed < self.shows_from:
            return {"Commands": []}
        return {"Commands": [{"CommandId": "c" * 36, "Comment": "ops run #abc"}]}


class LostSends:
    """SendCommand that creates the command and then loses its first `lose` answers
    (a 500, or a dropped connection); ListCommands shows commands from its
    `shows_from`-th call on, or always fails with `list_error`."""

    def __init__(
        self,
        lose: int,
        *,
        shows_from: int = 1,
        created: bool = True,
        how: str = "500",
        list_error: str | None = None,
    ) -> None:
        self.lose, self.shows_from, self.created = lose, shows_from, created
        self.how, self.list_error = how, list_error
        self.sent: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.listed = 0

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        self.sent.append(kwargs)
        command = {
            "CommandId": f"{len(self.sent):036d}",
            "Comment": kwargs["Comment"],
            "RequestedDateTime": datetime.now(UTC),
        }
        if len(self.sent) <= self.lose:
            if self.created:
                self.commands.append(command)
            if self.how == "dropped":
                raise ConnectionClosedError(endpoint_url="http://ssm")
            raise error("InternalServerError", 500)
        self.commands.append(command)
        return {"Command": command}

    def list_commands(self, **kwargs: Any) -> dict[str, Any]:
        self.listed += 1
        if self.list_error:
            raise error(self.list_error, 500 if self.list_error == "InternalFailure" else 400)
        if self.listed < self.shows_from:
            return {"Commands": []}
        return {"Commands": list(self.commands)}


def _transport(ssm: Any, window: float = 1.0) -> SsmTransport:
    transport = SsmTransport(ssm, max_retry_delay=30.0)
    transport.catch_up_seconds = window
    return transport


@pytest.mark.parametrize("how", ["500", "dropped"])
def test_a_lost_send_is_found_by_its_marker_and_not_sent_again(how: str) -> None:
    ssm = LostSends(1, shows_from=3, how=how)
    command_id = _transport(ssm, window=5.0).send(CommandSpec(["true"]), instance_ids=["i-1"])
    assert command_id == "1".zfill(36)
    assert len(ssm.sent) == 1 and ssm.listed == 3  # the lagging listing was asked again


def test_a_send_not_created_is_sent_again_only_after_the_whole_window() -> None:
    ssm = LostSends(1, created=False)
    started = time.monotonic()
    command_id = _transport(ssm, window=1.0).send(CommandSpec(["true"]), instance_ids=["i-1"])
    assert command_id == "2".zfill(36) and len(ssm.sent) == 2
    assert time.monotonic() - started >= 1.0
    assert ssm.listed >= 2


def test_the_search_window_is_at_least_the_read_timeout() -> None:
    import boto3
    from botocore.config import Config

    sender = boto3.client(
        "ssm", region_name="us-east-1", config=Config(read_timeout=42),
        aws_access_key_id="x", aws_secret_access_key="x",
    )  # fmt: skip
    transport = SsmTransport(None, per_operation={"send_command": sender})
    assert transport.search_window() == 42.0
    transport.catch_up_seconds = 90.0
    assert transport.search_window() == 90.0


@pytest.mark.parametrize("list_error", ["InternalFailure", "AccessDeniedException"])
def test_a_search_that_cannot_decide_raises_send_unsure(list_error: str) -> None:
    ssm = LostSends(1, list_error=list_error)
    with pytest.raises(SendUnsure) as unsure:
        _transport(ssm, window=0.5).send(CommandSpec(["true"]), instance_ids=["i-1"])
    assert len(ssm.sent) == 1  # never sent twice
    assert unsure.value.marker.startswith("#") and unsure.value.marker in ssm.sent[0]["Comment"]
    assert list_error in str(unsure.value)


def test_a_throttled_send_stops_retrying_once_a_cancel_is_asked() -> None:
    class Refusing:
        calls = 0

        def send_command(self, **kwargs: Any) -> dict[str, Any]:
            Refusing.calls += 1
            raise error("ThrottlingException")

    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    transport = SsmTransport(Refusing(), pacer=Pacer(min_rate=20.0))
    started = time.monotonic()
    with pytest.raises(SendStopped):
        transport.send(CommandSpec(["true"]), instance_ids=["i-1"], stop=stop)
    assert time.monotonic() - started < 5.0
    calls = Refusing.calls
    time.sleep(0.2)
    assert Refusing.calls == calls


def test_search_windows_tolerate_a_clock_fifteen_minutes_off() -> None:
    ssm = Listing(shows_from=1)
    transport = SsmTransport(ssm)
    started = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    transport.command_states(["a" * 36, "b" * 36, "c" * 36], started)
    [[bound]] = ssm.filters
    assert bound == {"key": "InvokedAfter", "value": "2026-01-01T11:45:00Z"}
    assert transport.clock_skew == timedelta(minutes=15)


class Throttling:
    def __init__(self, throttled: int) -> None:
        self.throttled = throttled
        self.calls = 0

    def list_commands(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.throttled:
            raise error("ThrottlingException")
        return {"Commands": []}


def test_every_call_is_paced_and_its_throttles_counted() -> None:
    pacer = Pacer()
    transport = SsmTransport(Throttling(2), pacer=pacer)
    assert transport.call("list_commands") == {"Commands": []}
    assert transport.throttled == 2
    stats = pacer.stats()["list_commands"]
    assert (stats["calls"], stats["throttled"]) == (3, 2)
    assert stats["rate"] is not None  # learnt from the throttles


class Partial:
    """SendCommand to three ids, whose listing shows only the invocations made visible."""

    def __init__(self) -> None:
        self.visible: list[str] = []

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        return {"Command": {"CommandId": "c" * 36}}

    def list_command_invocations(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "CommandInvocations": [
                {"InstanceId": i, "Status": "Success", "StatusDetails": "Success"}
                for i in self.visible
            ]
        }


def test_an_invocation_missing_from_the_listing_keeps_the_command_open() -> None:
    from ops.transports.ssm import CommandSpec

    ssm = Partial()
    transport = SsmTransport(ssm)
    ids = [f"i-{n:017x}" for n in range(3)]
    command_id = transport.send(CommandSpec(["true"]), instance_ids=ids)
    ssm.visible = ids[:2]
    listed = list(transport.invocations(command_id))
    assert [i["InstanceId"] for i in listed] == [*ids[:2], ""]
    assert (listed[-1]["Status"], listed[-1]["StatusDetails"]) == ("Pending", "NotListedYet")
    ssm.visible = ids
    assert [i["InstanceId"] for i in transport.invocations(command_id)] == ids


def test_pacing_can_be_switched_off_for_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SsmTransport(None).pacer is not None
    monkeypatch.setattr(SsmTransport, "paced", False)
    transport = SsmTransport(Throttling(1))
    assert transport.pacer is None
    assert transport.call("list_commands") == {"Commands": []}
    assert transport.throttled == 1


def test_a_throttle_that_outlasts_the_retry_budget_is_raised() -> None:
    transport = SsmTransport(Throttling(1000), max_retry_delay=0.2, pacer=Pacer(min_rate=50.0))
    with pytest.raises(ClientError) as gave_up:
        transport.call("list_commands")
    assert gave_up.value.response["Error"]["Code"] == "ThrottlingException"
    assert transport.throttled >= 2  # tried again through the pacer before giving up
