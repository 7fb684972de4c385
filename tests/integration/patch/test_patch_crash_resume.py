"""Crash test: `ops patch run` killed with SIGKILL at seeded random points, then
`ops runs resume`: every host patched exactly once (apt history), none skipped,
none left out of its target group, the journal complete.

Two Debian web hosts a trial, one wave, so a trial is short; the kill comes a
seeded random time after a seeded random step line, so it lands inside steps
(mid-apt, mid-reboot, mid-drain) as well as between them. Between trials the
hosts go back to the older packages with an empty apt history.
"""

from __future__ import annotations

import json
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.patch_sandbox import (
    client,
    healthy_web,
    hosts,
    last_run_id,
    repo_url,
    upgrades,
    versions,
)
from tests.support.sandbox import REPO, SandboxSession, ops_command

# Ten trials take minutes: a group of its own (its own patch sandbox) runs beside the
# other patch tests instead of after them on the same worker.
pytestmark = pytest.mark.xdist_group("patch-crash")

TRIALS = 10
SEED = 20261129
STEPS = ("precheck", "drain", "apply", "reboot", "postcheck", "register")
NAMES = ("web-1", "web-3")


def _reset(session: SandboxSession, containers: list[str]) -> None:
    from ops.sandbox.host_packages import prepare_debian

    url = repo_url(session)

    def one(container: str) -> None:
        prepare_debian(container, url)
        subprocess.run(
            ["docker", "exec", container, "truncate", "-s", "0", "/var/log/apt/history.log"],
            check=True,
        )

    with ThreadPoolExecutor(len(containers)) as pool:
        list(pool.map(one, containers))


def _deregistration_delay(session: SandboxSession, seconds: int) -> None:
    elbv2 = client(session, "elbv2")
    [group] = elbv2.describe_target_groups(Names=["web"])["TargetGroups"]
    elbv2.modify_target_group_attributes(
        TargetGroupArn=group["TargetGroupArn"],
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(seconds)}],
    )


def _kill_somewhere(session: SandboxSession, rng: random.Random) -> tuple[int, float, bool]:
    """Start a run, SIGKILL it after step line `after` plus `delay` seconds; True if it ended."""
    after = rng.randrange(0, len(STEPS) * len(NAMES) - 1)
    delay = round(rng.uniform(0.0, 3.0), 2)
    argv = [*ops_command(), "--yes", "patch", "run", "--poll", "1", "--canary", "0"]
    argv += ["--max-unavailable", "100%", *(f"--name={n}" for n in NAMES)]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=session.process_env,
        cwd=REPO,
    )
    assert process.stderr is not None
    lines = 0
    for line in process.stderr:
        if any(f": {step} " in line for step in STEPS):
            lines += 1
        if lines > after:
            break
    try:
        process.wait(timeout=delay)
        ended = True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
        ended = False
    process.stderr.close()
    return after, delay, ended


@pytest.mark.timeout(1200)  # ten trials of about a minute each on a loaded 2-core machine
def test_killed_patch_runs_resume_to_exactly_once(patch_sandbox: SandboxSession) -> None:
    rng = random.Random(SEED)
    named = {h["name"]: h for h in hosts(patch_sandbox)}
    containers = [named[n]["container"] for n in NAMES]
    ids = {named[n]["instance_id"] for n in NAMES}
    _deregistration_delay(patch_sandbox, 0)  # drains end at once: shorter trials
    seen_runs: set[str] = set()
    kills = 0
    try:
        for trial in range(TRIALS):
            _reset(patch_sandbox, containers)
            assert all(versions(c)["fleetops-tool"] == "1.0-1" for c in containers)
            after, delay, ended = _kill_somewhere(patch_sandbox, rng)
            where = f"trial {trial}: after step line {after} + {delay}s"
            run_id = last_run_id(patch_sandbox)
            assert run_id and run_id not in seen_runs, where  # a step line: it is journalled
            kills += not ended
            resumed = patch_sandbox.ops("--yes", "runs", "resume", run_id, timeout=400)
            if ended:
                assert resumed.returncode == 2 and "already" in resumed.stderr, where
            else:
                assert resumed.returncode == 0, (where, resumed.stderr[-3000:])
            seen_runs.add(run_id)
            for container in containers:
                assert upgrades(container) == 1, (where, container)  # exactly once
                assert versions(container)["fleetops-tool"] == "1.1-1", where
            health = healthy_web(patch_sandbox)
            assert all(health.get(i) == "healthy" for i in ids), (where, health)
            exported = patch_sandbox.ops("runs", "export", run_id)
            assert exported.returncode == 0, exported.stderr
            data = json.loads(exported.stdout)
            assert data["run"]["status"] == "succeeded", where
            done = {(s["host"], s["phase"]) for s in data["steps"] if s["status"] == "Success"}
            assert done == {(i, s) for i in ids for s in STEPS}, where
            ended_rows = {s["status"] for s in data["steps"]} - {"intended", "started"}
            assert ended_rows == {"Success"}, (where, ended_rows)
    finally:
        _deregistration_delay(patch_sandbox, 5)
    assert kills >= TRIALS // 2  # most trials were really killed mid-run
