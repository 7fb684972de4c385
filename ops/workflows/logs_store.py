"""Bundles on the control machine: verify, unpack safely, index, search.

A bundle comes from a host, so it is untrusted: only regular files are
unpacked, only below the host's folder (no absolute names, no `..`, no
links), and every file is checked against the sha256 its manifest gives.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ops.errors import BadInput, OpsError

META = "_ops"
MANIFEST = f"{META}/manifest.json"
INDEX = "index.json"
_CHUNK = 1024 * 1024


class BundleError(OpsError):
    """A bundle that cannot be trusted or read: its host's collection failed."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or "\0" in name:
        raise BundleError(f"bundle member {name!r} would land outside the host's folder")
    return path


def unpack(bundle: Path, host_dir: Path) -> dict[str, Any]:
    """Unpack into `host_dir` and return the manifest; every file's sha256 is checked
    against it, and a file the manifest does not list is not kept."""
    if host_dir.exists():
        shutil.rmtree(host_dir)  # a retried fetch starts clean
    host_dir.mkdir(parents=True)
    try:
        with tarfile.open(bundle, mode="r:gz") as tar:
            members = tar.getmembers()
            manifest_member = next((m for m in members if m.name == MANIFEST), None)
            if manifest_member is None or not manifest_member.isfile():
                raise BundleError("the bundle has no manifest")
            handle = tar.extractfile(manifest_member)
            assert handle is not None
            manifest = json.loads(handle.read().decode("utf-8"))
            listed = {str(f["path"]): f for f in manifest.get("files", [])}
            for member in members:
                if member.name == MANIFEST or member.name not in listed:
                    continue
                if not member.isfile():
                    raise BundleError(f"bundle member {member.name!r} is not a regular file")
                target = host_dir / _safe_name(member.name)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                with target.open("wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
            (host_dir / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
            (host_dir / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    except (tarfile.TarError, OSError, EOFError, ValueError, KeyError) as exc:
        raise BundleError(f"the bundle cannot be unpacked: {exc}") from exc
    for name, entry in listed.items():
        path = host_dir / _safe_name(name)
        if not path.is_file():
            raise BundleError(f"{name} is in the manifest but not in the bundle")
        if sha256_file(path) != entry.get("sha256"):
            raise BundleError(f"{name}: sha256 differs from the manifest")
    return dict(manifest)


@dataclass
class HostEntry:
    """One host's line in index.json (and in `--output json`)."""

    instance_id: str
    name: str
    status: str
    message: str = ""
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    bundle_sha256: str = ""
    bundle_size: int = 0
    manifest: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        manifest = self.manifest or {}
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "files": [
                {k: f.get(k) for k in ("path", "source", "size", "sha256", "kind")}
                for f in manifest.get("files", [])
            ],
            "file_count": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "bundle": {"sha256": self.bundle_sha256, "size": self.bundle_size},
            "redactions": manifest.get("redactions", []),
            "left_out": manifest.get("left_out", []),
            "journald": manifest.get("journald"),
            "containers": manifest.get("containers", {}),
            "errors": manifest.get("errors", []),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostEntry:
        manifest = {
            key: data.get(key)
            for key in ("files", "redactions", "left_out", "journald", "containers", "errors")
        }
        return cls(
            instance_id=str(data["instance_id"]),
            name=str(data.get("name", "")),
            status=str(data["status"]),
            message=str(data.get("message", "")),
            files=int(data.get("file_count", 0)),
            bytes=int(data.get("bytes", 0)),
            seconds=float(data.get("seconds", 0.0)),
            bundle_sha256=str((data.get("bundle") or {}).get("sha256", "")),
            bundle_size=int((data.get("bundle") or {}).get("size", 0)),
            manifest=manifest,
        )


def write_index(
    run_dir: Path, run_id: str, request: dict[str, Any], hosts: list[HostEntry]
) -> Path:
    path = run_dir / INDEX
    run_dir.mkdir(parents=True, exist_ok=True)
    body = {
        "run_id": run_id,
        "request": request,
        "hosts": [h.as_dict() for h in hosts],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class Match:
    host: str
    file: str
    line_number: int
    line: str

    def render(self) -> str:
        return f"{self.host}:{self.file}:{self.line_number}:{self.line}"


def search(
    run_dir: Path, pattern: str, *, regex: bool = False, ignore_case: bool = False
) -> Iterator[Match]:
    """Lines of the run's text files that match, host by host, file by file.

    A file shows as the path it had on its host (`/var/log/syslog`); what
    `ops` added (journal, docker logs, facts) shows under `_ops/`.
    """
    flags = re.IGNORECASE if ignore_case else 0
    try:
        compiled = re.compile(pattern if regex else re.escape(pattern), flags)
    except re.error as exc:
        raise BadInput(f"pattern {pattern!r} is not a regular expression: {exc}") from None
    if not run_dir.is_dir():
        raise BadInput(f"no collected logs at {run_dir}")
    for host_dir in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        for path in sorted(p for p in host_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(host_dir).as_posix()
            if rel == MANIFEST:
                continue
            shown = rel if rel.startswith(f"{META}/") else "/" + rel
            with path.open("rb") as fh:
                if b"\0" in fh.read(8192):
                    continue  # binary
                fh.seek(0)
                for number, raw in enumerate(fh, start=1):
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if compiled.search(line):
                        yield Match(host_dir.name, shown, number, line)
