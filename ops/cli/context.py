"""What the root group hands every command: global options and lazily loaded settings."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import click

from ops.config import Settings, load_settings


@dataclass
class OpsContext:
    env: str | None = None
    profile: str | None = None
    region: str | None = None
    output: str = "table"
    yes: bool = False
    verbose: int = 0
    no_color: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        """Loaded on first use, so `ops --help` works even with a broken ops.yml."""
        if self._settings is None:
            flags: dict[str, Any] = {"profile": self.profile, "region": self.region}
            self._settings = load_settings(self.env, flags)
        return self._settings

    def settings_for(self, env: str) -> Settings:
        """Another environment's settings with the same flags (a resumed run's own env)."""
        if env == self.settings.env:
            return self.settings
        return load_settings(env, {"profile": self.profile, "region": self.region})

    def confirm_change(self, what: str) -> None:
        """Refuse a mutating command without a terminal unless --yes was given."""
        if self.yes:
            return
        if not sys.stdin.isatty():
            raise click.UsageError(f"{what} changes hosts: pass --yes to run without a terminal")
        click.confirm(f"{what}: proceed?", abort=True)


pass_ops = click.make_pass_decorator(OpsContext)
