"""`ops patch compliance`: which hosts still miss approved updates, and how long since each
was patched, the question an auditor (or Patch Manager's compliance view) asks.

What counts as missing is exactly what `ops patch plan` would install: the
same read-only probe and the same baseline (patch.exclude holds a package
back, approve_after_days and patch.undated decide what is approved yet,
`--security-only` narrows it), so a held or not yet approved update never
makes a host non-compliant. A host whose probe failed is `unknown`: it is
not counted compliant, since nobody could look. The last patch of a host is
the newest patch run in this environment whose register step succeeded on
it (the host was patched and back in service), read from the journal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ops.config import Settings
from ops.fleet.discovery import Host
from ops.fleet.targets import TargetSpec
from ops.journal.store import Journal
from ops.transports.ssm import SUCCESS
from ops.workflows.patch import HostPlan, PatchPlan, PlanOptions, plan
from ops.workflows.patch_probe import Update

KIND = "patch"
COMPLIANT, NON_COMPLIANT, UNKNOWN = "compliant", "non-compliant", "unknown"
_DAY_S = 86_400.0
_RUNS_READ = 10_000  # patch runs looked through for a host's last patch, newest first


@dataclass(frozen=True)
class LastPatch:
    run_id: str
    at: float  # when the host's register step succeeded (epoch seconds)


@dataclass
class HostCompliance:
    instance_id: str
    name: str
    platform: str
    missing: list[Update] = field(default_factory=list)  # approved, not installed: security first
    held: list[Update] = field(default_factory=list)
    not_approved: list[tuple[Update, str]] = field(default_factory=list)
    last: LastPatch | None = None
    error: str = ""

    @property
    def state(self) -> str:
        if self.error:
            return UNKNOWN
        return NON_COMPLIANT if self.missing else COMPLIANT

    def days_since_patch(self, now: float) -> int | None:
        return None if self.last is None else int(max(0.0, now - self.last.at) // _DAY_S)

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "platform": self.platform,
            "state": self.state,
            "missing": [u.as_dict() for u in self.missing],
            "missing_security": sum(1 for u in self.missing if u.security),
            "held": [u.as_dict() for u in self.held],
            "not_approved": [{**u.as_dict(), "reason": why} for u, why in self.not_approved],
            "last_patch_run": self.last.run_id if self.last else None,
            "last_patched_at": (
                dt.datetime.fromtimestamp(self.last.at, dt.UTC).isoformat() if self.last else None
            ),
            "days_since_patch": self.days_since_patch(now),
            **({"error": self.error} if self.error else {}),
        }


@dataclass
class Compliance:
    hosts: list[HostCompliance]
    now: float

    def count(self, state: str) -> int:
        return sum(1 for h in self.hosts if h.state == state)

    @property
    def share(self) -> float:
        """Compliant hosts over every host targeted (an unknown one is not compliant)."""
        return self.count(COMPLIANT) / len(self.hosts) if self.hosts else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "hosts": [h.as_dict(self.now) for h in self.hosts],
            "fleet": {
                "hosts": len(self.hosts),
                COMPLIANT: self.count(COMPLIANT),
                NON_COMPLIANT: self.count(NON_COMPLIANT),
                UNKNOWN: self.count(UNKNOWN),
                "compliant_share": round(self.share, 4),
            },
        }


def last_patches(journal: Journal, environment: str, ids: Iterable[str]) -> dict[str, LastPatch]:
    """Per host (of `ids`), its newest successful patch in this environment's runs."""
    wanted = set(ids)
    found: dict[str, LastPatch] = {}
    for run in journal.list_runs(limit=_RUNS_READ, kind=KIND):
        if run.environment != environment:
            continue
        for row in journal.steps(run.id):
            if row.phase != "register" or row.status != SUCCESS or row.host not in wanted:
                continue
            at = row.ended_at or row.started_at
            known = found.get(row.host)
            if known is None or at > known.at:
                found[row.host] = LastPatch(run.id, at)
    return found


def assess(patch_plan: PatchPlan, last: Mapping[str, LastPatch], now: float) -> Compliance:
    """Compliance from a plan and the journal's last patches: pure, for the unit tests."""
    hosts = [_host(planned, last.get(planned.instance_id)) for planned in patch_plan.hosts]
    return Compliance(hosts, now)


def _host(planned: HostPlan, last: LastPatch | None) -> HostCompliance:
    missing = sorted(planned.pending, key=lambda u: (not u.security, u.name))
    return HostCompliance(
        planned.instance_id,
        planned.name,
        planned.platform,
        missing,
        list(planned.held),
        list(planned.not_approved),
        last,
        planned.error,
    )


def compliance(
    settings: Settings,
    spec: TargetSpec,
    journal: Journal,
    *,
    security_only: bool = False,
    include_offline: bool = False,
    on_hosts: Callable[[list[Host], list[Host]], None] | None = None,
    now: dt.datetime | None = None,
) -> Compliance:
    """Probe the targeted hosts (read-only) and set what they miss beside the journal."""
    moment = now or dt.datetime.now(dt.UTC)
    patch_plan = plan(
        settings,
        spec,
        PlanOptions(security_only=security_only, canary=0),
        include_offline=include_offline,
        on_hosts=on_hosts,
        now=moment,
    )
    last = last_patches(journal, settings.env, (h.instance_id for h in patch_plan.hosts))
    return assess(patch_plan, last, moment.timestamp())
