"""The AWS furniture of the sandbox in moto: network, load balancer, target group, bucket.

Created through boto3 exactly as the real account would have them, so that
deploy and log workflows meet the same API shapes here as in production.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3

SANDBOX_BUCKET = "fleetops-sandbox-output"
TARGET_GROUP = "web"
# Short enough for a drain to be tested in seconds; the checks are real (elb_health).
HEALTH_CHECK = {
    "HealthCheckIntervalSeconds": 5,
    "HealthCheckTimeoutSeconds": 2,
    "HealthyThresholdCount": 2,
    "UnhealthyThresholdCount": 2,
}
DEREGISTRATION_DELAY_S = 5


@dataclass(frozen=True)
class SandboxNetwork:
    vpc_id: str
    subnet_ids: list[str]
    load_balancer_arn: str
    target_group_arn: str
    bucket: str


def _client(service: str, env: Mapping[str, str]) -> Any:
    return boto3.client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def create_network(env: Mapping[str, str]) -> tuple[str, list[str]]:
    """A VPC with two subnets in two zones, as an ALB requires."""
    ec2 = _client("ec2", env)
    region = env["AWS_DEFAULT_REGION"]
    vpc_id = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    ec2.create_tags(Resources=[vpc_id], Tags=[{"Key": "Name", "Value": "fleetops-sandbox"}])
    subnets = []
    for index, zone in enumerate(("a", "b")):
        subnet = ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=f"10.42.{index}.0/24", AvailabilityZone=f"{region}{zone}"
        )
        subnets.append(subnet["Subnet"]["SubnetId"])
    return vpc_id, subnets


def create_service(
    env: Mapping[str, str], vpc_id: str, subnets: list[str], web_targets: list[tuple[str, int]]
) -> tuple[str, str]:
    """An application load balancer, the target group `web`, and its registered hosts."""
    elb = _client("elbv2", env)
    lb = elb.create_load_balancer(Name="fleetops-sandbox", Subnets=subnets, Type="application")
    lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elb.create_target_group(
        Name=TARGET_GROUP,
        Protocol="HTTP",
        Port=80,
        VpcId=vpc_id,
        TargetType="instance",
        HealthCheckPath="/health",
        **HEALTH_CHECK,
    )
    tg_arn = tg["TargetGroups"][0]["TargetGroupArn"]
    elb.modify_target_group_attributes(
        TargetGroupArn=tg_arn,
        Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": str(DEREGISTRATION_DELAY_S)}
        ],
    )
    elb.create_listener(
        LoadBalancerArn=lb_arn,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}],
    )
    if web_targets:
        elb.register_targets(
            TargetGroupArn=tg_arn,
            Targets=[{"Id": instance, "Port": port} for instance, port in web_targets],
        )
    return lb_arn, tg_arn


def create_bucket(env: Mapping[str, str], name: str = SANDBOX_BUCKET) -> str:
    s3 = _client("s3", env)
    s3.create_bucket(Bucket=name)
    return name


def furnish(env: Mapping[str, str], web_targets: list[tuple[str, int]]) -> SandboxNetwork:
    vpc_id, subnets = create_network(env)
    lb_arn, tg_arn = create_service(env, vpc_id, subnets, web_targets)
    bucket = create_bucket(env)
    return SandboxNetwork(vpc_id, subnets, lb_arn, tg_arn, bucket)
