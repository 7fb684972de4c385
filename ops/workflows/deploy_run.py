"""`ops deploy run` and `ops deploy rollback` as a workflow on the runtime.

A plan is one wave per batch and three steps per host (drain, swap,
register: ops.workflows.deploy_steps), with the gates of
ops.workflows.deploy_gates checked before every batch. Hosts that already
run the target digest, healthy in their target groups, are `unchanged`: they are
in no batch, so nothing drains or touches them, and the journal's copy of
the request names them for the report.

A failed batch is taken back to the digests its hosts ran before (a second
run of kind `deploy`, action `rollback`), with every finished batch too
under `--rollback-all`; later batches are never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ops.config import Settings
from ops.engine.budget import Amount
from ops.engine.plan import Gate, Plan
from ops.engine.runtime import JournalState, RunReport, Runtime
from ops.errors import BadInput
from ops.fleet.discovery import Host
from ops.fleet.lock import Heartbeat, Holder, LockTable, held, lock_key
from ops.fleet.targets import TargetSpec
from ops.journal.store import Journal, Run
from ops.transports.ssm import SUCCESS, HostResult, open_transport
from ops.workflows import deploy as views
from ops.workflows.deploy_gates import AlarmGate, HealthyFloorGate, LeaseGate
from ops.workflows.deploy_spec import ServiceSpec, load_spec
from ops.workflows.deploy_steps import (
    DRAIN,
    REGISTER,
    SWAP,
    DrainStep,
    Fleet,
    RegisterStep,
    SwapStep,
)

KIND = "deploy"


@dataclass(frozen=True)
class DeployRequest:
    """What the journal keeps of a deploy or rollback: enough to rebuild its plan, no secret."""

    service: str
    action: str  # "deploy" or "rollback"
    image: str  # as asked (a tag, a digest, or "previous")
    targets: dict[str, str]  # instance id -> the pinned image it must end on
    previous: dict[str, str | None]  # instance id -> the pinned image it ran before
    batches: list[list[str]]
    min_healthy: int
    rollback_all: bool = False
    of: str | None = None  # the run a rollback takes back
    unchanged: dict[str, str] = field(default_factory=dict)  # id -> name: on the digest already

    def arguments(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "action": self.action,
            "image": self.image,
            "targets": dict(self.targets),
            "previous": dict(self.previous),
            "batches": [list(b) for b in self.batches],
            "min_healthy": self.min_healthy,
            "rollback_all": self.rollback_all,
            "of": self.of,
            "unchanged": dict(self.unchanged),
            "hosts": sum(len(b) for b in self.batches),
            "command": f"deploy {self.action} {self.service} {self.image}",
        }

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> DeployRequest:
        try:
            return cls(
                service=str(arguments["service"]),
                action=str(arguments["action"]),
                image=str(arguments["image"]),
                targets=dict(arguments["targets"]),
                previous=dict(arguments["previous"]),
                batches=[list(b) for b in arguments["batches"]],
                min_healthy=int(arguments["min_healthy"]),
                rollback_all=bool(arguments.get("rollback_all")),
                of=arguments.get("of"),
                unchanged=dict(arguments.get("unchanged") or {}),
            )
        except (KeyError, TypeError, ValueError):
            raise BadInput(
                "this deploy run was recorded without its plan; it cannot be resumed"
            ) from None


# plans -------------------------------------------------------------------------


def build_plan(
    settings: Settings,
    request: DeployRequest,
    fleet: Fleet,
    heartbeat: Heartbeat | None,
    state: JournalState | None = None,
) -> Plan:
    batches = [[fleet.hosts[i] for i in batch if i in fleet.hosts] for batch in request.batches]
    steps = (DRAIN, SWAP, REGISTER)
    pending = [
        [h.instance_id for h in batch]
        for batch in batches
        if state is None
        or any(state.finished(step, h.instance_id) is None for step in steps for h in batch)
    ]
    gates: list[Gate] = [
        LeaseGate(heartbeat),
        AlarmGate(settings),
        HealthyFloorGate(settings, fleet.spec, pending, request.min_healthy),
    ]
    total = sum(len(b) for b in batches)
    return Plan(
        kind=KIND,
        arguments=request.arguments(),
        waves=[b for b in batches if b],
        steps=[
            DrainStep(settings, fleet),
            SwapStep(settings, fleet, request.targets),
            RegisterStep(settings, fleet),
        ],
        concurrency=Amount(max(total, 1), percent=False),
        max_errors=Amount(0, percent=False),
        gates=gates,
    )


@dataclass(frozen=True)
class Prepared:
    """A deploy checked and resolved, before any host is touched."""

    request: DeployRequest
    spec: ServiceSpec
    hosts: list[Host]
    batch_size: int


def prepare(
    settings: Settings,
    service: str,
    image: str,
    *,
    batch: str | None,
    min_healthy: str | None,
    rollback_all: bool,
    only: TargetSpec | None = None,
) -> Prepared:
    """Resolve the image and read what each host runs now; refuses bad input (exit 2)."""
    spec = load_spec(settings.env, service)
    planned = views.plan_deploy(
        settings, spec, image, batch=batch, min_healthy=min_healthy, only=only
    )
    return _prepared(spec, planned, "deploy", rollback_all=rollback_all)


def _prepared(
    spec: ServiceSpec, planned: views.DeployPlan, action: str, *, rollback_all: bool = False
) -> Prepared:
    """The request the journal keeps: the batches' hosts, what each runs now, what it will."""
    hosts = [view.host for b in planned.batches for view in b]
    request = DeployRequest(
        service=spec.name,
        action=action,
        image=str(planned.image),
        targets={h.instance_id: planned.image.pinned for h in hosts},
        previous={
            view.host.instance_id: _pinned(spec, view.container.digest)
            for b in planned.batches
            for view in b
        },
        batches=[[v.host.instance_id for v in b] for b in planned.batches],
        min_healthy=planned.min_healthy,
        rollback_all=rollback_all,
        unchanged={v.host.instance_id: v.host.name for v in planned.unchanged},
    )
    return Prepared(request, spec, hosts, planned.batch_size)


def _pinned(spec: ServiceSpec, digest: str | None) -> str | None:
    return f"{spec.repository.name}@{digest}" if digest else None


def prepare_rollback(
    settings: Settings,
    service: str,
    journal: Journal,
    *,
    to: str | None,
    batch: str | None,
    min_healthy: str | None,
    only: TargetSpec | None = None,
) -> Prepared:
    """Back to what the last deploy of the service replaced (or to `--to DIGEST`)."""
    spec = load_spec(settings.env, service)
    last = last_deploy(journal, settings.env, service)
    if to is None:
        if last is None:
            raise BadInput(f"no deploy of {service} in the journal to roll back; give --to DIGEST")
        choices = {p for p in last.previous.values() if p}
        if not choices:
            raise BadInput(f"the last deploy of {service} replaced nothing; give --to DIGEST")
        if len(choices) > 1:
            raise BadInput(
                f"the last deploy of {service} replaced {len(choices)} different digests; "
                "give --to DIGEST"
            )
        to = choices.pop().split("@", 1)[1]
    if to.startswith("sha256:"):
        to = "@" + to  # --to takes the digest as `ops deploy status` shows it
    planned = views.plan_deploy(settings, spec, to, batch=batch, min_healthy=min_healthy, only=only)
    return _prepared(spec, planned, "rollback")


def last_deploy(journal: Journal, env: str, service: str) -> DeployRequest | None:
    """The newest deploy (not a rollback) of this service in this env that succeeded."""
    for run in journal.list_runs(kind=KIND, limit=200):
        if run.environment != env or run.arguments.get("service") != service:
            continue
        if run.arguments.get("action") != "deploy" or run.status != "succeeded":
            continue  # a failed deploy was taken back already: the one before it counts
        try:
            return DeployRequest.from_arguments(run.arguments)
        except BadInput:
            continue
    return None


# running -----------------------------------------------------------------------


Note = Callable[[str], None]


@dataclass
class DeployOutcome:
    report: RunReport
    rollback: RunReport | None = None
    failed_batch: int | None = None


@contextmanager
def service_lock(settings: Settings, service: str, run_tag: str, note: Note) -> Iterator[Heartbeat]:
    """One deploy or patch run per service at a time; LockHeld (exit 3) names the holder."""
    table = LockTable(profile=settings.profile, region=settings.region, announce=note)
    with held(table, lock_key(settings.env, "service", service), Holder.here(run_tag)) as beat:
        yield beat


def failed_wave(plan: Plan, state: JournalState) -> int | None:
    for index, wave in enumerate(plan.waves):
        for step in plan.steps:
            for host in wave:
                status = state.finished(step.name, host.instance_id)
                if status is not None and status != SUCCESS:
                    return index
    return None


def drive(
    settings: Settings,
    journal: Journal,
    request: DeployRequest,
    fleet: Fleet,
    heartbeat: Heartbeat | None,
    on_result: Callable[[HostResult], None],
    note: Note,
    *,
    resumed: tuple[Run, JournalState] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> DeployOutcome:
    """Run the plan; on a failed batch take it (and under --rollback-all, the finished
    batches) back to the digests they ran before, as a rollback run of its own."""
    plan = build_plan(settings, request, fleet, heartbeat, resumed[1] if resumed else None)
    if resumed is not None:
        plan.arguments = dict(resumed[0].arguments)
    plan.arguments.update(extra or {})
    runtime = Runtime(open_transport(settings), journal, on_result=on_result, note=note)
    if resumed is None:
        report = runtime.execute(plan, settings.env)
    else:
        report = runtime.resume(plan, *resumed)
    outcome = DeployOutcome(report)
    if report.interrupted:
        return outcome
    state = JournalState.load(journal, report.run_id)
    index = failed_wave(plan, state)
    if index is None or request.action == "rollback":
        return outcome
    outcome.failed_batch = index
    back = [plan.waves[index]] + (
        list(reversed(plan.waves[:index])) if request.rollback_all else []
    )
    hosts = [h for wave in back for h in wave if request.previous.get(h.instance_id)]
    skipped = [h for wave in back for h in wave if not request.previous.get(h.instance_id)]
    for host in skipped:
        note(f"{host.label}: ran nothing before this deploy; left as it is")
    if not hosts:
        return outcome
    note(f"batch {index + 1} failed: rolling {len(hosts)} host(s) back to their previous digest")
    undo = DeployRequest(
        service=request.service,
        action="rollback",
        image="previous",
        targets={h.instance_id: str(request.previous[h.instance_id]) for h in hosts},
        previous={h.instance_id: request.targets[h.instance_id] for h in hosts},
        batches=[[h.instance_id for h in wave if h in hosts] for wave in back],
        min_healthy=0,  # the failed batch is out already: putting it back must not wait on it
        of=report.run_id,
    )
    undo_plan = build_plan(settings, undo, fleet, heartbeat)
    undo_plan.arguments["lease"] = plan.arguments.get("lease")
    # an alarm or a thin floor is why a failed batch must go back, never a reason to wait
    undo_plan.gates = [g for g in undo_plan.gates if isinstance(g, LeaseGate)]
    outcome.rollback = Runtime(
        open_transport(settings), journal, on_result=on_result, note=note
    ).execute(undo_plan, settings.env)
    return outcome
