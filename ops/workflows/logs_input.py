"""What `ops logs collect` was asked for, checked before any host is touched.

Every value that reaches a host is validated here: paths are absolute and
free of `..`, unit and container names use only the characters systemd and
Docker allow, the window parses and is not empty, the cap is a size, and
the destination is writable. A refusal is BadInput (exit 2) with one line
that says how to mend it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from ops.errors import BadInput

VIAS = ("s3", "ssh")
DEFAULT_MAX_SIZE = "200MB"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|w)\s*$", re.IGNORECASE)
_UNITS_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)\s*$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
# systemd unit names: ASCII letters, digits, ":", "-", "_", ".", "\" and "@"; a glob is allowed
_UNIT = re.compile(r"^[A-Za-z0-9:_.@\\*?\[\]-]{1,256}$")
_CONTAINER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class LogRequest:
    """One collection, with the window as absolute times so a resume collects the same."""

    since: float
    until: float
    paths: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    max_size: int = 200 * 1024**2
    dest: Path = field(default_factory=lambda: Path("ops-logs"))
    via: str = "s3"
    redact: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "paths": list(self.paths),
            "units": list(self.units),
            "containers": list(self.containers),
            "max_size": self.max_size,
            "dest": str(self.dest),
            "via": self.via,
            "redact": self.redact,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogRequest:
        return cls(
            since=float(data["since"]),
            until=float(data["until"]),
            paths=tuple(data.get("paths") or ()),
            units=tuple(data.get("units") or ()),
            containers=tuple(data.get("containers") or ()),
            max_size=int(data["max_size"]),
            dest=Path(data["dest"]),
            via=str(data["via"]),
            redact=bool(data.get("redact")),
        )

    def job(self, instance_id: str) -> str:
        """The host's job as one base64 argument: nothing in it is ever read by a shell."""
        body = {
            "since": self.since,
            "until": self.until,
            "paths": list(self.paths),
            "units": list(self.units),
            "containers": list(self.containers),
            "max_size": self.max_size,
            "redact": self.redact,
            "instance_id": instance_id,
        }
        return base64.b64encode(json.dumps(body, sort_keys=True).encode()).decode()


def parse_when(text: str, now: float, option: str) -> float:
    """`2h`, `30m`, `1d` (before now), an ISO 8601 time (UTC unless it says otherwise),
    or `@EPOCH`; anything else is refused."""
    value = text.strip()
    match = _DURATION.match(value)
    if match:
        return now - float(match.group(1)) * _UNITS_S[match.group(2).lower()]
    if value.startswith("@"):
        try:
            return float(value[1:])
        except ValueError:
            pass
    else:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.timestamp()
    raise BadInput(
        f"{option} {text!r}: expected a duration such as 2h or 30m, an ISO time such as "
        "2026-06-30T22:00Z, or @EPOCH"
    )


def parse_size(text: str) -> int:
    """`200MB`, `1.5G`, `512KiB`, `1000` (bytes); powers of 1024."""
    match = _SIZE.match(text)
    if not match:
        raise BadInput(f"--max-size {text!r}: expected a size such as 200MB or 1G")
    unit = match.group(2).upper().rstrip("B").rstrip("I")
    size = int(float(match.group(1)) * _SIZE_FACTORS[unit])
    if size < 1024:
        raise BadInput(f"--max-size {text!r}: at least 1KB, or the facts alone would not fit")
    return size


def check_path(path: str) -> str:
    """An absolute path or glob, with no `..` and nothing a line-based tool could trip on."""
    if not path.startswith("/"):
        raise BadInput(f"--path {path!r}: must be absolute (start with /)")
    if any(ch in path for ch in ("\0", "\n", "\r")):
        raise BadInput(f"--path {path!r}: control characters are not allowed")
    if ".." in PurePosixPath(path).parts:
        raise BadInput(f"--path {path!r}: '..' is not allowed; give the path it leads to")
    return path


def check_unit(unit: str) -> str:
    if unit.startswith("-") or not _UNIT.match(unit):
        raise BadInput(
            f"--unit {unit!r}: not a systemd unit name (letters, digits and : - _ . @ \\)"
        )
    return unit


def check_container(name: str) -> str:
    if name != "all" and not _CONTAINER.match(name):
        raise BadInput(
            f"--container {name!r}: not a Docker container name (letters, digits, _ . -), or `all`"
        )
    return name


def check_dest(dest: Path) -> Path:
    """The destination exists or can be made, and a file can be written in it."""
    dest = dest.expanduser()
    probe_dir = dest
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise BadInput(f"--dest {dest}: {probe_dir} is not a directory")
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise BadInput(f"--dest {dest}: {probe_dir} is not writable")
    try:
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".ops-probe-"):
            pass
    except OSError as exc:
        raise BadInput(f"--dest {dest}: cannot write there: {exc.strerror or exc}") from None
    return dest.resolve()


def build_request(
    *,
    since: str,
    until: str | None,
    paths: tuple[str, ...],
    units: tuple[str, ...],
    containers: tuple[str, ...],
    max_size: str,
    dest: Path,
    via: str | None,
    redact: bool,
    bucket: str | None,
    now: float | None = None,
) -> LogRequest:
    """Every flag checked; the first problem is refused, before any host is touched."""
    now = time.time() if now is None else now
    start = parse_when(since, now, "--since")
    end = parse_when(until, now, "--until") if until else now
    if end <= start:
        raise BadInput(f"--since {since!r} is not before --until {until or 'now'!r}")
    chosen = via or ("s3" if bucket else "ssh")
    if chosen not in VIAS:
        raise BadInput(f"--via {chosen!r}: expected one of {', '.join(VIAS)}")
    if chosen == "s3" and not bucket:
        raise BadInput(
            "--via s3 needs an S3 bucket: set output_bucket in ops.yml or OPS_OUTPUT_BUCKET, "
            "or use --via ssh"
        )
    return LogRequest(
        since=start,
        until=end,
        paths=tuple(check_path(p) for p in paths),
        units=tuple(check_unit(u) for u in units),
        containers=tuple(dict.fromkeys(check_container(c) for c in containers)),
        max_size=parse_size(max_size),
        dest=check_dest(dest),
        via=chosen,
        redact=redact,
    )
