"""SshCommandStep's branches with the SSH boundary faked: each error path reached once.

The real path (sshd, the wrapper's record on the host, kill, resume) is in
tests/integration/run_ssh; here a fake transport answers as a host would, so
the failures a real fleet gives rarely (a refused cancel, a lost process, a
host gone mid-collect) are reached on purpose.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ops.engine.budget import FailureBudget, parse_concurrency, parse_max_errors
from ops.engine.plan import InFlight, Settled, StepContext
from ops.engine.recorder import RunRecorder
from ops.engine.ssh_step import SshCommandStep, SshRoute
from ops.errors import BadInput
from ops.fleet.discovery import Host
from ops.fleet.targets import TargetSpec
from ops.journal.store import Journal
from ops.transports import ssh_run
from ops.transports.ssh import CommandResult, SshTarget, SshUnreachable
from ops.transports.ssm import HostResult
from ops.workflows.run import RunRequest

Answer = Callable[[str, str], CommandResult]


class FakeSsh:
    """Answers by the kind of shell text sent; `answer(host, kind)` decides."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.sent: list[tuple[str, str]] = []
        self.closed = False

    @staticmethod
    def kind(text: str) -> str:
        if "umask 077" in text:
            return "run"
        if "echo absent" in text:
            return "state"
        if "kill -TERM" in text:
            return "cancel"
        if "head -c" in text:
            return "read-out" if 'p}out"' in text else "read-err"
        return "probe"

    def run_command(
        self, target: SshTarget, text: str, *, stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> CommandResult:  # fmt: skip
        kind = self.kind(text)
        self.sent.append((target.instance_id, kind))
        return self.answer(target.instance_id, kind)

    def map(self, targets: list[SshTarget], work: Callable[[SshTarget], Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for target in targets:
            try:
                found[target.instance_id] = work(target)
            except Exception as exc:
                found[target.instance_id] = exc
        return found

    def close(self) -> None:
        self.closed = True


def _done(iid: str, code: int | None, out: bytes = b"", err: bytes = b"", took: float = 0.1,
          timed_out: bool = False) -> CommandResult:  # fmt: skip
    return CommandResult(iid, code, out, err, took, timed_out)


HOSTS = [Host(f"i-{n}", f"web-{n}", ping_status="Online") for n in range(1, 4)]


def _step(fake: FakeSsh, timeout: int = 60, cancel_wait: float = 0.3) -> SshCommandStep:
    targets = {h.instance_id: SshTarget(h.instance_id, "127.0.0.1", 2200) for h in HOSTS}
    route = SshRoute(targets, {})
    return SshCommandStep("run", "hostname", route, fake, execution_timeout=timeout,  # type: ignore[arg-type]
                          cancel_wait=cancel_wait)  # fmt: skip


def _drive(
    tmp_path: Path, step: SshCommandStep, hosts: list[Host], *, settled: Settled | None = None,
    max_errors: str = "10", cancel: threading.Event | None = None,
) -> tuple[list[HostResult], Any]:  # fmt: skip
    journal = Journal(tmp_path / "j.sqlite3")
    run = journal.begin_run("run", {}, "test")
    results: list[HostResult] = []
    budget = FailureBudget(len(hosts), parse_concurrency("10"), parse_max_errors(max_errors))
    with RunRecorder(journal, run.id) as recorder:
        recorder.intend("run", hosts)
        context = StepContext(
            transport=None,  # type: ignore[arg-type]
            recorder=recorder,
            budget=budget,
            on_result=results.append,
            cancel=cancel or threading.Event(),
            register=lambda _c: None,
        )
        report = step.run(hosts, context, settled or Settled())
    journal.close()
    return results, report


def _status(results: list[HostResult]) -> dict[str, str]:
    return {r.instance_id: r.status for r in results}


def test_exit_codes_timeouts_and_unreachable_hosts_map_to_ssm_statuses(tmp_path: Path) -> None:
    answers = {
        "i-1": _done("i-1", 0, b"web-1\n"),
        "i-2": _done("i-2", None, timed_out=True),
        "i-3": _done("i-3", 124, took=61.0),
    }
    fake = FakeSsh(lambda iid, _kind: answers[iid])
    results, report = _drive(tmp_path, _step(fake), HOSTS)
    assert _status(results) == {"i-1": "Success", "i-2": "TimedOut", "i-3": "TimedOut"}
    assert report.counts == {"Success": 1, "TimedOut": 2}


def test_a_dropped_connection_or_refused_login_is_undeliverable(tmp_path: Path) -> None:
    def answer(iid: str, _kind: str) -> CommandResult:
        if iid == "i-1":
            raise SshUnreachable("i-1: host key does not match")
        return _done(iid, None)

    results, _ = _drive(tmp_path, _step(FakeSsh(answer)), HOSTS[:2])
    by_id = {r.instance_id: r for r in results}
    assert by_id["i-1"].status == "Undeliverable" and "host key" in by_id["i-1"].stderr
    assert by_id["i-2"].status == "Failed" and "connection ended" in by_id["i-2"].stderr


def test_a_host_without_a_route_is_unreachable_with_its_reason(tmp_path: Path) -> None:
    fake = FakeSsh(lambda iid, _kind: _done(iid, 0))
    step = _step(fake)
    step.route = SshRoute({}, {"i-1": "SSH address 10.0.0.5 is outside ssh_networks"})
    results, _ = _drive(tmp_path, step, HOSTS[:1])
    assert results[0].status == "Unreachable" and "outside ssh_networks" in results[0].stderr
    assert fake.sent == []


def test_output_past_the_cap_is_cut_and_flagged(tmp_path: Path) -> None:
    big = b"x" * (ssh_run.OUTPUT_CAP + 1)
    fake = FakeSsh(lambda iid, _kind: _done(iid, 0, big))
    results, _ = _drive(tmp_path, _step(fake), HOSTS[:1])
    assert results[0].output_truncated and len(results[0].stdout) == ssh_run.OUTPUT_CAP


def _cancel_case(tmp_path: Path, on_cancel: Callable[[], CommandResult], finish: bool
                 ) -> list[HostResult]:  # fmt: skip
    """One host running until cancelled; the cancel's own answer decides the outcome."""
    release = threading.Event()
    started = threading.Event()
    cancel = threading.Event()

    def answer(iid: str, kind: str) -> CommandResult:
        if kind == "run":
            started.set()
            release.wait(10)
            return _done(iid, 143 if finish else None)
        if kind == "cancel":
            result = on_cancel()
            if finish:
                release.set()
            return result
        raise AssertionError(kind)

    def press() -> None:
        started.wait(10)
        cancel.set()

    threading.Thread(target=press, daemon=True).start()
    fake = FakeSsh(answer)
    try:
        results, report = _drive(tmp_path, _step(fake), HOSTS[:1], cancel=cancel)
    finally:
        release.set()
    assert report.interrupted
    return results


def test_a_confirmed_cancel_reports_cancelled(tmp_path: Path) -> None:
    results = _cancel_case(tmp_path, lambda: _done("i-1", 0), finish=True)
    assert _status(results) == {"i-1": "Cancelled"}


def test_a_cancel_that_fails_reports_cancel_failed(tmp_path: Path) -> None:
    def refuse() -> CommandResult:
        raise SshUnreachable("connection reset")

    results = _cancel_case(tmp_path, refuse, finish=False)
    assert results[0].status == "CancelFailed" and "connection reset" in results[0].stderr


def test_a_cancel_never_confirmed_reports_running(tmp_path: Path) -> None:
    results = _cancel_case(tmp_path, lambda: _done("i-1", 0), finish=False)
    assert results[0].status == "Running" and "not confirmed" in results[0].stderr


def test_the_budget_stops_dispatch_and_the_rest_are_not_started(tmp_path: Path) -> None:
    fake = FakeSsh(lambda iid, _kind: _done(iid, 5))
    step = _step(fake)
    journal = Journal(tmp_path / "j.sqlite3")
    run = journal.begin_run("run", {}, "test")
    results: list[HostResult] = []
    budget = FailureBudget(3, parse_concurrency("1"), parse_max_errors("0"))
    with RunRecorder(journal, run.id) as recorder:
        recorder.intend("run", HOSTS)
        context = StepContext(None, recorder, budget, results.append, threading.Event(),  # type: ignore[arg-type]
                              lambda _c: None)  # fmt: skip
        report = step.run(HOSTS, context, Settled())
    assert [r.status for r in results] == ["Failed", "NotStarted", "NotStarted"]
    assert report.stopped_by_budget
    journal.close()


def test_resume_collects_a_started_command_and_never_runs_it_again(tmp_path: Path) -> None:
    states = iter([b"running\n", b"rc 0\n"])

    def answer(iid: str, kind: str) -> CommandResult:
        if kind == "state":
            return _done(iid, 0, next(states))
        if kind == "read-out":
            return _done(iid, 0, b"web-1\n")
        if kind == "read-err":
            return _done(iid, 0, b"")
        raise AssertionError(kind)

    fake = FakeSsh(answer)
    marker = "ssh-0123456789abcdef"
    results, _ = _drive(tmp_path, _step(fake), [], settled=Settled({marker: HOSTS[:1]}))
    assert results[0].status == "Success" and results[0].stdout == "web-1\n"
    assert ("i-1", "run") not in fake.sent


@pytest.mark.parametrize(
    ("answer", "status", "words"),
    [
        (b"lost\n", "Failed", "without an exit code"),
        (b"absent\n", "NotStarted", ""),
        (b"garbage\n", "Undeliverable", "cannot read"),
    ],
)
def test_resume_reports_a_lost_absent_or_unreadable_record(
    tmp_path: Path, answer: bytes, status: str, words: str
) -> None:
    fake = FakeSsh(lambda iid, _kind: _done(iid, 0, answer))
    marker = "ssh-0123456789abcdef"
    results, _ = _drive(tmp_path, _step(fake), [], settled=Settled({marker: HOSTS[:1]}))
    assert results[0].status == status and words in results[0].stderr


def test_settle_asks_each_host_whether_its_command_started(tmp_path: Path) -> None:
    def answer(iid: str, _kind: str) -> CommandResult:
        if iid == "i-3":
            raise SshUnreachable("i-3: timed out connecting")
        return _done(iid, 0 if iid == "i-1" else 1)

    step = _step(FakeSsh(answer))
    items = [InFlight(h, n, "ssh-00000000aaaa", None, 0.0) for n, h in enumerate(HOSTS)]
    settled = step.settle(items, None)  # type: ignore[arg-type]
    adopted = {h.instance_id for hosts in settled.adopt.values() for h in hosts}
    assert adopted == {"i-1", "i-3"}  # i-3 unknown: collecting reports what it finds
    assert [h.instance_id for h in settled.unsent] == ["i-2"]


def test_requests_refuse_what_ssh_cannot_take() -> None:
    target = TargetSpec({}, ("i-1",), ())
    amount = parse_concurrency("1")
    with pytest.raises(BadInput, match="--via"):
        RunRequest(["true"], target, amount, amount, via="telnet")
    with pytest.raises(BadInput, match="--server-side"):
        RunRequest(["true"], target, amount, amount, via="ssh", server_side=True)
    with pytest.raises(BadInput, match="NUL"):
        RunRequest(["a\0b"], target, amount, amount, via="auto")
    with pytest.raises(ValueError):
        ssh_run.wrapped("true", "ssh-$(reboot)", 5)


def test_an_unknown_via_exits_2_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from ops.cli.main import cli

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing answers there
    done = CliRunner().invoke(cli, ["--yes", "run", "--instance", "i-1", "--via", "rsh", "--",
                                    "true"])  # fmt: skip
    assert done.exit_code == 2
    assert "'rsh' is not one of 'ssm', 'ssh', 'auto'" in done.output
