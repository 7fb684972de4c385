"""The pure parts of `ops patch run` and `ops patch report`: scripts, parsers, the report."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
from botocore.exceptions import ClientError

from ops.cli.patch_run import _finish
from ops.engine.budget import Amount, FailureBudget
from ops.engine.plan import Settled, StepContext
from ops.engine.runtime import RunReport
from ops.errors import BadInput
from ops.fleet.discovery import Host
from ops.journal.store import Journal, open_journal
from ops.transports.ssm import FAILED, NOT_STARTED, SUCCESS, HostResult
from ops.workflows.patch_report import build_report, render_html, render_markdown
from ops.workflows.patch_run import (
    AlarmGate,
    Clients,
    HostEntry,
    HostStep,
    PatchRun,
    Timing,
    apply_script,
    parse_versions,
    postcheck_script,
    precheck_script,
    sections,
)

UPDATES = [{"name": "fleetops-tool", "current": "1.0-1", "new": "1.1-1", "security": "False"}]


def test_sections_and_versions_read_dpkg_and_rpm_lines() -> None:
    found = sections("noise\n@@boot\nabc\n@@versions\nfleetops-tool\t1.1-1\nkernel-5.10-1.x86_64\n")
    assert found["boot"] == ["abc"]
    assert parse_versions(found["versions"]) == {"fleetops-tool": "1.1-1", "kernel": "5.10-1"}
    assert parse_versions(["not a version line"]) == {}


@pytest.mark.parametrize(
    "script",
    [
        precheck_script(UPDATES),
        apply_script(UPDATES),
        postcheck_script(True, ["web; rm -rf /"], 8080, 5),
        postcheck_script(False, [], None, 5),
    ],
)
def test_host_scripts_are_valid_shell(script: str) -> None:
    done = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


def test_container_names_reach_the_shell_quoted() -> None:
    script = postcheck_script(True, ["web; rm -rf /"], None, 5)
    assert "'web; rm -rf /'" in script


def test_a_tampered_journal_entry_is_refused() -> None:
    bad = {"name": "web-1", "updates": [{"name": "x; reboot", "new": "1"}]}
    with pytest.raises(BadInput, match="bad package entry"):
        HostEntry.from_dict("i-1", bad)
    good = HostEntry.from_dict("i-1", {"name": "web-1", "updates": UPDATES, "members": [["a", 80]]})
    assert good.membership[0].port == 80


class _Alarms:
    def __init__(self, state: str) -> None:
        self.state = state

    def get_paginator(self, _name: str) -> Any:
        state = self.state

        class Pages:
            def paginate(self, AlarmNames: list[str]) -> list[dict[str, Any]]:
                return [
                    {"MetricAlarms": [{"AlarmName": n, "StateValue": state} for n in AlarmNames]}
                ]

        return Pages()


def test_alarm_gate_holds_on_alarm_and_passes_on_ok() -> None:
    assert AlarmGate(_Alarms("OK"), ["a"]).check().ok
    held = AlarmGate(_Alarms("ALARM"), ["a"]).check()
    assert not held.ok and held.reason == "a is ALARM"


def _journal_run(tmp_path: Path) -> tuple[Journal, str]:
    journal = Journal(tmp_path / "journal.db")
    entries = {
        "i-1": {"name": "web-1", "platform": "debian-12", "updates": UPDATES},
        "i-2": {"name": "web-2", "platform": "al2", "updates": UPDATES},
        "i-3": {"name": "web-3", "platform": "debian-12", "updates": UPDATES},
    }
    run = journal.begin_run(
        "patch", {"entries": entries, "waves": [["i-1"], ["i-2"], ["i-3"]]}, "sandbox"
    )

    def out(data: dict[str, Any]) -> dict[str, Any]:
        return {"stdout": json.dumps(data)}

    pre = {
        "boot_id": "b1",
        "kernel": "6.1",
        "os": "debian 12",
        "versions": {"fleetops-tool": "1.0-1"},
    }
    journal.intend(run.id, "precheck", [("i-3", {"name": "web-3"})], 2)
    journal.record_steps(
        run.id,
        "precheck",
        [("i-1", SUCCESS, out(pre)), ("i-2", FAILED, {"stderr": "boom | here"})],
    )
    steps = {
        "drain": {"seconds": 5.0},
        "apply": {"versions": {"fleetops-tool": "1.1-1"}, "seconds": 3.0},
        "reboot": {"rebooted": True, "boot_before": "b1", "boot_after": "b2", "seconds": 4.0},
        "postcheck": {"kernel": "6.1"},
        "register": {"seconds": 6.0},
    }
    for step, data in steps.items():
        journal.intend(run.id, step, [("i-1", {"name": "web-1"})], 0)
        journal.record_steps(run.id, step, [("i-1", SUCCESS, out(data))])
        journal.intend(run.id, step, [("i-1", {"name": "web-1"})], 0)  # a resume's intent
    journal.end_run(run.id, "stopped")
    return journal, run.id


def test_report_from_the_journal(tmp_path: Path) -> None:
    journal, run_id = _journal_run(tmp_path)
    report = build_report(journal, run_id)
    hosts = {h["name"]: h for h in report["hosts"]}
    assert hosts["web-1"]["state"] == "patched"
    assert hosts["web-1"]["changed"] == [{"name": "fleetops-tool", "old": "1.0-1", "new": "1.1-1"}]
    assert hosts["web-1"]["rebooted"] and hosts["web-1"]["drain_s"] == 5.0
    assert hosts["web-2"]["state"] == "failed"
    assert hosts["web-2"]["failure"] == {
        "step": "precheck",
        "status": FAILED,
        "output": "boom | here",
    }
    assert hosts["web-3"]["state"] == "not started"
    assert report["summary"]["first_unfinished_wave"] == 1
    markdown = render_markdown(report)
    assert "stopped at wave 1" in markdown and "boom | here" in markdown
    assert "fleetops-tool 1.0-1 -> 1.1-1" in markdown
    assert "<td>web-1</td>" in render_html(report)
    with pytest.raises(BadInput, match="no run"):
        build_report(journal, "nope")
    other = journal.begin_run("run", {}, "sandbox")
    with pytest.raises(BadInput, match="not a patch run"):
        build_report(journal, other.id)


def _step_run(action: Any, *, first: bool, spent: bool) -> list[HostResult]:
    entry = HostEntry.from_dict("i-1", {"name": "web-1", "updates": UPDATES})
    seen: list[tuple[str, HostResult]] = []
    patch_run = PatchRun(
        Clients(None, None, None), {"i-1": entry}, Timing(), lambda s, r: seen.append((s, r))
    )
    budget = FailureBudget(1, Amount(1, False), Amount(0, False))
    if spent:
        budget.record(FAILED)
    results: list[HostResult] = []
    context = StepContext(
        transport=None,  # type: ignore[arg-type]  # a host step never uses the fan-out
        recorder=None,  # type: ignore[arg-type]
        budget=budget,
        on_result=results.append,
        cancel=threading.Event(),
        register=lambda _cancel: None,
    )
    HostStep("drain", action, patch_run, first=first).run(
        [Host("i-1", "web-1")], context, Settled()
    )
    assert [r for _s, r in seen] == results
    return results


def test_an_aws_error_fails_the_host_and_spends_the_budget() -> None:
    def refused(_entry: HostEntry, _facts: dict[str, Any]) -> dict[str, Any]:
        raise ClientError({"Error": {"Code": "Throttling", "Message": "slow down"}}, "Op")

    [result] = _step_run(refused, first=False, spent=False)
    assert result.status == FAILED and "Throttling" in result.stderr


def test_a_spent_budget_starts_no_new_host_but_lets_one_in_flight_finish() -> None:
    def fine(_entry: HostEntry, _facts: dict[str, Any]) -> dict[str, Any]:
        return {"seconds": 1.0}

    [first] = _step_run(fine, first=True, spent=True)
    assert first.status == NOT_STARTED
    [later] = _step_run(fine, first=False, spent=True)
    assert later.status == SUCCESS and json.loads(later.stdout) == {"seconds": 1.0}


def test_hosts_the_plan_could_not_read_make_the_run_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPS_STATE_DIR", str(tmp_path))
    arguments = {"entries": {}, "waves": [], "not_planned": {"i-9": "probe Failed"}}
    with open_journal() as journal:
        run = journal.begin_run("patch", arguments, "sandbox")
        journal.end_run(run.id, "succeeded")
    with pytest.raises(click.exceptions.Exit) as ended:
        _finish(SimpleNamespace(output="table"), RunReport([], {}, run_id=run.id), "0")  # type: ignore[arg-type]
    assert ended.value.exit_code == 1
    assert "1 hosts could not be read" in capsys.readouterr().err
