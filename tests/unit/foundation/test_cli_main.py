"""The process entry: the collector's thresholds for one call, its objects frozen at exit."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from ops.cli import main as entry


def test_main_sets_the_collector_thresholds_for_its_call_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[int, ...]] = []

    def run(**_kwargs: object) -> int:
        seen.append(gc.get_threshold())
        return 0

    monkeypatch.setattr(entry.cli, "main", run)
    before = gc.get_threshold()
    with pytest.raises(SystemExit) as exited:
        entry.main(["--version"])
    assert exited.value.code == 0
    assert seen == [entry.GC_THRESHOLDS]
    assert gc.get_threshold() == before


def test_the_thresholds_come_back_when_the_call_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(**_kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(entry.cli, "main", run)
    before = gc.get_threshold()
    with pytest.raises(SystemExit) as exited:
        entry.main(["runs", "list"])
    assert exited.value.code == 130
    assert gc.get_threshold() == before


def test_the_objects_of_the_call_are_aged_out_of_the_young_generations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept: list[list[int]] = []

    def run(**_kwargs: object) -> int:
        kept.extend([n] for n in range(50_000))  # tracked containers the call leaves behind
        return 0

    monkeypatch.setattr(entry.cli, "main", run)
    gc.disable()  # no automatic collection may age them for main: only main can
    try:
        with pytest.raises(SystemExit):
            entry.main(["--version"])
        young = {id(obj) for generation in (0, 1) for obj in gc.get_objects(generation)}
    finally:
        gc.enable()
    assert len(kept) == 50_000
    assert not any(id(obj) in young for obj in kept)
    assert gc.get_freeze_count() == 0  # handed to the oldest generation, not left frozen


def test_an_ops_process_freezes_its_objects_at_exit(tmp_path: Path) -> None:
    # registered before main(), this handler runs after main's own (atexit runs LIFO)
    script = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0, flush=True))\n"
        "from ops.cli.main import main\n"
        "main(['--version'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "frozen True"
    assert "ops" in done.stdout.splitlines()[0]
