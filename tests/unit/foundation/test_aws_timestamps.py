"""Response timestamps: the same instants botocore's parser gives, by the standard library."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.utils import parse_timestamp
from urllib3.response import HTTPResponse

from ops import aws, aws_timestamps

ISO_FORMS = [
    "2026-12-05T10:00:00.000Z",  # EC2's own
    "2026-12-05T10:00:00Z",
    "2026-12-05T10:00:00.123456Z",
    "2026-12-05T10:00:00.5Z",
    "2026-12-05T10:00:00+00:00",
    "2026-12-05T10:00:00.25+02:00",
    "2026-12-05T23:59:59-05:30",
    "2024-02-29T00:00:00Z",
]
OTHER_FORMS: list[Any] = [
    "Thu, 05 Dec 2026 10:00:00 GMT",  # RFC 822 (S3's Last-Modified header)
    "2026-12-05T10:00:00",  # no zone: botocore's naive answer, not a guess
    "2026-12-05T10:00:00.1234567Z",  # more digits than a datetime holds
    "2026-12-05 10:00:00Z",
    "1796520942.95",
    1796520942,
    1796520942.5,
]


@pytest.mark.parametrize("value", ISO_FORMS)
def test_an_iso_time_with_a_zone_is_the_instant_botocore_gives(value: str) -> None:
    ours, theirs = aws_timestamps.parse(value), parse_timestamp(value)
    assert ours == theirs
    assert ours.utcoffset() == theirs.utcoffset()
    assert ours.isoformat() == theirs.isoformat()
    assert isinstance(ours.tzinfo, dt.timezone)  # the standard library's, not dateutil's


@pytest.mark.parametrize("value", OTHER_FORMS)
def test_every_other_form_is_botocores_own_answer(value: Any) -> None:
    ours, theirs = aws_timestamps.parse(value), parse_timestamp(value)
    assert ours == theirs
    assert type(ours.tzinfo) is type(theirs.tzinfo)


def test_what_botocore_refuses_is_refused() -> None:
    with pytest.raises(ValueError):
        aws_timestamps.parse("2026-13-45T10:00:00Z")  # the form, not a date
    with pytest.raises(ValueError):
        aws_timestamps.parse("yesterday at noon")


_PAGE = b"""<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r-1</requestId>
  <reservationSet><item><reservationId>r-1</reservationId><instancesSet><item>
    <instanceId>i-0123456789abcdef0</instanceId>
    <launchTime>2026-12-05T10:00:00.000Z</launchTime>
  </item></instancesSet></item></reservationSet>
</DescribeInstancesResponse>"""


def test_a_client_of_ops_parses_its_responses_timestamps_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    ec2 = aws.client("ec2", region="us-east-1", operations=("DescribeInstances",))

    def answer(**_kwargs: object) -> AWSResponse:  # the wire, short-circuited
        raw = HTTPResponse(body=io.BytesIO(_PAGE), preload_content=False)
        return AWSResponse("https://ec2.us-east-1.amazonaws.com/", 200, {}, raw)

    ec2.meta.events.register("before-send.ec2.DescribeInstances", answer)
    page = ec2.describe_instances()
    launched = page["Reservations"][0]["Instances"][0]["LaunchTime"]
    assert launched == dt.datetime(2026, 12, 5, 10, tzinfo=dt.UTC)
    assert launched.tzinfo is dt.UTC  # fromisoformat's; dateutil never gives it
