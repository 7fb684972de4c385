"""run_over_ssm's error branches against a fake SSM transport (the boundary faked)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from ops.transports.ssm import CommandSpec, HostResult
from ops.workflows.logs_remote import run_over_ssm


class FakeTransport:
    """Commands finish when `finish` says so; a send to `refuse` raises."""

    def __init__(self, refuse: set[str] = frozenset(), finish: bool = True) -> None:  # type: ignore[assignment]
        self.refuse = refuse
        self.finish = finish
        self.sent: dict[str, str] = {}
        self.scripts: dict[str, str] = {}
        self.cancelled: list[str] = []
        self.lock = threading.Lock()

    def send(self, spec: CommandSpec, *, instance_ids: list[str]) -> str:
        [iid] = instance_ids
        if iid in self.refuse:
            raise RuntimeError("InvalidInstanceId")
        with self.lock:
            command_id = f"c-{iid}"
            self.sent[command_id] = iid
            self.scripts[iid] = spec.commands[0]
        return command_id

    def command_states(self, ids: Any, since: datetime) -> dict[str, dict[str, Any]]:
        status = "Success" if self.finish else "InProgress"
        return {cid: {"CommandId": cid, "Status": status} for cid in ids}

    def invocations(self, command_id: str) -> list[dict[str, Any]]:
        return [{"InstanceId": self.sent[command_id], "CommandId": command_id}]

    def result(self, invocation: dict[str, Any], name: str) -> HostResult:
        return HostResult(invocation["InstanceId"], name, "Success", 0, "out")

    def cancel(self, command_id: str) -> None:
        self.cancelled.append(command_id)


def _run(transport: FakeTransport, **kwargs: Any) -> dict[str, HostResult]:
    seen: dict[str, HostResult] = {}
    scripts = {"i-1": "script one", "i-2": "script two"}
    run_over_ssm(
        transport,  # type: ignore[arg-type]
        scripts,
        {"i-1": "one", "i-2": "two"},
        on_done=lambda r: seen.__setitem__(r.instance_id, r),
        poll=0.01,
        **kwargs,
    )
    return seen


def test_each_host_gets_its_own_command_and_one_result() -> None:
    transport = FakeTransport()
    seen = _run(transport)
    assert transport.scripts == {"i-1": "script one", "i-2": "script two"}
    assert {k: (v.status, v.name) for k, v in seen.items()} == {
        "i-1": ("Success", "one"),
        "i-2": ("Success", "two"),
    }


def test_a_refused_send_is_undeliverable_and_the_others_run() -> None:
    seen = _run(FakeTransport(refuse={"i-2"}))
    assert seen["i-1"].status == "Success"
    assert seen["i-2"].status == "Undeliverable" and "InvalidInstanceId" in seen["i-2"].stderr


def test_no_answer_by_the_deadline_is_timed_out() -> None:
    seen = _run(FakeTransport(finish=False), timeout=0, grace=0.2)
    assert {r.status for r in seen.values()} == {"TimedOut"}


def test_a_cancel_cancels_every_open_command_once() -> None:
    transport = FakeTransport(finish=False)
    cancel = threading.Event()

    def cancel_once_sent(_spec: Any, original: Any = transport.send, **kw: Any) -> str:
        command_id = str(original(_spec, **kw))
        if len(transport.sent) == 2:
            cancel.set()
        return command_id

    transport.send = cancel_once_sent  # type: ignore[method-assign]
    seen = _run(transport, cancel=cancel, timeout=0, grace=0.3)
    assert sorted(transport.cancelled) == ["c-i-1", "c-i-2"]
    assert set(seen) == {"i-1", "i-2"}


def test_after_a_cancel_no_host_is_sent_to() -> None:
    transport = FakeTransport()
    cancel = threading.Event()
    cancel.set()
    seen = _run(transport, cancel=cancel)
    assert transport.sent == {}
    assert {r.status for r in seen.values()} == {"NotStarted"}
