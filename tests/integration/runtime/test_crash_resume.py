"""`ops run` killed with SIGKILL at seeded random moments, then `ops runs resume`: once per host.

The command appends one line to a file of its own per trial on each of the
session sandbox's container hosts, one host at a time (--concurrency 1), so
a kill lands before a send, between the journalled marker and SendCommand,
between SendCommand and its recorded command id, while a host runs, or
between a result and its flush. Whatever the moment, after the resume every
host's file holds exactly one line and the journal shows every host done.
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from typing import Any

from ops.journal import Journal
from tests.support.crash import kill_then_resume, lines_seen
from tests.support.sandbox import SandboxSession

TRIALS = 10
SEED = 20261129


def _file_lines(container: str, path: str) -> list[str]:
    done = subprocess.run(
        ["docker", "exec", container, "sh", "-c", f"cat {path} 2>/dev/null || true"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


def test_sigkill_at_random_moments_then_resume_runs_every_host_once(
    sandbox: SandboxSession,
) -> None:
    hosts: list[dict[str, Any]] = sandbox.status["hosts"]  # type: ignore[assignment]
    assert len(hosts) == 4
    targets = [arg for h in hosts for arg in ("--instance", h["instance_id"])]
    rng = random.Random(SEED)
    token = uuid.uuid4().hex[:8]
    journal = Journal(sandbox.state_dir / "journal.sqlite3")
    killed = resumed = 0
    for trial in range(TRIALS):
        path = f"/tmp/ops-crash-{token}-{trial}"

        def moment(proc: subprocess.Popen[str], _run_id: str) -> None:
            # after 0-3 hosts have reported, plus a seeded delay
            lines_seen(proc, rng.randint(0, 3), timeout=60)
            time.sleep(rng.uniform(0.0, 0.8))

        argv = ["--yes", "run", *targets, "--concurrency", "1", "--output", "jsonl",
                "--", f"echo {trial} >> {path}"]  # fmt: skip
        done = kill_then_resume(sandbox, journal, "run", argv, moment,
                                resume_args=("--output", "jsonl"), capture_stdout=True)  # fmt: skip
        run_id = done.run_id
        killed += done.killed
        resumed += done.resumed
        for host in hosts:
            assert _file_lines(host["container"], path) == [str(trial)], (trial, host["name"])
        run = journal.get_run(run_id)
        assert run is not None and run.status == "succeeded", (trial, run)
        finals = [
            (s.host, s.status)
            for s in journal.steps(run_id)
            if s.status not in ("intended", "started")
        ]
        assert sorted(finals) == sorted((h["instance_id"], "Success") for h in hosts), trial
    print(f"crash trials: {TRIALS}, killed mid-run: {killed}, resumed: {resumed}")
    assert killed >= TRIALS - 2 and resumed >= TRIALS // 2, (killed, resumed)
    journal.close()
