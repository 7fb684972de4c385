"""`ops deploy run`, `rollback` and `ops runs resume` of a deploy, end to end on a private fleet.

Four Debian web hosts (of six: the sandbox makes two thirds web) get the
Docker engine from `ops docker install` and run `hello` from the sandbox
registry; the sandbox load balancer checks each host's app port over HTTP,
so "healthy" below is the load balancer's own verdict. The module shares one
fleet: each test starts from where the previous one left the service (v1,
then v2, then the failed v3 rolled back to v2, then the rollback to v1).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.sandbox import (
    REPO,
    SandboxSession,
    make_inventories,
    ops_command,
    require_docker,
)

WEB_HOSTS = 4
HEALTH_TIMEOUT = 10  # v3 never gets healthy: fail its batch quickly


def _up(session: SandboxSession) -> subprocess.CompletedProcess[str]:
    args = ("--output", "json", "sandbox", "up", "--platforms", "debian:6", "--registry")
    up = session.ops(*args, timeout=900)
    if up.returncode != 0 and "already in use" in up.stderr:  # a port taken meanwhile
        session.ops("sandbox", "down")
        up = session.ops(*args, timeout=900)
    return up


def _must(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}): {result.stderr[-3000:]}")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxSession]:
    require_docker()
    base = tmp_path_factory.mktemp("deploy-run")
    session = SandboxSession(state_dir=base / "state", inventories=make_inventories(base))
    session.state_dir.mkdir()
    spec = session.inventories / "sandbox" / "services" / "hello.yml"
    spec.write_text(
        spec.read_text().replace("timeout_seconds: 60", f"timeout_seconds: {HEALTH_TIMEOUT}")
    )
    try:
        up = _up(session)
        _must(up, "ops sandbox up")
        session.status = json.loads(up.stdout)
        for line in session.ops("sandbox", "env").stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            session.env[key] = value.strip("'")
        _put_secret(session)
        # the sandbox's stand-in app holds each web host's app port: hello takes it over
        _must(
            session.ops("--yes", "run", "--target", "Role=web", "--",
                        "kill $(cat /run/fleetops/app.pid)"),
            "stopping the stand-in app",
        )  # fmt: skip
        _must(
            session.ops("--yes", "docker", "install", "--target", "Role=web", "--via", "ssh",
                        timeout=900),
            "ops docker install",
        )  # fmt: skip
        _must(
            session.ops("--yes", "deploy", "run", "hello", "--image", "v1", "--batch", "100%",
                        "--min-healthy", "0", timeout=600),
            "the first deploy of v1",
        )  # fmt: skip
        yield session
    finally:
        session.ops("sandbox", "down")


def _put_secret(session: SandboxSession) -> None:
    """hello.yml's HELLO_API_TOKEN is a Parameter Store reference: it must exist."""
    code = (
        "from ops import aws; from ops.config import load_settings; s = load_settings(); "
        "aws.client('ssm', region=s.region).put_parameter("
        "Name='/fleetops/sandbox/hello/api-token', Value='token-1', Type='SecureString', "
        "Overwrite=True)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=session.process_env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    _must(done, "put_parameter")


def status(session: SandboxSession) -> dict[str, dict[str, Any]]:
    result = session.ops("deploy", "status", "hello", "--output", "json")
    _must(result, "ops deploy status")
    return {h["name"]: h for h in json.loads(result.stdout)["hosts"]}


def digest(session: SandboxSession, tag: str) -> str:
    result = session.ops("deploy", "plan", "hello", "--image", tag, "--output", "json")
    _must(result, "ops deploy plan")
    value: str = json.loads(result.stdout)["digest"]
    return value


def start(session: SandboxSession, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*ops_command(), *args],
        env=session.process_env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: a SIGKILL takes its Ansible down with it
    )


class HealthySampler:
    """Polls the target group's healthy count while a deploy runs (the load balancer's view)."""

    def __init__(self, session: SandboxSession) -> None:
        self.session = session
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import boto3

        env = self.session.process_env
        elbv2 = boto3.client(
            "elbv2",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env.get("AWS_REGION", "us-east-1"),
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", "testing"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "testing"),
        )
        arn = elbv2.describe_target_groups(Names=["web"])["TargetGroups"][0]["TargetGroupArn"]
        while not self._stop.is_set():
            health = elbv2.describe_target_health(TargetGroupArn=arn)
            states = [d["TargetHealth"]["State"] for d in health["TargetHealthDescriptions"]]
            self.samples.append(states.count("healthy"))
            self._stop.wait(0.5)

    def __enter__(self) -> HealthySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_bad_input_exits_2_before_any_host(fleet: SandboxSession) -> None:
    before = status(fleet)
    (fleet.inventories / "sandbox" / "services" / "nohealth.yml").write_text(
        "repository: ${OPS_SANDBOX_REGISTRY}/hello\nport: 8080\n"
    )
    cases = [
        (("hello", "--image", "hello:v2;rm"), "does not parse"),
        (("hello", "--image", "v9"), "not found"),
        (("nohealth", "--image", "v2"), "health_check: is required"),
        (("hello", "--image", "v2", "--batch", "0"), "--batch must be at least 1"),
    ]
    for args, message in cases:
        result = fleet.ops("--yes", "deploy", "run", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert status(fleet) == before


def test_v1_to_v2_in_two_batches_one_of_two_deploys_refused(fleet: SandboxSession) -> None:
    v2 = digest(fleet, "v2")
    command = ("--yes", "deploy", "run", "hello", "--image", "v2", "--batch", "2",
               "--min-healthy", "2")  # fmt: skip
    with HealthySampler(fleet) as sampler:
        first, second = start(fleet, *command), start(fleet, *command)
        outcomes = [(p.wait(timeout=580), *p.communicate()) for p in (first, second)]
    codes = sorted(code for code, _out, _err in outcomes)
    assert codes == [0, 3], outcomes
    refused = next(err for code, _out, err in outcomes if code == 3)
    assert "is locked by" in refused and "pid" in refused and "run" in refused
    # taken out two at a time and never below the minimum, as the load balancer saw it
    assert sampler.samples and min(sampler.samples) == 2, sampler.samples
    after = status(fleet)
    assert len(after) == WEB_HOSTS
    assert all(h["digest"] == v2 and h["in_service"] and h["healthy"] for h in after.values())


def test_v3_fails_its_first_batch_goes_back_to_v2_and_halts(fleet: SandboxSession) -> None:
    before = status(fleet)
    v2 = digest(fleet, "v2")
    result = fleet.ops("--yes", "deploy", "run", "hello", "--image", "v3", "--batch", "2",
                       timeout=580)  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "batch 1 failed" in result.stderr
    after = status(fleet)
    assert all(h["digest"] == v2 and h["in_service"] for h in after.values()), after
    second_batch = sorted(before)[2:]
    for name in second_batch:  # never touched: the same container, started at the same time
        assert after[name]["since"] == before[name]["since"]
    for name in sorted(before)[:2]:  # replaced twice: v3, then v2 again
        assert after[name]["since"] != before[name]["since"]


def test_rollback_killed_mid_batch_then_resumed(fleet: SandboxSession) -> None:
    v1 = digest(fleet, "v1")
    process = start(fleet, "--yes", "deploy", "rollback", "hello", "--batch", "2")
    assert process.stderr is not None
    drained = 0
    for line in process.stderr:
        if "Success: drained" in line:
            drained += 1
            if drained == 2:  # the first batch is out of the target group, its swap begins
                break
    assert drained == 2, "the rollback never drained its first batch"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    runs = fleet.ops("--output", "json", "runs", "list", "--kind", "deploy", "--limit", "1")
    run_id = json.loads(runs.stdout)[0]["id"]
    halfway = status(fleet)
    assert sum(1 for h in halfway.values() if not h["in_service"]) == 2

    resumed = fleet.ops("--yes", "runs", "resume", run_id, timeout=580)
    assert resumed.returncode == 0, resumed.stderr
    after = status(fleet)
    assert all(h["digest"] == v1 and h["in_service"] and h["healthy"] for h in after.values())
