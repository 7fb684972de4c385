"""A run that starts sending before the fleet is fully listed: discovery, feed, budget, engine."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import ANY, Stubber
from click.testing import CliRunner
from fanout_fakes import FakeSsm

from ops.cli.main import cli
from ops.engine.budget import Amount, FailureBudget, parse_concurrency, parse_max_errors
from ops.engine.fanout import FanOut
from ops.engine.feed import Feed
from ops.fleet.discovery import Host, Listing, Resolution, discover, resolve
from ops.fleet.targets import build_spec
from ops.transports.ssm import CommandSpec, HostResult, SsmTransport
from ops.workflows import run as run_module

ZONE_FILTERS = [
    {"Name": "instance-state-name", "Values": ["running"]},
    {"Name": "tag-value", "Values": ["web"]},
]
OFFLINE_FILTER = {
    "Filters": [{"Key": "PingStatus", "Values": ["ConnectionLost", "Inactive"]}],
    "MaxResults": 50,
}


def _instance(instance_id: str, **tags: str) -> dict[str, object]:
    return {"InstanceId": instance_id, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


def _clients() -> tuple[object, object]:
    kwargs = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    return boto3.client("ec2", **kwargs), boto3.client("ssm", **kwargs)


def _ids(start: int, count: int) -> list[str]:
    return [f"i-{n:017x}" for n in range(start, start + count)]


def _stub_two_pages(
    ec2_stub: Stubber, ssm_stub: Stubber, *, zones_readable: bool = True
) -> tuple[list[str], list[str]]:
    """Page 1: 600 web hosts (one offline); page 2: 300 more (one offline, one a db).

    Page 2 comes from the one zone's own listing, which starts from the top and
    so holds some of page 1 again; where the zones cannot be read, from page 1's
    token.
    """
    first, second = _ids(1, 600), _ids(1001, 300)
    ec2_stub.add_response(
        "describe_instances",
        {
            "Reservations": [{"Instances": [_instance(i, Role="web") for i in first]}],
            "NextToken": "page-2",
        },
        {"Filters": ANY, "MaxResults": 1000},
    )
    ssm_stub.add_response(
        "describe_instance_information",
        {
            "InstanceInformationList": [
                {"InstanceId": first[7], "PingStatus": "ConnectionLost"},
                {"InstanceId": second[9], "PingStatus": "Inactive"},
                # an agent whose instance is gone: SSM remembers it, EC2 does not list it
                {"InstanceId": "i-0000000000000dead", "PingStatus": "ConnectionLost"},
            ]
        },
        OFFLINE_FILTER,
    )
    # the offline agents not seen yet are looked up by id, before anything is sent
    ec2_stub.add_response(
        "describe_instances",
        {"Reservations": [{"Instances": [_instance(second[9], Role="web")]}]},
        {"Filters": ANY},
    )
    page_two = [_instance(i, Role="web") for i in second]
    page_two[20] = _instance(second[20], Role="db")
    if not zones_readable:
        ec2_stub.add_client_error(
            "describe_availability_zones",
            service_error_code="UnauthorizedOperation",
            http_status_code=403,
            expected_params={"AllAvailabilityZones": True},
        )
        ec2_stub.add_response(
            "describe_instances",
            {"Reservations": [{"Instances": page_two}]},
            {"Filters": ANY, "MaxResults": 1000, "NextToken": "page-2"},
        )
        return first, second
    ec2_stub.add_response(
        "describe_availability_zones",
        {"AvailabilityZones": [{"ZoneName": "us-east-1a"}]},
        {"AllAvailabilityZones": True},
    )
    again = [_instance(i, Role="web") for i in first[:5]]
    ec2_stub.add_response(
        "describe_instances",
        {"Reservations": [{"Instances": again}, {"Instances": page_two}]},
        {
            "Filters": [*ZONE_FILTERS, {"Name": "availability-zone", "Values": ["us-east-1a"]}],
            "MaxResults": 500,
        },
    )
    return first, second


@pytest.mark.parametrize("zones_readable", [True, False], ids=["by-zone", "by-token"])
def test_a_long_listing_names_every_offline_host_before_its_later_pages(
    zones_readable: bool,
) -> None:
    ec2, ssm = _clients()
    asked: list[object] = []
    ec2.meta.events.register(
        "provide-client-params.ec2.DescribeInstances",
        lambda params, **_: asked.append(params.get("NextToken")),
    )
    with Stubber(ec2) as ec2_stub, Stubber(ssm) as ssm_stub:
        first, second = _stub_two_pages(ec2_stub, ssm_stub, zones_readable=zones_readable)
        listing = discover(ec2, ssm, build_spec(targets=["role=web"]), region="us-east-1")
        assert not listing.complete
        # page 1 and the offline agents' lookup; page 2 waits for whoever sends
        assert asked == [None, None]
        assert [h.instance_id for h in listing.known.unreachable] == [first[7], second[9]]
        assert len(listing.known.reachable) == 599
        later = [host for page in listing.more for host in page]
        ec2_stub.assert_no_pending_responses()
    # by zone, the zone's listing starts from the top: page 1's hosts are not sent twice
    assert asked == [None, None, None if zones_readable else "page-2"]
    assert len(later) == 298  # less the offline host and the db
    assert second[9] not in {h.instance_id for h in later}
    assert second[20] not in {h.instance_id for h in later}
    assert {h.ping_status for h in later} == {"Online"}


def test_drain_merges_the_pages_sorted_and_include_offline_sends_to_all() -> None:
    ec2, ssm = _clients()
    with Stubber(ec2) as ec2_stub, Stubber(ssm) as ssm_stub:
        first, second = _stub_two_pages(ec2_stub, ssm_stub)
        found = resolve(
            ec2, ssm, build_spec(targets=["role=web"]), region="us-east-1", include_offline=True
        )
    ids = [h.instance_id for h in found.reachable]
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == 899
    assert first[7] in ids and second[9] in ids and not found.unreachable


def test_feed_hands_over_pages_then_an_error_then_ends() -> None:
    def pages() -> Iterator[list[int]]:
        yield [1, 2]
        yield [3]
        raise RuntimeError("listing broke")

    feed: Feed[int] = Feed(pages())
    taken: list[list[int]] = []
    deadline = time.monotonic() + 5
    while not feed.done and time.monotonic() < deadline:
        feed.wait(0.05)
        taken.extend(feed.take())
    assert feed.done and taken == [[1, 2], [3]]
    assert isinstance(feed.error, RuntimeError)


def test_budget_counting_holds_rather_than_stops_until_the_total_is_known() -> None:
    budget = FailureBudget(10, Amount(100, True), Amount(10, True), counting=True)
    assert (budget.concurrency, budget.allowed_errors) == (10, 1)
    budget.record("Failed")
    budget.record("Failed")
    assert budget.exhausted and not budget.stopped  # 2 > 10% of the 10 known so far
    budget.grow(90)
    assert (budget.concurrency, budget.allowed_errors) == (100, 10)
    assert not budget.exhausted
    budget.close()
    for _ in range(9):
        budget.record("TimedOut")
    assert budget.stopped


def _engine(ssm: FakeSsm) -> FanOut:
    return FanOut(SsmTransport(ssm, None, max_retry_delay=60), CommandSpec(["true"]), poll_min=0.02)


def test_sending_starts_before_the_listing_ends_and_every_listed_host_is_reported() -> None:
    ssm = FakeSsm()
    first = ssm.add(120)
    later = [ssm.add(50), ssm.add(70)]
    sent_before_page_two = threading.Event()

    def more() -> Iterator[list[Host]]:
        # the second page is only listed once the engine has sent something
        deadline = time.monotonic() + 5
        while not ssm.sent and time.monotonic() < deadline:
            time.sleep(0.01)
        if ssm.sent:
            sent_before_page_two.set()
        yield from later

    listed: list[int] = []
    results: list[HostResult] = []
    budget = FailureBudget(len(first), parse_concurrency("100%"), parse_max_errors("0"))
    report = _engine(ssm).run_client_side(
        first, budget, results.append, more=more(), on_listed=lambda page: listed.append(len(page))
    )
    assert sent_before_page_two.is_set()
    assert listed == [50, 70] and budget.total == 240 and not budget.counting
    assert sorted(r.instance_id for r in results) == sorted(ssm.behaviours)
    assert report.counts == {"Success": 240} and report.listing_complete


def test_a_listing_that_fails_part_way_stops_dispatch_and_says_so() -> None:
    ssm = FakeSsm()
    first = ssm.add(60)
    queued = ssm.add(40)

    def more() -> Iterator[list[Host]]:
        yield queued
        deadline = time.monotonic() + 5
        while not ssm.sent and time.monotonic() < deadline:
            time.sleep(0.01)
        raise ConnectionError("EC2 went away")

    results: list[HostResult] = []
    # concurrency 50: the queued page is still pending when the listing breaks
    budget = FailureBudget(len(first), parse_concurrency("50"), parse_max_errors("0"))
    report = _engine(ssm).run_client_side(first, budget, results.append, more=more())
    assert report.listing_error is not None and "EC2 went away" in report.listing_error
    assert not report.listing_complete
    assert len(results) == 100 == len({r.instance_id for r in results})
    # the batch already sent finished; what was listed but not sent never started
    assert report.counts.get("Success", 0) >= 50
    assert report.counts.get("NotStarted", 0) > 0
    assert sum(report.counts.values()) == 100


def test_errors_on_the_first_page_hold_dispatch_until_the_count_is_final() -> None:
    ssm = FakeSsm()
    failing = ssm.add(5, status="Failed", details="Failed", code=1)
    rest = ssm.add(95)

    held: list[bool] = []
    results: list[HostResult] = []
    budget = FailureBudget(5, parse_concurrency("100%"), parse_max_errors("10%"))

    def more() -> Iterator[list[Host]]:
        deadline = time.monotonic() + 5  # the 5 failures land while only 5 hosts are known
        while len(results) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        held.append(budget.exhausted and not budget.stopped)
        yield rest

    report = _engine(ssm).run_client_side(failing, budget, results.append, more=more())
    assert held == [True]
    # 5 errors of 100 hosts is within 10%: the run went on once the count was known
    assert not report.stopped_by_budget
    assert report.counts == {"Failed": 5, "Success": 95}


def _listing(known: list[Host], more: Iterator[list[Host]]) -> Listing:
    return Listing(Resolution(known, [], "role=web", "us-east-1"), more, complete=False)


def test_ops_run_streams_only_when_confirmed_and_says_when_the_listing_broke(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ssm = FakeSsm()
    first, queued = ssm.add(60), ssm.add(40)

    def more(breaks: bool) -> Iterator[list[Host]]:
        yield queued
        if breaks:
            raise ConnectionError("EC2 went away")

    listings: list[Listing] = []

    def discover_hosts(*_args: object, **_kwargs: object) -> Listing:
        listings.append(_listing(first, more(breaks=bool(listings))))
        return listings[-1]

    monkeypatch.setattr(run_module, "discover_hosts", discover_hosts)
    monkeypatch.setattr(run_module, "open_transport", lambda _s: SsmTransport(ssm, None))
    args = ["run", "--target", "role=web", "--output", "json", "--", "true"]

    dry = CliRunner().invoke(cli, ["--yes", *args[:3], "--dry-run", "--", "true"])
    assert dry.exit_code == 0, dry.output
    assert listings[-1].complete and "100 hosts match" in dry.output  # drained, not streamed

    result = CliRunner().invoke(cli, ["--yes", *args])
    assert result.exit_code == 1, result.output
    assert "listing hosts failed part way: EC2 went away" in result.stderr
    assert "100 hosts were listed" in result.stderr
    summary = json.loads(result.stdout[result.stdout.index("{") :])["summary"]
    assert sum(summary.values()) == 100 and summary.get("NotStarted", 0) > 0


def test_a_cancel_while_listing_stops_taking_pages_and_reports_what_was_listed() -> None:
    ssm = FakeSsm()
    first = ssm.add(100, delay=30)
    never = ssm.add(50)
    release = threading.Event()

    def more() -> Iterator[list[Host]]:
        release.wait(5)  # the listing is still going when the cancel comes
        yield never

    fanout = _engine(ssm)
    results: list[HostResult] = []
    budget = FailureBudget(len(first), parse_concurrency("50"), parse_max_errors("0"))

    def cancel_once_sent() -> None:
        deadline = time.monotonic() + 5
        while len(ssm.sent) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        fanout.cancel()

    threading.Thread(target=cancel_once_sent, daemon=True).start()
    try:
        report = fanout.run_client_side(first, budget, results.append, more=more())
    finally:
        release.set()
    assert report.interrupted and not report.listing_complete
    assert report.counts == {"Cancelled": 50, "NotStarted": 50}
    assert {r.instance_id for r in results} == {h.instance_id for h in first}
