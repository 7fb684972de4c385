"""ansible-runner as a transport: push a playbook over SSH and report per host.

One call, events streamed to a handler, a recap per host (the interface
ansible-runner itself offers). Policy - which hosts, how many at once, when to
stop - is the workflow's; this module only reaches hosts and reports back.

SSH is set up for a fleet nobody has touched in years: pipelining on (one SSH
round trip per task instead of three), strict host-key checking against a
known_hosts file `ops` owns (a user's ~/.ssh/known_hosts is never written),
and a connect timeout short enough that an unreachable host is reported, not
waited for.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ops.errors import BadInput, OpsError
from ops.fleet.inventory import InventoryHost, write_inventory_dir

HOST_KEY_POLICIES = ("strict", "accept-new")
_JUMP_HOST = re.compile(r"^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+(?::[0-9]{1,5})?$")

# Host statuses shared with the SSM transport's per-host results.
OK = "ok"
FAILED = "failed"
UNREACHABLE = "unreachable"
NOT_RUN = "not_run"


@dataclass(frozen=True)
class TaskEvent:
    """One host finishing one task, as the progress display and the journal want it."""

    host: str
    task: str
    status: str
    changed: bool = False
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "task": self.task,
            "status": self.status,
            "changed": self.changed,
            "message": self.message,
        }


@dataclass
class HostRecap:
    """The per-host result shape both push and pull give (workflows use either)."""

    instance_id: str
    name: str
    status: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "status": self.status,
            "ok": self.ok,
            "changed": self.changed,
            "failed": self.failed,
            "unreachable": self.unreachable,
            "skipped": self.skipped,
            "message": self.message,
        }


@dataclass
class PlaybookResult:
    status: str
    rc: int
    hosts: list[HostRecap]
    elapsed: float
    tasks: int
    artifacts: Path | None = None

    @property
    def cancelled(self) -> bool:
        return self.status == "canceled"

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "rc": self.rc,
            "elapsed": round(self.elapsed, 3),
            "tasks": self.tasks,
            "hosts": [h.as_dict() for h in self.hosts],
        }


@dataclass(frozen=True)
class PushOptions:
    check: bool = False
    diff: bool = False
    forks: int = 10
    extravars: Mapping[str, Any] = field(default_factory=dict)
    ssh_key: str | None = None
    jump_host: str | None = None
    host_key_policy: str = "strict"
    known_hosts: Path | None = None
    connect_timeout: int = 10
    limit: Sequence[str] | None = None
    static_inventory: Path | None = None
    verbosity: int = 0


def ansible_binary(name: str) -> str:
    """The Ansible command beside this interpreter first: `ops` run from a venv uses its own."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise OpsError(f"{name} is not installed; install fleetops with its dependencies")
    return found


def ssh_common_args(options: PushOptions) -> str:
    """The ssh options every connection gets, quoted for Ansible's shlex split."""
    if options.host_key_policy not in HOST_KEY_POLICIES:
        raise BadInput(
            f"host-key policy {options.host_key_policy!r} is not one of "
            f"{', '.join(HOST_KEY_POLICIES)}"
        )
    strict = "yes" if options.host_key_policy == "strict" else "accept-new"
    args = [f"-o StrictHostKeyChecking={strict}", f"-o ConnectTimeout={options.connect_timeout}"]
    if options.known_hosts is not None:
        args.append("-o " + shlex.quote(f"UserKnownHostsFile={options.known_hosts}"))
    if options.jump_host:
        if not _JUMP_HOST.match(options.jump_host):
            raise BadInput(
                f"jump host {options.jump_host!r} is not user@host[:port]; fix ssh_jump_host"
            )
        args.append("-o " + shlex.quote(f"ProxyJump={options.jump_host}"))
    return " ".join(args)


def syntax_check(playbook: Path, timeout: float = 120) -> None:
    """Let Ansible itself parse the playbook (roles, modules, keywords) before any host.

    Run against an empty inventory, so nothing is contacted.
    """
    proc = subprocess.run(
        [
            ansible_binary("ansible-playbook"),
            "--syntax-check",
            "-i",
            "localhost,",
            str(playbook.resolve()),  # resolved: the check runs from the playbook's folder
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=playbook.parent,
        env=_base_env(),
        check=False,
    )
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("ERROR", "[ERROR]"))] or lines[-1:]
        detail = errors[0] if errors else f"exit {proc.returncode}"
        raise BadInput(f"{playbook}: ansible-playbook --syntax-check failed: {detail}")


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_NOCOLOR": "True",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
        }
    )
    return env


def _event_message(result: Mapping[str, Any]) -> str:
    msg = result.get("msg") or result.get("stderr") or result.get("reason") or ""
    if isinstance(msg, list):
        msg = " ".join(str(m) for m in msg)
    return str(msg).strip().splitlines()[0][:300] if str(msg).strip() else ""


_EVENT_STATUS = {
    "runner_on_ok": OK,
    "runner_on_failed": FAILED,
    "runner_on_unreachable": UNREACHABLE,
    "runner_on_skipped": "skipped",
}


def to_task_event(event: Mapping[str, Any]) -> TaskEvent | None:
    """A runner event as a TaskEvent, or None for events that are not a host's task result."""
    status = _EVENT_STATUS.get(str(event.get("event", "")))
    if status is None:
        return None
    data = event.get("event_data") or {}
    result = data.get("res") or {}
    if status == FAILED and data.get("ignore_errors"):
        status = OK
    return TaskEvent(
        host=str(data.get("host", "")),
        task=str(data.get("task", "")),
        status=status,
        changed=bool(result.get("changed", False)) if isinstance(result, Mapping) else False,
        message=_event_message(result) if status in (FAILED, UNREACHABLE) else "",
    )


def recap(
    stats: Mapping[str, Mapping[str, int]] | None,
    hosts: Sequence[InventoryHost],
    messages: Mapping[str, str],
) -> list[HostRecap]:
    """Per-host recap from ansible-runner's stats; hosts Ansible never reached are `not_run`."""
    stats = stats or {}

    def count(key: str, host: str) -> int:
        return int((stats.get(key) or {}).get(host, 0))

    out: list[HostRecap] = []
    for host in hosts:
        hid = host.instance_id
        item = HostRecap(
            instance_id=hid,
            name=host.name,
            status=NOT_RUN,
            ok=count("ok", hid),
            changed=count("changed", hid),
            failed=count("failures", hid),
            unreachable=count("dark", hid),
            skipped=count("skipped", hid),
            message=messages.get(hid, ""),
        )
        if item.unreachable:
            item.status = UNREACHABLE
        elif item.failed:
            item.status = FAILED
        elif hid in (stats.get("processed") or {}):
            item.status = OK
        out.append(item)
    return out


def push(
    playbook: Path,
    hosts: Sequence[InventoryHost],
    work_dir: Path,
    options: PushOptions,
    on_event: Callable[[TaskEvent], None] | None = None,
    cancel: threading.Event | None = None,
) -> PlaybookResult:
    """Run one playbook over SSH against these hosts and return the recap per host."""
    import ansible_runner

    if not hosts:
        raise BadInput("no hosts to run the playbook on; check the targeting")
    common = ssh_common_args(options)
    if options.known_hosts is not None:
        options.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        options.known_hosts.touch(mode=0o600, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    inventory = write_inventory_dir(
        work_dir / "inventory",
        hosts,
        options.static_inventory,
        group_vars={"ansible_ssh_private_key_file": options.ssh_key} if options.ssh_key else None,
    )
    cmdline = []
    if options.check:
        cmdline.append("--check")
    if options.diff:
        cmdline.append("--diff")
    limit = options.limit or [h.instance_id for h in hosts]
    messages: dict[str, str] = {}
    tasks: set[str] = set()
    stats: dict[str, Mapping[str, int]] = {}

    def handle(event: dict[str, Any]) -> bool:
        if event.get("event") == "playbook_on_stats":
            stats.update(event.get("event_data") or {})
        if event.get("event") == "playbook_on_task_start":
            tasks.add(str((event.get("event_data") or {}).get("task_uuid", "")))
        task_event = to_task_event(event)
        if task_event is not None:
            if task_event.message and task_event.status in (FAILED, UNREACHABLE):
                messages.setdefault(task_event.host, f"{task_event.task}: {task_event.message}")
            if on_event is not None:
                on_event(task_event)
        return False  # runner need not keep event files: the journal holds what matters

    envvars = {
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_COMMON_ARGS": common,
        "ANSIBLE_TIMEOUT": str(options.connect_timeout),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_GATHERING": "smart",
        # ansible-runner finds ansible-playbook on PATH: put this install's first.
        "PATH": os.pathsep.join(
            [str(Path(ansible_binary("ansible-playbook")).parent), os.environ.get("PATH", "")]
        ),
    }
    # A control socket per run: a master connection left by an earlier run (with
    # another known_hosts file) must not carry this run past its host-key check.
    # Short path in the temp dir, since a socket path is limited to ~100 bytes.
    control_dir = tempfile.mkdtemp(prefix="ops-cp-")
    envvars["ANSIBLE_SSH_CONTROL_PATH_DIR"] = control_dir
    extravars_file = _write_extravars(work_dir, options.extravars)
    started = time.monotonic()
    try:
        runner = _run_runner(
            ansible_runner,
            work_dir,
            playbook,
            inventory,
            options,
            envvars,
            cmdline,
            limit,
            handle,
            cancel,
        )
    finally:
        shutil.rmtree(control_dir, ignore_errors=True)
        if extravars_file is not None:  # it may hold secrets: it does not outlive the run
            extravars_file.unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    return PlaybookResult(
        status=str(runner.status),
        rc=int(runner.rc if runner.rc is not None else -1),
        hosts=recap(stats, hosts, messages),
        elapsed=elapsed,
        tasks=len(tasks),
        artifacts=Path(runner.config.artifact_dir) if runner.config else None,
    )


def _write_extravars(work_dir: Path, extravars: Mapping[str, Any]) -> Path | None:
    """Extra vars in env/extravars (0600), which ansible-runner hands on as `-e @FILE`.

    Given to ansible-runner as a dict instead, they would be spelt out on
    ansible-playbook's command line, where `ps` and the run's artifacts show them.
    """
    if not extravars:
        return None
    path = work_dir / "env" / "extravars"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(dict(extravars), fh, default=str)
    return path


def _run_runner(
    ansible_runner: Any,
    work_dir: Path,
    playbook: Path,
    inventory: Path,
    options: PushOptions,
    envvars: dict[str, str],
    cmdline: list[str],
    limit: Sequence[str],
    handle: Callable[[dict[str, Any]], bool],
    cancel: threading.Event | None,
) -> Any:
    return ansible_runner.run(
        private_data_dir=str(work_dir),
        playbook=str(playbook.resolve()),
        inventory=str(inventory),
        envvars=envvars,
        cmdline=" ".join(cmdline) or None,
        forks=options.forks,
        limit=",".join(limit),
        verbosity=options.verbosity or None,
        quiet=True,
        event_handler=handle,
        cancel_callback=(lambda: cancel.is_set()) if cancel is not None else None,
        rotate_artifacts=5,
        project_dir=str(playbook.resolve().parent),
    )


def load_playbook(path: Path) -> list[dict[str, Any]]:
    """Parse a playbook's YAML, tolerating Ansible's own tags (!vault, !unsafe)."""

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_multi_constructor("!", lambda _loader, _suffix, _node: None)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read the playbook: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{path}: not valid YAML{where}; fix the playbook") from None
    if not isinstance(data, list) or not all(isinstance(p, dict) for p in data):
        raise BadInput(f"{path}: a playbook is a list of plays; this file is not")
    return data
