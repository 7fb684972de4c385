"""One private sandbox for every patch run test (they change packages and reboot hosts)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.patch_sandbox import start
from tests.support.sandbox import SandboxSession

# web-1, web-3 and worker-1 on Debian (real apt), web-2 an Amazon Linux 2 stand-in
PLATFORMS = "debian:3,al2:1"


@pytest.fixture(scope="session")
def patch_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxSession]:
    session = start(tmp_path_factory.mktemp("patch-sandbox"), PLATFORMS)
    yield session
    session.ops("sandbox", "down")
