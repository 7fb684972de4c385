"""The contract a workflow fills in: a Plan of waves of hosts, each host a list of named steps.

A workflow (ops/workflows/<name>.py) decides what runs where; the runtime
(ops.engine.runtime) decides when, records it and survives a crash. A step
knows how to run on a set of hosts through a transport, and how to settle,
after a crash, the hosts an earlier process left it in flight on: that is
what lets resume finish a run without doing a host twice or skipping one.

A new workflow is one file (ops/workflows/<name>.py) that builds a Plan, e.g.

    Plan(kind="docker", arguments=request.arguments(),
         waves=split_waves(hosts, canary=1, size=parse_concurrency("25%")),
         steps=[SsmCommandStep("install", spec)], gates=[alarm],
         concurrency=..., max_errors=...)

drives it with Runtime(transport, journal, on_result=...).execute(plan, env),
and rebuilds it from `run.arguments` plus JournalState.load() for
Runtime.resume(); its CLI registers that with
ops.engine.resume.register_resumer(kind, resumer, check).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ops.engine.budget import Amount, FailureBudget
from ops.engine.fanout import FanOut, FanOutReport
from ops.engine.recorder import RunRecorder
from ops.fleet.discovery import Host
from ops.transports.ssm import CommandSpec, HostResult, SsmTransport

# searched back past a recorded send time: the journal's clock may be this far off AWS's
_CLOCK_SKEW = SsmTransport.clock_skew


@dataclass(frozen=True)
class GateResult:
    ok: bool
    reason: str = ""


class Gate(Protocol):
    """Checked before every wave (and again on resume): an alarm, a health check."""

    name: str

    def check(self) -> GateResult: ...


@dataclass(frozen=True)
class InFlight:
    """A step an earlier process left open on a host, as the journal has it."""

    host: Host
    step_id: int
    marker: str | None
    command_id: str | None
    sent_at: float | None


@dataclass
class Settled:
    """What resume learnt of steps left in flight."""

    adopt: dict[str, list[Host]] = field(default_factory=dict)  # command id -> hosts it owes
    unsent: list[Host] = field(default_factory=list)  # never reached the transport: send them
    since: datetime | None = None  # the oldest adopted send


@dataclass
class StepContext:
    """What the runtime hands a step: the transport, the journal, the budget, the listeners."""

    transport: SsmTransport | None  # None: a run that reaches its hosts by SSH alone
    recorder: RunRecorder
    budget: FailureBudget
    on_result: Callable[[HostResult], None]
    cancel: threading.Event
    register: Callable[[Callable[[], None]], None]  # how a step's own cancel is reached
    more: Iterable[list[Host]] | None = None  # hosts still being listed (single-step plans)
    on_listed: Callable[[list[Host]], None] | None = None
    fanout_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ssm(self) -> SsmTransport:
        """The SSM transport, for the steps that send through it."""
        if self.transport is None:
            raise RuntimeError("an SSM step in a run opened without an SSM transport")
        return self.transport


class Step(ABC):
    """One named action on a host."""

    name: str

    @abstractmethod
    def run(self, hosts: list[Host], context: StepContext, settled: Settled) -> FanOutReport:
        """Run on these hosts (and collect `settled.adopt`), reporting each host once."""

    @abstractmethod
    def settle(self, in_flight: list[InFlight], context: StepContext) -> Settled:
        """Which of these open steps the transport already has, and which it never got."""


@dataclass(frozen=True)
class ServerSide:
    """`--server-side`: SSM paces one command (Targets) or one per 50 ids."""

    max_concurrency: str
    max_errors: str
    targets: Sequence[dict[str, Any]] = ()


class SsmCommandStep(Step):
    """A shell command over SSM Run Command, paced by the fan-out scheduler.

    Whether it already happened on a host is SSM's to say: by the command id
    the journal holds, or by the send's marker when the process died between
    SendCommand and its answer. A step SSM has is collected, never sent again.
    """

    def __init__(self, name: str, spec: CommandSpec, server_side: ServerSide | None = None):
        self.name = name
        self.spec = spec
        self.server_side = server_side

    def run(self, hosts: list[Host], context: StepContext, settled: Settled) -> FanOutReport:
        fanout = FanOut(
            context.ssm,
            self.spec,
            hooks=context.recorder.hooks(self.name),
            **dict(context.fanout_options),
        )
        context.register(fanout.cancel)
        if context.cancel.is_set():
            fanout.cancel()
        if self.server_side is not None and not settled.adopt:
            return fanout.run_server_side(
                hosts,
                context.on_result,
                max_concurrency=self.server_side.max_concurrency,
                max_errors=self.server_side.max_errors,
                targets=self.server_side.targets,
            )
        return fanout.run_client_side(
            hosts,
            context.budget,
            context.on_result,
            more=context.more,
            on_listed=context.on_listed,
            adopt=settled.adopt,
            since=settled.since,
        )

    def settle(self, in_flight: list[InFlight], context: StepContext) -> Settled:
        settled = Settled()
        by_marker: dict[str, list[InFlight]] = {}
        sent_times: list[float] = []
        for item in in_flight:
            if item.command_id:
                settled.adopt.setdefault(item.command_id, []).append(item.host)
                sent_times.append(item.sent_at or 0.0)
            elif item.marker:
                by_marker.setdefault(item.marker, []).append(item)
            else:
                settled.unsent.append(item.host)
        if by_marker:
            sent = [item.sent_at or 0.0 for items in by_marker.values() for item in items]
            found = find_markers(context.ssm, set(by_marker), min(sent), max(sent))
            for marker, items in by_marker.items():
                command_id = found.get(marker)
                if command_id is None:
                    settled.unsent.extend(item.host for item in items)
                    continue
                context.recorder.journal.sent([item.step_id for item in items], command_id)
                settled.adopt.setdefault(command_id, []).extend(item.host for item in items)
                sent_times.extend(item.sent_at or 0.0 for item in items)
        if sent_times:
            settled.since = datetime.fromtimestamp(min(sent_times), UTC) - _CLOCK_SKEW
        return settled


def find_markers(
    transport: SsmTransport, markers: set[str], sent_at: float, newest: float | None = None
) -> dict[str, str]:
    """Command ids of the sends whose Comment starts with one of these markers.

    SendCommand takes no idempotency token: a process killed while its send
    was on the wire cannot know whether SSM created the command. ListCommands
    since the send (less clock skew) answers it; stopping once every marker
    is found costs no further page. ListCommands shows a new command only
    after a while, so until `catch_up_seconds` have passed since the newest
    send (a resume right after the run) a missing marker is looked for again.
    """
    since = datetime.fromtimestamp(sent_at, UTC) - _CLOCK_SKEW
    settle_by = (newest if newest is not None else sent_at) + transport.catch_up_seconds
    while True:
        found: dict[str, str] = {}
        for command in transport.commands_since(since):
            marker = str(command.get("Comment", "")).split(" ", 1)[0]
            if marker in markers:
                found[marker] = str(command["CommandId"])
                if len(found) == len(markers):
                    return found
        remaining = settle_by - time.time()
        if remaining <= 0:
            return found
        time.sleep(min(1.0, remaining))


@dataclass
class Plan:
    """Everything a run will do, decided before anything is sent.

    `arguments` is what the journal keeps so a resume can rebuild the plan
    (never secrets). `more` (hosts still being listed) joins a single-wave,
    single-step plan as pages arrive; otherwise the workflow lists first.
    """

    kind: str
    arguments: dict[str, Any]
    waves: list[list[Host]]
    steps: list[Step]
    concurrency: Amount
    max_errors: Amount
    gates: Sequence[Gate] = ()
    unreachable: list[Host] = field(default_factory=list)
    more: Iterable[list[Host]] | None = None
    record_output: bool = False

    @property
    def hosts(self) -> list[Host]:
        return [host for wave in self.waves for host in wave]


def split_waves(
    hosts: Sequence[Host], *, canary: int = 0, size: Amount | None = None
) -> list[list[Host]]:
    """A canary wave of `canary` hosts, then waves of `size` (a count or % of all hosts)."""
    ordered = list(hosts)
    waves: list[list[Host]] = []
    if canary > 0 and ordered:
        waves.append(ordered[:canary])
        ordered = ordered[canary:]
    step = size.resolve(len(hosts), at_least_one=True) if size is not None else len(ordered)
    step = max(step, 1)
    waves.extend(ordered[i : i + step] for i in range(0, len(ordered), step))
    return waves
