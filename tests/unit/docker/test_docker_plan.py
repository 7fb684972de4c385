"""`ops docker install`'s plan: per-host steps, skips with reasons, end-of-support flags."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from click.testing import CliRunner

from ops.cli import docker as docker_cli
from ops.cli.main import cli
from ops.config import DockerSettings
from ops.errors import BadInput, ExitCode
from ops.fleet.inventory import InventoryHost
from ops.transports.ansible import FAILED, OK, HostRecap
from ops.workflows import docker as wf

HOSTS = [
    InventoryHost("i-0000000000000000a", "web-1", platform_name="Debian", platform_version="12"),
    InventoryHost("i-0000000000000000b", "web-2", platform_name="Ubuntu", platform_version="22.04"),
    InventoryHost(
        "i-0000000000000000c", "old-1", platform_name="Amazon Linux", platform_version="2"
    ),
    InventoryHost(
        "i-0000000000000000d", "new-1", platform_name="Amazon Linux", platform_version="2023.6.2024"
    ),
    InventoryHost(
        "i-0000000000000000e", "win-1", platform_name="Microsoft Windows", platform_version="2022"
    ),
    InventoryHost("i-0000000000000000f", "what-1"),
]


def test_each_platform_gets_its_install_path_and_others_are_skipped_with_a_reason() -> None:
    plan = wf.plan(wf.InstallRequest(via="ssm"), HOSTS, DockerSettings())
    by_name = {s.host.name: s for s in plan.steps}
    assert by_name["web-1"].how == by_name["web-2"].how == "apt docker.io"
    assert by_name["old-1"].how == "amazon-linux-extras install -y docker"
    assert by_name["new-1"].how == "dnf install -y docker"
    for name in ("web-1", "web-2", "old-1", "new-1"):
        assert by_name[name].step == wf.STEP
    for name in ("win-1", "what-1"):
        assert by_name[name].step is None
        assert "is not supported" in by_name[name].reason
    assert "Microsoft Windows 2022" in by_name["win-1"].reason
    # Only the supported hosts reach the playbook; skipped ones are never sent.
    assert plan.playbook is not None
    assert [h.name for h in plan.playbook.hosts] == ["web-1", "web-2", "old-1", "new-1"]
    assert plan.playbook.request.playbook.name == "docker_install.yml"
    assert plan.playbook.request.via == "ssm"


def test_amazon_linux_2_is_flagged_past_end_of_support() -> None:
    plan = wf.plan(wf.InstallRequest(), HOSTS, DockerSettings())
    rows = {row["name"]: row for row in plan.as_dict()["hosts"]}
    past = datetime.now(UTC).date() > date(2026, 6, 30)
    assert rows["old-1"]["end_of_support"] == "2026-06-30"
    assert rows["old-1"]["past_end_of_support"] is past
    assert rows["new-1"]["past_end_of_support"] is False


def test_settings_become_the_role_variables() -> None:
    docker = DockerSettings(("deploy",), "50m", 5, False)
    plan = wf.plan(wf.InstallRequest(via="ssh", allow_restart=True), HOSTS[:1], docker)
    assert plan.playbook is not None
    assert dict(plan.playbook.request.extravars) == {
        "docker_engine_users": ["deploy"],
        "docker_engine_log_max_size": "50m",
        "docker_engine_log_max_file": 5,
        "docker_engine_live_restore": False,
        "docker_engine_allow_restart": True,
    }


def test_only_unsupported_hosts_plan_no_playbook_and_run_sends_nothing() -> None:
    plan = wf.plan(wf.InstallRequest(), HOSTS[4:], DockerSettings())
    assert plan.playbook is None
    report = wf.run(plan, settings=None, journal=None)  # type: ignore[arg-type]
    assert [h.result for h in report.hosts] == ["skipped", "skipped"]
    assert report.exit_code == ExitCode.OK and report.run_id is None


@pytest.mark.parametrize(("via", "hosts"), [("telnet", HOSTS), ("ssm", [])])
def test_bad_plans_are_refused(via: str, hosts: list[InventoryHost]) -> None:
    with pytest.raises(BadInput):
        wf.plan(wf.InstallRequest(via=via), hosts, DockerSettings())


def outcome(recap: HostRecap | None) -> wf.HostOutcome:
    return wf.HostOutcome(wf.HostStep(HOSTS[0], wf.STEP, how="apt docker.io"), recap)


def test_the_recap_tells_whether_the_step_had_already_happened() -> None:
    unchanged = HostRecap(HOSTS[0].instance_id, "web-1", OK, ok=20, changed=0)
    changed = HostRecap(HOSTS[0].instance_id, "web-1", OK, ok=20, changed=4)
    failed = HostRecap(HOSTS[0].instance_id, "web-1", FAILED, ok=3, failed=1)
    assert wf.done_by_recap(unchanged) and not wf.done_by_recap(changed)
    assert not wf.done_by_recap(failed)
    assert [outcome(r).result for r in (unchanged, changed, failed, None)] == [
        "unchanged",
        "changed",
        "failed",
        "not_run",
    ]
    again = wf.InstallReport("r1", "succeeded", [outcome(unchanged)], 1.0, ExitCode.OK)
    first = wf.InstallReport("r2", "succeeded", [outcome(changed)], 1.0, ExitCode.OK)
    assert again.nothing_changed and again.changed == 0
    assert not first.nothing_changed and first.changed == 4


def test_unknown_via_exits_2_before_any_host(monkeypatch: pytest.MonkeyPatch) -> None:
    touched: list[str] = []
    monkeypatch.setattr(docker_cli, "resolve_hosts", lambda *a, **k: touched.append("hosts"))
    result = CliRunner().invoke(cli, ["docker", "install", "--via", "telnet", "--yes"])
    assert result.exit_code == 2, result.output
    assert "--via" in result.output and "telnet" in result.output
    assert touched == []


def test_dry_run_prints_the_plan_and_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_cli, "resolve_hosts", lambda *a, **k: list(HOSTS))

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("a dry run must not run anything")

    monkeypatch.setattr(wf, "run", refuse)
    result = CliRunner().invoke(cli, ["--output", "json", "docker", "install", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert '"step": "docker_install"' in result.output
    assert '"how": "amazon-linux-extras install -y docker"' in result.output
