"""Every request the emulator served, so tests and benchmarks can see what a client really did.

Kept in a bounded ring in memory for quick queries and appended to a JSONL
file so that a long run can be audited after the process is gone.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

_SUMMARY_KEYS = (
    "CommandId",
    "InstanceId",
    "InstanceIds",
    "Targets",
    "MaxResults",
    "NextToken",
    "Details",
    "Filters",
    "MaxConcurrency",
    "MaxErrors",
    "DocumentName",
)


def summarise(params: dict[str, Any]) -> dict[str, Any]:
    """A short, bounded view of the parameters: lists become counts past a few items.

    Command text is left out on purpose: it may carry secrets a caller pasted in.
    """
    out: dict[str, Any] = {}
    for key in _SUMMARY_KEYS:
        if key not in params:
            continue
        value = params[key]
        if isinstance(value, list) and len(value) > 3:
            out[key] = f"<{len(value)} items>"
        elif isinstance(value, str) and len(value) > 80:
            out[key] = value[:77] + "..."
        else:
            out[key] = value
    return out


class CallLog:
    def __init__(self, path: Path | None, capacity: int = 20000) -> None:
        self._lock = threading.Lock()
        self._ring: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._seq = 0
        self._file = path.open("a", encoding="utf-8") if path is not None else None

    def record(
        self,
        operation: str,
        params: dict[str, Any],
        *,
        status: int,
        error: str | None,
        throttled: bool,
        elapsed_ms: float,
    ) -> None:
        with self._lock:
            self._seq += 1
            entry = {
                "seq": self._seq,
                "time": time.time(),
                "operation": operation,
                "params": summarise(params),
                "status": status,
                "error": error,
                "throttled": throttled,
                "elapsed_ms": round(elapsed_ms, 3),
            }
            self._ring.append(entry)
            if self._file is not None:
                self._file.write(json.dumps(entry, default=str) + "\n")
                self._file.flush()

    def since(self, seq: int = 0) -> list[dict[str, Any]]:
        """Entries with a sequence number greater than `seq`, oldest first."""
        with self._lock:
            return [entry for entry in self._ring if entry["seq"] > seq]

    @property
    def last_seq(self) -> int:
        return self._seq

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
