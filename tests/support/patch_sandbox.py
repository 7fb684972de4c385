"""A private sandbox for patch runs: they change the hosts' packages and reboot them,
which the shared session sandbox's plan tests must not see."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from ops.sandbox.host_packages import prepare_debian, prepare_standin
from tests.support.sandbox import SandboxSession, make_inventories, require_docker

SANDBOX_PACKAGES = ("fleetops-tool", "fleetops-libsec", "fleetops-kernel", "fleetops-fresh",
                    "docker-fleetops-plugin")  # fmt: skip


def start(base: Path, platforms: str) -> SandboxSession:
    require_docker()
    session = SandboxSession(state_dir=base / "state", inventories=make_inventories(base))
    session.state_dir.mkdir(parents=True)
    up = session.ops("--output", "json", "sandbox", "up", "--platforms", platforms, timeout=900)
    if up.returncode != 0:
        session.ops("sandbox", "down")
        pytest.fail(f"ops sandbox up failed ({up.returncode}): {up.stderr[-3000:]}")
    session.status = json.loads(up.stdout)
    for line in session.ops("sandbox", "env").stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        session.env[key] = value.strip("'")
    return session


def hosts(session: SandboxSession) -> list[dict[str, Any]]:
    found = session.status["hosts"]
    assert isinstance(found, list)
    return found


def client(session: SandboxSession, service: str) -> Any:
    env = session.env
    return boto3.client(
        service,
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["AWS_ENDPOINT_URL_SSM"] if service == "ssm" else env["AWS_ENDPOINT_URL"],
    )


def repo_url(session: SandboxSession) -> str:
    state = json.loads((session.state_dir / "sandbox" / "state.json").read_text())
    return str(state["package_repo"])


def docker_exec(container: str, *argv: str) -> str:
    done = subprocess.run(
        ["docker", "exec", container, *argv], capture_output=True, text=True, check=False
    )
    return done.stdout


def reset(session: SandboxSession) -> None:
    """Every host back on the older packages with an empty apt history (as `up` left it);
    a Debian host still on them is left as it is (a downgrade costs seconds a host)."""
    url = repo_url(session)
    for host in hosts(session):
        if host["platform"] == "debian":
            if versions(host["container"]).get("fleetops-tool") == "1.0-1":
                docker_exec(host["container"], "truncate", "-s", "0", "/var/log/apt/history.log")
                continue  # never patched: nothing to undo
            prepare_debian(host["container"], url)
            docker_exec(host["container"], "truncate", "-s", "0", "/var/log/apt/history.log")
        else:
            prepare_standin(host["container"], url)


def versions(container: str) -> dict[str, str]:
    text = docker_exec(
        container, "dpkg-query", "-W", "-f", "${Package}\t${Version}\n", *SANDBOX_PACKAGES
    )
    return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)


def upgrades(container: str) -> int:
    """apt history entries that upgraded fleetops-tool (one per patch of this host)."""
    text = docker_exec(container, "cat", "/var/log/apt/history.log")
    return sum(
        1 for line in text.splitlines() if line.startswith("Upgrade:") and "fleetops-tool" in line
    )


def started_at(container: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", "{{.State.StartedAt}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@dataclass
class Samples:
    healthy: list[int] = field(default_factory=list)
    not_online: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


@contextmanager
def sampled(session: SandboxSession, period: float = 0.5) -> Iterator[Samples]:
    """Healthy targets of `web` and agents not Online, sampled by a thread during the run."""
    elbv2 = client(session, "elbv2")
    ssm = client(session, "ssm")
    [group] = elbv2.describe_target_groups(Names=["web"])["TargetGroups"]
    samples = Samples()
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(period):
            try:
                items = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
                samples.healthy.append(
                    sum(
                        1
                        for item in items["TargetHealthDescriptions"]
                        if item["TargetHealth"]["State"] == "healthy"
                    )
                )
                for info in ssm.describe_instance_information()["InstanceInformationList"]:
                    if info["PingStatus"] != "Online":
                        samples.not_online.add(info["InstanceId"])
            except Exception as exc:  # reported by the test, not swallowed
                samples.errors.append(repr(exc))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(timeout=30)


def healthy_web(session: SandboxSession) -> dict[str, str]:
    elbv2 = client(session, "elbv2")
    [group] = elbv2.describe_target_groups(Names=["web"])["TargetGroups"]
    items = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
    return {
        item["Target"]["Id"]: item["TargetHealth"]["State"]
        for item in items["TargetHealthDescriptions"]
    }


def last_run_id(session: SandboxSession) -> str | None:
    listed = session.ops("--output", "json", "runs", "list")
    assert listed.returncode == 0, listed.stderr
    runs = [r for r in json.loads(listed.stdout) if r["kind"] == "patch"]
    return str(runs[0]["id"]) if runs else None
