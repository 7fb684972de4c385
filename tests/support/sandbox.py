"""Helpers for tests that drive a sandbox fleet through the `ops` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ops.sandbox.engine import docker_answers

REPO = Path(__file__).resolve().parents[2]
SESSION_PLATFORMS = "debian:2,al2:1,al2023:1"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_docker() -> None:
    """Skip without an engine on a laptop; under CI a missing engine is a failure."""
    if docker_answers():
        return
    if in_ci():
        pytest.fail("CI is set but no Docker engine answers (scripts/docker_engine.sh)")
    pytest.skip("no Docker engine answers")


def ops_command() -> list[str]:
    return [sys.executable, "-m", "ops"]


@dataclass
class SandboxSession:
    state_dir: Path
    inventories: Path
    env: dict[str, str] = field(default_factory=dict)
    status: dict[str, object] = field(default_factory=dict)

    @property
    def process_env(self) -> dict[str, str]:
        """What a subprocess `ops` needs to find this sandbox."""
        return {
            **os.environ,
            **self.env,
            "OPS_STATE_DIR": str(self.state_dir),
            "OPS_INVENTORIES": str(self.inventories),
        }

    def ops(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ops_command(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.process_env,
            cwd=REPO,
        )


def make_inventories(folder: Path) -> Path:
    """A private copy of inventories/, so a test sandbox never overwrites the user's files."""
    target = folder / "inventories"
    shutil.copytree(REPO / "inventories", target, ignore=shutil.ignore_patterns("hosts.yml"))
    return target
