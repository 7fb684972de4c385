"""`ops run` against the Run Command emulator's faults: each engine fault reproduced, then held.

A lost or dropped SendCommand answer, a client clock ahead of AWS's, a run of
failed polls, a cancel asked while sends are throttled, a read that does not
know a fresh invocation yet.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.integration.fanout.conftest import Sandbox


def _json(result: Any) -> dict[str, Any]:
    text = result.stdout
    return dict(json.loads(text[text.index("{") :]))


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Ctrl-C to this process after `seconds`: a run that would poll forever is
    interrupted (exit 130) instead of hanging the suite."""
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _clock_ahead(minutes: int) -> type[datetime]:
    """datetime with a local clock `minutes` ahead of AWS's."""

    class Ahead(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Ahead:  # type: ignore[override]
            moment = datetime.now(tz) + timedelta(minutes=minutes)
            return cls.fromtimestamp(moment.timestamp(), tz)

    return Ahead


@pytest.mark.parametrize("minutes", [10, 20])
def test_a_clock_minutes_ahead_still_ends(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, minutes: int
) -> None:
    """Three commands in flight are watched with one ListCommands listing; its
    time filter must come from the service's clock, not this one (20 minutes is
    past any fixed tolerance)."""
    suite = f"clock{minutes}"
    ids = sandbox.aws.add_synthetic(150, tags={"Suite": suite}, name_prefix=suite)
    for module in ("ops.engine.fanout", "ops.transports.ssm", "ops.engine.plan"):
        monkeypatch.setattr(f"{module}.datetime", _clock_ahead(minutes))
    mark = sandbox.mark()
    with watchdog(60):
        result = sandbox.run(suite, "echo on time", "--concurrency", "100%")
    assert result.exit_code == 0, result.output[-2000:]
    document = _json(result)
    assert document["summary"] == {"Success": 150}
    assert {r["instance_id"] for r in document["results"]} == set(ids)
    listings = [c for c in sandbox.calls(mark, "ListCommands") if "Filters" in c["params"]]
    assert listings, "three commands were not watched with one listing"
