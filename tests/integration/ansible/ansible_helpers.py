"""Helpers shared by the Ansible integration tests (a module, so tests can import it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ops.fleet.inventory import InventoryHost
from ops.sandbox.hosts import RunningHost

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = Path(__file__).parent / "playbooks"


def inventory_hosts(hosts: list[RunningHost]) -> list[InventoryHost]:
    return [
        InventoryHost(
            instance_id=f"i-{0x0A000000 + i:017x}",
            name=h.name,
            role=h.role,
            env="sandbox",
            platform_name="debian",
            platform_version="12",
            az="us-east-1a",
            ssh_host="127.0.0.1",
            ssh_port=h.ssh_port,
            app_port=h.app_port,
            ssh_user="root",
            extra_vars={"ansible_python_interpreter": "/usr/bin/python3"},
        )
        for i, h in enumerate(hosts, start=1)
    ]


def docker_exec(container: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", container, *argv], capture_output=True, text=True, timeout=60
    )
