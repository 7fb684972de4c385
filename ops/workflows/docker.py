"""`ops docker install`: plan per host, then one install-and-configure step per host.

The work itself is the role playbooks/roles/docker_engine, run by the
playbook workflow (pulled over SSM as `ops playbook --via ssm` does, or
pushed over SSH), so this module only decides and reads:

- plan: which hosts get the step, which are skipped and why (a platform the
  role does not know is skipped up front, never sent), which are past their
  platform's end of support (flagged, still installed);
- the step: `docker_install` on each planned host, run by the playbook
  workflow with the settings as the role's variables;
- whether the step already happened on a host: from its recap (the role ran
  and changed nothing) or from its facts (`ops docker status` shows it
  installed, running and without drift). A resumed run uses either.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.config import DockerSettings, Settings
from ops.errors import BadInput, ExitCode, OpsError
from ops.fleet.inventory import InventoryHost
from ops.fleet.platforms import Platform
from ops.journal.store import Journal
from ops.transports.ansible import NOT_RUN, OK, HostRecap, TaskEvent
from ops.workflows import playbook as playbook_wf
from ops.workflows.docker_status import HostStatus

VIAS = playbook_wf.VIAS
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


def done_by_facts(status: HostStatus) -> bool:
    """Installed, running, and no drift from the settings (what `ops docker status` shows)."""
    return bool(status.installed and status.running and not status.drift and not status.error)


# the run ---------------------------------------------------------------------
@dataclass
class HostOutcome:
    step: HostStep
    recap: HostRecap | None

    @property
    def result(self) -> str:
        """installed / configured / unchanged / skipped, or the recap's failure status."""
        if self.step.step is None:
            return SKIPPED
        if self.recap is None:
            return NOT_RUN
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
            "elapsed": round(self.elapsed, 3),
            "changed": self.changed,
            "nothing_changed": self.nothing_changed,
            "hosts": [h.as_dict() for h in self.hosts],
        }


def run(
    plan_: InstallPlan,
    settings: Settings,
    journal: Journal,
    on_event: Callable[[TaskEvent], None] | None = None,
    cancel: threading.Event | None = None,
    static_inventory: Path | None = None,
) -> InstallReport:
    """Run the install step on every planned host (through the playbook workflow)."""
    if plan_.playbook is None:  # every host skipped: nothing is sent, nothing journaled
        outcomes = [HostOutcome(step, None) for step in plan_.steps]
        return InstallReport(None, "skipped", outcomes, 0.0, ExitCode.OK)
    report = playbook_wf.run(
        plan_.playbook, settings, journal, on_event, cancel, static_inventory=static_inventory
    )
    by_id = {h.instance_id: h for h in report.hosts}
    outcomes = [HostOutcome(step, by_id.get(step.host.instance_id)) for step in plan_.steps]
    return InstallReport(report.run_id, report.status, outcomes, report.elapsed, report.exit_code)
