"""`ops deploy status` and `plan` on the shared sandbox: read-only, bad input refused first."""

from __future__ import annotations

import json

import pytest

from ops.sandbox import registry
from tests.support.sandbox import SandboxSession


@pytest.fixture(scope="module")
def with_registry(sandbox_session: SandboxSession) -> str:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPS_STATE_DIR", str(sandbox_session.state_dir))
        addr = registry.ensure(echo=lambda _m: None)
    sandbox_session.env["OPS_SANDBOX_REGISTRY"] = addr  # `ops sandbox env` now says the same
    return addr


def send_commands(sandbox: SandboxSession) -> int:
    calls = sandbox.ops("--output", "json", "sandbox", "calls", "--operation", "SendCommand")
    return len(json.loads(calls.stdout))


def test_env_exports_the_registry(sandbox: SandboxSession, with_registry: str) -> None:
    exported = sandbox.ops("sandbox", "env").stdout
    assert f"export OPS_SANDBOX_REGISTRY={with_registry}" in exported


def test_status_lists_every_web_host_and_its_target_group(
    sandbox: SandboxSession, with_registry: str
) -> None:
    result = sandbox.ops("deploy", "status", "hello", "--output", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    web = sorted(h["instance_id"] for h in sandbox.status["hosts"] if h["role"] == "web")
    assert data["service"] == "hello"
    assert sorted(h["instance_id"] for h in data["hosts"]) == web
    for host in data["hosts"]:
        assert set(host) >= {
            "instance_id",
            "name",
            "image",
            "digest",
            "healthy",
            "in_service",
            "since",
        }
        assert host["in_service"] is True and host["targets"] == {"web": "healthy"}
        # no container runs yet; the probe says why instead of guessing
        assert host["digest"] is None and host["error"]


def test_plan_resolves_the_tag_and_splits_batches(
    sandbox: SandboxSession, with_registry: str
) -> None:
    result = sandbox.ops(
        "deploy", "plan", "hello", "--image", "v2", "--batch", "1", "--output", "json"
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["digest"].startswith("sha256:") and plan["pull"].endswith(plan["digest"])
    web = [h for h in sandbox.status["hosts"] if h["role"] == "web"]
    assert [len(b) for b in plan["batches"]] == [1] * len(web)
    assert all(h["will_run"] == plan["digest"] and h["changes"] for b in plan["batches"] for h in b)
    # the spec bounds each drain at 10 s; the web group's own delay (5 s) ends it first
    assert plan["drain"] == {"seconds": 10, "deregistration_delay": {"web": 5}, "cut": []}
    text = sandbox.ops("deploy", "plan", "hello", "--image", "v2")
    assert text.returncode == 0, text.stderr
    assert "drain: up to 10 s a host (delay: web 5 s)" in text.stdout
    assert "note:" not in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image", "hello:v2;rm"], "does not parse"),
        (["--image", "v9"], "not found"),
        (["--image", "v2", "--batch", "0"], "--batch must be at least 1"),
    ],
)
def test_bad_input_exits_2_before_any_host(
    sandbox: SandboxSession, with_registry: str, args: list[str], message: str
) -> None:
    before = send_commands(sandbox)
    result = sandbox.ops("deploy", "plan", "hello", *args)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert send_commands(sandbox) == before


def test_spec_without_health_check_exits_2(sandbox: SandboxSession, with_registry: str) -> None:
    spec = sandbox.inventories / "sandbox" / "services" / "nohealth.yml"
    spec.write_text("repository: ${OPS_SANDBOX_REGISTRY}/hello\nport: 8080\n")
    before = send_commands(sandbox)
    result = sandbox.ops("deploy", "status", "nohealth")
    assert result.returncode == 2
    assert "nohealth.yml: health_check: is required" in result.stderr
    assert send_commands(sandbox) == before
