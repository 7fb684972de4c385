"""The runtime against an in-memory SSM: write-ahead order, resume settling, cancels, gates."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from fanout_fakes import FakeSsm

from ops.cli.main import cli
from ops.engine.budget import FailureBudget, parse_concurrency, parse_max_errors
from ops.engine.fanout import FanOut
from ops.engine.plan import GateResult, Plan, SsmCommandStep, find_markers, split_waves
from ops.engine.runtime import JournalState, Runtime
from ops.engine.signals import interrupts
from ops.errors import ExitCode
from ops.fleet.discovery import Host
from ops.journal import Journal, open_journal
from ops.journal.store import STALE_S
from ops.transports.ssm import CommandSpec, HostResult, SsmTransport


def _plan(waves: list[list[Host]], **extra: Any) -> Plan:
    return Plan(
        kind="run",
        arguments={"command": "true"},
        waves=waves,
        steps=[SsmCommandStep("run", CommandSpec(["true"]))],
        concurrency=parse_concurrency("100%"),
        max_errors=parse_max_errors("0"),
        **extra,
    )


def _runtime(ssm: FakeSsm, journal: Journal, results: list[HostResult]) -> Runtime:
    transport = SsmTransport(ssm, None, max_retry_delay=30)
    transport.catch_up_seconds = 0.5  # a marker never sent is looked for this long after its send
    return Runtime(
        transport,
        journal,
        on_result=results.append,
        fanout_options={"poll_min": 0.02, "poll_max": 0.1, "cancel_wait": 0.5},
    )


def test_steps_are_intended_before_the_send_and_carry_marker_and_command_id(
    tmp_path: Path,
) -> None:
    ssm = FakeSsm()
    hosts = ssm.add(3)
    seen_at_send: list[list[tuple[str, str | None]]] = []
    journal = Journal(tmp_path / "j.sqlite3")
    send = ssm.send_command

    def watching(**kwargs: Any) -> dict[str, Any]:
        [run] = journal.list_runs()
        seen_at_send.append([(s.status, s.marker) for s in journal.steps(run.id)])
        return send(**kwargs)

    ssm.send_command = watching  # type: ignore[method-assign]
    results: list[HostResult] = []
    report = _runtime(ssm, journal, results).execute(_plan([hosts]), "test")
    assert report.exit_code == ExitCode.OK and len(results) == 3
    # at SendCommand every host's row was started with the marker the Comment carries
    [rows] = seen_at_send
    markers = {marker for _status, marker in rows}
    assert {status for status, _ in rows} == {"started"} and len(markers) == 1
    [comment] = ssm.comments.values()
    assert comment.split(" ")[0] in markers
    steps = journal.steps(report.run_id)
    [command_id] = ssm.commands
    assert {s.command_id for s in steps if s.status == "started"} == {command_id}
    assert sorted(s.status for s in steps) == ["Success"] * 3 + ["started"] * 3
    run = journal.get_run(report.run_id)
    assert run is not None and run.status == "succeeded"


def _abandoned_run(journal: Journal, hosts: list[Host]) -> tuple[str, list[int]]:
    run = journal.begin_run("run", {"command": "true"}, "test")
    ids = journal.intend(run.id, "run", [(h.instance_id, {"name": h.name}) for h in hosts], 0)
    return run.id, ids


def test_resume_settles_by_command_id_and_marker_and_sends_only_what_ssm_lacks(
    tmp_path: Path,
) -> None:
    ssm = FakeSsm()
    hosts = ssm.add(5)
    journal = Journal(tmp_path / "j.sqlite3")
    run_id, ids = _abandoned_run(journal, hosts)
    # host 0 finished; host 1 sent, id recorded; host 2 sent, the answer lost (marker
    # only, but SSM has it); host 3 marker recorded, SendCommand never reached SSM;
    # host 4 only intended.
    journal.record_steps(run_id, "run", [(hosts[0].instance_id, "Success", {})])
    ssm.send_command(InstanceIds=[hosts[1].instance_id], Comment="ops-111111111111 ops run")
    journal.sending([ids[1]], "ops-111111111111")
    journal.sent([ids[1]], next(iter(ssm.commands)))
    ssm.send_command(InstanceIds=[hosts[2].instance_id], Comment="ops-222222222222 ops run")
    journal.sending([ids[2]], "ops-222222222222")
    journal.sending([ids[3]], "ops-333333333333")
    before = len(ssm.sent)

    run = journal.get_run(run_id)
    assert run is not None
    state = JournalState.load(journal, run_id)
    results: list[HostResult] = []
    plan = _plan([list(state.hosts.values())])
    report = _runtime(ssm, journal, results).resume(plan, run, state)

    assert report.exit_code == ExitCode.OK
    [resent] = ssm.sent[before:]
    assert resent["InstanceIds"] == [hosts[3].instance_id, hosts[4].instance_id]
    assert sorted(r.instance_id for r in results) == [h.instance_id for h in hosts[1:]]
    # the marker found in SSM became the step's command id
    rows = {s.id: s for s in journal.steps(run_id)}
    command_of_2 = next(c for c, v in ssm.comments.items() if v.startswith("ops-2222"))
    assert rows[ids[2]].command_id == command_of_2
    finals = [s for s in journal.steps(run_id) if s.status == "Success"]
    assert sorted(s.host for s in finals) == sorted(h.instance_id for h in hosts)


def test_a_failed_cancel_is_reported_and_its_hosts_not_called_cancelled(tmp_path: Path) -> None:
    ssm = FakeSsm()
    hosts = ssm.add(4, delay=30)

    def refuse(**_kwargs: Any) -> dict[str, Any]:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no ssm:CancelCommand"}},
            "CancelCommand",
        )

    ssm.cancel_command = refuse  # type: ignore[method-assign]
    fanout = FanOut(SsmTransport(ssm, None), CommandSpec(["sleep 30"]), poll_min=0.02)
    results: list[HostResult] = []
    budget = FailureBudget(4, parse_concurrency("100%"), parse_max_errors("0"))
    threading.Thread(target=_cancel_after_send, args=(ssm, fanout.cancel), daemon=True).start()
    report = fanout.run_client_side(hosts, budget, results.append)
    assert report.interrupted
    assert {r.status for r in results} == {"CancelFailed"}
    assert all("AccessDeniedException" in r.stderr for r in results)


def test_a_cancel_ssm_never_confirms_leaves_hosts_running(tmp_path: Path) -> None:
    ssm = FakeSsm()
    hosts = ssm.add(3, delay=30)
    ssm.cancel_command = lambda **_kwargs: {}  # type: ignore[method-assign]
    fanout = FanOut(
        SsmTransport(ssm, None), CommandSpec(["sleep 30"]), poll_min=0.02, cancel_wait=0.3
    )
    results: list[HostResult] = []
    budget = FailureBudget(3, parse_concurrency("100%"), parse_max_errors("0"))
    threading.Thread(target=_cancel_after_send, args=(ssm, fanout.cancel), daemon=True).start()
    report = fanout.run_client_side(hosts, budget, results.append)
    assert report.interrupted
    assert {r.status for r in results} == {"Running"}
    assert all("cancel not confirmed" in r.stderr for r in results)


def _cancel_after_send(ssm: FakeSsm, cancel: Any) -> None:
    deadline = time.monotonic() + 5
    while not ssm.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    cancel()


def test_a_gate_that_fails_holds_the_next_wave(tmp_path: Path) -> None:
    ssm = FakeSsm()
    hosts = ssm.add(6)
    checks: list[int] = []

    class Alarm:
        name = "alarm web-5xx"

        def check(self) -> GateResult:
            checks.append(1)
            return GateResult(len(checks) < 2, "ALARM since 12:00")

    waves = split_waves(hosts, canary=1, size=parse_concurrency("50%"))
    assert [len(w) for w in waves] == [1, 3, 2]
    results: list[HostResult] = []
    journal = Journal(tmp_path / "j.sqlite3")
    report = _runtime(ssm, journal, results).execute(_plan(waves, gates=[Alarm()]), "test")
    assert report.gate == "alarm web-5xx: ALARM since 12:00"
    assert report.exit_code == ExitCode.STOPPED
    statuses = {r.instance_id: r.status for r in results}
    assert statuses[hosts[0].instance_id] == "Success"
    assert {statuses[h.instance_id] for h in hosts[1:]} == {"NotStarted"}
    run = journal.get_run(report.run_id)
    assert run is not None and run.status == "stopped"


def test_sigterm_is_handled_like_the_first_ctrl_c() -> None:
    cancelled = threading.Event()
    notes: list[str] = []
    before = signal.getsignal(signal.SIGTERM)  # ansible-runner, run in-process earlier, sets one
    with interrupts(cancelled.set, notes.append):
        os.kill(os.getpid(), signal.SIGTERM)
        assert cancelled.wait(5)
    assert "SIGTERM" in notes[0]
    assert signal.getsignal(signal.SIGTERM) == before


# journal: abandoned runs, locks, migration ------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _set(path: Path, run_id: str, **columns: Any) -> None:
    db = sqlite3.connect(path)
    for column, value in columns.items():
        db.execute(f"UPDATE runs SET {column} = ? WHERE id = ?", (value, run_id))
    db.commit()
    db.close()


def test_a_run_whose_process_died_is_abandoned_and_shown_so(isolated_state: Path) -> None:
    with open_journal() as journal:
        live = journal.begin_run("run", {}, "sandbox")
        dead = journal.begin_run("run", {}, "sandbox")
        stale = journal.begin_run("run", {}, "sandbox")
        path = journal.path
    _set(path, dead.id, pid=_dead_pid())
    _set(path, stale.id, heartbeat_at=time.time() - STALE_S - 5)
    with open_journal() as journal:
        states = {r.id: r.state for r in journal.list_runs()}
    assert states == {live.id: "running", dead.id: "abandoned", stale.id: "abandoned"}
    listed = CliRunner().invoke(cli, ["runs", "list"])
    assert listed.exit_code == 0 and listed.output.count("abandoned") == 2
    shown = CliRunner().invoke(cli, ["runs", "show", dead.id])
    assert "status=abandoned" in shown.output and "last heartbeat" in shown.output
    assert f"ops runs resume {dead.id}" in shown.output


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("unknown", "no run 'nope'"),
        ("finished", "already succeeded"),
        ("held", "is still running (pid"),
        ("kind", "cannot be resumed"),
    ],
)
def test_resume_refuses_with_exit_2_before_touching_anything(
    isolated_state: Path, monkeypatch: pytest.MonkeyPatch, setup: str, message: str
) -> None:
    from ops.workflows import run as run_workflow

    monkeypatch.setattr(run_workflow, "open_transport", _refuse)
    monkeypatch.setattr(run_workflow, "discover_hosts", _refuse)
    run_id = "nope"
    with open_journal() as journal:
        if setup != "unknown":
            run = journal.begin_run("patch" if setup == "kind" else "run", {}, "sandbox")
            run_id = run.id
        if setup == "finished":
            journal.end_run(run_id, "succeeded")
        if setup == "kind":
            _set(journal.path, run_id, pid=_dead_pid())
        before = journal.get_run(run_id)
    result = CliRunner().invoke(cli, ["runs", "resume", run_id, "--yes"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    with open_journal() as journal:
        assert journal.get_run(run_id) == before  # not claimed, not changed


def _refuse(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("resume touched AWS for a run it must refuse")


def test_claim_is_refused_while_held_and_taken_once_abandoned(tmp_path: Path) -> None:
    from ops.journal.store import RunHeld

    journal = Journal(tmp_path / "j.sqlite3")
    run = journal.begin_run("run", {}, "test")
    with pytest.raises(RunHeld):
        journal.claim(run.id)
    _set(journal.path, run.id, pid=_dead_pid(), status="interrupted")
    claimed = journal.claim(run.id)
    assert (claimed.status, claimed.pid) == ("running", os.getpid())


OLD_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, operator TEXT NOT NULL,
    arguments TEXT NOT NULL, environment TEXT NOT NULL, started_at REAL NOT NULL,
    ended_at REAL, status TEXT NOT NULL);
CREATE TABLE host_steps (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,
    host TEXT NOT NULL, phase TEXT NOT NULL, status TEXT NOT NULL, started_at REAL NOT NULL,
    ended_at REAL, detail TEXT NOT NULL DEFAULT '{}');
INSERT INTO runs VALUES ('old-1', 'run', 'me', '{}', 'sandbox', 1000.0, NULL, 'running');
INSERT INTO host_steps (run_id, host, phase, status, started_at) VALUES
    ('old-1', 'i-1', 'run', 'started', 1000.0);
"""


def test_an_older_journal_gains_the_new_columns_and_its_runs_read_abandoned(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.close()
    with Journal(path) as journal:
        run = journal.get_run("old-1")
        [step] = journal.steps("old-1")
    assert run is not None and run.state == "abandoned" and run.pid is None
    assert step.marker is None and step.command_id is None
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(host_steps)")}
    assert {"wave", "marker", "command_id", "sent_at"} <= columns


@pytest.mark.parametrize("gate_ok", [True, False])
def test_resume_checks_the_gates_again_before_the_next_wave(tmp_path: Path, gate_ok: bool) -> None:
    ssm = FakeSsm()
    hosts = ssm.add(3)
    journal = Journal(tmp_path / "j.sqlite3")
    run = journal.begin_run("run", {"command": "true"}, "test")
    journal.intend(run.id, "run", [(hosts[0].instance_id, {"name": hosts[0].name})], 0)
    journal.intend(run.id, "run", [(h.instance_id, {"name": h.name}) for h in hosts[1:]], 1)
    journal.record_steps(run.id, "run", [(hosts[0].instance_id, "Success", {})])
    checks: list[int] = []

    class Health:
        name = "health /ready"

        def check(self) -> GateResult:
            checks.append(1)
            return GateResult(gate_ok, "2 of 3 targets unhealthy")

    state = JournalState.load(journal, run.id)
    assert state.waves == {h.instance_id: w for h, w in zip(hosts, (0, 1, 1), strict=True)}
    results: list[HostResult] = []
    plan = _plan([[hosts[0]], hosts[1:]], gates=[Health()])
    report = _runtime(ssm, journal, results).resume(plan, run, state)
    assert checks == [1]  # not before the wave that had finished, once before the next
    if gate_ok:
        assert report.exit_code == ExitCode.OK
        assert [s["InstanceIds"] for s in ssm.sent] == [[h.instance_id for h in hosts[1:]]]
    else:
        assert report.exit_code == ExitCode.STOPPED and not ssm.sent
        assert {r.status for r in results} == {"NotStarted"}


def test_ops_runs_resume_sends_the_rest_and_lists_again_a_listing_the_crash_cut(
    isolated_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ops.fleet.discovery import Listing, Resolution
    from ops.fleet.targets import TargetSpec
    from ops.workflows import run as run_workflow

    ssm = FakeSsm()
    hosts = ssm.add(4)
    listing = Listing(Resolution(hosts, [], "role=web", "us-east-1"), iter([]), complete=True)
    monkeypatch.setattr(run_workflow, "open_transport", lambda _s: SsmTransport(ssm, None))
    monkeypatch.setattr(run_workflow, "discover_hosts", lambda *_a, **_k: listing)
    request = run_workflow.RunRequest(
        commands=["true"],
        target=TargetSpec({"role": "web"}),
        concurrency=parse_concurrency("100%"),
        max_errors=parse_max_errors("0"),
    )
    with open_journal() as journal:
        # the first process listed two hosts of a longer listing, finished one, and died
        run = journal.begin_run("run", request.arguments(), "sandbox")
        journal.intend(run.id, "run", [(h.instance_id, {"name": h.name}) for h in hosts[:2]], 0)
        journal.record_steps(run.id, "run", [(hosts[0].instance_id, "Success", {})])
        _set(journal.path, run.id, pid=_dead_pid())
    result = CliRunner().invoke(cli, ["runs", "resume", run.id, "--yes", "--output", "json"])
    assert result.exit_code == 0, result.output
    assert "1 hosts already finished" in result.output
    [sent] = ssm.sent
    assert sent["InstanceIds"] == [h.instance_id for h in hosts[1:]]
    with open_journal() as journal:
        after = journal.get_run(run.id)
        finals = sorted(s.host for s in journal.steps(run.id) if s.status == "Success")
    assert after is not None and after.status == "succeeded"
    assert after.arguments["listing_complete"] is True and after.arguments["hosts"] == 4
    assert finals == sorted(h.instance_id for h in hosts)


def test_a_run_recorded_without_its_full_command_is_refused_unclaimed(
    isolated_state: Path,
) -> None:
    with open_journal() as journal:
        run = journal.begin_run("run", {"command": "uptime", "targets": "role=web"}, "sandbox")
        _set(journal.path, run.id, pid=_dead_pid())
        before = journal.get_run(run.id)
    result = CliRunner().invoke(cli, ["runs", "resume", run.id, "--yes"])
    assert result.exit_code == 2 and "without its full command" in result.output
    with open_journal() as journal:
        assert journal.get_run(run.id) == before


def test_hosts_ssm_turns_away_go_back_to_intended_and_end_unreachable(tmp_path: Path) -> None:
    ssm = FakeSsm()
    hosts = ssm.add(4)
    ssm.unmanaged = {hosts[2].instance_id}
    journal = Journal(tmp_path / "j.sqlite3")
    results: list[HostResult] = []
    report = _runtime(ssm, journal, results).execute(_plan([hosts]), "test")
    assert report.counts == {"Success": 3, "Unreachable": 1}
    rows = {(s.host, s.status): s for s in journal.steps(report.run_id)}
    refused = rows[(hosts[2].instance_id, "intended")]
    assert refused.marker is None and refused.command_id is None
    assert (hosts[2].instance_id, "Unreachable") in rows
    assert all(rows[(h.instance_id, "started")].command_id for h in hosts if h != hosts[2])


def test_a_result_reaches_the_journal_within_a_second_while_the_run_goes_on(
    tmp_path: Path,
) -> None:
    from ops.engine.recorder import RunRecorder

    journal = Journal(tmp_path / "j.sqlite3")
    run = journal.begin_run("run", {}, "test")
    reader = Journal(tmp_path / "j.sqlite3")
    with RunRecorder(journal, run.id) as recorder:
        recorder.result("run", HostResult("i-1", "web-1", "Success", 0, "secret output"))
        handed = time.monotonic()
        while not reader.steps(run.id) and time.monotonic() - handed < 5:
            time.sleep(0.02)
        took = time.monotonic() - handed
        [row] = reader.steps(run.id)
    assert took <= 1.0, f"the result took {took:.2f} s to reach the journal"
    assert row.status == "Success" and "stdout" not in row.detail
    assert "secret output" not in json.dumps(row.detail)


def test_a_resume_right_after_the_send_waits_for_a_lagging_listing(tmp_path: Path) -> None:
    """ListCommands shows a new command only after a while: a resume started at once
    must not take a marker missing from the first listing for a send that never was."""

    class Lagging(FakeSsm):
        listed = 0

        def list_commands(self, **kwargs: Any) -> dict[str, Any]:
            self.listed += 1
            return super().list_commands(**kwargs) if self.listed >= 3 else {"Commands": []}

    ssm = Lagging()
    hosts = ssm.add(1)
    ssm.send_command(InstanceIds=[hosts[0].instance_id], Comment="ops-444444444444 ops run")
    transport = SsmTransport(ssm, None)
    now = time.time()
    found = find_markers(transport, {"ops-444444444444"}, now, now)
    assert found == {"ops-444444444444": next(iter(ssm.commands))}
    assert ssm.listed == 3
