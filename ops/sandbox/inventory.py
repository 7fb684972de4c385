"""The sandbox fleet as an Ansible inventory: loopback, each host's own port, the sandbox key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ops.sandbox.hosts import KNOWN_HOSTS
from ops.sandbox.state import SandboxState


def render(state: SandboxState) -> dict[str, Any]:
    hosts: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {}
    for host in state.hosts:
        hosts[host.name] = {
            "ansible_host": "127.0.0.1",
            "ansible_port": host.ssh_port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": state.key_path,
            "ansible_python_interpreter": "/usr/bin/python3",
            "instance_id": host.instance_id,
            "container": host.container,
            "platform": host.platform,
            "role": host.role,
            "app_port": host.app_port,
        }
        for group in (f"role_{host.role}", f"platform_{host.platform}", "env_sandbox"):
            groups.setdefault(group, {"hosts": {}})["hosts"][host.name] = None
    return {
        "all": {
            "hosts": hosts,
            "children": groups,
            "vars": {
                # the host keys `up` verified over paramiko, so checking stays strict
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=yes "
                f"-o UserKnownHostsFile={Path(state.key_path).parent / KNOWN_HOSTS}",
            },
        }
    }


def write(state: SandboxState, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by `ops sandbox up`; removed by `ops sandbox down`. Do not edit.\n"
    path.write_text(header + yaml.safe_dump(render(state), sort_keys=True))
    return path
