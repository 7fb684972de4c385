"""Load balancer membership of a host: drain before work, register and wait healthy after.

The waits are boto3's ELBv2 waiters (target_deregistered, target_in_service),
so their timing is the service's documented one unless the caller shortens
the poll for a small fleet or a sandbox. No policy here: which hosts, and
what a timeout means for the run, is the workflow's to decide.
"""

from __future__ import annotations

import math
import time
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
    deregister(elbv2, instance_id, members)
    wait_deregistered(elbv2, instance_id, members, delay=delay, max_attempts=max_attempts)


def wait_deregistered(
    elbv2: Any,
    instance_id: str,
    members: Sequence[Membership],
    *,
    delay: int = 15,
    max_attempts: int = 40,
) -> None:
    """Wait until every group has let the target go; DrainTimeout past the attempts."""
    config = {"Delay": delay, "MaxAttempts": max_attempts}
    for member in members:
        _wait(elbv2, "target_deregistered", instance_id, member, config)


def deregister(elbv2: Any, instance_id: str, members: Sequence[Membership]) -> None:
    for member in members:
        elbv2.deregister_targets(
            TargetGroupArn=member.target_group_arn, Targets=_target(instance_id, member)
        )


def drained_within(
    elbv2: Any,
    instance_id: str,
    members: Sequence[Membership],
    *,
    seconds: int,
    delay: int,
) -> list[Membership]:
    """Wait up to `seconds` for every group to let the target go; the groups still draining.

    A bounded drain, as a service's drain time means it (Kamal's drain_timeout):
    the group's deregistration delay may be minutes, while the service's own
    requests end in seconds. Still draining when the time is up is an answer,
    not an error; any other failure of the waiter is (DrainTimeout).
    """
    step = max(delay, 1)
    deadline = time.monotonic() + seconds
    left = []
    for member in members:
        remaining = max(0.0, deadline - time.monotonic())
        # the first look is at once, the last at or just past the deadline
        config = {"Delay": step, "MaxAttempts": math.ceil(remaining / step) + 1}
        try:
            elbv2.get_waiter("target_deregistered").wait(
                TargetGroupArn=member.target_group_arn,
                Targets=_target(instance_id, member),
                WaiterConfig=config,
            )
        except WaiterError as exc:
            if not str(exc.kwargs.get("reason", "")).startswith("Max attempts exceeded"):
                raise DrainTimeout(
                    f"{instance_id} in {member.target_group_arn}: target_deregistered "
                    f"not reached ({exc})"
                ) from None
            left.append(member)
    return left


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
