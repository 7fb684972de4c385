"""Resolve a target expression to hosts: running EC2 instances joined with SSM's view.

EC2 says which instances exist and what they are tagged; SSM says whether an
agent can be reached. Both are needed before anything is sent: a host whose
agent is not Online would only come back as Undeliverable minutes later, so
it is named up front instead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ops.aws import client
from ops.config import Settings
from ops.errors import BadInput
from ops.fleet.targets import TargetSpec

ONLINE = "Online"
NOT_REGISTERED = "NotRegistered"
_SSM_CHUNK = 50
# Above this many matched instances, asking SSM about each one costs more calls
# (50 ids a page) than sending does; only the offline agents are looked up and
# SendCommand's InvalidInstanceId catches the few that are not managed at all.
EXACT_LOOKUP_LIMIT = 500
_OFFLINE = ["ConnectionLost", "Inactive"]
# The EC2 calls a listing may make (here, in ssh_reach and placement): their client is made
# from EC2's model cut down to these (ops.aws_models: made in a third of the time) and has
# no other method. DescribeAvailabilityZones is in for the zones a listing looks up.
EC2_LISTING = ("DescribeInstances", "DescribeAvailabilityZones")


@dataclass(frozen=True)
class Host:
    instance_id: str
    name: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    ping_status: str = NOT_REGISTERED
    platform: str = ""
    platform_version: str = ""

    @property
    def reachable(self) -> bool:
        return self.ping_status == ONLINE

    @property
    def label(self) -> str:
        return self.name or self.instance_id


@dataclass(frozen=True)
class Resolution:
    """What a target expression matched: hosts to send to, and hosts SSM cannot reach."""

    reachable: list[Host]
    unreachable: list[Host]
    expression: str
    region: str

    @property
    def all(self) -> list[Host]:
        return [*self.reachable, *self.unreachable]


_WILDCARDS = frozenset("*?\\")


def server_filters(spec: TargetSpec) -> list[dict[str, Any]]:
    """The EC2 filters that narrow a listing without ever dropping a match.

    Tag keys are matched case-insensitively here, which EC2's `tag:Key`
    filters cannot do, but a tag's value is matched exactly either way, so
    one `tag-value` filter (some tag has this value) goes to EC2 and the keys
    are checked on what comes back. Without tags, the Name globs go instead
    (EC2 knows `*` and `?`; a glob with `[` stays client-side). Only one
    `tag-value` filter is sent: two filters of the same name are not a
    reliable AND everywhere.
    """
    filters: list[dict[str, Any]] = [{"Name": "instance-state-name", "Values": ["running"]}]
    values = [value for value in spec.tags.values() if not _WILDCARDS & set(value)]
    if values:
        filters.append({"Name": "tag-value", "Values": [values[0]]})
    elif (
        not spec.tags
        and spec.name_globs
        and not any("[" in glob or "\\" in glob for glob in spec.name_globs)
    ):
        filters.append({"Name": "tag-value", "Values": list(spec.name_globs)})
    return filters


PAGE_SIZE = 1000  # the most EC2 returns in a page: up to that many hosts in one call
# Zones are listed side by side, their pages parsed at the same time, and a parsed
# page of 1,000 instances is tens of megabytes: at half that, a 4,000-instance
# listing in three zones peaked at the RSS of the one-after-another listing
# (117 MB), where whole pages took it to 135 MB.
ZONE_PAGE_SIZE = 500
ZONE_WORKERS = 8

Matched = list[tuple[str, dict[str, str]]]


def _page_matches(page: dict[str, Any], spec: TargetSpec) -> Matched:
    matched: Matched = []
    for reservation in page.get("Reservations", []):
        for instance in reservation.get("Instances", []):
            tags = {t["Key"]: t.get("Value", "") for t in instance.get("Tags", []) or []}
            instance_id = instance["InstanceId"]
            if spec.matches(tags, instance_id):
                matched.append((instance_id, tags))
    return matched


def matched_pages(ec2: Any, spec: TargetSpec) -> Iterator[tuple[Matched, bool]]:
    """(instance id, tags) of the running instances each DescribeInstances page
    matched, and whether the listing may go on: the caller learns that from the
    page's NextToken, without asking for the next page. A listing that goes on
    in parallel ends with an empty page marked final."""
    filters = server_filters(spec)
    if spec.instance_ids:
        yield from _pages_by_id(ec2, spec, filters)
        return
    first = ec2.describe_instances(Filters=filters, MaxResults=PAGE_SIZE)
    matched = _page_matches(first, spec)
    token = first.get("NextToken")
    del first  # tens of megabytes parsed; only the matches are kept
    yield matched, bool(token)
    if token:
        seen = {instance_id for instance_id, _ in matched}
        yield from _rest_of_listing(ec2, spec, filters, token, seen)


def _pages_by_id(
    ec2: Any, spec: TargetSpec, filters: list[dict[str, Any]]
) -> Iterator[tuple[Matched, bool]]:
    paginator = ec2.get_paginator("describe_instances")
    ids = list(spec.instance_ids)
    chunks = [ids[i : i + 200] for i in range(0, len(ids), 200)]
    for index, chunk in enumerate(chunks):
        # InstanceIds with an unknown id fails the whole call; a filter does not.
        call = {"Filters": [*filters, {"Name": "instance-id", "Values": chunk}]}
        last_chunk = index == len(chunks) - 1
        for page in paginator.paginate(**call):
            yield _page_matches(page, spec), bool(page.get("NextToken")) or not last_chunk


def _rest_of_listing(
    ec2: Any, spec: TargetSpec, filters: list[dict[str, Any]], token: str, seen: set[str]
) -> Iterator[tuple[Matched, bool]]:
    """The pages after the first, one zone at a time in parallel where EC2 says which
    zones the region has.

    NextToken chains a listing's pages, so one listing of ten thousand instances
    is ten round trips one after another, each a page EC2 takes seconds to
    serve and the client a second or two to parse, while sending could go on.
    Every instance is in exactly one zone of its region, so one listing per
    zone (the `availability-zone` filter) covers the same instances with no
    overlap, side by side. Those listings start again from the top, so the
    first page's instances come round once more and are dropped here. Where the
    zones cannot be read (an older policy without DescribeAvailabilityZones),
    the listing goes on from the token, page after page, as before.
    """
    try:
        reply = ec2.describe_availability_zones(AllAvailabilityZones=True)
        zones = sorted({zone["ZoneName"] for zone in reply.get("AvailabilityZones", [])})
    except ClientError:
        zones = []
    if not zones:
        yield from _listing(ec2, spec, filters, token)
        return
    yield from _zone_listings(ec2, spec, filters, zones, seen)


def _listing(
    ec2: Any,
    spec: TargetSpec,
    filters: list[dict[str, Any]],
    token: str | None = None,
    size: int = PAGE_SIZE,
) -> Iterator[tuple[Matched, bool]]:
    """One listing's matches page by page, from `token` on.

    Asked for page by page rather than through botocore's paginator, which
    holds on to a page while it asks for the next: a parsed page of a thousand
    instances is tens of megabytes, and here only its matches are kept.
    """
    while True:
        call: dict[str, Any] = {"Filters": filters, "MaxResults": size}
        if token:
            call["NextToken"] = token
        page = ec2.describe_instances(**call)
        token = page.get("NextToken")
        matched = _page_matches(page, spec)
        del page
        yield matched, bool(token)
        if not token:
            return


def _zone_listings(
    ec2: Any, spec: TargetSpec, filters: list[dict[str, Any]], zones: list[str], seen: set[str]
) -> Iterator[tuple[Matched, bool]]:
    """Pages of every zone's listing as they come; the first error ends it (the other
    listings stop at their next page)."""
    answers: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()

    def list_zone(zone: str) -> None:
        try:
            zone_filters = [*filters, {"Name": "availability-zone", "Values": [zone]}]
            for matched, _more in _listing(ec2, spec, zone_filters, size=ZONE_PAGE_SIZE):
                if stop.is_set():
                    return
                answers.put(("page", matched))
        except Exception as exc:  # handed to the caller, raised there
            answers.put(("error", exc))
        finally:
            answers.put(("done", zone))

    pool = ThreadPoolExecutor(min(ZONE_WORKERS, len(zones)), thread_name_prefix="ec2-zone")
    try:
        for zone in zones:
            pool.submit(list_zone, zone)
        finished = 0
        while finished < len(zones):
            kind, value = answers.get()
            if kind == "done":
                finished += 1
            elif kind == "error":
                raise value
            else:
                fresh = [item for item in value if item[0] not in seen]
                if fresh:
                    yield fresh, True
        yield [], False
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


def running_instances(ec2: Any, spec: TargetSpec) -> Iterator[tuple[str, dict[str, str]]]:
    """(instance id, tags) of every running instance the spec matches."""
    for matched, _more in matched_pages(ec2, spec):
        yield from matched


def _instance_information(ssm: Any, filters: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """SSM's record per instance id for the instances these filters select."""
    paginator = ssm.get_paginator("describe_instance_information")
    found: dict[str, dict[str, Any]] = {}
    for page in paginator.paginate(Filters=filters, PaginationConfig={"PageSize": 50}):
        for info in page.get("InstanceInformationList", []):
            found[info["InstanceId"]] = info
    return found


def agent_information(ssm: Any, instance_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """SSM's record per instance id, asked for in chunks so a small target in a big
    fleet costs a few calls, not a listing of every managed instance."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(instance_ids), _SSM_CHUNK):
        chunk = list(instance_ids[start : start + _SSM_CHUNK])
        found.update(_instance_information(ssm, [{"Key": "InstanceIds", "Values": chunk}]))
    return found


def offline_agents(ssm: Any) -> dict[str, dict[str, Any]]:
    """SSM's record of every agent that is not Online: one page in a healthy fleet."""
    return _instance_information(ssm, [{"Key": "PingStatus", "Values": _OFFLINE}])


@dataclass
class Listing:
    """What discovery knows when sending may begin, and what it is still listing.

    `known` holds every unreachable host the target matches and the first
    reachable ones; `more` yields the reachable hosts of the pages still to
    come (nothing when `complete`). A fleet of ten thousand takes ten
    DescribeInstances pages, many seconds, and SendCommand's rate, not the
    listing, is what bounds a run: so a run can start on the first page.
    """

    known: Resolution
    more: Iterator[list[Host]]
    complete: bool

    def drain(self) -> Resolution:
        """The whole resolution, reachable hosts sorted by instance id."""
        if self.complete:
            return self.known
        rest = [host for page in self.more for host in page]
        self.complete = True
        reachable = sorted([*self.known.reachable, *rest], key=lambda host: host.instance_id)
        self.known = Resolution(
            reachable, self.known.unreachable, self.known.expression, self.known.region
        )
        return self.known


def discover(
    ec2: Any,
    ssm: Any,
    spec: TargetSpec,
    *,
    region: str,
    include_offline: bool = False,
) -> Listing:
    """Hosts the spec selects, listed as far as needed to start; BadInput when none.

    A listing that ends within EXACT_LOOKUP_LIMIT matches is looked up host by
    host and returned complete. A longer one asks SSM for the agents that are
    not Online (one page in a healthy fleet), lists those instances in EC2 to
    learn which the target matches, and returns what it has, with the
    remaining pages to follow: every unreachable host is named before the
    first send, and no page's wait holds the sending back.

    With include_offline the unreachable hosts are moved to the send list, so
    SSM itself reports them (Undeliverable or DeliveryTimedOut).
    """
    pages = matched_pages(ec2, spec)
    matched: list[tuple[str, dict[str, str]]] = []
    more = False
    for page, more in pages:
        matched.extend(page)
        if more and len(matched) > EXACT_LOOKUP_LIMIT:
            break
    if not more:
        if not matched:
            raise BadInput(f"no running instance matches {spec.describe()} in {region}")
        if len(matched) <= EXACT_LOOKUP_LIMIT:
            info = agent_information(ssm, [instance_id for instance_id, _ in matched])
            unknown = NOT_REGISTERED
        else:
            info = offline_agents(ssm)
            unknown = ONLINE
        known = _split(matched, info, unknown, include_offline)
        resolution = Resolution(known[0], known[1], spec.describe(), region)
        return Listing(resolution, iter(()), complete=True)

    offline = offline_agents(ssm)
    seen = {instance_id for instance_id, _ in matched}
    elsewhere = [instance_id for instance_id in sorted(offline) if instance_id not in seen]
    if elsewhere and spec.instance_ids:
        elsewhere = [instance_id for instance_id in elsewhere if instance_id in spec.instance_ids]
    if elsewhere:
        # Offline hosts on pages not listed yet: named now, so they are reported
        # before anything is sent, and skipped when their page comes.
        narrowed = TargetSpec(spec.tags, tuple(elsewhere), spec.name_globs)
        matched.extend(running_instances(ec2, narrowed))
    reachable, unreachable = _split(matched, offline, ONLINE, include_offline)
    resolution = Resolution(reachable, unreachable, spec.describe(), region)

    def rest() -> Iterator[list[Host]]:
        for page, _more in pages:
            fresh = [item for item in page if item[0] not in offline]
            if fresh:
                yield _split(fresh, {}, ONLINE, include_offline)[0]

    return Listing(resolution, rest(), complete=False)


def _split(
    matched: list[tuple[str, dict[str, str]]],
    info: dict[str, dict[str, Any]],
    unknown: str,
    include_offline: bool,
) -> tuple[list[Host], list[Host]]:
    """(hosts to send to, hosts SSM cannot reach), each sorted by instance id."""
    reachable: list[Host] = []
    unreachable: list[Host] = []
    for instance_id, tags in sorted(matched, key=lambda item: item[0]):
        record = info.get(instance_id, {})
        name = next((v for k, v in tags.items() if k.lower() == "name"), "")
        host = Host(
            instance_id=instance_id,
            name=name,
            tags=tags,
            ping_status=record.get("PingStatus", unknown),
            platform=record.get("PlatformName", ""),
            platform_version=record.get("PlatformVersion", ""),
        )
        if host.reachable or include_offline:
            reachable.append(host)
        else:
            unreachable.append(host)
    return reachable, unreachable


def resolve(
    ec2: Any,
    ssm: Any,
    spec: TargetSpec,
    *,
    region: str,
    include_offline: bool = False,
) -> Resolution:
    """Every host the spec selects, listed to the end; BadInput when none."""
    return discover(ec2, ssm, spec, region=region, include_offline=include_offline).drain()


def discover_hosts(
    settings: Settings, spec: TargetSpec, *, include_offline: bool = False
) -> Listing:
    """`discover` with clients for the settings' profile and region."""
    ec2 = client(
        "ec2",
        profile=settings.profile,
        region=settings.region,
        max_attempts=settings.max_attempts,
        operations=EC2_LISTING,
    )
    ssm = client(
        "ssm", profile=settings.profile, region=settings.region, max_attempts=settings.max_attempts
    )
    return discover(ec2, ssm, spec, region=settings.region, include_offline=include_offline)
