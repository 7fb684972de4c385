"""The checks a rolling deploy passes before each batch: alarms, the lease, the healthy floor.

The runtime asks every gate once before a batch that still has work, in
order; the first that holds stops the deploy before the batch is touched
(exit 3). A rollback keeps only the lease gate: an alarm or a thin floor is
why a failed batch must go back, never a reason to wait.
"""

from __future__ import annotations

from dataclasses import dataclass

from ops import aws
from ops.config import Settings
from ops.engine.plan import GateResult
from ops.fleet import target_groups
from ops.fleet.lock import Heartbeat, LeaseLost
from ops.transports.alarms import not_ok
from ops.workflows.deploy_spec import ServiceSpec


def service_groups(settings: Settings, spec: ServiceSpec) -> dict[str, str]:
    """The spec's target groups by name -> ARN (names are resolved on every call: cheap)."""
    return target_groups.group_arns(target_groups.elbv2_client(settings), spec.target_groups)


@dataclass
class AlarmGate:
    """Every CloudWatch alarm named in settings is OK; a missing alarm holds too."""

    settings: Settings
    name: str = "alarms"

    def check(self) -> GateResult:
        if not self.settings.alarm_names:
            return GateResult(True)
        cloudwatch = aws.client(
            "cloudwatch", profile=self.settings.profile, region=self.settings.region
        )
        bad = not_ok(cloudwatch, self.settings.alarm_names)
        reason = ", ".join(f"{name} is {state}" for name, state in sorted(bad.items()))
        return GateResult(not bad, reason)


@dataclass
class LeaseGate:
    """The service's lease is still ours: a broken or stolen lock stops the next batch."""

    heartbeat: Heartbeat | None
    name: str = "lock"

    def check(self) -> GateResult:
        if self.heartbeat is None:
            return GateResult(True)
        try:
            self.heartbeat.check()
        except LeaseLost as exc:
            return GateResult(False, str(exc))
        return GateResult(True)


@dataclass
class HealthyFloorGate:
    """Enough targets healthy outside the next batch that taking it out leaves the minimum.

    The runtime checks gates once before each batch that still has work, in
    order, so `pending` (those batches, as planned or as a resume finds them)
    says which batch each check is for. Hosts of that batch that are already
    out (a failed deploy's, a killed run's) do not count against the floor.
    """

    settings: Settings
    spec: ServiceSpec
    pending: list[list[str]]
    min_healthy: int
    name: str = "min-healthy"

    def check(self) -> GateResult:
        batch = set(self.pending.pop(0)) if self.pending else set()
        elbv2 = target_groups.elbv2_client(self.settings)
        for group, arn in service_groups(self.settings, self.spec).items():
            answer = elbv2.describe_target_health(TargetGroupArn=arn)
            healthy = [
                d["Target"]["Id"]
                for d in answer["TargetHealthDescriptions"]
                if d["TargetHealth"]["State"] == "healthy"
            ]
            left = sum(1 for target in healthy if target not in batch)
            if left < self.min_healthy:
                return GateResult(
                    False,
                    f"{group} has {len(healthy)} healthy targets; taking the next batch out "
                    f"would leave {left}, fewer than {self.min_healthy}",
                )
        return GateResult(True)
