"""`ops playbook`: run a playbook on targeted hosts, push over SSH or pull over SSM."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ops.cli.context import OpsContext, pass_ops
from ops.cli.inventory import resolve_hosts, resolve_unfinished
from ops.cli.options import (
    TargetArgs,
    output_option,
    targeting_options,
    transport_options,
    yes_option,
)
from ops.config import inventories_dir
from ops.engine.resume import ResumeRequest, register_resumer
from ops.errors import BadInput, OpsError
from ops.fleet.inventory import static_dir, static_sources
from ops.journal import Run, open_journal
from ops.project import find_project, resolve_playbook
from ops.render.output import console, print_json, print_table
from ops.transports.ansible import TaskEvent
from ops.workflows import playbook as wf


@click.command("playbook")
@click.argument("playbook_path", metavar="PLAYBOOK", type=click.Path(path_type=Path))
@targeting_options
@click.option(
    "--all", "all_hosts", is_flag=True, help="Every host of the environment (no targeting given)."
)
@transport_options(
    wf.VIAS,
    default="ssh",
    via_help="ssh: pushed by ansible-runner; ssm: each host pulls the playbook over "
    "SSM Run Command.",
)
@click.option("--check", is_flag=True, help="Ansible check mode: report, change nothing.")
@click.option("--diff", is_flag=True, help="Show what files and templates would change.")
@click.option("--extra-vars", "-e", "extra", multiple=True, metavar="KEY=VALUE|@FILE")
@click.option("--forks", type=click.IntRange(1, 500), default=10, show_default=True)
@click.option("--batch", metavar="N|P%", help="Hosts per wave (default: all at once).")
@click.option("--max-fail", metavar="N|P%", help="Failed hosts allowed before no new wave.")
@click.option("--refresh", is_flag=True, help="Re-read the fleet instead of the cached inventory.")
@click.option("--dry-run", is_flag=True, help="Print the plan (hosts, waves) and stop.")
@output_option()
@yes_option
@pass_ops
def playbook(
    ctx: OpsContext,
    playbook_path: Path,
    target: TargetArgs,
    all_hosts: bool,
    via: str,
    check: bool,
    diff: bool,
    extra: tuple[str, ...],
    forks: int,
    batch: str | None,
    max_fail: str | None,
    host_key_policy: str,
    refresh: bool,
    dry_run: bool,
) -> None:
    """Run PLAYBOOK on the targeted hosts and print the recap per host.

    The playbook is validated (exists, parses, roles present, syntax check)
    before any host is contacted; a bad one exits 2. A relative PLAYBOOK that
    is not here is looked for in the project's playbooks/, then among the
    packaged ones (`ops playbook examples/small.yml`).
    """
    playbook_path = resolve_playbook(playbook_path, find_project())
    request = wf.PlaybookRequest(
        playbook=playbook_path,
        via=via,
        check=check,
        diff=diff,
        extravars=wf.parse_extravars(extra),
        forks=forks,
        batch=batch,
        max_fail=max_fail,
        host_key_policy=host_key_policy,
    )
    if not target.given() and not all_hosts:
        raise BadInput(
            "no target: give --target tag=value, --instance ID, --name GLOB or --from-file "
            f"PATH, or --all for every host in {ctx.settings.env}"
        )
    wf.validate_playbook(playbook_path)  # before any AWS call: bad input costs nothing
    spec = target.spec(ctx.settings, whole_env_by_default=True)
    hosts = resolve_hosts(ctx, spec, refresh)
    plan = wf.plan(request, hosts)
    if via == "ssm":
        wf.check_pull_settings(ctx.settings)
    if dry_run:
        if ctx.output == "json":
            print_json(plan.as_dict())
        else:
            for index, wave in enumerate(plan.waves, start=1):
                ids = ", ".join(h.instance_id for h in wave)
                click.echo(f"wave {index}: {len(wave)} host(s): {ids}")
        return
    mode = " in check mode" if check else ""
    ctx.confirm_change(f"playbook {playbook_path.name}{mode} on {len(plan.hosts)} host(s)")
    with open_journal() as journal:
        report = wf.run(plan, ctx.settings, journal, _wiring(ctx, _static(ctx)))
    _render(ctx, report)
    if int(report.exit_code):
        raise _Exit(report)


def _wiring(ctx: OpsContext, static_inventory: Path | None) -> wf.Wiring:
    """Task lines and the runtime's notes on stderr (not in JSON mode: stdout is the report)."""
    err = console(ctx.no_color, stderr=True)

    def on_event(event: TaskEvent) -> None:
        if ctx.output != "json":
            mark = "changed" if event.changed and event.status == "ok" else event.status
            extra_text = f": {event.message}" if event.message else ""
            err.print(f"{event.host} [{mark}] {event.task}{extra_text}", markup=False)

    def note(text: str) -> None:
        err.print(f"ops: {text}", markup=False)

    return wf.Wiring(on_event=on_event, note=note, static_inventory=static_inventory)


def _static(ctx: OpsContext) -> Path | None:
    static = static_dir(inventories_dir(), ctx.settings.env)
    return static if static_sources(static) else None


def _render(ctx: OpsContext, report: wf.PlaybookReport) -> None:
    if ctx.output == "json":
        print_json(report.as_dict())
    else:
        print_table(
            ["instance", "name", "status", "ok", "changed", "failed", "unreachable", "message"],
            [
                (
                    h.instance_id,
                    h.name,
                    h.status,
                    h.ok,
                    h.changed,
                    h.failed,
                    h.unreachable,
                    h.message[:100],
                )
                for h in report.hosts
            ],
            title=f"run {report.run_id}: {report.status} in {report.elapsed:.1f} s",
            no_color=ctx.no_color,
        )


def _resume(request: ResumeRequest) -> int:
    """`ops runs resume` for a playbook run: the hosts it had not finished, wave by wave.

    Pulled over SSM, a host in flight is settled from SSM (never sent the
    playbook twice). Pushed over SSH, a host that was in flight runs the
    playbook again, which a playbook written to be idempotent (as the roles
    here are) takes in its stride.
    """
    run = request.run
    ctx = dataclasses.replace(request.context, env=run.environment, _settings=None)
    settings = ctx.settings
    plan_request = wf.request_from(run.arguments)
    wf.validate_playbook(plan_request.playbook)
    if plan_request.via == "ssm":
        wf.check_pull_settings(settings)
        if wf.remove_stale_bundles(settings, run.arguments):
            click.echo("ops: removed the bundle the interrupted run had staged", err=True)
    _state, left = wf.open_hosts(request.journal, run)
    found = resolve_unfinished(ctx, list(left))
    click.echo(f"ops: resuming playbook run {run.id}: {len(left)} host(s) not finished", err=True)
    report = wf.resume(run, settings, request.journal, found, _wiring(ctx, _static(ctx)))
    _render(ctx, report)
    if int(report.exit_code):
        click.echo(f"ops: error: {_Exit(report)}", err=True)
        return int(report.exit_code)
    return 0


def _check(run: Run) -> None:
    if run.arguments.get("extravars"):
        raise BadInput(
            f"run {run.id} had extra variables, which the journal does not keep; "
            "run `ops playbook` again with the same -e"
        )


register_resumer("playbook", _resume, _check)


class _Exit(OpsError):
    def __init__(self, report: wf.PlaybookReport) -> None:
        bad = sum(1 for h in report.hosts if h.status != "ok")
        super().__init__(f"run {report.run_id} {report.status}: {bad} host(s) not ok")
        self.exit_code = report.exit_code
