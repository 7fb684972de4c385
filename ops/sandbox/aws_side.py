"""The AWS half of the local fleet: moto's server plus the Run Command emulator, as processes.

Both run as background processes with pid files and logs in the state
directory, not as threads: the CLI, Ansible and test workers are separate
processes and must all reach the same endpoints, and a later process must be
able to attach to (or stop) what an earlier one started.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from ops.sandbox.emulator.auth import CREDENTIALS_FILE, Credentials
from ops.sandbox.emulator.client import AdminClient
from ops.sandbox.emulator.executors import SyntheticProfile
from ops.sandbox.hosts import free_port

STATE_FILE = "aws-sandbox.json"
MOTO_PID = "moto.pid"
MOTO_LOG = "moto.log"
MOTO_CALLS = "moto-calls.jsonl"
EMULATOR_PID = "ssm-emulator.pid"
EMULATOR_LOG = "ssm-emulator.stdout.log"
RUN_CHUNK = 1000
# A large service spreads its instances over the region's zones; synthetic fleets
# are launched chunk by chunk into these, in turn, so a listing meets several.
SYNTHETIC_ZONES = ("a", "b", "c")

# platform label -> (PlatformName, PlatformVersion) as the SSM agent reports them;
# "debian" and "al2" are the labels `ops sandbox up --platforms` takes.
PLATFORMS: dict[str, tuple[str, str]] = {
    "debian": ("Debian GNU/Linux", "12"),
    "al2": ("Amazon Linux", "2"),
    "debian-12": ("Debian GNU/Linux", "12"),
    "debian-11": ("Debian GNU/Linux", "11"),
    "ubuntu-22.04": ("Ubuntu", "22.04"),
    "ubuntu-24.04": ("Ubuntu", "24.04"),
    "amzn-2": ("Amazon Linux", "2"),
    "al2023": ("Amazon Linux", "2023"),
}


@dataclass
class ContainerHost:
    """A container that plays one EC2 instance; commands run in it with `docker exec`."""

    container: str
    name: str
    role: str = "app"
    platform: str = "debian-12"
    tags: dict[str, str] = field(default_factory=dict)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AwsSandbox:
    def __init__(
        self,
        state_dir: Path,
        *,
        region: str = "us-east-1",
        moto_port: int = 0,
        ssm_port: int = 0,
        seed: int = 0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.region = region
        self.moto_port = moto_port
        self.ssm_port = ssm_port
        self.seed = seed
        self._pids: dict[str, int] = {}
        self._ec2: Any = None
        self._image_id: str | None = None
        self._counter = 0
        self._named: dict[str, int] = {}  # synthetic instances named so far, per prefix

    # ---- processes ------------------------------------------------------

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def ssm_url(self) -> str:
        return f"http://127.0.0.1:{self.ssm_port}"

    @property
    def admin(self) -> AdminClient:
        return AdminClient(self.ssm_url, self.credentials, self.region)

    @property
    def credentials(self) -> Credentials:
        """The key this sandbox generated; the emulator answers no other signature."""
        return Credentials.load(self.state_dir / CREDENTIALS_FILE)

    def start(self) -> None:
        if self.running():
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        Credentials.generate().save(self.state_dir / CREDENTIALS_FILE)
        self.moto_port = self.moto_port or free_port()
        self.ssm_port = self.ssm_port or free_port()
        moto = self._spawn(
            [
                sys.executable,
                "-m",
                "ops.sandbox.moto_server",
                "--call-log",
                str(self.state_dir / MOTO_CALLS),
                "-H",
                "127.0.0.1",
                "-p",
                str(self.moto_port),
            ],
            MOTO_LOG,
        )
        self._pids["moto"] = moto.pid
        (self.state_dir / MOTO_PID).write_text(f"{moto.pid}\n", encoding="ascii")
        self._wait(lambda: _answers(f"{self.moto_url}/moto-api/"), "moto server", MOTO_LOG)
        emulator = self._spawn(
            [
                sys.executable,
                "-m",
                "ops.sandbox.emulator",
                "--port",
                str(self.ssm_port),
                "--moto-url",
                self.moto_url,
                "--state-dir",
                str(self.state_dir),
                "--region",
                self.region,
                "--seed",
                str(self.seed),
            ],
            EMULATOR_LOG,
        )
        self._pids["emulator"] = emulator.pid
        self._wait(lambda: _answers(f"{self.ssm_url}/_sandbox/status"), "emulator", EMULATOR_LOG)
        self._save()

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
        env.pop("AWS_ENDPOINT_URL", None)
        env.pop("AWS_ENDPOINT_URL_SSM", None)
        with (self.state_dir / log_name).open("ab") as log:
            return subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )

    def _wait(self, probe: Any, what: str, log_name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe():
                return
            time.sleep(0.1)
        tail = (self.state_dir / log_name).read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"{what} did not answer within {timeout:.0f}s; log tail:\n{tail}")

    def _save(self) -> None:
        state = {
            "region": self.region,
            "seed": self.seed,
            "moto_port": self.moto_port,
            "ssm_port": self.ssm_port,
            "pids": self._pids,
        }
        (self.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")

    @classmethod
    def attach(cls, state_dir: Path) -> AwsSandbox:
        """Reconnect to a sandbox another process started, from its state file."""
        path = Path(state_dir) / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise RuntimeError(f"no AWS sandbox state in {state_dir}; start one first") from None
        sandbox = cls(
            Path(state_dir),
            region=state["region"],
            moto_port=int(state["moto_port"]),
            ssm_port=int(state["ssm_port"]),
            seed=int(state.get("seed", 0)),
        )
        sandbox._pids = {k: int(v) for k, v in state.get("pids", {}).items()}
        return sandbox

    def running(self) -> bool:
        if not all(_alive(self._pids.get(name)) for name in ("moto", "emulator")):
            return False
        return _answers(f"{self.ssm_url}/_sandbox/status")

    def stop(self) -> None:
        for name in ("emulator", "moto"):
            pid = self._pids.pop(name, None)
            if pid and _alive(pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                deadline = time.monotonic() + 5
                while _alive(pid) and time.monotonic() < deadline:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
                    time.sleep(0.05)
                if _alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                    except (ProcessLookupError, ChildProcessError):
                        pass
        for name in (MOTO_PID, EMULATOR_PID, STATE_FILE, CREDENTIALS_FILE):
            (self.state_dir / name).unlink(missing_ok=True)

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ENDPOINT_URL_SSM": self.ssm_url,
            "AWS_ACCESS_KEY_ID": self.credentials.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_access_key,
            "AWS_SESSION_TOKEN": self.credentials.session_token,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def client(
        self,
        service: str,
        *,
        max_attempts: int = 10,
        mode: str = "adaptive",
        parameter_validation: bool = True,
    ) -> Any:
        """A boto3 client aimed at this sandbox, whatever the caller's environment says.

        Turning client-side validation off lets a test see what the server refuses.
        """
        url = self.ssm_url if service == "ssm" else self.moto_url
        return boto3.session.Session().client(
            service,
            endpoint_url=url,
            region_name=self.region,
            aws_access_key_id=self.credentials.access_key_id,
            aws_secret_access_key=self.credentials.secret_access_key,
            aws_session_token=self.credentials.session_token,
            config=Config(
                retries={"mode": mode, "max_attempts": max_attempts},
                max_pool_connections=32,
                parameter_validation=parameter_validation,
            ),
        )

    # ---- fleet ----------------------------------------------------------

    def _ec2_client(self) -> Any:
        if self._ec2 is None:
            self._ec2 = self.client("ec2")
        return self._ec2

    def _image(self) -> str:
        if self._image_id is None:
            images = self._ec2_client().describe_images(Owners=["amazon"])["Images"]
            self._image_id = images[0]["ImageId"] if images else "ami-12c6146b"
        return self._image_id

    def _run_instances(
        self, count: int, tags: dict[str, str], zones: tuple[str, ...] = ()
    ) -> list[str]:
        """Launch in chunks: moto answers one big RunInstances slowly and holds it all in one go.

        With `zones`, the chunks go to those zones of the region in turn.
        """
        ec2 = self._ec2_client()
        tag_spec = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
        ids: list[str] = []
        launches = 0
        while len(ids) < count:
            chunk = min(RUN_CHUNK, count - len(ids))
            placement = (
                {"Placement": {"AvailabilityZone": self.region + zones[launches % len(zones)]}}
                if zones
                else {}
            )
            launches += 1
            reply = ec2.run_instances(
                ImageId=self._image(),
                InstanceType="t3.micro",
                MinCount=chunk,
                MaxCount=chunk,
                TagSpecifications=tag_spec,
                **placement,
            )
            ids.extend(i["InstanceId"] for i in reply["Instances"])
        return ids

    def _name_instances(self, names: dict[str, str]) -> None:
        ec2 = self._ec2_client()

        def tag(item: tuple[str, str]) -> None:
            ec2.create_tags(Resources=[item[0]], Tags=[{"Key": "Name", "Value": item[1]}])

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(tag, names.items()))

    def add_synthetic(
        self,
        count: int,
        *,
        tags: dict[str, str] | None = None,
        name_prefix: str = "synthetic",
        profile: SyntheticProfile | None = None,
        in_ec2: bool = True,
    ) -> list[str]:
        """Launch `count` instances in moto and register them as simulated SSM-managed hosts.

        moto launches about 150 instances a second and tags fewer, so ten
        thousand take minutes; `in_ec2=False` registers them with the emulator
        only (seeded ids, no EC2 record) for load tests that never ask EC2.
        """
        if count < 1:
            return []
        base = {"Env": "sandbox", "Role": "synthetic", **(tags or {})}
        start = self._counter
        self._counter += count
        # names count per prefix, so a fleet's names do not depend on what was launched before
        first = self._named.get(name_prefix, 0)
        self._named[name_prefix] = first + count
        if in_ec2:
            ids = self._run_instances(count, base, SYNTHETIC_ZONES)
            names = {iid: f"{name_prefix}-{first + n:05d}" for n, iid in enumerate(ids)}
            self._name_instances(names)
        else:
            rng = random.Random(f"instances:{self.seed}:{name_prefix}:{start}")
            ids = [f"i-{rng.getrandbits(68):017x}" for _ in range(count)]
            names = {iid: f"{name_prefix}-{first + n:05d}" for n, iid in enumerate(ids)}
        entries = []
        for n, iid in enumerate(ids):
            index = start + n
            entries.append(
                {
                    "InstanceId": iid,
                    "Name": names[iid],
                    "Tags": {**base, "Name": names[iid]},
                    "ComputerName": f"{names[iid]}.sandbox.internal",
                    "IPAddress": _loopback_address(index),
                    "PlatformName": "Amazon Linux",
                    "PlatformVersion": "2023",
                    "Profile": (profile or SyntheticProfile()).to_json(),
                }
            )
        self.admin.register(entries)
        return ids

    def add_container_hosts(self, hosts: list[ContainerHost]) -> list[str]:
        """One moto instance per container; commands sent to it run in the container."""
        ids: list[str] = []
        entries = []
        for host in hosts:
            tags = {"Env": "sandbox", "Role": host.role, "Name": host.name, **host.tags}
            [iid] = self._run_instances(1, tags)
            platform_name, platform_version = PLATFORMS.get(host.platform, (host.platform, ""))
            hostname = _container_hostname(host.container) or host.name
            entries.append(
                {
                    "InstanceId": iid,
                    "Name": host.name,
                    "Tags": tags,
                    "ComputerName": hostname,
                    "IPAddress": "127.0.0.1",
                    "PlatformName": platform_name,
                    "PlatformVersion": platform_version,
                    "Container": host.container,
                }
            )
            ids.append(iid)
        self.admin.register(entries)
        return ids

    # ---- behaviour ------------------------------------------------------

    def calls(self, since: int = 0) -> list[dict[str, Any]]:
        """The Run Command emulator's calls after its call number `since`."""
        return self.admin.calls(since)

    def moto_calls(self) -> list[dict[str, Any]]:
        """Every action moto served (EC2, ELBv2, ...), oldest first."""
        try:
            text = (self.state_dir / MOTO_CALLS).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        calls = []
        for line in text.splitlines():
            try:
                calls.append(json.loads(line))
            except ValueError:  # a line still being written
                continue
        return calls

    def set_fault(
        self,
        kind: str,
        *,
        instances: list[str] | None = None,
        fraction: float | None = None,
        **params: Any,
    ) -> None:
        self.admin.set_fault(kind, instances=instances, fraction=fraction, params=params)

    def clear_faults(self) -> None:
        self.admin.clear_faults()

    def set_throttle(
        self,
        *,
        multiplier: float | None = None,
        rates: dict[str, tuple[float, float]] | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.admin.set_throttle(multiplier=multiplier, rates=rates, enabled=enabled)


def _loopback_address(index: int) -> str:
    """A distinct address inside 127.0.0.0/8: synthetic hosts must never look routable."""
    return f"127.{100 + index // 65536 % 100}.{index // 256 % 256}.{index % 256}"


def _container_hostname(container: str) -> str | None:
    try:
        done = subprocess.run(
            ["docker", "inspect", "-f", "{{.Config.Hostname}}", container],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
