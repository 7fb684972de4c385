"""A client-side rate per API operation that learns what the service grants.

SSM's request quotas are per account and region and shared by every tool that
calls it; they are not published per operation and change with load. Retrying
throttled calls with back-off still gets the work done, but each throttled
answer is a request the account's other tools could have had. So each
operation gets its own paced rate, learnt AIMD-fashion as TCP learns its
congestion window:

- until the first throttled answer an operation is not paced at all (a run
  that never meets a quota pays nothing);
- the first throttled answer sets the rate to half of what the service granted
  in the second before it (its burst included, hence the half);
- each later throttled round cuts the rate by `decrease` (once per round:
  calls let go before the last cut were answered for by it; rounds throttled
  one after another with nothing answered between cut deeper each time), and
  the next call waits half an interval, the service's bucket being empty;
- answered calls raise the rate back to where it was cut within `recover`
  of them (quickly, as TCP CUBIC returns to its last window), then probe
  above it slowly: throttled answers settle near one in `recover` or fewer,
  while the rate spends little time below what the service grants.

Thread-safe; no thread of its own. `Pacer.acquire(operation)` blocks until
the call may go and returns a ticket for `Pacer.answered`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW = 1.0  # seconds of answered calls the first cut is measured over
GUESS = 1.0  # calls per second after a throttle with nothing granted before it
WAIT_AFTER_CUT = 0.5  # of an interval: on average the service's bucket is half-way to a token


@dataclass(frozen=True)
class Ticket:
    """One paced call: which operation, and when it was let go."""

    operation: str
    issued: float


class AimdRate:
    """One operation's rate: reservations spaced 1/rate apart, `burst` of them at once."""

    def __init__(
        self,
        rate: float | None = None,
        *,
        burst: float = 2.0,
        min_rate: float = 0.2,
        max_rate: float = 1000.0,
        decrease: float = 0.9,
        first_decrease: float = 0.5,
        recover: int = 15,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < min_rate <= max_rate or (rate is not None and not min_rate <= rate <= max_rate):
            raise ValueError("need 0 < min_rate <= rate <= max_rate")
        if not (0 < decrease < 1 and 0 < first_decrease < 1) or recover < 1 or burst < 1:
            raise ValueError("decreases must be in (0, 1), recover >= 1 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.min_rate = min_rate
        self.max_rate = max_rate
        self.decrease = decrease
        self.first_decrease = first_decrease
        self.recover = recover
        self.probe = (1.0 / decrease) ** (1.0 / (4 * recover))
        self.growth = self.probe
        self.ceiling = 0.0  # the rate at the last cut
        self.throttles = 0
        self.calls = 0
        self._clock = clock
        self._next = clock()
        self._last_cut = float("-inf")
        self._granted: deque[float] = deque()
        self._learnt = False
        self.cut = decrease
        self._streak = 0

    def reserve(self) -> float:
        """When this call may go (now or later); the caller waits until then."""
        now = self._clock()
        self.calls += 1
        if self.rate is None:
            return now
        slot = max(self._next, now - (self.burst - 1) / self.rate)
        self._next = slot + 1.0 / self.rate
        return slot

    def answered(self, issued: float, *, throttled: bool) -> None:
        now = self._clock()
        if not throttled:
            self._streak = 0
            if self.rate is None:
                self._granted.append(now)
                while self._granted and self._granted[0] < now - WINDOW:
                    self._granted.popleft()
            else:
                growth = self.growth if self.rate < self.ceiling else self.probe
                self.rate = min(self.max_rate, self.rate * growth)
            return
        self.throttles += 1
        if issued < self._last_cut:
            return  # let go before the last cut: the same round, already answered for
        if self.rate is None:
            granted = sum(1 for stamp in self._granted if stamp >= now - WINDOW)
            if granted:
                self.ceiling = granted / WINDOW
                self.rate = self.ceiling * self.first_decrease
            else:  # throttled before anything was granted: nothing to measure, so guess
                self.rate = max(self.min_rate, min(self.max_rate, GUESS))
                self.ceiling = self.rate * 4
            self._granted.clear()
        else:
            # a ceiling met again where it was met before is the service's rate:
            # cut less each time (down to 2 %), so the rate stays close under it
            steady = self.ceiling and abs(self.rate - self.ceiling) <= 0.05 * self.ceiling
            self.cut = min(0.98, 1 - (1 - self.cut) / 2) if steady else self.decrease
            self.ceiling = self.rate
            # cut after cut with no answered call between: the service's rate fell
            # far; each cut in the streak goes deeper
            self.rate *= self.cut ** (1 + self._streak)
            self._streak += 1
        self.rate = min(self.max_rate, max(self.min_rate, self.rate))
        # the first ceiling is only a guess (a burst measured): climb back to it fast
        steps = self.recover if self._learnt else max(2, self.recover // 5)
        self._learnt = True
        self.growth = max(self.probe, (self.ceiling / self.rate) ** (1.0 / steps))
        self._last_cut = now
        self._next = max(self._next, now + WAIT_AFTER_CUT / self.rate)


class Pacer:
    """An AimdRate per operation, made on first use (`rates` may give one a starting rate)."""

    def __init__(
        self,
        rates: dict[str, float] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        **options: float,
    ) -> None:
        self._start = dict(rates or {})
        self._clock = clock
        self._sleep = sleep
        self._options = options
        self._lock = threading.Lock()
        self._rates: dict[str, AimdRate] = {}

    def _rate(self, operation: str) -> AimdRate:
        rate = self._rates.get(operation)
        if rate is None:
            rate = AimdRate(
                self._start.get(operation),
                clock=self._clock,
                **self._options,  # type: ignore[arg-type]
            )
            self._rates[operation] = rate
        return rate

    def acquire(self, operation: str, stop: threading.Event | None = None) -> Ticket:
        """Wait for the operation's next slot; a `stop` set meanwhile ends the wait early
        (the caller checks it and gives the call up)."""
        with self._lock:
            slot = self._rate(operation).reserve()
        wait = slot - self._clock()
        if wait > 0:
            if stop is None:
                self._sleep(wait)
            else:
                stop.wait(wait)
        return Ticket(operation, max(slot, self._clock()))

    def answered(self, ticket: Ticket, *, throttled: bool) -> None:
        with self._lock:
            self._rate(ticket.operation).answered(ticket.issued, throttled=throttled)

    def stats(self) -> dict[str, dict[str, float | None]]:
        """Per operation: the rate it settled at (None: never throttled), calls, throttled."""
        with self._lock:
            return {
                op: {
                    "rate": None if r.rate is None else round(r.rate, 3),
                    "calls": r.calls,
                    "throttled": r.throttles,
                }
                for op, r in sorted(self._rates.items())
            }
