"""How `ops docker install`'s one step reaches hosts through the runtime, per transport.

Over SSM the step is an SsmCommandStep running the pull script, so every
send has its marker and command id in the journal and a resume settles a
host in flight from SSM instead of installing again. Over SSH there is no
such record: PushStep marks hosts started, pushes the role to `forks` hosts
at a time and records each host's recap as its chunk ends; a resume re-runs
the (idempotent) role on the hosts a dead process left started.

Either way each host's result becomes a HostRecap in a Recaps collector, the
shape the docker report reads.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.engine.fanout import FanOutReport
from ops.engine.plan import InFlight, Settled, Step, StepContext
from ops.fleet.discovery import Host
from ops.fleet.inventory import InventoryHost
from ops.transports.ansible import NOT_RUN, OK, HostRecap, PushOptions, TaskEvent, push
from ops.transports.ansible_pull import Bundle, build_bundle, collect_roles, host_recap, stage
from ops.transports.ssm import FAILED, NOT_STARTED, SUCCESS, HostResult, SsmTransport


@dataclass
class Recaps:
    """Each host's recap as its result arrives (pull output parsed, or push's own)."""

    hosts: Mapping[str, InventoryHost]
    on_event: Callable[[TaskEvent], None] | None = None
    found: dict[str, HostRecap] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def pulled(self, result: HostResult) -> None:
        """The runtime's on_result for the SSM path: the recap is in the host's output."""
        host = self.hosts.get(result.instance_id)
        if host is None:
            return
        item, parsed = host_recap(result, host)
        self.add(item)
        if self.on_event is not None:
            for event in parsed.events:
                self.on_event(event)

    def add(self, item: HostRecap) -> None:
        with self._lock:
            self.found[item.instance_id] = item


@dataclass
class Staged:
    """The bundle in S3 for this process; it may hold the role's variables, so it is removed."""

    s3: Any
    bucket: str
    key: str
    url: str
    bundle: Bundle

    def remove(self, *keys: str) -> None:
        for key in (self.key, *keys):
            if key:
                with contextlib.suppress(Exception):
                    self.s3.delete_object(Bucket=self.bucket, Key=key)


def stage_bundle(
    transport: SsmTransport,
    bucket: str,
    prefix: str,
    playbook: Path,
    roles: Sequence[str],
    role_paths: Sequence[Path],
    hosts: Sequence[InventoryHost],
    extravars: Mapping[str, Any],
    static_inventory: Path | None,
) -> Staged:
    """Pack the playbook with its roles for these hosts and put it in S3 (again on resume)."""
    bundle = build_bundle(
        playbook, collect_roles(roles, role_paths), hosts, extravars, static_inventory
    )
    assert transport.s3 is not None
    key, url = stage(transport.s3, bucket, prefix, bundle)
    return Staged(transport.s3, bucket, key, url, bundle)


def to_result(item: HostRecap) -> HostResult:
    """A push recap as the runtime records results: Success only when Ansible said ok."""
    if item.status == NOT_RUN:  # a cancel came first: unsettled, so a resume runs it
        return HostResult(item.instance_id, item.name, NOT_STARTED)
    status = SUCCESS if item.status == OK else FAILED
    return HostResult(item.instance_id, item.name, status, 0 if status == SUCCESS else 2,
                      stderr=item.message if status != SUCCESS else "")  # fmt: skip


class PushStep(Step):
    """The role pushed over SSH by ansible-runner, `forks` hosts per call."""

    def __init__(
        self,
        name: str,
        playbook: Path,
        hosts: Mapping[str, InventoryHost],
        options: PushOptions,
        work_root: Path,
        recaps: Recaps,
    ) -> None:
        self.name = name
        self.playbook = playbook
        self.hosts = hosts
        self.options = options
        self.work_root = work_root
        self.recaps = recaps

    def run(self, hosts: list[Host], context: StepContext, settled: Settled) -> FanOutReport:
        report = FanOutReport([], {})
        size = max(1, self.options.forks)
        for start in range(0, len(hosts), size):
            if context.cancel.is_set():
                report.interrupted = True
                break
            if context.budget.stopped:
                report.stopped_by_budget = True
                break
            chunk = hosts[start : start + size]
            context.recorder.started(self.name, chunk)
            found = [self.hosts[h.instance_id] for h in chunk]
            outcome = push(
                self.playbook,
                found,
                self.work_root / f"chunk-{start // size}",
                self.options,
                self.recaps.on_event,
                context.cancel,
            )
            for item in outcome.hosts:
                self.recaps.add(item)
                result = to_result(item)
                context.budget.record(result.status)
                report.counts[result.status] = report.counts.get(result.status, 0) + 1
                context.on_result(result)
            if outcome.cancelled:
                report.interrupted = True
                break
        return report

    def settle(self, in_flight: list[InFlight], context: StepContext) -> Settled:
        """SSH leaves no record to settle by: whatever was in flight runs again."""
        return Settled(unsent=[item.host for item in in_flight])
