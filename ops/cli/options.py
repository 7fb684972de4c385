"""Options shared by many commands, as decorators (Click's own advice)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from ops.cli.context import OpsContext
from ops.config import Settings
from ops.fleet.targets import TargetSpec, build_spec

F = TypeVar("F", bound=Callable[..., Any])


def output_option(*formats: str) -> Callable[[F], F]:
    """`--output` on a subcommand too, so `ops runs list --output json` reads naturally."""
    choices = formats or ("table", "json")

    def store(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value is not None:
            ctx.ensure_object(OpsContext).output = value
        return value

    return click.option(
        "--output",
        type=click.Choice(choices),
        default=None,
        expose_value=False,
        callback=store,
        help="How results are printed (overrides the global --output).",
    )


def yes_option(func: F) -> F:
    """`--yes` after the command too: `ops run --yes ...` is how people type it."""

    def store(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            ctx.ensure_object(OpsContext).yes = True
        return value

    return click.option(
        "--yes",
        "-y",
        is_flag=True,
        expose_value=False,
        callback=store,
        help="Do not ask before changing hosts.",
    )(func)


@dataclass(frozen=True)
class TargetArgs:
    """The targeting flags of one command line, before they are resolved against the fleet."""

    targets: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    from_file: Path | None = None
    all_envs: bool = False
    include_offline: bool = False

    def given(self) -> bool:
        return bool(self.targets or self.instances or self.names or self.from_file)

    def spec(self, settings: Settings, *, whole_env_by_default: bool = False) -> TargetSpec:
        """The target expression with the environment's default filter applied.

        Read-only commands may default to the whole environment; commands that
        change hosts must be told what to touch.
        """
        if not self.given() and whole_env_by_default and settings.target_filter:
            return TargetSpec(dict(settings.target_filter))
        spec = build_spec(
            targets=self.targets,
            instances=self.instances,
            names=self.names,
            from_file=self.from_file,
        )
        return spec if self.all_envs else spec.with_default_filter(settings.target_filter)


_TARGET_OPTIONS = [
    click.option(
        "--target",
        "-t",
        "targets",
        multiple=True,
        metavar="TAG=VALUE[,..]",
        help="Tags that must all match (keys are case-insensitive), e.g. role=web,env=prod.",
    ),
    click.option(
        "--instance",
        "-i",
        "instances",
        multiple=True,
        metavar="ID",
        help="An instance id; repeatable.",
    ),
    click.option(
        "--name", "names", multiple=True, metavar="GLOB", help="Glob on the Name tag, e.g. 'web-*'."
    ),
    click.option(
        "--from-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="A file with one instance id a line.",
    ),
    click.option(
        "--all-envs", is_flag=True, help="Do not add the environment's default tag filter."
    ),
    click.option(
        "--include-offline",
        is_flag=True,
        help="Also hosts whose SSM agent is not Online (they are reported either way).",
    ),
]


def targeting_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The targeting flags every fleet command shares, handed over as one `target` argument."""

    @functools.wraps(func)
    def wrapper(
        *args: Any,
        targets: tuple[str, ...],
        instances: tuple[str, ...],
        names: tuple[str, ...],
        from_file: Path | None,
        all_envs: bool,
        include_offline: bool,
        **kwargs: Any,
    ) -> Any:
        target = TargetArgs(targets, instances, names, from_file, all_envs, include_offline)
        return func(*args, target=target, **kwargs)

    for option in reversed(_TARGET_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def transport_options(vias: tuple[str, ...], default: str, via_help: str) -> Callable[[F], F]:
    """`--via` and `--host-key-policy`, the same on every command that runs a playbook.

    The host-key policy only matters over SSH; a command names its own
    default transport and says in `via_help` what each one does for it.
    """
    from ops.transports.ansible import HOST_KEY_POLICIES

    def decorate(func: F) -> F:
        func = click.option(
            "--host-key-policy",
            type=click.Choice(HOST_KEY_POLICIES),
            default="strict",
            show_default=True,
            help="SSH only: accept-new records an unseen host's key in ops' known_hosts "
            "on first contact.",
        )(func)
        return click.option(
            "--via",
            type=click.Choice(vias),
            default=default,
            show_default=True,
            help=via_help,
        )(func)

    return decorate
