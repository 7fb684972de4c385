"""The lines plan, compliance and run print while the hosts' pending updates are read."""

from __future__ import annotations

import click

from ops.fleet.discovery import Host


def say_reads(reachable: list[Host], unreachable: list[Host], *, counted: bool = True) -> None:
    """Before a probe: how many hosts it reads, and each host it cannot reach and why."""
    if counted:
        click.echo(f"reading pending updates on {len(reachable)} hosts", err=True)
    for host in unreachable:
        click.echo(f"ops: {host.label} is unreachable ({host.ping_status})", err=True)
