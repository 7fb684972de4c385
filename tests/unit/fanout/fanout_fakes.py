"""A small in-memory SSM that behaves like the real API where the engine cares.

Unit tests need invocations that finish over time, pagination, 50-id limits,
throttling and cut output, without a server; a fake with those few rules is
clearer here than a Stubber script of hundreds of ordered responses.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from ops.fleet.discovery import Host


@dataclass
class Behaviour:
    delay: float = 0.05
    status: str = "Success"
    details: str = "Success"
    code: int = 0
    stdout: str = "ok\n"
    stderr: str = ""


@dataclass
class _Inv:
    command_id: str
    instance_id: str
    ready_at: float
    behaviour: Behaviour
    cancelled: bool = False
    started: float = 0.0

    def view(self, now: float) -> tuple[str, str]:
        if self.cancelled:
            return "Cancelled", "Cancelled"
        if now < self.ready_at:
            return "InProgress", "InProgress"
        return self.behaviour.status, self.behaviour.details


def _error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Op",
    )


class FakeSsm:
    def __init__(self, *, throttle: float = 0.0, seed: int = 1) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.commands: dict[str, list[_Inv]] = {}
        self.requested: dict[str, float] = {}
        self.calls: Counter[str] = Counter()
        self.sent: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.throttle = throttle
        self.max_in_flight = 0
        self.unmanaged: set[str] = set()
        self.comments: dict[str, str] = {}
        self.lose_responses = 0  # this many sends take effect, then answer 500
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def add(self, count: int, **behaviour: Any) -> list[Host]:
        hosts = []
        start = len(self.behaviours)
        for index in range(start, start + count):
            instance_id = f"i-{index:017x}"
            self.behaviours[instance_id] = Behaviour(**behaviour)
            hosts.append(Host(instance_id, f"host-{index}", ping_status="Online"))
        return hosts

    def _enter(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1
            if self.throttle and self._rng.random() < self.throttle:
                self.calls[operation + ":throttled"] += 1
                raise _error("ThrottlingException")

    def _in_flight(self, now: float) -> int:
        return sum(
            1 for invs in self.commands.values() for inv in invs if inv.view(now)[0] == "InProgress"
        )

    # API -----------------------------------------------------------------
    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        self._enter("SendCommand")
        ids = kwargs.get("InstanceIds") or []
        assert len(ids) <= 50, "SendCommand takes at most 50 ids"
        if set(ids) & self.unmanaged:
            raise _error("InvalidInstanceId")
        if kwargs.get("Targets"):
            ids = sorted(self.behaviours)
        now = time.monotonic()
        command_id = str(uuid.uuid4())
        with self._lock:
            self.sent.append(kwargs)
            self.commands[command_id] = [
                _Inv(command_id, i, now + self.behaviours[i].delay, self.behaviours[i], started=now)
                for i in ids
            ]
            self.requested[command_id] = time.time()
            self.comments[command_id] = kwargs.get("Comment", "")
            self.max_in_flight = max(self.max_in_flight, self._in_flight(now))
            if self.lose_responses > 0:
                self.lose_responses -= 1
                raise _error("InternalServerError", 500)
        return {"Command": {"CommandId": command_id}}

    def list_commands(self, **kwargs: Any) -> dict[str, Any]:
        self._enter("ListCommands")
        now = time.monotonic()
        ids = [kwargs["CommandId"]] if kwargs.get("CommandId") else list(self.commands)
        out = []
        for command_id in ids:
            views = [inv.view(now) for inv in self.commands[command_id]]
            done = sum(1 for status, _ in views if status != "InProgress")
            status = "InProgress" if done < len(views) else "Success"
            out.append(
                {
                    "CommandId": command_id,
                    "Comment": self.comments.get(command_id, ""),
                    "Status": status,
                    "CompletedCount": done,
                    "TargetCount": len(views),
                }
            )
        start = int(kwargs.get("NextToken") or 0)
        size = kwargs.get("MaxResults", 50)
        page: dict[str, Any] = {"Commands": out[start : start + size]}
        if start + size < len(out):
            page["NextToken"] = str(start + size)
        return page

    def list_command_invocations(self, **kwargs: Any) -> dict[str, Any]:
        self._enter("ListCommandInvocations")
        now = time.monotonic()
        invs = self.commands[kwargs["CommandId"]]
        start = int(kwargs.get("NextToken") or 0)
        size = kwargs.get("MaxResults", 50)
        rows = []
        for inv in invs[start : start + size]:
            status, details = inv.view(now)
            row: dict[str, Any] = {
                "CommandId": inv.command_id,
                "InstanceId": inv.instance_id,
                "Status": status,
                "StatusDetails": details,
            }
            if kwargs.get("Details"):
                out = ""
                if status not in ("InProgress",):
                    out = inv.behaviour.stdout[:2500]
                    if inv.behaviour.stderr:
                        out += "\n----------ERROR-------\n" + inv.behaviour.stderr
                    out = out[:2500]
                finished = status not in ("InProgress", "Cancelled")
                plugin: dict[str, Any] = {
                    "Name": "aws:runShellScript",
                    "Output": out,
                    "ResponseCode": inv.behaviour.code if finished else -1,
                    "StandardOutputUrl": f"http://127.0.0.1:1/bucket/{inv.command_id}/{inv.instance_id}/stdout",
                }
                if finished:
                    plugin["ResponseStartDateTime"] = datetime.fromtimestamp(1000, UTC)
                    plugin["ResponseFinishDateTime"] = datetime.fromtimestamp(1001.5, UTC)
                row["CommandPlugins"] = [plugin]
            rows.append(row)
        page: dict[str, Any] = {"CommandInvocations": rows}
        if start + size < len(invs):
            page["NextToken"] = str(start + size)
        return page

    def get_command_invocation(self, **kwargs: Any) -> dict[str, Any]:
        self._enter("GetCommandInvocation")
        for inv in self.commands[kwargs["CommandId"]]:
            if inv.instance_id == kwargs["InstanceId"]:
                return {
                    "StandardOutputContent": inv.behaviour.stdout[:24000],
                    "StandardErrorContent": inv.behaviour.stderr[:8000],
                    "StandardOutputUrl": f"http://127.0.0.1:1/bucket/{inv.command_id}/{inv.instance_id}/stdout",
                }
        raise _error("InvocationDoesNotExist")

    def describe_instance_information(self, **kwargs: Any) -> dict[str, Any]:
        self._enter("DescribeInstanceInformation")
        [wanted] = [f["Values"] for f in kwargs["Filters"] if f["Key"] == "InstanceIds"]
        rows = [
            {"InstanceId": i, "PingStatus": "Online"}
            for i in wanted
            if i in self.behaviours and i not in self.unmanaged
        ]
        return {"InstanceInformationList": rows}

    def cancel_command(self, **kwargs: Any) -> dict[str, Any]:
        self._enter("CancelCommand")
        now = time.monotonic()
        with self._lock:
            self.cancelled.append(kwargs["CommandId"])
            for inv in self.commands[kwargs["CommandId"]]:
                if inv.view(now)[0] == "InProgress":
                    inv.cancelled = True
        return {}


class FakeS3:
    def __init__(self, objects: dict[tuple[str, str], str]) -> None:
        self.objects = objects
        self.reads: list[tuple[str, str]] = []

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        self.reads.append((Bucket, Key))
        import io

        return {"Body": io.BytesIO(self.objects[(Bucket, Key)].encode())}
