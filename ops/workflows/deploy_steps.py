"""The per-host pieces a rolling deploy (or rollback) is made of, for the runtime to schedule.

Per batch: take the lock once for the run (ops.fleet.lock.held), drain the
batch, apply `playbooks/container_service.yml` with `role_vars` (pull by
digest, stop, start, wait healthy), register and gate, then `verify_batch`
against `ops deploy status`'s probe. Everything here is plain data or
read-only, so a resumed run can call it again safely.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ops.errors import BadInput
from ops.fleet.discovery import Host
from ops.fleet.image_ref import ImageRef
from ops.fleet.inventory import APP_PORT_TAG
from ops.workflows.deploy import HostView
from ops.workflows.deploy_spec import ServiceSpec

PLAYBOOK = Path(__file__).resolve().parents[2] / "playbooks" / "container_service.yml"


def host_port(spec: ServiceSpec, host: Host) -> int:
    """The host's `ops:app-port` tag where hosts share one interface, else the spec's port."""
    raw = host.tags.get(APP_PORT_TAG)
    if raw is None:
        return spec.port
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise BadInput(f"{host.label}: tag {APP_PORT_TAG}={raw!r} is not a port number")
    return int(raw)


def role_vars(
    spec: ServiceSpec, image: ImageRef, host: Host, secrets: Mapping[str, str]
) -> dict[str, Any]:
    """Variables for the container_service role on one host; `image` must be resolved.

    `secrets` are the decrypted values (ops.fleet.parameters.get_secrets): the
    caller must keep them out of the journal and the event log (no_log in the role).
    """
    if not image.digest:
        raise BadInput(f"{image} is not resolved to a digest; resolve it before a batch starts")
    health = spec.health_check
    port = host_port(spec, host)
    return {
        "container_service_name": spec.container_name,
        "container_service_image": image.pinned,
        "container_service_port": port,
        "container_service_env": dict(spec.environment),
        "container_service_secret_env": dict(secrets),
        "container_service_volumes": [v.docker_arg() for v in spec.volumes],
        "container_service_restart": spec.restart,
        "container_service_health_path": health.path if health.kind == "http" else "",
        "container_service_health_timeout": health.timeout_seconds,
    }


def verify_batch(views: list[HostView], digest: str) -> list[str]:
    """Hosts of a finished batch that do not run `digest` healthily; empty when the batch passed."""
    failed = []
    for view in views:
        state = view.container
        if state.digest != digest or state.healthy is not True:
            failed.append(
                f"{view.host.label}: digest {state.digest or 'none'}, "
                f"healthy {state.healthy}{' (' + state.error + ')' if state.error else ''}"
            )
    return failed
