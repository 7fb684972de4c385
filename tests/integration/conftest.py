"""One sandbox fleet per test session, shared by every test that asks for it.

Starting containers and moto is the slow part; the checks are cheap. Tests
that need a fleet of their own (up/down, scale) make one; the rest share this.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.sandbox import (
    SESSION_PLATFORMS,
    SandboxSession,
    make_inventories,
    require_docker,
)


@pytest.fixture(scope="session")
def sandbox_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxSession]:
    require_docker()
    base = tmp_path_factory.mktemp("sandbox-session")
    session = SandboxSession(state_dir=base / "state", inventories=make_inventories(base))
    session.state_dir.mkdir()
    up = session.ops(
        "--output", "json", "sandbox", "up", "--platforms", SESSION_PLATFORMS, timeout=1200
    )
    if up.returncode != 0:
        session.ops("sandbox", "down")
        pytest.fail(f"ops sandbox up failed ({up.returncode}): {up.stderr[-3000:]}")
    session.status = json.loads(up.stdout)
    env_lines = session.ops("sandbox", "env").stdout.splitlines()
    for line in env_lines:
        key, _, value = line.removeprefix("export ").partition("=")
        session.env[key] = value.strip("'")
    yield session
    session.ops("sandbox", "down")


@pytest.fixture
def sandbox(sandbox_session: SandboxSession, monkeypatch: pytest.MonkeyPatch) -> SandboxSession:
    """The shared sandbox, with this process's environment pointed at it."""
    for key, value in sandbox_session.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OPS_STATE_DIR", str(sandbox_session.state_dir))
    monkeypatch.setenv("OPS_INVENTORIES", str(sandbox_session.inventories))
    return sandbox_session
