"""`ops docker install` on the runtime: what the journal keeps, and the SSH path's resume.

The push itself (ansible-runner over SSH) is faked here; the journal, the
runtime and the step are real. The SSM path's crash and resume run for real
in tests/integration/docker/test_docker_crash_resume.py.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli.main import cli
from ops.config import DockerSettings
from ops.engine.budget import Amount
from ops.engine.plan import Plan
from ops.engine.runtime import JournalState, Runtime
from ops.errors import BadInput, ExitCode
from ops.fleet.discovery import Host
from ops.fleet.inventory import InventoryHost
from ops.journal import Journal, open_journal
from ops.transports.ansible import NOT_RUN, OK, HostRecap, PlaybookResult, PushOptions
from ops.transports.ssm import HostResult, SsmTransport
from ops.workflows import docker as wf
from ops.workflows import docker_steps

HOSTS = [
    InventoryHost(f"i-00000000000000{n:03d}", f"web-{n}", platform_name="Debian",
                  platform_version="12")
    for n in range(5)
]  # fmt: skip
BY_ID = {h.instance_id: h for h in HOSTS}


def test_the_journal_keeps_what_a_resume_rebuilds_the_install_from() -> None:
    docker = DockerSettings(("deploy",), "50m", 5, False)
    request = wf.InstallRequest(
        via="ssh", allow_restart=True, forks=3, host_key_policy="accept-new"
    )
    plan = wf.plan(request, HOSTS[:2], docker)
    arguments = wf.arguments(plan)
    assert "hosts" not in arguments  # the runtime writes its own host count there
    assert [row["instance_id"] for row in arguments["plan"]] == [h.instance_id for h in HOSTS[:2]]
    assert wf.request_from(arguments) == (request, docker)


def test_a_docker_run_recorded_without_its_plan_is_refused_unclaimed(
    isolated_state: Path,
) -> None:
    with pytest.raises(BadInput):
        wf.request_from({"via": "ssm"})
    with open_journal() as journal:
        run = journal.begin_run("docker", {"playbook": "docker_install.yml"}, "sandbox")
        path = journal.path
    db = sqlite3.connect(path)
    db.execute("UPDATE runs SET pid = ? WHERE id = ?", (_dead_pid(), run.id))
    db.commit()
    db.close()
    with open_journal() as journal:
        before = journal.get_run(run.id)
    result = CliRunner().invoke(cli, ["runs", "resume", run.id, "--yes"])
    assert result.exit_code == 2, result.output
    assert "cannot be resumed" in result.output
    with open_journal() as journal:
        assert journal.get_run(run.id) == before


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class Crash(BaseException):
    """Stands for the SIGKILL: nothing after it runs, not even the run's end."""


class FakePush:
    """ansible-runner's push as far as the step sees it: one recap per host."""

    def __init__(self, crash_on_call: int | None = None, cancel_on_call: int | None = None):
        self.calls: list[list[str]] = []
        self.crash_on_call = crash_on_call
        self.cancel_on_call = cancel_on_call

    def __call__(
        self,
        _playbook: Path,
        hosts: list[InventoryHost],
        _work: Path,
        _options: PushOptions,
        _on_event: object,
        cancel: threading.Event | None,
    ) -> PlaybookResult:
        self.calls.append([h.instance_id for h in hosts])
        if len(self.calls) == self.crash_on_call:
            raise Crash
        if len(self.calls) == self.cancel_on_call:
            assert cancel is not None
            cancel.set()
            recaps = [HostRecap(h.instance_id, h.name, NOT_RUN) for h in hosts]
            return PlaybookResult("canceled", 130, recaps, 0.1, 3)
        recaps = [HostRecap(h.instance_id, h.name, OK, ok=9, changed=4) for h in hosts]
        return PlaybookResult("successful", 0, recaps, 0.1, 3)


def _plan(push_step: docker_steps.PushStep, hosts: list[InventoryHost]) -> Plan:
    return Plan(
        kind=wf.KIND,
        arguments={"via": "ssh"},
        waves=[[Host(h.instance_id, h.name, ping_status="Online") for h in hosts]],
        steps=[push_step],
        concurrency=Amount(2, False),
        max_errors=Amount(100, True),
    )


def _step(tmp_path: Path, recaps: docker_steps.Recaps) -> docker_steps.PushStep:
    options = PushOptions(forks=2)
    return docker_steps.PushStep(wf.STEP, tmp_path / "p.yml", BY_ID, options, tmp_path, recaps)


def _runtime(journal: Journal, results: list[HostResult]) -> Runtime:
    unused = SsmTransport(object(), None)  # the push never reaches SSM
    return Runtime(unused, journal, on_result=results.append)


def test_over_ssh_a_crash_leaves_finished_hosts_finished_and_resume_reruns_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    first = FakePush(crash_on_call=2)
    monkeypatch.setattr(docker_steps, "push", first)
    recaps = docker_steps.Recaps(BY_ID)
    with pytest.raises(Crash):
        _runtime(journal, []).execute(_plan(_step(tmp_path, recaps), HOSTS), "test")
    [run] = journal.list_runs()
    rows = {s.host: s.status for s in journal.steps(run.id) if s.phase == wf.STEP}
    # forks=2: the first pair finished, the second was started (pushed) when it died
    assert first.calls == [[h.instance_id for h in HOSTS[:2]], [h.instance_id for h in HOSTS[2:4]]]
    assert [rows[h.instance_id] for h in HOSTS] == [
        "Success", "Success", "started", "started", "intended"]  # fmt: skip

    again = FakePush()
    monkeypatch.setattr(docker_steps, "push", again)
    state = JournalState.load(journal, run.id)
    results: list[HostResult] = []
    recaps = docker_steps.Recaps(BY_ID)
    claimed = journal.get_run(run.id)
    assert claimed is not None
    report = _runtime(journal, results).resume(
        _plan(_step(tmp_path, recaps), HOSTS), claimed, state
    )
    assert report.exit_code == ExitCode.OK
    # the hosts left started run the role again; the finished ones are not touched
    assert again.calls == [[h.instance_id for h in HOSTS[2:4]], [HOSTS[4].instance_id]]
    assert sorted(recaps.found) == [h.instance_id for h in HOSTS[2:]]
    done = JournalState.load(journal, run.id)
    assert {h.instance_id: done.finished(wf.STEP, h.instance_id) for h in HOSTS} == {
        h.instance_id: "Success" for h in HOSTS
    }


def test_a_cancel_during_a_push_leaves_its_hosts_unsettled_for_a_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    push = FakePush(cancel_on_call=2)
    monkeypatch.setattr(docker_steps, "push", push)
    results: list[HostResult] = []
    report = _runtime(journal, results).execute(
        _plan(_step(tmp_path, docker_steps.Recaps(BY_ID)), HOSTS), "test"
    )
    assert report.exit_code == ExitCode.INTERRUPTED
    assert len(push.calls) == 2  # no chunk after the cancel
    state = JournalState.load(journal, report.run_id)
    assert [state.finished(wf.STEP, h.instance_id) for h in HOSTS] == [
        "Success", "Success", None, None, None]  # fmt: skip


def test_a_failed_push_host_is_recorded_failed_with_its_message() -> None:
    failed = HostRecap("i-1", "web-1", "failed", ok=3, failed=1, message="apt: no docker.io")
    result = docker_steps.to_result(failed)
    assert (result.status, result.exit_code, result.stderr) == ("Failed", 2, "apt: no docker.io")
    assert docker_steps.to_result(HostRecap("i-1", "web-1", NOT_RUN)).status == "NotStarted"


def test_an_interrupted_install_tells_how_to_finish_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from ops.cli import docker as docker_cli

    def interrupted(plan: wf.InstallPlan, *_a: object, **_k: object) -> wf.InstallReport:
        outcomes = [wf.HostOutcome(s, None) for s in plan.steps]
        return wf.InstallReport("run-7", "interrupted", outcomes, 1.0, ExitCode.INTERRUPTED)

    monkeypatch.setattr(docker_cli, "resolve_hosts", lambda *a, **k: HOSTS[:1])
    monkeypatch.setattr(wf, "run", interrupted)
    result = CliRunner().invoke(cli, ["docker", "install", "--via", "ssh", "--yes"])
    assert result.exit_code == int(ExitCode.INTERRUPTED), result.output
    assert "ops runs resume run-7" in result.output
