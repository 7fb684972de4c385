"""`ops run` against the sandbox: real containers, synthetic fleets, faults and throttling."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ops.journal import open_journal

if TYPE_CHECKING:
    from tests.integration.fanout.conftest import Sandbox


def _json(result: Any) -> dict[str, Any]:
    text = result.stdout
    return dict(json.loads(text[text.index("{") :]))


def _by_id(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["instance_id"]: r for r in document["results"]}


# --- real containers ----------------------------------------------------------


def test_hostname_on_containers(sandbox: Sandbox, container_hosts: dict[str, str]) -> None:
    result = sandbox.run("containers", "hostname")
    assert result.exit_code == 0, result.output
    document = _json(result)
    results = _by_id(document)
    assert set(results) == set(container_hosts)
    for instance_id, hostname in container_hosts.items():
        assert results[instance_id]["status"] == "Success"
        assert results[instance_id]["stdout"].strip() == hostname
        assert results[instance_id]["exit_code"] == 0
    assert document["summary"] == {"Success": 2}
    assert set(results[next(iter(results))]) == {
        "instance_id",
        "name",
        "status",
        "exit_code",
        "stdout",
        "stderr",
        "output_truncated",
        "duration_s",
    }


def test_failing_command_on_containers(sandbox: Sandbox, container_hosts: dict[str, str]) -> None:
    result = sandbox.run("containers", "echo before; echo broken >&2; exit 3")
    assert result.exit_code == 1, result.output
    for host in _json(result)["results"]:
        assert (host["status"], host["exit_code"]) == ("Failed", 3)
        # the agent adds its own line to a failed script's stderr
        assert host["stdout"] == "before\n"
        assert host["stderr"] == "broken\n\nfailed to run commands: exit status 3"


def test_execution_timeout_on_containers(sandbox: Sandbox, container_hosts: dict[str, str]) -> None:
    started = time.monotonic()
    result = sandbox.run("containers", "sleep 60", "--execution-timeout", "2")
    assert result.exit_code == 1, result.output
    assert {h["status"] for h in _json(result)["results"]} == {"TimedOut"}
    assert time.monotonic() - started < 45


def test_output_past_24000_chars_comes_from_s3(
    sandbox: Sandbox, container_hosts: dict[str, str]
) -> None:
    expected = "".join(f"{i}\n" for i in range(1, 20001))
    assert len(expected) > 24000
    mark = sandbox.mark()
    result = sandbox.run("containers", "seq 1 20000")
    assert result.exit_code == 0, result.output
    for host in _json(result)["results"]:
        assert host["stdout"] == expected
        assert host["output_truncated"] is False
    # the cut detail output is completed per host, once
    assert len(sandbox.calls(mark, "GetCommandInvocation")) == len(container_hosts)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_sigint_cancels_a_running_command(
    sandbox: Sandbox, container_hosts: dict[str, str], tmp_path: Path, signum: signal.Signals
) -> None:
    """The first Ctrl-C, or a supervisor's SIGTERM, cancels what is in flight."""
    env = {**os.environ, **sandbox.env, "OPS_STATE_DIR": str(tmp_path)}
    mark = sandbox.mark()
    started = time.time()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops",
            "--yes",
            "run",
            "--target",
            "suite=containers",
            "--output",
            "jsonl",
            "--",
            "sleep 120",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not sandbox.calls(mark, "ListCommandInvocations"):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert {line["status"] for line in lines} == {"Cancelled"}
    assert len(lines) == len(container_hosts)
    sent = sandbox.calls(mark, "SendCommand")
    assert sent and sandbox.calls(mark, "CancelCommand")
    ssm = sandbox.aws.client("ssm")
    after = datetime.fromtimestamp(started, UTC).isoformat()
    ours = ssm.list_commands(Filters=[{"key": "InvokedAfter", "value": after}])["Commands"]
    assert ours
    for command in ours:
        assert command["Status"] == "Cancelled"
        invocations = ssm.list_command_invocations(CommandId=command["CommandId"])
        for invocation in invocations["CommandInvocations"]:
            assert invocation["Status"] == "Cancelled", "an invocation stayed in flight"


def test_second_sigint_exits_at_once(sandbox: Sandbox, tmp_path: Path) -> None:
    ids = sandbox.aws.add_synthetic(3, tags={"Suite": "twice"}, name_prefix="twice")
    sandbox.aws.set_fault("hang", instances=ids)
    try:
        env = {**os.environ, **sandbox.env, "OPS_STATE_DIR": str(tmp_path)}
        mark = sandbox.mark()
        proc = subprocess.Popen(
            [sys.executable, "-m", "ops", "--yes", "run", "--target", "suite=twice",
             "--execution-timeout", "5", "--", "sleep 1"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not sandbox.calls(mark, "SendCommand"):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 130, err
        assert "interrupted twice" in err
    finally:
        sandbox.aws.clear_faults()


# --- synthetic fleets ----------------------------------------------------------


def test_offline_hosts_reported_up_front_and_not_sent_to(sandbox: Sandbox) -> None:
    ids = sandbox.aws.add_synthetic(6, tags={"Suite": "offline"}, name_prefix="offline")
    offline = sorted(ids)[:2]
    sandbox.aws.set_fault("agent_offline", instances=offline)
    try:
        mark = sandbox.mark()
        result = sandbox.run("offline", "true")
        assert result.exit_code == 1, result.output
        document = _json(result)
        assert "2 hosts unreachable" in result.stderr
        results = _by_id(document)
        assert {i for i, r in results.items() if r["status"] == "Unreachable"} == set(offline)
        assert document["summary"] == {"Unreachable": 2, "Success": 4}
        sends = sandbox.calls(mark, "SendCommand")
        assert len(sends) == 1
        sent_ids = sends[0]["params"]["InstanceIds"]
        assert not set(offline) & set(sent_ids if isinstance(sent_ids, list) else [])
        # the table lists them before anything runs
        table = sandbox.run("offline", "true", output="table")
        first = table.output.index("unreachable")
        assert first < table.output.index(": Success")
    finally:
        sandbox.aws.clear_faults()


def test_error_budget_stops_dispatch(sandbox: Sandbox) -> None:
    ids = sandbox.aws.add_synthetic(100, tags={"Suite": "budget"}, name_prefix="budget")
    sandbox.aws.set_fault("fail", instances=ids, exit_code=7)
    try:
        mark = sandbox.mark()
        result = sandbox.run("budget", "true", "--concurrency", "10", "--max-errors", "2")
        assert result.exit_code == 3, result.output
        document = _json(result)
        assert document["summary"] == {"Failed": 10, "NotStarted": 90}
        assert len(sandbox.calls(mark, "SendCommand")) == 1
        assert "not started" in result.stderr
    finally:
        sandbox.aws.clear_faults()


def test_server_side_fan_out(sandbox: Sandbox) -> None:
    sandbox.aws.add_synthetic(120, tags={"Suite": "server"}, name_prefix="server")
    mark = sandbox.mark()
    result = sandbox.run("server", "echo hi", "--server-side", "--concurrency", "50%")
    assert result.exit_code == 0, result.output
    document = _json(result)
    assert document["summary"] == {"Success": 120}
    # the listed and confirmed instance ids, 50 a command; never tag Targets, which
    # SSM would resolve later, reaching instances launched since the listing
    assert len(document["command_ids"]) == 3
    sends = sandbox.calls(mark, "SendCommand")
    assert len(sends) == 3
    for send in sends:
        assert send["params"]["MaxConcurrency"] == "50%"
        assert "Targets" not in send["params"] and len(send["params"]["InstanceIds"]) <= 50


def test_two_thousand_instances_with_throttling_cut_to_a_tenth(sandbox: Sandbox) -> None:
    ids = sandbox.aws.add_synthetic(2000, tags={"Suite": "scale"}, name_prefix="scale")
    sandbox.aws.set_throttle(multiplier=0.1)
    try:
        mark = sandbox.mark()
        launched = time.time()
        result = sandbox.run("scale", "echo done", "--concurrency", "100%", output="jsonl")
        assert result.exit_code == 0, result.output[-2000:]
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        assert len(lines) == 2000
        assert {line["instance_id"] for line in lines} == set(ids)
        assert {line["status"] for line in lines} == {"Success"}
        assert all(line["stdout"] == "done\n" for line in lines)
        calls = sandbox.calls(mark)
        assert any(c["throttled"] for c in calls), "the storm did not happen"
        assert (
            len([c for c in calls if c["operation"] == "SendCommand" and not c["throttled"]]) == 40
        )
        # the run sent on the first DescribeInstances page, before the rest was answered:
        # the rest went on zone by zone (moto's region has six), side by side
        pages = [
            c
            for c in sandbox.aws.moto_calls()
            if c["operation"] == "DescribeInstances"
            and c["time"] >= launched
            and c["params"].get("MaxResults") in ("1000", "500")
        ]
        assert "Zone" not in pages[0]["params"], pages
        zones = [c["params"]["Zone"] for c in pages[1:]]
        assert sorted(set(zones)) == [f"us-east-1{z}" for z in "abcdef"], pages
        spans = sorted((c["time"], c["time"] + c["elapsed_ms"] / 1000) for c in pages[1:])
        assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), "one zone after another"
        first_send = min(c["time"] for c in calls if c["operation"] == "SendCommand")
        assert first_send < max(end for _start, end in spans)
    finally:
        sandbox.aws.set_throttle(multiplier=1.0)


def test_a_fleet_listed_in_pages_starts_on_the_first_and_names_offline_hosts_first(
    sandbox: Sandbox,
) -> None:
    """1,100 hosts take two DescribeInstances pages; the run starts on the first,
    and the offline hosts of both pages are reported before any result."""
    ids = sandbox.aws.add_synthetic(1100, tags={"Suite": "paged"}, name_prefix="paged")
    offline = {ids[0], ids[-1]}  # one on each page: moto lists in launch order
    sandbox.aws.set_fault("agent_offline", instances=sorted(offline))
    try:
        mark = sandbox.mark()
        result = sandbox.run("paged", "true", output="jsonl")
        assert result.exit_code == 1, result.output[-2000:]
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        assert len(lines) == 1100 == len({line["instance_id"] for line in lines})
        assert {line["instance_id"] for line in lines[:2]} == offline
        assert {line["status"] for line in lines[:2]} == {"Unreachable"}
        assert {line["status"] for line in lines[2:]} == {"Success"}
        assert "2 hosts unreachable" in result.stderr
        sends = [c for c in sandbox.calls(mark, "SendCommand") if not c["throttled"]]
        assert len(sends) == 22  # 1,098 hosts, 50 a command
        with open_journal() as journal:
            [run] = journal.list_runs(kind="run")
            started = {s.host for s in journal.steps(run.id) if s.status == "started"}
        assert started == set(ids) - offline
        assert run.arguments["hosts"] == 1100 and run.status == "failed"
    finally:
        sandbox.aws.clear_faults()


def test_a_send_answered_with_a_500_after_it_took_effect_runs_once(sandbox: Sandbox) -> None:
    """Every SendCommand is created and then answered 500: the run finds each
    command by its marker instead of sending it again."""
    ids = sandbox.aws.add_synthetic(120, tags={"Suite": "lost"}, name_prefix="lost")
    sandbox.aws.set_fault("lost_response", fraction=1.0)
    try:
        mark = sandbox.mark()
        result = sandbox.run("lost", "echo once")
    finally:
        sandbox.aws.clear_faults()
    assert result.exit_code == 0, result.output[-2000:]
    document = _json(result)
    assert document["summary"] == {"Success": 120}
    assert set(_by_id(document)) == set(ids)
    sends = [c for c in sandbox.calls(mark, "SendCommand") if not c["throttled"]]
    assert [c["status"] for c in sends] == [500, 500, 500]
    assert len(document["command_ids"]) == 3
    searches = sandbox.calls(mark, "ListCommands")
    assert searches, "nobody looked for the lost commands"


def test_journal_records_each_host_with_a_digest(sandbox: Sandbox) -> None:
    sandbox.aws.add_synthetic(3, tags={"Suite": "journal"}, name_prefix="journal")
    result = sandbox.run("journal", "echo secret-free", output="table")
    assert result.exit_code == 0, result.output
    with open_journal() as journal:
        [run] = journal.list_runs(kind="run")
        steps = journal.steps(run.id)
    assert run.status == "succeeded" and run.arguments["command"] == "echo secret-free"
    finals = [s for s in steps if s.status != "started"]
    assert len(finals) == 3 and len([s for s in steps if s.status == "started"]) == 3
    for step in finals:
        assert step.status == "Success" and len(step.detail["output_sha256"]) == 64
        assert "stdout" not in step.detail


# --- bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--target", "suite=badinput", "--concurrency", "0", "--", "uptime"],
        ["--target", "suite=badinput", "--max-errors", "120%", "--", "uptime"],
        ["--target", "suite=badinput", "--timeout", "-1", "--", "uptime"],
        ["--from-file", "/nonexistent/ids.txt", "--", "uptime"],
        ["--target", "suite=badinput"],
        ["--target", "suite=nothing-matches", "--", "uptime"],
    ],
    ids=["concurrency-0", "max-errors-120%", "timeout--1", "from-file", "no-command", "no-match"],
)
def test_bad_input_exits_2_and_sends_nothing(sandbox: Sandbox, args: list[str]) -> None:
    sandbox.aws.add_synthetic(1, tags={"Suite": "badinput"}, name_prefix="bad")
    mark = sandbox.mark()
    result = sandbox.ops("--yes", "run", *args)
    assert result.exit_code == 2, result.output
    assert sandbox.calls(mark, "SendCommand") == []
    if "suite=nothing-matches" in args:
        assert "no running instance matches suite=nothing-matches,Env=sandbox in us-east-1" in (
            result.output
        )
