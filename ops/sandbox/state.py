"""The sandbox's own record of what it started: one JSON file in its state folder.

`down` trusts this file and the Docker labels, never guesses, so it removes
exactly what `up` made even after a crash half-way through.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ops.config import state_dir


@dataclass
class HostRecord:
    instance_id: str
    name: str
    role: str
    platform: str
    container: str
    ssh_port: int
    app_port: int


@dataclass
class SandboxState:
    label: str
    created_at: float
    region: str
    hosts: list[HostRecord] = field(default_factory=list)
    synthetic: int = 0
    seed: int = 0
    key_path: str = ""
    inventory_path: str = ""
    network: dict[str, Any] = field(default_factory=dict)
    package_repo: str = ""
    alarms: list[str] = field(default_factory=list)
    phase: str = "starting"

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> SandboxState | None:
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        hosts = [HostRecord(**h) for h in data.pop("hosts", [])]
        return cls(hosts=hosts, **data)


def sandbox_dir() -> Path:
    folder = state_dir() / "sandbox"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def state_file() -> Path:
    return sandbox_dir() / "state.json"


def label_for(folder: Path) -> str:
    """A short label unique to this state folder, so two sandboxes never share containers."""
    return "sbx" + hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
