"""`ops runs resume`: which runs may be resumed, and who resumes each kind.

Each kind of run (run, playbook, docker, patch, ...) registers the function
that rebuilds its plan from the journal and drives it on; this module only
decides whether a run may be resumed at all, before any of that: an unknown
id, a finished run and a run another live process holds are refused (exit
2) with nothing touched. A run its budget or a gate halted (`stopped`) is
finished for most kinds; a kind that registers with `halted=True` takes it
up again, once the operator has fixed the cause (its gates are checked
again before the next wave, as for any resume).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ops.errors import BadInput
from ops.journal.store import FINISHED_RUN, Journal, Run, RunHeld


@dataclass
class ResumeRequest:
    """What a resumer gets: the run it now holds, the journal, and how to talk to the user."""

    run: Run
    journal: Journal
    context: Any  # the CLI's OpsContext: settings, output format, colour


Resumer = Callable[[ResumeRequest], int]
Check = Callable[[Run], None]
_RESUMERS: dict[str, Resumer] = {}
_CHECKS: dict[str, Check] = {}
_HALTED_KINDS: set[str] = set()
HALTED = "stopped"  # what the runtime records for a run its budget or a gate halted


def register_resumer(
    kind: str, resumer: Resumer, check: Check | None = None, *, halted: bool = False
) -> None:
    """`kind` is the journal's run kind (Journal.begin_run); one resumer per kind.

    `check` refuses (BadInput) a run of this kind that cannot be rebuilt from
    the journal; it runs before the run is claimed, so a refusal changes nothing.
    `halted`: a run of this kind halted by its budget or a gate may be resumed
    (the check then refuses one with nothing left to do).
    """
    _RESUMERS[kind] = resumer
    if check is not None:
        _CHECKS[kind] = check
    if halted:
        _HALTED_KINDS.add(kind)
    else:
        _HALTED_KINDS.discard(kind)


def resumable_kinds() -> list[str]:
    return sorted(_RESUMERS)


def check_resumable(journal: Journal, run_id: str) -> tuple[Run, Resumer]:
    """The run and its resumer, or BadInput (exit 2) saying why it may not be resumed."""
    run = journal.get_run(run_id)
    if run is None:
        raise BadInput(f"no run {run_id!r} in the journal; `ops runs list` shows the ids")
    if run.status in FINISHED_RUN and not (run.status == HALTED and run.kind in _HALTED_KINDS):
        raise BadInput(f"run {run_id} already {run.status}; there is nothing to resume")
    resumer = _RESUMERS.get(run.kind)
    if resumer is None:
        raise BadInput(
            f"run {run_id} is a {run.kind!r} run, which cannot be resumed "
            f"(resumable kinds: {', '.join(resumable_kinds()) or 'none'})"
        )
    if run.held:
        raise _held(run)
    check = _CHECKS.get(run.kind)
    if check is not None:
        check(run)
    return run, resumer


def claim(journal: Journal, run: Run) -> Run:
    """Hold the run for this process; BadInput if another took it since the check."""
    try:
        return journal.claim(run.id)
    except RunHeld:
        raise _held(journal.get_run(run.id) or run) from None


def _held(run: Run) -> BadInput:
    return BadInput(
        f"run {run.id} is still running (pid {run.pid} on {run.hostname}, "
        f"last heartbeat {_when(run.heartbeat_at)}); stop that process first"
    )


def _when(moment: float | None) -> str:
    if moment is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))
