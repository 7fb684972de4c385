"""The sandbox's moto remedy: tags looked up by resource id answer exactly as moto's scan did."""

from __future__ import annotations

import boto3
from moto import mock_aws
from moto.ec2.models.core import TaggedEC2Resource

from ops.sandbox import moto_server


def _describe(ec2: object, **kwargs: object) -> dict[str, dict[str, str]]:
    pages = ec2.get_paginator("describe_instances").paginate(**kwargs)  # type: ignore[attr-defined]
    return {
        instance["InstanceId"]: {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        for page in pages
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
    }


def test_tag_lookup_by_id_gives_the_same_answers() -> None:
    original = TaggedEC2Resource.get_tags
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        for suite in ("a", "b"):
            ec2.run_instances(
                ImageId=image,
                MinCount=3,
                MaxCount=3,
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": [{"Key": "Suite", "Value": suite}]}
                ],
            )
        first = next(iter(_describe(ec2)))
        ec2.create_tags(Resources=[first], Tags=[{"Key": "Name", "Value": "web-1"}])
        queries = [
            {},
            {"Filters": [{"Name": "tag:Suite", "Values": ["a"]}]},
            {"Filters": [{"Name": "tag-value", "Values": ["web-*"]}]},
        ]
        before = [_describe(ec2, **query) for query in queries]
        try:
            moto_server.patch_tag_lookup()
            after = [_describe(ec2, **query) for query in queries]
        finally:
            TaggedEC2Resource.get_tags = original  # type: ignore[method-assign]
    assert after == before
    assert [len(found) for found in after] == [6, 3, 1]
    assert after[0][first] == {"Suite": before[0][first]["Suite"], "Name": "web-1"}
