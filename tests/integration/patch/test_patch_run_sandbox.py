"""`ops patch run` on a private sandbox: real apt, real reboots, a load balancer that
checks health over HTTP, an alarm gate, a failure budget, and the report.

The tests run in file order on one fleet (web-1, web-3, worker-1 on Debian,
web-2 an AL2 stand-in), reset to the older packages first: a failure halts
the run and a resume (the fault cleared) finishes it, an alarm holds the next
wave and a resume (the alarm OK again) finishes it, then a clean patch night
from the older packages with the target group sampled throughout.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.support.patch_sandbox import (
    healthy_web,
    hosts,
    last_run_id,
    reset,
    sampled,
    started_at,
    upgrades,
    versions,
)
from tests.support.sandbox import REPO, SandboxSession, ops_command

OLD, NEW = "1.0-1", "1.1-1"
APPROVED = ("fleetops-tool", "fleetops-libsec", "fleetops-kernel")


def _by_name(session: SandboxSession) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in hosts(session)}


def _start(session: SandboxSession, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*ops_command(), "--yes", "patch", "run", "--poll", "1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=session.process_env,
        cwd=REPO,
    )


def _until_line(process: subprocess.Popen[str], wanted: str, seen: list[str]) -> None:
    """Read stderr until a line starts with `wanted` (the event the test acts on)."""
    assert process.stderr is not None
    for line in process.stderr:
        seen.append(line)
        if line.startswith(wanted):
            return
    raise AssertionError(f"the run ended before {wanted!r}: {''.join(seen)[-3000:]}")


def _finish(process: subprocess.Popen[str], seen: list[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=400)
    return process.returncode, out, "".join(seen) + err


def _report(session: SandboxSession, run_id: str) -> dict[str, Any]:
    done = session.ops("patch", "report", run_id, "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert isinstance(data, dict)
    return data


def _runs(session: SandboxSession) -> list[str]:
    listed = session.ops("--output", "json", "runs", "list")
    assert listed.returncode == 0, listed.stderr
    return [str(run["id"]) for run in json.loads(listed.stdout)]


def test_bad_input_exits_2_before_any_change(patch_sandbox: SandboxSession) -> None:
    runs = _runs(patch_sandbox)
    installed = {h["name"]: versions(h["container"]) for h in hosts(patch_sandbox)}
    for args, words in (
        (("patch", "run", "--wave", "0"), "--wave must be at least 1"),
        (("patch", "run", "--canary", "99"), "--canary 99 is larger than the"),
        (("patch", "run", "--max-errors", "x"), "--max-errors must be a count"),
        (("runs", "resume", "no-such-run"), "no run 'no-such-run'"),
        (("patch", "report", "no-such-run"), "no run 'no-such-run'"),
    ):
        done = patch_sandbox.ops("--yes", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr, done.stderr
    assert _runs(patch_sandbox) == runs  # nothing was started
    assert {h["name"]: versions(h["container"]) for h in hosts(patch_sandbox)} == installed


def _compliance(session: SandboxSession) -> dict[str, Any]:
    done = session.ops("--output", "json", "patch", "compliance")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert isinstance(data, dict)
    return data


def test_compliance_before_any_patch_run(patch_sandbox: SandboxSession) -> None:
    reset(patch_sandbox)
    data = _compliance(patch_sandbox)
    assert data["fleet"] == {
        "hosts": 4,
        "compliant": 0,
        "non-compliant": 4,
        "unknown": 0,
        "compliant_share": 0.0,
    }
    for host in data["hosts"]:
        assert host["state"] == "non-compliant"
        missing = [u["name"] for u in host["missing"]]
        assert sorted(missing) == sorted(APPROVED), host
        assert missing[0] == "fleetops-libsec" and host["missing"][0]["security"]  # security first
        assert host["missing_security"] == 1
        assert [u["name"] for u in host["held"]] == ["docker-fleetops-plugin"]
        assert [u["name"] for u in host["not_approved"]] == ["fleetops-fresh"]
        assert host["days_since_patch"] is None and host["last_patch_run"] is None
    table = patch_sandbox.ops("patch", "compliance", "--name", "web-1")
    assert table.returncode == 0, table.stderr
    assert "never" in table.stdout and "fleetops-libsec 1.0-1->1.1-1 [security]" in table.stdout
    assert "compliant: 0 of 1 hosts (0%)" in table.stdout


def test_a_failing_host_halts_the_run_at_the_budget(patch_sandbox: SandboxSession) -> None:
    reset(patch_sandbox)  # other tests on this fleet may have patched it
    named = _by_name(patch_sandbox)
    process = _start(patch_sandbox, "--max-errors", "0")
    seen: list[str] = []
    _until_line(process, "canary:", seen)  # planned: from now on web-3's commands fail
    fault = patch_sandbox.ops(
        "sandbox", "fault", "set", "fail", "--instance", named["web-3"]["instance_id"]
    )
    assert fault.returncode == 0, fault.stderr
    try:
        code, _out, err = _finish(process, seen)
    finally:
        patch_sandbox.ops("sandbox", "fault", "clear")
    assert code == 3, err
    assert "halted: more than 0 hosts failed" in err
    run_id = last_run_id(patch_sandbox)
    assert run_id and f"ops patch report {run_id}" in err
    report = _report(patch_sandbox, run_id)
    state = {h["name"]: h for h in report["hosts"]}
    # canary web-1, then wave web-2 + web-3: web-2 was in flight and finished
    assert state["web-1"]["state"] == "patched" and state["web-2"]["state"] == "patched"
    assert state["web-3"]["state"] == "failed"
    assert state["web-3"]["failure"]["step"] == "precheck"
    assert state["web-3"]["failure"]["output"]
    assert state["worker-1"]["state"] == "not started"
    assert report["summary"]["first_unfinished_wave"] == 1
    assert versions(named["worker-1"]["container"])["fleetops-tool"] == OLD
    assert versions(named["web-3"]["container"])["fleetops-tool"] == OLD
    # the failed host was never drained: it stays in service
    assert healthy_web(patch_sandbox)[named["web-3"]["instance_id"]] == "healthy"
    markdown = patch_sandbox.ops("patch", "report", run_id)
    assert "## Failures" in markdown.stdout and "web-3: precheck Failed" in markdown.stdout
    assert "stopped at wave 1" in markdown.stdout

    # the cause fixed (fault cleared): resume re-examines web-3 and patches the rest
    resumed = patch_sandbox.ops("--yes", "runs", "resume", run_id, timeout=500)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "re-examining 1 hosts set aside as failed: web-3" in resumed.stderr
    assert "web-1: precheck" not in resumed.stderr and "web-2: precheck" not in resumed.stderr
    report = _report(patch_sandbox, run_id)
    assert {h["name"]: h["state"] for h in report["hosts"]} == dict.fromkeys(named, "patched")
    for host in hosts(patch_sandbox):
        if host["platform"] == "debian":
            assert versions(host["container"])["fleetops-tool"] == NEW
            assert upgrades(host["container"]) == 1, host["name"]  # patched once
    assert healthy_web(patch_sandbox)[named["web-3"]["instance_id"]] == "healthy"


def test_an_alarm_holds_the_next_wave_and_resume_goes_on_once_it_is_ok(
    patch_sandbox: SandboxSession,
) -> None:
    reset(patch_sandbox)
    named = _by_name(patch_sandbox)
    process = _start(patch_sandbox, "--max-unavailable", "1")
    seen: list[str] = []
    _until_line(process, "canary:", seen)
    _until_line(process, "web-1: postcheck Success", seen)
    alarm = patch_sandbox.ops("sandbox", "fault", "set", "alarm", "--param", "name=sandbox-5xx")
    assert alarm.returncode == 0, alarm.stderr
    try:
        code, _out, err = _finish(process, seen)
        assert code == 3, err
        assert "held before the next wave: alarms: sandbox-5xx is ALARM" in err
        run_id = last_run_id(patch_sandbox)
        assert run_id and f"ops runs resume {run_id}` goes on" in err
        report = _report(patch_sandbox, run_id)
        states = {h["name"]: h["state"] for h in report["hosts"]}
        assert states == {
            "web-1": "patched",
            **dict.fromkeys(("web-2", "web-3", "worker-1"), "not started"),
        }
        held = patch_sandbox.ops("--yes", "runs", "resume", run_id)  # still in ALARM
        assert held.returncode == 3, held.stderr
        assert "held before the next wave: alarms: sandbox-5xx is ALARM" in held.stderr
        assert "precheck" not in held.stderr  # no host started
    finally:
        patch_sandbox.ops("sandbox", "fault", "clear")  # the alarm back to OK
    assert versions(named["worker-1"]["container"])["fleetops-tool"] == OLD
    resumed = patch_sandbox.ops("--yes", "runs", "resume", run_id, timeout=500)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "web-1: precheck" not in resumed.stderr  # the canary's wave was done
    report = _report(patch_sandbox, run_id)
    assert report["status"] == "succeeded" and report["summary"]["patched"] == 4
    for host in hosts(patch_sandbox):
        if host["platform"] == "debian":
            assert versions(host["container"])["fleetops-tool"] == NEW
            assert upgrades(host["container"]) == 1, host["name"]  # patched once
    assert set(healthy_web(patch_sandbox).values()) == {"healthy"}
    again = patch_sandbox.ops("--yes", "runs", "resume", run_id)
    assert again.returncode == 2 and "already succeeded" in again.stderr


def test_a_patch_night_canary_then_waves(patch_sandbox: SandboxSession) -> None:
    reset(patch_sandbox)
    named = _by_name(patch_sandbox)
    debian = [h for h in hosts(patch_sandbox) if h["platform"] == "debian"]
    before = {h["name"]: started_at(h["container"]) for h in hosts(patch_sandbox)}
    web_total = len(healthy_web(patch_sandbox))
    with sampled(patch_sandbox) as samples:
        done = patch_sandbox.ops("--yes", "patch", "run", "--poll", "1", timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert samples.errors == []
    # 3 web hosts, patch.max_unavailable 50%: at most 2 out, so never fewer than 1 healthy
    assert samples.healthy and min(samples.healthy) >= web_total - 2
    assert min(samples.healthy) < web_total  # the sampler did see hosts out
    # agents went offline while their hosts rebooted (a short reboot may fall between samples)
    assert samples.not_online & {h["instance_id"] for h in hosts(patch_sandbox)}
    lines = done.stderr.splitlines()
    assert lines.index("canary: web-1") < lines.index("wave 1: web-2, web-3")
    canary_done = lines.index("web-1: register Success")
    assert all(lines.index(f"{n}: precheck Success") > canary_done for n in ("web-2", "web-3"))
    for host in debian:
        installed = versions(host["container"])
        assert all(installed[name] == NEW for name in APPROVED), installed
        assert installed["docker-fleetops-plugin"] == OLD  # held by patch.exclude docker*
        assert installed["fleetops-fresh"] == OLD  # too recent for approve_after_days
        assert upgrades(host["container"]) == 1
    for name, started in before.items():
        assert started_at(named[name]["container"]) != started  # every host really rebooted
    assert set(healthy_web(patch_sandbox).values()) == {"healthy"}

    run_id = last_run_id(patch_sandbox)
    assert run_id
    report = _report(patch_sandbox, run_id)
    assert report["status"] == "succeeded" and report["summary"]["patched"] == 4
    for host in report["hosts"]:
        assert host["rebooted"] and host["boot_before"] != host["boot_after"]
        assert {c["name"]: (c["old"], c["new"]) for c in host["changed"]} == {
            name: (OLD, NEW) for name in APPROVED
        }
    assert [h["wave"] for h in report["hosts"]] == [0, 1, 1, 2]
    assert report["end_of_support"] == ["web-2"]  # AL2, past 2026-06-30
    html = patch_sandbox.ops("patch", "report", run_id, "--format", "html")
    assert html.returncode == 0 and "<table" in html.stdout and "web-2" in html.stdout

    plan = patch_sandbox.ops("--output", "json", "patch", "plan")
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)
    assert all(h["pending"] == [] for h in data["hosts"]) and data["waves"] == []
    for host in data["hosts"]:
        assert [u["name"] for u in host["not_approved"]] == ["fleetops-fresh"]
        assert [u["name"] for u in host["held"]] == ["docker-fleetops-plugin"]
    again = patch_sandbox.ops("--yes", "runs", "resume", run_id)
    assert again.returncode == 2 and "already succeeded" in again.stderr

    after = _compliance(patch_sandbox)
    assert after["fleet"]["compliant"] == 4 and after["fleet"]["compliant_share"] == 1.0
    for host in after["hosts"]:
        assert host["state"] == "compliant" and host["missing"] == []
        assert host["last_patch_run"] == run_id and host["days_since_patch"] == 0
        assert [u["name"] for u in host["not_approved"]] == ["fleetops-fresh"]  # still waiting
