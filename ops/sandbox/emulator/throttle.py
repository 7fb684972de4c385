"""Per-operation token buckets, so callers meet ThrottlingException as they would in AWS.

The real service publishes no fixed per-operation rates and varies them by
account and region; these defaults are deliberately modest so that a client
without back-off fails here first rather than in production.

Default rates (requests per second, burst):

=============================  ====  =====
Operation                      Rate  Burst
=============================  ====  =====
SendCommand                       5     10
CancelCommand                     5     10
ListCommands                      5     10
ListCommandInvocations           10     20
GetCommandInvocation             10     20
DescribeInstanceInformation       5     10
=============================  ====  =====

A multiplier scales every rate and burst at once (0.5 halves them, to imitate
a busy account); operations forwarded to moto are never throttled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_RATES: dict[str, tuple[float, float]] = {
    "SendCommand": (5.0, 10.0),
    "CancelCommand": (5.0, 10.0),
    "ListCommands": (5.0, 10.0),
    "ListCommandInvocations": (10.0, 20.0),
    "GetCommandInvocation": (10.0, 20.0),
    "DescribeInstanceInformation": (5.0, 10.0),
}


@dataclass
class _Bucket:
    rate: float
    burst: float
    tokens: float
    stamp: float


class Throttle:
    """Thread-safe token buckets keyed by operation name."""

    def __init__(
        self,
        rates: dict[str, tuple[float, float]] | None = None,
        *,
        multiplier: float = 1.0,
        enabled: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._clock: Callable[[], float] = clock or time.monotonic
        self._lock = threading.Lock()
        self._rates: dict[str, tuple[float, float]] = dict(DEFAULT_RATES)
        if rates:
            self._rates.update(rates)
        self.multiplier = multiplier
        self.enabled = enabled
        self._buckets: dict[str, _Bucket] = {}

    def configure(
        self,
        *,
        multiplier: float | None = None,
        rates: dict[str, tuple[float, float]] | None = None,
        enabled: bool | None = None,
    ) -> None:
        with self._lock:
            if multiplier is not None:
                if multiplier <= 0:
                    raise ValueError("multiplier must be greater than 0")
                self.multiplier = multiplier
            if rates:
                for op, (rate, burst) in rates.items():
                    if rate <= 0 or burst < 1:
                        raise ValueError(f"{op}: rate must be > 0 and burst >= 1")
                    self._rates[op] = (float(rate), float(burst))
            if enabled is not None:
                self.enabled = enabled
            self._buckets.clear()

    def reset(self) -> None:
        with self._lock:
            self._rates = dict(DEFAULT_RATES)
            self.multiplier = 1.0
            self.enabled = True
            self._buckets.clear()

    def allow(self, operation: str) -> bool:
        """Take one token for `operation`; False means the caller must be throttled."""
        if not self.enabled or operation not in self._rates:
            return True
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(operation)
            if bucket is None:
                rate, burst = self._rates[operation]
                rate, burst = rate * self.multiplier, max(1.0, burst * self.multiplier)
                bucket = _Bucket(rate, burst, burst, now)
                self._buckets[operation] = bucket
            bucket.tokens = min(bucket.burst, bucket.tokens + (now - bucket.stamp) * bucket.rate)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return True
            return False

    def describe(self) -> dict[str, object]:
        with self._lock:
            return {
                "enabled": self.enabled,
                "multiplier": self.multiplier,
                "rates": {op: list(pair) for op, pair in sorted(self._rates.items())},
            }
