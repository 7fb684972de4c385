"""EC2 + SSM join with botocore's Stubber: offline agents are split out before sending."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import ANY, Stubber

from ops.errors import BadInput
from ops.fleet.discovery import resolve
from ops.fleet.targets import build_spec


def _instance(instance_id: str, **tags: str) -> dict[str, object]:
    return {"InstanceId": instance_id, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


def _clients() -> tuple[object, object]:
    kwargs = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    return boto3.client("ec2", **kwargs), boto3.client("ssm", **kwargs)


def test_resolve_splits_offline_hosts() -> None:
    ec2, ssm = _clients()
    a, b, c = "i-00000000000000001", "i-00000000000000002", "i-00000000000000003"
    with Stubber(ec2) as ec2_stub, Stubber(ssm) as ssm_stub:
        ec2_stub.add_response(
            "describe_instances",
            {
                "Reservations": [
                    {
                        "Instances": [
                            _instance(a, Name="web-1", Role="web", Env="sandbox"),
                            _instance(b, Name="web-2", Role="web", Env="sandbox"),
                            _instance(c, Name="db-1", Role="db", Env="sandbox"),
                        ]
                    }
                ]
            },
            {"Filters": ANY, "MaxResults": 1000},
        )
        ssm_stub.add_response(
            "describe_instance_information",
            {
                "InstanceInformationList": [
                    {"InstanceId": a, "PingStatus": "Online", "PlatformName": "Debian"},
                    {"InstanceId": b, "PingStatus": "ConnectionLost"},
                ]
            },
            {"Filters": [{"Key": "InstanceIds", "Values": [a, b]}], "MaxResults": 50},
        )
        found = resolve(ec2, ssm, build_spec(targets=["role=web"]), region="us-east-1")
    assert [h.instance_id for h in found.reachable] == [a]
    assert found.reachable[0].name == "web-1" and found.reachable[0].platform == "Debian"
    assert [(h.instance_id, h.ping_status) for h in found.unreachable] == [(b, "ConnectionLost")]


def test_no_match_is_bad_input_naming_the_expression() -> None:
    ec2, ssm = _clients()
    with Stubber(ec2) as stub:
        stub.add_response("describe_instances", {"Reservations": []}, None)
        with pytest.raises(
            BadInput, match="no running instance matches role=web,env=prod in us-east-1"
        ):
            resolve(ec2, ssm, build_spec(targets=["role=web,env=prod"]), region="us-east-1")


def test_large_target_sets_look_up_only_offline_agents() -> None:
    ec2, ssm = _clients()
    ids = [f"i-{n:017x}" for n in range(1, 602)]
    with Stubber(ec2) as ec2_stub, Stubber(ssm) as ssm_stub:
        ec2_stub.add_response(
            "describe_instances",
            {"Reservations": [{"Instances": [_instance(i, Role="web") for i in ids]}]},
            {"Filters": ANY, "MaxResults": 1000},
        )
        ssm_stub.add_response(
            "describe_instance_information",
            {"InstanceInformationList": [{"InstanceId": ids[5], "PingStatus": "Inactive"}]},
            {
                "Filters": [{"Key": "PingStatus", "Values": ["ConnectionLost", "Inactive"]}],
                "MaxResults": 50,
            },
        )
        found = resolve(ec2, ssm, build_spec(targets=["role=web"]), region="us-east-1")
    assert len(found.reachable) == 600
    assert [h.instance_id for h in found.unreachable] == [ids[5]]


def test_server_filters_narrow_by_one_tag_value_and_keep_keys_client_side() -> None:
    from ops.fleet.discovery import server_filters

    state = {"Name": "instance-state-name", "Values": ["running"]}
    spec = build_spec(targets=["role=web,env=prod"])
    assert server_filters(spec) == [state, {"Name": "tag-value", "Values": ["web"]}]
    # a value EC2 would read as a wildcard is not sent; the next one is
    assert server_filters(build_spec(targets=["role=w*b,env=prod"]))[1]["Values"] == ["prod"]
    globs = build_spec(names=["web-*", "db-?"])
    assert server_filters(globs) == [state, {"Name": "tag-value", "Values": ["web-*", "db-?"]}]
    assert server_filters(build_spec(names=["web-[12]"])) == [state]
    assert server_filters(build_spec(instances=["i-00000000000000001"])) == [state]


def test_tag_keys_still_match_case_insensitively_after_the_server_filter() -> None:
    ec2, ssm = _clients()
    a, b = "i-00000000000000001", "i-00000000000000002"
    with Stubber(ec2) as ec2_stub, Stubber(ssm) as ssm_stub:
        ec2_stub.add_response(
            "describe_instances",
            {
                "Reservations": [
                    # both carry the value "web"; only a carries it under the key role
                    {"Instances": [_instance(a, Role="web"), _instance(b, Tier="web")]}
                ]
            },
            {
                "Filters": [
                    {"Name": "instance-state-name", "Values": ["running"]},
                    {"Name": "tag-value", "Values": ["web"]},
                ],
                "MaxResults": 1000,
            },
        )
        ssm_stub.add_response(
            "describe_instance_information",
            {"InstanceInformationList": [{"InstanceId": a, "PingStatus": "Online"}]},
            {"Filters": [{"Key": "InstanceIds", "Values": [a]}], "MaxResults": 50},
        )
        found = resolve(ec2, ssm, build_spec(targets=["role=web"]), region="us-east-1")
    assert [h.instance_id for h in found.reachable] == [a]
