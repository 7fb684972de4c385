"""Container hosts answer real SSH with the sandbox key, reboot, and go away cleanly.

The `amzn-a` host is a STAND-IN for Amazon Linux 2 (a Debian container with
AL2's os-release and shim commands), not Amazon Linux.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from ops.errors import BadInput
from ops.sandbox.hosts import (
    HostSpec,
    RunningHost,
    free_ports,
    list_hosts,
    reboot_host,
    ssh_client,
    start_hosts,
    stop_hosts,
)
from ops.sandbox.keys import load_private_key
from tests.support.sandbox import require_docker


@dataclass
class Fleet:
    label: str
    key_dir: Path
    hosts: dict[str, RunningHost]

    def ssh(self, name: str, command: str) -> tuple[int, str]:
        """Run a command over real SSH; (exit status, stdout)."""
        host = self.hosts[name]
        client: paramiko.SSHClient = ssh_client(
            host.ssh_port, load_private_key(self.key_dir), host.host_key
        )
        try:
            _in, out, _err = client.exec_command(command, timeout=30)
            text = out.read().decode()
            return out.channel.recv_exit_status(), text
        finally:
            client.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_docker()
    label = f"hosts-it-{os.getpid()}"
    key_dir = tmp_path_factory.mktemp("sandbox-keys")
    ports = free_ports(6)
    specs = [
        HostSpec("deb-a", "debian", "web", ports[0], ports[1]),
        HostSpec("deb-b", "debian", "web", ports[2], ports[3]),
        HostSpec("amzn-a", "al2", "worker", ports[4], ports[5]),
    ]
    stop_hosts(label)
    try:
        running = start_hosts(specs, key_dir=key_dir, label=label)
        yield Fleet(label, key_dir, {h.name: h for h in running})
    finally:
        stop_hosts(label)


def test_each_host_answers_with_its_own_hostname(fleet: Fleet) -> None:
    for name in fleet.hosts:
        status, out = fleet.ssh(name, "hostname")
        assert (status, out.strip()) == (0, name)


def test_known_hosts_file_works_for_openssh(fleet: Fleet) -> None:
    host = fleet.hosts["deb-a"]
    proc = subprocess.run(
        [
            "ssh",
            "-i",
            str(fleet.key_dir / "id_ecdsa"),
            "-o",
            f"UserKnownHostsFile={fleet.key_dir / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-p",
            str(host.ssh_port),
            "root@127.0.0.1",
            "sudo -n true && python3 -c 'print(42)'",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode == 255 and "not found" in proc.stderr:
        pytest.skip("no OpenSSH client on this machine")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "42"


def test_debian_host_is_debian(fleet: Fleet) -> None:
    status, out = fleet.ssh("deb-a", ". /etc/os-release && echo $ID $VERSION_ID")
    assert (status, out.strip()) == (0, "debian 12")


def test_standin_claims_amazon_linux_2(fleet: Fleet) -> None:
    status, out = fleet.ssh("amzn-a", "cat /etc/os-release /etc/system-release")
    assert status == 0
    assert 'ID="amzn"' in out
    assert 'VERSION_ID="2"' in out
    assert "Amazon Linux release 2" in out


def test_yum_shim_logs_and_answers_like_yum(fleet: Fleet) -> None:
    status, _ = fleet.ssh("amzn-a", "yum check-update")
    assert status == 100
    status, _ = fleet.ssh("amzn-a", "yum update -y")
    assert status == 0
    status, log = fleet.ssh("amzn-a", "cat /var/log/standin-commands.log")
    assert "yum check-update" in log
    assert "yum update -y" in log


def test_list_hosts_reports_the_fleet(fleet: Fleet) -> None:
    listed = {h.name: h for h in list_hosts(fleet.label)}
    assert set(listed) == set(fleet.hosts)
    for name, host in fleet.hosts.items():
        assert listed[name].ssh_port == host.ssh_port
        assert listed[name].platform == host.platform
        assert listed[name].role == host.role
        assert listed[name].status == "running"


def test_a_taken_port_is_refused(fleet: Fleet) -> None:
    busy = fleet.hosts["deb-a"].ssh_port
    with pytest.raises(BadInput, match=str(busy)):
        start_hosts(
            [HostSpec("late", "debian", "web", busy, busy + 1)],
            key_dir=fleet.key_dir,
            label=fleet.label,
        )


def test_reboot_clears_the_reboot_hint_and_ssh_returns(fleet: Fleet) -> None:
    status, _ = fleet.ssh("amzn-a", "needs-restarting -r")
    assert status == 1, "the update in an earlier test needs a reboot"
    fleet.ssh("deb-b", "touch /run/reboot-required")
    reboot_host(fleet.hosts["amzn-a"].container, key_dir=fleet.key_dir)
    reboot_host(fleet.hosts["deb-b"].container, key_dir=fleet.key_dir)
    assert fleet.ssh("amzn-a", "needs-restarting -r")[0] == 0
    assert fleet.ssh("amzn-a", "hostname")[1].strip() == "amzn-a"
    assert fleet.ssh("deb-b", "test -e /run/reboot-required")[0] == 1


def test_stop_hosts_leaves_nothing_and_is_idempotent(fleet: Fleet) -> None:
    assert stop_hosts(fleet.label) == len(fleet.hosts)
    leftover = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=org.fleetops.sandbox={fleet.label}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert leftover.stdout.strip() == ""
    assert stop_hosts(fleet.label) == 0
    assert list_hosts(fleet.label) == []
