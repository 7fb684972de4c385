"""The runtime every workflow shares: waves, gates, the failure budget, the journal, resume.

`Runtime.execute(plan)` records the run and each host's steps as intended
before anything is sent, then goes wave by wave: gates checked first, each
step run on the wave's hosts that passed the step before, one failure budget
for the whole run. `Runtime.resume(plan, state)` does the same for a run an
earlier process left: steps the journal shows finished are skipped, steps in
flight are settled from the transport (never sent again if it has them),
steps never sent are sent, and the gates are checked again first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ops.engine.budget import FailureBudget
from ops.engine.fanout import RUNNING, UNKNOWN, UNSETTLED, FanOutReport
from ops.engine.plan import InFlight, Plan, Settled, StepContext
from ops.engine.recorder import RunRecorder
from ops.engine.signals import interrupts
from ops.errors import ExitCode
from ops.fleet.discovery import Host
from ops.journal.store import INTENDED, STARTED, Journal, Run
from ops.transports.ssm import NOT_STARTED, SUCCESS, UNREACHABLE, HostResult, SsmTransport

RUN_STATUS = {
    ExitCode.OK: "succeeded",
    ExitCode.HOSTS_FAILED: "failed",
    ExitCode.STOPPED: "stopped",
    ExitCode.INTERRUPTED: "interrupted",
}
# A run that ended with hosts whose outcome SSM has and this run never read (a
# lost send, polling that failed): not finished, so `ops runs resume` may settle it.
UNSETTLED_RUN = "unsettled"


@dataclass
class RunReport(FanOutReport):
    """The whole run: every wave's fan-out summed, and why it stopped if it did."""

    run_id: str = ""
    gate: str | None = None  # the gate that held the next wave, with its reason
    resumed: bool = False

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if self.stopped_by_budget or self.gate:
            return ExitCode.STOPPED
        if self.poll_error:
            return ExitCode.HOSTS_FAILED
        if any(count for status, count in self.counts.items() if status != SUCCESS):
            return ExitCode.HOSTS_FAILED
        return ExitCode.OK


@dataclass
class JournalState:
    """What the journal says of a run, step by host: the facts resume goes by."""

    hosts: dict[str, Host] = field(default_factory=dict)  # every host intended, in order
    waves: dict[str, int] = field(default_factory=dict)  # host -> wave index
    done: dict[tuple[str, str], str] = field(default_factory=dict)  # (step, host) -> status
    open: dict[tuple[str, str], InFlight] = field(default_factory=dict)

    @classmethod
    def load(cls, journal: Journal, run_id: str) -> JournalState:
        state = cls()
        for row in journal.steps(run_id):
            key = (row.phase, row.host)
            if row.status in (INTENDED, STARTED):
                name = str(row.detail.get("name", ""))
                host = state.hosts.setdefault(row.host, Host(row.host, name, ping_status="Online"))
                if row.wave is not None:
                    state.waves[row.host] = row.wave
                state.open[key] = InFlight(host, row.id, row.marker, row.command_id, row.sent_at)
            elif row.status in UNSETTLED:
                state.done.pop(key, None)
            else:
                state.done[key] = row.status
        return state

    def finished(self, step: str, host: str) -> str | None:
        return self.done.get((step, host))


class Runtime:
    """Runs plans; `cancel()` is what a signal handler (or a caller) calls."""

    def __init__(
        self,
        transport: SsmTransport | None,
        journal: Journal,
        *,
        on_result: Callable[[HostResult], None],
        on_listed: Callable[[list[Host]], None] | None = None,
        note: Callable[[str], None] = lambda _text: None,
        fanout_options: dict[str, Any] | None = None,
    ) -> None:
        self.transport = transport
        self.journal = journal
        self.on_result = on_result
        self.on_listed = on_listed
        self.note = note
        self.fanout_options = fanout_options or {}
        self._cancel = threading.Event()
        self._cancellers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def cancel(self) -> None:
        self._cancel.set()
        with self._lock:
            cancellers = list(self._cancellers)
        for cancel in cancellers:
            cancel()

    def _register(self, cancel: Callable[[], None]) -> None:
        with self._lock:
            self._cancellers.append(cancel)

    # entry points ------------------------------------------------------
    def execute(self, plan: Plan, environment: str) -> RunReport:
        run = self.journal.begin_run(plan.kind, plan.arguments, environment)
        return self._drive(plan, run.id, JournalState())

    def resume(self, plan: Plan, run: Run, state: JournalState) -> RunReport:
        """Drive a claimed run (Journal.claim) on from what `state` says happened."""
        return self._drive(plan, run.id, state, resumed=True)

    # the run -----------------------------------------------------------
    def _drive(
        self, plan: Plan, run_id: str, state: JournalState, *, resumed: bool = False
    ) -> RunReport:
        report = RunReport([], {}, run_id=run_id, resumed=resumed)
        status = "error"
        with RunRecorder(self.journal, run_id, record_output=plan.record_output) as recorder:
            try:
                with interrupts(self.cancel, self.note):
                    self._waves(plan, state, recorder, report)
                status = RUN_STATUS.get(report.exit_code, "failed")
                if status != "interrupted" and (
                    report.poll_error or report.counts.get(UNKNOWN) or report.counts.get(RUNNING)
                ):
                    status = UNSETTLED_RUN
                # the scheduler saw the listing end, or not (an exception leaves
                # what the plan said, so a resume lists again when in doubt)
                plan.arguments["listing_complete"] = report.listing_complete
            except KeyboardInterrupt:
                status = "interrupted"
                raise
            finally:
                recorder.flush()
                counted = len(state.hosts) + len(plan.unreachable)
                plan.arguments["hosts"] = max(counted, int(plan.arguments.get("hosts") or 0))
                self.journal.end_run(run_id, status, arguments=plan.arguments)
        return report

    def _waves(
        self, plan: Plan, state: JournalState, recorder: RunRecorder, report: RunReport
    ) -> None:
        reported: set[tuple[str, str]] = set()

        def emit(step: str) -> Callable[[HostResult], None]:
            def handler(result: HostResult) -> None:
                reported.add((step, result.instance_id))
                recorder.result(step, result)
                report.counts[result.status] = report.counts.get(result.status, 0) + 1
                self.on_result(result)

            return handler

        first = plan.steps[0].name
        for host in plan.unreachable:
            emit(first)(
                HostResult(host.instance_id, host.name, UNREACHABLE, stderr=host.ping_status)
            )
        # Write-ahead: every (step, host) is intended before the first send.
        for index, wave in enumerate(plan.waves):
            for step in plan.steps:
                for host in wave:
                    key = (step.name, host.instance_id)
                    if key in state.open:
                        recorder.known(step.name, host.instance_id, state.open[key].step_id)
                recorder.intend(step.name, wave, wave=index)
            for host in wave:
                state.hosts.setdefault(host.instance_id, host)

        budget = FailureBudget(len(state.hosts), plan.concurrency, plan.max_errors)
        for (_step, _host), done in state.done.items():
            budget.record(done)  # a resumed run spends the budget its first part spent

        def listed(page: list[Host]) -> None:
            recorder.intend(first, page, wave=len(plan.waves) - 1)
            for host in page:
                state.hosts.setdefault(host.instance_id, host)
            if self.on_listed is not None:
                self.on_listed(page)

        stopped_at: int | None = None
        for index, wave in enumerate(plan.waves):
            if self._cancel.is_set() or budget.stopped:
                stopped_at = index
                break
            last_wave = index == len(plan.waves) - 1
            pending = any(
                state.finished(step.name, h.instance_id) is None
                for step in plan.steps
                for h in wave
            )
            if not pending and not (last_wave and plan.more is not None):
                continue  # finished before a resume: no gate holds what is done
            blocked = self._gates(plan)
            if blocked:
                report.gate = blocked
                stopped_at = index
                break
            ahead = list(wave)
            for position, step in enumerate(plan.steps):
                todo = [h for h in ahead if state.finished(step.name, h.instance_id) is None]
                passed = [h for h in ahead if state.finished(step.name, h.instance_id) == SUCCESS]
                last = index == len(plan.waves) - 1 and position == 0
                streaming = plan.more if last else None
                context = StepContext(
                    transport=self.transport,
                    recorder=recorder,
                    budget=budget,
                    on_result=emit(step.name),
                    cancel=self._cancel,
                    register=self._register,
                    more=streaming,
                    on_listed=listed if streaming is not None else None,
                    fanout_options=self.fanout_options,
                )
                in_flight = [
                    state.open[(step.name, h.instance_id)]
                    for h in todo
                    if (step.name, h.instance_id) in state.open
                    and (
                        state.open[(step.name, h.instance_id)].marker
                        or state.open[(step.name, h.instance_id)].command_id
                    )
                ]
                settled = step.settle(in_flight, context) if in_flight else Settled()
                adopted = {h.instance_id for hosts in settled.adopt.values() for h in hosts}
                fresh = [h for h in todo if h.instance_id not in adopted]
                if not fresh and not settled.adopt and streaming is None:
                    ahead = passed
                    continue
                if self._cancel.is_set() and not settled.adopt:
                    report.interrupted = True
                    break
                outcome = self._run_step(step.name, step.run, fresh, context, settled, state)
                _merge(report, outcome)
                ahead = passed + [
                    h for h in (*fresh, *(h for hs in settled.adopt.values() for h in hs))
                    if state.finished(step.name, h.instance_id) == SUCCESS
                ]  # fmt: skip
                if outcome.interrupted or outcome.listing_error or outcome.denied:
                    break
                if outcome.poll_error:
                    break
            if report.interrupted or report.listing_error or report.denied or report.poll_error:
                stopped_at = index
                break
        if stopped_at is not None:
            never = [
                h
                for wave in plan.waves[stopped_at:]
                for h in wave
                if state.finished(first, h.instance_id) is None
                and (first, h.instance_id) not in reported
            ]
            for host in never:
                emit(first)(HostResult(host.instance_id, host.name, NOT_STARTED))
            if budget.stopped and never and not report.interrupted:
                report.stopped_by_budget = True
            if self._cancel.is_set():
                report.interrupted = True

    def _run_step(
        self,
        name: str,
        run: Callable[[list[Host], StepContext, Settled], FanOutReport],
        hosts: list[Host],
        context: StepContext,
        settled: Settled,
        state: JournalState,
    ) -> FanOutReport:
        inner = context.on_result

        def track(result: HostResult) -> None:
            if result.status not in UNSETTLED:
                state.done[(name, result.instance_id)] = result.status
            inner(result)

        context.on_result = track
        return run(hosts, context, settled)

    def _gates(self, plan: Plan) -> str | None:
        for gate in plan.gates:
            verdict = gate.check()
            if not verdict.ok:
                return f"{gate.name}: {verdict.reason}"
        return None


def _merge(report: RunReport, part: FanOutReport) -> None:
    report.command_ids.extend(part.command_ids)
    report.stopped_by_budget = report.stopped_by_budget or part.stopped_by_budget
    report.interrupted = report.interrupted or part.interrupted
    report.listing_error = report.listing_error or part.listing_error
    report.denied = report.denied or part.denied
    report.poll_error = report.poll_error or part.poll_error
    report.listing_complete = report.listing_complete and part.listing_complete
