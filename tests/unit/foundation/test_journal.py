"""The run journal: write-ahead order, resume facts, concurrent writers, and SIGKILL survival."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli.main import cli
from ops.journal import Journal, open_journal

WRITER = r"""
import sys
from pathlib import Path
from ops.journal import Journal

path, run_id, host_prefix, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
journal = Journal(Path(path))
if run_id == "new":
    run_id = journal.begin_run("crash-test", {"n": count}, "test").id
    print(f"run {run_id}", flush=True)
for i in range(count):
    step = journal.step_started(run_id, f"{host_prefix}-{i}", "apply", {"i": i})
    print(f"started {step}", flush=True)
    journal.step_finished(step, "ok", {"i": i, "payload": "x" * (i % 50)})
    print(f"finished {step}", flush=True)
"""


def test_write_ahead_order_and_resume_facts(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as journal:
        run = journal.begin_run("patch", {"target": "role=web"}, "sandbox")
        assert journal.get_run(run.id) is not None  # durable before anything is sent
        with journal.step(run.id, "i-1", "patch") as outcome:
            # the intent is visible while the action runs
            during = journal.steps(run.id)
            assert [(s.host, s.status) for s in during] == [("i-1", "started")]
            outcome["status"] = "ok"
            outcome["rc"] = 0
        with pytest.raises(RuntimeError), journal.step(run.id, "i-2", "patch"):
            raise RuntimeError("ssh lost")
        journal.step_started(run.id, "i-3", "patch")  # crashed mid-action: never finished
        finished = journal.finished_hosts(run.id, "patch")
        assert finished == {"i-1": "ok", "i-2": "error"}
        steps = {s.host: s for s in journal.steps(run.id)}
        assert steps["i-1"].detail == {"rc": 0}
        assert "ssh lost" in steps["i-2"].detail["error"]
        assert steps["i-3"].status == "started" and steps["i-3"].ended_at is None
        journal.end_run(run.id, "failed")
        ended = journal.get_run(run.id)
        assert ended is not None and ended.status == "failed" and ended.ended_at is not None


def test_journal_uses_wal(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3"):
        mode = sqlite3.connect(tmp_path / "j.sqlite3").execute("PRAGMA journal_mode").fetchone()
    assert mode[0] == "wal"


def _writer(path: Path, run_id: str, prefix: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), run_id, prefix, str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_concurrent_writers_do_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as journal:
        run_id = journal.begin_run("run", {}, "test").id
    procs = [_writer(path, run_id, f"w{n}", 150) for n in range(4)]
    # a reader in this process at the same time
    with Journal(path) as reader:
        while any(p.poll() is None for p in procs):
            reader.steps(run_id)
            time.sleep(0.01)
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    with Journal(path) as journal:
        steps = journal.steps(run_id)
        assert len(steps) == 600
        assert all(s.status == "ok" for s in steps)
        assert len({s.host for s in steps}) == 600
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_sigkill_during_writes_keeps_every_committed_record(tmp_path: Path) -> None:
    rng = random.Random(20261129)
    for attempt in range(8):
        path = tmp_path / f"crash-{attempt}.sqlite3"
        proc = _writer(path, "new", "h", 100_000)
        assert proc.stdout is not None
        run_line = proc.stdout.readline()
        assert run_line.startswith("run ")
        run_id = run_line.split()[1]
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        started = {int(line.split()[1]) for line in rest.splitlines() if line.startswith("start")}
        finished = {int(line.split()[1]) for line in rest.splitlines() if line.startswith("fin")}
        assert finished, "the writer was killed before it committed anything; raise the delay"
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with Journal(path) as journal:
            steps = {s.id: s for s in journal.steps(run_id)}
            assert journal.get_run(run_id) is not None
        for step_id in started:
            assert step_id in steps, f"attempt {attempt}: started step {step_id} lost"
        for step_id in finished:
            assert steps[step_id].status == "ok", f"attempt {attempt}: result {step_id} lost"


def test_runs_commands(isolated_state: Path) -> None:
    with open_journal() as journal:
        run = journal.begin_run("run", {"command": "uptime"}, "sandbox")
        journal.record_steps(run.id, "command", [("i-1", "Success", {"exit_code": 0})])
        journal.end_run(run.id, "succeeded")
    runner = CliRunner()
    listed = runner.invoke(cli, ["runs", "list", "--output", "json"])
    assert listed.exit_code == 0, listed.output
    assert [r["id"] for r in json.loads(listed.output)] == [run.id]
    shown = runner.invoke(cli, ["runs", "show", run.id])
    assert shown.exit_code == 0 and "i-1" in shown.output and "Success" in shown.output
    exported = runner.invoke(cli, ["runs", "export", run.id])
    document = json.loads(exported.output)
    assert document["run"]["arguments"] == {"command": "uptime"}
    assert document["steps"][0]["detail"] == {"exit_code": 0}
    missing = runner.invoke(cli, ["runs", "show", "nope"])
    assert missing.exit_code == 2
    assert "no run 'nope'" in missing.output
