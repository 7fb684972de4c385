"""The sandbox's moto remedy: attribute names remembered per class, key and shape answer
exactly as moto's alias providers worked out afresh."""

from __future__ import annotations

from typing import Any

import boto3
from moto import mock_aws
from moto.core.serialize import AttributePicker, XFormedAttributePicker

from ops.sandbox import moto_server


def _answers(ec2: Any, elbv2: Any) -> list[Any]:
    def strip(response: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in response.items() if k != "ResponseMetadata"}

    return [
        strip(ec2.describe_instances()),
        strip(ec2.describe_instances(Filters=[{"Name": "tag:Suite", "Values": ["a"]}])),
        strip(ec2.describe_vpcs()),
        strip(ec2.describe_subnets()),
        strip(elbv2.describe_target_groups()),
    ]


def test_remembered_attribute_names_give_the_same_answers() -> None:
    originals = {p: vars(p)["get_possible_keys"] for p in (AttributePicker, XFormedAttributePicker)}
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        elbv2 = boto3.client("elbv2", region_name="us-east-1")
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        elbv2.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc)
        for suite, count in (("a", 3), ("b", 2)):
            ec2.run_instances(
                ImageId=image,
                MinCount=count,
                MaxCount=count,
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": [{"Key": "Suite", "Value": suite}]}
                ],
            )
        before = _answers(ec2, elbv2)
        try:
            moto_server.patch_serializer_keys()
            first = _answers(ec2, elbv2)
            again = _answers(ec2, elbv2)  # answered from what the first calls remembered
        finally:
            for picker, original in originals.items():
                picker.get_possible_keys = original  # type: ignore[method-assign]
    assert first == before
    assert again == before
    assert len([i for r in before[0]["Reservations"] for i in r["Instances"]]) == 5
    assert len([i for r in before[1]["Reservations"] for i in r["Instances"]]) == 3
    assert before[4]["TargetGroups"][0]["TargetGroupName"] == "web"
