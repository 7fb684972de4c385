"""Where `ops` finds its files: the team's project folder, then what the package ships.

A team keeps its inventories (and its own playbooks) in its own repository and
installs `ops` with pip or pipx, so nothing may assume the source checkout.
The project is found as git finds `.git`: `--project DIR` (exported by the
root group as OPS_PROJECT), the OPS_PROJECT variable, or the nearest folder
upwards from the working directory that holds `inventories/`. What no project
provides comes from the package: a wheel carries the playbooks, the image
recipes and the default inventories under `ops/_data/`, and a source checkout
serves the same files from its top level.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ops.errors import ConfigError

PACKAGE = Path(__file__).resolve().parent
# name -> where a source checkout keeps it (a wheel keeps it under ops/_data/NAME)
BUNDLED = {
    "playbooks": "playbooks",
    "images": "scripts/images",
    "inventories": "inventories",
}


def bundled(name: str) -> Path:
    """A folder the package ships: ops/_data/NAME in a wheel, the checkout's own otherwise."""
    packaged = PACKAGE / "_data" / name
    if packaged.is_dir():
        return packaged
    return PACKAGE.parent / BUNDLED[name]


@dataclass(frozen=True)
class Project:
    """The folder `ops` works in, and how it was chosen (for `ops doctor` and `--version -v`)."""

    root: Path | None
    source: str

    @property
    def inventories(self) -> Path:
        return self.root / "inventories" if self.root is not None else bundled("inventories")

    @property
    def playbooks(self) -> Path:
        own = self.root / "playbooks" if self.root is not None else None
        return own if own is not None and own.is_dir() else bundled("playbooks")


def _checked(folder: Path, source: str) -> Project:
    if not (folder / "inventories").is_dir():
        raise ConfigError(
            f"{source} {folder} has no inventories/ folder; run `ops init {folder}` "
            "or point it at a project folder"
        )
    return Project(folder.resolve(), source)


def find_project(cwd: Path | None = None) -> Project:
    """The project in force: OPS_PROJECT, else the nearest folder upwards with inventories/."""
    explicit = os.environ.get("OPS_PROJECT")
    if explicit:
        return _checked(Path(explicit).expanduser(), "OPS_PROJECT")
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "inventories").is_dir():
            return Project(folder, "found upwards from the working directory")
    return Project(None, "none found: the packaged defaults")


def check_project_option(folder: Path) -> Path:
    """Validate `--project DIR` before anything reads settings from it."""
    return _checked(folder.expanduser(), "--project").root or folder


def resolve_playbook(path: Path, project: Project) -> Path:
    """A playbook as given, else in the project's playbooks, else in the packaged ones.

    `ops playbook examples/small.yml` then works from any folder, the way a
    packaged example is meant to be tried.
    """
    if path.is_absolute() or path.exists():
        return path
    relative = Path(*path.parts[1:]) if path.parts[:1] == ("playbooks",) else path
    for base in (project.playbooks, bundled("playbooks")):
        candidate = base / relative
        if candidate.exists():
            return candidate
    return path
