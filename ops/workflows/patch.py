"""`ops patch plan`: per host the updates a patch run would install, and its waves.

The plan is read-only: one fan-out of the probe script (ops.workflows.
patch_probe) over SSM, then policy applied here, as Patch Manager's
baselines apply it:

- `patch.exclude` globs hold a package back (shown as held);
- `patch.approve_after_days`: an update published fewer days ago is not
  approved yet; one the repository does not date follows `patch.undated`;
- `--security-only`: only security updates are approved.

What is approved is `pending` (what a run installs); a reboot is predicted
when an approved update is a kernel or a core library, or when the host
already asks for one. Hosts with something approved go into waves
(ops.workflows.patch_waves) by their Role tag and availability zone.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ops.config import PatchSettings, Settings
from ops.engine.budget import Amount, FailureBudget, parse_amount, parse_concurrency
from ops.engine.fanout import FanOut
from ops.errors import BadInput
from ops.fleet.discovery import Host, discover_hosts
from ops.fleet.placement import availability_zones
from ops.fleet.targets import TargetSpec
from ops.transports.ssm import SUCCESS, CommandSpec, HostResult, open_transport
from ops.workflows.patch_probe import PROBE_SCRIPT, HostUpdates, Update, parse_probe
from ops.workflows.patch_waves import WaveHost, plan_waves

# Updates that only take effect after a reboot, as needs-restarting -r judges it.
REBOOT_GLOBS = (
    "kernel",
    "kernel-*",
    "*-kernel",
    "linux-image-*",
    "linux-firmware",
    "glibc",
    "libc6",
    "systemd",
    "openssl-libs",
    "libssl*",
    "dbus",
)
PROBE_TIMEOUT_S = 600


@dataclass(frozen=True)
class PlanOptions:
    security_only: bool = False
    canary: int = 1
    wave: Amount | None = None
    max_unavailable: Amount = field(default_factory=lambda: Amount(25, True))


@dataclass
class HostPlan:
    instance_id: str
    name: str
    platform: str
    role: str = ""
    az: str = ""
    pending: list[Update] = field(default_factory=list)
    held: list[Update] = field(default_factory=list)
    not_approved: list[tuple[Update, str]] = field(default_factory=list)
    reboot_required: bool = False
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "platform": self.platform,
            "pending": [u.as_dict() for u in self.pending],
            "reboot_required": self.reboot_required,
            "role": self.role,
            "az": self.az,
            "held": [u.as_dict() for u in self.held],
            "not_approved": [{**u.as_dict(), "reason": why} for u, why in self.not_approved],
            **({"error": self.error} if self.error else {}),
        }


@dataclass
class PatchPlan:
    hosts: list[HostPlan]
    waves: list[list[str]]

    def as_dict(self) -> dict[str, Any]:
        return {"hosts": [h.as_dict() for h in self.hosts], "waves": self.waves}


def parse_options(
    *,
    security_only: bool,
    canary: int,
    wave: str | None,
    max_unavailable: str | None,
    settings: PatchSettings,
) -> PlanOptions:
    """The command line's plan options, refused (exit 2) before any host is asked."""
    if canary < 0:
        raise BadInput(f"--canary must be 0 or more, got {canary}")
    return PlanOptions(
        security_only=security_only,
        canary=canary,
        wave=parse_amount(wave, option="--wave", minimum=1) if wave is not None else None,
        max_unavailable=parse_amount(
            max_unavailable if max_unavailable is not None else settings.max_unavailable,
            option="--max-unavailable",
            minimum=1,
        ),
    )


def classify(
    updates: Sequence[Update], settings: PatchSettings, *, security_only: bool, now: dt.datetime
) -> tuple[list[Update], list[Update], list[tuple[Update, str]]]:
    """(approved, held by patch.exclude, not approved with the reason)."""
    approved: list[Update] = []
    held: list[Update] = []
    waiting: list[tuple[Update, str]] = []
    cutoff = now - dt.timedelta(days=settings.approve_after_days)
    for update in updates:
        if any(fnmatch.fnmatchcase(update.name, glob) for glob in settings.exclude):
            held.append(update)
        elif security_only and not update.security:
            waiting.append((update, "not a security update (--security-only)"))
        elif update.published is None and settings.undated == "hold":
            waiting.append((update, "undated by its repository (patch.undated: hold)"))
        elif update.published is not None and update.published > cutoff:
            day = update.published.date().isoformat()
            waiting.append(
                (update, f"published {day}, under approve_after_days={settings.approve_after_days}")
            )
        else:
            approved.append(update)
    return approved, held, waiting


def needs_reboot(approved: Sequence[Update], already_pending: bool) -> bool:
    """A kernel or core-library update, or a reboot the host already asks for."""
    return already_pending or any(
        fnmatch.fnmatchcase(u.name, glob) for u in approved for glob in REBOOT_GLOBS
    )


def _role(host: Host) -> str:
    return next((v for k, v in host.tags.items() if k.lower() == "role"), "")


def probe(settings: Settings, hosts: Sequence[Host]) -> dict[str, HostResult]:
    """Run the read-only probe on every host in one fan-out; results by instance id."""
    spec = CommandSpec(
        commands=[PROBE_SCRIPT],
        execution_timeout=PROBE_TIMEOUT_S,
        comment="ops patch plan (read-only)",
        output_bucket=settings.output_bucket,
        output_prefix=settings.output_prefix,
    )
    results: dict[str, HostResult] = {}
    if not hosts:
        return results

    def keep(result: HostResult) -> None:
        results[result.instance_id] = result

    budget = FailureBudget(
        len(hosts),
        parse_concurrency(settings.concurrency),
        Amount(100, True),  # reading: one host's failure is no reason to stop the others
    )
    FanOut(open_transport(settings), spec).run_client_side(list(hosts), budget, keep)
    return results


def build_plan(
    hosts: Sequence[Host],
    results: dict[str, HostResult],
    zones: dict[str, str],
    patch: PatchSettings,
    options: PlanOptions,
    now: dt.datetime,
) -> PatchPlan:
    """The plan from probe results: pure, so every policy branch is unit-testable."""
    plans: list[HostPlan] = []
    for host in sorted(hosts, key=lambda h: (h.name or h.instance_id, h.instance_id)):
        result = results.get(host.instance_id)
        entry = HostPlan(
            host.instance_id, host.name, host.platform, _role(host), zones.get(host.instance_id, "")
        )
        plans.append(entry)
        if result is None or result.status != SUCCESS:
            status = result.status if result else "NotStarted"
            detail = (result.stderr or result.stdout).strip()[-200:] if result else ""
            entry.error = f"probe {status}" + (f": {detail}" if detail else "")
            continue
        found: HostUpdates = parse_probe(result.stdout)
        entry.platform = found.platform or host.platform
        if found.error:
            entry.error = found.error
            continue
        entry.pending, entry.held, entry.not_approved = classify(
            found.updates, patch, security_only=options.security_only, now=now
        )
        entry.reboot_required = needs_reboot(entry.pending, found.reboot_pending)
    to_patch = [WaveHost(p.instance_id, p.role, p.az) for p in plans if p.pending]
    waves = plan_waves(
        to_patch,
        canary=min(options.canary, len(to_patch)) if to_patch else 0,
        wave=options.wave,
        max_unavailable=options.max_unavailable,
    )
    return PatchPlan(plans, waves)


def plan(
    settings: Settings,
    spec: TargetSpec,
    options: PlanOptions,
    *,
    include_offline: bool = False,
    on_hosts: Callable[[list[Host], list[Host]], None] | None = None,
    now: dt.datetime | None = None,
) -> PatchPlan:
    """Discover, check the canary against the fleet, probe, and plan."""
    listing = discover_hosts(settings, spec, include_offline=include_offline)
    listing.drain()
    resolution = listing.known
    if not resolution.all:
        raise BadInput(f"no running instance matches {resolution.expression}")
    if options.canary > len(resolution.reachable):
        raise BadInput(
            f"--canary {options.canary} is larger than the {len(resolution.reachable)} "
            "reachable hosts targeted; give a smaller --canary"
        )
    if on_hosts is not None:
        on_hosts(resolution.reachable, resolution.unreachable)
    results = probe(settings, resolution.reachable)
    zones = availability_zones(settings, [h.instance_id for h in resolution.all])
    return build_plan(
        resolution.all,
        results,
        zones,
        settings.patch,
        options,
        now or dt.datetime.now(dt.UTC),
    )
