"""How pytest-xdist hands out the suite: by group, heaviest first, never queued behind another.

Groups: xdist's own `loadgroup` names a group by rewriting each test's node id, which
pytest 9.2 no longer allows (the node id is derived, not stored), so every test would be
scheduled alone and a module-scoped fleet rebuilt on each worker. Here each worker writes
the group of every test it collected to a file the controller named (GroupFiles); the
scheduler reads it when it splits the collection into work units.

Order: xdist gives a worker its next unit while it still has up to two tests left, which
is right for quick units but can park a ten-minute group behind a worker's last slow test
while another worker sits idle. A heavy group (tests/conftest.py HEAVIEST) goes only to a
worker down to its last test (which xdist holds back until the worker is sent more work or
told to stop); everything else is prefetched as xdist does.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

WORKER_KEY = "fleetops_groups_dir"
_DIR = pytest.StashKey[Path]()


class GroupFiles:
    """Where workers leave {node id: group} for the controller's scheduler."""

    @staticmethod
    def folder(config: pytest.Config) -> Path:
        if _DIR not in config.stash:
            config.stash[_DIR] = Path(tempfile.mkdtemp(prefix="fleetops-xdist-groups-"))
        return config.stash[_DIR]

    @staticmethod
    def remove(config: pytest.Config) -> None:
        if _DIR in config.stash:
            shutil.rmtree(config.stash[_DIR], ignore_errors=True)

    @staticmethod
    def write(workerinput: Mapping[str, Any], groups: Mapping[str, str]) -> None:
        """On a worker: written before the worker reports its collection, so it is there
        when the controller schedules. A controller that named no folder gets none."""
        if WORKER_KEY not in workerinput:
            return
        target = Path(workerinput[WORKER_KEY]) / f"{workerinput['workerid']}.json"
        partial = target.with_suffix(".partial")
        partial.write_text(json.dumps(dict(groups)))
        os.replace(partial, target)

    @staticmethod
    def read(folder: Path) -> dict[str, str]:
        for found in sorted(folder.glob("*.json")):  # every worker collected the same tests
            loaded: dict[str, str] = json.loads(found.read_text())
            return loaded
        return {}


class HeavyFirstScheduling(LoadScopeScheduling):
    def __init__(self, config: pytest.Config, log: Any, heavy: Collection[str]) -> None:
        # the order is the collection's (tests/conftest.py puts the heaviest first), not
        # xdist's largest-group-first
        config.option.loadscopereorder = False
        super().__init__(config, log)
        self.heavy = frozenset(heavy)
        self.folder = GroupFiles.folder(config)
        self.groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        """A test's work unit: its group, or the test alone when it has none."""
        if self.groups is None:
            self.groups = GroupFiles.read(self.folder)
        return self.groups.get(nodeid, nodeid)

    def _reschedule(self, node: Any) -> None:
        if node.shutting_down:
            return
        if not self.workqueue:
            node.shutdown()
            return
        pending = self._pending_of(self.assigned_work[node])
        next_scope = next(iter(self.workqueue))
        # A worker runs a test only once it knows the next one (for teardown), so its last
        # test waits for more work: a heavy unit goes to a worker down to that last test.
        if pending <= 1 or (pending <= 2 and next_scope not in self.heavy):
            self._assign_work_unit(node)
