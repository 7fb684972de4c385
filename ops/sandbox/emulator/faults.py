"""Faults a fleet shows in production, switched on per instance or for a seeded fraction.

A fraction is drawn from a seeded generator over the sorted instance ids, so
the same seed picks the same hosts on every run and a flaky test can be
replayed exactly.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from ops.sandbox.emulator.validate import ApiError

# kind -> parameters it accepts, with defaults
FAULT_KINDS: dict[str, dict[str, Any]] = {
    # the agent stops answering: PingStatus ConnectionLost, invocations wait as Delayed
    "agent_offline": {},
    # delivery fails outright: the invocation ends Failed / Undeliverable
    "undeliverable": {},
    # the agent picks work up late by `seconds`
    "slow_pickup": {"seconds": 5.0},
    # the command runs and exits with `exit_code`
    "fail": {"exit_code": 1},
    # the command never finishes on its own: it ends TimedOut at executionTimeout
    "hang": {},
    # the instance is terminated `after_seconds` into the command
    "terminate": {"after_seconds": 0.5},
    # a fraction of API responses are HTTP 500 InternalServerError (fleet-wide)
    "error_5xx": {"fraction": 0.1},
    # a fraction of SendCommand calls take effect but answer HTTP 500, as when
    # a response is lost on its way back: a blind retry runs the command twice
    "lost_response": {"fraction": 0.1},
}

FLEET_WIDE = {"error_5xx", "lost_response"}


class Faults:
    def __init__(self, seed: int = 0) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._per_instance: dict[str, dict[str, dict[str, Any]]] = {}
        self._fleet: dict[str, dict[str, Any]] = {}
        self._draws = 0
        self._rng = random.Random(f"faults:{seed}")

    def set(
        self,
        kind: str,
        *,
        known: list[str],
        instances: list[str] | None = None,
        fraction: float | None = None,
        params: dict[str, Any] | None = None,
    ) -> list[str]:
        """Switch a fault on; returns the instances it now applies to (empty if fleet-wide)."""
        if kind not in FAULT_KINDS:
            raise ApiError(
                "ValidationException",
                f"unknown fault {kind!r}; known: {', '.join(sorted(FAULT_KINDS))}",
            )
        merged = dict(FAULT_KINDS[kind])
        for key, value in (params or {}).items():
            if key not in merged:
                raise ApiError("ValidationException", f"fault {kind} takes no parameter {key!r}")
            merged[key] = type(merged[key])(value)
        if kind in FLEET_WIDE:
            if fraction is not None:
                merged["fraction"] = float(fraction)
            if not 0.0 <= merged["fraction"] <= 1.0:
                raise ApiError("ValidationException", "fraction must be between 0 and 1")
            with self._lock:
                self._fleet[kind] = merged
            return []
        if (instances is None) == (fraction is None):
            raise ApiError("ValidationException", "give either instances or fraction")
        if instances is not None:
            unknown = sorted(set(instances) - set(known))
            if unknown:
                raise ApiError("InvalidInstanceId", f"unknown instances: {', '.join(unknown[:5])}")
            chosen = list(instances)
        else:
            assert fraction is not None
            if not 0.0 <= fraction <= 1.0:
                raise ApiError("ValidationException", "fraction must be between 0 and 1")
            with self._lock:
                self._draws += 1
                rng = random.Random(f"faults:{self._seed}:{kind}:{self._draws}")
            pool = sorted(known)
            chosen = sorted(rng.sample(pool, round(len(pool) * fraction)))
        with self._lock:
            for instance_id in chosen:
                self._per_instance.setdefault(instance_id, {})[kind] = merged
        return chosen

    def clear(self, instances: list[str] | None = None) -> None:
        with self._lock:
            if instances is None:
                self._per_instance.clear()
                self._fleet.clear()
            else:
                for instance_id in instances:
                    self._per_instance.pop(instance_id, None)

    def get(self, instance_id: str, kind: str) -> dict[str, Any] | None:
        faults = self._per_instance.get(instance_id)
        return None if faults is None else faults.get(kind)

    def roll_5xx(self, kind: str = "error_5xx") -> bool:
        """True when this response should be an InternalServerError."""
        spec = self._fleet.get(kind)
        if spec is None:
            return False
        with self._lock:
            return self._rng.random() < spec["fraction"]

    def describe(self) -> dict[str, Any]:
        with self._lock:
            counts: dict[str, int] = {}
            for faults in self._per_instance.values():
                for kind in faults:
                    counts[kind] = counts.get(kind, 0) + 1
            return {"instances": counts, "fleet": dict(self._fleet)}
