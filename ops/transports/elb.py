"""Load balancer membership of a host: drain before work, register and wait healthy after.

The waits are boto3's ELBv2 waiters (target_deregistered, target_in_service),
so their timing is the service's documented one unless the caller shortens
the poll for a small fleet or a sandbox. No policy here: which hosts, and
what a timeout means for the run, is the workflow's to decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import WaiterError

from ops.errors import OpsError


class DrainTimeout(OpsError):
    """A target did not reach the state waited for within the waiter's attempts."""


@dataclass(frozen=True)
class Membership:
    """One registration of the host: the target group and the port it serves on."""

    target_group_arn: str
    port: int | None


def target_group_arns(elbv2: Any, names_or_arns: Sequence[str]) -> list[str]:
    """Settings name target groups by name or ARN; ARNs pass, names are looked up."""
    arns = [n for n in names_or_arns if n.startswith("arn:")]
    names = [n for n in names_or_arns if not n.startswith("arn:")]
    if names:
        found = elbv2.describe_target_groups(Names=names)["TargetGroups"]
        arns += [group["TargetGroupArn"] for group in found]
    return arns


def memberships(elbv2: Any, instance_id: str, group_arns: Sequence[str]) -> list[Membership]:
    """The groups (of those given) the instance is registered in, draining ones excluded."""
    found = []
    for arn in group_arns:
        for item in elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]:
            target = item["Target"]
            state = item["TargetHealth"]["State"]
            if target["Id"] == instance_id and state not in ("draining", "unused"):
                found.append(Membership(arn, target.get("Port")))
    return found


def _target(instance_id: str, member: Membership) -> list[dict[str, Any]]:
    target: dict[str, Any] = {"Id": instance_id}
    if member.port is not None:
        target["Port"] = member.port
    return [target]


def _wait(elbv2: Any, waiter: str, instance_id: str, member: Membership, config: Any) -> None:
    try:
        elbv2.get_waiter(waiter).wait(
            TargetGroupArn=member.target_group_arn,
            Targets=_target(instance_id, member),
            WaiterConfig=config,
        )
    except WaiterError as exc:
        raise DrainTimeout(
            f"{instance_id} in {member.target_group_arn}: {waiter} not reached ({exc})"
        ) from None


def drain(
    elbv2: Any,
    instance_id: str,
    members: Sequence[Membership],
    *,
    delay: int = 15,
    max_attempts: int = 40,
) -> None:
    """Deregister from every group and wait until each has drained (target_deregistered)."""
    for member in members:
        elbv2.deregister_targets(
            TargetGroupArn=member.target_group_arn, Targets=_target(instance_id, member)
        )
    config = {"Delay": delay, "MaxAttempts": max_attempts}
    for member in members:
        _wait(elbv2, "target_deregistered", instance_id, member, config)


def register(
    elbv2: Any,
    instance_id: str,
    members: Sequence[Membership],
    *,
    delay: int = 15,
    max_attempts: int = 40,
) -> None:
    """Register back in every group and wait until each reports it healthy
    (target_in_service)."""
    for member in members:
        elbv2.register_targets(
            TargetGroupArn=member.target_group_arn, Targets=_target(instance_id, member)
        )
    config = {"Delay": delay, "MaxAttempts": max_attempts}
    for member in members:
        _wait(elbv2, "target_in_service", instance_id, member, config)


def healthy_count(elbv2: Any, group_arn: str) -> int:
    """Targets the group reports healthy right now (for a sampled floor during a run)."""
    items = elbv2.describe_target_health(TargetGroupArn=group_arn)["TargetHealthDescriptions"]
    return sum(1 for item in items if item["TargetHealth"]["State"] == "healthy")
