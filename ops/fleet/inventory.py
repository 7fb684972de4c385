"""Ansible inventory rendered from the hosts `ops` knows, and the static one an env keeps.

The rendered inventory is YAML (Ansible's `yaml` inventory plugin), grouped by
Role, Env, platform and AZ, so a playbook can say `hosts: role_web` the way
it would against a hand-kept inventory. Host names are instance ids: Name tags
repeat across a fleet, instance ids do not. A static `inventories/<env>/`
folder (hosts file, group_vars/, host_vars/) is put beside the rendered file
in one inventory directory, so Ansible applies its own precedence to both.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ops.errors import BadInput
from ops.fleet.platforms import Platform, lookup
from ops.fleet.unsafe import dump, unsafe

# Tags that say how an instance is reached when its private IP on port 22 is
# not the way in (a port forward, a NAT, the sandbox's loopback ports).
SSH_ENDPOINT_TAG = "ops:ssh"  # IP, IP:PORT or HOST:PORT
APP_PORT_TAG = "ops:app-port"  # the service's port, as the operator reaches it
# A strict DNS name: letters, digits and inner hyphens per label, dots between.
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)

RENDERED_NAME = "ops_hosts.yml"
STATIC_NAMES = ("hosts", "hosts.yml", "hosts.yaml", "hosts.ini")
_GROUP_CHARS = re.compile(r"[^a-z0-9_]+")


@dataclass(frozen=True)
class InventoryHost:
    """One host as Ansible must reach it, with the facts `ops` knows about it."""

    instance_id: str
    name: str = ""
    role: str = ""
    env: str = ""
    private_ip: str = ""
    az: str = ""
    platform_name: str = ""
    platform_version: str = ""
    ssh_host: str = ""
    ssh_port: int = 22
    app_port: int | None = None
    ssh_user: str | None = None
    agent_status: str = ""
    agent_version: str = ""
    docker_version: str = ""
    launch_time: str = ""
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    # Why the host cannot be reached as tagged (a bad ops:ssh tag); such a host is left out.
    problem: str = ""

    @property
    def platform(self) -> Platform:
        return lookup(self.platform_name, self.platform_version)

    @property
    def address(self) -> str:
        """Where SSH goes: an explicit address (loopback in the sandbox) or the private IP."""
        return self.ssh_host or self.private_ip

    def host_vars(self) -> dict[str, Any]:
        """Host vars for Ansible; every value read from EC2, SSM or tags is marked unsafe."""
        hv: dict[str, Any] = {"ansible_host": unsafe(self.address), "ansible_port": self.ssh_port}
        if self.ssh_user:
            hv["ansible_user"] = self.ssh_user
        hv.update(
            {
                "ops_instance_id": unsafe(self.instance_id),
                "ops_name": unsafe(self.name),
                "ops_role": unsafe(self.role),
                "ops_env": unsafe(self.env),
                "ops_private_ip": unsafe(self.private_ip),
                "ops_az": unsafe(self.az),
                "ops_platform": unsafe(self.platform.key),
            }
        )
        if self.app_port is not None:
            hv["ops_app_port"] = self.app_port
        hv.update(self.extra_vars)
        return {k: v for k, v in hv.items() if v not in ("", None)}


def as_inventory_host(host: Any, default_user: str | None = None) -> InventoryHost:
    """Adapt any host model that carries the usual attributes (or tags) to InventoryHost.

    Duck-typed on purpose: discovery's Host and the sandbox's host records
    differ in shape, and this module must not import either (imports go down).
    """
    if isinstance(host, InventoryHost):
        return host
    tags: Mapping[str, str] = getattr(host, "tags", None) or {}

    def pick(*names: str, default: Any = "") -> Any:
        for n in names:
            value = getattr(host, n, None)
            if value not in (None, ""):
                return value
        return default

    return InventoryHost(
        instance_id=str(pick("instance_id", "id")),
        name=str(pick("name", default=tags.get("Name", ""))),
        role=str(pick("role", default=tags.get("Role", ""))),
        env=str(pick("env", default=tags.get("Env", ""))),
        private_ip=str(pick("private_ip", "private_ip_address")),
        az=str(pick("az", "availability_zone")),
        platform_name=str(pick("platform_name", "platform")),
        platform_version=str(pick("platform_version")),
        ssh_host=str(pick("ssh_host")),
        ssh_port=int(pick("ssh_port", default=22)),
        app_port=pick("app_port", default=None),
        ssh_user=pick("ssh_user", default=None) or default_user,
        agent_status=str(pick("agent_status", "ping_status")),
        agent_version=str(pick("agent_version")),
        launch_time=str(pick("launch_time")),
    )


def as_record(host: InventoryHost) -> dict[str, Any]:
    """One host as `inventory list --output json` and the cache hold it."""
    platform = host.platform
    return {
        "instance_id": host.instance_id,
        "name": host.name,
        "role": host.role,
        "env": host.env,
        "private_ip": host.private_ip,
        "az": host.az,
        "platform": platform.key,
        "platform_name": host.platform_name,
        "platform_version": host.platform_version,
        "end_of_support": platform.end_of_support.isoformat() if platform.end_of_support else None,
        "past_end_of_support": platform.past_end_of_support(),
        "agent_status": host.agent_status,
        "agent_version": host.agent_version,
        "docker_version": host.docker_version,
        "launch_time": host.launch_time,
        "ssh_host": host.ssh_host,
        "ssh_port": host.ssh_port,
        "app_port": host.app_port,
        **({"problem": host.problem} if host.problem else {}),
    }


def from_record(record: Mapping[str, Any]) -> InventoryHost:
    names = set(InventoryHost.__dataclass_fields__)
    return InventoryHost(**{k: v for k, v in record.items() if k in names})


def instance_facts(ec2: Any, instance_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """Private IP, AZ and launch time per instance, which SSM's view lacks."""
    facts: dict[str, dict[str, str]] = {}
    if not instance_ids:
        return facts
    paginator = ec2.get_paginator("describe_instances")
    for start in range(0, len(instance_ids), 200):
        chunk = list(instance_ids[start : start + 200])
        for page in paginator.paginate(InstanceIds=chunk):
            for reservation in page.get("Reservations", []):
                for inst in reservation.get("Instances", []):
                    launch = inst.get("LaunchTime")
                    facts[inst["InstanceId"]] = {
                        "private_ip": inst.get("PrivateIpAddress", ""),
                        "az": (inst.get("Placement") or {}).get("AvailabilityZone", ""),
                        "launch_time": launch.isoformat() if hasattr(launch, "isoformat") else "",
                    }
    return facts


def agent_versions(ssm: Any, instance_ids: Sequence[str]) -> dict[str, str]:
    """SSM agent version per instance (DescribeInstanceInformation, 50 ids a call)."""
    versions: dict[str, str] = {}
    paginator = ssm.get_paginator("describe_instance_information")
    for start in range(0, len(instance_ids), 50):
        chunk = list(instance_ids[start : start + 50])
        filters = [{"Key": "InstanceIds", "Values": chunk}]
        for page in paginator.paginate(Filters=filters, PaginationConfig={"PageSize": 50}):
            for info in page.get("InstanceInformationList", []):
                versions[info["InstanceId"]] = info.get("AgentVersion", "")
    return versions


def eol_summary(hosts: Iterable[InventoryHost], today: date | None = None) -> dict[str, Any]:
    """Hosts past their platform's end of support, with counts per Role and per Env."""
    past = [h for h in hosts if h.platform.past_end_of_support(today)]
    by_role: dict[str, int] = {}
    by_env: dict[str, int] = {}
    by_platform: dict[str, int] = {}
    for host in past:
        by_role[host.role or "-"] = by_role.get(host.role or "-", 0) + 1
        by_env[host.env or "-"] = by_env.get(host.env or "-", 0) + 1
        by_platform[host.platform.key] = by_platform.get(host.platform.key, 0) + 1
    return {
        "total": len(past),
        "by_role": dict(sorted(by_role.items())),
        "by_env": dict(sorted(by_env.items())),
        "by_platform": dict(sorted(by_platform.items())),
        "hosts": [as_record(h) for h in past],
    }


def group_name(prefix: str, value: str) -> str:
    """A valid Ansible group name (letters, digits, underscores) for a tag value."""
    slug = _GROUP_CHARS.sub("_", value.lower()).strip("_")
    return f"{prefix}_{slug}" if slug else ""


def render(hosts: Iterable[InventoryHost], group_vars: Mapping[str, Any] | None = None) -> dict:
    """The YAML inventory as a dict: host vars once under `all`, groups listing names."""
    all_hosts: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, Any]] = {}
    for host in hosts:
        if host.instance_id in all_hosts:
            raise BadInput(f"host {host.instance_id} is listed twice; instance ids must be unique")
        all_hosts[host.instance_id] = host.host_vars()
        for prefix, value in (
            ("role", host.role),
            ("env", host.env),
            ("platform", host.platform.key if host.platform_name else ""),
            ("az", host.az),
        ):
            group = group_name(prefix, value)
            if group:
                groups.setdefault(group, {"hosts": {}})["hosts"][host.instance_id] = None
    body: dict[str, Any] = {"hosts": all_hosts}
    if group_vars:
        body["vars"] = dict(group_vars)
    if groups:
        body["children"] = {name: groups[name] for name in sorted(groups)}
    return {"all": body}


def to_yaml(inventory: Mapping[str, Any]) -> str:
    """The inventory as YAML, fleet values tagged `!unsafe` so Ansible never templates them."""
    return dump(inventory)


def static_dir(inventories: Path, env: str) -> Path:
    return inventories / env


def static_sources(folder: Path) -> list[Path]:
    """The parts of a static inventory folder Ansible reads: hosts file, group_vars, host_vars."""
    found = [folder / n for n in STATIC_NAMES if (folder / n).is_file()]
    found += [folder / n for n in ("group_vars", "host_vars") if (folder / n).is_dir()]
    return found


def write_inventory_dir(
    target: Path,
    hosts: Sequence[InventoryHost],
    static_folder: Path | None = None,
    group_vars: Mapping[str, Any] | None = None,
) -> Path:
    """One directory Ansible takes with `-i`: the rendered file plus the env's static parts.

    Copied rather than linked, so a run's private data dir is a complete record
    of what the run saw even if someone edits the env folder mid-run.
    """
    target.mkdir(parents=True, exist_ok=True)
    (target / RENDERED_NAME).write_text(to_yaml(render(hosts, group_vars)), encoding="utf-8")
    if static_folder is not None:
        for source in static_sources(static_folder):
            dest = target / source.name
            if source.is_dir():
                shutil.copytree(source, dest, dirs_exist_ok=True)
            else:
                shutil.copy2(source, dest)
    return target


CACHE_TTL_S = 300.0


def gather(
    ec2: Any, ssm: Any, spec: Any, *, region: str, default_user: str | None = None
) -> list[InventoryHost]:
    """Discovery's hosts (EC2 joined with SSM) with the facts an inventory shows."""
    from ops.fleet.discovery import resolve

    resolution = resolve(ec2, ssm, spec, region=region, include_offline=True)
    ids = [h.instance_id for h in resolution.all]
    facts = instance_facts(ec2, ids)
    versions = agent_versions(ssm, ids)
    hosts: list[InventoryHost] = []
    for host in resolution.all:
        tags = {k.lower(): v for k, v in host.tags.items()}
        fact = facts.get(host.instance_id, {})
        ssh_tag = host.tags.get(SSH_ENDPOINT_TAG, "")
        reach = endpoint(ssh_tag)
        problem = ""
        if reach is None:
            reach = ("", 22)
            problem = (
                f"its {SSH_ENDPOINT_TAG} tag {ssh_tag!r} is not IP, IP:PORT or HOST:PORT "
                "(a strict host name)"
            )
        app_tag = host.tags.get(APP_PORT_TAG, "")
        app_port = _port(app_tag)
        if app_tag and app_port is None:
            problem = problem or f"its {APP_PORT_TAG} tag {app_tag!r} is not a port number"
        hosts.append(
            InventoryHost(
                instance_id=host.instance_id,
                name=host.name,
                role=tags.get("role", ""),
                env=tags.get("env", ""),
                private_ip=fact.get("private_ip", ""),
                az=fact.get("az", ""),
                platform_name=host.platform,
                platform_version=host.platform_version,
                agent_status=host.ping_status,
                agent_version=versions.get(host.instance_id, ""),
                launch_time=fact.get("launch_time", ""),
                ssh_user=default_user,
                ssh_host=reach[0],
                ssh_port=reach[1],
                app_port=app_port,
                problem=problem,
            )
        )
    return hosts


def endpoint(text: str) -> tuple[str, int] | None:
    """("host", port) from an `ops:ssh` tag: IP, IP:PORT ([v6]:PORT) or HOST:PORT.

    ("", 22) when the tag is absent (the private IP is used); None when it is
    anything else, so the caller leaves the host out rather than guess: a tag
    is fleet data, and an address here ends up in ssh's arguments.
    """
    text = text.strip()
    if not text:
        return "", 22
    if _is_ip(text):
        return text, 22
    host, sep, port = text.rpartition(":")
    number = _port(port)
    if not sep or number is None:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        return (host, number) if _is_ip(host) and ":" in host else None
    if ":" in host:
        return None
    if _is_ip(host) or _HOSTNAME.match(host):
        return host, number
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _port(text: str) -> int | None:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if 0 < int(text) < 65536 else None


def within_networks(
    hosts: Iterable[InventoryHost], networks: Sequence[str]
) -> tuple[list[InventoryHost], list[InventoryHost]]:
    """(hosts whose SSH address lies in one of `networks`, the rest).

    The environment's `ssh_networks` is a guard: SSH never goes anywhere
    else, whatever an address or a tag says. No networks means no limit.
    """
    hosts = list(hosts)
    if not networks:
        return hosts, []
    nets = [ipaddress.ip_network(net, strict=False) for net in networks]
    inside: list[InventoryHost] = []
    outside: list[InventoryHost] = []
    for host in hosts:
        try:
            address = ipaddress.ip_address(host.address)
        except ValueError:  # a name, or no address at all: not provably inside
            outside.append(host)
            continue
        (inside if any(address in net for net in nets) else outside).append(host)
    return inside, outside


def cache_path(state: Path, env: str) -> Path:
    return state / "inventory" / f"{env}.json"


def read_cache(path: Path, key: str, ttl: float = CACHE_TTL_S) -> list[InventoryHost] | None:
    """Hosts cached for this targeting key, or None when absent, stale or for other targets."""
    import json
    import time

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("key") != key or time.time() - float(data.get("fetched_at", 0)) > ttl:
        return None
    return [from_record(r) for r in data.get("hosts", [])]


def write_cache(path: Path, key: str, hosts: Sequence[InventoryHost]) -> None:
    import json
    import os
    import time

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    body = {"key": key, "fetched_at": time.time(), "hosts": [as_record(h) for h in hosts]}
    tmp.write_text(json.dumps(body, indent=1), encoding="utf-8")
    os.replace(tmp, path)
