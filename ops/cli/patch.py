"""`ops patch`: OS patching in waves. `plan` shows what a run would do, touching nothing."""

from __future__ import annotations

import click

from ops.cli.context import OpsContext, pass_ops
from ops.cli.options import TargetArgs, output_option, targeting_options
from ops.cli.patch_reads import say_reads
from ops.fleet.discovery import Host
from ops.render.output import print_json, print_table


@click.group()
def patch() -> None:
    """OS patching in waves: plan (read-only), run, report, compliance (read-only)."""


@patch.command("plan")
@targeting_options
@click.option("--security-only", is_flag=True, help="Approve security updates only.")
@click.option(
    "--canary",
    type=int,
    default=1,
    show_default=True,
    help="Hosts patched first, alone, before any wave (0: no canary).",
)
@click.option("--wave", metavar="N|P%", help="Most hosts in one wave after the canary.")
@click.option(
    "--max-unavailable",
    metavar="N|P%",
    help="Most hosts of one Role or one AZ out at once (default: patch.max_unavailable).",
)
@output_option("table", "json")
@pass_ops
def plan_command(
    ctx: OpsContext,
    target: TargetArgs,
    security_only: bool,
    canary: int,
    wave: str | None,
    max_unavailable: str | None,
) -> None:
    """Per host the updates a patch run would install (name, current -> new,
    security), those held by patch.exclude or not yet approved, whether a reboot
    will be needed, and the waves. Reads the hosts over SSM; changes nothing."""
    from ops.workflows.patch import parse_options, plan

    settings = ctx.settings
    options = parse_options(
        security_only=security_only,
        canary=canary,
        wave=wave,
        max_unavailable=max_unavailable,
        settings=settings.patch,
    )
    spec = target.spec(settings, whole_env_by_default=True)

    def announce(reachable: list[Host], unreachable: list[Host]) -> None:
        say_reads(reachable, unreachable, counted=ctx.output == "table")

    result = plan(
        settings, spec, options, include_offline=target.include_offline, on_hosts=announce
    )
    if ctx.output == "json":
        print_json(result.as_dict())
        return
    rows = []
    for host in result.hosts:
        pending = ", ".join(
            f"{u.name} {u.current}->{u.new}" + (" [security]" if u.security else "")
            for u in host.pending
        )
        held = ", ".join(u.name for u in host.held)
        waiting = ", ".join(u.name for u, _why in host.not_approved)
        rows.append(
            (
                host.name or host.instance_id,
                host.platform,
                host.error or pending or "-",
                held or "-",
                waiting or "-",
                "yes" if host.reboot_required else "no",
            )
        )
    print_table(
        ["host", "platform", "pending (approved)", "held", "not approved", "reboot"],
        rows,
        no_color=ctx.no_color,
    )
    names = {h.instance_id: h.name or h.instance_id for h in result.hosts}
    for number, ids in enumerate(result.waves):
        label = "canary" if number == 0 and options.canary else f"wave {number}"
        click.echo(f"{label}: {', '.join(names[i] for i in ids)}")
    if not result.waves:
        click.echo("nothing to patch")


# `run` and `report` live in their own module (the run is a workflow on the runtime)
from ops.cli.patch_compliance import compliance_command  # noqa: E402
from ops.cli.patch_run import report_command, run_command  # noqa: E402

patch.add_command(run_command)
patch.add_command(report_command)
patch.add_command(compliance_command)
