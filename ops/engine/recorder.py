"""Journal writes for one run, in the order resume relies on.

Intents are committed before anything is sent, a send's marker before
SendCommand and its command id as soon as SendCommand returns: these are few
(one per batch) and written at once. Results are many, so they are buffered
and flushed by a background thread at most FLUSH_S apart: a SIGKILL loses at
most that much, and resume gets it back from SSM by the command id. The same
thread beats the run's heartbeat, which is what tells a live run from an
abandoned one.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from typing import Any

from ops.fleet.discovery import Host
from ops.journal.store import HEARTBEAT_S, Journal
from ops.transports.ssm import HostResult

FLUSH_S = 0.5  # results reach the journal at most this late (the contract is 1 s)
# Statuses whose stderr ops wrote itself (never the host's output): kept as the reason.
_OWN_WORDS = frozenset(
    {"CancelFailed", "Running", "Undeliverable", "Unreachable", "NotStarted", "Unknown"}
)


class RunRecorder:
    """Writes one run's steps; usable from the scheduler's sender threads."""

    def __init__(self, journal: Journal, run_id: str, *, record_output: bool = False) -> None:
        self.journal = journal
        self.run_id = run_id
        self.record_output = record_output
        self._steps: dict[tuple[str, str], int] = {}  # (step name, host) -> step row id
        self._buffer: list[tuple[str, str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # lifecycle ---------------------------------------------------------
    def __enter__(self) -> RunRecorder:
        self._thread = threading.Thread(target=self._beat, name="ops-journal", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def _beat(self) -> None:
        last_beat = time.monotonic()
        while not self._stop.wait(FLUSH_S):
            self.flush()
            if time.monotonic() - last_beat >= HEARTBEAT_S:
                self.journal.heartbeat(self.run_id)
                last_beat = time.monotonic()

    # write-ahead -------------------------------------------------------
    def intend(self, step: str, hosts: Sequence[Host], wave: int | None = None) -> None:
        """Each host's step as intended, durable before any of them is sent."""
        fresh = [h for h in hosts if (step, h.instance_id) not in self._steps]
        if not fresh:
            return
        ids = self.journal.intend(
            self.run_id, step, [(h.instance_id, {"name": h.name}) for h in fresh], wave
        )
        with self._lock:
            for host, step_id in zip(fresh, ids, strict=True):
                self._steps[(step, host.instance_id)] = step_id

    def known(self, step: str, host: str, step_id: int) -> None:
        """A step row an earlier process wrote (resume)."""
        with self._lock:
            self._steps[(step, host)] = step_id

    def started(self, step: str, hosts: Sequence[Host]) -> None:
        """Handed to a transport that keeps no record to settle by (SSH): a resume re-runs them."""
        self.journal.started(self._ids(step, hosts))

    def hooks(self, step: str) -> StepHooks:
        return StepHooks(self, step)

    def _ids(self, step: str, hosts: Sequence[Host]) -> list[int]:
        with self._lock:
            return [self._steps[(step, h.instance_id)] for h in hosts]

    # results -----------------------------------------------------------
    def result(self, step: str, result: HostResult) -> None:
        digest = hashlib.sha256()
        digest.update(result.stdout.encode("utf-8", "replace"))
        digest.update(b"\0")
        digest.update(result.stderr.encode("utf-8", "replace"))
        detail: dict[str, Any] = {
            "name": result.name,
            "command_id": result.command_id,
            "exit_code": result.exit_code,
            "output_sha256": digest.hexdigest(),
            "output_truncated": result.output_truncated,
            "duration_s": result.duration_s,
        }
        if self.record_output:
            detail["stdout"] = result.stdout
            detail["stderr"] = result.stderr
        elif result.status in _OWN_WORDS and result.stderr:
            detail["reason"] = result.stderr[:300]  # ops' own words, not the host's output
        with self._lock:
            self._buffer.append((result.instance_id, step, result.status, detail))

    def flush(self) -> None:
        with self._lock:
            taken, self._buffer = self._buffer, []
        by_step: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
        for host, step, status, detail in taken:
            by_step.setdefault(step, []).append((host, status, detail))
        for step, rows in by_step.items():
            self.journal.record_steps(self.run_id, step, rows)


class StepHooks:
    """The scheduler's SendHooks for one step of one run."""

    def __init__(self, recorder: RunRecorder, step: str) -> None:
        self.recorder = recorder
        self.step = step

    def sending(self, hosts: list[Host], marker: str) -> None:
        self.recorder.journal.sending(self.recorder._ids(self.step, hosts), marker)

    def sent(self, hosts: list[Host], command_id: str) -> None:
        self.recorder.journal.sent(self.recorder._ids(self.step, hosts), command_id)

    def unsent(self, hosts: list[Host]) -> None:
        self.recorder.journal.unsent(self.recorder._ids(self.step, hosts))
