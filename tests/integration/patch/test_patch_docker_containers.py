"""A patch night on hosts that run Docker: the postcheck's "Docker running, and the
containers that ran before the reboot run again and are healthy", on the real path.

Its own small sandbox (web-1 and worker-1, Debian), not the shared patch sandbox:
these hosts get Docker and containers, which the other patch tests' hosts must not
have (their runs would check them). `ops docker install` installs Debian's docker.io
through the role, which enables dockerd at boot (the hosts have no systemd; their
boot starts the role's init script). The hello image the sandbox builds is loaded
into each host's own engine. Each `ops patch run` upgrades the sandbox's kernel-like
package, which demands a reboot: the host's container really restarts, dockerd comes
back from the boot hook, and it restarts what has a restart policy.

The canary web-1 runs `hello` (unless-stopped) and `oneshot` (restart policy `no`),
which does not come back: web-1 fails its postcheck with `oneshot` named, and with
`--max-errors 0` the run halts before worker-1 (exit 3). Once `oneshot` is started
again by hand, `ops runs resume` re-examines web-1 (not rebooted again) and patches
worker-1, whose `hello` the postcheck sees running again and healthy.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ops.sandbox.hosts import free_ports
from ops.sandbox.registry import HELLO_REPO, build_hello
from tests.support.docker_hosts import RESET, in_host
from tests.support.patch_sandbox import hosts, last_run_id, start, started_at, versions
from tests.support.sandbox import SandboxSession

pytestmark = pytest.mark.timeout(1500)  # sandbox, install, image loads and a reboot, loaded

IMAGE = f"{HELLO_REPO}:v1"
# host -> container -> restart policy
CONTAINERS = {
    "web-1": {"hello": "unless-stopped", "oneshot": "no"},
    "worker-1": {"hello": "unless-stopped"},
}


def _load_image(container: str) -> None:
    """`docker save | docker exec -i HOST docker load`: no registry needed."""
    save = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
    try:
        load = subprocess.run(
            ["docker", "exec", "-i", container, "docker", "load"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        if save.stdout:
            save.stdout.close()
        save.wait(timeout=60)
    assert load.returncode == 0 and save.returncode == 0, load.stderr


def _inner(host: dict[str, Any], name: str, template: str) -> str:
    done = in_host(host, f"docker container inspect --format '{template}' {name}")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _wait_healthy(host: dict[str, Any], names: list[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        pending = [n for n in pending if _inner(host, n, "{{.State.Health.Status}}") != "healthy"]
        if pending and time.monotonic() > deadline:
            raise AssertionError(f"{host['name']}: {pending} not healthy in {timeout}s")
        if pending:
            time.sleep(0.5)


@pytest.fixture(scope="module")
def docker_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxSession]:
    session = start(tmp_path_factory.mktemp("patch-docker"), "debian:2")
    try:
        yield session
    finally:
        session.ops("sandbox", "down")


@pytest.fixture(scope="module")
def night(docker_fleet: SandboxSession) -> dict[str, Any]:
    """Docker installed and containers running on both hosts, then one patch run."""
    session = docker_fleet
    named = {h["name"]: h for h in hosts(session)}
    assert set(named) == set(CONTAINERS)
    install = session.ops("--yes", "--output", "json", "docker", "install", "--via", "ssm",
                          timeout=900)  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    build_hello(lambda _msg: None)
    ports = iter(free_ports(sum(len(c) for c in CONTAINERS.values())))
    for name, containers in CONTAINERS.items():
        host = named[name]
        _load_image(host["container"])
        for container, policy in containers.items():
            run = in_host(
                host,
                f"docker run --detach --name {container} --network host --restart {policy}"
                f" --env PORT={next(ports)} {IMAGE}",
            )
            assert run.returncode == 0, run.stderr
        _wait_healthy(host, list(containers))
    before = {
        name: {
            "host": started_at(named[name]["container"]),
            "containers": {c: _inner(named[name], c, "{{.State.StartedAt}}") for c in containers},
        }
        for name, containers in CONTAINERS.items()
    }
    done = session.ops("--yes", "--output", "json", "patch", "run", "--poll", "1",
                       "--max-errors", "0", timeout=900)  # fmt: skip
    run_id = last_run_id(session)
    assert run_id, done.stderr[-3000:]
    return {
        "session": session,
        "named": named,
        "before": before,
        "run": done,
        "run_id": run_id,
        "report": _report(session, run_id),
    }


def _report(session: SandboxSession, run_id: str) -> dict[str, dict[str, Any]]:
    done = session.ops("patch", "report", run_id, "--format", "json")
    assert done.returncode == 0, done.stderr
    return {h["name"]: h for h in json.loads(done.stdout)["hosts"]}


def test_the_canary_fails_its_postcheck_on_the_container_that_stayed_down_and_halts(
    night: dict[str, Any],
) -> None:
    done = night["run"]
    assert done.returncode == 3, done.stderr[-3000:]
    assert json.loads(done.stdout)["exit_code"] == 3
    assert "halted: more than 0 hosts failed" in done.stderr
    lines = done.stderr.splitlines()
    [failed] = [line for line in lines if line.startswith("web-1: postcheck Failed")]
    assert "container oneshot is not running again (exited, restart policy no)" in failed
    assert "hello" not in failed  # it came back
    assert not any(line.startswith("worker-1:") for line in lines)  # never started
    host = night["named"]["web-1"]
    assert started_at(host["container"]) != night["before"]["web-1"]["host"]  # really rebooted
    assert versions(host["container"])["fleetops-kernel"] == "1.1-1"
    web = night["report"]["web-1"]
    assert web["state"] == "failed" and web["rebooted"]
    assert web["boot_before"] != web["boot_after"]
    assert sorted(web["containers_before"]) == ["hello", "oneshot"]
    assert web["failure"]["step"] == "postcheck"
    assert "container oneshot is not running again" in web["failure"]["output"]
    assert "container hello" not in web["failure"]["output"]
    assert _inner(host, "oneshot", "{{.State.Status}}") == "exited"
    # hello was restarted by the daemon that the boot brought back, not left from before
    assert _inner(host, "hello", "{{.State.Status}}") == "running"
    hello_before = night["before"]["web-1"]["containers"]["hello"]
    assert _inner(host, "hello", "{{.State.StartedAt}}") != hello_before
    status = in_host(host, "/etc/init.d/fleetops-dockerd status")
    assert status.returncode == 0 and "dockerd is running" in status.stdout
    assert night["report"]["worker-1"]["state"] == "not started"


def test_the_markdown_report_names_the_container(night: dict[str, Any]) -> None:
    markdown = night["session"].ops("patch", "report", night["run_id"])
    assert markdown.returncode == 0, markdown.stderr
    assert "### web-1: postcheck Failed" in markdown.stdout
    assert "container oneshot is not running again (exited, restart policy no)" in markdown.stdout


def test_once_the_container_runs_again_a_resume_finishes_and_the_next_host_passes(
    night: dict[str, Any],
) -> None:
    session: SandboxSession = night["session"]
    web, worker = night["named"]["web-1"], night["named"]["worker-1"]
    started = in_host(web, "docker start oneshot")
    assert started.returncode == 0, started.stderr
    resumed = session.ops("--yes", "runs", "resume", night["run_id"], timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "re-examining 1 hosts set aside as failed: web-1" in resumed.stderr
    lines = resumed.stderr.splitlines()
    assert "web-1: postcheck Success" in lines and "web-1: reboot Success" not in lines
    assert "worker-1: reboot Success" in lines and "worker-1: postcheck Success" in lines
    report = _report(session, night["run_id"])
    assert report["web-1"]["state"] == "patched"
    assert report["web-1"]["boot_after"] == night["report"]["web-1"]["boot_after"]  # once
    assert {c["name"]: (c["state"], c["health"]) for c in report["web-1"]["containers_after"]} == {
        "hello": ("running", "healthy"),
        "oneshot": ("running", "healthy"),
    }
    after = report["worker-1"]
    assert after["state"] == "patched" and after["rebooted"]
    assert after["containers_before"] == ["hello"]
    assert after["containers_after"] == [{"name": "hello", "state": "running", "health": "healthy"}]
    assert started_at(worker["container"]) != night["before"]["worker-1"]["host"]
    hello_before = night["before"]["worker-1"]["containers"]["hello"]
    assert _inner(worker, "hello", "{{.State.StartedAt}}") != hello_before


def test_a_reset_host_has_no_boot_service_left(night: dict[str, Any]) -> None:
    """tests.support.docker_hosts.RESET (what the shared sandbox's docker tests run) takes
    the boot service away with the package, so a later reboot starts no daemon."""
    host = night["named"]["web-1"]
    done = in_host(host, RESET, timeout=300)
    assert done.returncode == 0, done.stderr
    left = in_host(host, "ls /etc/init.d /etc/rc2.d; command -v dockerd || true")
    assert "fleetops-dockerd" not in left.stdout and "/dockerd" not in left.stdout
    assert "fleetops-app" in left.stdout  # the host's own placeholder stays
