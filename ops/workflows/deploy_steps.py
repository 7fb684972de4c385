"""The three steps each host of a batch goes through, for the runtime to schedule.

`drain` (deregister from the service's target groups, wait until drained),
`swap` (the container_service role over SSH: registry login, pull by digest,
stop the old container, start the new one, wait until the container and the
HTTP check on the host are healthy) and `register` (register back, wait until
every group reports the host healthy). Every step can tell whether it already
happened: a host no group routes to is drained, the role keeps a container
whose labels (digest, configuration hash) match, a target in service is
registered. That is what lets `ops runs resume` finish a batch a killed
process left half done without a host on two digests or out of its groups.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ops import aws
from ops.config import Settings, known_hosts_path
from ops.engine.fanout import FanOutReport
from ops.engine.plan import InFlight, Settled, Step, StepContext
from ops.errors import BadInput
from ops.fleet import inventory as inv
from ops.fleet import target_groups
from ops.fleet.discovery import Host
from ops.fleet.image_ref import ImageRef, parse
from ops.fleet.inventory import APP_PORT_TAG
from ops.fleet.parameters import get_secrets
from ops.fleet.targets import TargetSpec
from ops.transports import elb
from ops.transports.ansible import OK, PushOptions, push
from ops.transports.ssm import FAILED, SUCCESS, HostResult
from ops.workflows.deploy_gates import service_groups
from ops.workflows.deploy_spec import ServiceSpec

DRAIN, SWAP, REGISTER = "drain", "swap", "register"
PLAYBOOK = Path(__file__).resolve().parents[2] / "playbooks" / "container_service.yml"


def host_port(spec: ServiceSpec, host: Host) -> int:
    """The host's `ops:app-port` tag where hosts share one interface, else the spec's port."""
    raw = host.tags.get(APP_PORT_TAG)
    if raw is None:
        return spec.port
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise BadInput(f"{host.label}: tag {APP_PORT_TAG}={raw!r} is not a port number")
    return int(raw)


def role_vars(
    spec: ServiceSpec, image: ImageRef, host: Host, secrets: Mapping[str, str]
) -> dict[str, Any]:
    """Variables for the container_service role on one host; `image` must be resolved.

    `secrets` are the decrypted values (ops.fleet.parameters.get_secrets): the
    caller must keep them out of the journal and the event log (no_log in the role).
    """
    if not image.digest:
        raise BadInput(f"{image} is not resolved to a digest; resolve it before a batch starts")
    health = spec.health_check
    port = host_port(spec, host)
    return {
        "container_service_name": spec.container_name,
        "container_service_image": image.pinned,
        "container_service_port": port,
        "container_service_env": dict(spec.environment),
        "container_service_secret_env": dict(secrets),
        "container_service_volumes": [v.docker_arg() for v in spec.volumes],
        "container_service_restart": spec.restart,
        "container_service_health_path": health.path if health.kind == "http" else "",
        "container_service_health_timeout": health.timeout_seconds,
        "container_service_replaces": list(spec.replaces),
    }


_SECRET_VAR = "container_service_secret_env"
_WAIT_DELAY = 2  # seconds between waiter polls: a batch waits on these, not on work
_WAIT_SECONDS = 600


@dataclass
class Fleet:
    """The service's hosts as the steps need them: discovery's Host and Ansible's view."""

    spec: ServiceSpec
    hosts: dict[str, Host]
    ansible: dict[str, inv.InventoryHost]
    secrets: dict[str, str] = field(default_factory=dict)


def _hosts_for(settings: Settings, ids: list[str]) -> dict[str, inv.InventoryHost]:
    ec2 = aws.client("ec2", profile=settings.profile, region=settings.region)
    ssm = aws.client("ssm", profile=settings.profile, region=settings.region)
    found = inv.gather(
        ec2,
        ssm,
        TargetSpec(instance_ids=tuple(ids)),
        region=settings.region,
        default_user=settings.ssh_user,
    )
    return {h.instance_id: h for h in found}


def load_fleet(settings: Settings, spec: ServiceSpec, hosts: list[Host]) -> Fleet:
    ids = [h.instance_id for h in hosts]
    return Fleet(
        spec=spec,
        hosts={h.instance_id: h for h in hosts},
        ansible=_hosts_for(settings, ids) if ids else {},
        secrets=get_secrets(settings, spec.secrets),
    )


def _report(context: StepContext, host: Host, ok: bool, detail: str, started: float) -> None:
    status = SUCCESS if ok else FAILED
    context.budget.record(status)
    context.on_result(
        HostResult(
            host.instance_id,
            host.name,
            status,
            exit_code=0 if ok else 1,
            stdout=detail if ok else "",
            stderr="" if ok else detail,
            duration_s=round(time.monotonic() - started, 3),
        )
    )


class _LocalStep(Step):
    """A step the controller does itself (ELBv2 calls, an Ansible push), one host per thread.

    Nothing is handed to SSM, so nothing can be in flight there after a crash:
    a step left open is simply run again, and each step checks first whether
    it already happened.
    """

    name = ""

    def __init__(self, settings: Settings, fleet: Fleet) -> None:
        self.settings = settings
        self.fleet = fleet

    def settle(self, in_flight: list[InFlight], context: StepContext) -> Settled:
        return Settled(unsent=[item.host for item in in_flight])

    def one(self, host: Host) -> str:
        raise NotImplementedError

    def run(self, hosts: list[Host], context: StepContext, settled: Settled) -> FanOutReport:
        def work(host: Host) -> None:
            started = time.monotonic()
            try:
                detail = self.one(host)
            except Exception as exc:  # one host's failure is its result, not the run's end
                _report(context, host, False, f"{self.name}: {exc}", started)
            else:
                _report(context, host, True, detail, started)

        if hosts:
            with ThreadPoolExecutor(max_workers=min(len(hosts), 16)) as pool:
                list(pool.map(work, hosts))
        return FanOutReport([], {})


def _waiter_attempts() -> int:
    return max(1, _WAIT_SECONDS // _WAIT_DELAY)


class DrainStep(_LocalStep):
    """Deregister where the host is registered, then wait until every group has let go,
    for the spec's drain_seconds at most.

    A target no group holds is drained already (a resumed batch): ELBv2 refuses
    to deregister it, so only the groups that still route to it are asked; one
    still draining since an earlier process asked is waited for too. Past
    drain_seconds the swap goes on while a group with a longer deregistration
    delay still drains: the load balancer sends the host no new request, and
    what is still open when the old container stops is cut, as the spec asked.
    """

    name = DRAIN

    def one(self, host: Host) -> str:
        elbv2 = target_groups.elbv2_client(self.settings)
        groups = service_groups(self.settings, self.fleet.spec)
        registered = elb.memberships(elbv2, host.instance_id, list(groups.values()))
        elb.deregister(elbv2, host.instance_id, registered)
        others = {m.target_group_arn for m in registered}
        waited = [
            *registered,
            *(elb.Membership(a, None) for a in groups.values() if a not in others),
        ]
        seconds = self.fleet.spec.drain_seconds
        left = elb.drained_within(
            elbv2, host.instance_id, waited, seconds=seconds, delay=min(_WAIT_DELAY, seconds or 1)
        )
        if left:
            names = {arn: name for name, arn in groups.items()}
            still = ", ".join(
                sorted(names.get(m.target_group_arn, m.target_group_arn) for m in left)
            )
            return f"drain cut at drain_seconds {seconds}: still draining in {still}"
        return "drained" if registered else "already out of its target groups"


class RegisterStep(_LocalStep):
    name = REGISTER

    def one(self, host: Host) -> str:
        elbv2 = target_groups.elbv2_client(self.settings)
        arns = list(service_groups(self.settings, self.fleet.spec).values())
        port = host_port(self.fleet.spec, self.fleet.hosts[host.instance_id])
        members = [elb.Membership(arn, port) for arn in arns]
        elb.register(
            elbv2, host.instance_id, members, delay=_WAIT_DELAY, max_attempts=_waiter_attempts()
        )
        return "in service"


class SwapStep(_LocalStep):
    """The container_service role on the batch, each host with its own image and port."""

    name = SWAP

    def __init__(self, settings: Settings, fleet: Fleet, targets: Mapping[str, str]) -> None:
        super().__init__(settings, fleet)
        self.targets = targets

    def run(self, hosts: list[Host], context: StepContext, settled: Settled) -> FanOutReport:
        started = time.monotonic()
        ready: list[inv.InventoryHost] = []
        for host in hosts:
            known = self.fleet.ansible.get(host.instance_id)
            if known is None:
                _report(context, host, False, "swap: no SSH address for this host", started)
                continue
            image = parse(self.targets[host.instance_id])
            variables = role_vars(self.fleet.spec, image, host, {})
            variables.pop(_SECRET_VAR, None)
            variables.update(registry_login(self.settings, image))
            ready.append(replace(known, extra_vars=variables))
        if not ready:
            return FanOutReport([], {})
        work = Path(tempfile.mkdtemp(prefix="ops-deploy-"))
        try:  # the secrets reach Ansible as extra vars on disk: gone when the push ends
            options = PushOptions(
                forks=len(ready),
                extravars={_SECRET_VAR: dict(self.fleet.secrets)},
                ssh_key=self.settings.ssh_key,
                jump_host=self.settings.ssh_jump_host,
                known_hosts=known_hosts_path(),
            )
            outcome = push(PLAYBOOK, ready, work, options, cancel=context.cancel)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        recaps = {r.instance_id: r for r in outcome.hosts}
        for item in ready:
            host = next(h for h in hosts if h.instance_id == item.instance_id)
            recap = recaps.get(item.instance_id)
            ok = recap is not None and recap.status == OK
            detail = (recap.message if recap else "") or (
                f"runs {self.targets[host.instance_id]}" if ok else "the playbook did not finish"
            )
            _report(context, host, ok, detail, started)
        return FanOutReport([], {}, interrupted=outcome.cancelled)


def registry_login(settings: Settings, image: ImageRef) -> dict[str, str]:
    """ECR wants a token a host cannot fetch for itself without a role; others need none."""
    match = image.ecr
    if match is None:
        return {}
    ecr = aws.client("ecr", profile=settings.profile, region=match.group("region"))
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return {
        "container_service_registry": image.registry,
        "container_service_registry_username": user,
        "container_service_registry_password": password,
    }
