"""Which hosts SSH may reach, and where: the `ops:ssh` tag or the private IP, inside ssh_networks.

`ops run --via ssh|auto` lists hosts through discovery (EC2 joined with SSM),
which carries tags but not the private IP; one DescribeInstances per 200 ids
adds it, and a resume (whose hosts come from the journal, without tags) asks
the same way, so a host that moved its port since is reached where it is now.
A tag is fleet data: a malformed `ops:ssh` leaves the host out, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ops.fleet.discovery import Host
from ops.fleet.inventory import SSH_ENDPOINT_TAG, InventoryHost, endpoint, within_networks


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
    ec2: Any, hosts: Sequence[Host], *, user: str | None, networks: Sequence[str]
) -> Reach:
    """Where SSH goes for each host, or why it may not (no address, a bad tag, outside
    ssh_networks, no longer running)."""
    described = _described(ec2, [h.instance_id for h in hosts])
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
    from ops.aws import client

    ec2 = client(
        "ec2", profile=settings.profile, region=settings.region, max_attempts=settings.max_attempts
    )
    return ssh_reach(ec2, hosts, user=settings.ssh_user, networks=settings.ssh_networks)


def agent_status(settings: Any, instance_ids: Sequence[str]) -> dict[str, str]:
    """PingStatus per instance id as SSM says it now (a resume routes `--via auto` by it)."""
    from ops.aws import client
    from ops.fleet.discovery import agent_information

    ssm = client(
        "ssm", profile=settings.profile, region=settings.region, max_attempts=settings.max_attempts
    )
    info = agent_information(ssm, list(instance_ids))
    return {iid: str(record.get("PingStatus", "")) for iid, record in info.items()}
