"""`ops run`: one shell command on many hosts over SSM Run Command.

This module parses, asks for confirmation, wires the journal and the
renderer to the fan-out engine, and maps the outcome to an exit code. The
engine (ops.transports.ssm) and the budget (ops.engine.budget) do the work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ops.cli.context import OpsContext, pass_ops
from ops.cli.options import TargetArgs, output_option, targeting_options, yes_option
from ops.engine.budget import Amount, FailureBudget, parse_concurrency, parse_max_errors
from ops.errors import BadInput, ExitCode
from ops.fleet.discovery import Host, Listing, Resolution, discover_hosts
from ops.fleet.targets import TargetSpec
from ops.journal import Journal, open_journal
from ops.render.output import console, plain, print_json, print_table
from ops.transports.ssm import (
    NOT_STARTED,
    STATUSES,
    SUCCESS,
    UNREACHABLE,
    CommandSpec,
    FanOut,
    FanOutReport,
    HostResult,
    open_transport,
)

_JOURNAL_FLUSH = 200
_COMMAND_LIMIT = 16 * 1024


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
    script: Path | None,
    show_output: bool,
    record_output: bool,
    dry_run: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND (after --) on every matching host and report each host's result.

    One COMMAND argument is a shell command line as written ('uptime; df -h');
    several are an argument list, quoted before they reach the shell.

    Exit 0 when every host succeeded, 1 when some failed or were unreachable,
    2 for bad input or no match, 3 when --max-errors stopped dispatch, 130
    when interrupted (in-flight commands are cancelled first).
    """
    settings = ctx.settings
    limit = parse_concurrency(concurrency if concurrency is not None else settings.concurrency)
    errors = parse_max_errors(max_errors if max_errors is not None else settings.max_errors)
    commands = _commands(command, script)
    spec = target.spec(settings)
    command_spec = CommandSpec(
        commands=commands,
        execution_timeout=execution_timeout,
        delivery_timeout=timeout,
        comment=f"ops run ({settings.env})",
        output_bucket=settings.output_bucket,
        output_prefix=settings.output_prefix,
    )

    listing = discover_hosts(settings, spec, include_offline=target.include_offline)
    if not ctx.yes or dry_run or server_side:
        # The prompt and the dry run show the whole count, and --server-side
        # builds its Targets from it; only a confirmed client-side run starts
        # sending while the fleet is still being listed.
        listing.drain()
    resolution = listing.known
    renderer = RunRenderer(
        output=ctx.output,
        show_output=show_output,
        no_color=ctx.no_color,
        total=len(resolution.all),
    )
    renderer.unreachable(resolution.unreachable)
    if dry_run:
        renderer.plan(resolution, limit=str(limit), max_errors=str(errors))
        return
    if resolution.reachable:
        ctx.confirm_change(f"run {_preview(commands)!r} on {len(resolution.reachable)} hosts")

    transport = open_transport(settings)
    fanout = FanOut(transport, command_spec)
    arguments = {
        "command": _preview(commands, _COMMAND_LIMIT),
        "targets": spec.describe(),
        "concurrency": str(limit),
        "max_errors": str(errors),
        "server_side": server_side,
        "hosts": len(resolution.all),  # hosts known at the start; the final count at the end
    }
    with (
        open_journal() as journal,
        _Recorder(journal, arguments, settings.env, record_output) as rec,
    ):
        for host in resolution.unreachable:
            result = HostResult(host.instance_id, host.name, UNREACHABLE, stderr=host.ping_status)
            rec.result(result)
            renderer.result(result)

        def on_result(result: HostResult) -> None:
            rec.result(result)
            renderer.result(result)

        with renderer.live(), _sigint_cancels(fanout, renderer):
            report = _fan_out(
                fanout, listing, spec, limit, errors, server_side, on_result, rec.dispatched,
                renderer.listed,
            )  # fmt: skip
        arguments["hosts"] = renderer.total
        report.counts[UNREACHABLE] = len(resolution.unreachable)
        code = _exit_code(report)
        rec.status = {
            ExitCode.OK: "succeeded",
            ExitCode.HOSTS_FAILED: "failed",
            ExitCode.STOPPED: "stopped",
            ExitCode.INTERRUPTED: "interrupted",
        }.get(code, "failed")
        renderer.finish(report, run_id=rec.run_id)
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
            f"ops: stopped: more than {errors} errors; {report.counts.get(NOT_STARTED, 0)} "
            "hosts were not started",
            err=True,
        )
    if code != ExitCode.OK:
        raise click.exceptions.Exit(int(code))


def _fan_out(
    fanout: FanOut,
    listing: Listing,
    spec: TargetSpec,
    limit: Amount,
    errors: Amount,
    server_side: bool,
    on_result: Callable[[HostResult], None],
    on_dispatch: Callable[[list[Host]], None],
    on_listed: Callable[[list[Host]], None],
) -> FanOutReport:
    resolution = listing.known
    hosts = resolution.reachable
    if server_side:
        return fanout.run_server_side(
            hosts,
            on_result,
            max_concurrency=str(limit),
            max_errors=str(errors),
            # instance ids, never tag Targets: SSM would resolve tags when it runs,
            # reaching instances launched after the operator confirmed this list
            on_dispatch=on_dispatch,
        )
    budget = FailureBudget(len(hosts), limit, errors)
    more = None if listing.complete else listing.more
    return fanout.run_client_side(
        hosts, budget, on_result, on_dispatch, more=more, on_listed=on_listed
    )


def _commands(command: tuple[str, ...], script: Path | None) -> list[str]:
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


def _preview(commands: list[str], limit: int = 60) -> str:
    text = " ".join(commands).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _exit_code(report: FanOutReport) -> ExitCode:
    if report.interrupted:
        return ExitCode.INTERRUPTED
    if report.stopped_by_budget:
        return ExitCode.STOPPED
    if any(count for status, count in report.counts.items() if status != SUCCESS):
        return ExitCode.HOSTS_FAILED
    return ExitCode.OK


@contextmanager
def _sigint_cancels(fanout: FanOut, renderer: RunRenderer) -> Iterator[None]:
    """First Ctrl-C cancels what is in flight and lets the run finish its report;
    the second exits at once."""
    presses = 0

    def handler(_signum: int, _frame: object) -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            renderer.note("interrupted: cancelling in-flight commands (Ctrl-C again to quit now)")
            fanout.cancel()
            return
        sys.stderr.write("ops: interrupted twice, exiting now\n")
        sys.stderr.flush()
        os._exit(int(ExitCode.INTERRUPTED))

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no handler, the run just goes on
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Recorder:
    """Journal writes for a run: intent per batch before it is sent, results in groups."""

    def __init__(
        self, journal: Journal, arguments: dict[str, Any], env: str, record_output: bool
    ) -> None:
        self.journal = journal
        self.arguments = arguments
        self.env = env
        self.record_output = record_output
        self.run_id = ""
        self.status = "failed"
        self._buffer: list[tuple[str, str, dict[str, Any]]] = []
        self._flushed = time.monotonic()

    def __enter__(self) -> _Recorder:
        self.run_id = self.journal.begin_run("run", self.arguments, self.env).id
        return self

    def __exit__(self, exc_type: object, *_exc: object) -> None:
        self.flush()
        if exc_type is not None:
            self.status = "interrupted" if exc_type is KeyboardInterrupt else "error"
        self.journal.end_run(self.run_id, self.status, arguments=self.arguments)

    def dispatched(self, hosts: list[Host]) -> None:
        self.flush()
        self.journal.record_steps(
            self.run_id,
            "run",
            [(host.instance_id, "started", {"name": host.name}) for host in hosts],
        )

    def result(self, result: HostResult) -> None:
        digest = hashlib.sha256()
        digest.update(result.stdout.encode("utf-8", "replace"))
        digest.update(b"\0")
        digest.update(result.stderr.encode("utf-8", "replace"))
        detail: dict[str, Any] = {
            "name": result.name,
            "command_id": result.command_id,
            "exit_code": result.exit_code,
            "output_sha256": digest.hexdigest(),
            "output_truncated": result.output_truncated,
            "duration_s": result.duration_s,
        }
        if self.record_output:
            detail["stdout"] = result.stdout
            detail["stderr"] = result.stderr
        self._buffer.append((result.instance_id, result.status, detail))
        if len(self._buffer) >= _JOURNAL_FLUSH or time.monotonic() - self._flushed > 2.0:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self.journal.record_steps(self.run_id, "run", self._buffer)
            self._buffer = []
        self._flushed = time.monotonic()


class RunRenderer:
    """Results as they arrive: a progress bar on a terminal, plain lines elsewhere,
    JSON documents or lines for machines. Keeps counts and a short list of
    failures, never every host's output."""

    FAILURE_ROWS = 50

    def __init__(self, *, output: str, show_output: bool, no_color: bool, total: int) -> None:
        self.output = output
        self.show_output = show_output
        self.no_color = no_color
        self.total = total
        self.counts: dict[str, int] = {}
        self.failures: list[HostResult] = []
        self.results: list[dict[str, Any]] = []  # only for --output json
        stream = sys.stderr if output != "table" else sys.stdout
        self.console = console(no_color, stderr=stream is sys.stderr)
        self.interactive = stream.isatty() and not os.environ.get("CI")
        self._progress: Progress | None = None
        self._task: Any = None

    @contextmanager
    def live(self) -> Iterator[None]:
        if not self.interactive:
            yield
            return
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
            f"{status} {self.counts[status]}" for status in STATUSES if self.counts.get(status)
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
        self.note(f"{len(hosts)} hosts unreachable (SSM agent not Online), not sent to:")
        for host in hosts[:100]:
            self.console.print(
                plain(f"  {host.instance_id}  {host.name}  {host.ping_status}"), markup=False
            )
        if len(hosts) > 100:
            self.console.print(f"  ... and {len(hosts) - 100} more", markup=False)

    def plan(self, resolution: Resolution, *, limit: str, max_errors: str) -> None:
        print_table(
            ["instance", "name", "agent", "platform"],
            [(h.instance_id, h.name, h.ping_status, h.platform) for h in resolution.reachable],
            title=f"{len(resolution.reachable)} hosts match {resolution.expression} "
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
        prefix = result.name or result.instance_id
        for stream, text in (("", result.stdout), ("!", result.stderr)):
            for line in text.splitlines():
                self.console.print(f"{prefix}{stream}: {line}", markup=False, highlight=False)
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
            [(status, summary[status]) for status in STATUSES if status in summary],
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
