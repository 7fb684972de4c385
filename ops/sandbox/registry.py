"""The sandbox's image registry on loopback, and the three `hello` versions it serves.

Debian's `docker-registry` (distribution 2.8) runs as a plain process on a
free 127.0.0.1 port with its storage in the sandbox's state folder; it is
installed with apt-get when missing, so no step is left to do by hand. It
starts only when asked (`ops sandbox up --registry`), so the default `up`
stays fast. The hello images are built FROM the local base image (no pull),
once per content hash, and pushed; v3's health check never passes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

import boto3

from ops.errors import OpsError
from ops.sandbox.hosts import free_ports
from ops.sandbox.images import BASE_TAG, image_info, images_dir
from ops.sandbox.state import sandbox_dir

Echo = Callable[[str], None]
HELLO_REPO = "fleetops/hello"
# hello.yml reads HELLO_API_TOKEN from Parameter Store: the sample service's one secret
HELLO_SECRET = "/fleetops/sandbox/hello/api-token"
HELLO_VERSIONS = {"v1": True, "v2": True, "v3": False}  # tag -> health check passes
HASH_LABEL = "org.fleetops.content-hash"
START_TIMEOUT_S = 30.0


def hello_dir() -> Path:
    """The hello recipe sits with the other image recipes (scripts/images/hello)."""
    return images_dir() / "hello"


def _folder() -> Path:
    return sandbox_dir() / "registry"


def _pid_file() -> Path:
    return _folder() / "registry.pid"


def _addr_file() -> Path:
    return _folder() / "address"


def address() -> str | None:
    """host:port of this sandbox's registry while it runs, else None."""
    try:
        addr = _addr_file().read_text().strip()
    except OSError:
        return None
    return addr if _pid() is not None else None


def _pid() -> int | None:
    try:
        pid = int(_pid_file().read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # a recycled pid belongs to something else: only our own registry counts
    return pid if b"docker-registry" in cmdline and str(_folder()).encode() in cmdline else None


def _binary(echo: Echo) -> str:
    found = shutil.which("docker-registry")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise OpsError("docker-registry is missing; install it (apt-get install docker-registry)")
    echo("installing docker-registry (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "docker-registry"],
    ):
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise OpsError(f"{' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    found = shutil.which("docker-registry")
    if not found:
        raise OpsError("docker-registry was installed but is not on PATH")
    return found


def _answers(addr: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{addr}/v2/", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start(echo: Echo = print) -> str:
    """Start the registry if it is not running; returns host:port."""
    running = address()
    if running:
        return running
    binary = _binary(echo)
    folder = _folder()
    (folder / "data").mkdir(parents=True, exist_ok=True)
    addr = f"127.0.0.1:{free_ports(1)[0]}"
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {addr}\n"
    )
    with (folder / "registry.log").open("ab") as log:
        proc = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pid_file().write_text(str(proc.pid))
    _addr_file().write_text(addr)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(addr):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop()
            tail = (folder / "registry.log").read_text(errors="replace")[-800:]
            raise OpsError(f"the sandbox registry did not start on {addr}:\n{tail}")
        time.sleep(0.1)
    echo(f"registry: http://{addr}")
    return addr


def stop() -> bool:
    """Stop our registry process (never another's); True if one was running."""
    pid = _pid()
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if Path(f"/proc/{pid}").exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _pid_file().unlink(missing_ok=True)
    return True


def _docker(args: list[str], what: str, timeout: float = 900) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise OpsError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def hello_hash(tag: str) -> str:
    """Content of the build context and the base image id: a change rebuilds, nothing else."""
    base = image_info(BASE_TAG)
    if base is None:
        raise OpsError(f"{BASE_TAG} is missing; build the sandbox images first")
    h = hashlib.sha256(base[0].encode())
    for name in ("Dockerfile", "app.py"):
        h.update((hello_dir() / name).read_bytes())
    h.update(f"{tag}:{HELLO_VERSIONS[tag]}".encode())
    return h.hexdigest()[:32]


def build_hello(echo: Echo = print) -> dict[str, str]:
    """Build fleetops/hello:v1..v3 locally when missing or stale; tag -> image id."""
    ids: dict[str, str] = {}
    for tag, healthy in HELLO_VERSIONS.items():
        want = hello_hash(tag)
        found = image_info(f"{HELLO_REPO}:{tag}")
        if found is None or found[1].get(HASH_LABEL) != want:
            echo(f"building {HELLO_REPO}:{tag}")
            _docker(
                [
                    "build",
                    "--network=host",
                    "--build-arg", f"VERSION={tag}",
                    "--build-arg", f"HEALTHY={1 if healthy else 0}",
                    "--label", f"{HASH_LABEL}={want}",
                    "-t", f"{HELLO_REPO}:{tag}",
                    str(hello_dir()),
                ],
                f"docker build {HELLO_REPO}:{tag}",
            )  # fmt: skip
            found = image_info(f"{HELLO_REPO}:{tag}")
            assert found is not None
        ids[tag] = found[0]
    return ids


def push_hello(addr: str, echo: Echo = print) -> dict[str, str]:
    """Push the three versions to the registry at `addr`; tag -> registry digest."""
    build_hello(echo)
    digests: dict[str, str] = {}
    for tag in HELLO_VERSIONS:
        remote = f"{addr}/hello:{tag}"
        _docker(["tag", f"{HELLO_REPO}:{tag}", remote], f"docker tag {remote}", timeout=60)
        out = _docker(["push", remote], f"docker push {remote}")
        for line in out.splitlines():
            if "digest: sha256:" in line:
                digests[tag] = line.split("digest: ", 1)[1].split()[0]
        _docker(["rmi", remote], f"docker rmi {remote}", timeout=60)  # keep only the local tag
    return digests


def ensure(echo: Echo = print) -> str:
    """Registry up and hello:v1..v3 in it; safe to repeat (pushes of present layers are cheap)."""
    addr = start(echo)
    marker = _folder() / "hello.pushed"
    wanted = ",".join(hello_hash(tag) for tag in HELLO_VERSIONS)
    if not marker.exists() or marker.read_text() != wanted:
        push_hello(addr, echo)
        marker.write_text(wanted)
    return addr


def seed_secret(env: Mapping[str, str]) -> bool:
    """Put hello's secret in the sandbox's Parameter Store unless it is there; True if put.

    A random value, as an operator would set one: the sample service deploys
    without a step by hand, and no value sits in the repository.
    """
    ssm = boto3.client(
        "ssm",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    try:
        ssm.put_parameter(
            Name=HELLO_SECRET, Value=secrets.token_hex(16), Type="SecureString", Overwrite=False
        )
    except ssm.exceptions.ParameterAlreadyExists:
        return False
    return True
