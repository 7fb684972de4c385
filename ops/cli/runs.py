"""`ops runs`: the journal as an operator reads it."""

from __future__ import annotations

import click

from ops.cli.context import OpsContext, pass_ops
from ops.cli.options import output_option, yes_option
from ops.engine.resume import ResumeRequest, check_resumable, claim
from ops.errors import BadInput
from ops.journal import open_journal
from ops.render.output import print_json, print_table, timestamp


@click.group()
def runs() -> None:
    """Past and running operations from the run journal."""


@runs.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--kind", help="Only runs of this kind (run, patch, deploy, ...).")
@output_option()
@pass_ops
def list_runs(ctx: OpsContext, limit: int, kind: str | None) -> None:
    """The newest runs first."""
    with open_journal() as journal:
        found = journal.list_runs(limit=limit, kind=kind)
    if ctx.output == "json":
        print_json([run.as_dict() for run in found])
        return
    print_table(
        ["id", "kind", "env", "operator", "started", "ended", "status"],
        [
            (
                r.id,
                r.kind,
                r.environment,
                r.operator,
                timestamp(r.started_at),
                timestamp(r.ended_at),
                r.state,
            )
            for r in found
        ],
        no_color=ctx.no_color,
    )


@runs.command("show")
@click.argument("run_id")
@output_option()
@pass_ops
def show_run(ctx: OpsContext, run_id: str) -> None:
    """One run and every host step it recorded."""
    with open_journal() as journal:
        data = journal.export(run_id)
    if data is None:
        raise BadInput(f"no run {run_id!r} in the journal; `ops runs list` shows the ids")
    if ctx.output == "json":
        print_json(data)
        return
    run = data["run"]
    click.echo(
        f"run {run['id']}  kind={run['kind']}  env={run['environment']}  "
        f"operator={run['operator']}  status={run['status']}"
    )
    click.echo(f"started {timestamp(run['started_at'])}  ended {timestamp(run['ended_at'])}")
    if run["status"] in ("running", "abandoned"):
        click.echo(
            f"pid {run['pid']} on {run['hostname']}  "
            f"last heartbeat {timestamp(run['heartbeat_at'])}"
        )
    if run["status"] == "abandoned":
        click.echo(f"its process is gone: `ops runs resume {run['id']}` finishes it")
    print_table(
        ["host", "phase", "status", "started", "ended", "detail"],
        [
            (
                s["host"],
                s["phase"],
                s["status"],
                timestamp(s["started_at"]),
                timestamp(s["ended_at"]),
                _short(s["detail"]),
            )
            for s in data["steps"]
        ],
        no_color=ctx.no_color,
    )


@runs.command("resume")
@click.argument("run_id")
@output_option("table", "json", "jsonl")
@yes_option
@pass_ops
def resume_run(ctx: OpsContext, run_id: str) -> None:
    """Finish a run that was interrupted or whose process died.

    Hosts whose steps all finished are skipped; a step that was in flight is
    settled from SSM by its command id (or its send's marker) and never sent
    again if SSM has it; a step never sent is sent. Refused (exit 2): an
    unknown id, a finished run, a run another live process holds.
    """
    with open_journal() as journal:
        found = journal.get_run(run_id)
        if found is not None:
            _load_command(found.kind)
        run, resumer = check_resumable(journal, run_id)
        ctx.confirm_change(f"resume {run.kind} run {run.id}")
        held = claim(journal, run)
        code = resumer(ResumeRequest(held, journal, ctx))
    if code:
        raise click.exceptions.Exit(code)


def _load_command(kind: str) -> None:
    """A kind's resumer is registered by its command's module, which the root group
    imports only when that command is asked for: ask for it here."""
    root = click.get_current_context().find_root()
    if isinstance(root.command, click.Group):
        root.command.get_command(root, kind)


@runs.command("export")
@click.argument("run_id")
def export_run(run_id: str) -> None:
    """The run and its steps as one JSON document, for audits."""
    with open_journal() as journal:
        data = journal.export(run_id)
    if data is None:
        raise BadInput(f"no run {run_id!r} in the journal; `ops runs list` shows the ids")
    print_json(data)


def _short(detail: dict[str, object]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in detail.items())
    return text if len(text) <= 80 else text[:77] + "..."
