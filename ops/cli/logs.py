"""`ops logs`: collect logs from many hosts at once, and search what was collected."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ops.cli.context import OpsContext, pass_ops
from ops.cli.inventory import resolve_hosts
from ops.cli.options import TargetArgs, output_option, targeting_options
from ops.errors import BadInput, OpsError
from ops.fleet import inventory as inv
from ops.journal import open_journal
from ops.render.output import console, print_json, print_table
from ops.transports.ssh import HOST_KEY_POLICIES
from ops.workflows import logs as wf
from ops.workflows.logs_input import DEFAULT_MAX_SIZE, VIAS, build_request, check_dest
from ops.workflows.logs_store import search as search_logs


@click.group()
def logs() -> None:
    """Collect logs from many hosts at once, and search them."""


def _hosts(ctx: OpsContext, target: TargetArgs, via: str) -> list[inv.InventoryHost]:
    """Hosts with their agent status as of now; SSH work stays inside ssh_networks."""
    if via == "ssh":
        return resolve_hosts(ctx, target.spec(ctx.settings, whole_env_by_default=True), True)
    from ops import aws

    settings = ctx.settings
    ec2, ssm = (
        aws.client(
            name,
            profile=settings.profile,
            region=settings.region,
            max_attempts=settings.max_attempts,
        )
        for name in ("ec2", "ssm")
    )
    spec = target.spec(settings, whole_env_by_default=True)
    return inv.gather(ec2, ssm, spec, region=settings.region, default_user=settings.ssh_user)


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover - the loop returns


class _Bars:
    """Two progress bars on stderr: hosts built, then bytes fetched."""

    def __init__(self, ctx: OpsContext) -> None:
        self.lock = threading.Lock()
        self.progress = Progress(
            TextColumn("{task.description:<6}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            console=console(ctx.no_color, stderr=True),
        )
        self.build: TaskID = self.progress.add_task("build", total=None, count="")
        self.fetch: TaskID | None = None
        self.done = {"build": 0, "fetch": 0}
        self.totals = {"build": 0, "fetch": 0}

    def _show(self, task: TaskID, kind: str) -> None:
        done, total = self.done[kind], self.totals[kind]
        count = f"{done}/{total} hosts" if kind == "build" else f"{_human(done)}/{_human(total)}"
        self.progress.update(task, completed=done, total=total, count=count)

    def listener(self) -> wf.Listener:
        def build_total(n: int) -> None:
            self.totals["build"] = n
            self._show(self.build, "build")

        def built(_iid: str, _status: str) -> None:
            with self.lock:
                self.done["build"] += 1
                self._show(self.build, "build")

        def fetch_total(n: int) -> None:
            self.totals["fetch"] = n
            self.fetch = self.progress.add_task("fetch", total=n, count="")
            self._show(self.fetch, "fetch")

        def advance(n: int) -> None:
            with self.lock:
                self.done["fetch"] += n
                if self.fetch is not None:
                    self._show(self.fetch, "fetch")

        return wf.Listener(build_total, built, fetch_total, advance)

    def __enter__(self) -> _Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


@logs.command("collect")
@targeting_options
@click.option(
    "--since", metavar="WHEN", help="Start of the window: 2h, 30m, 1d, an ISO time, @EPOCH."
)
@click.option("--until", metavar="WHEN", help="End of the window (default: now).")
@click.option(
    "--path", "paths", multiple=True, metavar="GLOB", help="Absolute path or glob; repeatable."
)
@click.option("--unit", "units", multiple=True, metavar="NAME", help="systemd unit; repeatable.")
@click.option(
    "--container",
    "containers",
    multiple=True,
    metavar="NAME|all",
    help="Docker container; repeatable.",
)
@click.option(
    "--max-size", default=DEFAULT_MAX_SIZE, show_default=True, help="Cap per host bundle."
)
@click.option(
    "--dest", type=click.Path(path_type=Path), default=Path("ops-logs"), show_default=True
)
@click.option("--via", type=click.Choice(VIAS), help="s3 (default with a bucket) or ssh (SFTP).")
@click.option("--redact", is_flag=True, help="Mask AWS keys, secret assignments, bearer tokens.")
@click.option("--resume", "resume_id", metavar="RUN_ID", help="Finish an interrupted collection.")
@click.option(
    "--host-key-policy", type=click.Choice(HOST_KEY_POLICIES), default="strict", show_default=True
)
@click.option("--workers", type=click.IntRange(1, 64), default=8, show_default=True)
@output_option()
@pass_ops
def collect(
    ctx: OpsContext,
    target: TargetArgs,
    since: str | None,
    until: str | None,
    paths: tuple[str, ...],
    units: tuple[str, ...],
    containers: tuple[str, ...],
    max_size: str,
    dest: Path,
    via: str | None,
    redact: bool,
    resume_id: str | None,
    host_key_policy: str,
    workers: int,
) -> None:
    """Bundle the logs of the targeted hosts and unpack them under DEST/<run-id>/<instance-id>/.

    Every input is checked before any host is touched (exit 2 otherwise).
    """
    settings = ctx.settings
    with open_journal() as journal:
        if resume_id:
            given = [
                flag
                for flag, value in (
                    ("--since", since),
                    ("--until", until),
                    ("--path", paths),
                    ("--unit", units),
                    ("--container", containers),
                    ("--via", via),
                    ("--redact", redact),
                    ("targeting", target.given()),
                )
                if value
            ]
            if given:
                raise BadInput(
                    f"--resume continues the run as it was asked; drop {', '.join(given)}"
                )
            run, request, ids = wf.prior_state(journal, resume_id)
            check_dest(request.dest)
            hosts = _hosts(ctx, TargetArgs(instances=tuple(ids), all_envs=True), request.via)
        else:
            if not since:
                raise BadInput("--since is required (e.g. --since 2h), or --resume RUN_ID")
            request = build_request(
                since=since,
                until=until,
                paths=paths,
                units=units,
                containers=containers,
                max_size=max_size,
                dest=dest,
                via=via,
                redact=redact,
                bucket=settings.output_bucket,
            )
            hosts = _hosts(ctx, target, request.via)
            if not hosts:
                raise BadInput(
                    "no hosts matched the targeting; `ops inventory list` shows the fleet"
                )
            run = wf.begin(journal, request, hosts, settings.env)
        cancel = threading.Event()

        def on_sigint(_signum: int, _frame: FrameType | None) -> None:
            cancel.set()

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            with _Bars(ctx) as bars:
                report = wf.collect(
                    run,
                    request,
                    hosts,
                    settings,
                    journal,
                    listener=bars.listener(),
                    cancel=cancel,
                    host_key_policy=host_key_policy,
                    workers=workers,
                )
        finally:
            signal.signal(signal.SIGINT, previous)
    if ctx.output == "json":
        print_json(report.as_dict())
    else:
        print_table(
            ["instance", "name", "files", "bytes", "time", "status", "message"],
            [
                (
                    h.instance_id,
                    h.name,
                    h.files,
                    _human(h.bytes),
                    f"{h.seconds:.1f} s",
                    h.status,
                    h.message[:120],
                )
                for h in report.hosts
            ],
            title=f"run {report.run_id}: {report.status} in {report.elapsed:.1f} s",
            no_color=ctx.no_color,
        )
        click.echo(f"logs in {report.folder}")
    if int(report.exit_code):
        raise _Exit(report)


class _Exit(OpsError):
    def __init__(self, report: wf.LogReport) -> None:
        bad = sum(1 for h in report.hosts if h.status != wf.OK)
        super().__init__(f"run {report.run_id} {report.status}: {bad} host(s) not collected")
        self.exit_code = report.exit_code


def _run_folder(run_id: str | None) -> Path:
    with open_journal() as journal:
        if run_id is None:
            runs = journal.list_runs(limit=1, kind=wf.KIND)
            if not runs:
                raise BadInput("no `ops logs collect` run in the journal yet")
            run = runs[0]
        else:
            found = journal.get_run(run_id)
            if found is None or found.kind != wf.KIND:
                raise BadInput(f"no `ops logs collect` run {run_id!r} in the journal")
            run = found
    request: dict[str, Any] = run.arguments.get("request") or {}
    return Path(str(request.get("dest", "ops-logs"))) / run.id


@logs.command("search")
@click.argument("pattern")
@click.option("--run", "run_id", metavar="RUN_ID", help="Which collection (default: the latest).")
@click.option("--regex", "-E", is_flag=True, help="PATTERN is a regular expression.")
@click.option("--ignore-case", "-i", is_flag=True)
@pass_ops
def search(
    ctx: OpsContext, pattern: str, run_id: str | None, regex: bool, ignore_case: bool
) -> None:
    """Print host:file:line:text for every line of the collected logs that matches PATTERN
    (a fixed string unless --regex)."""
    found = 0
    for match in search_logs(_run_folder(run_id), pattern, regex=regex, ignore_case=ignore_case):
        click.echo(match.render())
        found += 1
    if not found:
        click.echo("no match", err=True)
