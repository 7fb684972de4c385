"""Kill `ops` with SIGKILL at a chosen moment, then `ops runs resume` the run it left.

The crash tests (ops run, ops docker install, ops playbook) differ only in
the command, the moment of the kill and what they check on the hosts after;
the kill and the resume are this one helper, so each asserts the same things
about them: a run was recorded, a run that finished before the kill refuses
a resume (exit 2), and one that did not is `abandoned` and resumes to exit 0.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ops.journal import Journal, Run
from tests.support.sandbox import REPO, SandboxSession, ops_command

Moment = Callable[[subprocess.Popen[str], str], None]  # (the ops process, its run id)


def lines_seen(proc: subprocess.Popen[str], count: int, timeout: float) -> int:
    """Wait until `count` result lines were printed (or the process ended): a kill's moment."""
    assert proc.stdout is not None
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < count and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            if not proc.stdout.readline():
                break
            seen += 1
    return seen


@dataclass
class Trial:
    run_id: str
    killed: bool  # the process was still running when the kill came
    before: Run  # the run as the journal had it right after the kill
    resume: subprocess.CompletedProcess[str]  # `ops runs resume` (or its refusal)

    @property
    def resumed(self) -> bool:
        return self.before.status != "succeeded"


def new_run(
    journal: Journal, kind: str, known: set[str], proc: subprocess.Popen[str], timeout: float = 120
) -> str:
    """The id of the run the process just recorded (its first journal write)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [r.id for r in journal.list_runs(kind=kind) if r.id not in known]
        if fresh:
            return fresh[0]
        assert proc.poll() is None, f"ops ended (exit {proc.returncode}) before it recorded a run"
        time.sleep(0.02)
    raise AssertionError(f"no {kind} run was recorded within {timeout:.0f} s")


def kill_then_resume(
    sandbox: SandboxSession,
    journal: Journal,
    kind: str,
    argv: Sequence[str],
    moment: Moment,
    *,
    resume_args: Sequence[str] = (),
    capture_stdout: bool = False,
    process_group: bool = False,
    resume_timeout: float = 300,
    on_killed: Callable[[str], None] | None = None,
) -> Trial:
    """Start `ops ARGV`, wait for `moment`, SIGKILL it if still running, then resume.

    `process_group` kills what ops started too (ansible-runner over SSH), as
    a machine that dies would; `capture_stdout` hands `moment` a readable stdout;
    `on_killed(run_id)` looks at what the dead process left, before the resume.
    """
    known = {r.id for r in journal.list_runs(limit=10_000, kind=kind)}
    proc = subprocess.Popen(
        [*ops_command(), *argv],
        env=sandbox.process_env,
        cwd=REPO,
        text=True,
        start_new_session=process_group,
        stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed = False
    try:
        run_id = new_run(journal, kind, known, proc)
        moment(proc, run_id)
        if proc.poll() is None:
            _kill(proc, process_group)
            killed = True
    finally:
        if proc.poll() is None:
            _kill(proc, process_group)
        proc.communicate(timeout=60)
    before = journal.get_run(run_id)
    assert before is not None
    if on_killed is not None:
        on_killed(run_id)
    if before.status == "succeeded":
        again = sandbox.ops("runs", "resume", run_id, "--yes")
        assert again.returncode == 2 and "already succeeded" in again.stderr, again.stderr
    else:
        assert before.state == "abandoned", before
        again = sandbox.ops("runs", "resume", run_id, *resume_args, "--yes",
                            timeout=resume_timeout)  # fmt: skip
        assert again.returncode == 0, (run_id, again.stdout[-2000:], again.stderr[-2000:])
    return Trial(run_id, killed, before, again)


def _kill(proc: subprocess.Popen[str], process_group: bool) -> None:
    if process_group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        os.kill(proc.pid, signal.SIGKILL)


def wait_for_step(journal: Journal, run_id: str, fact: str, proc: subprocess.Popen[str]) -> None:
    """Until a step of the run has `fact` set (marker, command_id, ended_at) or ops ended."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None or any(getattr(s, fact) for s in journal.steps(run_id)):
            return
        time.sleep(0.02)
    raise AssertionError(f"the journal did not show {fact} within 120 s")
