"""One moto server and one Run Command emulator for every fan-out test, plus two container hosts.

Each test tags its own instances (Suite=...) and targets only those, so the
tests share the sandbox without seeing each other's hosts.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ops.cli.main import cli
from ops.sandbox.aws_side import AwsSandbox, ContainerHost
from tests.support.sandbox import require_docker

OUTPUT_BUCKET = "fleetops-sandbox-output"


@dataclass
class Sandbox:
    aws: AwsSandbox
    env: dict[str, str]

    def ops(self, *args: str) -> Result:
        """`ops` in-process, aimed at the sandbox."""
        return CliRunner().invoke(cli, list(args), env=self.env, catch_exceptions=False)

    def run(self, suite: str, command: str, *options: str, output: str = "json") -> Result:
        """`ops --yes run` on the instances tagged Suite=SUITE."""
        target = ["--target", f"suite={suite}"]
        return self.ops("--yes", "run", *target, *options, "--output", output, "--", command)

    def mark(self) -> int:
        calls = self.aws.calls()
        return int(calls[-1]["seq"]) if calls else 0

    def calls(self, since: int, operation: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.aws.calls(since) if operation in (None, c["operation"])]


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    aws = AwsSandbox(tmp_path_factory.mktemp("fanout-aws"), seed=4)
    aws.start()
    try:
        aws.client("s3").create_bucket(Bucket=OUTPUT_BUCKET)
        env = {**aws.env(), "OPS_ENV": "sandbox", "OPS_OUTPUT_BUCKET": OUTPUT_BUCKET}
        yield Sandbox(aws, env)
    finally:
        aws.stop()


@pytest.fixture(scope="session")
def container_hosts(
    sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Two real Debian containers registered as instances tagged Suite=containers:
    instance id -> the container's hostname."""
    require_docker()
    from ops.sandbox.hosts import HostSpec, free_ports, start_hosts, stop_hosts

    label = f"fanout-it-{os.getpid()}"
    ports = free_ports(4)
    specs = [
        HostSpec("fan-a", "debian", "web", ports[0], ports[1]),
        HostSpec("fan-b", "debian", "web", ports[2], ports[3]),
    ]
    stop_hosts(label)
    try:
        running = start_hosts(specs, key_dir=tmp_path_factory.mktemp("fanout-keys"), label=label)
        ids = sandbox.aws.add_container_hosts(
            [
                ContainerHost(h.container, h.name, role="web", tags={"Suite": "containers"})
                for h in running
            ]
        )
        hostnames = {}
        for instance_id, host in zip(ids, running, strict=True):
            done = subprocess.run(
                ["docker", "exec", host.container, "hostname"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            hostnames[instance_id] = done.stdout.strip()
        yield hostnames
    finally:
        stop_hosts(label)


def state_dir_of(env: dict[str, str]) -> Path:
    return Path(env.get("OPS_STATE_DIR", os.environ["OPS_STATE_DIR"]))
