"""Bring the whole local fleet up and down as one unit.

Order matters for `down` after a crash: the state file is written before the
first container starts and updated after each stage, and `down` removes by
Docker label and pid file, so a half-built sandbox is always removable.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.config import inventories_dir, known_hosts_path
from ops.errors import BadInput
from ops.fleet.inventory import APP_PORT_TAG, SSH_ENDPOINT_TAG
from ops.project import PACKAGE
from ops.sandbox import alarms, inventory, packages, registry, repo_server, resources, trust
from ops.sandbox.aws_side import AwsSandbox, ContainerHost
from ops.sandbox.emulator.client import AdminError
from ops.sandbox.engine import docker_answers, ensure_docker
from ops.sandbox.host_packages import prepare_hosts
from ops.sandbox.hosts import (
    KNOWN_HOSTS,
    HostSpec,
    free_ports,
    list_hosts,
    port_in_use,
    start_hosts,
    stop_hosts,
)
from ops.sandbox.images import ensure_images
from ops.sandbox.keys import ensure_keypair
from ops.sandbox.spec import SandboxSpec
from ops.sandbox.state import HostRecord, SandboxState, label_for, sandbox_dir, state_file

Echo = Callable[[str], None]


@dataclass
class Status:
    running: bool
    state: SandboxState | None
    aws: dict[str, str]
    containers: list[str]

    def as_dict(self) -> dict[str, Any]:
        state = self.state
        return {
            "running": self.running,
            "phase": state.phase if state else "down",
            "label": state.label if state else None,
            "region": state.region if state else None,
            "endpoints": self.aws,
            "hosts": [vars(h) for h in state.hosts] if state else [],
            "containers_running": self.containers,
            "synthetic": state.synthetic if state else 0,
            "inventory": state.inventory_path if state else None,
            "key": state.key_path if state else None,
            "network": state.network if state else {},
            "package_repo": state.package_repo if state else None,
        }


def inventory_path() -> Path:
    """Beside the sandbox's settings in a project; in the state folder when `ops` runs
    on its packaged defaults, which are not the operator's to write."""
    folder = inventories_dir()
    if folder.resolve().is_relative_to(PACKAGE):
        return sandbox_dir() / "hosts.yml"
    return folder / "sandbox" / "hosts.yml"


SANDBOX_EXTRA = ("moto", "flask")


def require_sandbox_extra() -> None:
    """moto's server is an extra, not a dependency: say which one before anything starts."""
    missing = [name for name in SANDBOX_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise BadInput(
            f"ops sandbox needs {', '.join(missing)}: install the sandbox extra, "
            "pip install 'fleetops[sandbox]'"
        )


def status() -> Status:
    state = SandboxState.load(state_file())
    if state is None:
        return Status(False, None, {}, [])
    aws: dict[str, str] = {}
    with contextlib.suppress(Exception):
        sandbox = AwsSandbox.attach(sandbox_dir())
        if sandbox.running():
            aws = {"moto": sandbox.moto_url, "ssm": sandbox.ssm_url}
    containers: list[str] = []
    if state.hosts:
        with contextlib.suppress(Exception):
            containers = [h.container for h in list_hosts(state.label)]
    running = bool(aws) and state.phase == "up" and len(containers) == len(state.hosts)
    return Status(running, state, aws, containers)


def env() -> dict[str, str]:
    """The variables that point boto3 and `ops` at this sandbox."""
    state = SandboxState.load(state_file())
    if state is None:
        raise BadInput("no sandbox is up; run `ops sandbox up` first")
    sandbox = AwsSandbox.attach(sandbox_dir())
    keys = {"OPS_SSH_KEY": state.key_path} if state.key_path else {}
    image_registry = registry.address()
    if image_registry:
        keys["OPS_SANDBOX_REGISTRY"] = image_registry
    return {**sandbox.env(), "OPS_ENV": "sandbox", **keys}


def _check_ports(ports: list[int]) -> None:
    taken = [port for port in ports if port_in_use(port)]
    if taken:
        raise BadInput(f"port {taken[0]} on 127.0.0.1 is already taken; free it or pick another")


def up(
    spec: SandboxSpec,
    *,
    region: str = "us-east-1",
    ssh_base_port: int | None = None,
    alarm_names: list[str] | None = None,
    echo: Echo = print,
) -> Status:
    """Start everything `spec` asks for, or report the sandbox that already runs."""
    require_sandbox_extra()
    current = status()
    if current.state is not None:
        if current.state.phase in ("up", "starting"):
            return current
        down(echo=echo)  # a failed earlier attempt: clear it before starting afresh
    folder = sandbox_dir()
    plans = spec.hosts()
    if ssh_base_port is not None:
        ssh_ports = [ssh_base_port + i for i in range(len(plans))]
        _check_ports(ssh_ports)  # before anything starts; start_hosts checks again at start
        app_ports = free_ports(len(plans))
    else:
        ports = free_ports(2 * len(plans))  # distinct, unlike repeated free_port() calls
        ssh_ports, app_ports = ports[::2], ports[1::2]
    if plans:
        ensure_docker(folder)
        images_started = time.monotonic()
        ensure_images({p.platform for p in plans}, echo=echo)
        echo(f"images ready in {time.monotonic() - images_started:.1f} s")
    state = SandboxState(
        label=label_for(folder),
        created_at=time.time(),
        region=region,
        synthetic=spec.synthetic,
        seed=spec.seed,
    )
    state.save(state_file())
    try:
        sandbox = AwsSandbox(folder, region=region, seed=spec.seed)
        sandbox.start()
        echo(f"moto on {sandbox.moto_url}, Run Command emulator on {sandbox.ssm_url}")
        taken = set(ssh_ports) | set(app_ports)
        repo_port = next(p for p in free_ports(len(taken) + 1) if p not in taken)
        repo_server.start(folder, packages.build_repository(folder / "repo"), repo_port)
        state.package_repo = f"http://127.0.0.1:{repo_port}"
        state.save(state_file())
        echo(f"package repository on {state.package_repo}")
        specs = [
            HostSpec(name=p.name, platform=p.platform, role=p.role, ssh_port=s, app_port=a)
            for p, s, a in zip(plans, ssh_ports, app_ports, strict=True)
        ]
        if specs:
            state.key_path = str(ensure_keypair(folder / "keys").private_path)
            running = start_hosts(specs, key_dir=folder / "keys", label=state.label)
            trust.add(folder / "keys" / KNOWN_HOSTS, known_hosts_path())
            echo(f"{len(running)} container hosts answer SSH")
            prepare_hosts(
                [(r.container, s.platform) for r, s in zip(running, specs, strict=True)],
                state.package_repo,
            )
            echo("container hosts on the older versions of the sandbox packages")
            ids = sandbox.add_container_hosts(
                [
                    ContainerHost(
                        container=r.container,
                        name=s.name,
                        role=s.role,
                        platform=s.platform,
                        tags={
                            "Name": s.name,
                            "Env": "sandbox",
                            "Role": s.role,
                            # SSH and the app are reached on loopback ports, not the private IP
                            SSH_ENDPOINT_TAG: f"127.0.0.1:{s.ssh_port}",
                            APP_PORT_TAG: str(s.app_port),
                        },
                    )
                    for r, s in zip(running, specs, strict=True)
                ]
            )
            state.hosts = [
                HostRecord(
                    instance_id=i,
                    name=s.name,
                    role=s.role,
                    platform=s.platform,
                    container=r.container,
                    ssh_port=s.ssh_port,
                    app_port=s.app_port,
                )
                for i, s, r in zip(ids, specs, running, strict=True)
            ]
        if spec.synthetic:
            sandbox.add_synthetic(spec.synthetic, tags={"Env": "sandbox", "Role": "worker"})
            echo(f"{spec.synthetic} synthetic instances registered")
        web = [(h.instance_id, h.app_port) for h in state.hosts if h.role == "web"]
        network = resources.furnish(sandbox.env(), web)
        state.network = vars(network)
        state.alarms = list(alarm_names or [])
        alarms.create_alarms(sandbox.env(), state.alarms, network.load_balancer_arn)
        if state.hosts:
            state.inventory_path = str(inventory.write(state, inventory_path()))
        state.phase = "up"
        state.save(state_file())
    except BaseException:
        state.phase = "failed"
        state.save(state_file())
        down(echo=lambda _msg: None)
        raise
    return status()


def down(echo: Echo = print) -> bool:
    """Remove every container, process, port and file `up` made. Safe to repeat."""
    folder = sandbox_dir()
    state = SandboxState.load(state_file())
    label = state.label if state else label_for(folder)
    removed = stop_hosts(label) if docker_answers() else 0
    with contextlib.suppress(Exception):
        AwsSandbox.attach(folder).stop()
    registry.stop()
    repo_server.stop(folder)
    if state and state.inventory_path:
        Path(state.inventory_path).unlink(missing_ok=True)
    trust.remove(folder / "keys" / KNOWN_HOSTS, known_hosts_path())
    shutil.rmtree(folder, ignore_errors=True)
    echo(f"sandbox down: {removed} containers removed")
    return state is not None


def _attached() -> AwsSandbox:
    if SandboxState.load(state_file()) is None:
        raise BadInput("no sandbox is up; run `ops sandbox up` first")
    return AwsSandbox.attach(sandbox_dir())


def calls(since: int = 0) -> list[dict[str, Any]]:
    """Every call the sandbox served, SSM (the emulator) and the rest (moto), by time;
    the first `since` of them left out."""
    sandbox = _attached()
    served = [{**call, "service": "ssm"} for call in sandbox.calls()]
    served += sandbox.moto_calls()
    served.sort(key=lambda call: float(call.get("time") or 0))
    return served[since:]


def set_fault(
    kind: str, *, instances: list[str] | None, fraction: float | None, **params: Any
) -> None:
    """The emulator validates the fault; its refusal is the operator's bad input.
    An `alarm` fault goes to moto's CloudWatch instead: the alarm `name` to ALARM."""
    if kind == "alarm":
        _set_alarm(instances, fraction, params)
        return
    try:
        _attached().set_fault(kind, instances=instances, fraction=fraction, **params)
    except AdminError as exc:
        raise BadInput(f"fault {kind} refused: {_admin_message(exc)}") from None


def _set_alarm(instances: list[str] | None, fraction: float | None, params: dict[str, Any]) -> None:
    if instances or fraction is not None:
        raise BadInput("fault alarm takes no --instance or --fraction: name the alarm")
    unknown = sorted(set(params) - {"name", "state"})
    if "name" not in params or unknown:
        raise BadInput("fault alarm needs --param name=ALARM_NAME (and optionally state=...)")
    state = str(params.get("state", "ALARM"))
    alarms.set_state(_attached().env(), str(params["name"]), state, "fleetops sandbox fault")


def clear_faults() -> None:
    """Every emulator fault off, and every alarm the sandbox made back to OK."""
    sandbox = _attached()
    sandbox.clear_faults()
    state = SandboxState.load(state_file())
    for name in state.alarms if state else []:
        alarms.set_state(sandbox.env(), name, "OK", "fleetops sandbox: faults cleared")


def set_throttle(*, multiplier: float | None, rates: dict[str, tuple[float, float]] | None) -> None:
    try:
        _attached().set_throttle(multiplier=multiplier, rates=rates)
    except AdminError as exc:
        raise BadInput(f"throttle refused: {_admin_message(exc)}") from None


def _admin_message(exc: AdminError) -> str:
    """The emulator's own one-line reason, without the HTTP framing."""
    text = str(exc)
    body = text.split(": ", 2)[-1]
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        data = json.loads(body)
        return str(data.get("message") or data.get("Message") or data)
    return body
