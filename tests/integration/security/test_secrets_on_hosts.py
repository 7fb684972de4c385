"""Secrets a run handles stay where they belong, checked on the shared sandbox's real hosts.

Pull: the presigned URL never shows in a host's process list, lives minutes,
and the bundle is gone from S3 when the run ends (and, for a run killed
with SIGKILL, once `ops runs resume` has finished it). Push: the
extra-vars file is removed when the run ends and a secret never reaches the
run's files, the journal or the output. The state folder and its keys are
closed to other users.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import yaml

from ops.journal.store import Journal
from ops.sandbox.emulator.auth import CREDENTIALS_FILE
from ops.sandbox.keys import PRIVATE_NAME
from ops.transports.ansible_pull import bundle_locations, delete_bundle
from tests.support.sandbox import REPO, SandboxSession, ops_command

SECRET = "s3cr3t-Value-4711"


def debian(sandbox: SandboxSession) -> dict[str, Any]:
    hosts: list[dict[str, Any]] = sandbox.status["hosts"]  # type: ignore[assignment]
    return sorted((h for h in hosts if h["platform"] == "debian"), key=lambda h: h["name"])[-1]


def s3(sandbox: SandboxSession) -> Any:
    env = sandbox.env
    return boto3.session.Session().client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def bundles(sandbox: SandboxSession) -> list[str]:
    listed = s3(sandbox).list_objects_v2(Bucket="fleetops-sandbox-output")
    return [o["Key"] for o in listed.get("Contents", []) if "/pull/" in f"/{o['Key']}"]


def slow_playbook(folder: Path, seconds: int) -> Path:
    book = folder / "slow.yml"
    task = {"name": "Wait", "ansible.builtin.command": f"sleep {seconds}", "changed_when": False}
    book.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": [task]}]))
    return book


def docker(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *argv], capture_output=True, text=True, timeout=60)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_pull_url_is_never_on_a_command_line_and_the_bundle_goes(
    sandbox_session: SandboxSession, tmp_path: Path
) -> None:
    sandbox = sandbox_session
    host = debian(sandbox)
    log = "/tmp/ops-ps-watch.log"
    # every process's arguments, as often as ps can, for the whole run, inside the host
    watch = (
        f"rm -f {log} /tmp/ops-ps-stop; while [ ! -e /tmp/ops-ps-stop ]; do "
        f"ps -eo args >> {log}; done"
    )
    before = bundles(sandbox)
    docker("exec", "-d", host["container"], "sh", "-c", watch)
    deadline = time.monotonic() + 60  # `docker exec -d` returns before the watcher runs
    while docker("exec", host["container"], "test", "-s", log).returncode != 0:
        assert time.monotonic() < deadline, "the process watcher did not start"
        time.sleep(0.2)
    try:
        done = sandbox.ops(
            "--yes", "--output", "json", "playbook", str(slow_playbook(tmp_path, 5)),
            "--via", "ssm", "--name", host["name"], "-e", f"api_token={SECRET}", timeout=600,
        )  # fmt: skip
    finally:
        docker("exec", host["container"], "touch", "/tmp/ops-ps-stop")
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    seen = docker("exec", host["container"], "cat", log).stdout
    # the watcher saw the run (curl's moment is brief; ansible-playbook's is not)
    assert "ansible-playbook" in seen and "/var/lib/fleetops-ssm/" in seen
    key_id = sandbox.env["AWS_ACCESS_KEY_ID"]
    assert "Signature=" not in seen and key_id not in seen and "pull/" not in seen
    assert SECRET not in seen
    assert bundles(sandbox) == before, "the bundle outlived its run"
    assert SECRET not in done.stdout + done.stderr


def test_killed_pull_leaves_the_bundle_for_resume_to_delete(
    sandbox_session: SandboxSession, tmp_path: Path
) -> None:
    sandbox = sandbox_session
    host = debian(sandbox)
    before = bundles(sandbox)
    errors = (tmp_path / "stderr").open("w")
    proc = subprocess.Popen(
        [*ops_command(), "--yes", "playbook", str(slow_playbook(tmp_path, 30)),
         "--via", "ssm", "--name", host["name"]],
        stdout=subprocess.DEVNULL, stderr=errors, env=sandbox.process_env, cwd=REPO,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while bundles(sandbox) == before and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        staged = [b for b in bundles(sandbox) if b not in before]
        assert len(staged) == 1, (tmp_path / "stderr").read_text()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        errors.close()
    assert bundles(sandbox) == sorted([*before, *staged])  # nothing cleaned up after a SIGKILL
    with Journal(sandbox.state_dir / "journal.sqlite3") as journal:
        run = journal.list_runs(limit=1, kind="playbook")[0]
    # the run recorded where its bundle would go before putting it there
    assert bundle_locations(run.arguments) == [("fleetops-sandbox-output", staged[0])]
    done = sandbox.ops("runs", "resume", run.id, "--yes", timeout=300)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    assert "removed the bundle the interrupted run had staged" in done.stderr
    assert bundles(sandbox) == before
    assert delete_bundle(s3(sandbox), "fleetops-sandbox-output", staged[0]) is True  # gone: fine


def test_push_forgets_its_extra_vars_and_masks_secrets(sandbox_session: SandboxSession) -> None:
    sandbox = sandbox_session
    host = debian(sandbox)
    book = REPO / "playbooks" / "examples" / "small.yml"
    done = sandbox.ops(
        "--yes", "--output", "json", "playbook", str(book), "--via", "ssh",
        "--name", host["name"], "-e", f"db_password={SECRET}", "-e", "release=7", timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    run_id = json.loads(done.stdout)["run_id"]
    work = sandbox.state_dir / "ansible" / run_id
    assert work.is_dir()
    leftovers = [
        p for p in work.rglob("*") if p.is_file() and SECRET in p.read_text(errors="ignore")
    ]
    assert leftovers == [], "the secret outlived the run in its files"
    assert not list(work.rglob("env/extravars"))
    with Journal(sandbox.state_dir / "journal.sqlite3") as journal:
        run = journal.get_run(run_id)
    assert run is not None
    assert run.arguments["extravars"] == {"db_password": "********", "release": "7"}
    assert SECRET not in done.stdout + done.stderr


def test_state_folder_keys_and_known_hosts_are_private(sandbox_session: SandboxSession) -> None:
    sandbox = sandbox_session
    assert sandbox.ops("runs", "list").returncode == 0  # the journal exists from here on
    state = sandbox.state_dir
    assert mode(state) == 0o700
    assert mode(state / "journal.sqlite3") == 0o600
    assert mode(state / "ssh" / "known_hosts") == 0o600
    [key] = [p for p in state.rglob(PRIVATE_NAME) if p.is_file()]
    assert mode(key) == 0o600
    [creds] = state.rglob(CREDENTIALS_FILE)
    assert mode(creds) == 0o600
