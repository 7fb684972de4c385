"""`ops docker status`: one read-only probe per host over SSM, and drift from the settings.

The probe is fixed text (a POSIX sh wrapper around a short python3 script);
the only variable part, the configured user names, is validated by the
settings and shlex-quoted. Each host prints one `OPS-DOCKER {json}` line.
That line is fleet data: it is parsed as untrusted - every field checked for
its type and cut to a length - and a host whose answer does not parse is
reported as such, never guessed at.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ops.config import DockerSettings
from ops.engine.budget import Amount, FailureBudget
from ops.engine.fanout import FanOut
from ops.fleet.discovery import Host
from ops.fleet.inventory import InventoryHost
from ops.transports.ssm import SUCCESS, CommandSpec, HostResult, SsmTransport

PREFIX = "OPS-DOCKER "
ROTATION_DRIVERS = ("json-file", "local")
DEFAULT_LOG_DRIVER = "json-file"
_TEXT_LIMIT = 200

_PROBE = r"""
import grp, json, os, pwd, shutil, subprocess, sys
out = {}
def run(argv, timeout=20):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           timeout=timeout, universal_newlines=True)
        return p.returncode, p.stdout
    except Exception:
        return None, ""
out["installed"] = shutil.which("dockerd") is not None
if shutil.which("docker"):
    out["client_version"] = run(["docker", "--version"])[1].strip()
rc, text = run(["docker", "info", "--format", "{{json .}}"])
info = {}
if rc == 0:
    try:
        info = json.loads(text)
    except ValueError:
        info = {}
out["running"] = bool(info)
for key in ("ServerVersion", "Driver", "LoggingDriver", "LiveRestoreEnabled",
            "ContainersRunning", "DockerRootDir"):
    if key in info:
        out[key] = info[key]
path = "/etc/docker/daemon.json"
if os.path.exists(path):
    try:
        with open(path) as fh:
            text = fh.read()
        cfg = json.loads(text) if text.strip() else {}
        if not isinstance(cfg, dict):
            raise ValueError("not a JSON object")
        out["config"] = {k: cfg[k] for k in ("log-driver", "log-opts", "live-restore",
                                              "storage-driver", "data-root") if k in cfg}
    except Exception as exc:
        out["config_error"] = str(exc)[:200]
else:
    out["config"] = {}
root = out.get("DockerRootDir") or out.get("config", {}).get("data-root") or "/var/lib/docker"
if os.path.isdir(root):
    rc, text = run(["du", "-s", "-x", "-B1", root], timeout=30)
    if rc == 0 and text.split():
        out["disk_bytes"] = int(text.split()[0])
    st = os.statvfs(root)
    out["fs_free_bytes"] = st.f_bavail * st.f_frsize
out["restart_pending"] = os.path.exists("/var/lib/fleetops/docker-restart-pending")
try:
    out["group"] = sorted(grp.getgrnam("docker").gr_mem)
except KeyError:
    out["group"] = None
users = []
for name in sys.argv[1:]:
    try:
        pwd.getpwnam(name)
        users.append(name)
    except KeyError:
        pass
out["users"] = users
if os.path.isdir("/run/systemd/system"):
    out["enabled"] = run(["systemctl", "is-enabled", "docker"])[1].strip()
print("OPS-DOCKER " + json.dumps(out, sort_keys=True))
"""


def probe_script(users: Sequence[str]) -> str:
    """The one command every host runs; user names are arguments, shlex-quoted."""
    args = " ".join(shlex.quote(u) for u in users)
    return (
        "if ! command -v python3 >/dev/null 2>&1; then\n"
        '  echo \'OPS-DOCKER {"error": "python3 is missing"}\'; exit 0\n'
        "fi\n"
        f"python3 - {args} <<'OPS_DOCKER_PROBE'\n{_PROBE.strip()}\nOPS_DOCKER_PROBE\n"
    )


# parsing untrusted answers -----------------------------------------------------
def _text(value: Any) -> str | None:
    return value[:_TEXT_LIMIT] if isinstance(value, str) else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _names(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return [v[:64] for v in value if isinstance(v, str)][:200]


def parse_probe(stdout: str) -> dict[str, Any] | None:
    """The last OPS-DOCKER line as a dict, or None when no line parses as a JSON object."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(PREFIX):
            try:
                data = json.loads(line[len(PREFIX) :])
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None


@dataclass
class HostStatus:
    instance_id: str
    name: str
    platform: str
    past_end_of_support: bool
    answered: bool = False
    error: str = ""
    installed: bool | None = None
    version: str = ""
    running: bool | None = None
    storage_driver: str = ""
    logging_driver: str = ""
    log_max_size: str = ""
    log_max_file: str = ""
    live_restore: bool | None = None
    live_restore_running: bool | None = None
    containers_running: int | None = None
    disk_bytes: int | None = None
    fs_free_bytes: int | None = None
    service_enabled: str = ""
    restart_pending: bool = False
    docker_group: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)

    @property
    def rotation(self) -> str:
        if self.log_max_size and self.log_max_file:
            return f"{self.log_max_size} x {self.log_max_file}"
        return ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "platform": self.platform,
            "past_end_of_support": self.past_end_of_support,
            "answered": self.answered,
            "error": self.error,
            "installed": self.installed,
            "version": self.version,
            "running": self.running,
            "storage_driver": self.storage_driver,
            "logging_driver": self.logging_driver,
            "rotation": {"max_size": self.log_max_size, "max_file": self.log_max_file}
            if self.rotation
            else None,
            "live_restore": self.live_restore,
            "live_restore_running": self.live_restore_running,
            "containers_running": self.containers_running,
            "disk_bytes": self.disk_bytes,
            "fs_free_bytes": self.fs_free_bytes,
            "service_enabled": self.service_enabled,
            "restart_pending": self.restart_pending,
            "docker_group": self.docker_group,
            "drift": self.drift,
        }


def _version(data: dict[str, Any]) -> str:
    server = _text(data.get("ServerVersion"))
    if server:
        return server
    client = _text(data.get("client_version")) or ""
    # "Docker version 20.10.24+dfsg1, build 297e128" -> 20.10.24+dfsg1
    words = client.replace(",", " ").split()
    return words[2] if len(words) >= 3 and words[:2] == ["Docker", "version"] else ""


def fill(status: HostStatus, data: dict[str, Any], docker: DockerSettings) -> HostStatus:
    """Copy the checked facts of one probe answer into status, then work out the drift."""
    status.answered = True
    status.error = _text(data.get("error")) or ""
    status.installed = _flag(data.get("installed"))
    status.version = _version(data)
    status.running = _flag(data.get("running"))
    status.storage_driver = _text(data.get("Driver")) or ""
    status.logging_driver = _text(data.get("LoggingDriver")) or ""
    status.live_restore_running = _flag(data.get("LiveRestoreEnabled"))
    status.containers_running = _count(data.get("ContainersRunning"))
    status.disk_bytes = _count(data.get("disk_bytes"))
    status.fs_free_bytes = _count(data.get("fs_free_bytes"))
    status.service_enabled = _text(data.get("enabled")) or ""
    status.restart_pending = data.get("restart_pending") is True
    status.docker_group = _names(data.get("group")) or []
    config = data.get("config")
    config_error = _text(data.get("config_error"))
    driver = DEFAULT_LOG_DRIVER
    if isinstance(config, dict):
        driver = _text(config.get("log-driver")) or DEFAULT_LOG_DRIVER
        opts = config.get("log-opts")
        if isinstance(opts, dict):
            status.log_max_size = _text(opts.get("max-size")) or ""
            status.log_max_file = _text(opts.get("max-file")) or ""
        status.live_restore = _flag(config.get("live-restore"))
    status.drift = drift(status, docker, driver, config_error, _names(data.get("users")) or [])
    return status


def drift(
    status: HostStatus,
    docker: DockerSettings,
    driver: str,
    config_error: str | None,
    users: Sequence[str],
) -> list[str]:
    """What differs from the configured settings, in words an operator acts on."""
    if status.error:
        return [status.error]
    if not status.installed:
        return ["not installed"]
    found: list[str] = []
    if not status.running:
        found.append("daemon not running")
    if status.service_enabled and status.service_enabled != "enabled":
        found.append(f"service {status.service_enabled}, not enabled at boot")
    if config_error:
        found.append(f"daemon.json unreadable: {config_error}")
    elif driver not in ROTATION_DRIVERS:
        found.append(f"log-driver {driver}: rotation not applied")
    else:
        if status.log_max_size != docker.log_max_size:
            found.append(
                f"log max-size {status.log_max_size or 'unset'}, want {docker.log_max_size}"
            )
        if status.log_max_file != str(docker.log_max_file):
            found.append(
                f"log max-file {status.log_max_file or 'unset'}, want {docker.log_max_file}"
            )
    live_restore = status.live_restore is True  # unset is dockerd's default: off
    if live_restore != docker.live_restore and not config_error:
        found.append(f"live-restore {live_restore}, want {docker.live_restore}")
    if status.running and not config_error:
        if status.logging_driver and status.logging_driver != driver:
            found.append(f"daemon runs log-driver {status.logging_driver}: restart pending")
        want_live = status.live_restore is True
        if status.live_restore_running is not None and status.live_restore_running != want_live:
            found.append("daemon runs another live-restore: restart pending")
    if status.restart_pending:
        found.append("restart held: containers were running and live-restore was off")
    for user in users:
        if user in docker.users and user not in status.docker_group:
            found.append(f"{user} not in the docker group")
    return found


def host_status(result: HostResult, host: InventoryHost, docker: DockerSettings) -> HostStatus:
    """One host's SSM result as a status row; a host that did not answer says why."""
    platform = host.platform
    status = HostStatus(host.instance_id, host.name, platform.key, platform.past_end_of_support())
    if result.status != SUCCESS:
        status.error = f"{result.status}: {(result.stderr or result.stdout).strip()[-200:]}".strip()
        status.drift = [status.error]
        return status
    data = parse_probe(result.stdout)
    if data is None:
        status.error = "the host's answer was not a docker status line"
        status.drift = [status.error]
        return status
    return fill(status, data, docker)


def gather(
    transport: SsmTransport,
    hosts: Sequence[InventoryHost],
    docker: DockerSettings,
    concurrency: Amount,
) -> list[HostStatus]:
    """One fan-out of the probe; every host gets a row, answered or not."""
    by_id = {h.instance_id: h for h in hosts}
    found: dict[str, HostStatus] = {}

    def on_result(result: HostResult) -> None:
        host = by_id.get(result.instance_id)
        if host is not None:
            found[host.instance_id] = host_status(result, host, docker)

    spec = CommandSpec(
        commands=[probe_script(docker.users)],
        execution_timeout=120,
        comment="ops docker status (read-only)",
    )
    budget = FailureBudget(len(hosts), concurrency, Amount(100, True))
    FanOut(transport, spec).run_client_side(
        [Host(instance_id=h.instance_id, name=h.name) for h in hosts], budget, on_result
    )
    rows: list[HostStatus] = []
    for host in hosts:
        row = found.get(host.instance_id)
        if row is None:
            platform = host.platform
            row = HostStatus(
                host.instance_id,
                host.name,
                platform.key,
                platform.past_end_of_support(),
                error="no answer",
                drift=["no answer"],
            )
        rows.append(row)
    return rows
