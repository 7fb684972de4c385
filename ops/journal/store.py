"""SQLite run journal in WAL mode.

Write-ahead: a run row exists before anything is sent, and each host step is
committed as `started` before its action and updated after, so a crashed run
can be resumed from here without doing a host twice or skipping one.
Every write is its own short IMMEDIATE transaction: several processes can
share one journal, and a SIGKILL at any point leaves every committed row.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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

RUNNING = "running"
STARTED = "started"


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "operator": self.operator,
            "arguments": self.arguments,
            "environment": self.environment,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "status": self.status,
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
        }


def default_path() -> Path:
    return state_dir() / "journal.sqlite3"


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
        )
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (id, kind, operator, arguments, environment, started_at, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.kind,
                    run.operator,
                    json.dumps(arguments, sort_keys=True, default=str),
                    environment,
                    run.started_at,
                    RUNNING,
                ),
            )
        return run

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
                " AND status != ? ORDER BY id",
                (run_id, phase, STARTED),
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
    )


def open_journal(path: Path | None = None) -> Journal:
    return Journal(path or default_path())
