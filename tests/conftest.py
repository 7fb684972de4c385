"""Shared test set-up: tiers are marked by folder, and state never leaks between tests."""

from __future__ import annotations

from pathlib import Path

import pytest

TIERS = ("unit", "integration", "e2e", "molecule")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by the folder it lives in, so `-m unit` needs no per-file marker."""
    root = Path(__file__).parent
    for item in items:
        try:
            tier = Path(item.fspath).relative_to(root).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(autouse=True)
def isolated_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test gets its own OPS_STATE_DIR unless it asks for the shared sandbox."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("OPS_STATE_DIR", str(state))
    return state
