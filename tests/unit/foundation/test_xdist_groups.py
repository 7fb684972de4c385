"""How the suite is split over pytest-xdist workers (tests/conftest.py, tests/support).

A wrong group rebuilds a fleet on every worker or runs two tests that share hosts at
once; a wrong order leaves the longest group for last.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from tests.conftest import HEAVIEST, group_for
from tests.support.scheduling import WORKER_KEY, GroupFiles, HeavyFirstScheduling

SHARED = {"tests/integration/patch/test_patch_run_sandbox.py": "patch-sandbox"}


def test_unit_tests_go_anywhere_and_the_rest_stay_with_their_module() -> None:
    assert group_for("tests/unit/foundation/test_settings.py", None, SHARED) is None
    assert group_for(None, None, SHARED) is None
    module = "tests/integration/deploy/test_deploy_run.py"
    assert group_for(module, None, SHARED) == module
    assert group_for("tests/e2e/test_demo.py", None, SHARED) == "tests/e2e/test_demo.py"


def test_a_shared_session_fixture_or_an_explicit_mark_names_the_group() -> None:
    shared_module = "tests/integration/patch/test_patch_run_sandbox.py"
    assert group_for(shared_module, None, SHARED) == "patch-sandbox"
    assert group_for(shared_module, "mine", SHARED) == "mine"
    assert group_for("tests/unit/x/test_y.py", "mine", SHARED) == "mine"


def test_group_files_round_trip_and_stay_out_without_a_folder(tmp_path: Path) -> None:
    groups = {"tests/e2e/test_demo.py::test_demo": "tests/e2e/test_demo.py"}
    GroupFiles.write({"workerid": "gw0"}, groups)  # no folder named: nothing written
    assert GroupFiles.read(tmp_path) == {}
    GroupFiles.write({WORKER_KEY: str(tmp_path), "workerid": "gw1"}, groups)
    assert GroupFiles.read(tmp_path) == groups
    assert [p.name for p in tmp_path.iterdir()] == ["gw1.json"]


class Node:
    def __init__(self) -> None:
        self.shutting_down = False
        self.shut = False

    def shutdown(self) -> None:
        self.shut = True


def scheduler(queue: list[str], pending: int) -> tuple[HeavyFirstScheduling, Node, list[str]]:
    """The scheduler's decision alone: a node with `pending` tests left, a queue of units."""
    sched = object.__new__(HeavyFirstScheduling)
    node = Node()
    sched.heavy = frozenset(HEAVIEST)
    sched.workqueue = OrderedDict((scope, {f"{scope}::t": False}) for scope in queue)
    sched.assigned_work = {node: {"running": {f"t{i}": False for i in range(pending)}}}
    given: list[str] = []

    def assign(_node: Any) -> None:
        given.append(sched.workqueue.popitem(last=False)[0])

    sched._assign_work_unit = assign  # type: ignore[method-assign]
    return sched, node, given


def test_a_heavy_group_waits_until_the_worker_is_down_to_its_last_test() -> None:
    sched, node, given = scheduler([HEAVIEST[0], "tests/unit/a.py::t"], pending=2)
    sched._reschedule(node)
    assert given == []  # another worker may take it first
    # one test left: xdist runs it only once more work (or shutdown) arrives, so waiting
    # for zero here would leave the worker stuck for good
    sched.assigned_work[node] = {"running": {"t0": False}}
    sched._reschedule(node)
    assert given == [HEAVIEST[0]]


def test_light_units_are_prefetched_and_an_empty_queue_shuts_the_worker_down() -> None:
    sched, node, given = scheduler(["tests/unit/a.py::t"], pending=2)
    sched._reschedule(node)
    assert given == ["tests/unit/a.py::t"]
    sched._reschedule(node)
    assert node.shut


def test_heaviest_lists_each_group_once() -> None:
    assert len(set(HEAVIEST)) == len(HEAVIEST)
