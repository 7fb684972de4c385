"""`ops run` as a workflow: one step, `run`, a shell command on every targeted host.

The plan is one wave of every reachable host (hosts still being listed join
it as their pages arrive) and one step: SsmCommandStep (`--via ssm`),
SshCommandStep (`--via ssh`) or AutoStep (`--via auto`: SSM where the agent
is Online, SSH for the rest); the runtime (ops.engine) paces, records and
resumes it. What the journal keeps is enough to rebuild the plan on resume:
the command, the targeting, the limits, the transport.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ops.config import Settings, known_hosts_path, state_dir
from ops.engine.budget import Amount, parse_concurrency, parse_max_errors
from ops.engine.plan import Plan, ServerSide, SsmCommandStep, Step
from ops.engine.runtime import JournalState, RunReport, Runtime
from ops.engine.ssh_step import MAX_WORKERS, AutoStep, SshCommandStep, SshRoute
from ops.errors import BadInput
from ops.fleet import route_memory
from ops.fleet.discovery import Host, Listing, discover_hosts
from ops.fleet.ssh_reach import agent_status, list_for_ssh, reach_hosts
from ops.fleet.targets import TargetSpec
from ops.journal.store import Journal, Run, open_journal
from ops.transports.ssh import HOST_KEY_POLICIES, SshTarget, SshTransport, options_from_settings
from ops.transports.ssm import CommandSpec, HostResult, open_transport

KIND = "run"
STEP = "run"
VIAS = ("ssm", "ssh", "auto")
_COMMAND_PREVIEW = 16 * 1024


class Listener(Protocol):
    """How the run talks back: each result as it arrives, hosts as they are listed, notes."""

    def result(self, result: HostResult) -> None: ...

    def listed(self, hosts: list[Host]) -> None: ...

    def note(self, text: str) -> None: ...


@dataclass(frozen=True)
class RunRequest:
    commands: list[str]
    target: TargetSpec
    concurrency: Amount
    max_errors: Amount
    execution_timeout: int = 3600
    delivery_timeout: int | None = None
    server_side: bool = False
    record_output: bool = False
    include_offline: bool = False
    via: str = "ssm"
    host_key_policy: str = "strict"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.via not in VIAS:
            raise BadInput(f"--via {self.via!r} is not one of {', '.join(VIAS)}")
        if self.host_key_policy not in HOST_KEY_POLICIES:
            raise BadInput(
                f"--host-key-policy {self.host_key_policy!r} is not one of "
                f"{', '.join(HOST_KEY_POLICIES)}"
            )
        if self.via != "ssm" and self.server_side:
            raise BadInput("--server-side lets SSM pace the run; it goes only with --via ssm")
        if self.via != "ssm" and any("\0" in c for c in self.commands):
            raise BadInput("the command holds a NUL byte, which no shell takes over SSH")

    def arguments(self) -> dict[str, Any]:
        """The journal's copy: enough to rebuild the run, and nothing secret beyond
        the command itself (which SSM keeps in its own history too)."""
        return {
            "command": preview(self.commands, _COMMAND_PREVIEW),
            "commands": self.commands,
            "targets": self.target.describe(),
            "target": {
                "tags": self.target.tags,
                "instance_ids": list(self.target.instance_ids),
                "name_globs": list(self.target.name_globs),
            },
            "concurrency": str(self.concurrency),
            "max_errors": str(self.max_errors),
            "execution_timeout": self.execution_timeout,
            "delivery_timeout": self.delivery_timeout,
            "server_side": self.server_side,
            "record_output": self.record_output,
            "include_offline": self.include_offline,
            "via": self.via,
            "host_key_policy": self.host_key_policy,
            **self.extra,
        }

    @classmethod
    def from_arguments(cls, arguments: dict[str, Any]) -> RunRequest:
        """The request a journalled run was started with; BadInput for a run recorded
        before resume existed (it lacks the full command)."""
        if "commands" not in arguments or "target" not in arguments:
            raise BadInput("this run was recorded without its full command; it cannot be resumed")
        target = arguments["target"]
        return cls(
            commands=list(arguments["commands"]),
            target=TargetSpec(
                dict(target.get("tags") or {}),
                tuple(target.get("instance_ids") or ()),
                tuple(target.get("name_globs") or ()),
            ),
            concurrency=parse_concurrency(arguments["concurrency"]),
            max_errors=parse_max_errors(arguments["max_errors"]),
            execution_timeout=int(arguments.get("execution_timeout") or 3600),
            delivery_timeout=arguments.get("delivery_timeout"),
            server_side=bool(arguments.get("server_side")),
            record_output=bool(arguments.get("record_output")),
            include_offline=bool(arguments.get("include_offline")),
            via=str(arguments.get("via") or "ssm"),
            host_key_policy=str(arguments.get("host_key_policy") or "strict"),
        )


def commands_from(command: tuple[str, ...], script: Path | None) -> list[str]:
    """COMMAND as typed (one shell line) or quoted (an argument list), or a script's text."""
    if script is not None and command:
        raise BadInput("give either COMMAND or --script, not both")
    if script is not None:
        try:
            text = script.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"--script {script}: cannot read it ({exc})") from None
        if not text.strip():
            raise BadInput(f"--script {script}: the file is empty")
        return [text]
    if not command:
        raise BadInput("no command: give one after --, e.g. ops run --target role=web -- uptime")
    if len(command) == 1:
        if not command[0].strip():
            raise BadInput("the command is empty")
        return [command[0]]
    return [shlex.join(command)]


def preview(commands: list[str], limit: int = 60) -> str:
    text = " ".join(commands).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def list_hosts(request: RunRequest, settings: Settings, *, whole: bool) -> Listing:
    """The targeted hosts; `whole` lists every page first (prompt, dry run, --server-side).

    Over SSH (and `auto`) the agent's status does not bar a host, so every
    host is listed, whole, before the SSH routes are looked up."""
    if request.via == "ssh":
        return list_for_ssh(settings, request.target)
    offline = request.include_offline or request.via != "ssm"
    listing = discover_hosts(settings, request.target, include_offline=offline)
    if whole or request.via != "ssm":
        listing.drain()
    return listing


def command_spec(request: RunRequest, settings: Settings) -> CommandSpec:
    return CommandSpec(
        commands=request.commands,
        execution_timeout=request.execution_timeout,
        delivery_timeout=request.delivery_timeout,
        comment=f"ops run ({settings.env})",
        output_bucket=settings.output_bucket,
        output_prefix=settings.output_prefix,
    )


@dataclass
class Routing:
    """Which transport takes each host; `unreachable` carries each host's reason as
    its ping_status, the field the runtime reports an unreachable host by."""

    reachable: list[Host]
    unreachable: list[Host]
    via_ssh: set[str] = field(default_factory=set)
    ssh: SshRoute = field(default_factory=lambda: SshRoute({}, {}))

    def via(self, host: Host) -> str:
        return "ssh" if host.instance_id in self.via_ssh else "ssm"


def route(request: RunRequest, settings: Settings, hosts: list[Host]) -> Routing:
    """SSM, SSH or neither, per host. `ssh`: every host over SSH where the `ops:ssh` tag or
    its private IP (inside ssh_networks) says; `auto`: SSM where the agent is Online, SSH
    for the rest where it can, the others unreachable with the reason."""
    if request.via == "ssm":
        sent = [h for h in hosts if h.reachable or request.include_offline]
        return Routing(sent, [h for h in hosts if h not in sent])
    candidates = hosts if request.via == "ssh" else [h for h in hosts if not h.reachable]
    reach = reach_hosts(settings, candidates) if candidates else None
    targets = {
        iid: SshTarget.from_host(found, settings.ssh_user)
        for iid, found in (reach.hosts.items() if reach else ())
    }
    why_not = dict(reach.why_not) if reach else {}
    routing = Routing([], [], set(targets), SshRoute(targets, why_not))
    for host in hosts:
        if host.instance_id in targets or (request.via == "auto" and host.reachable):
            routing.reachable.append(host)
            continue
        reason = why_not.get(host.instance_id, "no SSH route")
        if request.via == "auto":
            reason = f"SSM agent {host.ping_status}; over SSH: {reason}"
        routing.unreachable.append(replace(host, ping_status=reason))
    return routing


def route_key(request: RunRequest, settings: Settings) -> str:
    """The route memory's entry for this request: its environment, profile, region and
    target, and the SSH user and jump host the settings reach hosts with."""
    return route_memory.memory_key(
        settings.env,
        settings.profile,
        settings.region,
        request.target.describe(),
        settings.ssh_user,
        settings.ssh_jump_host,
    )


def _ssh_transport(request: RunRequest, settings: Settings) -> SshTransport:
    return SshTransport(
        options_from_settings(
            settings, known_hosts=known_hosts_path(), host_key_policy=request.host_key_policy
        )
    )


def warm_up(request: RunRequest, settings: Settings) -> SshTransport | None:
    """Over SSH, the run's transport, already connecting to the first hosts (as many as
    the concurrency sends at once) that the target reached on its last run, so the
    handshakes overlap the EC2 listing. None for SSM and `auto`, or with no memory.

    Only for a run that goes without a prompt: an operator who is asked first
    has not yet said yes to logging in anywhere."""
    if request.via != "ssh":
        return None
    remembered = route_memory.recall(
        state_dir(), route_key(request, settings), settings.ssh_networks
    )
    if not remembered:
        return None
    transport = _ssh_transport(request, settings)
    count = min(request.concurrency.resolve(len(remembered), at_least_one=True), MAX_WORKERS)
    transport.warm(SshTarget.from_host(h, settings.ssh_user) for h in remembered[:count])
    return transport


def _step(
    request: RunRequest,
    settings: Settings,
    routing: Routing,
    server_side: ServerSide | None,
    transport: SshTransport | None = None,
) -> Step:
    ssm = SsmCommandStep(STEP, command_spec(request, settings), server_side)
    if request.via == "ssm":
        return ssm
    if transport is None:
        transport = _ssh_transport(request, settings)
    ssh = SshCommandStep(STEP, "\n".join(request.commands), routing.ssh, transport,
                         execution_timeout=request.execution_timeout)  # fmt: skip
    if request.via == "ssh":
        return ssh
    return AutoStep(STEP, ssm, ssh, routing.via_ssh)


def plan(
    request: RunRequest,
    settings: Settings,
    listing: Listing,
    routing: Routing | None = None,
    warm: SshTransport | None = None,
) -> Plan:
    """The run's plan; `warm` (from warm_up) becomes its SSH transport, and keeps
    only the connections of hosts this routing confirms."""
    resolution = listing.known
    server_side = None
    if request.server_side:
        # instance ids, 50 a command: tag Targets would also reach instances that
        # match the tags after the listing, which the operator never confirmed
        server_side = ServerSide(str(request.concurrency), str(request.max_errors))
    if routing is None:
        if request.via == "ssm":
            routing = Routing(list(resolution.reachable), list(resolution.unreachable))
        else:
            routing = route(request, settings, resolution.all)
    if request.via == "ssh":
        targets = [routing.ssh.targets[h.instance_id] for h in routing.reachable]
        if warm is not None:
            warm.keep(targets)
        route_memory.remember(
            state_dir(),
            route_key(request, settings),
            [(t.instance_id, t.host, t.port, t.user) for t in targets],
        )
    arguments = request.arguments()
    arguments["hosts"] = len(resolution.all)  # known at the start; the final count at the end
    # A resume after a crash lists the target again only if this listing was cut short.
    arguments["listing_complete"] = listing.complete
    return Plan(
        kind=KIND,
        arguments=arguments,
        waves=[list(routing.reachable)],
        steps=[_step(request, settings, routing, server_side, warm)],
        concurrency=request.concurrency,
        max_errors=request.max_errors,
        unreachable=list(routing.unreachable),
        more=None if listing.complete else listing.more,
        record_output=request.record_output,
    )


def _runtime(settings: Settings, journal: Journal, listener: Listener, via: str) -> Runtime:
    # Over SSH alone no SSM client is made: the SSH step never asks for one, and
    # making them (models read, endpoints resolved) costs more than a small run.
    transport = open_transport(settings) if via != "ssh" else None
    return Runtime(
        transport,
        journal,
        on_result=listener.result,
        on_listed=listener.listed,
        note=listener.note,
    )


def execute(plan_: Plan, settings: Settings, listener: Listener) -> RunReport:
    """Record the run in the journal and drive it to its end (or an interrupt)."""
    try:
        with open_journal() as journal:
            via = str(plan_.arguments.get("via") or "ssm")
            return _runtime(settings, journal, listener, via).execute(plan_, settings.env)
    finally:
        _close(plan_)


def _close(plan_: Plan) -> None:
    """The SSH connections a run opened end with it."""
    for step in plan_.steps:
        close = getattr(step, "close", None)
        if close is not None:
            close()


def resume(
    run: Run,
    settings: Settings,
    journal: Journal,
    listener: Listener,
    on_plan: Callable[[Plan, JournalState], None] | None = None,
) -> RunReport:
    """Finish a run an earlier process left: the same command on the hosts it had not finished.

    If that process died while hosts were still being listed, the target is
    listed again and the hosts the journal never heard of join the run.
    """
    request = RunRequest.from_arguments(run.arguments)
    state = JournalState.load(journal, run.id)
    hosts = list(state.hosts.values())
    if not run.arguments.get("listing_complete", False):
        seen = set(state.hosts) | {host for _step, host in state.done}
        found = list_hosts(request, settings, whole=True).known
        hosts += [h for h in found.reachable if h.instance_id not in seen]
    server_side = None
    if request.server_side:
        server_side = ServerSide(str(request.concurrency), str(request.max_errors))
    routing = Routing(hosts, [])
    if request.via != "ssm":
        # routed as things stand now: a host whose agent came back goes over SSM
        # (`auto`); one in flight is settled by the transport its marker names
        now = hosts
        if request.via == "auto":
            status = agent_status(settings, [h.instance_id for h in hosts])
            now = [
                replace(h, ping_status=status.get(h.instance_id, "NotRegistered")) for h in hosts
            ]
        routing = route(request, settings, now)
        # a host no transport reaches now is reported by the SSH step, with its reason
        routing.via_ssh |= {h.instance_id for h in routing.unreachable}
        hosts = routing.reachable + [h for h in now if h.instance_id not in
                                     {r.instance_id for r in routing.reachable}]  # fmt: skip
    plan_ = Plan(
        kind=KIND,
        arguments=dict(run.arguments),
        waves=[hosts],
        steps=[_step(request, settings, routing, server_side)],
        concurrency=request.concurrency,
        max_errors=request.max_errors,
        record_output=request.record_output,
    )
    if on_plan is not None:
        on_plan(plan_, state)
    try:
        return _runtime(settings, journal, listener, request.via).resume(plan_, run, state)
    finally:
        _close(plan_)
