"""The sandbox's moto remedy: DescribeInstances paged by instance, as EC2 pages it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.ec2.responses.instances import InstanceResponse

from ops.sandbox import moto_server

SIZES = (7, 3, 12, 1, 6)  # instances a reservation: 29 in all
IMAGE = "ami-12c6146b"  # any id will do: moto checks AMIs only when told to


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # loading moto's AMI catalogue took most of each test's time, and paging never reads it
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    monkeypatch.delenv("MOTO_ENABLE_AMI_VALIDATION", raising=False)
    original = InstanceResponse.describe_instances
    with mock_aws():
        client = boto3.client("ec2", region_name="us-east-1")
        for number, size in enumerate(SIZES):
            client.run_instances(
                ImageId=IMAGE,
                MinCount=size,
                MaxCount=size,
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [{"Key": "Suite", "Value": "even" if number % 2 == 0 else "odd"}],
                    }
                ],
            )
        moto_server.patch_instance_paging()
        try:
            yield client
        finally:
            InstanceResponse.describe_instances = original  # type: ignore[method-assign]


def _pages(ec2: Any, limit: int, **kwargs: Any) -> list[dict[str, Any]]:
    pages = []
    token = None
    while True:
        call = dict(kwargs, MaxResults=limit)
        if token:
            call["NextToken"] = token
        page = ec2.describe_instances(**call)
        pages.append(page)
        token = page.get("NextToken")
        if not token:
            return pages


def _instances(reservations: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (reservation["ReservationId"], instance["InstanceId"])
        for reservation in reservations
        for instance in reservation["Instances"]
    ]


def _unpaged(ec2: Any, **kwargs: Any) -> list[dict[str, Any]]:
    page = ec2.describe_instances(**kwargs)
    assert "NextToken" not in page
    return list(page["Reservations"])


@pytest.mark.parametrize("limit", [5, 7, 12, 1000])
def test_pages_hold_at_most_max_results_instances(ec2: Any, limit: int) -> None:
    pages = _pages(ec2, limit)
    counts = [len(_instances(page["Reservations"])) for page in pages]
    assert all(0 < count <= limit for count in counts)
    assert counts[:-1] == [limit] * (len(counts) - 1)  # only the last page is short
    assert sum(counts) == sum(SIZES)


@pytest.mark.parametrize("limit", [5, 7, 12, 1000])
def test_pages_concatenated_equal_the_unpaged_answer(ec2: Any, limit: int) -> None:
    unpaged = _unpaged(ec2)
    paged = [r for page in _pages(ec2, limit) for r in page["Reservations"]]
    assert _instances(paged) == _instances(unpaged)
    # a reservation split at a page's end continues, with the same record, on the next
    merged: dict[str, dict[str, Any]] = {}
    for reservation in paged:
        seen = merged.setdefault(reservation["ReservationId"], {**reservation, "Instances": []})
        assert {k: v for k, v in reservation.items() if k != "Instances"} == {
            k: v for k, v in seen.items() if k != "Instances"
        }
        seen["Instances"] = [*seen["Instances"], *reservation["Instances"]]
    assert list(merged.values()) == unpaged


def test_a_reservation_bigger_than_a_page_is_split(ec2: Any) -> None:
    pages = _pages(ec2, 5)
    biggest = max(_unpaged(ec2), key=lambda r: len(r["Instances"]))["ReservationId"]
    holding = [p for p in pages if any(r["ReservationId"] == biggest for r in p["Reservations"])]
    assert len(holding) >= 3  # 12 instances, at most 5 a page


def test_filters_still_apply(ec2: Any) -> None:
    unpaged_all = _unpaged(ec2)
    stopped = [
        unpaged_all[0]["Instances"][0]["InstanceId"],
        unpaged_all[2]["Instances"][4]["InstanceId"],
    ]
    ec2.stop_instances(InstanceIds=stopped)
    filters = [
        {"Name": "tag:Suite", "Values": ["even"]},
        {"Name": "instance-state-name", "Values": ["running"]},
    ]
    unpaged = _unpaged(ec2, Filters=filters)
    paged = [r for page in _pages(ec2, 5, Filters=filters) for r in page["Reservations"]]
    assert _instances(paged) == _instances(unpaged)
    ids = {instance_id for _, instance_id in _instances(paged)}
    assert len(ids) == 7 + 12 + 6 - len(stopped)
    assert not ids & set(stopped)


def test_next_token_survives_instances_leaving_the_filter(ec2: Any) -> None:
    running = [{"Name": "instance-state-name", "Values": ["running"]}]
    first = ec2.describe_instances(Filters=running, MaxResults=5)
    ec2.stop_instances(InstanceIds=[_instances(first["Reservations"])[-1][1]])
    rest = _pages(ec2, 1000, Filters=running, NextToken=first["NextToken"])
    ids = [i for _, i in _instances(first["Reservations"])]
    ids += [i for page in rest for _, i in _instances(page["Reservations"])]
    assert len(ids) == len(set(ids)) == sum(SIZES)


def test_without_max_results_nothing_is_paged(ec2: Any) -> None:
    assert len(_instances(_unpaged(ec2))) == sum(SIZES)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"MaxResults": 4}, "InvalidParameterValue"),
        ({"MaxResults": 1001}, "InvalidParameterValue"),
        ({"MaxResults": 5, "NextToken": "i-00000000000000000"}, "InvalidNextToken"),
        ({"MaxResults": 5, "InstanceIds": ["i-00000000000000000"]}, "InvalidParameterCombination"),
    ],
)
def test_bad_requests_are_refused_as_ec2_refuses_them(
    ec2: Any, kwargs: dict[str, Any], code: str
) -> None:
    with pytest.raises(ClientError) as refused:
        ec2.describe_instances(**kwargs)
    assert refused.value.response["Error"]["Code"] == code


def test_the_paginator_walks_the_pages(ec2: Any) -> None:
    paginator = ec2.get_paginator("describe_instances")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 10}))
    assert [len(_instances(p["Reservations"])) for p in pages] == [10, 10, 9]
    assert _instances([r for p in pages for r in p["Reservations"]]) == _instances(_unpaged(ec2))
