"""A patch run halted by its budget or an alarm is resumed: the runtime and the journal
are real, the host actions are fakes that count their calls (the sandbox test in
tests/integration/patch runs the real ones)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import ops.cli.patch_run  # noqa: F401  (registers the patch resumer)
from ops.engine.budget import Amount
from ops.engine.plan import GateResult, Plan
from ops.engine.resume import check_resumable, register_resumer
from ops.engine.runtime import JournalState, Runtime
from ops.errors import BadInput, ExitCode
from ops.fleet.discovery import Host
from ops.journal.store import Journal
from ops.transports.ssm import HostResult
from ops.workflows.patch_run import STEPS, HostEntry, HostStep, PatchRun, Timing, reexamine

IDS = ("i-1", "i-2", "i-3")
ARGUMENTS = {"entries": {}, "waves": [list(IDS)]}  # what check_resumable looks for


class Fleet:
    """Host actions that count what they did and fail where the test says."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.broken: set[tuple[str, str]] = set()

    def action(self, step: str) -> Any:
        def act(entry: HostEntry, _facts: dict[str, Any]) -> dict[str, Any]:
            self.calls[(step, entry.instance_id)] += 1
            if (step, entry.instance_id) in self.broken:
                from ops.workflows.patch_run import StepFailed

                raise StepFailed(f"{step} failed on {entry.instance_id}")
            return {"seconds": 0.0}

        return act


class Alarm:
    name = "alarms"

    def __init__(self) -> None:
        self.state = "OK"

    def check(self) -> GateResult:
        return GateResult(self.state == "OK", f"web-5xx is {self.state}")


def _plan(fleet: Fleet, gate: Alarm, arguments: dict[str, Any]) -> Plan:
    entries = {i: HostEntry(i, f"web-{i[-1]}", "debian-12", []) for i in IDS}
    patch_run = PatchRun(None, entries, Timing())  # type: ignore[arg-type]  (no AWS call made)
    steps = [
        HostStep(name, fleet.action(name), patch_run, first=name == STEPS[0]) for name in STEPS
    ]
    return Plan(
        kind="patch",
        arguments=arguments,
        waves=[[Host(i, f"web-{i[-1]}")] for i in IDS],
        steps=steps,
        concurrency=Amount(100, True),
        max_errors=Amount(0, False),
        gates=[gate],
        record_output=True,
    )


def _runtime(journal: Journal) -> Runtime:
    def keep(_result: HostResult) -> None:
        """Results are read back from the journal."""

    return Runtime(None, journal, on_result=keep)  # type: ignore[arg-type]


def _resume(journal: Journal, run_id: str, plan: Plan) -> tuple[Any, list[str]]:
    run, _resumer = check_resumable(journal, run_id)
    held = journal.claim(run.id)
    state = JournalState.load(journal, run_id)
    again = reexamine(state)
    return _runtime(journal).resume(plan, held, state), again


def test_a_budget_halt_resumes_and_re_examines_the_failed_host(tmp_path: Path) -> None:
    fleet, gate = Fleet(), Alarm()
    fleet.broken.add(("apply", "i-2"))
    arguments = dict(ARGUMENTS)
    with Journal(tmp_path / "journal.sqlite3") as journal:
        first = _runtime(journal).execute(_plan(fleet, gate, arguments), "sandbox")
        assert first.exit_code == ExitCode.STOPPED and first.stopped_by_budget
        run = journal.get_run(first.run_id)
        assert run is not None and run.status == "stopped"
        assert fleet.calls[("precheck", "i-3")] == 0  # the halt started no new host

        fleet.broken.clear()  # the operator fixed the cause
        second, again = _resume(journal, first.run_id, _plan(fleet, gate, arguments))
        assert again == ["i-2"]
        assert second.exit_code == ExitCode.OK
        # i-2 again from the step it failed at, not from the start; i-1 left alone
        assert fleet.calls[("precheck", "i-2")] == 1 and fleet.calls[("drain", "i-2")] == 1
        assert fleet.calls[("apply", "i-2")] == 2 and fleet.calls[("register", "i-2")] == 1
        assert all(fleet.calls[(step, "i-1")] == 1 for step in STEPS)
        assert all(fleet.calls[(step, "i-3")] == 1 for step in STEPS)
        ended = journal.get_run(first.run_id)
        assert ended is not None and ended.status == "succeeded"
        with pytest.raises(BadInput, match="already succeeded"):
            check_resumable(journal, first.run_id)


def test_a_host_that_fails_again_halts_the_resume_before_any_new_host(tmp_path: Path) -> None:
    fleet, gate = Fleet(), Alarm()
    fleet.broken.add(("postcheck", "i-1"))
    with Journal(tmp_path / "journal.sqlite3") as journal:
        first = _runtime(journal).execute(_plan(fleet, gate, dict(ARGUMENTS)), "sandbox")
        assert first.exit_code == ExitCode.STOPPED
        second, again = _resume(journal, first.run_id, _plan(fleet, gate, dict(ARGUMENTS)))
        assert again == ["i-1"] and second.exit_code == ExitCode.STOPPED
        assert fleet.calls[("postcheck", "i-1")] == 2 and fleet.calls[("apply", "i-1")] == 1
        assert fleet.calls[("precheck", "i-2")] == 0  # the budget, spent again, holds the rest


def test_an_alarm_halt_resumes_once_the_alarm_is_ok(tmp_path: Path) -> None:
    fleet, gate = Fleet(), Alarm()
    done: list[str] = []

    class AlarmAfterCanary(Alarm):
        def check(self) -> GateResult:
            if fleet.calls[("register", "i-1")]:
                self.state = "ALARM"
            done.append(self.state)
            return GateResult(self.state == "OK", f"web-5xx is {self.state}")

    with Journal(tmp_path / "journal.sqlite3") as journal:
        first = _runtime(journal).execute(
            _plan(fleet, AlarmAfterCanary(), dict(ARGUMENTS)), "sandbox"
        )
        assert first.exit_code == ExitCode.STOPPED and first.gate == "alarms: web-5xx is ALARM"
        assert done == ["OK", "ALARM"]
        still = Alarm()
        still.state = "ALARM"
        held, _again = _resume(journal, first.run_id, _plan(fleet, still, dict(ARGUMENTS)))
        assert held.exit_code == ExitCode.STOPPED  # not fixed yet: held again, nothing sent
        assert fleet.calls[("precheck", "i-2")] == 0
        second, again = _resume(journal, first.run_id, _plan(fleet, gate, dict(ARGUMENTS)))
        assert again == [] and second.exit_code == ExitCode.OK
        assert set(fleet.calls.values()) == {1}  # every step once on every host
        assert len(fleet.calls) == len(STEPS) * len(IDS)


def test_a_halted_run_of_a_kind_that_does_not_resume_halts_is_refused(tmp_path: Path) -> None:
    def resumer(_request: Any) -> int:
        return 0

    register_resumer("halt-test", resumer)
    with Journal(tmp_path / "journal.sqlite3") as journal:
        run = journal.begin_run("halt-test", {}, "sandbox")
        journal.end_run(run.id, "stopped")
        with pytest.raises(BadInput, match="already stopped"):
            check_resumable(journal, run.id)
        register_resumer("halt-test", resumer, halted=True)
        assert check_resumable(journal, run.id)[0].id == run.id
        patch = journal.begin_run("patch", {"entries": {}, "waves": []}, "sandbox")
        journal.end_run(patch.id, "failed")  # every host ended, some failed: finished
        with pytest.raises(BadInput, match="already failed"):
            check_resumable(journal, patch.id)
