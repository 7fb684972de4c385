"""`ops deploy`: rolling Docker deploys; `plan` and `status` are read-only."""

from __future__ import annotations

import click

from ops.cli.context import OpsContext, pass_ops
from ops.cli.options import output_option
from ops.render.output import print_json, print_table


@click.group()
def deploy() -> None:
    """Roll a service's image out across its hosts, behind its load balancer."""


def _short(digest: str | None) -> str | None:
    return digest[:19] if digest else None


@deploy.command()
@click.argument("service")
@click.option("--image", "image", required=True, metavar="REF", help="TAG, @DIGEST or full ref.")
@click.option("--batch", metavar="N|P%", help="Hosts per batch (default: the spec's batch_size).")
@click.option("--min-healthy", metavar="N|P%", help="Hosts that must stay in service.")
@output_option()
@pass_ops
def plan(
    ctx: OpsContext, service: str, image: str, batch: str | None, min_healthy: str | None
) -> None:
    """Resolve the image to a digest, then show the batches and what each host runs now
    and will run. Changes nothing."""
    from ops.workflows.deploy import plan_deploy
    from ops.workflows.deploy_spec import load_spec

    settings = ctx.settings
    spec = load_spec(settings.env, service)
    result = plan_deploy(settings, spec, image, batch=batch, min_healthy=min_healthy)
    if ctx.output == "json":
        print_json(result.as_dict())
        return
    click.echo(f"{service}: {result.image} -> pull {result.image.pinned}")
    click.echo(f"batches of {result.batch_size}, at least {result.min_healthy} host(s) in service")
    rows = [
        (
            number,
            view.host.instance_id,
            view.host.name,
            _short(view.container.digest) or ("(none)" if not view.container.present else "?"),
            _short(result.image.digest),
            "no change" if view.container.digest == result.image.digest else "replace",
        )
        for number, batch_views in enumerate(result.batches, start=1)
        for view in batch_views
    ]
    print_table(
        ["batch", "instance", "name", "runs now", "will run", "action"],
        rows,
        no_color=ctx.no_color,
    )


@deploy.command()
@click.argument("service")
@output_option()
@pass_ops
def status(ctx: OpsContext, service: str) -> None:
    """Per host: the digest running, since when, healthy or not, in the target group or not."""
    from ops.workflows.deploy import service_status
    from ops.workflows.deploy_spec import load_spec

    settings = ctx.settings
    spec = load_spec(settings.env, service)
    result = service_status(settings, spec)
    if ctx.output == "json":
        print_json(result.as_dict())
        return
    print_table(
        ["instance", "name", "digest", "healthy", "in service", "since", "note"],
        [
            (
                v.host.instance_id,
                v.host.name,
                _short(v.container.digest),
                {True: "yes", False: "no", None: "-"}[v.container.healthy],
                "yes" if v.in_service else "no",
                v.container.since,
                v.container.error or "",
            )
            for v in result.hosts
        ],
        title=f"{service} ({spec.repository.name})",
        no_color=ctx.no_color,
    )
