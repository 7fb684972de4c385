"""Ctrl-C and SIGTERM: the first cancels what is in flight, the second exits at once.

A supervisor (systemd, a CI runner, `timeout`) stops a process with SIGTERM;
treating it like the first Ctrl-C means the commands in flight are cancelled,
the journal gets every result, and the run can be resumed from it.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ops.errors import ExitCode

HANDLED = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interrupts(cancel: Callable[[], None], note: Callable[[str], None]) -> Iterator[None]:
    """While inside: the first SIGINT/SIGTERM calls `cancel`, the second ends the process."""
    presses = 0

    def handler(signum: int, _frame: object) -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            note(f"interrupted ({name}): cancelling in-flight commands (Ctrl-C again to quit now)")
            cancel()
            return
        sys.stderr.write("ops: interrupted twice, exiting now\n")
        sys.stderr.flush()
        os._exit(int(ExitCode.INTERRUPTED))

    previous: dict[signal.Signals, Any] = {}
    try:
        for signum in HANDLED:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: no handler, the run just goes on
        yield
        return
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
