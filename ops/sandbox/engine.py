"""Make sure a Docker engine answers before any container host is started."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from ops.errors import BadInput


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def ensure_docker(log_dir: Path) -> None:
    """Start the engine where we may (root, Debian's docker.io); otherwise say what to do."""
    if docker_answers():
        return
    if os.geteuid() != 0:
        raise BadInput(
            "no Docker engine answers and this is not root: start Docker, "
            "or use --hosts 0 --synthetic N, which needs no Docker"
        )
    if shutil.which("dockerd") is None:
        if shutil.which("apt-get") is None:
            raise BadInput("no Docker engine and no apt-get to install docker.io; install Docker")
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "docker.io"],
            check=True,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "dockerd.log").open("ab") as log:
        subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if docker_answers():
            return
        time.sleep(1)
    raise BadInput(f"dockerd did not answer within 60 s; see {log_dir / 'dockerd.log'}")
