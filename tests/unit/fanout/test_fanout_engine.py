"""The fan-out engine against an in-memory SSM: batching, budget, throttling, output, cancel."""

from __future__ import annotations

import threading
import time
from typing import Any

from fanout_fakes import FakeS3, FakeSsm, _error

from ops.engine.budget import FailureBudget, parse_concurrency, parse_max_errors
from ops.engine.fanout import FanOut
from ops.transports.ssm import (
    CommandSpec,
    HostResult,
    SsmTransport,
    outcome,
    s3_location,
    split_output,
)


def _run(
    ssm: FakeSsm,
    hosts: list,
    *,
    concurrency: str = "100%",
    max_errors: str = "100%",
    s3: FakeS3 | None = None,
    bucket: str | None = None,
) -> tuple[list[HostResult], object]:
    transport = SsmTransport(ssm, s3, max_retry_delay=60)
    spec = CommandSpec(["echo ok"], output_bucket=bucket)
    fanout = FanOut(transport, spec, poll_min=0.02, poll_max=0.2)
    results: list[HostResult] = []
    budget = FailureBudget(len(hosts), parse_concurrency(concurrency), parse_max_errors(max_errors))
    report = fanout.run_client_side(hosts, budget, results.append)
    return results, report


def test_every_host_reported_once_in_batches_of_at_most_50() -> None:
    ssm = FakeSsm()
    hosts = ssm.add(230)
    results, report = _run(ssm, hosts)
    assert sorted(r.instance_id for r in results) == sorted(h.instance_id for h in hosts)
    assert {r.status for r in results} == {"Success"}
    # batches go out on several threads, so their order at the server is not fixed
    assert sorted(len(s["InstanceIds"]) for s in ssm.sent) == [30, 50, 50, 50, 50]
    assert all(s["MaxErrors"] == "100%" for s in ssm.sent)
    assert report.counts == {"Success": 230}
    assert results[0].duration_s == 1.5 and results[0].exit_code == 0
    # never one GetCommandInvocation per host
    assert ssm.calls["GetCommandInvocation"] == 0
    assert ssm.calls["ListCommandInvocations"] < 40


def test_concurrency_limits_hosts_in_flight() -> None:
    ssm = FakeSsm()
    hosts = ssm.add(40, delay=0.1)
    results, _ = _run(ssm, hosts, concurrency="10")
    assert len(results) == 40
    assert all(len(s["InstanceIds"]) == 10 for s in ssm.sent)
    assert ssm.max_in_flight <= 10


def test_failure_budget_stops_dispatch_and_reports_never_started() -> None:
    ssm = FakeSsm()
    hosts = ssm.add(10, status="Failed", details="Failed", code=1) + ssm.add(90)
    results, report = _run(ssm, hosts, concurrency="10", max_errors="2")
    statuses = {r.instance_id: r.status for r in results}
    assert len(statuses) == 100
    assert report.stopped_by_budget
    assert report.counts["Failed"] == 10
    assert report.counts["NotStarted"] == 90
    assert len(ssm.sent) == 1


def test_throttling_slows_but_loses_nothing() -> None:
    ssm = FakeSsm(throttle=0.4)
    hosts = ssm.add(300)
    results, report = _run(ssm, hosts)
    assert len({r.instance_id for r in results}) == 300 == len(results)
    assert report.counts == {"Success": 300}
    assert sum(v for k, v in ssm.calls.items() if k.endswith(":throttled")) > 0


def test_cut_output_fetched_only_where_cut_and_from_s3_past_24000() -> None:
    ssm = FakeSsm()
    small = ssm.add(5)
    medium = ssm.add(1, stdout="m" * 5000)
    large = ssm.add(1, stdout="L" * 30000)
    results, _ = _run(ssm, small + medium + large)
    by_id = {r.instance_id: r for r in results}
    assert ssm.calls["GetCommandInvocation"] == 2
    assert by_id[medium[0].instance_id].stdout == "m" * 5000
    cut = by_id[large[0].instance_id]
    assert cut.output_truncated and len(cut.stdout) == 24000

    ssm2 = FakeSsm()
    big = ssm2.add(1, stdout="B" * 30000)
    s3 = FakeS3({})
    results2: list[HostResult] = []

    def read_any(*, Bucket: str, Key: str) -> dict[str, object]:
        s3.reads.append((Bucket, Key))
        import io

        return {"Body": io.BytesIO(b"B" * 30000)}

    s3.get_object = read_any  # type: ignore[method-assign]
    results2, _ = _run(ssm2, big, s3=s3, bucket="bucket")
    assert results2[0].stdout == "B" * 30000 and not results2[0].output_truncated
    assert s3.reads and s3.reads[0][0] == "bucket"


def test_stderr_split_from_detail_output() -> None:
    ssm = FakeSsm()
    hosts = ssm.add(1, status="Failed", details="Failed", code=2, stdout="out\n", stderr="bad\n")
    results, _ = _run(ssm, hosts)
    assert (results[0].status, results[0].exit_code) == ("Failed", 2)
    assert (results[0].stdout, results[0].stderr) == ("out\n", "bad\n")


def test_cancel_cancels_in_flight_and_marks_the_rest_not_started() -> None:
    ssm = FakeSsm()
    hosts = ssm.add(100, delay=30)
    transport = SsmTransport(ssm, None)
    fanout = FanOut(transport, CommandSpec(["sleep 30"]), poll_min=0.02, poll_max=0.2)
    budget = FailureBudget(100, parse_concurrency("50"), parse_max_errors("0"))
    results: list[HostResult] = []

    def cancel_once_sent() -> None:
        deadline = time.monotonic() + 5
        while not ssm.sent and time.monotonic() < deadline:
            time.sleep(0.01)
        fanout.cancel()

    threading.Thread(target=cancel_once_sent, daemon=True).start()
    report = fanout.run_client_side(hosts, budget, results.append)
    assert report.interrupted
    assert ssm.cancelled == report.command_ids
    assert report.counts == {"Cancelled": 50, "NotStarted": 50}


def test_unmanaged_ids_are_split_out_and_the_rest_resent() -> None:
    ssm = FakeSsm()
    hosts = ssm.add(120)
    ssm.unmanaged = {hosts[3].instance_id, hosts[70].instance_id}
    results, report = _run(ssm, hosts)
    assert len(results) == 120
    assert report.counts == {"Success": 118, "Unreachable": 2}
    unreachable = {r.instance_id for r in results if r.status == "Unreachable"}
    assert unreachable == ssm.unmanaged
    assert ssm.calls["DescribeInstanceInformation"] == 2


def test_a_send_whose_answer_was_lost_is_found_not_sent_again() -> None:
    ssm = FakeSsm()
    hosts = ssm.add(120)
    ssm.lose_responses = 3  # every batch is created, and every first answer is a 500
    results, report = _run(ssm, hosts)
    assert len(ssm.sent) == 3, "a batch was sent twice"
    assert sorted(report.command_ids) == sorted(ssm.commands)
    assert len(results) == 120 == len({r.instance_id for r in results})
    assert report.counts == {"Success": 120}
    # each send carried its own marker, and SSM kept the operator's comment before it
    kept = {comment.rsplit(" ", 1)[0] for comment in ssm.comments.values()}
    markers = {comment.rsplit(" ", 1)[1] for comment in ssm.comments.values()}
    assert kept == {"ops run"} and len(markers) == 3


def test_status_mapping_and_helpers() -> None:
    assert outcome("Failed", "Undeliverable") == "Undeliverable"
    assert outcome("TimedOut", "DeliveryTimedOut") == "DeliveryTimedOut"
    assert outcome("TimedOut", "ExecutionTimedOut") == "TimedOut"
    assert outcome("Failed", "Terminated") == "Failed"
    assert outcome("Success", "Success") == "Success"
    assert split_output("a\n----------ERROR-------\nb") == ("a", "b")
    assert s3_location("http://127.0.0.1:5000/bkt/ops/c/i/stdout") == ("bkt", "ops/c/i/stdout")
    assert s3_location("https://bkt.s3.us-east-1.amazonaws.com/k/stdout") == ("bkt", "k/stdout")
    assert s3_location("") is None


class LosingSsm(FakeSsm):
    """Creates every command and loses the first SendCommand answer (a 500), while
    ListCommands is refused: the search for the lost send cannot decide."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        answer = super().send_command(**kwargs)
        if self.lost == 0:
            self.lost += 1
            raise _error("InternalServerError", 500)
        return answer

    def list_commands(self, **kwargs: Any) -> dict[str, Any]:
        if "Filters" in kwargs:
            raise _error("AccessDeniedException")
        return super().list_commands(**kwargs)


def test_a_lost_send_is_unknown_and_not_counted_against_the_budget() -> None:
    ssm = LosingSsm()
    hosts = ssm.add(100)
    results, report = _run(ssm, hosts, concurrency="50", max_errors="0")
    unknown = [r for r in results if r.status == "Unknown"]
    assert len(unknown) == 50 and all("marker #" in r.stderr for r in unknown)
    assert report.counts == {"Unknown": 50, "Success": 50}  # the budget of 0 errors held
    assert not report.stopped_by_budget
    assert len(ssm.sent) == 2  # the lost batch was never sent again


class FailingPolls(FakeSsm):
    """ListCommandInvocations answers 500 from the moment `broken` is set."""

    broken = False

    def list_command_invocations(self, **kwargs: Any) -> dict[str, Any]:
        if self.broken:
            raise _error("InternalServerError", 500)
        return super().list_command_invocations(**kwargs)


def test_polls_failing_past_their_patience_cancel_and_report_what_is_known() -> None:
    ssm = FailingPolls()
    # hosts that finish: invocations are listed only once ListCommands counts some done
    hosts = ssm.add(60, delay=0.3)
    transport = SsmTransport(ssm, max_retry_delay=60)
    transport.poll_patience = 0.5
    fanout = FanOut(transport, CommandSpec(["sleep 30"]), poll_min=0.02, poll_max=0.1)
    ssm.broken = True
    results: list[HostResult] = []
    started = time.monotonic()
    budget = FailureBudget(60, parse_concurrency("100%"), parse_max_errors("100%"))
    report = fanout.run_client_side(hosts, budget, results.append)
    assert time.monotonic() - started < 20
    assert report.poll_error and "InternalServerError" in report.poll_error
    assert report.counts == {"Running": 60} and not report.interrupted
    assert sorted(ssm.cancelled) == sorted(report.command_ids)
    assert all("not collected" in r.stderr for r in results)
