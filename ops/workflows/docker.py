"""`ops docker install`: plan per host, then one install-and-configure step per host.

The work itself is the role playbooks/roles/docker_engine; the runtime
(ops.engine) runs it as a workflow of kind `docker`: waves of hosts, one
step `docker_install` per host, pulled over SSM (an SsmCommandStep running
the pull script, so a resume settles a host in flight from SSM) or pushed
over SSH (docker_steps.PushStep). This module decides and reads:

- plan: which hosts get the step, which are skipped and why (a platform the
  role does not know is skipped up front, never sent), which are past their
  platform's end of support (flagged, still installed);
- the step: `docker_install` on each planned host, the settings as the
  role's variables, all of it kept in the journal so a resume rebuilds it;
- whether the step already happened on a host: from its recap (the role ran
  and changed nothing) or from its facts (`ops docker status` shows it
  installed, running and without drift).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.config import DockerSettings, Settings, known_hosts_path, state_dir
from ops.engine.budget import Amount
from ops.engine.plan import Plan, SsmCommandStep, Step
from ops.engine.runtime import RUN_STATUS, JournalState, RunReport, Runtime
from ops.errors import BadInput, ExitCode, OpsError
from ops.fleet.discovery import Host
from ops.fleet.inventory import InventoryHost
from ops.fleet.platforms import Platform
from ops.journal.store import Journal, Run
from ops.transports.ansible import NOT_RUN, OK, HostRecap, PushOptions, TaskEvent
from ops.transports.ansible_pull import pull_script
from ops.transports.ssm import SUCCESS, CommandSpec, SsmTransport, open_transport
from ops.workflows import playbook as playbook_wf
from ops.workflows.docker_steps import PushStep, Recaps, Staged, stage_bundle

VIAS = playbook_wf.VIAS
KIND = "docker"
STEP = "docker_install"
SKIPPED = "skipped"
# What the role installs from, per platform family and key (README and the plan say so).
INSTALL_PATHS = {
    "al2": "amazon-linux-extras install -y docker",
    "al2023": "dnf install -y docker",
    "debian": "apt docker.io",
}


def playbooks_dir() -> Path:
    """The project's playbooks; OPS_PLAYBOOKS points an installed `ops` at a checkout."""
    explicit = os.environ.get("OPS_PLAYBOOKS")
    folder = Path(explicit) if explicit else Path(__file__).resolve().parents[2] / "playbooks"
    if not (folder / "docker_install.yml").is_file():
        raise OpsError(f"docker_install.yml not found in {folder}; set OPS_PLAYBOOKS")
    return folder


def install_path(platform: Platform) -> str | None:
    """How the role installs Docker on this platform, or None where it does not."""
    if platform.key in ("al2", "al2023"):
        return INSTALL_PATHS[platform.key]
    if platform.family == "debian":
        return INSTALL_PATHS["debian"]
    return None


def role_vars(docker: DockerSettings, allow_restart: bool) -> dict[str, Any]:
    """The settings as the role's variables (extra vars: nothing on a host overrides them)."""
    return {
        "docker_engine_users": list(docker.users),
        "docker_engine_log_max_size": docker.log_max_size,
        "docker_engine_log_max_file": docker.log_max_file,
        "docker_engine_live_restore": docker.live_restore,
        "docker_engine_allow_restart": allow_restart,
    }


@dataclass(frozen=True)
class InstallRequest:
    via: str = "ssm"
    allow_restart: bool = False
    forks: int = 10
    host_key_policy: str = "strict"


@dataclass(frozen=True)
class HostStep:
    """One host's part of the plan: the step to run, or why it is skipped."""

    host: InventoryHost
    step: str | None
    how: str = ""
    reason: str = ""

    @property
    def past_end_of_support(self) -> bool:
        return self.host.platform.past_end_of_support()

    def as_dict(self) -> dict[str, Any]:
        platform = self.host.platform
        return {
            "instance_id": self.host.instance_id,
            "name": self.host.name,
            "platform": platform.key,
            "step": self.step,
            "how": self.how,
            "reason": self.reason,
            "end_of_support": platform.end_of_support.isoformat()
            if platform.end_of_support
            else None,
            "past_end_of_support": self.past_end_of_support,
        }


@dataclass
class InstallPlan:
    request: InstallRequest
    docker: DockerSettings
    steps: list[HostStep]
    playbook: playbook_wf.PlaybookPlan | None

    @property
    def to_install(self) -> list[InventoryHost]:
        return [s.host for s in self.steps if s.step is not None]

    @property
    def skipped(self) -> list[HostStep]:
        return [s for s in self.steps if s.step is None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "via": self.request.via,
            "allow_restart": self.request.allow_restart,
            "settings": role_vars(self.docker, self.request.allow_restart),
            "hosts": [s.as_dict() for s in self.steps],
        }


def plan(
    request: InstallRequest, hosts: Sequence[InventoryHost], docker: DockerSettings
) -> InstallPlan:
    """Decide per host before anything is sent; refuses bad input with BadInput."""
    if request.via not in VIAS:
        raise BadInput(f"--via {request.via!r}: expected one of {', '.join(VIAS)}")
    if not hosts:
        raise BadInput("no hosts matched the targeting; `ops inventory list` shows the fleet")
    steps: list[HostStep] = []
    for host in hosts:
        platform = host.platform
        how = install_path(platform)
        if how is None:
            label = " ".join(x for x in (platform.name, platform.version) if x) or "unknown"
            reason = f"platform {label} is not supported (Amazon Linux 2, 2023, Debian, Ubuntu)"
            steps.append(HostStep(host, None, reason=reason))
        else:
            steps.append(HostStep(host, STEP, how=how))
    install = [s.host for s in steps if s.step is not None]
    book = None
    if install:
        book = playbook_wf.plan(
            playbook_wf.PlaybookRequest(
                playbook=playbooks_dir() / "docker_install.yml",
                via=request.via,
                extravars=role_vars(docker, request.allow_restart),
                forks=request.forks,
                host_key_policy=request.host_key_policy,
            ),
            install,
        )
    return InstallPlan(request, docker, steps, book)


# did the step already happen? ------------------------------------------------
def done_by_recap(recap: HostRecap) -> bool:
    """The role ran to the end and changed nothing: Docker was installed and configured."""
    return recap.status == OK and recap.changed == 0


# the run ---------------------------------------------------------------------
EARLIER = "done earlier"


@dataclass
class HostOutcome:
    step: HostStep
    recap: HostRecap | None
    earlier: str | None = None  # the journal's status for a host an earlier process finished

    @property
    def result(self) -> str:
        """changed / unchanged / skipped / done earlier, or the recap's failure status."""
        if self.step.step is None:
            return SKIPPED
        if self.recap is None:
            return EARLIER if self.earlier == SUCCESS else self.earlier or NOT_RUN
        if self.recap.status != OK:
            return self.recap.status
        if done_by_recap(self.recap):
            return "unchanged"
        return "changed"

    @property
    def changed(self) -> int:
        return self.recap.changed if self.recap is not None else 0

    def as_dict(self) -> dict[str, Any]:
        recap = self.recap.as_dict() if self.recap is not None else {}
        return {
            **self.step.as_dict(),
            "result": self.result,
            "changed": self.changed,
            "ok": recap.get("ok", 0),
            "failed": recap.get("failed", 0),
            "unreachable": recap.get("unreachable", 0),
            "message": recap.get("message") or self.step.reason,
        }


@dataclass
class InstallReport:
    run_id: str | None
    status: str
    hosts: list[HostOutcome]
    elapsed: float
    exit_code: ExitCode
    resumed: bool = False

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts)

    @property
    def nothing_changed(self) -> bool:
        """Every host ran and changed nothing (skipped hosts aside): the install had happened."""
        ran = [h for h in self.hosts if h.step.step is not None]
        return bool(ran) and all(h.result == "unchanged" for h in ran)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "resumed": self.resumed,
            "elapsed": round(self.elapsed, 3),
            "changed": self.changed,
            "nothing_changed": self.nothing_changed,
            "hosts": [h.as_dict() for h in self.hosts],
        }


def arguments(plan_: InstallPlan) -> dict[str, Any]:
    """The journal's copy: the request, the role's variables (settings, nothing secret)
    and the per-host plan, enough for a resume to rebuild the same install."""
    return {
        "via": plan_.request.via,
        "allow_restart": plan_.request.allow_restart,
        "forks": plan_.request.forks,
        "host_key_policy": plan_.request.host_key_policy,
        "settings": role_vars(plan_.docker, plan_.request.allow_restart),
        "plan": [s.as_dict() for s in plan_.steps],
    }


def request_from(arguments_: Mapping[str, Any]) -> tuple[InstallRequest, DockerSettings]:
    """The request and settings a journalled docker run was started with."""
    if "via" not in arguments_ or "settings" not in arguments_:
        raise BadInput("this docker run was recorded without its plan; it cannot be resumed")
    role = arguments_["settings"]
    request = InstallRequest(
        via=str(arguments_["via"]),
        allow_restart=bool(arguments_.get("allow_restart")),
        forks=int(arguments_.get("forks") or 10),
        host_key_policy=str(arguments_.get("host_key_policy") or "strict"),
    )
    docker = DockerSettings(
        users=tuple(role["docker_engine_users"]),
        log_max_size=str(role["docker_engine_log_max_size"]),
        log_max_file=int(role["docker_engine_log_max_file"]),
        live_restore=bool(role["docker_engine_live_restore"]),
    )
    return request, docker


@dataclass
class Wiring:
    """How a run talks back and where its files are: events, notes, the static inventory."""

    on_event: Callable[[TaskEvent], None] | None = None
    note: Callable[[str], None] = lambda _text: None
    static_inventory: Path | None = None


def _runtime_plan(
    plan_: InstallPlan,
    settings: Settings,
    transport: SsmTransport,
    recaps: Recaps,
    waves: list[list[Host]],
    wiring: Wiring,
    work_root: Path,
) -> tuple[Plan, Staged | None]:
    """Waves of hosts, one step each: the pull script over SSM, or the push over SSH."""
    book = plan_.playbook
    staged: Staged | None = None
    step: Step
    if book is None:  # nothing left to send (a resume whose hosts all finished)
        step = SsmCommandStep(STEP, CommandSpec(commands=[]))
    elif plan_.request.via == "ssm":
        assert settings.output_bucket  # check_pull_settings
        staged = stage_bundle(
            transport, settings.output_bucket, settings.output_prefix, book.playbook,
            book.roles, playbook_wf.role_paths(book.playbook), book.hosts,
            book.request.extravars, wiring.static_inventory,
        )  # fmt: skip
        script = pull_script(staged.url, staged.bundle.sha256, staged.bundle.playbook,
                             check=False, diff=False)  # fmt: skip
        spec = CommandSpec(
            commands=[script],
            comment=f"ops docker install ({settings.env})",
            output_bucket=settings.output_bucket,
            output_prefix=settings.output_prefix,
        )
        step = SsmCommandStep(STEP, spec)
    else:
        options = PushOptions(
            forks=plan_.request.forks,
            extravars=book.request.extravars,
            ssh_key=settings.ssh_key,
            jump_host=settings.ssh_jump_host,
            host_key_policy=plan_.request.host_key_policy,
            known_hosts=known_hosts_path(),
            static_inventory=wiring.static_inventory,
        )
        step = PushStep(STEP, book.playbook, recaps.hosts, options, work_root, recaps)
    runtime_plan = Plan(
        kind=KIND,
        arguments=arguments(plan_),
        waves=waves,
        steps=[step],
        concurrency=Amount(plan_.request.forks, False),
        max_errors=Amount(100, True),  # every host is attempted, as before
    )
    if staged is not None:
        runtime_plan.arguments["bundle_key"] = staged.key
    return runtime_plan, staged


def _report(
    plan_: InstallPlan,
    recaps: Recaps,
    outcome: RunReport,
    started: float,
    earlier: Mapping[str, str] | None = None,
) -> InstallReport:
    earlier = earlier or {}
    hosts = [
        HostOutcome(step, recaps.found.get(step.host.instance_id),
                    earlier.get(step.host.instance_id))
        for step in plan_.steps
    ]  # fmt: skip
    status = RUN_STATUS.get(outcome.exit_code, "failed")
    return InstallReport(outcome.run_id, status, hosts, time.monotonic() - started,
                         outcome.exit_code, resumed=outcome.resumed)  # fmt: skip


def _as_host(host: InventoryHost) -> Host:
    return Host(host.instance_id, host.name, ping_status="Online")


def run(
    plan_: InstallPlan, settings: Settings, journal: Journal, wiring: Wiring | None = None
) -> InstallReport:
    """Record the run and install on every planned host, through the runtime."""
    wiring = wiring or Wiring()
    if plan_.playbook is None:  # every host skipped: nothing is sent, nothing journaled
        outcomes = [HostOutcome(step, None) for step in plan_.steps]
        return InstallReport(None, "skipped", outcomes, 0.0, ExitCode.OK)
    started = time.monotonic()
    transport = open_transport(settings)
    recaps = Recaps({h.instance_id: h for h in plan_.to_install}, wiring.on_event)
    waves = [[_as_host(h) for h in wave] for wave in plan_.playbook.waves]
    work_root = state_dir() / "ansible" / f"docker-{uuid.uuid4().hex[:12]}"
    runtime_plan, staged = _runtime_plan(
        plan_, settings, transport, recaps, waves, wiring, work_root
    )
    try:
        outcome = _runtime(transport, journal, recaps, wiring).execute(runtime_plan, settings.env)
    finally:
        if staged is not None:
            staged.remove()
    return _report(plan_, recaps, outcome, started)


def _runtime(transport: SsmTransport, journal: Journal, recaps: Recaps, wiring: Wiring) -> Runtime:
    return Runtime(transport, journal, on_result=recaps.pulled, note=wiring.note)


def open_hosts(journal: Journal, run: Run) -> tuple[JournalState, list[str]]:
    """What the journal says of the run, and the hosts it has not finished, in order."""
    state = JournalState.load(journal, run.id)
    return state, [i for i in state.hosts if state.finished(STEP, i) is None]


def resume(
    run: Run,
    settings: Settings,
    journal: Journal,
    found: Mapping[str, InventoryHost],
    wiring: Wiring | None = None,
) -> InstallReport:
    """Finish a docker run an earlier process left.

    Hosts the journal shows finished are skipped; over SSM a host in flight
    is settled from SSM by its command id or marker (never installed twice),
    one never sent is sent with a bundle staged again; over SSH the hosts
    left started run the role again. `found` is the fleet's current record
    of the hosts not finished; one that is gone is reported unreachable.
    """
    wiring = wiring or Wiring()
    started = time.monotonic()
    request, docker = request_from(run.arguments)
    state, left = open_hosts(journal, run)
    hosts = [found[i] for i in left if i in found]
    plan_ = plan(request, hosts, docker) if hosts else InstallPlan(request, docker, [], None)
    if plan_.request.via == "ssm" and plan_.playbook is not None:
        playbook_wf.check_pull_settings(settings)
    transport = open_transport(settings)
    recaps = Recaps({h.instance_id: h for h in plan_.to_install}, wiring.on_event)
    runnable = {h.instance_id for h in plan_.to_install}
    waves: dict[int, list[Host]] = {}
    for instance_id, host in state.hosts.items():
        if instance_id in runnable or state.finished(STEP, instance_id) is not None:
            waves.setdefault(state.waves.get(instance_id, 0), []).append(host)
    work_root = state_dir() / "ansible" / run.id
    runtime_plan, staged = _runtime_plan(
        plan_, settings, transport, recaps, [waves[i] for i in sorted(waves)], wiring, work_root
    )
    previous = str(run.arguments.get("bundle_key") or "")
    runtime_plan.arguments = {**run.arguments, **runtime_plan.arguments}
    runtime_plan.arguments["plan"] = run.arguments.get("plan", [])
    runtime_plan.unreachable = [state.hosts[i] for i in left if i not in runnable]
    try:
        outcome = _runtime(transport, journal, recaps, wiring).resume(runtime_plan, run, state)
    finally:
        if staged is not None:
            staged.remove(previous)
        elif previous and transport.s3 is not None and settings.output_bucket:
            with contextlib.suppress(Exception):
                transport.s3.delete_object(Bucket=settings.output_bucket, Key=previous)
    earlier = {i: status for (_step, i), status in state.done.items()}
    done_before = [
        HostStep(InventoryHost(i, state.hosts[i].name), STEP)
        for i in state.hosts
        if i not in runnable and i not in left
    ]
    plan_.steps = done_before + plan_.steps
    return _report(plan_, recaps, outcome, started, earlier)
