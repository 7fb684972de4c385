"""Options shared by many commands, as decorators (Click's own advice)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ops.cli.context import OpsContext

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
