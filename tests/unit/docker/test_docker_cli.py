"""`ops docker install` and `status` as printed: the table, the no-change line, exit codes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from ops.cli import docker as docker_cli
from ops.cli.main import cli
from ops.config import DockerSettings
from ops.errors import ExitCode
from ops.fleet.inventory import InventoryHost
from ops.transports.ansible import OK, HostRecap
from ops.workflows import docker as wf
from ops.workflows import docker_status as st

WEB = InventoryHost(
    "i-0000000000000000a",
    "web-1",
    platform_name="Debian",
    platform_version="12",
    agent_status="Online",
)
OLD = InventoryHost(
    "i-0000000000000000b",
    "old-1",
    platform_name="Amazon Linux",
    platform_version="2",
    agent_status="Online",
)
GONE = InventoryHost(
    "i-0000000000000000c",
    "gone-1",
    platform_name="Debian",
    platform_version="12",
    agent_status="ConnectionLost",
)


def fake_run(changed: int) -> Any:
    def run(plan: wf.InstallPlan, *_a: object, **_k: object) -> wf.InstallReport:
        outcomes = [
            wf.HostOutcome(
                s, HostRecap(s.host.instance_id, s.host.name, OK, ok=12, changed=changed)
            )
            for s in plan.steps
        ]
        return wf.InstallReport("run-1", "succeeded", outcomes, 3.0, ExitCode.OK)

    return run


@pytest.mark.parametrize(
    ("changed", "line"), [(0, "nothing changed: Docker was already"), (5, "changed=10")]
)
def test_install_says_whether_anything_changed(
    monkeypatch: pytest.MonkeyPatch, changed: int, line: str
) -> None:
    monkeypatch.setattr(docker_cli, "resolve_hosts", lambda *a, **k: [WEB, OLD])
    monkeypatch.setattr(wf, "run", fake_run(changed))
    result = CliRunner().invoke(cli, ["--no-color", "docker", "install", "--yes"])
    assert result.exit_code == 0, result.output
    assert line in result.output
    past = OLD.platform.past_end_of_support()
    assert ("al2 (PAST END OF SUPPORT)" in result.output) is past


def test_install_without_yes_and_without_a_terminal_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(docker_cli, "resolve_hosts", lambda *a, **k: [WEB])
    monkeypatch.setattr(wf, "run", fake_run(0))
    result = CliRunner().invoke(cli, ["docker", "install"])
    assert result.exit_code == 2
    assert "pass --yes" in result.output


def test_status_asks_only_online_hosts_and_exits_1_on_drift(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[list[str]] = []

    def gather(
        _t: object, hosts: list[InventoryHost], docker: DockerSettings, _c: object
    ) -> list[st.HostStatus]:
        asked.append([h.name for h in hosts])
        rows = []
        for host in hosts:
            row = st.HostStatus(
                host.instance_id, host.name, host.platform.key, False, answered=True
            )
            row.installed = row.running = True
            rows.append(row)
        return rows

    monkeypatch.setattr(docker_cli, "resolve_hosts", lambda *a, **k: [WEB, GONE])
    monkeypatch.setattr(docker_cli, "open_transport", lambda settings: object())
    monkeypatch.setattr(st, "gather", gather)
    result = CliRunner().invoke(cli, ["--output", "json", "docker", "status"])
    assert asked == [["web-1"]]
    assert result.exit_code == 1
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["web-1"]["drift"] == []
    assert rows["gone-1"]["drift"] == ["agent ConnectionLost: not asked"]
    assert "1 host(s) drift from the settings" in result.output
