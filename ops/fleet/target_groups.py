"""Target-group membership read from ELBv2: which instances each group holds, in what state.

Read-only: draining and registering belong to the runtime's gates. A group
is named in a spec by name or ARN; names are looked up once per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from ops.aws import client
from ops.config import Settings
from ops.errors import BadInput

# states in which the load balancer still routes (or is about to route) traffic
IN_SERVICE_STATES = frozenset({"healthy", "initial", "unhealthy"})


def elbv2_client(settings: Settings) -> Any:
    return client(
        "elbv2",
        profile=settings.profile,
        region=settings.region,
        max_attempts=settings.max_attempts,
    )


def group_arns(elbv2: Any, groups: Sequence[str]) -> dict[str, str]:
    """name-or-ARN -> ARN; a group that does not exist is bad input (nothing was touched)."""
    arns = {g: g for g in groups if g.startswith("arn:")}
    names = [g for g in groups if not g.startswith("arn:")]
    if names:
        try:
            found = elbv2.describe_target_groups(Names=names)["TargetGroups"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TargetGroupNotFound":
                raise BadInput(
                    f"target group not found: {', '.join(names)}; check the spec's target_groups"
                ) from None
            raise
        arns.update({tg["TargetGroupName"]: tg["TargetGroupArn"] for tg in found})
    return arns


def target_states(elbv2: Any, groups: Sequence[str]) -> dict[str, dict[str, str]]:
    """instance id -> {group: TargetHealth.State} over every group; absent means not registered."""
    states: dict[str, dict[str, str]] = {}
    for group, arn in group_arns(elbv2, groups).items():
        answer = elbv2.describe_target_health(TargetGroupArn=arn)
        for description in answer.get("TargetHealthDescriptions", []):
            target = description["Target"]["Id"]
            states.setdefault(target, {})[group] = description["TargetHealth"]["State"]
    return states


def in_service(groups: Sequence[str], states: dict[str, str]) -> bool:
    """Registered and not draining in every group the service uses."""
    return bool(groups) and all(states.get(g) in IN_SERVICE_STATES for g in groups)


DEFAULT_DEREGISTRATION_DELAY_S = 300  # ELBv2's default for deregistration_delay.timeout_seconds


def deregistration_delays(elbv2: Any, groups: Sequence[str]) -> dict[str, int]:
    """group -> how long the load balancer keeps a deregistered target draining, in seconds."""
    delays = {}
    for group, arn in group_arns(elbv2, groups).items():
        attributes = elbv2.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
        found = {a["Key"]: a["Value"] for a in attributes}
        key = "deregistration_delay.timeout_seconds"
        delays[group] = int(found.get(key, DEFAULT_DEREGISTRATION_DELAY_S))
    return delays
