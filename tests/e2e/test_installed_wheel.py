"""`ops` as a team installs it: a wheel in a fresh virtual environment, used outside the checkout.

Nothing here may reach the source tree: the wheel is built, installed with its
`sandbox` extra into a new venv, and every command runs from an empty folder
with no OPS_* variable pointing back at the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.sandbox import REPO, require_docker


def _run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{args}: {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )
    return done.stdout


@pytest.mark.timeout(2400)  # each step's own timeout (600 s at most) fits inside
def test_wheel_with_sandbox_extra_works_from_an_empty_folder(tmp_path: Path) -> None:
    require_docker()
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
        cwd=tmp_path,
        env=dict(os.environ),
    )
    (wheel,) = wheels.glob("fleetops-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=dict(os.environ))
    _run(
        # --no-compile: byte-compiling every module of moto and ansible-core was most of
        # the install's time; Python compiles what `ops` imports when it imports it
        [str(venv / "bin" / "pip"), "install", "-q", "--no-compile", f"{wheel}[sandbox]"],
        cwd=tmp_path,
        env=dict(os.environ),
        timeout=600,
    )

    team = tmp_path / "team-repo"
    team.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPS_", "AWS_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    env["OPS_STATE_DIR"] = str(tmp_path / "state")
    ops = str(venv / "bin" / "ops")

    _run([ops, "init"], cwd=team, env=env)
    assert (team / "inventories" / "production" / "ops.yml").is_file()
    where = _run([ops, "--version", "-v"], cwd=team, env=env)
    assert f"project: {team.resolve()}" in where, where
    assert str(REPO) not in where

    try:
        _run([ops, "sandbox", "up", "--hosts", "2"], cwd=team, env=env, timeout=600)
        for line in _run([ops, "sandbox", "env"], cwd=team, env=env).splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value.strip("'")
        assert (team / "inventories" / "sandbox" / "hosts.yml").is_file()

        ran = _run(
            [ops, "--yes", "--output", "json", "run", "--target", "Env=sandbox", "--", "hostname"],
            cwd=team,
            env=env,
        )
        assert json.loads(ran)["summary"] == {"Success": 2}, ran

        played = _run(
            [
                ops,
                "--yes",
                "--output",
                "json",
                "playbook",
                "examples/ten_tasks.yml",
                "--target",
                "Env=sandbox",
                "--via",
                "ssh",
            ],
            cwd=team,
            env=env,
        )
        recap = json.loads(played)
        assert [h["status"] for h in recap["hosts"]] == ["ok", "ok"], played

        doctor = json.loads(_run([ops, "--output", "json", "doctor"], cwd=team, env=env))
        assert doctor and all(check["ok"] for check in doctor), doctor
        assert {c["piece"] for c in doctor} >= {"project", "aws", "docker", "ansible", "ssh"}
    finally:
        subprocess.run(
            [ops, "sandbox", "down"], cwd=team, env=env, capture_output=True, timeout=300
        )
    assert not (team / "inventories" / "sandbox" / "hosts.yml").exists()
