"""The process entry: the collector's thresholds for one `ops` call, and back after it."""

from __future__ import annotations

import gc

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
