"""`ops run --via ssh|auto` on the session sandbox's container hosts (real sshd on loopback).

Each test drives the CLI as a user does and checks what reached the hosts
(docker exec), not only what `ops` printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import botocore

from ops import aws_models
from ops.cli.options import TargetArgs
from ops.config import load_settings, state_dir
from ops.engine.budget import parse_concurrency, parse_max_errors
from ops.fleet import route_memory
from ops.fleet.discovery import EC2_LISTING
from ops.journal import Journal
from ops.transports.ssh import SshTransport
from ops.workflows import run as wf
from tests.support.crash import lines_seen
from tests.support.sandbox import REPO, SandboxSession, ops_command


def _hosts(sandbox: SandboxSession) -> list[dict[str, Any]]:
    return list(sandbox.status["hosts"])  # type: ignore[call-overload]


def _targets(hosts: list[dict[str, Any]]) -> list[str]:
    return [arg for h in hosts for arg in ("--instance", h["instance_id"])]


def _on_host(container: str, script: str) -> str:
    done = subprocess.run(
        ["docker", "exec", container, "sh", "-c", script],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def test_via_ssh_runs_on_every_host_with_the_ssm_shapes(sandbox: SandboxSession) -> None:
    hosts = _hosts(sandbox)
    done = sandbox.ops(
        "--yes", "--output", "json", "run", *_targets(hosts), "--via", "ssh", "--",
        "hostname; echo to-stderr >&2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert set(body) == {"command_ids", "results", "summary"}
    assert body["summary"] == {"Success": len(hosts)}
    by_id = {r["instance_id"]: r for r in body["results"]}
    for host in hosts:
        result = by_id[host["instance_id"]]
        assert set(result) == {"instance_id", "name", "status", "exit_code", "stdout",
                               "stderr", "output_truncated", "duration_s"}  # fmt: skip
        assert result["status"] == "Success" and result["exit_code"] == 0
        assert result["stdout"].strip() == _on_host(host["container"], "hostname").strip()
        assert result["stderr"] == "to-stderr\n"
    runs = Journal(sandbox.state_dir / "journal.sqlite3")
    try:
        last = runs.list_runs(limit=1, kind="run")[0]
        assert last.arguments["via"] == "ssh" and last.status == "succeeded"
    finally:
        runs.close()


def test_via_ssh_lists_hosts_from_the_cut_ec2_model(
    sandbox: SandboxSession, tmp_path: Path
) -> None:
    """The listing's EC2 client is made from the cut model against moto over HTTP (the
    sandbox's endpoint override), the cut written by the first call and read by the next."""
    hosts = _hosts(sandbox)
    env = {**sandbox.process_env, "XDG_CACHE_HOME": str(tmp_path)}
    cut = (
        tmp_path / "fleetops" / "botocore" / botocore.__version__ / "ec2"
        / aws_models.version_name(EC2_LISTING) / "service-2.json"
    )  # fmt: skip
    written = None
    for _call in range(2):
        done = subprocess.run(
            [*ops_command(), "--yes", "--output", "json", "run", *_targets(hosts),
             "--via", "ssh", "--", "hostname"],
            capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["summary"] == {"Success": len(hosts)}
        assert sorted(json.loads(cut.read_text())["operations"]) == sorted(EC2_LISTING)
        assert written in (None, cut.stat().st_mtime_ns)  # the second call wrote nothing
        written = cut.stat().st_mtime_ns


def test_via_auto_sends_an_offline_agent_s_host_over_ssh(sandbox: SandboxSession) -> None:
    hosts = _hosts(sandbox)
    offline = hosts[0]
    token = uuid.uuid4().hex[:8]
    path = f"/tmp/ops-auto-{token}"
    faulted = sandbox.ops("sandbox", "fault", "set", "agent_offline",
                          "--instance", offline["instance_id"])  # fmt: skip
    assert faulted.returncode == 0, faulted.stderr
    try:
        plan = sandbox.ops("run", *_targets(hosts), "--via", "auto", "--dry-run", "--", "true")
        assert plan.returncode == 0, plan.stderr
        row = next(
            line
            for line in plan.stdout.splitlines()
            if offline["instance_id"] in line and "match" not in line
        )
        assert "ConnectionLost" in row and "ssh" in row
        done = sandbox.ops(
            "--yes", "--output", "json", "run", *_targets(hosts), "--via", "auto", "--",
            f"echo once >> {path}; hostname",
        )  # fmt: skip
        ssm_only = sandbox.ops("--yes", "--output", "json", "run", *_targets(hosts), "--",
                               "true")  # fmt: skip
    finally:
        sandbox.ops("sandbox", "fault", "clear")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["summary"] == {"Success": len(hosts)}
    assert len(body["command_ids"]) >= 1  # the Online hosts went through SSM
    for host in hosts:
        assert _on_host(host["container"], f"cat {path}") == "once\n", host["name"]
    # the same fleet over SSM alone: the offline host is unreachable
    assert ssm_only.returncode == 1
    statuses = {r["instance_id"]: r["status"] for r in json.loads(ssm_only.stdout)["results"]}
    assert statuses[offline["instance_id"]] == "Unreachable"


def test_via_ssh_budget_stops_dispatch(sandbox: SandboxSession) -> None:
    hosts = _hosts(sandbox)
    token = uuid.uuid4().hex[:8]
    path = f"/tmp/ops-budget-{token}"
    done = sandbox.ops(
        "--yes", "--output", "json", "run", *_targets(hosts), "--via", "ssh",
        "--concurrency", "1", "--max-errors", "0", "--", f"touch {path}; exit 5",
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "stopped: more than 0 errors" in done.stderr
    summary = json.loads(done.stdout)["summary"]
    assert summary == {"Failed": 1, "NotStarted": len(hosts) - 1}
    touched = [h for h in hosts if _on_host(h["container"], f"ls {path} 2>/dev/null || true")]
    assert len(touched) == 1


def test_via_ssh_output_and_arguments_stay_inert(sandbox: SandboxSession) -> None:
    """Command output is untrusted: printed as text, never as markup or terminal codes;
    an argument list reaches the host quoted, never run as shell."""
    hosts = _hosts(sandbox)[:2]
    token = uuid.uuid4().hex[:8]
    canary = f"/tmp/ops-pwned-{token}"
    hostile = ["printf", "%s\\n", 'it\'s "q"', f"$(touch {canary})", "[bold red]x[/]", "`id`"]
    done = sandbox.ops(
        "--yes", "--output", "json", "run", *_targets(hosts), "--via", "ssh", "--", *hostile
    )
    assert done.returncode == 0, done.stderr
    for result in json.loads(done.stdout)["results"]:
        assert result["stdout"].splitlines() == hostile[2:]
    for host in hosts:
        assert _on_host(host["container"], f"ls {canary} 2>/dev/null || true") == ""
    shown = sandbox.ops(
        "--yes", "--no-color", "run", *_targets(hosts), "--via", "ssh", "--show-output", "--",
        "printf '[bold]b[/bold] \\033[31mred\\n'",
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "[bold]b[/bold] \\x1b[31mred" in shown.stdout  # the escape shown, not obeyed
    assert "\x1b" not in shown.stdout


def test_sigterm_cancels_ssh_commands_in_flight(sandbox: SandboxSession) -> None:
    hosts = _hosts(sandbox)
    token = uuid.uuid4().hex[:8]
    proc = subprocess.Popen(
        [*ops_command(), "--yes", "--output", "json", "run", *_targets(hosts), "--via", "ssh",
         "--concurrency", "2", "--", f"sleep 120 # {token}"],
        env=sandbox.process_env, cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        running: list[str] = []
        while len(running) < 2 and time.monotonic() < deadline:
            running = [h["name"] for h in hosts
                       if token in _on_host(h["container"], "ps -eo args")]  # fmt: skip
            assert proc.poll() is None
        assert len(running) == 2, running
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    summary = json.loads(out)["summary"]
    assert summary == {"Cancelled": 2, "NotStarted": len(hosts) - 2}, summary
    for host in hosts:
        assert token not in _on_host(host["container"], "ps -eo args"), host["name"]


def test_sigkill_then_resume_over_ssh_runs_every_host_once(sandbox: SandboxSession) -> None:
    """Killed while one host runs (its command goes on and is collected, not run again)
    and the rest were never started (sent by the resume)."""
    hosts = _hosts(sandbox)
    journal = Journal(sandbox.state_dir / "journal.sqlite3")
    try:
        for trial in range(2):
            path = f"/tmp/ops-ssh-crash-{uuid.uuid4().hex[:8]}"
            known = {r.id for r in journal.list_runs(limit=10_000, kind="run")}
            proc = subprocess.Popen(
                [*ops_command(), "--yes", "run", *_targets(hosts), "--via", "ssh",
                 "--concurrency", "1", "--output", "jsonl", "--",
                 f"sleep 2; echo {trial} >> {path}"],
                env=sandbox.process_env, cwd=REPO, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                assert lines_seen(proc, 1, timeout=90) == 1
                time.sleep(0.5)  # the second host's command is under way
                os.kill(proc.pid, signal.SIGKILL)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.communicate(timeout=60)
            run_id = next(r.id for r in journal.list_runs(kind="run") if r.id not in known)
            before = journal.get_run(run_id)
            assert before is not None and before.state == "abandoned", before
            resumed = sandbox.ops("runs", "resume", run_id, "--output", "jsonl", "--yes")
            assert resumed.returncode == 0, (resumed.stdout[-2000:], resumed.stderr[-2000:])
            assert len(resumed.stdout.splitlines()) == len(hosts) - 1
            for host in hosts:
                lines = _on_host(host["container"], f"cat {path}").splitlines()
                assert lines == [str(trial)], (trial, host["name"], lines)
            run = journal.get_run(run_id)
            assert run is not None and run.status == "succeeded"
            finals = sorted(
                (s.host, s.status)
                for s in journal.steps(run_id)
                if s.status not in ("intended", "started")
            )
            assert finals == sorted((h["instance_id"], "Success") for h in hosts), finals
    finally:
        journal.close()


class _Results:
    """The workflow's listener: results by instance id."""

    def __init__(self) -> None:
        self.by_id: dict[str, Any] = {}

    def result(self, result: Any) -> None:
        self.by_id[result.instance_id] = result

    def listed(self, hosts: list[Any]) -> None:
        return None

    def note(self, text: str) -> None:
        return None


def _sshd_sessions(container: str) -> int:
    """sshd processes on the host beyond its listener: one per open connection."""
    script = "for p in /proc/[0-9]*; do cat $p/comm; done 2>/dev/null | grep -c '^sshd' || true"
    return max(int(_on_host(container, script).strip() or 0) - 1, 0)


def _run_records(container: str) -> set[str]:
    return set(_on_host(container, 'ls "${HOME:-/tmp}/.ops/runs" 2>/dev/null || true').split())


def _warm_request(settings: Any, targeted: list[dict[str, Any]]) -> wf.RunRequest:
    return wf.RunRequest(
        commands=["echo warm-$(hostname)"],
        target=TargetArgs(instances=tuple(h["instance_id"] for h in targeted)).spec(settings),
        concurrency=parse_concurrency("10"),
        max_errors=parse_max_errors("0"),
        via="ssh",
    )


def _warm_run(
    remembered: list[dict[str, Any]], targeted: list[dict[str, Any]], ports: dict[str, int]
) -> tuple[SshTransport, dict[str, Any]]:
    """`ops run --via ssh` through the workflow, with the route memory saying `remembered`
    were reached last time at `ports` (instance id -> port), on the `targeted` hosts."""
    settings = load_settings()
    request = _warm_request(settings, targeted)
    routes = [(h["instance_id"], "127.0.0.1", ports[h["instance_id"]], "root") for h in remembered]
    route_memory.remember(state_dir(), wf.route_key(request, settings), routes)
    warm = wf.warm_up(request, settings)
    assert warm is not None
    try:
        listing = wf.list_hosts(request, settings, whole=False)
        routing = wf.route(request, settings, listing.known.all)
        results = _Results()
        report = wf.execute(wf.plan(request, settings, listing, routing, warm), settings, results)
        assert report.exit_code == 0
    finally:
        warm.close()
    return warm, results.by_id


def test_a_run_uses_the_connections_it_opened_while_ec2_listed(sandbox: SandboxSession) -> None:
    """The memory names three hosts, the target two: the two run over their warm
    connections; the third is logged in to, closed unused, and nothing runs there."""
    a, b, c = _hosts(sandbox)[:3]
    ports = {h["instance_id"]: int(h["ssh_port"]) for h in (a, b, c)}
    before = _run_records(c["container"])
    warm, results = _warm_run([c, a, b], [a, b], ports)
    assert warm.warm_used == 2 and warm.connects == 3
    assert set(results) == {a["instance_id"], b["instance_id"]}
    for host in (a, b):
        name = _on_host(host["container"], "hostname").strip()
        assert results[host["instance_id"]].stdout.strip() == f"warm-{name}"
    assert _run_records(c["container"]) == before
    deadline = time.monotonic() + 30
    while _sshd_sessions(c["container"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _sshd_sessions(c["container"]) == 0
    # the memory now holds what this run confirmed: the two targeted hosts
    settings = load_settings()
    key = wf.route_key(_warm_request(settings, [a, b]), settings)
    kept = route_memory.recall(state_dir(), key, [])
    assert {h.instance_id for h in kept} == {a["instance_id"], b["instance_id"]}


def test_a_remembered_port_that_now_reaches_another_host_is_never_used(
    sandbox: SandboxSession,
) -> None:
    """The memory sends host a's warm connection to b's sshd (a login that checks out:
    b's key is known at that address). The fresh listing says a is elsewhere, so that
    connection is closed and a runs over a new one, on a itself."""
    a, b = _hosts(sandbox)[2:4]
    ports = {a["instance_id"]: int(b["ssh_port"]), b["instance_id"]: int(b["ssh_port"])}
    warm, results = _warm_run([a, b], [a, b], ports)
    assert warm.warm_used == 1 and warm.connects == 3
    for host in (a, b):
        name = _on_host(host["container"], "hostname").strip()
        assert results[host["instance_id"]].stdout.strip() == f"warm-{name}"
