"""Fleet hosts as containers: one container per host, sshd on its own loopback port.

Every host shares the machine's network (`--network host`; the default bridge
is not dependable here and all traffic stays on 127.0.0.1), so a host is told
apart by its ports, its hostname and its container labels. Containers get the
capabilities an inner Docker engine needs later, because `--privileged` is
refused on these machines. A host counts as up only once its sshd completes
a real SSH handshake with the sandbox key and a verified host key.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ops.errors import BadInput, OpsError
from ops.sandbox import host_service
from ops.sandbox.images import ensure_images, image_for
from ops.sandbox.keys import ensure_keypair, load_private_key
from ops.transports.paramiko_import import paramiko

LOOPBACK = "127.0.0.1"
SANDBOX_LABEL = "org.fleetops.sandbox"
HOST_LABEL_PREFIX = "org.fleetops.host."
KNOWN_HOSTS = "known_hosts"
READY_TIMEOUT_S = 90.0
DOCKER_TIMEOUT_S = 120

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_LABEL = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
_ROLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")

# What an inner Docker engine needs, short of --privileged (withheld here).
DOCKER_IN_DOCKER = [
    "--cap-add=ALL",
    "--cap-drop=SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--volume",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
]


@dataclass(frozen=True)
class HostSpec:
    name: str
    platform: str
    role: str
    ssh_port: int
    app_port: int


@dataclass(frozen=True)
class RunningHost:
    name: str
    container: str
    container_id: str
    platform: str
    role: str
    ssh_port: int
    app_port: int
    image: str
    address: str = LOOPBACK
    host_key: str = ""
    ready_seconds: float = 0.0
    status: str = "running"


# --- ports --------------------------------------------------------------------


def port_in_use(port: int) -> bool:
    """True when something already listens on (or holds) 127.0.0.1:port.

    SO_REUSEADDR as sshd sets it: a lingering TIME_WAIT does not count, a
    listener does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    """A loopback port nobody holds right now (the kernel picks it)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all sockets stay bound until every port is picked."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


# --- docker helpers -----------------------------------------------------------


def _docker(*args: str, timeout: float = DOCKER_TIMEOUT_S) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise OpsError(f"docker {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def container_name(label: str, name: str) -> str:
    return f"fleetops-{label}-{name}"


def _check_label(label: str) -> None:
    if not _LABEL.match(label):
        raise BadInput(
            f"sandbox label {label!r} is not allowed: use 1-40 of a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )


def _validate(specs: list[HostSpec], label: str) -> None:
    """Refuse bad specs before a single container starts."""
    _check_label(label)
    if not specs:
        raise BadInput("no hosts to start")
    seen_names: set[str] = set()
    seen_ports: dict[int, str] = {}
    for spec in specs:
        if not _NAME.match(spec.name):
            raise BadInput(
                f"host name {spec.name!r} is not a valid hostname: use a-z 0-9 and '-', "
                "at most 63 characters"
            )
        if spec.name in seen_names:
            raise BadInput(f"host name {spec.name!r} appears twice")
        seen_names.add(spec.name)
        image_for(spec.platform)
        if not _ROLE.match(spec.role):
            raise BadInput(
                f"role {spec.role!r} of {spec.name} is not allowed: use A-Z a-z 0-9 . _ -"
            )
        for kind, port in (("ssh", spec.ssh_port), ("app", spec.app_port)):
            if not 1024 <= port <= 65535:
                raise BadInput(f"{kind} port {port} of {spec.name} is outside 1024-65535")
            if port in seen_ports:
                raise BadInput(f"port {port} is given to both {seen_ports[port]} and {spec.name}")
            seen_ports[port] = f"{spec.name} ({kind})"
    for port, owner in seen_ports.items():
        if port_in_use(port):
            raise BadInput(
                f"port {port} for {owner} is already in use on {LOOPBACK}; "
                "pick a free port or stop what holds it"
            )
    existing = set(_docker("ps", "-a", "--format", "{{.Names}}").split())
    for spec in specs:
        cname = container_name(label, spec.name)
        if cname in existing:
            raise BadInput(f"container {cname} already exists; stop sandbox {label!r} first")


def _run_container(spec: HostSpec, label: str, public_key: str) -> str:
    labels = {
        SANDBOX_LABEL: label,
        f"{HOST_LABEL_PREFIX}name": spec.name,
        f"{HOST_LABEL_PREFIX}platform": spec.platform,
        f"{HOST_LABEL_PREFIX}role": spec.role,
        f"{HOST_LABEL_PREFIX}ssh-port": str(spec.ssh_port),
        f"{HOST_LABEL_PREFIX}app-port": str(spec.app_port),
    }
    args = [
        "create",
        "--name",
        container_name(label, spec.name),
        "--hostname",
        spec.name,
        "--network",
        "host",
        "--restart",
        "no",
        *DOCKER_IN_DOCKER,
        "--env",
        f"SSH_PORT={spec.ssh_port}",
        "--env",
        f"SSH_AUTHORIZED_KEY={public_key}",
    ]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    args += [image_for(spec.platform), *host_service.BOOT_COMMAND]
    container_id = _docker(*args).strip()
    copied = subprocess.run(
        ["docker", "cp", "-", f"{container_id}:/"],
        input=host_service.archive(spec.app_port),
        capture_output=True,
        timeout=DOCKER_TIMEOUT_S,
        check=False,
    )
    if copied.returncode != 0:
        raise OpsError(f"docker cp failed: {copied.stderr.decode(errors='replace').strip()}")
    _docker("start", container_id)
    return container_id


# --- readiness ----------------------------------------------------------------


def _banner(port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _is_running(container: str) -> bool:
    out = _docker("inspect", "--format", "{{.State.Running}}", container)
    return out.strip() == "true"


def _wait_banner(container: str, port: int, deadline: float) -> None:
    while not _banner(port):
        if not _is_running(container):
            logs = subprocess.run(
                ["docker", "logs", "--tail", "20", container],
                capture_output=True,
                text=True,
                timeout=30,
            )
            raise OpsError(f"{container} exited before sshd answered:\n{logs.stderr}{logs.stdout}")
        if time.monotonic() > deadline:
            raise OpsError(f"sshd of {container} did not answer on {LOOPBACK}:{port} in time")
        time.sleep(0.2)


def _host_key(container: str) -> str:
    """The host's ed25519 public key, read through Docker rather than trusted on first use."""
    line = _docker("exec", container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").strip()
    keytype, b64 = line.split()[:2]
    return f"{keytype} {b64}"


def known_hosts_entry(port: int) -> str:
    return f"[{LOOPBACK}]:{port}"


def ssh_client(
    port: int, pkey: paramiko.PKey, host_key: str, timeout: float = 10
) -> paramiko.SSHClient:
    """An SSH session as root that checks the host key; refuses any other key."""
    client = paramiko.SSHClient()
    keytype, b64 = host_key.split()[:2]
    key = paramiko.PKey.from_type_string(keytype, base64.b64decode(b64))
    client.get_host_keys().add(known_hosts_entry(port), keytype, key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        LOOPBACK,
        port=port,
        username="root",
        pkey=pkey,
        allow_agent=False,
        look_for_keys=False,
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
    )
    return client


def _wait_ssh(port: int, pkey: paramiko.PKey, host_key: str, deadline: float) -> None:
    while True:
        try:
            client = ssh_client(port, pkey, host_key)
        except (paramiko.SSHException, OSError) as err:
            if time.monotonic() > deadline:
                raise OpsError(f"SSH to {LOOPBACK}:{port} failed: {err}") from err
            time.sleep(0.3)
            continue
        with contextlib.closing(client):
            _stdin, stdout, _stderr = client.exec_command("true", timeout=10)
            if stdout.channel.recv_exit_status() == 0:
                return
        if time.monotonic() > deadline:
            raise OpsError(f"SSH to {LOOPBACK}:{port} logs in but cannot run a command")
        time.sleep(0.3)


def _start_one(spec: HostSpec, label: str, pkey: paramiko.PKey, public_key: str) -> RunningHost:
    started = time.monotonic()
    deadline = started + READY_TIMEOUT_S
    container_id = _run_container(spec, label, public_key)
    cname = container_name(label, spec.name)
    _wait_banner(cname, spec.ssh_port, deadline)
    host_key = _host_key(cname)
    _wait_ssh(spec.ssh_port, pkey, host_key, deadline)
    return RunningHost(
        name=spec.name,
        container=cname,
        container_id=container_id,
        platform=spec.platform,
        role=spec.role,
        ssh_port=spec.ssh_port,
        app_port=spec.app_port,
        image=image_for(spec.platform),
        host_key=host_key,
        ready_seconds=round(time.monotonic() - started, 3),
    )


def _record_known_hosts(key_dir: Path, hosts: list[RunningHost]) -> None:
    """Write the verified host keys so later SSH (Ansible, the ssh transport) can check them."""
    path = key_dir / KNOWN_HOSTS
    entries = [f"{known_hosts_entry(h.ssh_port)} {h.host_key}" for h in hosts]
    ports = {known_hosts_entry(h.ssh_port) for h in hosts}
    kept = []
    if path.is_file():
        kept = [
            line for line in path.read_text().splitlines() if line.split(" ", 1)[0] not in ports
        ]
    path.write_text("\n".join([*kept, *entries]) + "\n")
    path.chmod(0o600)


# --- public API ---------------------------------------------------------------


def start_hosts(
    specs: list[HostSpec], *, key_dir: Path, label: str, build: bool = True
) -> list[RunningHost]:
    """Start every host concurrently and return once each answers SSH with the sandbox key.

    If any host fails, the ones this call started are removed again, so a
    failed start leaves nothing behind.
    """
    _validate(specs, label)
    if build:
        ensure_images({spec.platform for spec in specs})
    keys = ensure_keypair(key_dir)
    pkey = keys.load()
    with ThreadPoolExecutor(max_workers=min(16, len(specs))) as pool:
        futures = [pool.submit(_start_one, s, label, pkey, keys.public_line) for s in specs]
        errors: list[str] = []
        hosts: list[RunningHost] = []
        for spec, future in zip(specs, futures, strict=True):
            try:
                hosts.append(future.result())
            except (OpsError, OSError, subprocess.SubprocessError) as err:
                errors.append(f"{spec.name}: {err}")
    if errors:
        for spec in specs:
            subprocess.run(
                ["docker", "rm", "--force", container_name(label, spec.name)],
                capture_output=True,
                timeout=DOCKER_TIMEOUT_S,
            )
        raise OpsError("sandbox hosts did not start:\n" + "\n".join(errors))
    _record_known_hosts(key_dir, hosts)
    return hosts


def _ids(label: str) -> list[str]:
    _check_label(label)
    out = _docker("ps", "--all", "--quiet", "--filter", f"label={SANDBOX_LABEL}={label}")
    return out.split()


def list_hosts(label: str) -> list[RunningHost]:
    """The sandbox's hosts as Docker knows them, running or not, sorted by name."""
    ids = _ids(label)
    if not ids:
        return []
    hosts = []
    for item in json.loads(_docker("inspect", *ids)):
        labels = item["Config"].get("Labels") or {}

        def get(key: str, labels: dict[str, str] = labels) -> str:
            return labels.get(HOST_LABEL_PREFIX + key, "")

        hosts.append(
            RunningHost(
                name=get("name"),
                container=item["Name"].lstrip("/"),
                container_id=item["Id"],
                platform=get("platform"),
                role=get("role"),
                ssh_port=int(get("ssh-port") or 0),
                app_port=int(get("app-port") or 0),
                image=item["Config"].get("Image", ""),
                status=item["State"].get("Status", ""),
            )
        )
    return sorted(hosts, key=lambda h: h.name)


def stop_hosts(label: str) -> int:
    """Remove every container of the sandbox; how many there were (0 the second time)."""
    ids = _ids(label)
    if ids:
        _docker("rm", "--force", "--volumes", *ids)
    return len(ids)


def reboot_host(
    container: str, *, key_dir: Path | None = None, timeout: float = READY_TIMEOUT_S
) -> None:
    """Restart the container as a reboot would, and wait until sshd answers again.

    With the sandbox's key_dir, "answers" means a full SSH login; without it,
    the SSH banner.
    """
    info = json.loads(_docker("inspect", container))[0]
    labels = info["Config"].get("Labels") or {}
    if SANDBOX_LABEL not in labels:
        raise BadInput(f"{container} is not a sandbox host")
    port = int(labels[f"{HOST_LABEL_PREFIX}ssh-port"])
    _docker("restart", "--time", "5", container)
    deadline = time.monotonic() + timeout
    _wait_banner(container, port, deadline)
    if key_dir is not None:
        pkey = load_private_key(key_dir)
        _wait_ssh(port, pkey, _host_key(container), deadline)
