"""`ops patch compliance`: per host what approved updates it still misses, and when it was
last patched; the fleet's share of compliant hosts. Read-only."""

from __future__ import annotations

import time

import click

from ops.cli.context import OpsContext, pass_ops
from ops.cli.options import TargetArgs, output_option, targeting_options
from ops.cli.patch_reads import say_reads
from ops.fleet.discovery import Host
from ops.journal.store import open_journal
from ops.render.output import print_json, print_table


@click.command("compliance")
@targeting_options
@click.option("--security-only", is_flag=True, help="Measure against security updates only.")
@output_option("table", "json")
@pass_ops
def compliance_command(ctx: OpsContext, target: TargetArgs, security_only: bool) -> None:
    """Per host the approved updates still missing (security first; what patch.exclude
    holds or approve_after_days has not approved yet does not count), days since its
    last patch run (`never` if the journal has none), and the share of compliant hosts.
    A host that could not be read is `unknown`, not compliant. Changes nothing."""
    from ops.workflows.patch_compliance import compliance

    settings = ctx.settings
    spec = target.spec(settings, whole_env_by_default=True)

    def announce(reachable: list[Host], unreachable: list[Host]) -> None:
        say_reads(reachable, unreachable, counted=ctx.output == "table")

    with open_journal() as journal:
        result = compliance(
            settings,
            spec,
            journal,
            security_only=security_only,
            include_offline=target.include_offline,
            on_hosts=announce,
        )
    if ctx.output == "json":
        print_json(result.as_dict())
        return
    now = time.time()
    rows = []
    for host in result.hosts:
        missing = ", ".join(
            f"{u.name} {u.current}->{u.new}" + (" [security]" if u.security else "")
            for u in host.missing
        )
        days = host.days_since_patch(now)
        rows.append(
            (
                host.name or host.instance_id,
                host.platform,
                host.state,
                host.error or missing or "-",
                "never" if days is None else f"{days} days",
            )
        )
    print_table(
        ["host", "platform", "state", "missing (approved)", "last patched"],
        rows,
        no_color=ctx.no_color,
    )
    unknown = result.count("unknown")
    click.echo(
        f"compliant: {result.count('compliant')} of {len(result.hosts)} hosts "
        f"({100 * result.share:.0f}%)" + (f"; {unknown} could not be read" if unknown else "")
    )
