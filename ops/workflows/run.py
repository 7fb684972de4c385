"""`ops run` as a workflow: one step, `run`, a shell command over SSM on every targeted host.

The plan is one wave of every reachable host (hosts still being listed join
it as their pages arrive) and one SsmCommandStep; the runtime (ops.engine)
paces, records and resumes it. What the journal keeps is enough to rebuild
the plan on resume: the command, the targeting, the limits.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ops.config import Settings
from ops.engine.budget import Amount, parse_concurrency, parse_max_errors
from ops.engine.plan import Plan, ServerSide, SsmCommandStep
from ops.engine.runtime import JournalState, RunReport, Runtime
from ops.errors import BadInput
from ops.fleet.discovery import Host, Listing, discover_hosts
from ops.fleet.targets import TargetSpec
from ops.journal.store import Journal, Run, open_journal
from ops.transports.ssm import CommandSpec, HostResult, open_transport

KIND = "run"
STEP = "run"
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
    extra: dict[str, Any] = field(default_factory=dict)

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
    """The targeted hosts; `whole` lists every page first (prompt, dry run, --server-side)."""
    listing = discover_hosts(settings, request.target, include_offline=request.include_offline)
    if whole:
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


def plan(request: RunRequest, settings: Settings, listing: Listing) -> Plan:
    resolution = listing.known
    server_side = None
    if request.server_side:
        # instance ids, 50 a command: tag Targets would also reach instances that
        # match the tags after the listing, which the operator never confirmed
        server_side = ServerSide(str(request.concurrency), str(request.max_errors))
    arguments = request.arguments()
    arguments["hosts"] = len(resolution.all)  # known at the start; the final count at the end
    # A resume after a crash lists the target again only if this listing was cut short.
    arguments["listing_complete"] = listing.complete
    return Plan(
        kind=KIND,
        arguments=arguments,
        waves=[list(resolution.reachable)],
        steps=[SsmCommandStep(STEP, command_spec(request, settings), server_side)],
        concurrency=request.concurrency,
        max_errors=request.max_errors,
        unreachable=list(resolution.unreachable),
        more=None if listing.complete else listing.more,
        record_output=request.record_output,
    )


def _runtime(settings: Settings, journal: Journal, listener: Listener) -> Runtime:
    return Runtime(
        open_transport(settings),
        journal,
        on_result=listener.result,
        on_listed=listener.listed,
        note=listener.note,
    )


def execute(plan_: Plan, settings: Settings, listener: Listener) -> RunReport:
    """Record the run in the journal and drive it to its end (or an interrupt)."""
    with open_journal() as journal:
        return _runtime(settings, journal, listener).execute(plan_, settings.env)


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
    plan_ = Plan(
        kind=KIND,
        arguments=dict(run.arguments),
        waves=[hosts],
        steps=[SsmCommandStep(STEP, command_spec(request, settings), server_side)],
        concurrency=request.concurrency,
        max_errors=request.max_errors,
        record_output=request.record_output,
    )
    if on_plan is not None:
        on_plan(plan_, state)
    return _runtime(settings, journal, listener).resume(plan_, run, state)
