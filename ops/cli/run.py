"""`ops run`: one shell command on many hosts over SSM Run Command.

This module parses, asks for confirmation, calls the workflow
(ops.workflows.run) and renders what comes back; the runtime in ops.engine
paces, records and resumes the run.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ops.cli.context import OpsContext, pass_ops
from ops.cli.options import TargetArgs, output_option, targeting_options, yes_option
from ops.engine.budget import parse_concurrency, parse_max_errors
from ops.engine.fanout import ALL_STATUSES, UNKNOWN, FanOutReport
from ops.engine.resume import ResumeRequest, register_resumer
from ops.engine.runtime import RunReport
from ops.errors import ExitCode
from ops.fleet.discovery import Host, Resolution
from ops.journal import Run
from ops.render.output import console, plain, print_json, print_table
from ops.transports.ssh import HOST_KEY_POLICIES, SshTransport
from ops.transports.ssm import NOT_STARTED, SUCCESS, HostResult
from ops.workflows import run as wf

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


@click.command("run", context_settings={"ignore_unknown_options": False})
@targeting_options
@click.option("--concurrency", metavar="N|P%", help="Hosts at once (default: from settings).")
@click.option(
    "--max-errors", metavar="N|P%", help="Errors tolerated before dispatch stops (settings)."
)
@click.option(
    "--timeout",
    type=click.IntRange(30, 2_592_000),
    help="Seconds a host may take to pick the command up (SSM's TimeoutSeconds, 30 or more).",
)
@click.option(
    "--execution-timeout",
    type=click.IntRange(1, 172_800),
    default=3600,
    show_default=True,
    help="Seconds the command may run on a host before it is stopped.",
)
@click.option("--server-side", is_flag=True, help="Let SSM pace the fan-out (very large fleets).")
@click.option(
    "--via",
    type=click.Choice(wf.VIAS),
    default="ssm",
    show_default=True,
    help="SSM Run Command, SSH, or auto: SSM where the agent is Online, SSH for the rest.",
)
@click.option(
    "--host-key-policy",
    type=click.Choice(HOST_KEY_POLICIES),
    default="strict",
    show_default=True,
    help="Over SSH: strict, or accept-new to record a host's key on first contact.",
)
@click.option(
    "--script",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Run this local shell script instead of COMMAND.",
)
@click.option("--show-output", is_flag=True, help="Print each host's output, prefixed by host.")
@click.option(
    "--record-output", is_flag=True, help="Keep full output in the journal, not just its digest."
)
@click.option("--dry-run", is_flag=True, help="Show the hosts and stop; nothing is sent.")
@output_option("table", "json", "jsonl")
@yes_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_ops
def run(
    ctx: OpsContext,
    target: TargetArgs,
    concurrency: str | None,
    max_errors: str | None,
    timeout: int | None,
    execution_timeout: int,
    server_side: bool,
    via: str,
    host_key_policy: str,
    script: Path | None,
    show_output: bool,
    record_output: bool,
    dry_run: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND (after --) on every matching host and report each host's result.

    --via ssm (default) sends it with SSM Run Command; --via ssh runs it over
    SSH (the ops:ssh tag or the private IP, inside ssh_networks, the jump
    host from settings); --via auto uses SSM where the agent is Online and
    SSH for the rest.

    One COMMAND argument is a shell command line as written ('uptime; df -h');
    several are an argument list, quoted before they reach the shell.

    Exit 0 when every host succeeded, 1 when some failed or were unreachable,
    2 for bad input or no match, 3 when --max-errors stopped dispatch, 130
    when interrupted (in-flight commands are cancelled first).
    """
    settings = ctx.settings
    request = wf.RunRequest(
        commands=wf.commands_from(command, script),
        target=target.spec(settings),
        concurrency=parse_concurrency(
            concurrency if concurrency is not None else settings.concurrency
        ),
        max_errors=parse_max_errors(max_errors if max_errors is not None else settings.max_errors),
        execution_timeout=execution_timeout,
        delivery_timeout=timeout,
        server_side=server_side,
        record_output=record_output,
        include_offline=target.include_offline,
        via=via,
        host_key_policy=host_key_policy,
    )
    # Over SSH with nothing to confirm, the connections of the hosts the target
    # reached last time open while EC2 lists; nothing runs before the listing.
    warm = wf.warm_up(request, settings) if ctx.yes and not dry_run else None
    try:
        _run(ctx, request, warm, dry_run=dry_run, show_output=show_output)
    finally:
        if warm is not None:
            warm.close()


def _run(
    ctx: OpsContext,
    request: wf.RunRequest,
    warm: SshTransport | None,
    *,
    dry_run: bool,
    show_output: bool,
) -> None:
    settings = ctx.settings
    via = request.via
    # The prompt and the dry run show the whole count, and --server-side builds
    # its Targets from it; only a confirmed client-side run starts sending while
    # the fleet is still being listed.
    whole = not ctx.yes or dry_run or request.server_side
    listing = wf.list_hosts(request, settings, whole=whole)
    resolution = listing.known
    routing = (
        wf.Routing(list(resolution.reachable), list(resolution.unreachable))
        if via == "ssm"
        else wf.route(request, settings, resolution.all)
    )
    renderer = RunRenderer(
        output=ctx.output,
        show_output=show_output,
        no_color=ctx.no_color,
        total=len(resolution.all),
        via=via,
    )
    renderer.unreachable(routing.unreachable)
    if dry_run:
        renderer.plan(
            resolution,
            routing,
            limit=str(request.concurrency),
            max_errors=str(request.max_errors),
        )
        return
    if routing.reachable:
        ctx.confirm_change(
            f"run {wf.preview(request.commands)!r} on {len(routing.reachable)} hosts"
        )
    plan = wf.plan(request, settings, listing, routing, warm)
    with renderer.live():
        report = wf.execute(plan, settings, renderer)
    renderer.finish(report, run_id=report.run_id)
    _explain(report, renderer, str(request.max_errors))


def _explain(report: RunReport, renderer: RunRenderer, max_errors: str) -> None:
    """The lines on stderr that say why a run ended as it did, and its exit code."""
    if report.listing_error:
        click.echo(
            f"ops: {report.listing_error}; {renderer.total} hosts were listed, "
            "the rest were not sent to",
            err=True,
        )
    elif not report.listing_complete:
        click.echo("ops: interrupted while hosts were still being listed", err=True)
    if report.denied:
        click.echo(
            f"ops: access denied: {report.denied}; stopped sending, "
            f"{report.counts.get(NOT_STARTED, 0)} hosts were not started; "
            "`ops iam policy run` prints what `ops run` needs",
            err=True,
        )
    if report.stopped_by_budget:
        click.echo(
            f"ops: stopped: more than {max_errors} errors; {report.counts.get(NOT_STARTED, 0)} "
            "hosts were not started",
            err=True,
        )
    if report.gate:
        click.echo(f"ops: stopped by a gate: {report.gate}", err=True)
    if report.poll_error:
        click.echo(
            f"ops: {report.poll_error}; stopped and cancelled what was sent; "
            f"`ops runs resume {report.run_id}` settles the hosts not collected",
            err=True,
        )
    if report.counts.get(UNKNOWN):
        click.echo(
            f"ops: {report.counts[UNKNOWN]} hosts Unknown: a SendCommand answer was lost and "
            f"the command could not be found; `ops runs resume {report.run_id}` settles them "
            "from SSM by the send's marker",
            err=True,
        )
    if report.interrupted:
        click.echo(f"ops: interrupted; `ops runs resume {report.run_id}` finishes it", err=True)
    if report.exit_code != ExitCode.OK:
        raise click.exceptions.Exit(int(report.exit_code))


def _resume(request: ResumeRequest) -> int:
    """`ops runs resume` for `ops run`: the same renderer, the run's own settings."""
    ctx: OpsContext = request.context
    run = request.run
    settings = ctx.settings_for(run.environment)
    renderer = RunRenderer(
        output=ctx.output,
        show_output=False,
        no_color=ctx.no_color,
        total=0,
        via=str(run.arguments.get("via") or "ssm"),
    )

    def on_plan(plan: Any, state: Any) -> None:
        todo = sum(1 for h in plan.hosts if state.finished(wf.STEP, h.instance_id) is None)
        renderer.total = todo
        renderer.note(
            f"resuming run {run.id}: {len(plan.hosts) - todo} hosts already finished, "
            f"{todo} to settle or send"
        )

    with renderer.live():
        report = wf.resume(run, settings, request.journal, renderer, on_plan=on_plan)
    renderer.finish(report, run_id=run.id)
    try:
        _explain(report, renderer, str(run.arguments.get("max_errors", "")))
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    return int(ExitCode.OK)


def _check(run: Run) -> None:
    wf.RunRequest.from_arguments(run.arguments)  # BadInput when it cannot be rebuilt


register_resumer(wf.KIND, _resume, _check)


class RunRenderer:
    """Results as they arrive: a progress bar on a terminal, plain lines elsewhere,
    JSON documents or lines for machines. Keeps counts and a short list of
    failures, never every host's output."""

    FAILURE_ROWS = 50

    def __init__(
        self, *, output: str, show_output: bool, no_color: bool, total: int, via: str = "ssm"
    ) -> None:
        self.output = output
        self.via = via
        self.show_output = show_output
        self.no_color = no_color
        self.total = total
        self.counts: dict[str, int] = {}
        self.failures: list[HostResult] = []
        self.results: list[dict[str, Any]] = []  # only for --output json
        stream = sys.stderr if output != "table" else sys.stdout
        self._stderr = stream is sys.stderr
        self._console: Console | None = None
        self.interactive = stream.isatty() and not os.environ.get("CI")
        self._progress: Progress | None = None
        self._task: Any = None

    @property
    def console(self) -> Console:
        """Made on first use: a run printed as JSON with nothing to note never needs it."""
        if self._console is None:
            self._console = console(self.no_color, stderr=self._stderr)
        return self._console

    @console.setter
    def console(self, value: Console) -> None:
        self._console = value

    @contextmanager
    def live(self) -> Iterator[None]:
        if not self.interactive:
            yield
            return
        # only a terminal draws the bar: output for a pipe or a machine skips the import
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]ops run"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task(self._describe(), total=self.total)
        self._progress.update(self._task, completed=sum(self.counts.values()))
        with self._progress:
            yield
        self._progress = None

    def _describe(self) -> str:
        return "  ".join(
            f"{status} {self.counts[status]}" for status in ALL_STATUSES if self.counts.get(status)
        )

    def listed(self, hosts: list[Host]) -> None:
        """More hosts joined a run that started before the listing ended."""
        self.total += len(hosts)
        if self._progress is not None:
            self._progress.update(self._task, total=self.total)

    def note(self, text: str) -> None:
        self.console.print(f"ops: {text}", markup=False)

    def unreachable(self, hosts: list[Host]) -> None:
        if not hosts:
            return
        why = "SSM agent not Online" if self.via == "ssm" else f"--via {self.via}"
        self.note(f"{len(hosts)} hosts unreachable ({why}), not sent to:")
        for host in hosts[:100]:
            self.console.print(
                plain(f"  {host.instance_id}  {host.name}  {host.ping_status}"), markup=False
            )
        if len(hosts) > 100:
            self.console.print(f"  ... and {len(hosts) - 100} more", markup=False)

    def plan(
        self, resolution: Resolution, routing: wf.Routing, *, limit: str, max_errors: str
    ) -> None:
        print_table(
            ["instance", "name", "agent", "platform", "via"],
            [
                (h.instance_id, h.name, h.ping_status, h.platform, routing.via(h))
                for h in routing.reachable
            ],
            title=f"{len(routing.reachable)} hosts match {resolution.expression} "
            f"(concurrency {limit}, max errors {max_errors}); dry run, nothing sent",
            no_color=self.no_color,
        )

    def result(self, result: HostResult) -> None:
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if result.status != SUCCESS and len(self.failures) < self.FAILURE_ROWS:
            self.failures.append(
                HostResult(
                    result.instance_id,
                    result.name,
                    result.status,
                    result.exit_code,
                    stderr=_first_line(result.stderr) or _first_line(result.stdout),
                )
            )
        if self.output == "jsonl":
            sys.stdout.write(json.dumps(result.as_dict()) + "\n")
            sys.stdout.flush()
        elif self.output == "json":
            self.results.append(result.as_dict())
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=self._describe())
        elif self.output == "table":
            self.console.print(plain(_line(result)), markup=False)
        if self.show_output:
            self._print_output(result)

    def _print_output(self, result: HostResult) -> None:
        prefix = plain(result.name or result.instance_id)
        for stream, text in (("", result.stdout), ("!", result.stderr)):
            for line in text.splitlines():
                # host output is untrusted: no escape sequence reaches the terminal
                self.console.print(
                    f"{prefix}{stream}: {plain(line)}", markup=False, highlight=False
                )
        if result.output_truncated:
            self.console.print(
                f"{prefix}: [output cut; set output_bucket for full output]", markup=False
            )

    def finish(self, report: FanOutReport, run_id: str = "") -> None:
        summary = {status: count for status, count in self.counts.items() if count}
        if self.output == "json":
            print_json(
                {"command_ids": report.command_ids, "results": self.results, "summary": summary}
            )
            return
        if self.output == "jsonl":
            return
        print_table(
            ["status", "hosts"],
            [(status, summary[status]) for status in ALL_STATUSES if status in summary],
            title=f"ops run {run_id}".strip(),
            no_color=self.no_color,
        )
        if self.failures:
            shown = len(self.failures)
            failed = sum(c for s, c in summary.items() if s != SUCCESS)
            print_table(
                ["instance", "name", "status", "exit", "detail"],
                [
                    (r.instance_id, r.name, r.status, r.exit_code, r.stderr[:100])
                    for r in self.failures
                ],
                title=f"hosts not succeeded ({shown} of {failed} shown)",
                no_color=self.no_color,
            )


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _line(result: HostResult) -> str:
    code = "-" if result.exit_code is None else result.exit_code
    took = "" if result.duration_s is None else f" {result.duration_s:.1f}s"
    name = f" ({result.name})" if result.name else ""
    return f"{result.instance_id}{name}: {result.status} exit={code}{took}"
