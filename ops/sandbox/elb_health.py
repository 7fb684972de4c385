"""Target health for moto's ELBv2 from real HTTP checks, with deregistration draining.

moto reports every registered target `healthy` at once and forgets a
deregistered one at once, so a drain or a health gate tested against it would
test nothing. Inside the sandbox's moto process this module keeps, for each
registered target, the state an Application Load Balancer keeps:

- `initial` (Elb.RegistrationInProgress) from registration until the target
  has passed HealthyThresholdCount checks in a row;
- `healthy`, and `unhealthy` (Target.FailedHealthChecks) after
  UnhealthyThresholdCount failures in a row (back to `healthy` after
  HealthyThresholdCount passes);
- `draining` (Target.DeregistrationInProgress) from deregistration until the
  group's `deregistration_delay.timeout_seconds` has passed, listed in
  DescribeTargetHealth like a registered target; then `unused`
  (Target.NotRegistered) when asked for by id, and absent otherwise.

A check is an HTTP GET of the group's health check path on the target's port
(or the group's health check port) on 127.0.0.1, every
HealthCheckIntervalSeconds, timing out after HealthCheckTimeoutSeconds; it
passes on the group's matcher codes (200 by default). The sandbox's
container hosts share the loopback interface, so their ports are reached
there; nothing is ever sent to an instance's private address.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

TICK_S = 0.2
Probe = Callable[[int, str, float], int | None]


def http_status(port: int, path: str, timeout: float) -> int | None:
    """The status of GET http://127.0.0.1:port/path, or None when nothing answered in time."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def matches(code: int | None, matcher: str) -> bool:
    """Whether an HTTP code passes a matcher such as "200", "200,302" or "200-299"."""
    if code is None:
        return False
    for part in matcher.split(","):
        low, _, high = part.strip().partition("-")
        if low.isdigit() and int(low) <= code <= int(high or low):
            return True
    return False


@dataclass
class TargetHealth:
    """What the load balancer knows about one registered target."""

    port: int
    state: str = "initial"
    passes: int = 0
    failures: int = 0
    next_check: float = 0.0
    last_code: int | None = None

    def record(self, passed: bool, healthy_after: int, unhealthy_after: int) -> None:
        if passed:
            self.passes, self.failures = self.passes + 1, 0
            if self.passes >= healthy_after:
                self.state = "healthy"
        else:
            self.passes, self.failures = 0, self.failures + 1
            if self.failures >= unhealthy_after:
                self.state = "unhealthy"


@dataclass
class Draining:
    target: dict[str, Any]
    until: float


@dataclass
class GroupHealth:
    targets: dict[str, TargetHealth] = field(default_factory=dict)
    draining: dict[str, Draining] = field(default_factory=dict)


class HealthBook:
    """Every target group's health, keyed by ARN; moto's request threads and the
    checker thread share it under one lock."""

    def __init__(self, probe: Probe = http_status, clock: Callable[[], float] = time.monotonic):
        self.groups: dict[str, GroupHealth] = {}
        self.lock = threading.RLock()
        self.probe = probe
        self.clock = clock

    def group(self, arn: str) -> GroupHealth:
        return self.groups.setdefault(arn, GroupHealth())

    def registered(self, arn: str, target_id: str, port: int) -> None:
        with self.lock:
            group = self.group(arn)
            group.draining.pop(target_id, None)
            if target_id not in group.targets or group.targets[target_id].port != port:
                group.targets[target_id] = TargetHealth(port=port, next_check=self.clock())

    def deregistered(self, arn: str, target: dict[str, Any], delay: float) -> None:
        with self.lock:
            group = self.group(arn)
            group.targets.pop(target["Id"], None)
            group.draining[target["Id"]] = Draining(dict(target), self.clock() + delay)

    def draining(self, arn: str) -> list[dict[str, Any]]:
        """Targets still draining (and forget those whose delay has passed)."""
        now = self.clock()
        with self.lock:
            group = self.group(arn)
            for target_id in [t for t, d in group.draining.items() if d.until <= now]:
                del group.draining[target_id]
            return [d.target for d in group.draining.values()]

    def state_of(self, arn: str, target_id: str) -> str | None:
        with self.lock:
            health = self.group(arn).targets.get(target_id)
            return health.state if health else None

    def check_due(self, groups: list[Any], pool: ThreadPoolExecutor) -> int:
        """Run every check that is due, in parallel; how many ran."""
        now = self.clock()
        due: list[tuple[Any, str, TargetHealth]] = []
        with self.lock:
            for tg in groups:
                for target_id, health in self.group(tg.arn).targets.items():
                    if health.next_check <= now:
                        health.next_check = now + float(tg.health_check_interval_seconds)
                        due.append((tg, target_id, health))

        def one(item: tuple[Any, str, TargetHealth]) -> None:
            tg, _target_id, health = item
            port = _check_port(tg, health.port)
            code = self.probe(
                port, tg.health_check_path or "/", float(tg.health_check_timeout_seconds)
            )
            matcher = str((getattr(tg, "matcher", None) or {}).get("HttpCode", "200"))
            with self.lock:
                health.last_code = code
                health.record(
                    matches(code, matcher),
                    int(tg.healthy_threshold_count),
                    int(tg.unhealthy_threshold_count),
                )

        list(pool.map(one, due))
        return len(due)


def _check_port(tg: Any, traffic_port: int) -> int:
    port = str(tg.health_check_port or "traffic-port")
    return int(port) if port.isdigit() else traffic_port


BOOK = HealthBook()


def _target_groups() -> Iterator[Any]:
    from moto.elbv2.models import elbv2_backends

    for regions in list(elbv2_backends.values()):
        for backend in list(regions.values()):
            yield from list(backend.target_groups.values())


def run_checker(book: HealthBook = BOOK, stop: threading.Event | None = None) -> None:
    """The checker loop; moto's process runs it in a daemon thread."""
    stop = stop or threading.Event()
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="elb-health") as pool:
        while not stop.wait(TICK_S):
            try:
                book.check_due(list(_target_groups()), pool)
            except RuntimeError:  # a dictionary changed under the walk: next tick
                continue


def patch_target_health(book: HealthBook = BOOK) -> None:
    """Teach moto's target groups to register, drain and report health through `book`."""
    from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup

    register = FakeTargetGroup.register
    deregister = FakeTargetGroup.deregister
    health_for = FakeTargetGroup.health_for
    describe = ELBv2Backend.describe_target_health

    def registered(self: Any, targets: list[dict[str, Any]]) -> None:
        register(self, targets)
        for target in targets:
            book.registered(self.arn, target["Id"], int(self.targets[target["Id"]]["Port"]))

    def deregistered(self: Any, targets: list[dict[str, Any]]) -> None:
        kept = {t["Id"]: dict(self.targets[t["Id"]]) for t in targets if t["Id"] in self.targets}
        deregister(self, targets)
        delay = float(self.attributes.get("deregistration_delay.timeout_seconds", 300))
        for target in kept.values():
            book.deregistered(self.arn, target, delay)

    def status(self: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
        target_id = target["Id"]
        draining = {t["Id"]: t for t in book.draining(self.arn)}
        if target_id in draining and target_id not in self.targets:
            return FakeHealthStatus(
                target_id,
                draining[target_id]["Port"],
                self.health_check_port,
                "draining",
                "Target.DeregistrationInProgress",
                "Target deregistration is in progress",
            )
        answer = health_for(self, target, ec2_backend)
        state = book.state_of(self.arn, target_id)
        if answer.status != "healthy" or state is None or state == "healthy":
            return answer
        if state == "initial":
            reason, text = "Elb.RegistrationInProgress", "Target registration is in progress"
        else:
            reason, text = "Target.FailedHealthChecks", "Health checks failed"
        return FakeHealthStatus(
            answer.instance_id, answer.port, self.health_check_port, state, reason, text
        )

    def described(self: Any, target_group_arn: str, targets: list[dict[str, Any]]) -> Any:
        if not targets and target_group_arn in self.target_groups:
            group = self.target_groups[target_group_arn]
            targets = [*group.targets.values(), *book.draining(target_group_arn)]
            if not targets:
                return []
        return describe(self, target_group_arn, targets)

    FakeTargetGroup.register = registered  # type: ignore[method-assign]
    FakeTargetGroup.deregister = deregistered  # type: ignore[method-assign]
    FakeTargetGroup.health_for = status  # type: ignore[method-assign]
    ELBv2Backend.describe_target_health = described  # type: ignore[method-assign]


def start(book: HealthBook = BOOK) -> threading.Thread:
    patch_target_health(book)
    thread = threading.Thread(target=run_checker, args=(book,), name="elb-health", daemon=True)
    thread.start()
    return thread
