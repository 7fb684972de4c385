"""One real container behind the emulator: SendCommand runs in it with `docker exec`."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from sandbox_aws_helpers import Ssm

from ops.sandbox.aws_side import AwsSandbox, ContainerHost
from tests.support.sandbox import in_ci

PREFERRED = "fleetops/host:debian-12"


def _local_image() -> str | None:
    if shutil.which("docker") is None:
        return None
    done = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    images = [line for line in done.stdout.split() if not line.endswith(":<none>")]
    return PREFERRED if PREFERRED in images else (images[0] if images else None)


@pytest.fixture(scope="module")
def container() -> Iterator[tuple[str, str]]:
    image = _local_image()
    if image is None:
        if in_ci():
            pytest.fail("no Docker engine or no local image; CI must provide fleetops/host")
        pytest.skip("no Docker engine or no local image")
    name = f"fleetops-ssm-test-{uuid.uuid4().hex[:8]}"
    hostname = f"ssm-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--rm",
            "--network",
            "host",
            "--name",
            name,
            "--hostname",
            hostname,
            image,
            "sleep",
            "infinity",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield name, hostname
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_hostname_comes_from_the_container(
    ssm: Ssm, aws: AwsSandbox, container: tuple[str, str]
) -> None:
    name, hostname = container
    [instance] = aws.add_container_hosts(
        [ContainerHost(container=name, name="ctr-1", role="container", platform="debian-12")]
    )
    command = ssm.wait(ssm.shell([instance], "hostname", "cd /etc && pwd >&2"), timeout=60)
    assert command["Status"] == "Success"
    reply = ssm.get(command["CommandId"], instance)
    assert reply["StandardOutputContent"] == f"{hostname}\n"
    assert reply["StandardErrorContent"] == "/etc\n"
    info = ssm.client.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [instance]}]
    )["InstanceInformationList"][0]
    assert info["ComputerName"] == hostname
    assert (info["PlatformName"], info["PlatformVersion"]) == ("Debian GNU/Linux", "12")

    timed = ssm.client.send_command(
        InstanceIds=[instance],
        DocumentName="AWS-RunShellScript",
        Parameters={
            "commands": ["sleep 30"],
            "executionTimeout": ["1"],
            "workingDirectory": ["/tmp"],
        },
    )["Command"]["CommandId"]
    result = ssm.wait(timed, timeout=20)
    assert result["StatusDetails"] == "ExecutionTimedOut"
    assert ssm.get(timed, instance)["ResponseCode"] == 137
    processes = subprocess.run(
        ["docker", "top", name], capture_output=True, text=True, check=False
    ).stdout
    assert "sleep 30" not in processes


def _started_at(container: str) -> str:
    """When Docker last started the container: a restart changes it."""
    return subprocess.run(
        ["docker", "inspect", "-f", "{{.State.StartedAt}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_exit_194_restarts_the_container_and_runs_again(
    ssm: Ssm, aws: AwsSandbox, container: tuple[str, str]
) -> None:
    name, _ = container
    [instance] = aws.add_container_hosts(
        [ContainerHost(container=name, name="ctr-2", role="container-reboot")]
    )
    started = _started_at(name)
    script = (
        "if [ -f /root/.rebooted ]; then echo second run; else touch /root/.rebooted; exit 194; fi"
    )
    command_id = ssm.shell([instance], script)
    pings = ssm.pings_until_success(command_id, instance, timeout=60)
    reply = ssm.get(command_id, instance)
    assert (reply["Status"], reply["ResponseCode"]) == ("Success", 0)
    assert reply["StandardOutputContent"] == "second run\n"
    assert "ConnectionLost" in pings
    assert ssm.ping(instance) == "Online"
    restarted = _started_at(name)
    assert restarted != started

    # a Linux exit status is 8 bits: `exit 3010` is 194 there, which is why synthetic
    # hosts read `exit 3010` as 194 too (a reboot), not as Windows' 3010
    wrapped = ssm.wait(ssm.shell([instance], "sh -c 'exit 3010'; echo $?"), timeout=60)
    assert ssm.get(wrapped["CommandId"], instance)["StandardOutputContent"] == "194\n"
    assert _started_at(name) == restarted
