"""Render rows as a rich table or JSON; nothing here knows about AWS or hosts.

rich is imported where a table or a console is made: a command that prints
JSON for a machine never loads it."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def console(no_color: bool = False, stderr: bool = False) -> Console:
    """A console that honours --no-color and NO_COLOR, and never wraps JSON."""
    from rich.console import Console

    no_color = no_color or bool(os.environ.get("NO_COLOR"))
    stream = sys.stderr if stderr else sys.stdout
    # a pipe or a log file has no width: do not fold ids and ARNs into 80 columns
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, no_color=no_color, highlight=False, soft_wrap=True, width=width)


def plain(text: str) -> str:
    """Text from the fleet made safe for a terminal: control characters shown escaped.

    A Name tag with a newline or an escape sequence must not forge table rows
    or drive the operator's terminal.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def timestamp(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    no_color: bool = False,
) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, header_style="bold", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        # Text, not str: rich would read "[...]" in a tag value as markup
        table.add_row(*(Text("-" if cell is None else plain(str(cell))) for cell in row))
    console(no_color).print(table)
