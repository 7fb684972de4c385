"""`ops deploy plan` and `ops deploy status`: read-only views of a service across its hosts.

A plan's batches hold only the hosts that change: a host that already runs
the resolved digest, healthy in its target groups, is listed as unchanged and is
never drained or touched. Batch size and the healthy floor are shares of
every host of the service, unchanged ones included, as they count in the
target groups.

Everything a deploy refuses (an image that does not parse, a tag the
registry does not have, a spec without a health check, a batch of 0) is
refused here before the first call that reaches a host. The per-host view
is one SSM fan-out of a read-only probe plus ELBv2's target health.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ops.config import Settings
from ops.engine.budget import Amount, FailureBudget, parse_amount
from ops.engine.fanout import FanOut
from ops.errors import BadInput
from ops.fleet import image_ref, registry, target_groups
from ops.fleet.discovery import Host, discover_hosts
from ops.fleet.image_ref import ImageRef
from ops.fleet.targets import TargetSpec
from ops.transports.ssm import SUCCESS, HostResult, open_transport
from ops.workflows.deploy_probe import ContainerState, parse_probe, probe_command
from ops.workflows.deploy_spec import ServiceSpec

Prober = Callable[[ServiceSpec, list[Host]], dict[str, ContainerState]]


@dataclass(frozen=True)
class HostView:
    host: Host
    container: ContainerState
    targets: dict[str, str]  # target group -> state; a missing group: not registered
    in_service: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.host.instance_id,
            "name": self.host.name,
            "image": self.container.image,
            "digest": self.container.digest,
            "healthy": self.container.healthy,
            "in_service": self.in_service,
            "since": self.container.since,
            "targets": self.targets,
            "error": self.container.error,
        }


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    hosts: list[HostView]

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "hosts": [h.as_dict() for h in self.hosts]}


@dataclass(frozen=True)
class DeployPlan:
    service: str
    image: ImageRef  # resolved: digest set
    batch_size: int
    min_healthy: int
    batches: list[list[HostView]] = field(default_factory=list)
    unchanged: list[HostView] = field(default_factory=list)  # on the digest already: left alone
    drain_seconds: int = 0  # the spec's bound on each host's drain
    deregistration_delays: dict[str, int] = field(default_factory=dict)  # group -> seconds

    def drain_cut(self) -> dict[str, int]:
        """The groups whose deregistration delay outlasts the spec's drain: they are cut."""
        return {g: s for g, s in self.deregistration_delays.items() if s > self.drain_seconds}

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "image": str(self.image),
            "digest": self.image.digest,
            "pull": self.image.pinned,
            "batch_size": self.batch_size,
            "min_healthy": self.min_healthy,
            "drain": {
                "seconds": self.drain_seconds,
                "deregistration_delay": self.deregistration_delays,
                "cut": sorted(self.drain_cut()),
            },
            "unchanged": [view.as_dict() for view in self.unchanged],
            "batches": [
                [
                    {
                        **view.as_dict(),
                        "will_run": self.image.digest,
                        "changes": view.container.digest != self.image.digest,
                    }
                    for view in batch
                ]
                for batch in self.batches
            ],
        }


def share(text: str, total: int, *, option: str, minimum: int) -> int:
    """A count or percentage of `total` hosts; `--batch 0` is refused here, before any host."""
    amount: Amount = parse_amount(text, option=option, minimum=minimum)
    return amount.resolve(total, at_least_one=minimum > 0) if minimum > 0 else amount.resolve(total)


def check_gates(batch: int, min_healthy: int, total: int) -> None:
    """A batch that would take more hosts out than the minimum allows can never start."""
    if total and total - min(batch, total) < min_healthy:
        raise BadInput(
            f"a batch of {batch} out of {total} hosts leaves fewer than --min-healthy "
            f"{min_healthy} in service; lower --batch or --min-healthy"
        )


def split_batches(items: list[Any], size: int) -> list[list[Any]]:
    """In the order given (name order), `size` at a time; the last batch may be smaller."""
    if size < 1:
        raise BadInput("a batch must hold at least one host")
    return [items[i : i + size] for i in range(0, len(items), size)]


def resolve_image(spec: ServiceSpec, text: str, *, profile: str | None = None) -> ImageRef:
    """`--image` parsed against the spec's repository and pinned to a digest."""
    return registry.resolve(image_ref.for_service(spec.repository, text), profile=profile)


def service_hosts(
    settings: Settings, spec: ServiceSpec, elbv2: Any, only: TargetSpec | None = None
) -> list[Host]:
    """The hosts by the spec's tags, else the target groups' members; name order.

    `only` (`--instance`, `--name`) narrows them to some of the service's hosts,
    e.g. those that can run Docker; it never adds a host the spec does not name.
    """
    if spec.hosts:
        selector = TargetSpec(tags=dict(spec.hosts)).with_default_filter(settings.target_filter)
    else:
        ids = sorted(target_groups.target_states(elbv2, spec.target_groups))
        if not ids:
            raise BadInput(
                f"service {spec.name}: no hosts: its target groups are empty and the spec "
                "names no hosts tags"
            )
        selector = TargetSpec(instance_ids=tuple(ids))
    resolution = discover_hosts(settings, selector, include_offline=True).drain()
    hosts = sorted(resolution.all, key=lambda h: (h.name, h.instance_id))
    if only is None:
        return hosts
    chosen = {
        h.instance_id for h in discover_hosts(settings, only, include_offline=True).drain().all
    }
    narrowed = [h for h in hosts if h.instance_id in chosen]
    if not narrowed:
        raise BadInput(
            f"service {spec.name}: none of its hosts match --instance/--name; "
            f"`ops deploy status {spec.name}` lists them"
        )
    return narrowed


def ssm_probe(settings: Settings) -> Prober:
    """One fan-out of the read-only probe; hosts SSM cannot reach come back as errors."""

    def probe(spec: ServiceSpec, hosts: list[Host]) -> dict[str, ContainerState]:
        states: dict[str, ContainerState] = {}
        reachable = [h for h in hosts if h.reachable]
        for host in hosts:
            if not host.reachable:
                states[host.instance_id] = ContainerState(
                    present=False, error=f"SSM agent {host.ping_status}"
                )
        if not reachable:
            return states
        transport = open_transport(settings)
        fanout = FanOut(transport, probe_command(spec, settings.output_bucket))
        every = Amount(len(reachable), percent=False)
        budget = FailureBudget(len(reachable), every, every)

        def on_result(result: HostResult) -> None:
            if result.status == SUCCESS:
                states[result.instance_id] = parse_probe(result.stdout, spec)
            else:
                detail = (result.stderr or result.stdout).strip()[-200:]
                states[result.instance_id] = ContainerState(
                    present=False, error=f"probe {result.status}: {detail}".rstrip(": ")
                )

        fanout.run_client_side(reachable, budget, on_result)
        return states

    return probe


def service_status(
    settings: Settings,
    spec: ServiceSpec,
    *,
    prober: Prober | None = None,
    only: TargetSpec | None = None,
) -> ServiceStatus:
    """Per host: what runs, since when, healthy or not, in the target groups or not."""
    elbv2 = target_groups.elbv2_client(settings)
    hosts = service_hosts(settings, spec, elbv2, only)
    states = target_groups.target_states(elbv2, spec.target_groups) if spec.target_groups else {}
    containers = (prober or ssm_probe(settings))(spec, hosts)
    views = []
    for host in hosts:
        groups = states.get(host.instance_id, {})
        views.append(
            HostView(
                host=host,
                container=containers.get(
                    host.instance_id, ContainerState(present=False, error="no probe result")
                ),
                targets=groups,
                in_service=target_groups.in_service(spec.target_groups, groups),
            )
        )
    return ServiceStatus(spec.name, views)


def is_unchanged(view: HostView, digest: str | None, groups: Sequence[str] = ()) -> bool:
    """Runs `digest` already and every group reports it healthy: nothing to do there.

    The target groups' verdict counts, over their thresholds: one slow answer
    to the probe's check on a busy host does not make a host worth draining,
    and the role would keep its container anyway. A host on the digest but
    unhealthy or out of a group (a killed run's) is not unchanged: its batch
    checks it and registers it again. Without groups, the container's own check decides.
    """
    state = view.container
    if digest is None or state.digest != digest or not state.running:
        return False
    if groups:
        return all(view.targets.get(group) == "healthy" for group in groups)
    return state.healthy is True


def plan_deploy(
    settings: Settings,
    spec: ServiceSpec,
    image: str,
    *,
    batch: str | None = None,
    min_healthy: str | None = None,
    prober: Prober | None = None,
    only: TargetSpec | None = None,
) -> DeployPlan:
    """Resolve and check everything first; only then look at the hosts (read-only)."""
    parse_amount(batch or spec.batch_size, option="--batch", minimum=1)
    parse_amount(min_healthy or spec.min_healthy, option="--min-healthy", minimum=0)
    resolved = resolve_image(spec, image, profile=settings.profile)
    status = service_status(settings, spec, prober=prober, only=only)
    total = len(status.hosts)
    size = share(batch or spec.batch_size, total, option="--batch", minimum=1)
    floor = share(min_healthy or spec.min_healthy, total, option="--min-healthy", minimum=0)
    check_gates(size, floor, total)
    groups = spec.target_groups
    unchanged = [v for v in status.hosts if is_unchanged(v, resolved.digest, groups)]
    change = [v for v in status.hosts if v not in unchanged]
    batches = split_batches(change, size) if change else []
    delays = target_groups.deregistration_delays(target_groups.elbv2_client(settings), groups)
    return DeployPlan(
        spec.name, resolved, size, floor, batches, unchanged, spec.drain_seconds, delays
    )
