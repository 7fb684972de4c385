"""`ops init [DIR]`: the folders `ops` looks for in a team's own repository."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument(
    "folder", metavar="[DIR]", default=".", type=click.Path(path_type=Path, file_okay=False)
)
def init(folder: Path) -> None:
    """Write inventories/ (sandbox, staging, production), playbooks/, molecule/ and a
    .gitignore into DIR (default: here). Never overwrites: exit 2 if any is there."""
    from ops.workflows.init import layout

    written = layout().write(folder)
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"next: fill in {folder / 'inventories/production/ops.yml'}, then `ops doctor`")
