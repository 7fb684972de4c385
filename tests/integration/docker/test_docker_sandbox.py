"""`ops docker install` and `ops docker status` over SSM on the shared sandbox.

Real on the Debian hosts: the Run Command emulator runs the pull script in
the container, apt installs ansible-core and Debian's docker.io, the role
starts dockerd (no systemd in a container host) and `ops docker status`
reads it back with one read-only command. The Amazon Linux hosts are
STAND-INS whose package shims install nothing: they are only asked for
status here (Docker not installed, AL2 flagged past end of support).

The module puts the Debian hosts back as it found them (daemon stopped,
docker.io purged), since other tests on the shared sandbox expect hosts
without Docker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.sandbox import SandboxSession, ops_command

AL2_END = date(2026, 6, 30)
RESET = (
    "if [ -s /var/run/docker.pid ]; then pid=$(cat /var/run/docker.pid); kill $pid;"
    " while kill -0 $pid 2>/dev/null; do sleep 0.2; done; fi;"
    " DEBIAN_FRONTEND=noninteractive dpkg --purge docker.io >/dev/null 2>&1;"
    " rm -rf /var/lib/docker /etc/docker /var/lib/fleetops /var/log/dockerd.log"
)


def hosts_on(sandbox: SandboxSession, *platforms: str) -> list[dict[str, Any]]:
    hosts: list[dict[str, Any]] = sandbox.status["hosts"]  # type: ignore[assignment]
    return sorted((h for h in hosts if h["platform"] in platforms), key=lambda h: h["name"])


def in_host(host: dict[str, Any], script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", host["container"], "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )


def installed_sandbox(installed: dict[str, Any]) -> SandboxSession:
    sandbox: SandboxSession = installed["sandbox"]
    return sandbox


def names(hosts: list[dict[str, Any]]) -> list[str]:
    return [arg for h in hosts for arg in ("--name", h["name"])]


def runs(sandbox: SandboxSession) -> list[dict[str, Any]]:
    done = sandbox.ops("--output", "json", "runs", "list")
    assert done.returncode == 0, done.stderr
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found


def send_commands(sandbox: SandboxSession) -> int:
    done = sandbox.ops("--output", "json", "sandbox", "calls", "--operation", "SendCommand")
    assert done.returncode == 0, done.stderr
    return len(json.loads(done.stdout))


@pytest.fixture(scope="module")
def installed(sandbox_session: SandboxSession) -> Iterator[dict[str, Any]]:
    """Install on the Debian hosts, read status everywhere, install again."""
    sandbox = sandbox_session
    debian = hosts_on(sandbox, "debian")
    everyone = hosts_on(sandbox, "debian", "al2", "al2023")
    install = ["--yes", "--output", "json", "docker", "install", "--via", "ssm", *names(debian)]
    try:
        first = sandbox.ops(*install, timeout=600)
        status = sandbox.ops("--output", "json", "docker", "status", *names(everyone))
        second = sandbox.ops(*install, timeout=600)
        yield {
            "sandbox": sandbox,
            "debian": debian,
            "everyone": everyone,
            "first": first,
            "status": status,
            "second": second,
        }
    finally:
        for host in debian:
            in_host(host, RESET)
        for host in debian:  # later tests on the shared sandbox expect no Docker here
            assert in_host(host, "command -v docker dockerd").stdout == "", host["name"]


def test_install_then_status_shows_every_debian_host_installed_and_running(
    installed: dict[str, Any],
) -> None:
    first = installed["first"]
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads(first.stdout)
    assert report["status"] == "succeeded"
    assert {h["name"]: h["result"] for h in report["hosts"]} == {
        h["name"]: "changed" for h in installed["debian"]
    }
    assert all(h["changed"] > 0 and h["how"] == "apt docker.io" for h in report["hosts"])

    rows = {r["name"]: r for r in json.loads(installed["status"].stdout)}
    for host in installed["debian"]:
        row = rows[host["name"]]
        assert row["installed"] is True and row["running"] is True, row
        assert row["version"].startswith("20.10"), row
        assert row["storage_driver"] == "vfs" and row["logging_driver"] == "json-file"
        assert row["rotation"] == {"max_size": "10m", "max_file": "3"}
        assert row["live_restore"] is True and row["live_restore_running"] is True
        assert row["containers_running"] == 0
        assert isinstance(row["disk_bytes"], int) and row["disk_bytes"] > 0
        assert row["drift"] == [], row


def test_status_reports_the_standins_without_docker_and_flags_al2(
    installed: dict[str, Any],
) -> None:
    status = installed["status"]
    assert status.returncode == 1, status.stderr  # the stand-ins drift: Docker not installed
    assert "drift from the settings" in status.stderr
    rows = {r["name"]: r for r in json.loads(status.stdout)}
    assert set(rows) == {h["name"] for h in installed["everyone"]}
    past = datetime.now(UTC).date() > AL2_END
    for host in installed["everyone"]:
        if host["platform"] == "debian":
            continue
        row = rows[host["name"]]
        assert row["answered"] is True
        assert (row["installed"], row["drift"]) == (False, ["not installed"]), row
        assert row["past_end_of_support"] is (past and host["platform"] == "al2")


def test_a_second_install_changes_nothing_and_says_so(installed: dict[str, Any]) -> None:
    second = installed["second"]
    assert second.returncode == 0, second.stderr[-3000:]
    report = json.loads(second.stdout)
    assert report["changed"] == 0 and report["nothing_changed"] is True
    assert {h["result"] for h in report["hosts"]} == {"unchanged"}


def test_daemon_runs_inside_the_host_with_the_merged_daemon_json(
    installed: dict[str, Any],
) -> None:
    for host in installed["debian"]:
        info = in_host(host, "docker info --format '{{.Driver}} {{.LiveRestoreEnabled}}'")
        assert info.stdout.split() == ["vfs", "true"], info.stderr
        config = json.loads(in_host(host, "cat /etc/docker/daemon.json").stdout)
        assert config["log-opts"] == {"max-size": "10m", "max-file": "3"}
        # one dockerd, started once: the second install did not start another
        assert in_host(host, "pgrep -c -x dockerd").stdout.strip() == "1"


def with_settings(sandbox: SandboxSession, folder: Path, docker: str) -> dict[str, str]:
    """The sandbox's environment, with its inventories copied and a docker section added."""
    own = folder / "inventories"
    if own.exists():
        shutil.rmtree(own)
    shutil.copytree(sandbox.inventories, own)
    settings = own / "sandbox" / "ops.yml"
    settings.write_text(settings.read_text() + docker)
    return {**sandbox.process_env, "OPS_INVENTORIES": str(own)}


def ops_in(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ops_command(), *args], capture_output=True, text=True, timeout=600, env=env
    )


# A container inside the host, from an image made there of one binary: enough
# to count as a running container, with no registry.
SLEEPER = (
    "tar -ch -C / usr/bin/sleep lib64/ld-linux-x86-64.so.2 lib/x86_64-linux-gnu/libc.so.6"
    " | docker import - fleetops/sleeper >/dev/null"
    " && docker run -d --network host fleetops/sleeper /usr/bin/sleep 600"
)


def test_restart_only_when_safe_and_a_held_restart_is_done_once_allowed(
    installed: dict[str, Any], tmp_path: Path
) -> None:
    """Changed settings restart an idle daemon; with a container running and live-restore
    off the restart is held (marker, drift shown), and --allow-restart does it.

    Pushed over SSH here (the same role and recap as the pull above), so the
    push path is covered too."""
    host = installed["debian"][0]
    target = ["--name", host["name"]]
    install = ["--yes", "--output", "json", "docker", "install", "--via", "ssh", *target]
    status = ["--output", "json", "docker", "status", *target]

    def pid() -> str:
        return in_host(host, "cat /var/run/docker.pid").stdout.strip()

    # Idle daemon, changed settings: restarted, now without live-restore.
    before = pid()
    env = with_settings(
        installed_sandbox(installed),
        tmp_path,
        "docker:\n  live_restore: false\n  log_max_file: 4\n",
    )
    done = ops_in(env, *install)
    assert done.returncode == 0, done.stderr[-2000:]
    assert pid() != before
    assert in_host(host, "docker info --format '{{.LiveRestoreEnabled}}'").stdout.strip() == "false"

    # A container runs and live-restore is off: the new configuration waits.
    started = in_host(host, SLEEPER)
    assert started.returncode == 0, started.stderr
    before = pid()
    env = with_settings(
        installed_sandbox(installed),
        tmp_path,
        "docker:\n  live_restore: false\n  log_max_file: 5\n",
    )
    done = ops_in(env, *install)
    assert done.returncode == 0, done.stderr[-2000:]
    assert pid() == before
    assert in_host(host, "docker ps -q | wc -l").stdout.strip() == "1"
    [row] = json.loads(ops_in(env, *status).stdout)
    assert any("restart held" in item for item in row["drift"]), row
    assert row["containers_running"] == 1

    # Allowed: restarted once, the marker cleared, no drift left.
    done = ops_in(env, *install, "--allow-restart")
    assert done.returncode == 0, done.stderr[-2000:]
    assert pid() != before
    [row] = json.loads(ops_in(env, *status).stdout)
    assert row["drift"] == [] and row["rotation"] == {"max_size": "10m", "max_file": "5"}, row


def test_unknown_via_exits_2_before_any_host(sandbox: SandboxSession) -> None:
    before_runs, before_sends = len(runs(sandbox)), send_commands(sandbox)
    done = sandbox.ops("--yes", "docker", "install", "--via", "telnet")
    assert done.returncode == 2
    assert "--via" in done.stderr and "telnet" in done.stderr
    assert (len(runs(sandbox)), send_commands(sandbox)) == (before_runs, before_sends)


def test_users_not_a_list_exits_2_before_any_host(sandbox: SandboxSession, tmp_path: Path) -> None:
    own = tmp_path / "inventories"
    shutil.copytree(sandbox.inventories, own)
    settings = own / "sandbox" / "ops.yml"
    settings.write_text(settings.read_text() + "docker:\n  users: ec2-user\n")
    before_runs, before_sends = len(runs(sandbox)), send_commands(sandbox)
    done = subprocess.run(
        [*ops_command(), "--yes", "docker", "install"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**sandbox.process_env, "OPS_INVENTORIES": str(own)},
    )
    assert done.returncode == 2, done.stderr
    assert f"{settings}: docker.users must be a list" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert (len(runs(sandbox)), send_commands(sandbox)) == (before_runs, before_sends)
