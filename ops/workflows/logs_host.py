"""The log bundle builder that runs ON a host (python3 only, standard library, 3.7+).

It is shipped inside the package and sent verbatim: over SSH on the
channel's stdin, over SSM in a quoted here-document. Nothing from the fleet
or the operator is spliced into shell text: the job (window, paths, units,
containers, cap, redaction) arrives as one base64 JSON argument, and the
presigned upload URL, when there is one, in the environment
(OPS_BUNDLE_PUT_URL), never on a command line. Every external command runs
from an argument list.

The bundle is one tar.gz: files under their original absolute paths
(`var/log/syslog`), and `_ops/` with the journal per unit, `docker logs`
per container, `facts.txt` and `manifest.json` (every file with size and
sha256, what the size cap left out and why, what was masked, what is
missing on this host). The last line on stdout is `OPS-BUNDLE {json}`:
where the bundle is, its size and sha256, and whether it was uploaded.
"""

from __future__ import annotations

import base64
import glob
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any

RESULT_PREFIX = "OPS-BUNDLE "
META = "_ops"
READ_CHUNK = 1024 * 1024
COMMAND_TIMEOUT = 120

_REDACTIONS = (
    ("aws_access_key", re.compile(rb"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), None),
    ("bearer_token", re.compile(rb"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"), rb"\1[REDACTED]"),
    (
        "secret_assignment",
        re.compile(
            rb"(?i)(\b[A-Za-z0-9_.-]*(?:secret|password|passwd|token|api[_-]?key|access[_-]?key)"
            rb"[A-Za-z0-9_.-]*[\"']?\s*[=:]\s*[\"']?)([^\s\"',;]{4,})"
        ),
        rb"\1[REDACTED]",
    ),
)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(READ_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _run(
    argv: list[str], out_path: str | None = None, timeout: int = COMMAND_TIMEOUT
) -> tuple[int, str]:
    """(exit code, text) of a command from an argument list; output to a file when given."""
    try:
        if out_path is not None:
            with open(out_path, "wb") as out:
                proc = subprocess.run(
                    argv, stdout=out, stderr=subprocess.PIPE, timeout=timeout, check=False
                )
            return proc.returncode, proc.stderr.decode("utf-8", "replace").strip()
        proc = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False
        )
        return proc.returncode, proc.stdout.decode("utf-8", "replace")
    except FileNotFoundError:
        return 127, f"{argv[0]}: not found"
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]}: timed out after {timeout} s"


def _is_text(path: str) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(8192)
    return b"\0" not in head


def redact(path: str) -> dict[str, int]:
    """Mask secrets in a text file in place; {kind: count} of what was masked."""
    counts: dict[str, int] = {}
    with open(path, "rb") as fh:
        data = fh.read()
    for kind, pattern, replacement in _REDACTIONS:
        if replacement is None:
            data, n = pattern.subn(b"[REDACTED-AWS-KEY]", data)
        else:
            data, n = pattern.subn(replacement, data)
        if n:
            counts[kind] = n
    if counts:
        with open(path, "wb") as fh:
            fh.write(data)
    return counts


def matching_files(
    patterns: list[str], since: float, until: float, errors: list[dict[str, Any]]
) -> dict[str, os.stat_result]:
    """Regular files under the globs (a directory counts as everything below it) whose
    mtime is in the window; symlinks are not followed, so nothing outside is read."""
    found: dict[str, os.stat_result] = {}
    for pattern in patterns:
        for hit in sorted(glob.glob(pattern, recursive=True)):
            candidates = [hit]
            if os.path.isdir(hit) and not os.path.islink(hit):
                candidates = []
                for root, dirs, files in os.walk(hit):
                    dirs.sort()
                    candidates.extend(os.path.join(root, name) for name in sorted(files))
            for path in candidates:
                try:
                    info = os.lstat(path)
                except OSError as exc:
                    errors.append({"source": path, "error": str(exc)})
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue
                if since <= info.st_mtime <= until:
                    found[path] = info
    return found


JOURNAL_DIRS = ("/run/log/journal", "/var/log/journal")


def journal(
    units: list[str],
    since: float,
    until: float,
    work: str,
    notes: dict[str, Any],
    journal_dirs: tuple[str, ...] = JOURNAL_DIRS,
) -> list[tuple[str, str]]:
    """One file per unit from journalctl, or a note that this host has no journal."""
    produced: list[tuple[str, str]] = []
    if not units:
        notes["journald"] = {"available": None, "reason": "no --unit asked for"}
        return produced
    if shutil.which("journalctl") is None:
        notes["journald"] = {"available": False, "reason": "journalctl is not installed"}
        return produced
    if not any(os.path.isdir(d) for d in journal_dirs):
        notes["journald"] = {"available": False, "reason": "no journal on this host"}
        return produced
    notes["journald"] = {"available": True, "units": {}}
    for unit in units:
        name = f"{META}/journal/{unit}.log"
        target = os.path.join(work, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        code, err = _run(
            [
                "journalctl",
                "--no-pager",
                "--output=short-iso-precise",
                "--unit=" + unit,
                f"--since=@{int(since)}",
                f"--until=@{int(until)}",
            ],
            target,
        )
        notes["journald"]["units"][unit] = "ok" if code == 0 else f"exit {code}: {err}"
        produced.append((name, target))
    return produced


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def containers(
    names: list[str], since: float, until: float, work: str, notes: dict[str, Any]
) -> list[tuple[str, str]]:
    """`docker logs` per named container (or every one for `all`), or why not."""
    produced: list[tuple[str, str]] = []
    state: dict[str, str] = {}
    notes["containers"] = state
    if not names:
        return produced
    if shutil.which("docker") is None:
        for name in names:
            state[name] = "absent: docker is not installed on this host"
        return produced
    wanted = list(names)
    if "all" in wanted:
        code, out = _run(["docker", "ps", "--all", "--format", "{{.Names}}"])
        if code != 0:
            state["all"] = f"absent: docker ps failed: {out.strip()[:300]}"
            return produced
        wanted = [n for n in wanted if n != "all"] + sorted(out.split())
    for name in dict.fromkeys(wanted):
        code, out = _run(["docker", "inspect", "--format", "{{.Id}}", "--", name])
        if code != 0:
            state[name] = "absent: no such container"
            continue
        rel = f"{META}/containers/{name}.log"
        target = os.path.join(work, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        argv = ["docker", "logs", "--timestamps", "--since", _iso(since), "--until", _iso(until)]
        with open(target, "wb") as out_fh:
            try:
                proc = subprocess.run(
                    [*argv, "--", name],
                    stdout=out_fh,
                    stderr=subprocess.STDOUT,
                    timeout=COMMAND_TIMEOUT,
                    check=False,
                )
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = 124
        state[name] = "ok" if code == 0 else f"docker logs exit {code}"
        produced.append((rel, target))
    return produced


FACTS = (
    ("uname", ["uname", "-a"]),
    ("uptime", ["uptime"]),
    ("df", ["df", "-hP"]),
    ("free", ["free", "-m"]),
    ("docker ps", ["docker", "ps", "--all"]),
    ("last reboot", ["last", "-x", "reboot", "-n", "5"]),
    ("boot time", ["who", "-b"]),
)


def facts(work: str) -> tuple[str, str]:
    rel = f"{META}/facts.txt"
    target = os.path.join(work, rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w", encoding="utf-8") as fh:
        fh.write(f"hostname: {socket.gethostname()}\n")
        fh.write(f"collected_at: {_iso(time.time())}\n")
        for title, argv in FACTS:
            code, out = _run(argv, timeout=30)
            fh.write(
                f"\n== {title} (exit {code}) ==\n{out if out.endswith(chr(10)) else out + chr(10)}"
            )
    return rel, target


def build(job: dict[str, Any], work: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Everything into `work`, the manifest written; returns (manifest, [(arcname, path)])."""
    since, until, cap = float(job["since"]), float(job["until"]), int(job["max_size"])
    errors: list[dict[str, Any]] = []
    notes: dict[str, Any] = {}
    entries: list[tuple[str, str, str, float]] = []  # (arcname, staged path, source, mtime)
    for rel, path in journal(job.get("units") or [], since, until, work, notes):
        entries.append((rel, path, "journald", os.stat(path).st_mtime))
    for rel, path in containers(job.get("containers") or [], since, until, work, notes):
        entries.append((rel, path, "docker logs", os.stat(path).st_mtime))
    rel, path = facts(work)
    entries.append((rel, path, "facts", os.stat(path).st_mtime))
    used = sum(os.stat(p).st_size for _r, p, _s, _m in entries)
    found = matching_files(job.get("paths") or [], since, until, errors)
    left_out: list[dict[str, Any]] = []
    # newest first into the cap; what does not fit is left out, reported oldest first
    for source, info in sorted(found.items(), key=lambda item: -item[1].st_mtime):
        if info.st_size > cap - used:
            why = (
                f"larger than the cap on its own ({info.st_size} > {cap} bytes)"
                if info.st_size > cap
                else f"size cap: {used} bytes already taken of {cap}"
            )
            left_out.append(
                {"path": source, "size": info.st_size, "mtime": info.st_mtime, "reason": why}
            )
            continue
        staged = os.path.join(work, "files", source.lstrip("/"))
        os.makedirs(os.path.dirname(staged), exist_ok=True)
        try:
            shutil.copyfile(source, staged, follow_symlinks=False)
        except OSError as exc:
            errors.append({"source": source, "error": str(exc)})
            continue
        used += os.stat(staged).st_size
        entries.append((source.lstrip("/"), staged, source, info.st_mtime))
    left_out.sort(key=lambda item: item["mtime"])
    files: list[dict[str, Any]] = []
    members: list[tuple[str, str]] = []
    redactions: list[dict[str, Any]] = []
    for arcname, staged, source, mtime in sorted(entries):
        kind = "text" if _is_text(staged) else "binary"
        if job.get("redact") and kind == "text":
            masked = redact(staged)
            if masked:
                redactions.append({"path": arcname, "masked": masked})
        members.append((arcname, staged))
        files.append(
            {
                "path": arcname,
                "source": source,
                "size": os.stat(staged).st_size,
                "sha256": _sha256(staged),
                "mtime": mtime,
                "kind": kind,
            }
        )
    manifest = {
        "format": 1,
        "hostname": socket.gethostname(),
        "instance_id": os.environ.get("AWS_SSM_INSTANCE_ID", "") or job.get("instance_id", ""),
        "window": {"since": _iso(since), "until": _iso(until)},
        "max_size": cap,
        "files": files,
        "left_out": left_out,
        "redactions": redactions,
        "journald": notes.get("journald"),
        "containers": notes.get("containers", {}),
        "errors": errors,
    }
    return manifest, members


def pack(manifest: dict[str, Any], members: list[tuple[str, str]], out_path: str) -> None:
    """A tar.gz of the members and the manifest; owners and modes are not carried."""
    with (
        open(out_path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=1) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for arcname, path in members:
            info = tar.gettarinfo(path, arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o644
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
        body = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8")
        info = tarfile.TarInfo(f"{META}/manifest.json")
        info.size = len(body)
        info.mtime = int(time.time())
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(body))


def upload(url: str, path: str) -> int:
    """PUT the bundle to its presigned URL; the URL itself is never printed."""
    import urllib.request

    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        request = urllib.request.Request(url, data=fh, method="PUT")
        request.add_header("Content-Length", str(size))
        request.add_header("Content-Type", "application/gzip")
        with urllib.request.urlopen(request, timeout=300) as response:
            return int(response.status)


def main(argv: list[str]) -> int:
    job = json.loads(base64.b64decode(argv[1]).decode("utf-8"))
    old_umask = os.umask(0o077)
    work = tempfile.mkdtemp(prefix="ops-logs-")
    try:
        manifest, members = build(job, work)
        fd, out_path = tempfile.mkstemp(prefix="ops-logs-", suffix=".tar.gz")
        os.close(fd)
        pack(manifest, members, out_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.umask(old_umask)
    result: dict[str, Any] = {
        "path": out_path,
        "size": os.path.getsize(out_path),
        "sha256": _sha256(out_path),
        "files": len(manifest["files"]),
        "bytes": sum(int(f["size"]) for f in manifest["files"]),
        "left_out": len(manifest["left_out"]),
        "uploaded": False,
    }
    url = os.environ.pop("OPS_BUNDLE_PUT_URL", "")
    if url:
        try:
            result["http_status"] = upload(url, out_path)
            result["uploaded"] = True
        except Exception as exc:  # reported to the control machine, which decides
            result["upload_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        finally:
            os.unlink(out_path)
            result["path"] = ""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0 if result.get("uploaded") or not url else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv))
