"""`ops run`'s step over SSH, and the step that picks SSM or SSH per host (`--via auto`).

SshCommandStep runs the command on each host through the paramiko transport
(one connection per host for the run, a thread per host in flight, as many
as the budget's concurrency), under the same failure budget, journal and
cancel as the SSM step. Every host's start is written ahead with a marker
(journal `sending`), and the command leaves its record on the host under
that marker (ops.transports.ssh_run), so a resume settles a host in flight
from the host itself: collected if it started, sent if it never did, never
run twice.

AutoStep sends the hosts whose agent is Online through the SSM step first,
then the rest through the SSH step: one budget and one concurrency limit
for both, never more hosts in flight than `--concurrency` allows.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from ops.engine.fanout import CANCEL_FAILED, RUNNING, FanOutReport
from ops.engine.plan import InFlight, Settled, SsmCommandStep, Step, StepContext
from ops.fleet.discovery import Host
from ops.transports import ssh_run
from ops.transports.paramiko_import import paramiko
from ops.transports.ssh import SshTarget, SshTransport, SshUnreachable
from ops.transports.ssm import (
    CANCELLED,
    FAILED,
    NOT_STARTED,
    SUCCESS,
    TIMED_OUT,
    UNDELIVERABLE,
    UNREACHABLE,
    HostResult,
)

MAX_WORKERS = 256
_KILLED = frozenset({124, 137, 143})  # timeout's own code, SIGKILL, SIGTERM


def new_marker() -> str:
    return f"{ssh_run.MARKER_PREFIX}{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class SshRoute:
    """Where each host's sshd answers, and why the others cannot be reached."""

    targets: Mapping[str, SshTarget]
    why_not: Mapping[str, str]


class SshCommandStep(Step):
    """A shell command over SSH, paced by the run's budget, settled from the host's record."""

    def __init__(
        self,
        name: str,
        command: str,
        route: SshRoute,
        transport: SshTransport,
        *,
        execution_timeout: int = 3600,
        cancel_wait: float = 30.0,
    ) -> None:
        self.name = name
        self.command = command
        self.route = route
        self.transport = transport
        self.execution_timeout = execution_timeout
        self.cancel_wait = cancel_wait
        self._cancel_failed: dict[str, str] = {}
        self._cancelling: set[str] = set()

    def close(self) -> None:
        self.transport.close()

    # one host ----------------------------------------------------------
    def _target(self, host: Host) -> SshTarget | HostResult:
        target = self.route.targets.get(host.instance_id)
        if target is None:
            why = self.route.why_not.get(host.instance_id, "no SSH route to this host")
            return HostResult(host.instance_id, host.name, UNREACHABLE, stderr=why)
        return target

    def _run_one(self, host: Host, marker: str) -> HostResult:
        target = self._target(host)
        if isinstance(target, HostResult):
            return target
        text = ssh_run.wrapped(self.command, marker, self.execution_timeout)
        try:
            done = self.transport.run_command(target, text, timeout=self.execution_timeout + 60)
        except (SshUnreachable, paramiko.SSHException, OSError) as exc:
            return HostResult(host.instance_id, host.name, UNDELIVERABLE, stderr=str(exc))
        if done.timed_out:
            return HostResult(host.instance_id, host.name, TIMED_OUT, None,
                              stderr="no answer within the execution timeout",
                              duration_s=done.duration_s)  # fmt: skip
        return self._result(host, done.exit_code, done.stdout, done.stderr, done.duration_s)

    def _result(
        self, host: Host, code: int | None, out: bytes, err: bytes, took: float | None
    ) -> HostResult:
        truncated = len(out) > ssh_run.OUTPUT_CAP or len(err) > ssh_run.OUTPUT_CAP
        stdout = out[: ssh_run.OUTPUT_CAP].decode("utf-8", "replace")
        stderr = err[: ssh_run.OUTPUT_CAP].decode("utf-8", "replace")
        if code is None:
            status = FAILED
            stderr = stderr or "the connection ended before the command's exit status came"
        elif code == 0:
            status = SUCCESS
        elif code in _KILLED and host.instance_id in self._cancelling:
            status = CANCELLED
        elif code in _KILLED and took is not None and took >= self.execution_timeout:
            status = TIMED_OUT
        else:
            status = FAILED
        return HostResult(host.instance_id, host.name, status, code, stdout, stderr,
                          truncated, took)  # fmt: skip

    def _collect(self, host: Host, marker: str) -> HostResult:
        """A command an earlier process started: wait for its exit code, read its output."""
        target = self._target(host)
        if isinstance(target, HostResult):
            return target
        deadline = time.monotonic() + self.execution_timeout + 60
        started = time.monotonic()
        try:
            while True:
                answer = self.transport.run_command(target, ssh_run.state(marker), timeout=60)
                phase, code = ssh_run.parse_state(answer.stdout.decode("utf-8", "replace"))
                if phase == "finished":
                    run = self.transport.run_command
                    out = run(target, ssh_run.read(marker, "out"), timeout=60)
                    err = run(target, ssh_run.read(marker, "err"), timeout=60)
                    took = round(time.monotonic() - started, 3)
                    return self._result(host, code, out.stdout, err.stdout, took)
                if phase == "absent":
                    return HostResult(host.instance_id, host.name, NOT_STARTED)
                if phase == "lost":
                    return HostResult(host.instance_id, host.name, FAILED, None,
                                      stderr="the command's process ended without an exit code "
                                      "(the host rebooted, or it was killed)")  # fmt: skip
                if time.monotonic() > deadline:
                    late = "still running past its execution timeout"
                    return HostResult(host.instance_id, host.name, RUNNING, stderr=late)
                time.sleep(1.0)
        except (SshUnreachable, paramiko.SSHException, OSError, ValueError) as exc:
            return HostResult(host.instance_id, host.name, UNDELIVERABLE,
                              stderr=f"cannot read the command's record: {exc}")  # fmt: skip

    def _cancel_one(self, host: Host, marker: str) -> None:
        target = self.route.targets.get(host.instance_id)
        if target is None:
            return
        try:
            done = self.transport.run_command(target, ssh_run.cancel(marker), timeout=15)
        except (SshUnreachable, paramiko.SSHException, OSError) as exc:
            self._cancel_failed[host.instance_id] = str(exc)
            return
        if not done.ok:
            reason = done.stderr.decode("utf-8", "replace").strip()
            self._cancel_failed[host.instance_id] = reason or f"kill exited {done.exit_code}"

    # the step ----------------------------------------------------------
    def run(self, hosts: list[Host], context: StepContext, settled: Settled) -> FanOutReport:
        report = FanOutReport([], {})
        budget = context.budget
        adopted = [
            (marker, host)
            for marker, owed in settled.adopt.items()
            if marker.startswith(ssh_run.MARKER_PREFIX)
            for host in owed
        ]

        def emit(result: HostResult) -> None:
            report.counts[result.status] = report.counts.get(result.status, 0) + 1
            budget.record(result.status)
            context.on_result(result)

        pending: deque[Host] = deque()
        for host in hosts:  # a host with no route is reported, not sent
            target = self._target(host)
            if isinstance(target, HostResult):
                emit(target)
            else:
                pending.append(host)
        marker = new_marker()
        if pending and not context.cancel.is_set():
            # written ahead for every host at once: a host never started is found
            # absent on the host by a resume, and then sent
            context.recorder.hooks(self.name).sending(list(pending), marker)
        workers = max(1, min(MAX_WORKERS, budget.concurrency, len(pending) + len(adopted)))
        pool = cf.ThreadPoolExecutor(workers, thread_name_prefix="ops-ssh-run")
        killers = cf.ThreadPoolExecutor(4, thread_name_prefix="ops-ssh-cancel")
        futures: dict[cf.Future[HostResult], tuple[Host, str]] = {}
        for old, host in adopted:
            futures[pool.submit(self._collect, host, old)] = (host, old)
        deadline: float | None = None
        abandoned = False
        try:
            while True:
                if context.cancel.is_set() and deadline is None:
                    deadline = time.monotonic() + self.cancel_wait
                    for host, sent in futures.values():
                        self._cancelling.add(host.instance_id)
                        killers.submit(self._cancel_one, host, sent)
                while (
                    pending
                    and not context.cancel.is_set()
                    and not budget.exhausted
                    and len(futures) < budget.concurrency
                ):
                    host = pending.popleft()
                    futures[pool.submit(self._run_one, host, marker)] = (host, marker)
                if not futures:
                    break
                done, _ = cf.wait(futures, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    host, _sent = futures.pop(future)
                    emit(future.result())
                if deadline is not None and time.monotonic() > deadline and futures:
                    for host, _sent in futures.values():
                        why = self._cancel_failed.get(host.instance_id)
                        if why is not None:
                            emit(HostResult(host.instance_id, host.name, CANCEL_FAILED,
                                            stderr=f"cancel failed ({why}); the command "
                                            "may still be running"))  # fmt: skip
                        else:
                            emit(HostResult(host.instance_id, host.name, RUNNING,
                                            stderr="cancel not confirmed within "
                                            f"{self.cancel_wait:.0f}s"))  # fmt: skip
                    futures.clear()
                    abandoned = True
                    break
        finally:
            if abandoned:
                self.transport.close()  # frees the threads still waiting on their channels
            pool.shutdown(wait=not abandoned, cancel_futures=True)
            killers.shutdown(wait=not abandoned, cancel_futures=True)
        stopped = bool(pending) and budget.stopped and not context.cancel.is_set()
        for host in pending:
            emit(HostResult(host.instance_id, host.name, NOT_STARTED))
        report.stopped_by_budget = stopped
        report.interrupted = context.cancel.is_set()
        return report

    def settle(self, in_flight: list[InFlight], context: StepContext) -> Settled:
        """Ask each host whether the command of its marker started there."""
        settled = Settled()
        items = [i for i in in_flight if i.marker and i.marker.startswith(ssh_run.MARKER_PREFIX)]
        settled.unsent.extend(i.host for i in in_flight if i not in items)
        by_id = {i.host.instance_id: i for i in items}
        targets = []
        for item in items:
            target = self.route.targets.get(item.host.instance_id)
            if target is None:  # cannot ask: collecting reports it unreachable
                settled.adopt.setdefault(str(item.marker), []).append(item.host)
            else:
                targets.append(target)

        def started(target: SshTarget) -> bool:
            marker = str(by_id[target.instance_id].marker)
            answer = self.transport.run_command(target, ssh_run.probe(marker), timeout=60)
            if answer.exit_code not in (0, 1):
                raise SshUnreachable(f"probe exited {answer.exit_code}")
            return answer.exit_code == 0

        for instance_id, seen in self.transport.map(targets, started).items():
            item = by_id[instance_id]
            if seen is False:
                settled.unsent.append(item.host)
            else:  # started, or unknown (collecting says which)
                settled.adopt.setdefault(str(item.marker), []).append(item.host)
        return settled


class AutoStep(Step):
    """SSM for the hosts whose agent is Online, SSH for the rest, one budget for both."""

    def __init__(self, name: str, ssm: SsmCommandStep, ssh: SshCommandStep, via_ssh: set[str]):
        self.name = name
        self.ssm = ssm
        self.ssh = ssh
        self.via_ssh = via_ssh

    def close(self) -> None:
        self.ssh.close()

    def run(self, hosts: list[Host], context: StepContext, settled: Settled) -> FanOutReport:
        prefix = ssh_run.MARKER_PREFIX
        ssm_adopt = {k: v for k, v in settled.adopt.items() if not k.startswith(prefix)}
        ssh_adopt = {k: v for k, v in settled.adopt.items() if k.startswith(prefix)}
        over_ssm = [h for h in hosts if h.instance_id not in self.via_ssh]
        over_ssh = [h for h in hosts if h.instance_id in self.via_ssh]
        report = FanOutReport([], {})
        if over_ssm or ssm_adopt:
            report.add(self.ssm.run(over_ssm, context, Settled(ssm_adopt, [], settled.since)))
        if over_ssh or ssh_adopt:
            report.add(self.ssh.run(over_ssh, context, Settled(ssh_adopt)))
        return report

    def settle(self, in_flight: list[InFlight], context: StepContext) -> Settled:
        prefix = ssh_run.MARKER_PREFIX
        by_ssh = [i for i in in_flight if i.marker and i.marker.startswith(prefix)]
        by_ssm = [i for i in in_flight if i not in by_ssh]
        settled = self.ssm.settle(by_ssm, context) if by_ssm else Settled()
        if by_ssh:
            more = self.ssh.settle(by_ssh, context)
            settled.adopt.update(more.adopt)
            settled.unsent.extend(more.unsent)
        return settled
