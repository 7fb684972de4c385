"""A 2,000-instance synthetic fleet: every invocation ends, and every count agrees."""

from __future__ import annotations

from sandbox_aws_helpers import Ssm

from ops.sandbox.aws_side import AwsSandbox
from ops.sandbox.emulator import Dist, SyntheticProfile
from ops.sandbox.emulator.executors import synthetic_outcome

FLEET = 2000
PROFILE = SyntheticProfile(
    pickup_seconds=Dist.uniform(0.0, 0.5),
    duration_seconds=Dist.lognormal(-1.5, 0.6, cap=1.5),
    failure_rate=0.05,
    failure_exit_code=2,
    output_chars=Dist.uniform(10, 3000),
)


def test_two_thousand_instances(ssm: Ssm, aws: AwsSandbox) -> None:
    ids = aws.add_synthetic(FLEET, tags={"Role": "large"}, name_prefix="large", profile=PROFILE)
    assert len(set(ids)) == FLEET
    pages = ssm.client.get_paginator("describe_instance_information").paginate(
        Filters=[{"Key": "tag:Role", "Values": ["large"]}], PaginationConfig={"PageSize": 50}
    )
    described = [row["InstanceId"] for page in pages for row in page["InstanceInformationList"]]
    assert described == ids

    reply = ssm.client.send_command(
        Targets=[{"Key": "tag:Role", "Values": ["large"]}],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["yum -y update"]},
        MaxConcurrency="25%",
        MaxErrors="100%",
    )
    command_id = reply["Command"]["CommandId"]
    assert reply["Command"]["TargetCount"] == 0  # resolved after the answer
    command = ssm.wait(command_id, timeout=90)
    assert command["TargetCount"] == FLEET

    found = ssm.invocations(command_id, details=True)
    assert set(found) == set(ids)
    statuses = [inv["Status"] for inv in found.values()]
    assert set(statuses) <= {"Success", "Failed"}
    # the seeded outcome is reproducible: the hosts that failed are exactly the predicted ones
    predicted = {
        iid
        for n, iid in enumerate(ids)
        if synthetic_outcome(
            seed=aws.seed,
            instance_id=iid,
            command_id=command_id,
            attempt=0,
            commands=["yum -y update"],
            hostname=f"large-{n}",
            profile=PROFILE,
        ).exit_code
        == 2
    }
    failed = {iid for iid, inv in found.items() if inv["Status"] == "Failed"}
    assert failed == predicted
    assert 40 <= len(failed) <= 170
    assert all(found[iid]["CommandPlugins"][0]["ResponseCode"] == 2 for iid in failed)
    assert command["CompletedCount"] == FLEET
    assert command["ErrorCount"] == len(failed)
    assert command["Status"] == "Failed" and command["StatusDetails"] == "Incomplete"
    assert all(len(inv["CommandPlugins"][0]["Output"]) <= 2500 for inv in found.values())


def test_ten_thousand_emulator_only_instances_stay_small(ssm: Ssm, aws: AwsSandbox) -> None:
    before = aws.admin.status()["rss_bytes"]
    ids = aws.add_synthetic(10000, tags={"Role": "huge"}, name_prefix="huge", in_ec2=False)
    assert len(set(ids)) == 10000
    reply = ssm.client.send_command(
        Targets=[{"Key": "tag:Role", "Values": ["huge"]}],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["echo ok"]},
        MaxConcurrency="100%",
    )
    command = ssm.wait(reply["Command"]["CommandId"], timeout=60)
    assert (command["Status"], command["CompletedCount"]) == ("Success", 10000)
    grown = aws.admin.status()["rss_bytes"] - before
    assert grown < 300 * 1024 * 1024, f"emulator grew by {grown / 1e6:.0f} MB"
