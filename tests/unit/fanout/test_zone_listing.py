"""A long listing goes on one zone at a time, side by side, and loses or repeats nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ops.fleet.discovery import discover, matched_pages
from ops.fleet.targets import build_spec

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
WAIT = 10.0  # a bound on each wait, not a pause: every wait ends on an event


def _instance(instance_id: str) -> dict[str, Any]:
    return {"InstanceId": instance_id, "Tags": [{"Key": "Role", "Value": "web"}]}


class ZonedEc2:
    """DescribeInstances over instances spread across zones, paged as EC2 pages.

    Every zone's first page waits at a barrier of all the zones, so a listing
    that asked for them one after another would never get past the first.
    """

    def __init__(self, per_zone: int, page: int = 1000, fail_zone: str | None = None) -> None:
        self.fleet = {
            zone: [f"i-{z:02x}{n:015x}" for n in range(per_zone)] for z, zone in enumerate(ZONES)
        }
        self.page = page
        self.fail_zone = fail_zone
        self.barrier = threading.Barrier(len(ZONES), timeout=WAIT)
        self.zone_pages: dict[str, int] = dict.fromkeys(ZONES, 0)
        self.lock = threading.Lock()
        self.sizes: set[int] = set()

    def everything(self) -> list[str]:
        return [i for zone in ZONES for i in self.fleet[zone]]

    def describe_instances(
        self, *, Filters: list[dict[str, Any]], MaxResults: int, NextToken: str = "0"
    ) -> dict[str, Any]:
        zone = [f["Values"][0] for f in Filters if f["Name"] == "availability-zone"]
        if not zone:
            return self._page(self.everything(), int(NextToken), MaxResults)
        [name] = zone
        number = int(NextToken) // MaxResults
        if number == 0:
            self.barrier.wait()
        if name == self.fail_zone and number == 1:
            raise ClientError({"Error": {"Code": "InternalError"}}, "DescribeInstances")
        with self.lock:
            self.zone_pages[name] += 1
            self.sizes.add(MaxResults)
        return self._page(self.fleet[name], int(NextToken), MaxResults)

    def describe_availability_zones(self, **_: Any) -> dict[str, Any]:
        return {"AvailabilityZones": [{"ZoneName": zone} for zone in ZONES]}

    def _page(self, ids: list[str], start: int, size: int) -> dict[str, Any]:
        reply: dict[str, Any] = {
            "Reservations": [{"Instances": [_instance(i) for i in ids[start : start + size]]}]
        }
        if start + size < len(ids):
            reply["NextToken"] = str(start + size)
        return reply


def test_the_zones_are_listed_side_by_side_and_every_host_comes_once() -> None:
    ec2 = ZonedEc2(per_zone=1500)
    pages = list(matched_pages(ec2, build_spec(targets=["role=web"])))
    listed = [instance_id for page, _more in pages for instance_id, _tags in page]
    assert sorted(listed) == sorted(ec2.everything())
    assert len(listed) == len(set(listed)) == 4500  # the first page's hosts not again
    assert all(more for _page, more in pages[:-1]) and pages[-1] == ([], False)
    assert ec2.zone_pages == dict.fromkeys(ZONES, 3) and ec2.sizes == {500}


def test_a_zone_listing_that_fails_ends_the_listing_with_its_error() -> None:
    ec2 = ZonedEc2(per_zone=1500, fail_zone="us-east-1b")
    ssm = _NoOffline()
    listing = discover(ec2, ssm, build_spec(targets=["role=web"]), region="us-east-1")
    assert not listing.complete and len(listing.known.reachable) == 1000
    with pytest.raises(ClientError, match="InternalError"):
        for _page in listing.more:
            pass
    assert ec2.zone_pages["us-east-1b"] == 1


class _NoOffline:
    """SSM with every agent Online: the offline lookup finds nothing."""

    def get_paginator(self, name: str) -> Any:
        assert name == "describe_instance_information"
        return self

    def paginate(self, **_: Any) -> Iterator[dict[str, Any]]:
        yield {"InstanceInformationList": []}
