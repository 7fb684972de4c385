"""Facts the inventory shows that SSM's DescribeInstanceInformation does not carry.

The Docker engine version is read on the hosts themselves with one fan-out
(`docker --version`, or `none`) through the Run Command engine, and cached per
environment with a short time to live: `ops inventory list` is run often
during an incident, and a Run Command to the whole fleet each time would be
slow and noisy in the fleet's command history.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ops.config import Settings, state_dir
from ops.engine.budget import Amount, FailureBudget, parse_concurrency
from ops.engine.fanout import FanOut
from ops.fleet.discovery import ONLINE, Host
from ops.fleet.inventory import InventoryHost
from ops.transports.ssm import (
    SUCCESS,
    CommandSpec,
    HostResult,
    SsmTransport,
    open_transport,
)

DOCKER_TTL_S = 300.0
NO_DOCKER = "none"
# Fixed text: nothing the user typed goes into it.
DOCKER_SCRIPT = "docker --version 2>/dev/null || echo none"
_VERSION = re.compile(r"Docker version ([0-9][0-9A-Za-z.+~-]*)")


def parse_docker_version(stdout: str) -> str:
    """`Docker version 24.0.7, build afdd53b` -> 24.0.7; `none` -> none; else empty (unknown)."""
    match = _VERSION.search(stdout)
    if match:
        return match.group(1).rstrip(",")
    if stdout.strip().splitlines()[-1:] == [NO_DOCKER]:
        return NO_DOCKER
    return ""


def docker_cache_path(env: str) -> Path:
    return state_dir() / "inventory" / f"{env}.docker.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def ask_docker_versions(
    transport: SsmTransport, hosts: Sequence[InventoryHost], concurrency: Amount
) -> dict[str, str]:
    """One fan-out of DOCKER_SCRIPT; a host that did not answer is left out (unknown)."""
    found: dict[str, str] = {}

    def on_result(result: HostResult) -> None:
        if result.status == SUCCESS:
            version = parse_docker_version(result.stdout)
            if version:
                found[result.instance_id] = version

    spec = CommandSpec(
        commands=[DOCKER_SCRIPT], execution_timeout=60, comment="ops inventory: docker --version"
    )
    budget = FailureBudget(len(hosts), concurrency, Amount(100, True))
    FanOut(transport, spec).run_client_side(
        [Host(instance_id=h.instance_id, name=h.name) for h in hosts], budget, on_result
    )
    return found


def with_docker_versions(
    settings: Settings,
    hosts: Sequence[InventoryHost],
    *,
    refresh: bool = False,
    transport: SsmTransport | None = None,
    ttl: float = DOCKER_TTL_S,
) -> list[InventoryHost]:
    """The hosts with docker_version filled: from the env's cache when fresh, else asked.

    Only hosts with an Online agent are asked (the others could not answer);
    each host's answer is cached with its own time, so listing a new subset
    asks only the hosts not seen within the TTL.
    """
    path = docker_cache_path(settings.env)
    cache = {} if refresh else _read(path)
    now = time.time()
    known: dict[str, str] = {}
    for instance_id, entry in cache.items():
        if isinstance(entry, dict) and now - float(entry.get("at", 0)) <= ttl:
            known[instance_id] = str(entry.get("version", ""))
    ask = [h for h in hosts if h.instance_id not in known and h.agent_status == ONLINE]
    if ask:
        transport = transport or open_transport(settings)
        answers = ask_docker_versions(transport, ask, parse_concurrency(settings.concurrency))
        fresh = {iid: {"version": v, "at": now} for iid, v in answers.items()}
        kept = {k: v for k, v in cache.items() if k in known}
        _write(path, {**kept, **fresh})
        known.update(answers)
    return [dataclasses.replace(h, docker_version=known.get(h.instance_id, "")) for h in hosts]
