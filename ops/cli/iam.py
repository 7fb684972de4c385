"""`ops iam policy`: the least-privilege IAM policy for the commands an operator runs."""

from __future__ import annotations

import json

import click

from ops import iam as policies
from ops.cli.context import OpsContext, pass_ops
from ops.cli.options import output_option
from ops.render.output import print_json


@click.group()
def iam() -> None:
    """IAM: what `ops` needs from AWS, and nothing more."""


@iam.command("policy")
@click.argument("commands", nargs=-1, metavar="[COMMAND]...")
@output_option()
@pass_ops
def policy(ctx: OpsContext, commands: tuple[str, ...]) -> None:
    """Print the policy for the operator's role for COMMANDs (inventory, run, playbook;
    all of them when none is named), and the instance profile policy the hosts need
    for `ops playbook --via ssm`. Resources come from the environment's settings:
    the region, output_bucket and output_prefix, and target_filter's tags."""
    settings = ctx.settings
    names = policies.commands(commands)
    operator = policies.operator_policy(
        names,
        region=settings.region,
        bucket=settings.output_bucket,
        prefix=settings.output_prefix,
        target_filter=settings.target_filter,
        target_groups=settings.target_groups,
    )
    hosts = policies.instance_profile_policy(settings.output_bucket, settings.output_prefix)
    if ctx.output == "json":
        print_json({"commands": names, "operator": operator, "instance_profile": hosts})
        return
    click.echo(f"# operator role: ops {', ops '.join(names)} in {settings.env}")
    click.echo(json.dumps(operator, indent=2))
    click.echo("# instance profile of the hosts (with AmazonSSMManagedInstanceCore)")
    click.echo(json.dumps(hosts, indent=2))
