"""How the bundle builder is started on a host, over SSH or SSM, and what it answers.

The builder (ops/workflows/logs_host.py) travels as it is in the package:
on an SSH channel's stdin, or over SSM in a here-document whose delimiter is
quoted (so the shell expands nothing in it). The job is one base64
argument, shlex-quoted anyway; the presigned URL goes into the script's
environment, never onto a command line where `ps` would show it. The host's
answer, the last `OPS-BUNDLE {json}` line, is untrusted: it is parsed into
typed fields and the bundle path it names must look like one the builder
makes before anything uses it.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ops.transports.ssm import CommandSpec, HostResult, SsmTransport

HOST_SCRIPT = Path(__file__).with_name("logs_host.py")
RESULT_PREFIX = "OPS-BUNDLE "
HEREDOC_END = "OPS_LOGS_BUILDER_END"
EXIT_NO_PYTHON = 90
_BUNDLE_PATH = re.compile(r"^/[A-Za-z0-9_./-]*/ops-logs-[A-Za-z0-9_]+\.tar\.gz$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_OPEN = frozenset({"Pending", "InProgress", "Cancelling"})
_NO_PYTHON = (
    f"command -v python3 >/dev/null 2>&1 || "
    f"{{ echo 'ops-logs: python3 is not installed on this host' >&2; exit {EXIT_NO_PYTHON}; }}"
)


def host_source() -> str:
    source = HOST_SCRIPT.read_text(encoding="utf-8")
    if HEREDOC_END in source:  # pragma: no cover - guards an edit to logs_host.py
        raise AssertionError(f"{HOST_SCRIPT} must not contain {HEREDOC_END}")
    return source


def ssh_command(job: str, user: str) -> str:
    """Shell text for SSH; the builder itself comes on stdin."""
    sudo = "" if user == "root" else "sudo -n "
    return f"{_NO_PYTHON}; {sudo}python3 - {shlex.quote(job)}"


def ssm_script(job: str, put_url: str) -> str:
    """The whole AWS-RunShellScript text for one host; its URL is in the environment only."""
    return (
        "set -u\n"
        f"{_NO_PYTHON}\n"
        f"OPS_BUNDLE_PUT_URL={shlex.quote(put_url)}\n"
        "export OPS_BUNDLE_PUT_URL\n"
        f"python3 - {shlex.quote(job)} <<'{HEREDOC_END}'\n"
        f"{host_source()}"
        f"{HEREDOC_END}\n"
    )


@dataclass(frozen=True)
class BuildAnswer:
    """What the builder said: where the bundle is (SSH) or that it was uploaded (S3)."""

    sha256: str
    size: int
    files: int
    left_out: int
    content_bytes: int = 0
    path: str = ""
    uploaded: bool = False
    upload_error: str = ""


class BadAnswer(ValueError):
    pass


def parse_answer(stdout: str) -> BuildAnswer:
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if not lines:
        raise BadAnswer("the builder printed no result line")
    try:
        data = json.loads(lines[-1][len(RESULT_PREFIX) :])
        answer = BuildAnswer(
            sha256=str(data["sha256"]),
            size=int(data["size"]),
            files=int(data["files"]),
            left_out=int(data.get("left_out", 0)),
            content_bytes=int(data.get("bytes", 0)),
            path=str(data.get("path") or ""),
            uploaded=bool(data.get("uploaded")),
            upload_error=str(data.get("upload_error") or "")[:300],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise BadAnswer(f"the builder's result line does not parse: {exc}") from None
    if not _SHA256.match(answer.sha256) or answer.size < 0:
        raise BadAnswer("the builder's result line has no valid sha256 or size")
    if answer.path and not _BUNDLE_PATH.match(answer.path):
        raise BadAnswer(f"the builder named an unexpected bundle path {answer.path!r}")
    return answer


def failure_text(code: int | None, stderr: str, stdout: str = "") -> str:
    if code == EXIT_NO_PYTHON:
        return "python3 is not installed on this host"
    lines = [ln.strip() for ln in (stderr or stdout).splitlines() if ln.strip()]
    tail = lines[-1][:300] if lines else ""
    return f"builder exit {code}" + (f": {tail}" if tail else "")


def run_over_ssm(
    transport: SsmTransport,
    scripts: dict[str, str],
    names: dict[str, str],
    *,
    on_done: Callable[[HostResult], None],
    timeout: int = 1800,
    grace: float = 120.0,
    workers: int = 4,
    cancel: threading.Event | None = None,
    poll: float = 0.5,
) -> None:
    """One SendCommand per host (each carries its own presigned URL, which no other host
    may see), then one ListCommands listing watches them all; ListCommandInvocations
    only for commands that finished. `on_done` hears of every host exactly once: a
    send refused is Undeliverable, a host not sent to after a cancel NotStarted, and
    no answer by the execution timeout (plus `grace`) TimedOut."""
    import concurrent.futures as cf

    cancel = cancel or threading.Event()
    since = datetime.now(UTC) - timedelta(seconds=60)
    open_commands: dict[str, str] = {}  # command id -> instance id
    cancelled: set[str] = set()
    lock = threading.Lock()

    def send(instance_id: str) -> None:
        name = names.get(instance_id, "")
        if cancel.is_set():
            on_done(HostResult(instance_id, name, "NotStarted", stderr="cancelled before sending"))
            return
        spec = CommandSpec(
            commands=[scripts[instance_id]],
            execution_timeout=timeout,
            comment="ops logs collect",
        )
        try:
            command_id = transport.send(spec, instance_ids=[instance_id])
        except Exception as exc:
            on_done(HostResult(instance_id, name, "Undeliverable", stderr=str(exc)))
            return
        with lock:
            open_commands[command_id] = instance_id

    deadline = time.monotonic() + timeout + grace
    with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ops-logs-send") as pool:
        sends = [pool.submit(send, iid) for iid in scripts]
        interval = poll
        while True:
            sending = any(not f.done() for f in sends)
            with lock:
                pending = dict(open_commands)
            if not pending and not sending:
                break
            if cancel.is_set():
                for command_id in pending.keys() - cancelled:
                    transport.cancel(command_id)
                    cancelled.add(command_id)
            if time.monotonic() > deadline and not sending:
                for iid in pending.values():
                    on_done(HostResult(iid, names.get(iid, ""), "TimedOut", stderr="no answer"))
                return
            time.sleep(interval)
            interval = min(interval * 1.5, 3.0)
            if not pending:
                continue
            states = transport.command_states(pending, since)
            for command_id, command in states.items():
                if command.get("Status") in _OPEN:
                    continue
                for invocation in transport.invocations(command_id):
                    on_done(transport.result(invocation, names.get(pending[command_id], "")))
                with lock:
                    open_commands.pop(command_id, None)
                interval = poll


def instance_names(hosts: Sequence[Any]) -> dict[str, str]:
    return {h.instance_id: h.name for h in hosts}
