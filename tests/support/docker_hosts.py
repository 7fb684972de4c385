"""Putting a sandbox Debian host back without Docker, as the shared sandbox expects."""

from __future__ import annotations

import subprocess
from typing import Any

# Stop the daemon the role started (no systemd in a container host), purge the
# package and everything it left, its boot service too, so the next install
# starts from nothing and a reboot starts no daemon.
RESET = (
    "if [ -s /var/run/docker.pid ]; then pid=$(cat /var/run/docker.pid); kill $pid;"
    " while kill -0 $pid 2>/dev/null; do sleep 0.2; done; fi;"
    " pkill -x dockerd; pkill -x containerd;"
    " DEBIAN_FRONTEND=noninteractive dpkg --purge docker.io >/dev/null 2>&1;"
    " update-rc.d -f fleetops-dockerd remove >/dev/null 2>&1;"
    " rm -rf /var/lib/docker /etc/docker /var/lib/fleetops /var/log/dockerd.log"
    " /etc/init.d/fleetops-dockerd"
)


def in_host(
    host: dict[str, Any], script: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", host["container"], "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
