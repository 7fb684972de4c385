"""`ops playbook`: validate, plan waves, push over SSH or pull over SSM, journal every host.

Validation happens in full before the journal or any host sees the run: the
file exists, parses, names only roles that exist, and passes Ansible's own
syntax check. Waves (`--batch`) and the failure budget (`--max-fail`) are
applied between ansible-runner calls, so a budget stop lets the wave in
flight finish and starts no new host. Push and pull give the same per-host
recap (HostRecap), so nothing after the transport needs to know which ran.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ops.config import Settings, known_hosts_path, state_dir
from ops.engine.recorder import RunRecorder
from ops.errors import BadInput, ExitCode
from ops.fleet.inventory import InventoryHost
from ops.journal.store import INTENDED, STARTED, Journal, Run
from ops.redact import Redactor, masked
from ops.transports.ansible import (
    NOT_RUN,
    OK,
    HostRecap,
    PlaybookResult,
    PushOptions,
    TaskEvent,
    load_playbook,
    push,
    syntax_check,
)
from ops.transports.ansible_pull import (
    Bundle,
    PullOptions,
    build_bundle,
    bundle_location,
    collect_roles,
    delete_bundle,
    presign,
    pull,
    stage,
)
from ops.transports.ssm import SsmTransport, open_transport

VIAS = ("ssh", "ssm")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_AMOUNT = re.compile(r"^([0-9]+)(%?)$")


@dataclass(frozen=True)
class PlaybookRequest:
    playbook: Path
    via: str = "ssh"
    check: bool = False
    diff: bool = False
    extravars: Mapping[str, Any] = field(default_factory=dict)
    forks: int = 10
    batch: str | None = None
    max_fail: str | None = None
    host_key_policy: str = "strict"

    def as_dict(self) -> dict[str, Any]:
        return {
            "playbook": str(self.playbook),
            "via": self.via,
            "check": self.check,
            "diff": self.diff,
            "extravars": masked(self.extravars),  # secret-looking names: value masked
            "forks": self.forks,
            "batch": self.batch,
            "max_fail": self.max_fail,
            "host_key_policy": self.host_key_policy,
        }


@dataclass
class PlaybookPlan:
    request: PlaybookRequest
    playbook: Path
    roles: list[str]
    waves: list[list[InventoryHost]]
    max_failures: int | None

    @property
    def hosts(self) -> list[InventoryHost]:
        return [h for wave in self.waves for h in wave]

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.request.as_dict(),
            "playbook": str(self.playbook),
            "roles": self.roles,
            "max_failures": self.max_failures,
            "waves": [[h.instance_id for h in wave] for wave in self.waves],
        }


@dataclass
class PlaybookReport:
    run_id: str
    status: str
    hosts: list[HostRecap]
    elapsed: float
    tasks: int

    @property
    def exit_code(self) -> ExitCode:
        if self.status == "cancelled":
            return ExitCode.INTERRUPTED
        if self.status == "stopped":
            return ExitCode.STOPPED
        if any(h.status != OK for h in self.hosts):
            return ExitCode.HOSTS_FAILED
        return ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "elapsed": round(self.elapsed, 3),
            "tasks": self.tasks,
            "hosts": [h.as_dict() for h in self.hosts],
        }


def parse_extravars(items: Sequence[str]) -> dict[str, Any]:
    """`-e KEY=VALUE` and `-e @FILE` (a YAML or JSON mapping), later ones winning."""
    merged: dict[str, Any] = {}
    for item in items:
        if item.startswith("@"):
            path = Path(item[1:])
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                raise BadInput(f"-e {item}: cannot read the file: {exc}") from None
            except yaml.YAMLError:
                raise BadInput(f"-e {item}: not valid YAML or JSON") from None
            if not isinstance(data, dict):
                raise BadInput(f"-e {item}: the file must hold a mapping of variables")
            merged.update(data)
            continue
        key, sep, value = item.partition("=")
        if not sep or not _KEY.match(key):
            raise BadInput(f"-e {item!r}: expected KEY=VALUE or @FILE (KEY a variable name)")
        merged[key] = value
    return merged


def parse_amount(text: str, total: int, what: str) -> int:
    """A count or a percentage of `total`, as --batch and --max-fail take them."""
    match = _AMOUNT.match(text.strip())
    if not match:
        raise BadInput(f"{what} {text!r}: expected a count such as 5 or a percentage such as 20%")
    number = int(match.group(1))
    if match.group(2):
        if not 0 <= number <= 100:
            raise BadInput(f"{what} {text!r}: a percentage must be 0-100%")
        return math.floor(total * number / 100)
    return number


def _role_names(plays: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for play in plays:
        for entry in play.get("roles") or []:
            name = (
                entry
                if isinstance(entry, str)
                else (entry or {}).get("role") or (entry or {}).get("name")
            )
            if isinstance(name, str) and name not in names:
                names.append(name)
    return names


def role_paths(playbook: Path) -> list[Path]:
    paths = [playbook.parent / "roles", playbook.parent]
    configured = os.environ.get("ANSIBLE_ROLES_PATH", "")
    paths += [Path(p) for p in configured.split(os.pathsep) if p]
    paths += [Path.home() / ".ansible" / "roles", Path("/usr/share/ansible/roles")]
    paths.append(Path("/etc/ansible/roles"))
    return paths


def validate_playbook(path: Path, run_syntax_check: bool = True) -> list[str]:
    """Refuse a playbook that is missing, unparsable, or names a missing role; return roles."""
    if not path.exists():
        raise BadInput(f"playbook {path} does not exist; give a path to a playbook file")
    if not path.is_file():
        raise BadInput(f"playbook {path} is not a file")
    plays = load_playbook(path)
    roles = _role_names(plays)
    for role in roles:
        if "{{" in role or role.count(".") >= 2:  # templated, or a collection role
            continue
        if not any((base / role).is_dir() for base in role_paths(path)):
            raise BadInput(
                f"{path}: role {role!r} was not found under {path.parent / 'roles'}; "
                "add the role or fix its name"
            )
    if run_syntax_check:
        syntax_check(path)
    return roles


def plan(request: PlaybookRequest, hosts: Sequence[InventoryHost]) -> PlaybookPlan:
    """Everything the run will do, decided before anything is touched."""
    if request.via not in VIAS:
        raise BadInput(f"--via {request.via!r}: expected one of {', '.join(VIAS)}")
    if request.forks < 1:
        raise BadInput("--forks must be at least 1")
    playbook = request.playbook.resolve()
    roles = validate_playbook(request.playbook)
    if not hosts:
        raise BadInput("no hosts matched the targeting; `ops inventory list` shows the fleet")
    total = len(hosts)
    size = total
    if request.batch is not None:
        size = parse_amount(request.batch, total, "--batch")
        if _AMOUNT.match(request.batch.strip()) and int(request.batch.strip().rstrip("%")) == 0:
            raise BadInput(f"--batch {request.batch}: a wave needs at least 1 host (or 1%)")
        size = max(size, 1)  # a small percentage of a small fleet is still one host a wave
    max_failures = parse_amount(request.max_fail, total, "--max-fail") if request.max_fail else None
    ordered = list(hosts)
    waves = [ordered[i : i + size] for i in range(0, total, size)]
    return PlaybookPlan(request, playbook, roles, waves, max_failures)


def check_pull_settings(settings: Settings) -> None:
    """Pull stages its bundle in S3: refuse before anything if no bucket is set."""
    if not settings.output_bucket:
        raise BadInput(
            f"--via ssm needs an S3 bucket for the playbook bundle: set output_bucket in "
            f"inventories/{settings.env}/ops.yml or OPS_OUTPUT_BUCKET"
        )


def run(
    plan_: PlaybookPlan,
    settings: Settings,
    journal: Journal,
    on_event: Callable[[TaskEvent], None] | None = None,
    cancel: threading.Event | None = None,
    static_inventory: Path | None = None,
    resumed: Run | None = None,
) -> PlaybookReport:
    """Push or pull wave by wave; the journal has the run and each host before anything is sent.

    `resumed` is a run an earlier process left (claimed by this one): its
    hosts' rows are reused, and hosts it finished are not in `plan_`.
    """
    request = plan_.request
    pull_state: _PullState | None = None
    if request.via == "ssm":
        check_pull_settings(settings)
        pull_state = _prepare_pull(plan_, settings, static_inventory)
    if resumed is None:
        arguments = plan_.as_dict()
        if pull_state is not None:  # so the resume of a killed run can remove the bundle
            arguments["bundle"] = {"bucket": pull_state.bucket, "key": pull_state.key}
        run_rec = journal.begin_run("playbook", arguments, settings.env)
        rows = intend_hosts(journal, run_rec.id, plan_)
    else:
        run_rec = resumed
        rows = open_rows(journal, run_rec.id)
    work_root = state_dir() / "ansible" / run_rec.id
    with RunRecorder(journal, run_rec.id):  # the heartbeat that tells live from abandoned
        return _waves(plan_, settings, journal, run_rec.id, rows, pull_state, work_root,
                      on_event, cancel, static_inventory)  # fmt: skip


def intend_hosts(journal: Journal, run_id: str, plan_: PlaybookPlan) -> dict[str, int]:
    """Every host of every wave as intended, before the first wave is sent."""
    rows: dict[str, int] = {}
    for index, wave in enumerate(plan_.waves):
        ids = journal.intend(
            run_id, "playbook", [(h.instance_id, {"wave": index}) for h in wave], index
        )
        rows.update(zip((h.instance_id for h in wave), ids, strict=True))
    return rows


def open_rows(journal: Journal, run_id: str) -> dict[str, int]:
    """Hosts whose playbook step an earlier process never finished, and their row ids."""
    return {
        s.host: s.id
        for s in journal.steps(run_id)
        if s.phase == "playbook" and s.status in (INTENDED, STARTED)
    }


def _waves(
    plan_: PlaybookPlan,
    settings: Settings,
    journal: Journal,
    run_id: str,
    rows: dict[str, int],
    pull_state: _PullState | None,
    work_root: Path,
    on_event: Callable[[TaskEvent], None] | None,
    cancel: threading.Event | None,
    static_inventory: Path | None,
) -> PlaybookReport:
    request = plan_.request
    started = time.monotonic()
    results: dict[str, HostRecap] = {}
    failures = 0
    status = "succeeded"
    tasks = 0

    redactor = Redactor(request.extravars)

    def record(event: TaskEvent) -> None:
        event = dataclasses.replace(event, message=redactor.scrub(event.message))
        journal.record_steps(
            run_id,
            "task",
            [(event.host, event.status, {"task": event.task, "changed": event.changed})],
        )
        if on_event is not None:
            on_event(event)

    try:
        for index, wave in enumerate(plan_.waves):
            if cancel is not None and cancel.is_set():
                status = "cancelled"
                break
            if plan_.max_failures is not None and failures > plan_.max_failures:
                status = "stopped"
                break
            steps = {h.instance_id: rows[h.instance_id] for h in wave}
            journal.started(list(steps.values()))
            if pull_state is not None:
                outcome = pull_state.run(wave, request, settings, record, cancel)
            else:
                options = PushOptions(
                    check=request.check,
                    diff=request.diff,
                    forks=request.forks,
                    extravars=request.extravars,
                    ssh_key=settings.ssh_key,
                    jump_host=settings.ssh_jump_host,
                    host_key_policy=request.host_key_policy,
                    known_hosts=known_hosts_path(),
                    static_inventory=static_inventory,
                )
                outcome = push(
                    plan_.playbook, wave, work_root / f"wave-{index}", options, record, cancel
                )
            tasks = max(tasks, outcome.tasks)
            for item in outcome.hosts:
                item.message = redactor.scrub(item.message)
                results[item.instance_id] = item
                journal.step_finished(steps[item.instance_id], item.status, item.as_dict())
                if item.status != OK:
                    failures += 1
            if outcome.cancelled:
                status = "cancelled"
                break
    except KeyboardInterrupt:
        journal.end_run(run_id, "interrupted")
        raise
    except BaseException:
        journal.end_run(run_id, "error")
        raise
    finally:
        if pull_state is not None:
            pull_state.clean_up()
    hosts = [
        results.get(h.instance_id) or HostRecap(h.instance_id, h.name, NOT_RUN) for h in plan_.hosts
    ]
    if status == "succeeded" and any(h.status != OK for h in hosts):
        status = "failed"
    journal.end_run(run_id, status)
    return PlaybookReport(run_id, status, hosts, time.monotonic() - started, tasks)


@dataclass
class _PullState:
    """The bundle staged in S3 once for the run, and the transport every wave shares."""

    transport: SsmTransport
    bucket: str
    key: str
    bundle: Bundle
    static_inventory: Path | None

    def run(
        self,
        wave: Sequence[InventoryHost],
        request: PlaybookRequest,
        settings: Settings,
        record: Callable[[TaskEvent], None],
        cancel: threading.Event | None,
    ) -> PlaybookResult:
        options = PullOptions(
            check=request.check,
            diff=request.diff,
            concurrency=request.forks,
            extravars=request.extravars,
            comment=f"ops playbook {request.playbook.name} ({settings.env})",
        )
        assert self.transport.s3 is not None  # staged through it
        # signed per wave: a URL only lives minutes, a run of many waves lives longer
        url = presign(self.transport.s3, self.bucket, self.key)
        return pull(
            self.transport,
            url,
            self.bundle,
            wave,
            options,
            settings.output_bucket,
            settings.output_prefix,
            record,
            cancel,
        )

    def clean_up(self) -> None:
        """The bundle may hold secret extra vars: it does not outlive the run."""
        if self.transport.s3 is not None:
            delete_bundle(self.transport.s3, self.bucket, self.key)


def _prepare_pull(
    plan_: PlaybookPlan, settings: Settings, static_inventory: Path | None
) -> _PullState:
    """Pack once (every host in every wave gets the same bundle and digest) and stage it."""
    roles = collect_roles(plan_.roles, role_paths(plan_.playbook))
    bundle = build_bundle(
        plan_.playbook, roles, plan_.hosts, plan_.request.extravars, static_inventory
    )
    transport = open_transport(settings)
    assert transport.s3 is not None and settings.output_bucket  # check_pull_settings
    key, _url = stage(transport.s3, settings.output_bucket, settings.output_prefix, bundle)
    return _PullState(transport, settings.output_bucket, key, bundle, static_inventory)


def remove_stale_bundle(settings: Settings, arguments: dict[str, Any]) -> bool:
    """The bundle a killed run staged may hold secret extra vars: its resume removes it
    (the resume stages a bundle of its own). True when there was one and it is gone."""
    location = bundle_location(arguments)
    if location is None:
        return False
    transport = open_transport(settings)
    return transport.s3 is not None and delete_bundle(transport.s3, *location)
