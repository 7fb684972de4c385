"""`ops sandbox`: the local fleet for tests, benchmarks and rehearsals."""

from __future__ import annotations

import json
import shlex

import click

from ops.cli.context import OpsContext, pass_ops
from ops.cli.options import output_option
from ops.errors import BadInput
from ops.render.output import print_json, print_table, timestamp


@click.group()
def sandbox() -> None:
    """A local fleet (containers + moto + Run Command emulator) to rehearse on."""


@sandbox.command()
@click.option("--hosts", type=int, default=None, help="Container hosts (default 3, Debian).")
@click.option(
    "--platforms", metavar="SPEC", help="Host mix, e.g. debian:4,al2:1,al2023:1 (AL = stand-ins)."
)
@click.option("--synthetic", type=int, default=0, show_default=True, help="Simulated instances.")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for simulated behaviour."
)
@click.option(
    "--ssh-base-port",
    type=click.IntRange(1024, 65000),
    default=None,
    help="First SSH port (default: any free loopback port).",
)
@click.option(
    "--registry",
    "with_registry",
    is_flag=True,
    help="Also serve an image registry on loopback holding hello:v1, v2 and v3.",
)
@output_option()
@pass_ops
def up(
    ctx: OpsContext,
    hosts: int | None,
    platforms: str | None,
    synthetic: int,
    seed: int,
    ssh_base_port: int | None,
    with_registry: bool,
) -> None:
    """Bring the fleet up (or show the one already running)."""
    from ops.sandbox import fleet, registry
    from ops.sandbox.spec import build_spec

    spec = build_spec(hosts, platforms, synthetic, seed)
    result = fleet.up(
        spec,
        region=ctx.settings.region,
        ssh_base_port=ssh_base_port,
        alarm_names=ctx.settings.alarm_names,
        echo=_err,
    )
    if with_registry:
        registry.ensure(echo=_err)
        registry.seed_secret(fleet.env())
    _print_status(ctx, result.as_dict())
    if ctx.output == "table":
        click.echo('\nUse it:  eval "$(ops sandbox env)"  then e.g.  ops runs list')


@sandbox.command()
def down() -> None:
    """Remove every container, process and file of the sandbox (idempotent)."""
    from ops.sandbox import fleet

    fleet.down(echo=lambda msg: click.echo(msg, err=True))


@sandbox.command()
@output_option()
@pass_ops
def status(ctx: OpsContext) -> None:
    """Is the sandbox up, and what runs in it."""
    from ops.sandbox import fleet

    _print_status(ctx, fleet.status().as_dict())


@sandbox.command("env")
def env_cmd() -> None:
    """Print `export` lines that point boto3 and ops at the sandbox."""
    from ops.sandbox import fleet

    for key, value in sorted(fleet.env().items()):
        click.echo(f"export {key}={shlex.quote(value)}")


@sandbox.command()
@click.option("--since", type=click.IntRange(0), default=0, help="Skip the first N calls.")
@click.option("--operation", help="Only calls of this operation, e.g. SendCommand.")
@output_option("table", "json")
@pass_ops
def calls(ctx: OpsContext, since: int, operation: str | None) -> None:
    """Every AWS API call the sandbox served, by time: SSM calls from the Run Command
    emulator, EC2, ELBv2, S3 and the rest from moto."""
    from ops.sandbox import fleet

    log = [
        {"n": n, **c}
        for n, c in enumerate(fleet.calls(since), start=since + 1)
        if operation in (None, c.get("operation"))
    ]
    if ctx.output == "json":
        print_json(log)
        return
    print_table(
        ["#", "time", "service", "operation", "parameters", "outcome", "throttled"],
        [
            (
                c["n"],
                timestamp(c.get("time")),
                c.get("service"),
                c.get("operation"),
                _summary(c.get("params")),
                f"{c.get('status')} {c.get('error') or ''}".strip(),
                "yes" if c.get("throttled") else "",
            )
            for c in log
        ],
        no_color=ctx.no_color,
    )


@sandbox.group()
def fault() -> None:
    """Inject or clear faults while a run is in progress."""


@fault.command("set")
@click.argument("kind")
@click.option("--instance", "instances", multiple=True, help="Instance id (repeatable).")
@click.option("--fraction", type=click.FloatRange(0, 1), help="Fraction of the fleet instead.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Fault parameter, e.g. exit_code=2 or delay_s=30.",
)
def fault_set(
    kind: str, instances: tuple[str, ...], fraction: float | None, params: tuple[str, ...]
) -> None:
    """Inject a fault of KIND on some instances or a fraction of the fleet.

    KIND: agent_offline, undeliverable, slow_pickup (seconds=5), fail (exit_code=1),
    hang, terminate (after_seconds=0.5), error_5xx (fleet-wide, fraction=0.1),
    lost_response (fleet-wide, fraction=0.1: SendCommand runs but answers 500),
    alarm (name=ALARM_NAME: that CloudWatch alarm goes to ALARM; state=OK|ALARM|...).
    """
    from ops.sandbox import fleet

    values: dict[str, object] = {}
    for item in params:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise BadInput(f"--param {item!r}: expected KEY=VALUE")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    fleet.set_fault(kind, instances=list(instances) or None, fraction=fraction, **values)
    click.echo(f"fault {kind} set", err=True)


@fault.command("clear")
def fault_clear() -> None:
    """Remove every fault, and put every sandbox alarm back to OK."""
    from ops.sandbox import fleet

    fleet.clear_faults()
    click.echo("faults cleared", err=True)


@sandbox.command()
@click.option("--multiplier", type=click.FloatRange(0.001, 1000), help="Scale every rate.")
@click.option(
    "--rate",
    "rates",
    multiple=True,
    metavar="OP=RATE[/BURST]",
    help="Rate for one operation, e.g. SendCommand=2/5.",
)
def throttle(multiplier: float | None, rates: tuple[str, ...]) -> None:
    """Change the emulator's request rates at run time."""
    from ops.sandbox import fleet

    parsed: dict[str, tuple[float, float]] = {}
    for item in rates:
        op, sep, value = item.partition("=")
        rate, _, burst = value.partition("/")
        try:
            parsed[op] = (float(rate), float(burst or rate))
        except ValueError:
            raise BadInput(f"--rate {item!r}: expected OP=RATE[/BURST]") from None
        if not sep or not op:
            raise BadInput(f"--rate {item!r}: expected OP=RATE[/BURST]")
    fleet.set_throttle(multiplier=multiplier, rates=parsed or None)


def _summary(params: object, limit: int = 60) -> str:
    text = json.dumps(params, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _err(message: str) -> None:
    click.echo(message, err=True)


def _print_status(ctx: OpsContext, data: dict[str, object]) -> None:
    if ctx.output == "json":
        print_json(data)
        return
    click.echo(f"sandbox: {data['phase']}  running={data['running']}  label={data['label']}")
    for name, url in dict(data["endpoints"]).items():  # type: ignore[call-overload]
        click.echo(f"  {name}: {url}")
    if data["synthetic"]:
        click.echo(f"  synthetic instances: {data['synthetic']}")
    hosts = list(data["hosts"])  # type: ignore[call-overload]
    if hosts:
        print_table(
            ["instance", "name", "role", "platform", "ssh", "app port", "container"],
            [
                (
                    h["instance_id"],
                    h["name"],
                    h["role"],
                    h["platform"] + (" (stand-in)" if h["platform"].startswith("al") else ""),
                    f"127.0.0.1:{h['ssh_port']}",
                    h["app_port"],
                    h["container"],
                )
                for h in hosts
            ],
            no_color=ctx.no_color,
        )
        click.echo(f"  inventory: {data['inventory']}\n  key: {data['key']}")
