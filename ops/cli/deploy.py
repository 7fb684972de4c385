"""`ops deploy`: rolling Docker deploys; `plan` and `status` are read-only.

`run` and `rollback` parse, ask, take the service's lock and hand the
plan to ops.workflows.deploy_run; a deploy a process left half done is
finished by `ops runs resume` through the resumer registered here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import click

from ops.cli.context import OpsContext, pass_ops
from ops.cli.options import output_option, yes_option
from ops.engine.resume import ResumeRequest, register_resumer
from ops.errors import ExitCode
from ops.fleet.targets import TargetSpec, build_spec
from ops.journal import Run
from ops.render.output import print_json, print_table

if TYPE_CHECKING:
    from ops.transports.ssm import HostResult
    from ops.workflows.deploy import DeployPlan, HostView
    from ops.workflows.deploy_run import DeployOutcome, DeployRequest, Prepared


@click.group()
def deploy() -> None:
    """Roll a service's image out across its hosts, behind its load balancer."""


def narrowing(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--instance` and `--name`: only these of the service's hosts (none: all of them)."""
    func = click.option(
        "--name",
        "names",
        multiple=True,
        metavar="GLOB",
        help="Only the service's hosts whose Name matches, e.g. 'web-*'; repeatable.",
    )(func)
    return click.option(
        "--instance",
        "-i",
        "instances",
        multiple=True,
        metavar="ID",
        help="Only this one of the service's hosts; repeatable.",
    )(func)


def _only(instances: tuple[str, ...], names: tuple[str, ...]) -> TargetSpec | None:
    if not instances and not names:
        return None
    return build_spec(instances=instances, names=names)


def _short(digest: str | None) -> str | None:
    return digest[:19] if digest else None


@deploy.command()
@click.argument("service")
@click.option("--image", "image", required=True, metavar="REF", help="TAG, @DIGEST or full ref.")
@click.option("--batch", metavar="N|P%", help="Hosts per batch (default: the spec's batch_size).")
@click.option("--min-healthy", metavar="N|P%", help="Hosts that must stay in service.")
@narrowing
@output_option()
@pass_ops
def plan(
    ctx: OpsContext,
    service: str,
    image: str,
    batch: str | None,
    min_healthy: str | None,
    instances: tuple[str, ...],
    names: tuple[str, ...],
) -> None:
    """Resolve the image to a digest, then show the batches and what each host runs now
    and will run. Changes nothing."""
    from ops.workflows.deploy import plan_deploy
    from ops.workflows.deploy_spec import load_spec

    settings = ctx.settings
    spec = load_spec(settings.env, service)
    result = plan_deploy(
        settings,
        spec,
        image,
        batch=batch,
        min_healthy=min_healthy,
        only=_only(instances, names),
    )
    if ctx.output == "json":
        print_json(result.as_dict())
        return
    click.echo(f"{service}: {result.image} -> pull {result.image.pinned}")
    click.echo(f"batches of {result.batch_size}, at least {result.min_healthy} host(s) in service")
    for line in _drain_lines(result):
        click.echo(line)
    numbered = [(str(n), v) for n, b in enumerate(result.batches, start=1) for v in b]
    rows = [
        (
            number,
            view.host.instance_id,
            view.host.name,
            _short(view.container.digest) or ("(none)" if not view.container.present else "?"),
            _short(result.image.digest),
            "unchanged" if number == "-" else _action(view, result.image.digest),
        )
        for number, view in [*numbered, *(("-", v) for v in result.unchanged)]
    ]
    print_table(
        ["batch", "instance", "name", "runs now", "will run", "action"],
        rows,
        no_color=ctx.no_color,
    )


def _drain_lines(result: DeployPlan) -> list[str]:
    """The drain each host waits for, and where the spec's drain_seconds cuts it short."""
    delays = ", ".join(f"{g} {s} s" for g, s in sorted(result.deregistration_delays.items()))
    lines = [
        f"drain: up to {result.drain_seconds} s a host" + (f" (delay: {delays})" if delays else "")
    ]
    for group, seconds in sorted(result.drain_cut().items()):
        lines.append(
            f"note: {group} keeps a deregistered target draining for {seconds} s; the old "
            f"container stops after drain_seconds {result.drain_seconds}, cutting requests "
            "still open then"
        )
    return lines


def _action(view: HostView, digest: str | None) -> str:
    if view.container.digest != digest:
        return "replace"
    return "register" if not view.in_service else "check"  # on the digest, not healthy in service


@deploy.command()
@click.argument("service")
@output_option()
@pass_ops
def status(ctx: OpsContext, service: str) -> None:
    """Per host: the digest running, since when, healthy or not, in the target group or not."""
    from ops.workflows.deploy import service_status
    from ops.workflows.deploy_spec import load_spec

    settings = ctx.settings
    spec = load_spec(settings.env, service)
    result = service_status(settings, spec)
    if ctx.output == "json":
        print_json(result.as_dict())
        return
    print_table(
        ["instance", "name", "digest", "healthy", "in service", "since", "note"],
        [
            (
                v.host.instance_id,
                v.host.name,
                _short(v.container.digest),
                {True: "yes", False: "no", None: "-"}[v.container.healthy],
                "yes" if v.in_service else "no",
                v.container.since,
                v.container.error or "",
            )
            for v in result.hosts
        ],
        title=f"{service} ({spec.repository.name})",
        no_color=ctx.no_color,
    )


def _note(text: str) -> None:
    click.echo(f"ops: {text}", err=True)


def _result(result: HostResult) -> None:
    detail = (result.stdout or result.stderr).strip().splitlines()
    click.echo(
        f"{result.instance_id} {result.name} {result.status}"
        + (f": {detail[-1][:200]}" if detail else ""),
        err=True,
    )


def _unchanged(unchanged: Mapping[str, str]) -> None:
    if unchanged:
        names = ", ".join(sorted(unchanged.values()))
        _note(f"{len(unchanged)} host(s) unchanged, already on that digest: {names}")


def _finish(
    ctx: OpsContext,
    outcome: DeployOutcome,
    request: DeployRequest,
) -> int:
    """The summary, and the exit code: 0 done, 3 a batch failed or a gate held, 130 stopped."""
    service, image = request.service, request.image
    report = outcome.report
    code = report.exit_code
    if code == ExitCode.HOSTS_FAILED:
        code = ExitCode.STOPPED  # a failed host halts the deploy: later batches never start
    if outcome.rollback is not None and outcome.rollback.exit_code not in (ExitCode.OK,):
        _note(f"the rollback (run {outcome.rollback.run_id}) did not finish cleanly")
    if ctx.output == "json":
        print_json(
            {
                "run_id": report.run_id,
                "service": service,
                "image": image,
                "exit_code": int(code),
                "failed_batch": None if outcome.failed_batch is None else outcome.failed_batch + 1,
                "gate": report.gate,
                "rollback_run_id": outcome.rollback.run_id if outcome.rollback else None,
                "counts": report.counts,
                "unchanged": sorted(request.unchanged.values()),
            }
        )
    _unchanged(request.unchanged)
    if report.gate:
        _note(f"stopped by a gate: {report.gate}")
    if outcome.failed_batch is not None:
        back = f"; rolled back in run {outcome.rollback.run_id}" if outcome.rollback else ""
        _note(f"batch {outcome.failed_batch + 1} failed; the deploy halted{back}")
    if code == ExitCode.OK and ctx.output != "json":
        click.echo(f"{service}: every host runs {image} (run {report.run_id})")
    return int(code)


def _execute(ctx: OpsContext, prepared: Prepared) -> None:
    from ops.journal.store import open_journal
    from ops.workflows import deploy_run as wf
    from ops.workflows.deploy_steps import load_fleet

    settings = ctx.settings
    request = prepared.request
    if not request.batches:  # every host runs the image already: no lock, no run
        if ctx.output == "json":
            print_json(
                {
                    "run_id": None,
                    "service": request.service,
                    "image": request.image,
                    "exit_code": 0,
                    "unchanged": sorted(request.unchanged.values()),
                }
            )
        _unchanged(request.unchanged)
        if ctx.output != "json":
            click.echo(f"{request.service}: every host runs {request.image} already; nothing to do")
        raise click.exceptions.Exit(0)
    tag = uuid.uuid4().hex[:12]
    arguments_tag = {"lease": tag}
    with wf.service_lock(settings, request.service, tag, _note) as beat:
        fleet = load_fleet(settings, prepared.spec, prepared.hosts)
        with open_journal() as journal:
            outcome = wf.drive(
                settings, journal, request, fleet, beat, _result, _note, extra=arguments_tag
            )
    raise click.exceptions.Exit(_finish(ctx, outcome, request))


def _also_unchanged(unchanged: Mapping[str, str]) -> str:
    return f" ({len(unchanged)} more run it already and are left alone)" if unchanged else ""


@deploy.command("run")
@click.argument("service")
@click.option("--image", "image", required=True, metavar="REF", help="TAG, @DIGEST or full ref.")
@click.option("--batch", metavar="N|P%", help="Hosts per batch (default: the spec's batch_size).")
@click.option("--min-healthy", metavar="N|P%", help="Hosts that must stay in service.")
@click.option(
    "--rollback-all", is_flag=True, help="On a failed batch, take finished batches back too."
)
@narrowing
@output_option()
@yes_option
@pass_ops
def run_deploy(
    ctx: OpsContext,
    service: str,
    image: str,
    batch: str | None,
    min_healthy: str | None,
    rollback_all: bool,
    instances: tuple[str, ...],
    names: tuple[str, ...],
) -> None:
    """Roll IMAGE out batch by batch: drain, pull by digest, swap, health-check, register.

    Exit 0 when every host runs the image, 2 for bad input (nothing touched),
    3 when a batch failed (it is rolled back; later batches are not touched),
    a gate held the next batch or another run holds the service's lock.
    """
    from ops.workflows import deploy_run as wf

    prepared = wf.prepare(
        ctx.settings,
        service,
        image,
        batch=batch,
        min_healthy=min_healthy,
        rollback_all=rollback_all,
        only=_only(instances, names),
    )
    if prepared.hosts:
        ctx.confirm_change(
            f"deploy {prepared.request.image} to {len(prepared.hosts)} host(s) of {service} "
            f"in batches of {prepared.batch_size}" + _also_unchanged(prepared.request.unchanged)
        )
    _execute(ctx, prepared)


@deploy.command()
@click.argument("service")
@click.option("--to", "to", metavar="DIGEST", help="This digest instead of the journal's.")
@click.option("--batch", metavar="N|P%", help="Hosts per batch (default: the spec's batch_size).")
@click.option("--min-healthy", metavar="N|P%", help="Hosts that must stay in service.")
@narrowing
@output_option()
@yes_option
@pass_ops
def rollback(
    ctx: OpsContext,
    service: str,
    to: str | None,
    batch: str | None,
    min_healthy: str | None,
    instances: tuple[str, ...],
    names: tuple[str, ...],
) -> None:
    """Back to the digest the last deploy replaced (from the journal), batch by batch."""
    from ops.journal.store import open_journal
    from ops.workflows import deploy_run as wf

    with open_journal() as journal:
        prepared = wf.prepare_rollback(
            ctx.settings,
            service,
            journal,
            to=to,
            batch=batch,
            min_healthy=min_healthy,
            only=_only(instances, names),
        )
    if prepared.hosts:
        ctx.confirm_change(
            f"roll {service} back to {prepared.request.image} on {len(prepared.hosts)} host(s)"
            + _also_unchanged(prepared.request.unchanged)
        )
    _execute(ctx, prepared)


def _resume(request: ResumeRequest) -> int:
    """`ops runs resume` of a deploy: the lock taken over, the batch finished, the rest run."""
    from ops import errors
    from ops.engine.runtime import JournalState
    from ops.fleet import target_groups
    from ops.workflows import deploy as views
    from ops.workflows import deploy_run as wf
    from ops.workflows.deploy_spec import load_spec
    from ops.workflows.deploy_steps import load_fleet

    ctx: OpsContext = request.context
    run = request.run
    settings = ctx.settings_for(run.environment)
    deploy_request = wf.DeployRequest.from_arguments(run.arguments)
    spec = load_spec(settings.env, deploy_request.service)
    wanted = {i for batch in deploy_request.batches for i in batch}
    hosts = [
        h
        for h in views.service_hosts(settings, spec, target_groups.elbv2_client(settings))
        if h.instance_id in wanted
    ]
    missing = wanted - {h.instance_id for h in hosts}
    if missing:
        raise errors.BadInput(f"hosts of run {run.id} are gone: {', '.join(sorted(missing))}")
    tag = str(run.arguments.get("lease") or run.id)
    with wf.service_lock(settings, deploy_request.service, tag, _note) as beat:
        fleet = load_fleet(settings, spec, hosts)
        state = JournalState.load(request.journal, run.id)
        outcome = wf.drive(
            settings,
            request.journal,
            deploy_request,
            fleet,
            beat,
            _result,
            _note,
            resumed=(run, state),
        )
    return _finish(ctx, outcome, deploy_request)


def _check(run: Run) -> None:
    from ops.workflows import deploy_run as wf

    wf.DeployRequest.from_arguments(run.arguments)


register_resumer("deploy", _resume, _check)
