"""`ops run` against the Run Command emulator's faults: each engine fault reproduced, then held.

A lost or dropped SendCommand answer, a client clock ahead of AWS's, a run of
failed polls, a cancel asked while sends are throttled, a read that does not
know a fresh invocation yet.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, tzinfo
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import pytest

from ops.engine.fanout import FanOut
from ops.fleet.discovery import Host
from ops.journal import open_journal
from ops.transports.ssm import CommandSpec, HostResult, SsmTransport
from tests.integration.fanout.conftest import Sandbox


def _json(result: Any) -> dict[str, Any]:
    text = result.stdout
    return dict(json.loads(text[text.index("{") :]))


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Ctrl-C to this process after `seconds`: a run that would poll forever is
    interrupted (exit 130) instead of hanging the suite."""
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _clock_ahead(minutes: int) -> type[datetime]:
    """datetime with a local clock `minutes` ahead of AWS's."""

    class Ahead(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Ahead:  # type: ignore[override]
            moment = datetime.now(tz) + timedelta(minutes=minutes)
            return cls.fromtimestamp(moment.timestamp(), tz)

    return Ahead


@pytest.mark.parametrize("minutes", [10, 20])
def test_a_clock_minutes_ahead_still_ends(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, minutes: int
) -> None:
    """Three commands in flight are watched with one ListCommands listing; its
    time filter must come from the service's clock, not this one (20 minutes is
    past any fixed tolerance)."""
    suite = f"clock{minutes}"
    ids = sandbox.aws.add_synthetic(150, tags={"Suite": suite}, name_prefix=suite)
    for module in ("ops.engine.fanout", "ops.transports.ssm", "ops.engine.plan"):
        monkeypatch.setattr(f"{module}.datetime", _clock_ahead(minutes))
    mark = sandbox.mark()
    with watchdog(60):
        result = sandbox.run(suite, "echo on time", "--concurrency", "100%")
    assert result.exit_code == 0, result.output[-2000:]
    document = _json(result)
    assert document["summary"] == {"Success": 150}
    assert {r["instance_id"] for r in document["results"]} == set(ids)
    listings = [c for c in sandbox.calls(mark, "ListCommands") if "Filters" in c["params"]]
    assert listings, "three commands were not watched with one listing"


def _until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the awaited state never came")
        time.sleep(0.05)


def _watch(action: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    return thread


def _answered(sandbox: Sandbox, since: int, operation: str) -> list[dict[str, Any]]:
    return [c for c in sandbox.calls(since, operation) if not c["throttled"]]


# --- a lost SendCommand answer ---------------------------------------------------


def test_a_lost_send_nobody_can_look_up_is_unknown_and_resume_settles_it(
    sandbox: Sandbox,
) -> None:
    """Every SendCommand takes effect and answers 500, and ListCommands is denied:
    the search cannot decide, so nothing is sent twice, the hosts are Unknown
    (not Undeliverable), and `ops runs resume` later finds the commands by marker."""
    ids = sandbox.aws.add_synthetic(60, tags={"Suite": "unknown"}, name_prefix="unknown")
    sandbox.aws.set_fault("lost_response", fraction=1.0)
    sandbox.aws.admin.deny(["ssm:ListCommands"])
    try:
        mark = sandbox.mark()
        result = sandbox.run("unknown", "echo once", "--concurrency", "100%")
    finally:
        sandbox.aws.admin.deny([])
        sandbox.aws.clear_faults()
    assert result.exit_code == 1, result.output[-2000:]
    document = _json(result)
    assert document["summary"] == {"Unknown": 60}
    assert all("marker" in r["stderr"] for r in document["results"])
    assert "60 hosts Unknown" in result.stderr and "ops runs resume" in result.stderr
    assert [c["status"] for c in _answered(sandbox, mark, "SendCommand")] == [500, 500]
    with open_journal() as journal:
        [run] = journal.list_runs(kind="run")
        markers = {s.marker for s in journal.steps(run.id) if s.status == "started"}
    assert run.status == "unsettled"
    assert len(markers) == 2 and None not in markers

    again = sandbox.mark()
    done = sandbox.ops("runs", "resume", run.id, "--output", "json", "--yes")
    assert done.exit_code == 0, done.output[-2000:]
    settled = _json(done)
    assert settled["summary"] == {"Success": 60}
    assert {r["instance_id"] for r in settled["results"]} == set(ids)
    assert sandbox.calls(again, "SendCommand") == [], "resume sent again"


class DroppingProxy:
    """Between `ops` and the emulator: every request is passed on, but the answers
    to the first `drops` SendCommand calls never come back (the connection is
    closed once the emulator has acted), as when a connection breaks on the way
    back: botocore raises ConnectionClosedError."""

    def __init__(self, upstream: str, drops: int) -> None:
        target = urlparse(upstream)
        self.drops = drops
        self.dropped = 0
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                upstream.request("POST", self.path, body, dict(self.headers.items()))
                answer = upstream.getresponse()
                payload = answer.read()
                upstream.close()
                with lock:
                    drop = "SendCommand" in self.headers.get("X-Amz-Target", "") and (
                        proxy.dropped < proxy.drops
                    )
                    if drop:
                        proxy.dropped += 1
                if drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding",
                                           "date", "server"):  # fmt: skip
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_send_whose_connection_dropped_after_it_took_effect_runs_once(
    sandbox: Sandbox,
) -> None:
    ids = sandbox.aws.add_synthetic(60, tags={"Suite": "dropped"}, name_prefix="dropped")
    proxy = DroppingProxy(sandbox.env["AWS_ENDPOINT_URL_SSM"], drops=1)
    try:
        through = Sandbox(sandbox.aws, {**sandbox.env, "AWS_ENDPOINT_URL_SSM": proxy.url})
        mark = sandbox.mark()
        result = through.run("dropped", "echo once", "--concurrency", "100%")
    finally:
        proxy.close()
    assert proxy.dropped == 1
    assert result.exit_code == 0, result.output[-2000:]
    document = _json(result)
    assert document["summary"] == {"Success": 60}
    assert {r["instance_id"] for r in document["results"]} == set(ids)
    assert len(_answered(sandbox, mark, "SendCommand")) == 2  # two batches, none sent twice
    assert len(document["command_ids"]) == 2


# --- polls that fail ------------------------------------------------------------------


def test_a_run_of_failed_polls_is_waited_out(sandbox: Sandbox) -> None:
    """Every call answers 500 for a while once the command is sent: the run goes on."""
    sandbox.aws.add_synthetic(40, tags={"Suite": "pollstorm"}, name_prefix="pollstorm")
    mark = sandbox.mark()

    def storm() -> None:
        _until(lambda: bool(_answered(sandbox, mark, "SendCommand")))
        sandbox.aws.set_fault("error_5xx", fraction=1.0)
        try:
            _until(lambda: len([c for c in sandbox.calls(mark) if c["status"] == 500]) >= 6)
        finally:
            sandbox.aws.clear_faults()

    watcher = _watch(storm)
    try:
        with watchdog(90):
            result = sandbox.run("pollstorm", "sleep 1; echo fine", "--concurrency", "100%")
    finally:
        watcher.join(timeout=70)
        sandbox.aws.clear_faults()
    assert result.exit_code == 0, result.output[-2000:]
    assert _json(result)["summary"] == {"Success": 40}
    failed = {c["operation"] for c in sandbox.calls(mark) if c["status"] == 500}
    assert failed & {"ListCommands", "ListCommandInvocations"}, failed


def test_polls_failing_past_their_patience_cancel_the_run_and_exit_1(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polls answer 500 for longer than the patience (3 s here): the run cancels
    what it sent, reports the hosts it could not collect, names the error, exits 1."""
    monkeypatch.setattr(SsmTransport, "poll_patience", 3.0, raising=False)
    sandbox.aws.add_synthetic(40, tags={"Suite": "pollfail"}, name_prefix="pollfail")
    mark = sandbox.mark()

    def storm() -> None:
        _until(lambda: bool(_answered(sandbox, mark, "SendCommand")))
        sandbox.aws.set_fault("error_5xx", fraction=1.0)
        try:  # the storm passes once the run gives up and cancels
            _until(lambda: bool(sandbox.calls(mark, "CancelCommand")), timeout=80)
        finally:
            sandbox.aws.clear_faults()

    watcher = _watch(storm)
    started = time.monotonic()
    try:
        with watchdog(60):
            result = sandbox.run("pollfail", "sleep 120", "--concurrency", "100%")
    finally:
        watcher.join(timeout=90)
        sandbox.aws.clear_faults()
    assert result.exit_code == 1, result.output[-2000:]
    assert time.monotonic() - started < 60
    document = _json(result)
    assert document["summary"] == {"Running": 40}
    assert all("not collected" in r["stderr"] for r in document["results"])
    assert "InternalServerError" in result.stderr and "ops runs resume" in result.stderr
    [command_id] = document["command_ids"]
    ssm = sandbox.aws.client("ssm")
    _until(lambda: ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"] == "Cancelled")
    with open_journal() as journal:
        [run] = journal.list_runs(kind="run")
    assert run.status == "unsettled"


# --- a cancel while sends wait out a throttle ---------------------------------------------


def test_a_cancel_goes_ahead_of_throttled_sends_and_stops_their_retries(
    sandbox: Sandbox,
) -> None:
    """SendCommand is granted once every two seconds: after Ctrl-C, CancelCommand goes
    at once (it does not queue behind the sends) and no send is tried again."""
    sandbox.aws.add_synthetic(500, tags={"Suite": "cancelq"}, name_prefix="cancelq")
    sandbox.aws.set_throttle(rates={"SendCommand": (0.5, 1.0)})
    mark = sandbox.mark()
    asked: list[float] = []

    def interrupt() -> None:
        _until(lambda: bool(_answered(sandbox, mark, "SendCommand")))
        _until(lambda: any(c["throttled"] for c in sandbox.calls(mark, "SendCommand")))
        asked.append(time.time())
        os.kill(os.getpid(), signal.SIGINT)

    watcher = _watch(interrupt)
    try:
        with watchdog(90):
            result = sandbox.run("cancelq", "sleep 60", "--concurrency", "100%", output="jsonl")
    finally:
        watcher.join(timeout=60)
        sandbox.aws.set_throttle(multiplier=1.0, rates={"SendCommand": (5.0, 10.0)})
    assert result.exit_code == 130, result.output[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 500
    statuses = {line["status"] for line in lines}
    assert statuses <= {"Cancelled", "NotStarted"} and "NotStarted" in statuses
    [when] = asked
    cancels = sandbox.calls(mark, "CancelCommand")
    assert cancels and min(c["time"] for c in cancels) - when < 2.0, "the cancel queued"
    late = [c for c in sandbox.calls(mark, "SendCommand") if c["time"] > when + 1.5]
    assert late == [], f"{len(late)} sends tried after the cancel"


# --- reads that lag the send -------------------------------------------------------------


@contextmanager
def read_lag(sandbox: Sandbox, low: float, high: float) -> Iterator[None]:
    """Reads see a new command, and each invocation, only `low`-`high` seconds after it."""
    sandbox.aws.admin.settings(consistency_lag_min=low, consistency_lag_max=high)
    try:
        yield
    finally:
        sandbox.aws.admin.settings(consistency_lag_min=0.2, consistency_lag_max=0.8)


def test_get_command_invocation_just_after_a_send_is_a_wait(sandbox: Sandbox) -> None:
    [instance_id] = sandbox.aws.add_synthetic(1, tags={"Suite": "fresh"}, name_prefix="fresh")
    transport = SsmTransport(sandbox.aws.client("ssm", max_attempts=1, mode="standard"))
    with read_lag(sandbox, 1.5, 2.0):
        mark = sandbox.mark()
        command_id = transport.send(CommandSpec(["echo fresh"]), instance_ids=[instance_id])
        answer = transport._invocation(command_id, instance_id)
    assert (answer["CommandId"], answer["InstanceId"]) == (command_id, instance_id)
    gets = sandbox.calls(mark, "GetCommandInvocation")
    assert gets[0]["error"] == "InvocationDoesNotExist", gets[0]
    assert gets[-1]["status"] == 200


def test_a_command_sent_with_targets_closes_on_its_target_count(sandbox: Sandbox) -> None:
    """SSM resolves Targets late (TargetCount 0 at first) and lists each invocation
    later still: the command is closed only once as many as its TargetCount ended."""
    ids = sandbox.aws.add_synthetic(30, tags={"Suite": "targets"}, name_prefix="targets")
    hosts = [Host(i, f"targets-{n}", ping_status="Online") for n, i in enumerate(ids)]
    transport = SsmTransport(sandbox.aws.client("ssm"))
    fanout = FanOut(transport, CommandSpec(["echo hi"]), poll_min=0.05, poll_max=0.3, linger=0.1)
    results: list[HostResult] = []
    with read_lag(sandbox, 0.5, 3.0):
        report = fanout.run_server_side(
            hosts,
            results.append,
            max_concurrency="100%",
            max_errors="100%",
            targets=[{"Key": "tag:Suite", "Values": ["targets"]}],
        )
    assert len(report.command_ids) == 1
    assert sorted(r.instance_id for r in results) == sorted(ids)
    assert {r.status for r in results} == {"Success"}, report.counts
