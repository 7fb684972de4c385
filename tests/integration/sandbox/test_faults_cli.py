"""Faults and throttling injected through `ops sandbox` while `ops run` works the fleet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.sandbox.emulator import DEFAULT_RATES
from tests.support.sandbox import SandboxSession, make_inventories


@pytest.fixture(scope="module")
def synthetic_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxSession]:
    """A fleet of simulated instances only: no Docker needed, seconds to start."""
    base = tmp_path_factory.mktemp("faults")
    own = SandboxSession(state_dir=base / "state", inventories=make_inventories(base))
    own.state_dir.mkdir()
    up = own.ops(
        "--output", "json", "sandbox", "up", "--hosts", "0", "--synthetic", "20", "--seed", "3"
    )
    assert up.returncode == 0, up.stderr
    for line in own.ops("sandbox", "env").stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        own.env[key] = value.strip("'")
    yield own
    own.ops("sandbox", "down")


def _run(own: SandboxSession) -> tuple[int, dict[str, int]]:
    result = own.ops(
        "--yes",
        "run",
        "--target",
        "Env=sandbox",
        "--max-errors",
        "100%",
        "--output",
        "json",
        "--",
        "echo hi",
    )
    return result.returncode, json.loads(result.stdout)["summary"]


def test_forced_failure_then_clear(synthetic_sandbox: SandboxSession) -> None:
    own = synthetic_sandbox
    ids = json.loads(own.ops("--output", "json", "sandbox", "status").stdout)
    assert ids["synthetic"] == 20
    fault = own.ops(
        "sandbox", "fault", "set", "fail", "--fraction", "0.5", "--param", "exit_code=3"
    )
    assert fault.returncode == 0, fault.stderr
    code, summary = _run(own)
    assert code == 1
    assert summary == {"Success": 10, "Failed": 10}
    assert own.ops("sandbox", "fault", "clear").returncode == 0
    code, summary = _run(own)
    assert (code, summary) == (0, {"Success": 20})


def test_throttling_storm_slows_but_loses_nothing(synthetic_sandbox: SandboxSession) -> None:
    own = synthetic_sandbox
    slow = ["--rate", "ListCommands=0.5/1", "--rate", "ListCommandInvocations=0.5/1"]
    assert own.ops("sandbox", "throttle", *slow).returncode == 0
    try:
        code, summary = _run(own)
    finally:
        defaults = [f"--rate={op}={rate}/{burst}" for op, (rate, burst) in DEFAULT_RATES.items()]
        own.ops("sandbox", "throttle", *defaults)
    assert (code, summary) == (0, {"Success": 20})
    calls = json.loads(own.ops("sandbox", "calls", "--output", "json").stdout)
    assert any(c["throttled"] for c in calls)


def test_unknown_fault_is_bad_input(synthetic_sandbox: SandboxSession, tmp_path: Path) -> None:
    result = synthetic_sandbox.ops("sandbox", "fault", "set", "meteor", "--fraction", "1")
    assert result.returncode == 2
    assert "unknown fault 'meteor'" in result.stderr
    nothing_up = SandboxSession(state_dir=tmp_path / "s", inventories=make_inventories(tmp_path))
    refused = nothing_up.ops("sandbox", "calls")
    assert refused.returncode == 2 and "no sandbox is up" in refused.stderr
