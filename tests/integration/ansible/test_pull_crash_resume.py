"""`ops playbook --via ssm` SIGKILLed at seeded random moments, then resumed: once per host.

A playbook that appends one line to a file of its own per trial runs on each
of the session sandbox's four container hosts, one host at a time
(--forks 1), pulled over SSM. `ops` is killed at a moment drawn from a seeded
generator: once a send's marker is journalled (SendCommand on the wire),
once a command id is (the host pulling and running), or once a host's
result is in. Whatever the moment, after `ops
runs resume` every host's file holds exactly one line: a host SSM already
had is settled from SSM and never sent the playbook again. The bundles are
gone from S3 afterwards.

The Amazon Linux hosts are STAND-INS (Debian underneath): the pull script
cannot install Ansible on them through their shim package tools, so the
fixture installs Debian's ansible-core there first (and removes it after, as
later tests expect them without it). Everything else is real.
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.journal import Journal
from tests.support.crash import kill_then_resume, wait_for_step
from tests.support.docker_hosts import in_host
from tests.support.patch_sandbox import client
from tests.support.sandbox import SandboxSession

TRIALS = 3  # each pulls on four hosts one at a time, twice: two to four minutes
SEED = 20261129
MOMENTS = [("marker", 0.3), ("command_id", 1.5), ("ended_at", 2.0)]
TALLY: dict[int, tuple[bool, bool, bool]] = {}  # trial -> (killed, resumed, settled in flight)
BUCKET = "fleetops-sandbox-output"
ANSIBLE = (
    "export DEBIAN_FRONTEND=noninteractive;"
    " { ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -q; } >/dev/null 2>&1;"
    " apt-get install -y -q --no-install-recommends ansible-core >/dev/null"
)


def has_ansible(host: dict[str, Any]) -> bool:
    return in_host(host, "command -v ansible-playbook", timeout=60).returncode == 0


@pytest.fixture(scope="module")
def fleet(sandbox_session: SandboxSession) -> Iterator[list[dict[str, Any]]]:
    hosts: list[dict[str, Any]] = sandbox_session.status["hosts"]  # type: ignore[assignment]
    assert len(hosts) == 4
    added = [h for h in hosts if not has_ansible(h)]
    try:
        for host in added:
            done = in_host(host, ANSIBLE, timeout=300)
            assert done.returncode == 0 and has_ansible(host), (host["name"], done.stderr[-2000:])
        yield hosts
    finally:
        for host in added:  # as the other tests found them
            in_host(host, "dpkg --purge ansible-core >/dev/null 2>&1 || true", timeout=300)


def bundles(sandbox: SandboxSession) -> list[str]:
    listed = client(sandbox, "s3").list_objects_v2(Bucket=BUCKET)
    return sorted(o["Key"] for o in listed.get("Contents", []) if "/pull/" in f"/{o['Key']}")


def append_playbook(folder: Path, path: str) -> Path:
    task = {"name": "Append the line", "ansible.builtin.shell": f"echo ran >> {path}",
            "changed_when": True}  # fmt: skip
    book = folder / "append.yml"
    book.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": [task]}]))
    return book


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_at_random_moments_then_resume_runs_the_playbook_once_per_host(
    sandbox: SandboxSession, fleet: list[dict[str, Any]], tmp_path: Path, trial: int
) -> None:
    """One trial per test, so each fits the per-test timeout on a busy machine."""
    names = [arg for h in fleet for arg in ("--name", h["name"])]
    journal = Journal(sandbox.state_dir / "journal.sqlite3")
    staged_before = bundles(sandbox)
    path = f"/tmp/ops-pull-crash-{uuid.uuid4().hex[:8]}-{trial}"
    book = append_playbook(tmp_path, path)
    fact, spread = MOMENTS[trial % len(MOMENTS)]
    delay = random.Random(SEED + trial).uniform(0.0, spread)
    in_flight: set[str] = set()

    def moment(proc: subprocess.Popen[str], run_id: str) -> None:
        wait_for_step(journal, run_id, fact, proc)
        time.sleep(delay)

    def left(run_id: str) -> None:
        """Hosts SSM had when ops died: sent (command id or marker), no result yet."""
        steps = [s for s in journal.steps(run_id) if s.phase == "playbook"]
        ended = {s.host for s in steps if s.ended_at}
        in_flight.update(s.host for s in steps if (s.command_id or s.marker)
                         and s.host not in ended)  # fmt: skip

    argv = ["--yes", "--output", "json", "playbook", str(book), "--via", "ssm",
            "--forks", "1", *names]  # fmt: skip
    try:
        done = kill_then_resume(sandbox, journal, "playbook", argv, moment,
                                resume_args=("--output", "json"), on_killed=left)  # fmt: skip
        for host in fleet:
            lines = in_host(host, f"cat {path} 2>/dev/null || true", timeout=60).stdout.splitlines()
            assert lines == ["ran"], (trial, fact, round(delay, 2), host["name"], lines)
        run = journal.get_run(done.run_id)
        assert run is not None and run.status == "succeeded", (trial, run)
        finals = sorted(
            (s.host, s.status)
            for s in journal.steps(done.run_id)
            if s.phase == "playbook" and s.status not in ("intended", "started")
        )
        assert finals == sorted((h["instance_id"], "Success") for h in fleet), (trial, finals)
        assert bundles(sandbox) == staged_before, "a bundle outlived the resumed run"
    finally:
        journal.close()
    print(f"trial {trial}: {fact}+{delay:.2f}s, at kill {done.before.status}, "
          f"in flight {len(in_flight)}")  # fmt: skip
    TALLY[trial] = (done.killed, done.resumed, bool(in_flight) and done.resumed)
    if len(TALLY) == TRIALS:  # the whole set ran
        killed, resumed, settled = (sum(t[i] for t in TALLY.values()) for i in range(3))
        print(f"playbook crash trials: {TRIALS}, killed {killed}, resumed {resumed}, "
              f"resumed with hosts in flight {settled}")  # fmt: skip
        assert killed >= TRIALS - 1 and resumed >= TRIALS // 2, TALLY
        assert settled >= 1, "no trial left a host in flight for the resume to settle from SSM"
