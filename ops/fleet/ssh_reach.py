"""Which hosts SSH may reach, and where: the `ops:ssh` tag or the private IP, inside ssh_networks.

`ops run --via ssh|auto` lists hosts through discovery (EC2 joined with SSM),
which carries tags but not the private IP; one DescribeInstances per 200 ids
adds it, and a resume (whose hosts come from the journal, without tags) asks
the same way, so a host that moved its port since is reached where it is now.
A tag is fleet data: a malformed `ops:ssh` leaves the host out, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ops.errors import BadInput
from ops.fleet.discovery import (
    EC2_LISTING,
    Host,
    Listing,
    Resolution,
    agent_information,
    running_instances,
)
from ops.fleet.inventory import SSH_ENDPOINT_TAG, InventoryHost, endpoint, within_networks
from ops.fleet.targets import TargetSpec


@dataclass(frozen=True)
class Reach:
    """Per host: where its sshd answers, or why SSH may not go there."""

    hosts: dict[str, InventoryHost]
    why_not: dict[str, str]


def _described(ec2: Any, ids: Sequence[str]) -> dict[str, tuple[dict[str, str], str]]:
    """(tags, private IP) per running instance id."""
    found: dict[str, tuple[dict[str, str], str]] = {}
    paginator = ec2.get_paginator("describe_instances")
    for start in range(0, len(ids), 200):
        chunk = list(ids[start : start + 200])
        filters = [{"Name": "instance-id", "Values": chunk}]
        for page in paginator.paginate(Filters=filters):
            for reservation in page.get("Reservations", []):
                for inst in reservation.get("Instances", []):
                    tags = {t["Key"]: t.get("Value", "") for t in inst.get("Tags", []) or []}
                    found[inst["InstanceId"]] = (tags, inst.get("PrivateIpAddress", "") or "")
    return found


def ssh_reach(
    ec2: Callable[[], Any], hosts: Sequence[Host], *, user: str | None, networks: Sequence[str]
) -> Reach:
    """Where SSH goes for each host, or why it may not (no address, a bad tag, outside
    ssh_networks, no longer running). EC2 (`ec2()` makes the client) is asked only for
    hosts whose tags are not known or hold no `ops:ssh` endpoint: their private IP."""
    known = {h.instance_id: (dict(h.tags), "") for h in hosts if h.tags.get(SSH_ENDPOINT_TAG)}
    unknown = [h.instance_id for h in hosts if h.instance_id not in known]
    described = {**known, **(_described(ec2(), unknown) if unknown else {})}
    candidates: list[InventoryHost] = []
    why_not: dict[str, str] = {}
    for host in hosts:
        if host.instance_id not in described:
            why_not[host.instance_id] = "not a running instance"
            continue
        tags, private_ip = described[host.instance_id]
        tag = tags.get(SSH_ENDPOINT_TAG, "")
        reach = endpoint(tag)
        if reach is None:
            why_not[host.instance_id] = f"its {SSH_ENDPOINT_TAG} tag is not IP[:PORT] or HOST:PORT"
            continue
        if not reach[0] and not private_ip:
            why_not[host.instance_id] = f"no SSH address (no {SSH_ENDPOINT_TAG} tag, no private IP)"
            continue
        candidates.append(
            InventoryHost(
                instance_id=host.instance_id,
                name=host.name,
                private_ip=private_ip,
                ssh_host=reach[0],
                ssh_port=reach[1],
                ssh_user=user,
            )
        )
    inside, outside = within_networks(candidates, networks)
    for away in outside:
        why_not[away.instance_id] = f"SSH address {away.address} is outside ssh_networks"
    return Reach({h.instance_id: h for h in inside}, why_not)


def reach_hosts(settings: Any, hosts: Sequence[Host]) -> Reach:
    """`ssh_reach` with an EC2 client for the settings' profile and region."""
    return ssh_reach(
        lambda: _client("ec2", settings),
        hosts,
        user=settings.ssh_user,
        networks=settings.ssh_networks,
    )


def list_for_ssh(settings: Any, spec: TargetSpec) -> Listing:
    """The running instances the spec selects, from EC2 alone: over SSH an agent's
    status does not matter, so SSM is not asked. BadInput when none."""
    matched = list(running_instances(_client("ec2", settings), spec))
    if not matched:
        raise BadInput(f"no running instance matches {spec.describe()} in {settings.region}")
    hosts = [
        Host(iid, next((v for k, v in tags.items() if k.lower() == "name"), ""), tags, "-")
        for iid, tags in sorted(matched)
    ]
    return Listing(Resolution(hosts, [], spec.describe(), settings.region), iter(()), True)


def _client(service: str, settings: Any) -> Any:
    from ops.aws import client

    return client(
        service,
        profile=settings.profile,
        region=settings.region,
        max_attempts=settings.max_attempts,
        operations=EC2_LISTING if service == "ec2" else (),
    )


def agent_status(settings: Any, instance_ids: Sequence[str]) -> dict[str, str]:
    """PingStatus per instance id as SSM says it now (a resume routes `--via auto` by it)."""
    info = agent_information(_client("ssm", settings), list(instance_ids))
    return {iid: str(record.get("PingStatus", "")) for iid, record in info.items()}
