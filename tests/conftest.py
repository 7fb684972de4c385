"""Shared test set-up: tiers are marked by folder, state never leaks between tests, and the
suite spreads over pytest-xdist workers without two workers sharing a fleet.

Parallel runs (`scripts/test.sh` passes `-n 3`; `--dist loadgroup` is the default):

- Every xdist worker is its own pytest session, so each session-scoped fixture (the shared
  `sandbox`, the patch sandbox, the fan-out AWS sandbox) is built once per worker that needs
  it, under that worker's own temporary folder. A sandbox's container label, ports and
  moto/emulator processes all derive from its OPS_STATE_DIR, so workers never meet.
- A unit test goes to whichever worker is free. An integration, e2e or molecule test is
  grouped (`xdist_group`) with the rest of its module, so a module-scoped fixture (a fleet, a
  deploy, an install) is built once and its tests run in order on one worker. A new test
  file needs nothing more. A module that uses a session fixture listed in SHARED_FIXTURES
  (the patch sandbox) joins that fixture's group, so the fixture is built once; add a costly
  new session fixture there. A module may set `pytestmark = pytest.mark.xdist_group(...)`
  itself, e.g. to split off a slow test (each group builds what it uses).
- HEAVIEST lists the groups that take minutes, heaviest first: they are handed out before
  everything else, so they start at once on different workers instead of forming a tail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

TIERS = ("unit", "integration", "e2e", "molecule")
ROOT = Path(__file__).parent
REPO = ROOT.parent

# Session fixtures too costly to build on two workers: a module using one joins its group.
SHARED_FIXTURES = {
    "patch_sandbox": "patch-sandbox",  # one private sandbox whose hosts patch and reboot
}

# Groups measured at minutes on 2 cores, heaviest first (see README, "Tests").
HEAVIEST = (
    "tests/e2e/test_installed_wheel.py",
    "tests/integration/deploy/test_deploy_run.py",
    "patch-sandbox",
    "patch-crash",
    "tests/integration/patch/test_patch_docker_containers.py",
    "tests/integration/ansible/test_pull_crash_resume.py",
    "tests/integration/docker/test_docker_crash_resume.py",
    "tests/e2e/test_demo.py",
    "tests/integration/docker/test_docker_sandbox.py",
    "molecule-docker_engine",
    "tests/integration/runtime/test_crash_resume.py",
    "tests/integration/ansible/test_pull.py",
    "molecule-ansible_runtime",
)


def _relpath(item: pytest.Item) -> str | None:
    try:
        return Path(item.fspath).relative_to(REPO).as_posix()
    except ValueError:
        return None


def _shared_groups(items: list[pytest.Item]) -> dict[str, str]:
    """Module path -> group, for modules where a test uses one of SHARED_FIXTURES."""
    found: dict[str, str] = {}
    for item in items:
        rel = _relpath(item)
        for name in getattr(item, "fixturenames", ()):
            if rel is not None and name in SHARED_FIXTURES:
                found[rel] = SHARED_FIXTURES[name]
    return found


def group_for(rel: str | None, marked: str | None, shared: dict[str, str]) -> str | None:
    """The group a test runs in under `--dist loadgroup`; None lets it go to any worker."""
    if marked is not None:
        return marked
    if rel is None or rel.startswith("tests/unit/"):
        return None
    return shared.get(rel, rel)


def xdist_group_of(item: pytest.Item, shared: dict[str, str]) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    marked = None
    if mark is not None:
        marked = str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    return group_for(_relpath(item), marked, shared)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its folder's tier, group it for xdist, and put the heaviest first."""
    shared = _shared_groups(items)
    groups: dict[int, str | None] = {}
    for item in items:
        rel = _relpath(item) or ""
        parts = Path(rel).parts
        if len(parts) > 1 and parts[0] == "tests" and parts[1] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[1]))
        group = groups[id(item)] = xdist_group_of(item, shared)
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        from tests.support.scheduling import GroupFiles

        GroupFiles.write(workerinput, {it.nodeid: g for it in items if (g := groups[id(it)])})
    rank = {group: i for i, group in enumerate(HEAVIEST)}
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda it: (rank.get(groups[id(it)] or "", len(rank)), order[id(it)]))


def pytest_configure_node(node: Any) -> None:
    """xdist, on the controller: tell each worker where to leave its tests' groups."""
    from tests.support.scheduling import WORKER_KEY, GroupFiles

    node.workerinput[WORKER_KEY] = str(GroupFiles.folder(node.config))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under `--dist loadgroup`: units by group, the HEAVIEST handed out first, one at a time."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests.support.scheduling import HeavyFirstScheduling

    return HeavyFirstScheduling(config, log, HEAVIEST)


def pytest_unconfigure(config: pytest.Config) -> None:
    from tests.support.scheduling import GroupFiles

    GroupFiles.remove(config)


@pytest.fixture(autouse=True)
def isolated_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test gets its own OPS_STATE_DIR unless it asks for the shared sandbox."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("OPS_STATE_DIR", str(state))
    return state
