"""`ops patch run` and `ops patch report`, and the resumer `ops runs resume` calls for them."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ops.cli.context import OpsContext, pass_ops
from ops.cli.options import TargetArgs, output_option, targeting_options, yes_option
from ops.cli.patch_reads import say_reads
from ops.engine.budget import parse_max_errors
from ops.engine.resume import ResumeRequest, register_resumer
from ops.engine.runtime import RunReport
from ops.errors import ExitCode
from ops.fleet.discovery import Host
from ops.journal import Run
from ops.journal.store import open_journal
from ops.render.output import print_json
from ops.transports.ssm import SUCCESS, HostResult

# The line the SSM agent adds to a failed script's stderr: it says nothing the status does not.
_AGENT_NOTE = re.compile(r"^failed to run commands: exit status \d+$")


class Lines:
    """One line per host step on stderr as it ends; a failure carries what the host said."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def step(self, step: str, result: HostResult) -> None:
        if self.quiet and result.status == SUCCESS:
            return
        line = f"{result.name or result.instance_id}: {step} {result.status}"
        said = [
            text
            for text in (raw.strip() for raw in result.stderr.splitlines())
            if text and not _AGENT_NOTE.match(text)
        ]
        if result.status != SUCCESS and said:
            line += f": {'; '.join(said)[:300]}"
        click.echo(line, err=True)

    def note(self, text: str) -> None:
        click.echo(f"ops: {text}", err=True)


@click.command("run")
@targeting_options
@click.option("--security-only", is_flag=True, help="Approve security updates only.")
@click.option("--canary", type=int, default=1, show_default=True, help="Hosts patched first.")
@click.option("--wave", metavar="N|P%", help="Most hosts in one wave after the canary.")
@click.option(
    "--max-unavailable",
    metavar="N|P%",
    help="Most hosts of one Role or one AZ out at once (default: patch.max_unavailable).",
)
@click.option(
    "--max-errors",
    metavar="N|P%",
    help="Failed hosts tolerated across the whole run before it halts (default: settings).",
)
@click.option(
    "--poll",
    type=click.FloatRange(1, 60),
    default=5.0,
    show_default=True,
    help="Seconds between polls of SSM and the load balancer.",
)
@click.option("--dry-run", is_flag=True, help="Show the plan and its waves; change nothing.")
@output_option("table", "json")
@yes_option
@pass_ops
def run_command(
    ctx: OpsContext,
    target: TargetArgs,
    security_only: bool,
    canary: int,
    wave: str | None,
    max_unavailable: str | None,
    max_errors: str | None,
    poll: float,
    dry_run: bool,
) -> None:
    """Patch the targeted hosts wave by wave: drain, update, reboot when needed,
    check, register back. Alarms in settings must be OK before every wave.

    Exit 0 when every host was patched, 1 when some failed within the budget,
    2 for bad input, 3 when the failure budget or an alarm halted the run
    (`ops runs resume RUN_ID` goes on), 130 when interrupted.
    """
    from ops.workflows import patch as plan_wf
    from ops.workflows import patch_run as wf

    settings = ctx.settings
    options = plan_wf.parse_options(
        security_only=security_only,
        canary=canary,
        wave=wave,
        max_unavailable=max_unavailable,
        settings=settings.patch,
    )
    budget = parse_max_errors(max_errors if max_errors is not None else settings.max_errors)
    spec = target.spec(settings, whole_env_by_default=True)
    seen: dict[str, Host] = {}

    def announce(reachable: list[Host], unreachable: list[Host]) -> None:
        seen.update({h.instance_id: h for h in reachable})
        say_reads(reachable, unreachable)

    planned = plan_wf.plan(
        settings, spec, options, include_offline=target.include_offline, on_hosts=announce
    )
    names = {h.instance_id: h.name or h.instance_id for h in planned.hosts}
    for number, ids in enumerate(planned.waves):
        label = "canary" if number == 0 and options.canary else f"wave {number}"
        click.echo(f"{label}: {', '.join(names[i] for i in ids)}", err=True)
    for host in planned.hosts:
        if host.error:
            click.echo(f"ops: {host.name or host.instance_id} not planned: {host.error}", err=True)
    if dry_run:
        if ctx.output == "json":
            print_json(planned.as_dict())
        return
    if not planned.waves:
        click.echo("nothing to patch", err=True)
        return
    patched = sum(len(w) for w in planned.waves)
    ctx.confirm_change(f"patch {patched} hosts in {len(planned.waves)} waves")
    clients = wf.Clients.open(settings)
    ids = [i for w in planned.waves for i in w]
    arguments = wf.arguments_for(
        planned,
        seen,
        wf.memberships(clients, settings, ids),
        target={"targets": spec.describe()},
        options={
            "security_only": security_only,
            "canary": canary,
            "wave": wave,
            "max_unavailable": str(options.max_unavailable),
        },
        max_errors=str(budget),
        alarm_names=settings.alarm_names,
        timing=wf.Timing(poll=poll),
    )
    lines = Lines()
    plan, _run = wf.build(arguments, settings, lines.step, clients)
    report = wf.execute(plan, settings, lines.note)
    _finish(ctx, report, str(budget))


def _finish(ctx: OpsContext, report: RunReport, max_errors: str) -> int:
    """The closing lines and the exit code (raised as click's Exit unless 0)."""
    from ops.workflows.patch_report import build_report

    with open_journal() as journal:
        summary = build_report(journal, report.run_id)
    if ctx.output == "json":
        print_json({**summary, "exit_code": int(report.exit_code)})
    else:
        from ops.workflows.patch_report import _summary_line

        click.echo(f"run {report.run_id}: {_summary_line(summary)}")
    if report.stopped_by_budget:
        click.echo(f"ops: halted: more than {max_errors} hosts failed", err=True)
    if report.gate:
        click.echo(f"ops: held before the next wave: {report.gate}", err=True)
    if report.stopped_by_budget or report.gate:
        click.echo(
            f"ops: once the cause is fixed, `ops runs resume {report.run_id}` goes on "
            "(alarms checked again, failed hosts re-examined)",
            err=True,
        )
    if report.interrupted:
        click.echo(f"ops: interrupted; `ops runs resume {report.run_id}` finishes it", err=True)
    click.echo(f"ops: `ops patch report {report.run_id}` shows every host", err=True)
    code = int(report.exit_code)
    if code == ExitCode.OK and summary["not_planned"]:
        click.echo(f"ops: {len(summary['not_planned'])} hosts could not be read", err=True)
        code = int(ExitCode.HOSTS_FAILED)  # nothing failed, but not every host was patched
    if code != ExitCode.OK:
        raise click.exceptions.Exit(code)
    return code


@click.command("report")
@click.argument("run_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "json", "html"]),
    default="markdown",
    show_default=True,
)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write to this file.")
def report_command(run_id: str, fmt: str, out: Path | None) -> None:
    """Per host: packages changed (old -> new), kernel before and after, rebooted
    or not, drain and health timings, failures with their output; a fleet
    summary; hosts past end of support. Reads the journal only."""
    import json

    from ops.workflows.patch_report import build_report, render_html, render_markdown

    with open_journal() as journal:
        data = build_report(journal, run_id)
    if fmt == "json":
        text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    elif fmt == "html":
        text = render_html(data)
    else:
        text = render_markdown(data)
    if out is not None:
        out.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def _resume(request: ResumeRequest) -> int:
    """`ops runs resume` for a patch run: its own arguments, its own environment."""
    from ops.workflows import patch_run as wf

    ctx: OpsContext = request.context
    run = request.run
    settings = ctx.settings_for(run.environment)
    lines = Lines()
    lines.note(f"resuming patch run {run.id}")
    report = wf.resume(run, settings, request.journal, lines.step, lines.note)
    try:
        return _finish(ctx, report, str(run.arguments.get("max_errors", "")))
    except click.exceptions.Exit as done:
        return int(done.exit_code)


def _check(run: Run) -> None:
    from ops.workflows import patch_run as wf

    wf.check_resumable(run)


register_resumer("patch", _resume, _check, halted=True)
