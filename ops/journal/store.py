"""SQLite run journal in WAL mode.

Write-ahead: a run row exists before anything is sent, and each host step is
committed as `started` before its action and updated after, so a crashed run
can be resumed from here without doing a host twice or skipping one.
Every write is its own short IMMEDIATE transaction: several processes can
share one journal, and a SIGKILL at any point leaves every committed row.

A step row goes `intended` (before anything is sent) -> `started` (with the
send's marker, committed before SendCommand) -> `started` with the command id
(as soon as SendCommand returns); its result is a row of its own. A run holds
the pid, host and last heartbeat of the process that drives it, so a run
whose process died reads as `abandoned`, and a live one cannot be resumed
from a second process.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ops.config import state_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    operator TEXT NOT NULL,
    arguments TEXT NOT NULL,
    environment TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS host_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    host TEXT NOT NULL,
    phase TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS host_steps_run ON host_steps(run_id, host, phase);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
"""

# Columns added after the first release: an older journal gains them on open.
MIGRATIONS = {
    "runs": {"pid": "INTEGER", "hostname": "TEXT", "heartbeat_at": "REAL"},
    "host_steps": {"wave": "INTEGER", "marker": "TEXT", "command_id": "TEXT", "sent_at": "REAL"},
}

RUNNING = "running"
ABANDONED = "abandoned"
INTENDED = "intended"
STARTED = "started"
FINISHED_RUN = frozenset({"succeeded", "failed", "stopped"})
HEARTBEAT_S = 5.0  # how often a live run says so
STALE_S = 30.0  # a heartbeat older than this: the process is gone (or hung)


@dataclass(frozen=True)
class Run:
    id: str
    kind: str
    operator: str
    arguments: dict[str, Any]
    environment: str
    started_at: float
    ended_at: float | None
    status: str
    pid: int | None = None
    hostname: str | None = None
    heartbeat_at: float | None = None

    @property
    def held(self) -> bool:
        """A live process drives this run: running, heartbeat fresh, and (on this
        host) its pid still alive."""
        if self.status != RUNNING:
            return False
        last = self.heartbeat_at if self.heartbeat_at is not None else self.started_at
        if time.time() - last > STALE_S:
            return False
        if self.hostname == socket.gethostname() and self.pid:
            return pid_alive(self.pid)
        return self.hostname is not None

    @property
    def state(self) -> str:
        """The status an operator should read: `abandoned` for a running run nobody drives."""
        return ABANDONED if self.status == RUNNING and not self.held else self.status

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "operator": self.operator,
            "arguments": self.arguments,
            "environment": self.environment,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "status": self.state,
            "pid": self.pid,
            "hostname": self.hostname,
            "heartbeat_at": self.heartbeat_at,
        }


@dataclass(frozen=True)
class HostStep:
    id: int
    run_id: str
    host: str
    phase: str
    status: str
    started_at: float
    ended_at: float | None
    detail: dict[str, Any]
    wave: int | None = None
    marker: str | None = None
    command_id: str | None = None
    sent_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "host": self.host,
            "phase": self.phase,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "detail": self.detail,
            "wave": self.wave,
            "marker": self.marker,
            "command_id": self.command_id,
            "sent_at": self.sent_at,
        }


def default_path() -> Path:
    return state_dir() / "journal.sqlite3"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has that pid and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


class RunHeld(Exception):
    """Another live process drives this run."""


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


class Journal:
    """One connection per Journal, shared by threads under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # 0600 before SQLite opens it; SQLite gives its -wal and -shm files the same mode
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout = 30000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._create_schema()

    def _create_schema(self) -> None:
        with self._write() as db:
            for statement in filter(None, (s.strip() for s in SCHEMA.split(";"))):
                db.execute(statement)
            for table, columns in MIGRATIONS.items():
                have = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
                for column, kind in columns.items():
                    if column not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # runs ---------------------------------------------------------------
    def begin_run(self, kind: str, arguments: dict[str, Any], environment: str) -> Run:
        """Record the intent of a run; durable when this returns."""
        run = Run(
            id=time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8],
            kind=kind,
            operator=_operator(),
            arguments=arguments,
            environment=environment,
            started_at=time.time(),
            ended_at=None,
            status=RUNNING,
            pid=os.getpid(),
            hostname=socket.gethostname(),
        )
        run = replace(run, heartbeat_at=run.started_at)
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (id, kind, operator, arguments, environment, started_at, status,"
                " pid, hostname, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.kind,
                    run.operator,
                    json.dumps(arguments, sort_keys=True, default=str),
                    environment,
                    run.started_at,
                    RUNNING,
                    run.pid,
                    run.hostname,
                    run.heartbeat_at,
                ),
            )
        return run

    def heartbeat(self, run_id: str) -> None:
        """This process still drives the run (see Run.held)."""
        with self._write() as db:
            db.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (time.time(), run_id))

    def claim(self, run_id: str) -> Run:
        """Take over a run nobody drives (to resume it); RunHeld if a live process does.

        Read and written in one IMMEDIATE transaction, so two resumes racing
        for the same run cannot both win.
        """
        with self._write() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            run = _run(row)
            if run.held:
                raise RunHeld(run_id)
            now = time.time()
            db.execute(
                "UPDATE runs SET status = ?, ended_at = NULL, pid = ?, hostname = ?,"
                " heartbeat_at = ? WHERE id = ?",
                (RUNNING, os.getpid(), socket.gethostname(), now, run_id),
            )
        return replace(
            run,
            status=RUNNING,
            ended_at=None,
            pid=os.getpid(),
            hostname=socket.gethostname(),
            heartbeat_at=now,
        )

    def end_run(self, run_id: str, status: str, *, arguments: dict[str, Any] | None = None) -> None:
        """Close a run; `arguments` replaces what begin_run recorded when the run
        learnt something on the way (how many hosts a streamed listing found)."""
        with self._write() as db:
            if arguments is not None:
                db.execute(
                    "UPDATE runs SET arguments = ? WHERE id = ?",
                    (json.dumps(arguments, sort_keys=True, default=str), run_id),
                )
            db.execute(
                "UPDATE runs SET status = ?, ended_at = ? WHERE id = ?",
                (status, time.time(), run_id),
            )

    def get_run(self, run_id: str) -> Run | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run(row) if row else None

    def list_runs(self, limit: int = 50, kind: str | None = None) -> list[Run]:
        query = "SELECT * FROM runs"
        params: list[Any] = []
        if kind:
            query += " WHERE kind = ?"
            params.append(kind)
        query += " ORDER BY started_at DESC, id DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [_run(row) for row in rows]

    # host steps ---------------------------------------------------------
    def step_started(
        self, run_id: str, host: str, phase: str, detail: dict[str, Any] | None = None
    ) -> int:
        """Record the intent to act on a host; returns the step id to finish."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO host_steps (run_id, host, phase, status, started_at, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, host, phase, STARTED, time.time(), json.dumps(detail or {}, default=str)),
            )
            return int(cursor.lastrowid or 0)

    def step_finished(
        self, step_id: int, status: str, detail: dict[str, Any] | None = None
    ) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE host_steps SET status = ?, ended_at = ?, detail = ? WHERE id = ?",
                (status, time.time(), json.dumps(detail or {}, default=str), step_id),
            )

    def record_steps(
        self, run_id: str, phase: str, results: list[tuple[str, str, dict[str, Any]]]
    ) -> None:
        """Record many finished host steps in one transaction (fan-out results)."""
        now = time.time()
        with self._write() as db:
            db.executemany(
                "INSERT INTO host_steps"
                " (run_id, host, phase, status, started_at, ended_at, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (run_id, host, phase, status, now, now, json.dumps(detail, default=str))
                    for host, status, detail in results
                ],
            )

    def intend(
        self,
        run_id: str,
        phase: str,
        hosts: list[tuple[str, dict[str, Any]]],
        wave: int | None = None,
    ) -> list[int]:
        """Record steps as intended, before anything is sent; returns their ids in order."""
        now = time.time()
        ids: list[int] = []
        with self._write() as db:
            for host, detail in hosts:
                cursor = db.execute(
                    "INSERT INTO host_steps (run_id, host, phase, status, started_at, detail, wave)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, host, phase, INTENDED, now, json.dumps(detail, default=str), wave),
                )
                ids.append(int(cursor.lastrowid or 0))
        return ids

    def started(self, step_ids: list[int]) -> None:
        """Intended steps handed to a transport that keeps no record to settle them by."""
        now = time.time()
        with self._write() as db:
            db.executemany(
                "UPDATE host_steps SET status = ?, sent_at = ? WHERE id = ?",
                [(STARTED, now, step_id) for step_id in step_ids],
            )

    def sending(self, step_ids: list[int], marker: str) -> None:
        """The send's marker, committed before SendCommand: a crash after this may
        have sent, and resume looks the marker up before sending again."""
        now = time.time()
        with self._write() as db:
            db.executemany(
                "UPDATE host_steps SET status = ?, marker = ?, sent_at = ? WHERE id = ?",
                [(STARTED, marker, now, step_id) for step_id in step_ids],
            )

    def sent(self, step_ids: list[int], command_id: str) -> None:
        """The command id, as soon as SendCommand returned it."""
        with self._write() as db:
            db.executemany(
                "UPDATE host_steps SET command_id = ? WHERE id = ?",
                [(command_id, step_id) for step_id in step_ids],
            )

    def unsent(self, step_ids: list[int]) -> None:
        """A send that SSM refused outright: the steps go back to intended."""
        with self._write() as db:
            db.executemany(
                "UPDATE host_steps SET status = ?, marker = NULL, sent_at = NULL WHERE id = ?",
                [(INTENDED, step_id) for step_id in step_ids],
            )

    @contextlib.contextmanager
    def step(self, run_id: str, host: str, phase: str) -> Iterator[dict[str, Any]]:
        """Write-ahead around one action: `started` before, the result after.

        The body fills the yielded dict; `status` in it becomes the step status
        (default `ok`). An exception records `error` and propagates.
        """
        step_id = self.step_started(run_id, host, phase)
        outcome: dict[str, Any] = {}
        try:
            yield outcome
        except BaseException as exc:
            self.step_finished(step_id, "error", {"error": f"{type(exc).__name__}: {exc}"})
            raise
        status = str(outcome.pop("status", "ok"))
        self.step_finished(step_id, status, outcome)

    def steps(self, run_id: str) -> list[HostStep]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM host_steps WHERE run_id = ? ORDER BY id", (run_id,)
            ).fetchall()
        return [_step(row) for row in rows]

    def finished_hosts(self, run_id: str, phase: str) -> dict[str, str]:
        """Hosts whose step in this phase has ended, with their last status (for resume)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT host, status FROM host_steps WHERE run_id = ? AND phase = ?"
                " AND status NOT IN (?, ?) ORDER BY id",
                (run_id, phase, STARTED, INTENDED),
            ).fetchall()
        return {row["host"]: row["status"] for row in rows}

    def export(self, run_id: str) -> dict[str, Any] | None:
        run = self.get_run(run_id)
        if run is None:
            return None
        return {"run": run.as_dict(), "steps": [s.as_dict() for s in self.steps(run_id)]}


def _run(row: sqlite3.Row) -> Run:
    return Run(
        id=row["id"],
        kind=row["kind"],
        operator=row["operator"],
        arguments=json.loads(row["arguments"]),
        environment=row["environment"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        status=row["status"],
        pid=row["pid"],
        hostname=row["hostname"],
        heartbeat_at=row["heartbeat_at"],
    )


def _step(row: sqlite3.Row) -> HostStep:
    return HostStep(
        id=row["id"],
        run_id=row["run_id"],
        host=row["host"],
        phase=row["phase"],
        status=row["status"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        detail=json.loads(row["detail"]),
        wave=row["wave"],
        marker=row["marker"],
        command_id=row["command_id"],
        sent_at=row["sent_at"],
    )


def open_journal(path: Path | None = None) -> Journal:
    return Journal(path or default_path())
