"""`ops docker install` killed with SIGKILL at seeded random moments, then resumed: one install.

On the session sandbox's two Debian hosts, over SSM: each trial starts from
no Docker, starts the install, kills `ops` at a moment drawn from a seeded
generator (before the send, between the journalled marker and SendCommand's
answer, while the pull script installs, after a result), and resumes the
run. Whatever the moment, dpkg's log on each host gains exactly one
`install docker.io`, and the journal shows both hosts finished.

The install is real (apt, dpkg, dockerd started by the role); to keep ten
trials lean the package is downloaded into each host's apt cache once
first, and ansible-core (which the pull script would install on first use)
is installed then too. The hosts are put back without Docker at the end.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ops.journal import Journal
from tests.support.crash import kill_then_resume, wait_for_step
from tests.support.docker_hosts import RESET, in_host
from tests.support.sandbox import REPO, SandboxSession, ops_command

TRIALS = 10
BATCHES = 5  # the trials in five tests, so each fits the per-test timeout on a busy machine
SEED = 20261129
TALLY: dict[int, tuple[int, int]] = {}  # batch -> (killed, resumed)
INSTALLS = "grep -c ' install docker\\.io[: ]' /var/log/dpkg.log || true"
PRESEED = (
    "export DEBIAN_FRONTEND=noninteractive;"
    " { ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -q; } >/dev/null 2>&1;"
    " { command -v ansible-playbook >/dev/null 2>&1"
    " || apt-get install -y -q --no-install-recommends ansible-core >/dev/null; }"
    " && apt-get install -y -q --no-install-recommends --download-only docker.io >/dev/null"
)
# Where to aim the kill: the journal fact to wait for, then a seeded delay of up to this
# many seconds (trial n takes moment n % 5): before the send, around SendCommand, while
# the hosts install, after the first host's result.
MOMENTS = [
    ("recorded", 0.3),
    ("marker", 0.2),
    ("command_id", 0.5),
    ("command_id", 20.0),
    ("ended_at", 1.0),
]


def debian_hosts(sandbox: SandboxSession) -> list[dict[str, Any]]:
    hosts: list[dict[str, Any]] = sandbox.status["hosts"]  # type: ignore[assignment]
    return sorted((h for h in hosts if h["platform"] == "debian"), key=lambda h: h["name"])


def installs(host: dict[str, Any]) -> int:
    return int(in_host(host, INSTALLS).stdout.strip() or 0)


def reset(hosts: list[dict[str, Any]]) -> None:
    for host in hosts:
        done = in_host(host, RESET)
        assert in_host(host, "command -v dockerd").stdout == "", (host["name"], done.stderr)


@pytest.fixture(scope="module")
def debian(sandbox_session: SandboxSession) -> Iterator[list[dict[str, Any]]]:
    hosts = debian_hosts(sandbox_session)
    assert len(hosts) == 2
    for host in hosts:
        seeded = in_host(host, PRESEED, timeout=300)
        assert seeded.returncode == 0, (host["name"], seeded.stderr[-2000:])
    reset(hosts)
    try:
        yield hosts
    finally:
        reset(hosts)  # later tests on the shared sandbox expect no Docker here


def wait_for(
    journal: Journal, known: set[str], proc: subprocess.Popen[str], fact: str
) -> str | None:
    """The new run's id once the journal holds `fact` for it (None if ops ended first)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        fresh = [r.id for r in journal.list_runs(kind="docker") if r.id not in known]
        if fresh:
            if fact == "recorded":
                return fresh[0]
            steps = journal.steps(fresh[0])
            if any(getattr(s, fact) for s in steps) or proc.poll() is not None:
                return fresh[0]
        elif proc.poll() is not None:
            return None
        time.sleep(0.02)
    raise AssertionError(f"the journal did not show {fact} within 120 s")


@pytest.mark.parametrize("batch", range(BATCHES))
def test_sigkill_at_random_moments_then_resume_installs_docker_once_per_host(
    sandbox: SandboxSession, debian: list[dict[str, Any]], batch: int
) -> None:
    names = [arg for h in debian for arg in ("--name", h["name"])]
    ids = {h["instance_id"] for h in debian}
    trials = range(batch * TRIALS // BATCHES, (batch + 1) * TRIALS // BATCHES)
    journal = Journal(sandbox.state_dir / "journal.sqlite3")
    killed = resumed = 0
    started = time.monotonic()
    try:
        for trial in trials:
            reset(debian)
            before = {h["name"]: installs(h) for h in debian}
            fact, spread = MOMENTS[trial % len(MOMENTS)]
            delay = random.Random(SEED + trial).uniform(0.0, spread)

            def moment(proc: subprocess.Popen[str], run_id: str, fact: str = fact,
                       delay: float = delay) -> None:  # fmt: skip
                if fact != "recorded":
                    wait_for_step(journal, run_id, fact, proc)
                time.sleep(delay)

            argv = ["--yes", "--output", "json", "docker", "install", "--via", "ssm", *names]
            done = kill_then_resume(sandbox, journal, "docker", argv, moment,
                                    resume_args=("--output", "json"))  # fmt: skip
            run_id, run = done.run_id, done.before
            killed += done.killed
            resumed += done.resumed
            after = {h["name"]: installs(h) for h in debian}
            assert {n: after[n] - before[n] for n in after} == {n: 1 for n in after}, (
                trial, fact, round(delay, 2))  # fmt: skip
            for host in debian:
                assert in_host(host, "pgrep -c -x dockerd").stdout.strip() == "1", host["name"]
            finished = journal.get_run(run_id)
            assert finished is not None and finished.status == "succeeded", (trial, finished)
            finals = [
                (s.host, s.status)
                for s in journal.steps(run_id)
                if s.status not in ("intended", "started")
            ]
            assert sorted(finals) == sorted((i, "Success") for i in ids), (trial, finals)
            print(f"trial {trial}: {fact}+{delay:.2f}s, status at kill {run.status}")
    finally:
        journal.close()
    print(
        f"docker crash trials {trials.start}-{trials.stop - 1}: killed {killed}, "
        f"resumed {resumed}, {time.monotonic() - started:.1f} s"
    )
    TALLY[batch] = (killed, resumed)
    if len(TALLY) == BATCHES:  # the whole set ran: most trials must have died mid-run
        assert sum(k for k, _ in TALLY.values()) >= TRIALS - 2, TALLY
        assert sum(r for _, r in TALLY.values()) >= TRIALS // 2, TALLY


def test_over_ssh_a_killed_install_resumes_host_by_host(
    sandbox: SandboxSession, debian: list[dict[str, Any]]
) -> None:
    """--forks 1 pushes one host at a time: killed (with its ansible children) once the
    first host's result is journalled, the resume skips that host and pushes the other."""
    reset(debian)
    names = [arg for h in debian for arg in ("--name", h["name"])]
    journal = Journal(sandbox.state_dir / "journal.sqlite3")
    before = {h["instance_id"]: installs(h) for h in debian}
    known = {r.id for r in journal.list_runs(limit=10_000, kind="docker")}
    proc = subprocess.Popen(
        [*ops_command(), "--yes", "--output", "json", "docker", "install", "--via", "ssh",
         "--forks", "1", *names],
        env=sandbox.process_env, cwd=REPO, text=True, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        run_id = wait_for(journal, known, proc, "ended_at")
        assert run_id is not None and proc.poll() is None, "ops ended before the kill"
        os.killpg(proc.pid, signal.SIGKILL)  # ops and the ansible it started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    rows = [s for s in journal.steps(run_id) if s.phase == "docker_install"]
    first = {s.host for s in rows if s.status == "Success"}
    assert len(first) == 1, rows
    done = sandbox.ops("--output", "json", "runs", "resume", run_id, "--yes", timeout=300)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    report = {h["instance_id"]: h["result"] for h in json.loads(done.stdout)["hosts"]}
    [(skipped, result)] = [(i, r) for i, r in report.items() if i in first]
    assert result == "done earlier", report
    rows = [s for s in journal.steps(run_id) if s.phase == "docker_install"]
    # the finished host has its one result; the other was pushed again and finished
    assert sum(1 for s in rows if s.host == skipped and s.status == "Success") == 1
    assert {s.host for s in rows if s.status == "Success"} == set(before)
    for host in debian:
        assert installs(host) - before[host["instance_id"]] == 1, host["name"]
        assert in_host(host, "pgrep -c -x dockerd").stdout.strip() == "1", host["name"]
    journal.close()
