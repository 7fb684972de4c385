"""The `ops` root group: global options, error mapping and exit codes."""

from __future__ import annotations

import os
import sys

import click

from ops import __version__
from ops.cli.context import OpsContext
from ops.cli.deploy import deploy
from ops.cli.inventory import inventory
from ops.cli.playbook import playbook
from ops.cli.run import run
from ops.cli.runs import runs
from ops.cli.sandbox import sandbox
from ops.errors import ExitCode, OpsError
from ops.render.output import OUTPUT_FORMATS

SETTINGS_FREE = {"completion"}
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class OpsGroup(click.Group):
    """Maps operator-facing failures to one stderr line and the documented exit code.

    Done here rather than only in main() so that Click's CliRunner sees the same
    codes a shell does.
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except OpsError as exc:
            click.echo(f"ops: error: {exc}", err=True)
            raise click.exceptions.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            click.echo("ops: interrupted", err=True)
            raise click.exceptions.Exit(int(ExitCode.INTERRUPTED)) from None


@click.group(cls=OpsGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--env",
    "env",
    metavar="NAME",
    envvar="OPS_ENV",
    help="Environment folder under inventories/ (default: sandbox).",
)
@click.option("--profile", metavar="NAME", help="AWS profile (default: from settings).")
@click.option("--region", metavar="NAME", help="AWS region (default: from settings).")
@click.option(
    "--output",
    type=click.Choice(OUTPUT_FORMATS),
    default="table",
    show_default=True,
    help="How results are printed.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask before changing hosts.")
@click.option("--verbose", "-v", count=True, help="More detail; repeat for more.")
@click.option(
    "--no-color", is_flag=True, envvar="NO_COLOR", help="Plain text (NO_COLOR is honoured too)."
)
@click.version_option(__version__, "--version", prog_name="ops")
@click.pass_context
def cli(
    ctx: click.Context,
    env: str | None,
    profile: str | None,
    region: str | None,
    output: str,
    yes: bool,
    verbose: int,
    no_color: bool,
) -> None:
    """Fleet operations for Docker workloads on EC2: patching, Docker installs,
    rolling deploys, log collection and ad-hoc commands over SSM and Ansible.

    Exit codes: 0 all hosts succeeded, 1 some hosts failed, 2 bad input (nothing
    changed), 3 stopped by a failure budget or gate, 130 interrupted.
    """
    ctx.obj = OpsContext(
        env=env,
        profile=profile,
        region=region,
        output=output,
        yes=yes,
        verbose=verbose,
        no_color=no_color or bool(os.environ.get("NO_COLOR")),
    )
    if ctx.invoked_subcommand not in SETTINGS_FREE:
        ctx.obj.settings  # noqa: B018 - refuse a broken ops.yml before any command runs


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script (eval "$(ops completion bash)")."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click ships all three
        raise click.UsageError(f"no completion for {shell}")
    click.echo(cls(cli, {}, "ops", "_OPS_COMPLETE").source())


cli.add_command(runs)
cli.add_command(run)
cli.add_command(sandbox)
cli.add_command(inventory)
cli.add_command(playbook)
cli.add_command(deploy)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every failure ends as one line on stderr and a documented exit code."""
    try:
        result = cli.main(args=argv, prog_name="ops", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(int(ExitCode.BAD_INPUT) if exc.exit_code == 2 else exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("ops: interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    # standalone_mode=False hands back the code of a click Exit instead of exiting
    sys.exit(result if isinstance(result, int) else 0)
