"""`ops inventory`: the fleet as `ops` sees it, end of support, and an Ansible export."""

from __future__ import annotations

from typing import Any

import click

from ops.cli.context import OpsContext, pass_ops
from ops.cli.options import TargetArgs, output_option, targeting_options
from ops.config import state_dir
from ops.errors import BadInput
from ops.fleet import inventory as inv
from ops.fleet.targets import TargetSpec
from ops.render.output import plain, print_json, print_table


def resolve_unfinished(ctx: OpsContext, instance_ids: list[str]) -> dict[str, inv.InventoryHost]:
    """A resume's hosts, looked up afresh (tags and addresses may have changed since)."""
    if not instance_ids:
        return {}
    spec = TargetSpec(instance_ids=tuple(instance_ids))
    return {h.instance_id: h for h in resolve_hosts(ctx, spec, refresh=True)}


def resolve_hosts(ctx: OpsContext, spec: Any, refresh: bool = False) -> list[inv.InventoryHost]:
    """Hosts for a target, from the per-env cache when fresh, else EC2 and SSM."""
    from ops import aws

    settings = ctx.settings
    key = f"{settings.region}|{spec.describe()}"
    path = inv.cache_path(state_dir(), settings.env)
    hosts = None if refresh else inv.read_cache(path, key)
    if hosts is None:
        ec2 = aws.client(
            "ec2",
            profile=settings.profile,
            region=settings.region,
            max_attempts=settings.max_attempts,
        )
        ssm = aws.client(
            "ssm",
            profile=settings.profile,
            region=settings.region,
            max_attempts=settings.max_attempts,
        )
        hosts = inv.gather(ec2, ssm, spec, region=settings.region, default_user=settings.ssh_user)
        inv.write_cache(path, key, hosts)
    for host in (h for h in hosts if h.problem):
        click.echo(f"ops: {host.instance_id} left out: {plain(host.problem)}", err=True)
    hosts = [h for h in hosts if not h.problem]
    hosts, outside = inv.within_networks(hosts, settings.ssh_networks)
    if outside:
        click.echo(
            f"ops: {len(outside)} host(s) left out: their SSH address is outside ssh_networks "
            f"({', '.join(settings.ssh_networks)})",
            err=True,
        )
    return hosts


@click.group()
def inventory() -> None:
    """The fleet: platforms, agents, end of support, and an Ansible inventory export."""


_COLUMNS = [
    "instance",
    "name",
    "role",
    "env",
    "private ip",
    "az",
    "platform",
    "eos",
    "agent",
    "docker",
    "launched",
]


def _row(h: inv.InventoryHost) -> list[Any]:
    platform = h.platform
    eos = platform.end_of_support.isoformat() if platform.end_of_support else "-"
    if platform.past_end_of_support():
        eos = f"PAST {eos}"
    agent = " ".join(x for x in (h.agent_status, h.agent_version) if x)
    return [
        h.instance_id,
        h.name,
        h.role,
        h.env,
        h.private_ip,
        h.az,
        f"{h.platform_name} {h.platform_version}".strip(),
        eos,
        agent,
        h.docker_version or "-",
        h.launch_time[:19],
    ]


@inventory.command("list")
@targeting_options
@click.option(
    "--refresh", is_flag=True, help="Ignore the cached inventory and Docker versions (5 minutes)."
)
@output_option()
@pass_ops
def list_hosts(
    ctx: OpsContext,
    target: TargetArgs,
    refresh: bool,
) -> None:
    """Hosts with platform, agent, Docker, and end of support (PAST marks an unsupported OS).

    The Docker version is read on the hosts with one Run Command and cached
    per environment for five minutes; `none` means no Docker engine.
    """
    from ops.workflows.inventory import with_docker_versions

    spec = target.spec(ctx.settings, whole_env_by_default=True)
    hosts = with_docker_versions(ctx.settings, resolve_hosts(ctx, spec, refresh), refresh=refresh)
    if ctx.output == "json":
        print_json([inv.as_record(h) for h in hosts])
        return
    print_table(_COLUMNS, [_row(h) for h in hosts], no_color=ctx.no_color)
    past = sum(1 for h in hosts if h.platform.past_end_of_support())
    if past:
        click.echo(f"{past} host(s) past end of support: `ops inventory eol` for counts", err=True)


@inventory.command("show")
@click.argument("instance_id")
@output_option()
@pass_ops
def show_host(ctx: OpsContext, instance_id: str) -> None:
    """Everything `ops` knows about one host."""
    spec = TargetArgs(instances=(instance_id,)).spec(ctx.settings)
    hosts = resolve_hosts(ctx, spec, refresh=True)
    if not hosts:
        raise BadInput(f"no host {instance_id} in {ctx.settings.env}")
    record = inv.as_record(hosts[0])
    if ctx.output == "json":
        print_json(record)
        return
    for key, value in record.items():
        click.echo(f"{key:<20} {'-' if value in (None, '') else plain(str(value))}")


@inventory.command("eol")
@targeting_options
@click.option("--refresh", is_flag=True)
@output_option()
@pass_ops
def eol(
    ctx: OpsContext,
    target: TargetArgs,
    refresh: bool,
) -> None:
    """Hosts past their platform's end of support, counted per Role and Env."""
    spec = target.spec(ctx.settings, whole_env_by_default=True)
    summary = inv.eol_summary(resolve_hosts(ctx, spec, refresh))
    if ctx.output == "json":
        print_json(summary)
        return
    click.echo(f"{summary['total']} host(s) past end of support")
    for title, key in (("role", "by_role"), ("env", "by_env"), ("platform", "by_platform")):
        if summary[key]:
            print_table([title, "hosts"], summary[key].items(), no_color=ctx.no_color)


@inventory.command("export")
@targeting_options
@click.option("--format", "fmt", type=click.Choice(["ansible", "json"]), default="ansible")
@click.option("--refresh", is_flag=True)
@pass_ops
def export(
    ctx: OpsContext,
    target: TargetArgs,
    fmt: str,
    refresh: bool,
) -> None:
    """A YAML inventory grouped by role_, env_, platform_ and az_ (or the hosts as JSON)."""
    spec = target.spec(ctx.settings, whole_env_by_default=True)
    hosts = resolve_hosts(ctx, spec, refresh)
    if fmt == "json":
        print_json([inv.as_record(h) for h in hosts])
        return
    click.echo(inv.to_yaml(inv.render(hosts)), nl=False)
