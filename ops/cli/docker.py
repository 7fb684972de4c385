"""`ops docker install` and `ops docker status`: parse, call the docker workflow, render."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from rich.console import Console

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
from ops.engine.budget import parse_concurrency
from ops.engine.resume import ResumeRequest, register_resumer
from ops.errors import OpsError
from ops.fleet.discovery import ONLINE
from ops.fleet.inventory import static_dir, static_sources
from ops.journal import Run, open_journal
from ops.render.output import console, print_json, print_table
from ops.transports.ansible import TaskEvent
from ops.transports.ssm import open_transport
from ops.workflows import docker as wf
from ops.workflows import docker_status as status_wf
from ops.workflows import playbook as playbook_wf


@click.group()
def docker() -> None:
    """The Docker engine on the fleet: install and configure it, and read its state."""


def _eos(past: bool, platform: str) -> str:
    return f"{platform} (PAST END OF SUPPORT)" if past else platform


@docker.command("install")
@targeting_options
@transport_options(
    wf.VIAS,
    default="ssm",
    via_help="ssm: each host pulls the role over SSM Run Command; ssh: pushed by ansible-runner.",
)
@click.option(
    "--allow-restart",
    is_flag=True,
    help="Restart a daemon whose configuration changed even while containers run "
    "without live-restore (they stop with it).",
)
@click.option("--forks", type=click.IntRange(1, 500), default=10, show_default=True)
@click.option("--refresh", is_flag=True, help="Re-read the fleet instead of the cached inventory.")
@click.option("--dry-run", is_flag=True, help="Print the plan per host and stop.")
@output_option()
@yes_option
@pass_ops
def install(
    ctx: OpsContext,
    target: TargetArgs,
    via: str,
    allow_restart: bool,
    forks: int,
    host_key_policy: str,
    refresh: bool,
    dry_run: bool,
) -> None:
    """Install Docker from each platform's packages, merge daemon.json, keep it running.

    Amazon Linux 2: amazon-linux-extras (the docker topic); AL2023: dnf;
    Debian and Ubuntu: the distribution's docker.io. Log rotation and
    live-restore come from the `docker:` settings in ops.yml; other keys in
    a host's daemon.json are kept. Unsupported platforms are skipped.
    """
    settings = ctx.settings
    request = wf.InstallRequest(
        via=via, allow_restart=allow_restart, forks=forks, host_key_policy=host_key_policy
    )
    spec = target.spec(settings, whole_env_by_default=True)
    hosts = resolve_hosts(ctx, spec, refresh)
    plan = wf.plan(request, hosts, settings.docker)
    if via == "ssm" and plan.playbook is not None:
        playbook_wf.check_pull_settings(settings)
    if dry_run:
        _print_plan(ctx, plan)
        return
    ctx.confirm_change(f"docker install on {len(plan.to_install)} host(s)")
    err = console(ctx.no_color, stderr=True)
    for step in plan.skipped:
        err.print(f"{step.host.instance_id} skipped: {step.reason}", markup=False)
    static = static_dir(inventories_dir(), settings.env)
    with open_journal() as journal:
        report = wf.run(
            plan,
            settings,
            journal,
            _wiring(ctx, err, static if static_sources(static) else None),
        )
    _print_report(ctx, report)
    if int(report.exit_code):
        raise _Exit(report)


def _wiring(ctx: OpsContext, err: Console, static: Path | None) -> wf.Wiring:
    """Task lines that changed or failed, and the runtime's notes, on stderr."""

    def on_event(event: TaskEvent) -> None:
        if ctx.output != "json" and (event.changed or event.status not in ("ok", "skipped")):
            mark = "changed" if event.changed and event.status == "ok" else event.status
            err.print(f"{event.host} [{mark}] {event.task}", markup=False)

    def note(text: str) -> None:
        err.print(f"ops: {text}", markup=False)

    return wf.Wiring(on_event=on_event, note=note, static_inventory=static)


def _resume(request: ResumeRequest) -> int:
    """`ops runs resume` for a docker run: the same settings, the hosts it had not finished."""
    run = request.run
    ctx = dataclasses.replace(request.context, env=run.environment, _settings=None)
    settings = ctx.settings
    _state, left = wf.open_hosts(request.journal, run)
    found = resolve_unfinished(ctx, list(left))
    err = console(ctx.no_color, stderr=True)
    err.print(f"ops: resuming docker run {run.id}: {len(left)} host(s) not finished", markup=False)
    static = static_dir(inventories_dir(), settings.env)
    report = wf.resume(
        run,
        settings,
        request.journal,
        found,
        _wiring(ctx, err, static if static_sources(static) else None),
    )
    _print_report(ctx, report)
    if int(report.exit_code):
        click.echo(f"ops: error: {_Exit(report)}", err=True)
    return int(report.exit_code)


def _check(run: Run) -> None:
    wf.request_from(run.arguments)  # BadInput when the run cannot be rebuilt


register_resumer(wf.KIND, _resume, _check)


def _print_plan(ctx: OpsContext, plan: wf.InstallPlan) -> None:
    if ctx.output == "json":
        print_json(plan.as_dict())
        return
    print_table(
        ["instance", "name", "platform", "step", "how / why skipped"],
        [
            (
                s.host.instance_id,
                s.host.name,
                _eos(s.past_end_of_support, s.host.platform.key),
                s.step or "skip",
                s.how or s.reason,
            )
            for s in plan.steps
        ],
        title=f"docker install via {plan.request.via}: {len(plan.to_install)} host(s)",
        no_color=ctx.no_color,
    )


def _print_report(ctx: OpsContext, report: wf.InstallReport) -> None:
    if ctx.output == "json":
        print_json(report.as_dict())
        return
    print_table(
        ["instance", "name", "platform", "result", "changed", "message"],
        [
            (
                h.step.host.instance_id,
                h.step.host.name,
                _eos(h.step.past_end_of_support, h.step.host.platform.key),
                h.result,
                h.changed,
                (h.recap.message if h.recap else h.step.reason)[:100],
            )
            for h in report.hosts
        ],
        title=f"run {report.run_id or '-'}{' (resumed)' if report.resumed else ''}: "
        f"{report.status} in {report.elapsed:.1f} s",
        no_color=ctx.no_color,
    )
    if report.nothing_changed:
        click.echo("nothing changed: Docker was already installed and configured (changed=0)")
    else:
        click.echo(f"changed={report.changed}")


class _Exit(OpsError):
    def __init__(self, report: wf.InstallReport) -> None:
        fine = ("changed", "unchanged", "skipped", wf.EARLIER)
        bad = sum(1 for h in report.hosts if h.result not in fine)
        text = f"run {report.run_id} {report.status}: {bad} host(s) not ok"
        if report.status == "interrupted":
            text += f"; `ops runs resume {report.run_id}` finishes it"
        super().__init__(text)
        self.exit_code = report.exit_code


@docker.command("status")
@targeting_options
@click.option("--refresh", is_flag=True, help="Re-read the fleet instead of the cached inventory.")
@output_option()
@pass_ops
def status(ctx: OpsContext, target: TargetArgs, refresh: bool) -> None:
    """Docker on each host: installed, version, running, drivers, rotation, drift.

    One read-only command over SSM Run Command; hosts whose agent is not
    Online are listed without being asked. Exit 1 when a host drifts from
    the settings or did not answer.
    """
    settings = ctx.settings
    spec = target.spec(settings, whole_env_by_default=True)
    hosts = resolve_hosts(ctx, spec, refresh)
    if not hosts:
        raise OpsError("no hosts matched the targeting")
    online = [h for h in hosts if h.agent_status == ONLINE or target.include_offline]
    rows: dict[str, status_wf.HostStatus] = {}
    if online:
        transport = open_transport(settings)
        concurrency = parse_concurrency(settings.concurrency)
        for row in status_wf.gather(transport, online, settings.docker, concurrency):
            rows[row.instance_id] = row
    table = []
    for host in hosts:
        found = rows.get(host.instance_id)
        if found is not None:
            row = found
        else:
            platform = host.platform
            row = status_wf.HostStatus(
                host.instance_id,
                host.name,
                platform.key,
                platform.past_end_of_support(),
                error=f"agent {host.agent_status or 'unknown'}: not asked",
            )
            row.drift = [row.error]
        table.append(row)
    if ctx.output == "json":
        print_json([r.as_dict() for r in table])
    else:
        print_table(
            [
                "instance",
                "name",
                "platform",
                "installed",
                "version",
                "running",
                "storage",
                "logging",
                "rotation",
                "live-restore",
                "containers",
                "disk",
                "drift",
            ],
            [
                (
                    r.instance_id,
                    r.name,
                    _eos(r.past_end_of_support, r.platform),
                    _yes_no(r.installed),
                    r.version,
                    _yes_no(r.running),
                    r.storage_driver,
                    r.logging_driver,
                    r.rotation or "off",
                    _yes_no(r.live_restore),
                    r.containers_running,
                    _size(r.disk_bytes),
                    "; ".join(r.drift) or "none",
                )
                for r in table
            ],
            title=f"docker status: {len(table)} host(s)",
            no_color=ctx.no_color,
        )
    if any(r.drift for r in table):
        raise OpsError(f"{sum(1 for r in table if r.drift)} host(s) drift from the settings")


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
