"""`ops docker status`: the probe's answer parsed as untrusted data, and drift from settings."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

from ops.config import DockerSettings
from ops.fleet.inventory import InventoryHost
from ops.transports.ssm import FAILED, SUCCESS, HostResult
from ops.workflows import docker_status as st

HOST = InventoryHost("i-0000000000000000a", "web-1", platform_name="Debian", platform_version="12")
AL2 = InventoryHost(
    "i-0000000000000000b", "old-1", platform_name="Amazon Linux", platform_version="2"
)


def healthy(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "installed": True,
        "client_version": "Docker version 20.10.24+dfsg1, build 297e128",
        "running": True,
        "ServerVersion": "20.10.24+dfsg1",
        "Driver": "vfs",
        "LoggingDriver": "json-file",
        "LiveRestoreEnabled": True,
        "ContainersRunning": 0,
        "DockerRootDir": "/var/lib/docker",
        "config": {
            "log-driver": "json-file",
            "log-opts": {"max-size": "10m", "max-file": "3"},
            "live-restore": True,
        },
        "disk_bytes": 4096,
        "fs_free_bytes": 10**9,
        "restart_pending": False,
        "group": ["ec2-user"],
        "users": ["ec2-user"],
    }
    data.update(changes)
    return data


def answer(data: Any, host: InventoryHost = HOST, noise: str = "") -> st.HostStatus:
    text = noise + st.PREFIX + json.dumps(data) + "\n"
    result = HostResult(host.instance_id, host.name, SUCCESS, 0, text)
    return st.host_status(result, host, DockerSettings())


def test_a_healthy_host_shows_every_fact_and_no_drift() -> None:
    row = answer(healthy(), noise="motd line\nOPS-DOCKER not json at all\n")
    assert row.answered and row.installed and row.running
    assert (row.version, row.storage_driver, row.logging_driver) == (
        "20.10.24+dfsg1",
        "vfs",
        "json-file",
    )
    assert row.rotation == "10m x 3" and row.live_restore is True
    assert (row.containers_running, row.disk_bytes) == (0, 4096)
    assert row.drift == []
    assert row.as_dict()["rotation"] == {"max_size": "10m", "max_file": "3"}


def test_not_installed_is_drift_and_not_done() -> None:
    row = answer({"installed": False, "running": False, "config": {}, "group": None, "users": []})
    assert row.installed is False and row.drift == ["not installed"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"running": False, "LoggingDriver": None}, "daemon not running"),
        (
            {"config": {"log-opts": {"max-size": "1g", "max-file": "3"}, "live-restore": True}},
            "log max-size 1g, want 10m",
        ),
        ({"config": {"live-restore": True}}, "log max-size unset, want 10m"),
        (
            {"config": {"log-driver": "awslogs", "live-restore": True}},
            "log-driver awslogs: rotation not applied",
        ),
        (
            {"config": {"log-opts": {"max-size": "10m", "max-file": "3"}}},
            "live-restore False, want True",
        ),
        ({"LiveRestoreEnabled": False}, "daemon runs another live-restore: restart pending"),
        ({"LoggingDriver": "journald"}, "daemon runs log-driver journald: restart pending"),
        ({"restart_pending": True}, "restart held"),
        ({"group": []}, "ec2-user not in the docker group"),
        ({"config_error": "Expecting value: line 1 column 1"}, "daemon.json unreadable"),
        ({"enabled": "disabled"}, "service disabled, not enabled at boot"),
    ],
)
def test_drift_names_what_differs(changes: dict[str, Any], expected: str) -> None:
    row = answer(healthy(**changes))
    assert any(expected in item for item in row.drift), row.drift


@pytest.mark.parametrize(
    "data",
    [
        healthy(installed="yes", running=1, ContainersRunning="9", disk_bytes=-5, Driver=["vfs"]),
        healthy(ContainersRunning=True, LiveRestoreEnabled="true", group="docker"),
    ],
)
def test_fields_of_the_wrong_type_are_dropped_not_trusted(data: dict[str, Any]) -> None:
    row = answer(data)
    for value in (row.containers_running, row.disk_bytes):
        assert value is None or (isinstance(value, int) and value >= 0 and value is not True)
    assert row.installed in (True, None) and row.running in (True, None)
    assert isinstance(row.storage_driver, str) and isinstance(row.docker_group, list)


def test_long_text_is_cut() -> None:
    row = answer(healthy(ServerVersion="9" * 5000))
    assert len(row.version) == 200


@pytest.mark.parametrize(
    "stdout",
    ["", "hello\n", st.PREFIX + "{not json\n", st.PREFIX + "[1, 2]\n", st.PREFIX + '"text"\n'],
)
def test_an_answer_that_is_not_a_status_line_is_reported(stdout: str) -> None:
    row = st.host_status(
        HostResult(HOST.instance_id, "web-1", SUCCESS, 0, stdout), HOST, DockerSettings()
    )
    assert not row.answered and "not a docker status line" in row.error
    assert row.drift == [row.error]


def test_a_failed_command_is_reported_with_its_status() -> None:
    result = HostResult(HOST.instance_id, "web-1", FAILED, 1, "", "boom\n")
    row = st.host_status(result, HOST, DockerSettings())
    assert row.error == "Failed: boom" and row.drift == [row.error]


def test_python_missing_on_the_host_is_an_error_row() -> None:
    row = answer({"error": "python3 is missing"})
    assert row.drift == ["python3 is missing"]


def test_amazon_linux_2_rows_carry_the_end_of_support_flag() -> None:
    row = answer(healthy(), host=AL2)
    assert row.platform == "al2"
    assert row.as_dict()["past_end_of_support"] is row.past_end_of_support


def test_client_version_stands_in_when_the_daemon_is_down() -> None:
    data = healthy(running=False)
    del data["ServerVersion"]
    assert answer(data).version == "20.10.24+dfsg1"


def test_user_names_reach_the_probe_as_quoted_arguments() -> None:
    script = st.probe_script(["ec2-user", "odd name$(x)"])
    first = next(line for line in script.splitlines() if line.startswith("python3 - "))
    assert shlex.split(first.split("<<")[0])[2:] == ["ec2-user", "odd name$(x)"]
    assert "'odd name$(x)'" in first
    assert "OPS_DOCKER_PROBE" in script.splitlines()[-1]
