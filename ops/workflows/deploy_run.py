"""`ops deploy run` and `ops deploy rollback` as a workflow on the runtime.

A plan is one wave per batch and three steps per host: `drain` (deregister
from the service's target groups, wait until drained), `swap` (the
container_service role over SSH: registry login, pull by digest, stop the
old container, start the new one, wait until the container and the HTTP
check on the host are healthy) and `register` (register back, wait until
every group reports the host healthy). Every step can tell whether it
already happened: a host no group routes to is drained, the role keeps a
container whose labels (digest, configuration hash) match, a target in
service is registered. That is what lets `ops runs resume` finish a batch
a killed process left half done without a host on two digests or out of
its groups.

Between batches the runtime checks the gates: the CloudWatch alarms in
settings are OK, the lease on the service is still ours, and enough targets
are healthy for the next batch to leave the minimum in service. A failed
batch is taken back to the digests its hosts ran before (a second run of
kind `deploy`, action `rollback`), with every finished batch too under
`--rollback-all`; later batches are never touched.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from botocore.exceptions import WaiterError

from ops import aws
from ops.config import Settings, known_hosts_path
from ops.engine.budget import Amount
from ops.engine.fanout import FanOutReport
from ops.engine.plan import Gate, GateResult, InFlight, Plan, Settled, Step, StepContext
from ops.engine.runtime import JournalState, RunReport, Runtime
from ops.errors import BadInput
from ops.fleet import inventory as inv
from ops.fleet import target_groups
from ops.fleet.discovery import Host
from ops.fleet.image_ref import ImageRef, parse
from ops.fleet.lock import Heartbeat, Holder, LeaseLost, LockTable, held, lock_key
from ops.fleet.parameters import get_secrets
from ops.fleet.targets import TargetSpec
from ops.journal.store import Journal, Run
from ops.transports import elb
from ops.transports.alarms import not_ok
from ops.transports.ansible import OK, PushOptions, push
from ops.transports.ssm import FAILED, SUCCESS, HostResult, open_transport
from ops.workflows import deploy as views
from ops.workflows.deploy_spec import ServiceSpec, load_spec
from ops.workflows.deploy_steps import PLAYBOOK, host_port, role_vars

KIND = "deploy"
DRAIN, SWAP, REGISTER = "drain", "swap", "register"
_SECRET_VAR = "container_service_secret_env"
_WAIT_DELAY = 2  # seconds between waiter polls: a batch waits on these, not on work
_WAIT_SECONDS = 600


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
            )
        except (KeyError, TypeError, ValueError):
            raise BadInput(
                "this deploy run was recorded without its plan; it cannot be resumed"
            ) from None


@dataclass
class Fleet:
    """The service's hosts as the steps need them: discovery's Host and Ansible's view."""

    spec: ServiceSpec
    hosts: dict[str, Host]
    ansible: dict[str, inv.InventoryHost]
    secrets: dict[str, str] = field(default_factory=dict)


def _hosts_for(settings: Settings, ids: list[str]) -> dict[str, inv.InventoryHost]:
    ec2 = aws.client("ec2", profile=settings.profile, region=settings.region)
    ssm = aws.client("ssm", profile=settings.profile, region=settings.region)
    found = inv.gather(
        ec2,
        ssm,
        TargetSpec(instance_ids=tuple(ids)),
        region=settings.region,
        default_user=settings.ssh_user,
    )
    return {h.instance_id: h for h in found}


def load_fleet(settings: Settings, spec: ServiceSpec, hosts: list[Host]) -> Fleet:
    ids = [h.instance_id for h in hosts]
    return Fleet(
        spec=spec,
        hosts={h.instance_id: h for h in hosts},
        ansible=_hosts_for(settings, ids) if ids else {},
        secrets=get_secrets(settings, spec.secrets),
    )


# steps -----------------------------------------------------------------------


def _report(context: StepContext, host: Host, ok: bool, detail: str, started: float) -> None:
    status = SUCCESS if ok else FAILED
    context.budget.record(status)
    context.on_result(
        HostResult(
            host.instance_id,
            host.name,
            status,
            exit_code=0 if ok else 1,
            stdout=detail if ok else "",
            stderr="" if ok else detail,
            duration_s=round(time.monotonic() - started, 3),
        )
    )


class _LocalStep(Step):
    """A step the controller does itself (ELBv2 calls, an Ansible push), one host per thread.

    Nothing is handed to SSM, so nothing can be in flight there after a crash:
    a step left open is simply run again, and each step checks first whether
    it already happened.
    """

    name = ""

    def __init__(self, settings: Settings, fleet: Fleet) -> None:
        self.settings = settings
        self.fleet = fleet

    def settle(self, in_flight: list[InFlight], context: StepContext) -> Settled:
        return Settled(unsent=[item.host for item in in_flight])

    def one(self, host: Host) -> str:
        raise NotImplementedError

    def run(self, hosts: list[Host], context: StepContext, settled: Settled) -> FanOutReport:
        def work(host: Host) -> None:
            started = time.monotonic()
            try:
                detail = self.one(host)
            except Exception as exc:  # one host's failure is its result, not the run's end
                _report(context, host, False, f"{self.name}: {exc}", started)
            else:
                _report(context, host, True, detail, started)

        if hosts:
            with ThreadPoolExecutor(max_workers=min(len(hosts), 16)) as pool:
                list(pool.map(work, hosts))
        return FanOutReport([], {})


def _groups(settings: Settings, spec: ServiceSpec) -> dict[str, str]:
    return target_groups.group_arns(target_groups.elbv2_client(settings), spec.target_groups)


def _waiter_attempts() -> int:
    return max(1, _WAIT_SECONDS // _WAIT_DELAY)


class DrainStep(_LocalStep):
    """Deregister where the host is registered, then wait until every group has let go.

    A target no group holds is drained already (a resumed batch): ELBv2 refuses
    to deregister it, so only the groups that still route to it are asked.
    """

    name = DRAIN

    def one(self, host: Host) -> str:
        elbv2 = target_groups.elbv2_client(self.settings)
        arns = list(_groups(self.settings, self.fleet.spec).values())
        registered = elb.memberships(elbv2, host.instance_id, arns)
        elb.drain(
            elbv2, host.instance_id, registered, delay=_WAIT_DELAY, max_attempts=_waiter_attempts()
        )
        rest = [arn for arn in arns if arn not in {m.target_group_arn for m in registered}]
        for arn in rest:  # draining since an earlier process asked: wait it out
            try:
                elbv2.get_waiter("target_deregistered").wait(
                    TargetGroupArn=arn,
                    Targets=[{"Id": host.instance_id}],
                    WaiterConfig={"Delay": _WAIT_DELAY, "MaxAttempts": _waiter_attempts()},
                )
            except WaiterError as exc:
                raise elb.DrainTimeout(
                    f"{host.instance_id} in {arn}: still draining ({exc})"
                ) from None
        return "drained" if registered else "already out of its target groups"


class RegisterStep(_LocalStep):
    name = REGISTER

    def one(self, host: Host) -> str:
        elbv2 = target_groups.elbv2_client(self.settings)
        arns = list(_groups(self.settings, self.fleet.spec).values())
        port = host_port(self.fleet.spec, self.fleet.hosts[host.instance_id])
        members = [elb.Membership(arn, port) for arn in arns]
        elb.register(
            elbv2, host.instance_id, members, delay=_WAIT_DELAY, max_attempts=_waiter_attempts()
        )
        return "in service"


class SwapStep(_LocalStep):
    """The container_service role on the batch, each host with its own image and port."""

    name = SWAP

    def __init__(self, settings: Settings, fleet: Fleet, targets: Mapping[str, str]) -> None:
        super().__init__(settings, fleet)
        self.targets = targets

    def run(self, hosts: list[Host], context: StepContext, settled: Settled) -> FanOutReport:
        started = time.monotonic()
        ready: list[inv.InventoryHost] = []
        for host in hosts:
            known = self.fleet.ansible.get(host.instance_id)
            if known is None:
                _report(context, host, False, "swap: no SSH address for this host", started)
                continue
            image = parse(self.targets[host.instance_id])
            variables = role_vars(self.fleet.spec, image, host, {})
            variables.pop(_SECRET_VAR, None)
            variables.update(registry_login(self.settings, image))
            ready.append(replace(known, extra_vars=variables))
        if not ready:
            return FanOutReport([], {})
        work = Path(tempfile.mkdtemp(prefix="ops-deploy-"))
        try:  # the secrets reach Ansible as extra vars on disk: gone when the push ends
            options = PushOptions(
                forks=len(ready),
                extravars={_SECRET_VAR: dict(self.fleet.secrets)},
                ssh_key=self.settings.ssh_key,
                jump_host=self.settings.ssh_jump_host,
                known_hosts=known_hosts_path(),
            )
            outcome = push(PLAYBOOK, ready, work, options, cancel=context.cancel)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        recaps = {r.instance_id: r for r in outcome.hosts}
        for item in ready:
            host = next(h for h in hosts if h.instance_id == item.instance_id)
            recap = recaps.get(item.instance_id)
            ok = recap is not None and recap.status == OK
            detail = (recap.message if recap else "") or (
                f"runs {self.targets[host.instance_id]}" if ok else "the playbook did not finish"
            )
            _report(context, host, ok, detail, started)
        return FanOutReport([], {}, interrupted=outcome.cancelled)


def registry_login(settings: Settings, image: ImageRef) -> dict[str, str]:
    """ECR wants a token a host cannot fetch for itself without a role; others need none."""
    match = image.ecr
    if match is None:
        return {}
    import base64

    ecr = aws.client("ecr", profile=settings.profile, region=match.group("region"))
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return {
        "container_service_registry": image.registry,
        "container_service_registry_username": user,
        "container_service_registry_password": password,
    }


# gates -------------------------------------------------------------------------


@dataclass
class AlarmGate:
    settings: Settings
    name: str = "alarms"

    def check(self) -> GateResult:
        if not self.settings.alarm_names:
            return GateResult(True)
        cloudwatch = aws.client(
            "cloudwatch", profile=self.settings.profile, region=self.settings.region
        )
        bad = not_ok(cloudwatch, self.settings.alarm_names)
        reason = ", ".join(f"{name} is {state}" for name, state in sorted(bad.items()))
        return GateResult(not bad, reason)


@dataclass
class LeaseGate:
    heartbeat: Heartbeat | None
    name: str = "lock"

    def check(self) -> GateResult:
        if self.heartbeat is None:
            return GateResult(True)
        try:
            self.heartbeat.check()
        except LeaseLost as exc:
            return GateResult(False, str(exc))
        return GateResult(True)


@dataclass
class HealthyFloorGate:
    """Enough targets healthy outside the next batch that taking it out leaves the minimum.

    The runtime checks gates once before each batch that still has work, in
    order, so `pending` (those batches, as planned or as a resume finds them)
    says which batch each check is for. Hosts of that batch that are already
    out (a failed deploy's, a killed run's) do not count against the floor.
    """

    settings: Settings
    spec: ServiceSpec
    pending: list[list[str]]
    min_healthy: int
    name: str = "min-healthy"

    def check(self) -> GateResult:
        batch = set(self.pending.pop(0)) if self.pending else set()
        elbv2 = target_groups.elbv2_client(self.settings)
        for group, arn in _groups(self.settings, self.spec).items():
            answer = elbv2.describe_target_health(TargetGroupArn=arn)
            healthy = [
                d["Target"]["Id"]
                for d in answer["TargetHealthDescriptions"]
                if d["TargetHealth"]["State"] == "healthy"
            ]
            left = sum(1 for target in healthy if target not in batch)
            if left < self.min_healthy:
                return GateResult(
                    False,
                    f"{group} has {len(healthy)} healthy targets; taking the next batch out "
                    f"would leave {left}, fewer than {self.min_healthy}",
                )
        return GateResult(True)


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
) -> Prepared:
    """Resolve the image and read what each host runs now; refuses bad input (exit 2)."""
    spec = load_spec(settings.env, service)
    planned = views.plan_deploy(settings, spec, image, batch=batch, min_healthy=min_healthy)
    hosts = [view.host for b in planned.batches for view in b]
    previous = {
        view.host.instance_id: _pinned(spec, view.container.digest)
        for b in planned.batches
        for view in b
    }
    request = DeployRequest(
        service=service,
        action="deploy",
        image=str(planned.image),
        targets={h.instance_id: planned.image.pinned for h in hosts},
        previous=previous,
        batches=[[v.host.instance_id for v in b] for b in planned.batches],
        min_healthy=planned.min_healthy,
        rollback_all=rollback_all,
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
    planned = views.plan_deploy(settings, spec, to, batch=batch, min_healthy=min_healthy)
    hosts = [view.host for b in planned.batches for view in b]
    request = DeployRequest(
        service=service,
        action="rollback",
        image=str(planned.image),
        targets={h.instance_id: planned.image.pinned for h in hosts},
        previous={
            view.host.instance_id: _pinned(spec, view.container.digest)
            for b in planned.batches
            for view in b
        },
        batches=[[v.host.instance_id for v in b] for b in planned.batches],
        min_healthy=planned.min_healthy,
    )
    return Prepared(request, spec, hosts, planned.batch_size)


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
