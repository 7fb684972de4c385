"""Sandbox container hosts for the Ansible push tests: real sshd, real keys, loopback only."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.sandbox.hosts import HostSpec, RunningHost, free_ports, start_hosts, stop_hosts


@pytest.fixture(scope="session", autouse=True)
def venv_on_path() -> None:
    """ansible-playbook and ansible-inventory from the same venv as the tests."""
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[RunningHost], Path]]:
    """Three Debian hosts; torn down whatever the tests did."""
    key_dir = tmp_path_factory.mktemp("keys")
    label = f"ans{uuid.uuid4().hex[:8]}"
    ssh_ports = free_ports(3)
    app_ports = free_ports(3)
    specs = [
        HostSpec(name=f"web{i}", platform="debian", role="web", ssh_port=s, app_port=a)
        for i, (s, a) in enumerate(zip(ssh_ports, app_ports, strict=True), start=1)
    ]
    try:
        hosts = start_hosts(specs, key_dir=key_dir, label=label)
        yield hosts, key_dir
    finally:
        stop_hosts(label)
