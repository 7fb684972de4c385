"""The `ops` root group: global options, error mapping, exit codes, lazy commands.

Every `ops` call, tab completion included, starts here, so this module imports
no command: a command's module (and boto3, Ansible, rich behind it) is
imported only when that command runs (Click's lazy-group pattern). Each entry
below carries its one-line help, so `ops --help` lists them all without
importing any.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ops import __version__
from ops.cli.context import OpsContext
from ops.config import state_dir
from ops.errors import ExitCode, OpsError
from ops.render import OUTPUT_FORMATS

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

SETTINGS_FREE = {"completion", "init", "doctor"}
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# name -> (module:attribute, one-line help shown by `ops --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("ops.cli.run:run", "Run a command across the fleet over SSM Run Command."),
    "playbook": (
        "ops.cli.playbook:playbook",
        "Run an Ansible playbook, pushed over SSH or pulled over SSM.",
    ),
    "inventory": (
        "ops.cli.inventory:inventory",
        "The fleet: platforms, agents, end of support, export.",
    ),
    "docker": ("ops.cli.docker:docker", "Install the Docker engine and report its state per host."),
    "iam": ("ops.cli.iam:iam", "The least-privilege IAM policy each command needs."),
    "logs": ("ops.cli.logs:logs", "Collect logs from many hosts at once, and search them."),
    "patch": ("ops.cli.patch:patch", "OS patching in waves: plan, run, report."),
    "deploy": (
        "ops.cli.deploy:deploy",
        "Rolling Docker deploys of a service: plan, run, rollback, status.",
    ),
    "runs": ("ops.cli.runs:runs", "Past and running operations from the run journal."),
    "sandbox": (
        "ops.cli.sandbox:sandbox",
        "A local fleet (containers, moto, Run Command emulator).",
    ),
    "init": ("ops.cli.init:init", "Write a starting layout for a team's own repository."),
    "doctor": (
        "ops.cli.doctor:doctor",
        "What ops uses (project, settings, AWS) and what is missing.",
    ),
}


class OpsGroup(click.Group):
    """Maps operator-facing failures to one stderr line and the documented exit code,
    and loads each command's module only when that command is asked for.

    The mapping is done here rather than only in main() so that Click's
    CliRunner sees the same codes a shell does.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, _, attribute = entry[0].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        self.commands[cmd_name] = command
        return command

    def help_line(self, name: str) -> str:
        if name in COMMANDS:
            return COMMANDS[name][1]
        return self.commands[name].get_short_help_str(limit=80)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The listing from COMMANDS' own help lines: `ops --help` imports no command."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, self.help_line(name)) for name in self.list_commands(ctx)])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Command names from the table too: Click's own would import each match."""
        from click.shell_completion import CompletionItem

        names = [name for name in self.list_commands(ctx) if name.startswith(incomplete)]
        results = [CompletionItem(name, help=self.help_line(name)) for name in names]
        results.extend(click.Command.shell_complete(self, ctx, incomplete))
        return results

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except OpsError as exc:
            _traceback(ctx)
            click.echo(f"ops: error: {exc}", err=True)
            raise click.exceptions.Exit(int(exc.exit_code)) from None
        except click.exceptions.Exit:
            raise
        except Exception as exc:
            if "botocore" not in sys.modules:  # no AWS call was made: not an AWS failure
                raise
            from ops.aws_errors import AWS_ERRORS, explain  # botocore is loaded by now

            problem = explain(exc, **_aws_where(ctx)) if isinstance(exc, AWS_ERRORS) else None
            if problem is None:
                raise
            _traceback(ctx)
            click.echo(f"ops: error: {problem}", err=True)
            raise click.exceptions.Exit(int(problem.exit_code)) from None
        except KeyboardInterrupt:
            click.echo("ops: interrupted", err=True)
            raise click.exceptions.Exit(int(ExitCode.INTERRUPTED)) from None


def _traceback(ctx: click.Context) -> None:
    """`-v` shows where a failure came from; without it, only the one line."""
    if isinstance(ctx.obj, OpsContext) and ctx.obj.verbose:
        traceback.print_exc(file=sys.stderr)


def _aws_where(ctx: click.Context) -> dict[str, str | None]:
    """The profile and region the failed call used, as settings resolved them."""
    obj = ctx.obj
    if not isinstance(obj, OpsContext):
        return {"profile": None, "region": None}
    try:
        settings = obj.settings
    except OpsError:
        return {"profile": obj.profile, "region": obj.region}
    return {"profile": settings.profile, "region": settings.region}


def _project_option(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """--project is exported as OPS_PROJECT before any settings are read, so every
    module (and every `ops` a command starts) finds the same project."""
    if value is None:
        return
    from ops.project import check_project_option

    try:
        os.environ["OPS_PROJECT"] = str(check_project_option(value))
    except OpsError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


@click.group(cls=OpsGroup, context_settings=CONTEXT_SETTINGS, invoke_without_command=True)
@click.option(
    "--project",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    callback=_project_option,
    expose_value=False,
    is_eager=True,
    help="The team's project folder (holds inventories/); default: OPS_PROJECT or upwards.",
)
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
@click.option(
    "--version", is_flag=True, help="Print the version (with -v: what is in use) and exit."
)
@click.pass_context
def cli(
    ctx: click.Context,
    version: bool,
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
    if version:
        click.echo(f"ops, version {__version__}")
        if verbose:
            from ops.cli.doctor import describe_setup

            for line in describe_setup(env):
                click.echo(line)
        ctx.exit(0)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(0)
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
        state_dir()  # and a state directory someone else owns


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script (eval "$(ops completion bash)")."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click ships all three
        raise click.UsageError(f"no completion for {shell}")
    click.echo(cls(cli, {}, "ops", "_OPS_COMPLETE").source())


# The cyclic collector's defaults (700, 10, 10) suit a long-lived service. One `ops`
# call builds about 100,000 objects that live to its end (modules, botocore's service
# models, the plan), and at the defaults it walks them again in some 250 young and two
# full collections before and during the fan-out: a third of a second of a 30-host
# `ops run --via ssh` on a busy 2-core machine. mypy's command line sets these
# thresholds for the same reason; a collection still comes every 200,000 net
# allocations, so a run of hours still frees its reference cycles.
GC_THRESHOLDS = (200_000, 30, 30)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every failure ends as one line on stderr and a documented exit code.

    The collector's thresholds are the call's own: a test that calls main()
    in-process gets its own back when the call ends. What the call built is aged
    into the oldest generation first: left in the youngest, the first allocation
    under the restored threshold would walk all of it (up to 200k objects, 28 ms
    at the end of a 30-host run, between the last line printed and the exit)."""
    previous = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    # At exit the interpreter walks every object in one last full collection before it
    # frees them all (0.14 s of CPU after a 30-host run); frozen, they are freed as the
    # modules are torn down, without the walk. Nothing of ops leaves output to the
    # collector: the journal commits and files are closed where they are written.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    try:
        _main(argv)
    finally:
        gc.freeze()  # freeze empties the young generations; unfreeze hands them to the oldest
        gc.unfreeze()
        gc.set_threshold(*previous)


def _main(argv: list[str] | None) -> None:
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
