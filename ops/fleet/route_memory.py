"""Where SSH reached a target's hosts on its last run, so the next run can connect early.

`ops run --via ssh` spends its first fifth of a second importing botocore,
making the EC2 client and listing the target, before the first SSH
handshake. The hosts a target matched last time are a good guess at what it
matches now: their connections can be opened while EC2 lists, and nothing
runs on a host until the fresh listing names it (ops.transports.ssh's
warm-up). A guess that is wrong costs one connection, closed unused.

One small file in ops' state folder (0600) keeps, per environment, profile,
region, target, SSH user and jump host, the SSH endpoints of the last run's
hosts, at most KEEP_HOSTS of them, for the KEEP_TARGETS targets used last.
It is read as untrusted: an
entry that does not parse as an endpoint, or whose address is outside the
environment's ssh_networks now, is dropped, and a file that does not parse
is as good as none.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ops.fleet.inventory import InventoryHost, endpoint, within_networks

FILE_NAME = "ssh-routes.json"
KEEP_TARGETS = 32
KEEP_HOSTS = 256


def memory_key(*parts: str | None) -> str:
    """A target's entry, from what shapes where its hosts are reached (environment,
    profile, region, target, SSH user, jump host)."""
    text = json.dumps([p or "" for p in parts])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _read(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def recall(state: Path, key: str, networks: Sequence[str]) -> list[InventoryHost]:
    """The hosts the entry holds, in the order they were run, each still a valid route."""
    entry = _read(state / FILE_NAME).get(key)
    hosts = entry.get("hosts") if isinstance(entry, dict) else None
    if not isinstance(hosts, list):
        return []
    found: list[InventoryHost] = []
    for item in hosts[:KEEP_HOSTS]:
        host = _host(item)
        if host is not None:
            found.append(host)
    inside, _outside = within_networks(found, networks)
    return inside


def _host(item: Any) -> InventoryHost | None:
    if not isinstance(item, dict):
        return None
    iid, address, port, user = (item.get(k) for k in ("instance_id", "host", "port", "user"))
    if not (isinstance(iid, str) and iid.startswith("i-") and iid[2:].isalnum()):
        return None
    if not isinstance(address, str) or not isinstance(port, int) or isinstance(port, bool):
        return None
    if (
        not isinstance(user, str)
        or not user
        or not user.replace("-", "").replace("_", "").isalnum()
    ):
        return None
    parsed = endpoint(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
    if parsed is None or parsed != (address, port):
        return None
    return InventoryHost(instance_id=iid, ssh_host=address, ssh_port=port, ssh_user=user)


def remember(state: Path, key: str, routes: Sequence[tuple[str, str, int, str]]) -> None:
    """Keep (instance id, address, port, user) of this run's hosts under `key`.

    Best effort: a state folder that cannot be written costs the next run
    its early connections, never this run its result."""
    path = state / FILE_NAME
    body = _read(path)
    body.pop(key, None)
    body[key] = {
        "saved": int(time.time()),
        "hosts": [
            {"instance_id": iid, "host": host, "port": port, "user": user}
            for iid, host, port, user in routes[:KEEP_HOSTS]
        ],
    }
    kept = dict(list(body.items())[-KEEP_TARGETS:])
    try:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temp = tempfile.mkstemp(prefix=".ssh-routes-", dir=state)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(kept, fh)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError:
        return
