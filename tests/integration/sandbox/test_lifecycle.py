"""`up` then `down` on a fleet of its own: nothing may be left behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.sandbox import SandboxSession, make_inventories, require_docker


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_then_down_leaves_no_container_process_port_or_file(tmp_path: Path) -> None:
    require_docker()
    own = SandboxSession(state_dir=tmp_path / "state", inventories=make_inventories(tmp_path))
    own.state_dir.mkdir()
    up = own.ops(
        "--output", "json", "sandbox", "up", "--hosts", "1", "--synthetic", "5", timeout=900
    )
    assert up.returncode == 0, up.stderr
    status = json.loads(up.stdout)
    label = status["label"]
    host = status["hosts"][0]
    sandbox_dir = own.state_dir / "sandbox"
    pids = [int(p.read_text()) for p in sandbox_dir.rglob("*.pid")]
    assert len(pids) >= 2 and all(_pid_alive(p) for p in pids)
    ports = [host["ssh_port"]] + [
        int(url.rsplit(":", 1)[1])
        for url in [*status["endpoints"].values(), status["package_repo"]]
    ]
    assert len(pids) >= 3  # moto, the Run Command emulator, the package repository
    assert all(_port_open(p) for p in ports)
    inventory = Path(status["inventory"])
    assert inventory.is_file()
    trusted = own.state_dir / "ssh" / "known_hosts"
    entry = f"[127.0.0.1]:{host['ssh_port']} "
    assert any(line.startswith(entry) for line in trusted.read_text().splitlines())

    down = own.ops("sandbox", "down")
    assert down.returncode == 0, down.stderr
    containers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=org.fleetops.sandbox={label}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert containers == []
    assert not any(_pid_alive(p) for p in pids)
    assert not any(_port_open(p) for p in ports)
    assert not sandbox_dir.exists()
    assert not inventory.exists()
    assert not any(line.startswith(entry) for line in trusted.read_text().splitlines())
    again = own.ops("sandbox", "down")
    assert again.returncode == 0
    status_after = own.ops("--output", "json", "sandbox", "status")
    assert json.loads(status_after.stdout)["running"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hosts", "-1"], "--hosts cannot be negative"),
        (["--synthetic", "-5"], "--synthetic cannot be negative"),
        (["--platforms", "debian:2,windows:1"], "unknown platform 'windows'"),
        (["--platforms", "debian:x"], "needs a whole count"),
        (["--hosts", "2", "--platforms", "debian:3"], "disagrees with --platforms"),
        (["--hosts", "0"], "nothing to bring up"),
    ],
)
def test_bad_input_starts_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    own = SandboxSession(state_dir=tmp_path / "state", inventories=make_inventories(tmp_path))
    result = own.ops("sandbox", "up", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (own.state_dir / "sandbox" / "state.json").exists()


def test_port_already_taken_is_refused_before_anything_starts(tmp_path: Path) -> None:
    own = SandboxSession(state_dir=tmp_path / "state", inventories=make_inventories(tmp_path))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        result = own.ops("sandbox", "up", "--hosts", "2", "--ssh-base-port", str(port))
    assert result.returncode == 2
    assert f"port {port}" in result.stderr
    assert not (own.state_dir / "sandbox" / "state.json").exists()
