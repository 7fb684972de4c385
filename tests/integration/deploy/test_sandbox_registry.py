"""The sandbox's loopback registry: hello v1-v3 built without a pull, resolvable, runnable."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from ops.errors import BadInput
from ops.fleet import image_ref
from ops.fleet import registry as image_registry
from ops.sandbox import registry
from ops.sandbox.hosts import free_ports
from tests.support.sandbox import require_docker


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    require_docker()
    state = tmp_path_factory.mktemp("registry-state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPS_STATE_DIR", str(state))
        addr = registry.ensure(echo=lambda _m: None)
        try:
            yield addr, str(state)
        finally:
            mp.setenv("OPS_STATE_DIR", str(state))
            registry.stop()


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_three_versions_resolve_to_distinct_digests(served: tuple[str, str]) -> None:
    addr, _ = served
    digests = {
        tag: image_registry.resolve(image_ref.parse(f"{addr}/hello:{tag}")).digest
        for tag in ("v1", "v2", "v3")
    }
    assert len(set(digests.values())) == 3
    with pytest.raises(BadInput, match="not found"):
        image_registry.resolve(image_ref.parse(f"{addr}/hello:v9"))


def test_ensure_again_reuses_the_running_registry(
    served: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    addr, state = served
    monkeypatch.setenv("OPS_STATE_DIR", state)
    started = time.monotonic()
    assert registry.ensure(echo=lambda _m: None) == addr
    assert time.monotonic() - started < 10  # nothing rebuilt, nothing pushed
    assert registry.address() == addr


@pytest.mark.parametrize(
    ("tag", "status", "docker_health"), [("v2", 200, "healthy"), ("v3", 503, "unhealthy")]
)
def test_pulled_by_digest_the_service_answers_its_version(
    served: tuple[str, str], tag: str, status: int, docker_health: str
) -> None:
    addr, _ = served
    pinned = image_registry.resolve(image_ref.parse(f"{addr}/hello:{tag}")).pinned
    subprocess.run(["docker", "pull", "-q", pinned], check=True, capture_output=True, timeout=300)
    port = free_ports(1)[0]
    name = f"hello-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--network", "host", "-e", f"PORT={port}", pinned],
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        deadline = time.monotonic() + 60
        health = ""
        while health != docker_health:
            assert time.monotonic() < deadline, f"docker health stayed {health!r}"
            time.sleep(0.2)
            health = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", name],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
        code, body = get(f"http://127.0.0.1:{port}/health")
        assert (code, body["version"]) == (status, tag)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
        subprocess.run(["docker", "rmi", pinned], capture_output=True, timeout=60)


def test_stop_ends_the_process_and_forgets_the_address(tmp_path, monkeypatch) -> None:
    require_docker()
    monkeypatch.setenv("OPS_STATE_DIR", str(tmp_path))
    addr = registry.start(echo=lambda _m: None)
    assert registry.address() == addr
    assert registry.stop() is True
    assert registry.address() is None
    assert registry.stop() is False
    with pytest.raises(image_registry.RegistryError, match="unreachable"):
        image_registry.resolve(image_ref.parse(f"{addr}/hello:v1"))


@pytest.mark.parametrize(("tag", "healthy"), [("v1", True), ("v3", False)])
def test_the_status_probe_reads_a_real_container(
    served: tuple[str, str], tag: str, healthy: bool
) -> None:
    """The probe program as a host runs it, against the machine's own Docker engine."""
    from ops.workflows.deploy_probe import parse_probe, probe_command
    from ops.workflows.deploy_spec import parse_spec

    addr, _ = served
    resolved = image_registry.resolve(image_ref.parse(f"{addr}/hello:{tag}"))
    port = free_ports(1)[0]
    name = f"hello-probe-{uuid.uuid4().hex[:8]}"
    spec = parse_spec(
        "hello",
        Path("hello.yml"),
        {"repository": f"{addr}/hello", "container_name": name, "port": port,
         "health_check": {"http": "/health"}},
        environ={},
    )  # fmt: skip
    subprocess.run(["docker", "pull", "-q", resolved.pinned], check=True, capture_output=True)
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--network", "host", "-e", f"PORT={port}",
         "-e", "HELLO_API_TOKEN=do-not-leak",
         "--label", f"org.fleetops.digest={resolved.digest}",
         "--label", f"org.fleetops.port={port}",
         "--label", "org.fleetops.deployed-at=2026-11-29T12:00:00Z", resolved.pinned],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:  # wait for the app to listen (v3 answers 503, which also counts)
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
                break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, "hello never listened"
                time.sleep(0.1)
        out = subprocess.run(
            ["sh", "-c", probe_command(spec).commands[0]],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert "do-not-leak" not in out
        state = parse_probe(out, spec)
        assert state.present and state.running
        assert state.digest == resolved.digest
        assert state.healthy is healthy
        assert state.since == "2026-11-29T12:00:00Z"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
        subprocess.run(["docker", "rmi", resolved.pinned], capture_output=True, timeout=60)


def test_a_registry_that_cannot_bind_is_reported_and_cleaned_up(tmp_path, monkeypatch) -> None:
    import socket

    from ops.errors import OpsError

    monkeypatch.setenv("OPS_STATE_DIR", str(tmp_path))
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        monkeypatch.setattr(registry, "free_ports", lambda _n: [taken.getsockname()[1]])
        with pytest.raises(OpsError, match="did not start"):
            registry.start(echo=lambda _m: None)
        assert registry.address() is None
    finally:
        taken.close()


def test_hellos_secret_is_seeded_once_and_then_left_alone() -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        ssm = boto3.client(
            "ssm",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

        def value() -> str:
            got = ssm.get_parameter(Name=registry.HELLO_SECRET, WithDecryption=True)
            return str(got["Parameter"]["Value"])

        assert registry.seed_secret(env) is True
        first = value()
        assert len(first) == 32
        assert registry.seed_secret(env) is False  # there already: an operator's value stays
        assert value() == first
    finally:
        server.stop()
