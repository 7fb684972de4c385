"""How `ops playbook`'s one step reaches hosts through the runtime: pulled or pushed.

Pull (PullStep) is an SsmCommandStep: every send has its marker and command
id in the journal, so a resume settles a host left in flight from SSM by
them and never sends it the playbook again. Its bundles are staged the first
time the step runs, under keys the run recorded before that (so the resume
of a killed run can remove them), one bundle shared by the hosts without
variables of their own and one per host with some, each sent to its hosts
only (ansible_pull.bundle_groups).

Push (PushStep) hands a wave to ansible-runner in one call, `forks` hosts
at a time inside it; SSH leaves no record to settle by, so the hosts are
marked started first and a resume runs the (idempotent) playbook on them
again.

Either way each host's recap lands in a Collector, which also writes the
task events and the recap to the journal with secret-looking values scrubbed.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.engine.fanout import FanOut, FanOutReport
from ops.engine.plan import InFlight, Settled, SsmCommandStep, Step, StepContext
from ops.engine.recorder import RunRecorder
from ops.fleet.discovery import Host
from ops.fleet.inventory import InventoryHost
from ops.redact import Redactor
from ops.transports.ansible import NOT_RUN, OK, UNREACHABLE, HostRecap, PushOptions, TaskEvent, push
from ops.transports.ansible_pull import (
    Bundle,
    bundle_key,
    delete_bundle,
    host_recap,
    presign,
    pull_script,
    put_bundle,
)
from ops.transports.ssm import FAILED, NOT_STARTED, SUCCESS, CommandSpec, HostResult
from ops.transports.ssm import UNREACHABLE as SSM_UNREACHABLE

RECAP = "recap"  # the journal phase of each host's Ansible recap
TASK = "task"  # and of each task result
SHARED = "shared"  # the bundle of the hosts without variables of their own


@dataclass
class Collector:
    """Each host's recap as it arrives, written to the journal with secrets scrubbed."""

    hosts: Mapping[str, InventoryHost]
    redactor: Redactor
    on_event: Callable[[TaskEvent], None] | None = None
    found: dict[str, HostRecap] = field(default_factory=dict)
    tasks: int = 0
    recorder: RunRecorder | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def bind(self, recorder: RunRecorder) -> None:
        """The run's recorder, known once the runtime has begun the run."""
        self.recorder = recorder

    def event(self, event: TaskEvent) -> None:
        event = dataclasses.replace(event, message=self.redactor.scrub(event.message))
        self._write(TASK, [(event.host, event.status, {"task": event.task,
                                                        "changed": event.changed})])  # fmt: skip
        if self.on_event is not None:
            self.on_event(event)

    def add(self, item: HostRecap, tasks: int = 0) -> None:
        item.message = self.redactor.scrub(item.message)
        with self._lock:
            if item.instance_id in self.found:
                return
            self.found[item.instance_id] = item
            self.tasks = max(self.tasks, tasks)
        self._write(RECAP, [(item.instance_id, item.status, item.as_dict())])

    def pulled(self, result: HostResult) -> None:
        """The runtime's on_result: a pulled host's recap is in its output."""
        host = self.hosts.get(result.instance_id)
        if host is None or result.instance_id in self.found:
            return  # a push recap, already collected
        item, parsed = host_recap(result, host)
        for event in parsed.events:
            self.event(event)
        self.add(item, parsed.tasks)

    def _write(self, phase: str, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
        if self.recorder is not None:
            self.recorder.journal.record_steps(self.recorder.run_id, phase, rows)


def to_result(item: HostRecap) -> HostResult:
    """A push recap as the runtime records it: Success only when Ansible said ok."""
    if item.status == NOT_RUN:  # a cancel came first: unsettled, so a resume runs it
        return HostResult(item.instance_id, item.name, NOT_STARTED)
    status = {OK: SUCCESS, UNREACHABLE: SSM_UNREACHABLE}.get(item.status, FAILED)
    return HostResult(item.instance_id, item.name, status, 0 if status == SUCCESS else 2,
                      stderr=item.message if status != SUCCESS else "")  # fmt: skip


class PushStep(Step):
    """The playbook pushed over SSH by ansible-runner: one call per wave."""

    def __init__(
        self,
        name: str,
        playbook: Path,
        hosts: Mapping[str, InventoryHost],
        options: PushOptions,
        work_root: Path,
        collector: Collector,
    ) -> None:
        self.name = name
        self.playbook = playbook
        self.hosts = hosts
        self.options = options
        self.work_root = work_root
        self.collector = collector
        self._calls = 0

    def run(self, hosts: list[Host], context: StepContext, settled: Settled) -> FanOutReport:
        report = FanOutReport([], {})
        if context.cancel.is_set():
            report.interrupted = True
            return report
        self.collector.bind(context.recorder)
        context.recorder.started(self.name, hosts)  # no record to settle by: rerun on resume
        found = [self.hosts[h.instance_id] for h in hosts]
        outcome = push(self.playbook, found, self._work_dir(context.recorder.run_id),
                       self.options, self.collector.event, context.cancel)  # fmt: skip
        for item in outcome.hosts:
            self.collector.add(item, outcome.tasks)
            result = to_result(item)
            context.budget.record(FAILED if result.status == SSM_UNREACHABLE else result.status)
            report.counts[result.status] = report.counts.get(result.status, 0) + 1
            context.on_result(result)
        report.interrupted = outcome.cancelled
        return report

    def _work_dir(self, run_id: str) -> Path:
        """A fresh folder per call under the run's own (a resume does not reuse the dead one's)."""
        while True:
            folder = self.work_root / run_id / f"wave-{self._calls}"
            self._calls += 1
            if not folder.exists():
                return folder

    def settle(self, in_flight: list[InFlight], context: StepContext) -> Settled:
        """SSH leaves no record to settle by: whatever was in flight runs again."""
        return Settled(unsent=[item.host for item in in_flight])


@dataclass
class BundleGroup:
    """One bundle and the hosts it is for (and sent to): all of them share it."""

    name: str  # "shared", or the instance id of the one host with vars of its own
    key: str
    bundle: Bundle
    hosts: frozenset[str]


@dataclass
class Staging:
    """A run's bundles in S3: keys chosen (and journalled) first, put there on first use."""

    s3: Any
    bucket: str
    groups: list[BundleGroup]
    staged: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def plan(
        cls,
        s3: Any,
        bucket: str,
        prefix: str,
        token: str,
        groups: Sequence[tuple[str, Bundle, Sequence[str]]],
    ) -> Staging:
        return cls(s3, bucket, [
            BundleGroup(name, bundle_key(prefix, token, name), bundle, frozenset(hosts))
            for name, bundle, hosts in groups
        ])  # fmt: skip

    @property
    def keys(self) -> list[str]:
        return [g.key for g in self.groups]

    def ensure(self) -> None:
        with self._lock:
            if not self.staged:
                for group in self.groups:
                    put_bundle(self.s3, self.bucket, group.key, group.bundle)
                self.staged = True

    def url(self, group: BundleGroup) -> str:
        """Signed per call: a URL lives minutes, a run of many waves lives longer."""
        return presign(self.s3, self.bucket, group.key)

    def remove(self) -> None:
        """The bundles may hold secret vars: they do not outlive the run."""
        for key in self.keys:
            delete_bundle(self.s3, self.bucket, key)


@dataclass(frozen=True)
class PullSpec:
    """What every pull send has in common; the script differs per bundle."""

    check: bool
    diff: bool
    comment: str
    output_bucket: str | None
    output_prefix: str
    concurrency: int
    execution_timeout: int = 3600


class PullStep(SsmCommandStep):
    """The playbook pulled over SSM: one fan-out per bundle, each host sent only its own."""

    def __init__(self, name: str, staging: Staging, spec: PullSpec, collector: Collector) -> None:
        super().__init__(name, CommandSpec(commands=[]))
        self.staging = staging
        self.pull = spec
        self.collector = collector

    def _spec(self, group: BundleGroup) -> CommandSpec:
        bundle = group.bundle
        script = pull_script(self.staging.url(group), bundle.sha256, bundle.playbook,
                             self.pull.check, self.pull.diff)  # fmt: skip
        return CommandSpec(
            commands=[script],
            execution_timeout=self.pull.execution_timeout,
            comment=self.pull.comment,
            output_bucket=self.pull.output_bucket,
            output_prefix=self.pull.output_prefix,
        )

    def _fanout(self, group: BundleGroup, context: StepContext, workers: int) -> FanOut:
        options = {**dict(context.fanout_options), "workers": workers}
        fanout = FanOut(context.ssm, self._spec(group),
                        hooks=context.recorder.hooks(self.name), **options)  # fmt: skip
        context.register(fanout.cancel)
        if context.cancel.is_set():
            fanout.cancel()
        return fanout

    def run(self, hosts: list[Host], context: StepContext, settled: Settled) -> FanOutReport:
        self.collector.bind(context.recorder)
        if hosts:  # adopted sends alone need no bundle staged
            self.staging.ensure()
        by_group: dict[str, list[Host]] = {}
        for host in hosts:
            group = next(g for g in self.staging.groups if host.instance_id in g.hosts)
            by_group.setdefault(group.name, []).append(host)
        total = FanOutReport([], {})
        groups = self.staging.groups
        shared = next((g for g in groups if g.name == SHARED), groups[0])
        # the shared bundle's hosts, and every send an earlier process left (whatever
        # its bundle: it is only collected), in one fan-out
        if by_group.get(shared.name) or settled.adopt:
            fanout = self._fanout(shared, context, workers=8)
            part = fanout.run_client_side(
                by_group.pop(shared.name, []), context.budget, context.on_result,
                adopt=settled.adopt, since=settled.since,
            )  # fmt: skip
            total.add(part)
        own = [(g, by_group[g.name]) for g in self.staging.groups if g.name in by_group]
        if own and not (total.interrupted or total.denied):
            width = max(1, min(self.pull.concurrency, len(own)))
            with cf.ThreadPoolExecutor(width, thread_name_prefix="ops-pull-own") as pool:
                parts = [
                    pool.submit(self._fanout(group, context, workers=1).run_client_side,
                                group_hosts, context.budget, context.on_result)
                    for group, group_hosts in own
                ]  # fmt: skip
                for future in parts:
                    total.add(future.result())
        return total
