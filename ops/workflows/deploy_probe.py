"""The read-only probe `ops deploy status` and `plan` run on each host.

A small Python program sent as one SSM command: it asks the host's Docker
engine about the service's container and tries the HTTP health check on the
container's own port label. It prints one JSON line of chosen fields only;
`docker inspect` in full would carry the container's environment (secrets)
into SSM's output, so it never leaves the host.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from ops.transports.ssm import CommandSpec
from ops.workflows.deploy_spec import ServiceSpec

DIGEST_LABEL = "org.fleetops.digest"
DEPLOYED_AT_LABEL = "org.fleetops.deployed-at"
PORT_LABEL = "org.fleetops.port"
MARKER = "OPS-DEPLOY-PROBE "

PROBE = r"""
import json, subprocess, sys, urllib.request, urllib.error
name, path = sys.argv[1], sys.argv[2]
out = {"present": False}
try:
    proc = subprocess.run(["docker", "inspect", "--type", "container", name],
                          capture_output=True, text=True, timeout=30)
except (OSError, subprocess.TimeoutExpired) as exc:
    out["error"] = "docker: %s" % exc
    proc = None
if proc is not None and proc.returncode == 0:
    c = json.loads(proc.stdout)[0]
    labels = c.get("Config", {}).get("Labels") or {}
    state = c.get("State", {})
    out.update(present=True, image=c.get("Config", {}).get("Image"), image_id=c.get("Image"),
               running=bool(state.get("Running")), started_at=state.get("StartedAt"),
               docker_health=(state.get("Health") or {}).get("Status"),
               digest=labels.get("org.fleetops.digest"),
               deployed_at=labels.get("org.fleetops.deployed-at"),
               port=labels.get("org.fleetops.port"))
    if path != "-" and out["running"] and (out["port"] or "").isdigit():
        url = "http://127.0.0.1:%s%s" % (out["port"], path)
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                out["http_status"] = r.status
        except urllib.error.HTTPError as exc:
            out["http_status"] = exc.code
        except Exception as exc:
            out["http_status"] = None
            out["http_error"] = str(exc)[:200]
elif proc is not None and "No such" not in proc.stderr:
    out["error"] = proc.stderr.strip()[-300:]
print("OPS-DEPLOY-PROBE " + json.dumps(out))
"""


def probe_command(spec: ServiceSpec, output_bucket: str | None = None) -> CommandSpec:
    """One command for every host: the container name and check path are quoted arguments."""
    path = spec.health_check.path if spec.health_check.kind == "http" else "-"
    line = " ".join(
        ["python3", "-c", shlex.quote(PROBE), shlex.quote(spec.container_name), shlex.quote(path)]
    )
    return CommandSpec(
        commands=[line],
        execution_timeout=120,
        comment=f"ops deploy status {spec.name}",
        output_bucket=output_bucket,
    )


@dataclass(frozen=True)
class ContainerState:
    """What one host runs for the service, as far as the probe could tell."""

    present: bool
    image: str | None = None
    digest: str | None = None
    running: bool = False
    healthy: bool | None = None
    since: str | None = None
    error: str | None = None


def _digest_of(data: dict[str, Any]) -> str | None:
    label = data.get("digest")
    if isinstance(label, str) and label.startswith("sha256:"):
        return label
    image = data.get("image") or ""
    if "@sha256:" in image:
        return str(image.split("@", 1)[1])
    return None


def parse_probe(stdout: str, spec: ServiceSpec) -> ContainerState:
    """Read the probe's line; anything else (a host without python3, garbage) is an error state."""
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith(MARKER)), None)
    if line is None:
        return ContainerState(present=False, error="no probe answer: " + stdout.strip()[-200:])
    try:
        data = json.loads(line[len(MARKER) :])
    except json.JSONDecodeError:
        return ContainerState(present=False, error="probe answer is not JSON")
    if not isinstance(data, dict):
        return ContainerState(present=False, error="probe answer is not an object")
    if not data.get("present"):
        return ContainerState(present=False, error=data.get("error"))
    running = bool(data.get("running"))
    healthy: bool | None
    if not running:
        healthy = False
    elif spec.health_check.kind == "image":
        status = data.get("docker_health")
        healthy = None if status in (None, "starting") else status == "healthy"
    else:
        healthy = data.get("http_status") == 200 and data.get("docker_health") != "unhealthy"
    return ContainerState(
        present=True,
        image=data.get("image"),
        digest=_digest_of(data),
        running=running,
        healthy=healthy,
        since=data.get("deployed_at") or data.get("started_at"),
        error=data.get("http_error"),
    )
