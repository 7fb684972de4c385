"""`ops deploy run`, `rollback` and `ops runs resume` of a deploy, end to end on a private fleet.

Four Debian web hosts (of six: the sandbox makes two thirds web) get the
Docker engine from `ops docker install` and run `hello` from the sandbox
registry; the sandbox load balancer checks each host's app port over HTTP,
so "healthy" below is the load balancer's own verdict. The module shares one
fleet: each test starts from where the previous one left the service (v1,
then v2, then the failed v3 rolled back to v2, then the rollback to v1).
Until the first deploy, the sandbox's placeholder app answers on each app
port; the deploy stops and disables it (hello.yml's `replaces`), so nothing
here stops it by hand, and a reboot does not bring it back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
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

# whichever test comes first also pays for the module's fleet (six hosts, Docker on
# four, a first deploy), whose own steps may take up to 900 + 900 + 600 s
pytestmark = pytest.mark.timeout(2500)

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
    text = spec.read_text()
    assert "timeout_seconds: 20\n" in text
    spec.write_text(text.replace("timeout_seconds: 20\n", f"timeout_seconds: {HEALTH_TIMEOUT}\n"))
    try:
        up = _up(session)
        _must(up, "ops sandbox up")
        session.status = json.loads(up.stdout)
        for line in session.ops("sandbox", "env").stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            session.env[key] = value.strip("'")
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


def status(session: SandboxSession) -> dict[str, dict[str, Any]]:
    result = session.ops("deploy", "status", "hello", "--output", "json")
    _must(result, "ops deploy status")
    return {h["name"]: h for h in json.loads(result.stdout)["hosts"]}


def settled(session: SandboxSession, timeout: float = 180) -> dict[str, dict[str, Any]]:
    """Status once every host is healthy and in service: on a loaded machine a health
    check can miss its few seconds now and then, and the next one passes."""
    deadline = time.monotonic() + timeout
    while True:
        seen = status(session)
        if all(h["healthy"] and h["in_service"] for h in seen.values()):
            return seen
        if time.monotonic() > deadline:
            pytest.fail(f"hosts not all healthy and in service after {timeout} s: {seen}")
        time.sleep(2)


def same_containers(seen: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    """What a deploy would change on a host: the digest, and the container (its start)."""
    return {name: (h["digest"], h["since"]) for name, h in seen.items()}


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
    before = same_containers(status(fleet))
    (fleet.inventories / "sandbox" / "services" / "nohealth.yml").write_text(
        "repository: ${OPS_SANDBOX_REGISTRY}/hello\nport: 8080\n"
    )
    cases = [
        (("hello", "--image", "hello:v2;rm"), "does not parse"),
        (("hello", "--image", "v9"), "not found"),
        (("nohealth", "--image", "v2"), "health_check: is required"),
        (("hello", "--image", "v2", "--batch", "0"), "--batch must be at least 1"),
        (("hello", "--image", "v2", "--name", "worker-*"), "none of its hosts match"),
    ]
    for args, message in cases:
        result = fleet.ops("--yes", "deploy", "run", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert same_containers(status(fleet)) == before


def test_v1_to_v2_in_two_batches_one_of_two_deploys_refused(fleet: SandboxSession) -> None:
    v2 = digest(fleet, "v2")
    _must(  # one host ahead of the others
        fleet.ops("--yes", "deploy", "run", "hello", "--image", "v2", "--name", "web-1",
                  "--min-healthy", "0", timeout=580),
        "deploying v2 to web-1 alone",
    )  # fmt: skip
    before = settled(fleet)  # web-1 must count as healthy to be left alone
    assert before["web-1"]["digest"] == v2 and before["web-2"]["digest"] != v2
    plan = json.loads(
        fleet.ops("deploy", "plan", "hello", "--image", "v2", "--batch", "2", "--output",
                  "json").stdout
    )  # fmt: skip
    assert [h["name"] for h in plan["unchanged"]] == ["web-1"]
    assert [[h["name"] for h in b] for b in plan["batches"]] == [["web-2", "web-3"], ["web-4"]]

    command = ("--yes", "deploy", "run", "hello", "--image", "v2", "--batch", "2",
               "--min-healthy", "2")  # fmt: skip
    with HealthySampler(fleet) as sampler:
        first, second = start(fleet, *command), start(fleet, *command)
        outcomes = [(p.wait(timeout=580), *p.communicate()) for p in (first, second)]
    codes = sorted(code for code, _out, _err in outcomes)
    assert codes == [0, 3], outcomes
    refused = next(err for code, _out, err in outcomes if code == 3)
    assert "is locked by" in refused and "pid" in refused and "run" in refused
    done = next(err for code, _out, err in outcomes if code == 0)
    assert "1 host(s) unchanged" in done and "web-1" in done
    # web-1 was never drained nor swapped: no step of the run names it
    assert not [line for line in done.splitlines() if " web-1 " in line], done
    # taken out two at a time and never below the minimum, as the load balancer saw it
    assert sampler.samples and min(sampler.samples) == 2, sampler.samples
    after = settled(fleet)
    assert len(after) == WEB_HOSTS
    assert all(h["digest"] == v2 for h in after.values())
    assert after["web-1"]["since"] == before["web-1"]["since"]  # the same container


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


def test_a_deploy_of_what_every_host_runs_does_nothing(fleet: SandboxSession) -> None:
    def deploy_runs() -> int:
        listed = fleet.ops("--output", "json", "runs", "list", "--kind", "deploy")
        _must(listed, "ops runs list")
        return len(json.loads(listed.stdout))

    settled(fleet)
    runs = deploy_runs()
    result = fleet.ops("--yes", "deploy", "run", "hello", "--image", "v2", timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{WEB_HOSTS} host(s) unchanged" in result.stderr
    assert "nothing to do" in result.stdout
    assert deploy_runs() == runs  # no run, no lock, no host touched


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
    after = settled(fleet)
    assert all(h["digest"] == v1 for h in after.values())


def _placeholder(session: SandboxSession, name: str) -> subprocess.CompletedProcess[str]:
    host = next(h for h in session.status["hosts"] if h["name"] == name)
    return subprocess.run(
        ["docker", "exec", host["container"], "sh", "-c",
         "service fleetops-app status; echo rc=$?; ls /etc/rc2.d"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_placeholder_stays_off_across_a_reboot(fleet: SandboxSession) -> None:
    from ops.sandbox.hosts import reboot_host

    for name in status(fleet):  # the first deploy stopped and disabled it everywhere
        seen = _placeholder(fleet, name).stdout
        assert "rc=3" in seen and "K01fleetops-app" in seen and "S01fleetops-app" not in seen
    web_4 = next(h for h in fleet.status["hosts"] if h["name"] == "web-4")
    reboot_host(web_4["container"])
    seen = _placeholder(fleet, "web-4").stdout
    assert "rc=3" in seen and "K01fleetops-app" in seen, seen
    # and a host no deploy reached still starts it at boot
    other = next(h for h in fleet.status["hosts"] if h["role"] != "web")
    reboot_host(other["container"])
    assert "rc=0" in _placeholder(fleet, other["name"]).stdout
