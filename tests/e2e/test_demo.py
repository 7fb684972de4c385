"""The README's demo command, run as a user would on this machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.sandbox import REPO, SandboxSession, make_inventories, require_docker


@pytest.mark.timeout(2100)  # the subprocess's own 1,800 s fits inside
def test_demo_brings_the_fleet_up_and_runs_a_command_across_it(tmp_path: Path) -> None:
    require_docker()
    own = SandboxSession(state_dir=tmp_path / "state", inventories=make_inventories(tmp_path))
    own.state_dir.mkdir()
    env = {**own.process_env, "DEMO_PLATFORMS": "debian:2,al2:1", "DEMO_SYNTHETIC": "20"}
    try:
        demo = subprocess.run(
            ["bash", "scripts/demo.sh"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,  # four deploys on a loaded 2-core machine took it past 1,200 s
        )
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "web-1: up" in demo.stdout and "web-2: up" in demo.stdout
        assert "# Patch run " in demo.stdout and "patched" in demo.stdout  # the report
        assert "the deploy of v3 halted with exit 3" in demo.stdout
        runs = json.loads(own.ops("runs", "list", "--output", "json").stdout)
        # newest first: v3's batch taken back, the failed v3, v2, v1, the Docker
        # install, the patch night, then the two commands
        assert [(r["kind"], r["status"]) for r in runs] == [
            ("deploy", "succeeded"),
            ("deploy", "failed"),
            ("deploy", "succeeded"),
            ("deploy", "succeeded"),
            ("docker", "succeeded"),
            ("patch", "succeeded"),
            ("run", "succeeded"),
            ("run", "succeeded"),
        ]
        # web-1 runs Debian and got Docker; web-2 is the AL2 stand-in and was left out
        for line in own.ops("sandbox", "env").stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            own.env[key] = value.strip("'")
        docker = own.ops("--output", "json", "docker", "status", "--target", "Role=web")
        rows = {r["name"]: r for r in json.loads(docker.stdout)}
        assert (rows["web-1"]["running"], rows["web-1"]["drift"]) == (True, [])
        assert (rows["web-2"]["installed"], rows["web-2"]["platform"]) == (False, "al2")
        # every web host with Docker ended on v2 (v3 was taken back), in service; whether the
        # container's own check answered in time on a loaded machine is not the point here
        plan = own.ops("deploy", "plan", "hello", "--image", "v2", "--output", "json")
        v2 = json.loads(plan.stdout)["digest"]
        hosts = json.loads(own.ops("deploy", "status", "hello", "--output", "json").stdout)
        deployed = {h["name"]: h for h in hosts["hosts"] if rows[h["name"]]["installed"]}
        assert sorted(deployed) == ["web-1"]
        for host in deployed.values():
            assert (host["digest"], host["in_service"]) == (v2, True)
        status = json.loads(own.ops("--output", "json", "sandbox", "status").stdout)
        assert status["running"] is True and len(status["hosts"]) == 3
    finally:
        own.ops("sandbox", "down")
