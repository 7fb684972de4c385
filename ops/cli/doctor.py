"""`ops doctor`: one line per piece `ops` needs, found or missing."""

from __future__ import annotations

import click

from ops.cli.context import OpsContext, pass_ops
from ops.cli.options import output_option
from ops.errors import ExitCode


def describe_setup(env: str | None) -> list[str]:
    """For `ops --version -v`: imported only then, since it reads settings."""
    from ops.workflows.doctor import describe_setup as describe

    return describe(env)


@click.command()
@output_option()
@pass_ops
def doctor(ctx: OpsContext) -> None:
    """Check the project, settings, AWS identity and the tools the sandbox needs.

    Exit 0 when every piece is there, 2 when one is missing (each named on a
    line with its remedy).
    """
    from ops.render.output import print_json, print_table
    from ops.workflows.doctor import diagnose

    checks = diagnose(ctx.env)
    if ctx.output == "json":
        print_json([c.as_dict() for c in checks])
    else:
        print_table(
            ["piece", "status", "detail"],
            [(c.piece, "ok" if c.ok else "MISSING", c.detail) for c in checks],
            no_color=ctx.no_color,
        )
    missing = [c for c in checks if not c.ok]
    for check in missing:
        click.echo(f"ops: missing: {check.piece}: {check.detail}", err=True)
    if missing:
        raise click.exceptions.Exit(int(ExitCode.BAD_INPUT))
