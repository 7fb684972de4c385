"""`ops playbook`: validate, plan waves, then push over SSH or pull over SSM through the runtime.

Validation happens in full before the journal or any host sees the run: the
file exists, parses, names only roles that exist, and passes Ansible's own
syntax check. The run itself is a workflow of kind `playbook` on the
runtime (ops.engine.runtime): waves (`--batch`), one failure budget
(`--max-fail`: past it no new host is started, the work in flight
finishes), every host's step journalled as intended before anything is
sent, and `ops runs resume` for a run whose process died. The steps
(playbook_steps) give push and pull the same per-host recap (HostRecap),
so nothing after the transport needs to know which ran.
"""

from __future__ import annotations

import math
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ops.config import Settings, known_hosts_path, state_dir
from ops.engine.budget import Amount
from ops.engine.plan import Plan, SsmCommandStep, Step
from ops.engine.runtime import RUN_STATUS, JournalState, RunReport, Runtime
from ops.errors import BadInput, ExitCode
from ops.fleet.discovery import Host
from ops.fleet.inventory import InventoryHost
from ops.journal.store import Journal, Run
from ops.redact import Redactor, masked
from ops.transports.ansible import (
    NOT_RUN,
    OK,
    HostRecap,
    PushOptions,
    TaskEvent,
    load_playbook,
    syntax_check,
)
from ops.transports.ansible_pull import (
    build_bundle,
    bundle_groups,
    bundle_locations,
    collect_roles,
    delete_bundle,
)
from ops.transports.ssm import CommandSpec, SsmTransport, open_transport
from ops.workflows.playbook_steps import Collector, PullSpec, PullStep, PushStep, Staging

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
        if self.status in ("interrupted", "cancelled"):
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


KIND = "playbook"
STEP = "playbook"  # the journal phase of each host's run of the playbook


@dataclass
class Wiring:
    """How a run talks back and where its files are: task events, notes, the static inventory."""

    on_event: Callable[[TaskEvent], None] | None = None
    note: Callable[[str], None] = lambda _text: None
    static_inventory: Path | None = None


def run(
    plan_: PlaybookPlan,
    settings: Settings,
    journal: Journal,
    wiring: Wiring | None = None,
) -> PlaybookReport:
    """Push or pull wave by wave through the runtime; the journal has the run and every
    host's step as intended before anything is sent (and the bundles' keys before they exist)."""
    wiring = wiring or Wiring()
    started = time.monotonic()
    if plan_.request.via == "ssm":
        check_pull_settings(settings)
    transport = open_transport(settings)
    collector = _collector(plan_, plan_.hosts, wiring)
    arguments = plan_.as_dict()
    step, staging = _step(plan_, settings, transport, collector, wiring, arguments, None)
    runtime_plan = Plan(
        kind=KIND,
        arguments=arguments,
        waves=[[_as_host(h) for h in wave] for wave in plan_.waves],
        steps=[step],
        concurrency=Amount(plan_.request.forks, False),
        max_errors=_max_errors(plan_),
    )
    try:
        runtime = _runtime(transport, journal, collector, wiring)
        outcome = runtime.execute(runtime_plan, settings.env)
    finally:
        if staging is not None:
            staging.remove()
    return _report(plan_.hosts, collector, outcome, started)


def request_from(arguments: Mapping[str, Any]) -> PlaybookRequest:
    """The request a journalled playbook run was started with (extra vars are not kept)."""
    if "playbook" not in arguments or "via" not in arguments:
        raise BadInput("this playbook run was recorded without its plan; it cannot be resumed")
    return PlaybookRequest(
        playbook=Path(arguments["playbook"]),
        via=str(arguments["via"]),
        check=bool(arguments.get("check")),
        diff=bool(arguments.get("diff")),
        forks=int(arguments.get("forks") or 10),
        batch=arguments.get("batch"),
        max_fail=arguments.get("max_fail"),
        host_key_policy=str(arguments.get("host_key_policy") or "strict"),
    )


def open_hosts(journal: Journal, run: Run) -> tuple[JournalState, list[str]]:
    """What the journal says of the run, and the hosts it has not finished, in order."""
    state = JournalState.load(journal, run.id)
    return state, [i for i in state.hosts if state.finished(STEP, i) is None]


def resume(
    run: Run,
    settings: Settings,
    journal: Journal,
    found: Mapping[str, InventoryHost],
    wiring: Wiring | None = None,
) -> PlaybookReport:
    """Finish a playbook run an earlier process left (claimed by this one).

    Hosts the journal shows finished are skipped. Pulled over SSM, a host in
    flight is settled from SSM by its command id or marker and never sent the
    playbook again; one never sent is sent, its bundle staged again under the
    keys the run recorded. Pushed over SSH, the hosts left started run the
    playbook again. `found` is the fleet's current record of the hosts not
    finished; one that is gone is reported unreachable.
    """
    wiring = wiring or Wiring()
    started = time.monotonic()
    request = request_from(run.arguments)
    roles = validate_playbook(request.playbook)
    if request.via == "ssm":
        check_pull_settings(settings)
    state, left = open_hosts(journal, run)
    runnable = [found[i] for i in left if i in found]
    by_wave: dict[int, list[InventoryHost]] = {}
    for found_host in runnable:
        by_wave.setdefault(state.waves.get(found_host.instance_id, 0), []).append(found_host)
    plan_ = PlaybookPlan(request, request.playbook.resolve(), roles,
                         [by_wave[i] for i in sorted(by_wave)],
                         run.arguments.get("max_failures"))  # fmt: skip
    gone = [InventoryHost(i, state.hosts[i].name) for i in left if i not in found]
    transport = open_transport(settings)
    collector = _collector(plan_, [*plan_.hosts, *gone], wiring)
    arguments = {**run.arguments}
    token = _bundle_token(run.arguments)
    step, staging = _step(plan_, settings, transport, collector, wiring, arguments, token)
    ids = {h.instance_id for h in runnable}
    waves: dict[int, list[Host]] = {}
    for instance_id, host in state.hosts.items():
        if instance_id in ids or state.finished(STEP, instance_id) is not None:
            waves.setdefault(state.waves.get(instance_id, 0), []).append(host)
    runtime_plan = Plan(
        kind=KIND,
        arguments=arguments,
        waves=[waves[i] for i in sorted(waves)] or [[]],
        steps=[step],
        concurrency=Amount(request.forks, False),
        max_errors=_max_errors(plan_),
        unreachable=[state.hosts[i] for i in left if i not in found],
    )
    try:
        outcome = _runtime(transport, journal, collector, wiring).resume(runtime_plan, run, state)
    finally:
        if staging is not None:
            staging.remove()
    return _report([*plan_.hosts, *gone], collector, outcome, started)


def _collector(plan_: PlaybookPlan, hosts: Sequence[InventoryHost], wiring: Wiring) -> Collector:
    return Collector({h.instance_id: h for h in hosts}, Redactor(plan_.request.extravars),
                     wiring.on_event)  # fmt: skip


def _runtime(
    transport: SsmTransport, journal: Journal, collector: Collector, wiring: Wiring
) -> Runtime:
    return Runtime(transport, journal, on_result=collector.pulled, note=wiring.note)


def _as_host(host: InventoryHost) -> Host:
    return Host(host.instance_id, host.name, ping_status="Online")


def _max_errors(plan_: PlaybookPlan) -> Amount:
    """--max-fail N: the (N+1)th failed host starts no new host; unset: every host is tried."""
    if plan_.max_failures is None:
        return Amount(100, True)
    return Amount(plan_.max_failures, False)


def _bundle_token(arguments: Mapping[str, Any]) -> str | None:
    """The part of the bundles' keys a run chose, so its resume stages under the same keys."""
    staged = arguments.get("bundles")
    token = staged.get("token") if isinstance(staged, Mapping) else None
    return token if isinstance(token, str) and token else None


def _step(
    plan_: PlaybookPlan,
    settings: Settings,
    transport: SsmTransport,
    collector: Collector,
    wiring: Wiring,
    arguments: dict[str, Any],
    token: str | None,
) -> tuple[Step, Staging | None]:
    """The one step: the pull script over SSM (bundles planned, their keys in `arguments`),
    or the push over SSH."""
    request = plan_.request
    if not plan_.hosts:  # nothing left to send (a resume whose hosts all finished)
        return SsmCommandStep(STEP, CommandSpec(commands=[])), None
    if request.via == "ssh":
        options = PushOptions(
            check=request.check,
            diff=request.diff,
            forks=request.forks,
            extravars=request.extravars,
            ssh_key=settings.ssh_key,
            jump_host=settings.ssh_jump_host,
            host_key_policy=request.host_key_policy,
            known_hosts=known_hosts_path(),
            static_inventory=wiring.static_inventory,
        )
        hosts = {h.instance_id: h for h in plan_.hosts}
        work_root = state_dir() / "ansible"
        return PushStep(STEP, plan_.playbook, hosts, options, work_root, collector), None
    assert settings.output_bucket and transport.s3 is not None  # check_pull_settings
    roles = collect_roles(plan_.roles, role_paths(plan_.playbook))
    groups = [
        (name, build_bundle(plan_.playbook, roles, hosts, request.extravars,
                            wiring.static_inventory), [h.instance_id for h in hosts])
        for name, hosts in bundle_groups(plan_.hosts, wiring.static_inventory)
    ]  # fmt: skip
    token = token or uuid.uuid4().hex
    staging = Staging.plan(transport.s3, settings.output_bucket, settings.output_prefix,
                           token, groups)  # fmt: skip
    # journalled with the run, before the first bundle is put: a killed run's resume finds them
    recorded = bundle_locations(arguments)
    keys = sorted({*staging.keys, *(key for _bucket, key in recorded)})
    arguments["bundles"] = {"bucket": settings.output_bucket, "token": token, "keys": keys}
    spec = PullSpec(
        check=request.check,
        diff=request.diff,
        comment=f"ops playbook {request.playbook.name} ({settings.env})",
        output_bucket=settings.output_bucket,
        output_prefix=settings.output_prefix,
        concurrency=request.forks,
    )
    return PullStep(STEP, staging, spec, collector), staging


def _report(
    hosts: Sequence[InventoryHost], collector: Collector, outcome: RunReport, started: float
) -> PlaybookReport:
    recaps = [
        collector.found.get(h.instance_id) or HostRecap(h.instance_id, h.name, NOT_RUN)
        for h in hosts
    ]
    status = RUN_STATUS.get(outcome.exit_code, "failed")
    return PlaybookReport(outcome.run_id, status, recaps, time.monotonic() - started,
                          collector.tasks)  # fmt: skip


def remove_stale_bundles(settings: Settings, arguments: Mapping[str, Any]) -> int:
    """The bundles a killed run staged may hold secret vars: its resume removes them
    before staging its own. How many were recorded and are now gone."""
    locations = bundle_locations(arguments)
    if not locations:
        return 0
    transport = open_transport(settings)
    if transport.s3 is None:
        return 0
    return sum(1 for bucket, key in locations if delete_bundle(transport.s3, bucket, key))
