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
  in the second before it (its burst included, hence the half), and the rate
  climbs back towards that within `recover` answered calls;
- a later throttled answer, the first since a granted call, bounds the
  service's rate: its bucket had no token when the call went, and no fewer
  than none when the last granted call went, so it grants fewer than one call
  per that gap. The rate goes `MARGIN` under the bound (and under the last
  gap that was granted, when that is near: with a burst of one the service's
  rate lies between the two), and the next call goes one new interval after
  the last granted one, when the bucket has its token again;
- throttled answers one after another with nothing granted between mean the
  service's rate fell far: each cuts deeper (by `decrease`, then its square,
  ...), and once a call is granted the rate climbs back fast to under the
  last bound;
- from just under its last bound the rate probes up slowly, more slowly each
  time it meets the same bound again, so throttled answers grow rarer the
  longer a run keeps to one quota.

No call is given a slot ahead of time: a waiting call asks again when its time
comes, so a cut holds back every call still waiting, and none goes out at the
old spacing to be throttled. A ticket carries the number of cuts its rate had
had when the call went; a throttled answer to a call that went before the last
cut is of that cut's round and cuts nothing more.

Thread-safe; no thread of its own. `Pacer.acquire(operation)` blocks until
the call may go and returns a ticket for `Pacer.answered`; `Pacer.try_acquire`
is the same without the wait (a ticket, or when to ask again).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW = 1.0  # seconds of answered calls the first cut is measured over
GUESS = 1.0  # calls per second after a throttle with nothing granted before it
MARGIN = 0.03  # how far under the measured rate a cut sets the pace


@dataclass(frozen=True)
class Ticket:
    """One paced call: which operation, when it was let go, and how many cuts its
    rate had had by then (a throttled answer to a call let go before the last cut
    was answered for by that cut)."""

    operation: str
    issued: float
    cuts: int = 0


class AimdRate:
    """One operation's rate: calls spaced 1/rate apart, `burst` of them at once."""

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
        self.ceiling = 0.0  # what the service was last measured to grant
        self.throttles = 0
        self.calls = 0
        self.cuts = 0
        self._clock = clock
        self._next = clock()
        self._granted: deque[float] = deque()  # answered calls while unpaced
        self._last_grant = float("-inf")  # when the last granted call was let go
        self._granted_gap = float("inf")  # and how long after the one granted before it
        self._streak = 0
        self._bound = 0.0  # the last bound a throttled answer put on the service's rate
        self._probe = self.probe  # growth per answered call above the ceiling

    def take(self) -> float | None:
        """Let a call go now (None), or say when to ask again: the slot is not
        reserved, so a cut meanwhile holds back every waiting call."""
        now = self._clock()
        if self.rate is None:
            return None
        slot = max(self._next, now - (self.burst - 1) / self.rate)
        if slot > now:
            return slot
        self._next = slot + 1.0 / self.rate
        return None

    def answered(self, ticket: Ticket, *, throttled: bool) -> None:
        now = self._clock()
        self.calls += 1
        if not throttled:
            self._streak = 0
            if ticket.issued > self._last_grant:
                self._granted_gap = ticket.issued - self._last_grant
                self._last_grant = ticket.issued
            if self.rate is None:
                self._granted.append(now)
                while self._granted and self._granted[0] < now - WINDOW:
                    self._granted.popleft()
            else:
                growth = self.growth if self.rate < self.ceiling else self._probe
                self.rate = min(self.max_rate, self.rate * growth)
            return
        self.throttles += 1
        # no token in the service's bucket when the call went, though it had had
        # at least none when the last granted call before it went: the service
        # grants fewer than one call per that gap
        gap = ticket.issued - self._last_grant
        bound = 1.0 / gap if 0 < gap < float("inf") else None
        if ticket.cuts < self.cuts:
            return  # let go before the last cut: the same round, already answered for
        if self.rate is None:
            granted = sum(1 for stamp in self._granted if stamp >= now - WINDOW)
            if granted:  # the burst and the rate together: an upper bound, hence the cut
                self.ceiling = granted / WINDOW
                self.rate = self.ceiling * self.first_decrease
            else:  # throttled before anything was granted: nothing to measure, so guess
                self.rate = GUESS
                self.ceiling = GUESS * 4
            self._granted.clear()
        elif self._streak == 0 and bound is not None:
            # the first throttled answer since a granted one: go just under the
            # bound and probe up from there; a bound met again where it was met
            # before is the service's rate, so probe more slowly each time
            bound = min(self.rate, bound)
            steady = abs(bound - self._bound) <= MARGIN * self._bound
            self._probe = 1 + (self._probe - 1) / 2 if steady else self.probe
            self._probe = max(self._probe, 1 + (self.probe - 1) / 8)
            self._bound = bound
            # and no faster than the last gap the service granted, if near (with a
            # burst of one, the service's rate lies between the two)
            near = max(bound * (1 - 2 * MARGIN), 1.0 / self._granted_gap)
            self.rate = self.ceiling = min(bound, near) * (1 - MARGIN)
        else:
            # cut after cut with nothing answered between: the service's rate fell
            # far; each cut in the streak goes deeper, and once a call is granted
            # the rate climbs back fast to under the last bound
            self.ceiling = self.rate if bound is None else min(self.rate, bound) * (1 - MARGIN)
            self.rate = self.ceiling * self.decrease ** max(1, self._streak)
        self._streak += 1
        self.rate = min(self.max_rate, max(self.min_rate, self.rate))
        steps = max(2, self.recover // 3) if self._streak > 1 else self.recover
        self.growth = max(self.probe, (self.ceiling / self.rate) ** (1.0 / steps))
        self.cuts += 1
        # the service's bucket held no less than nothing when the last granted call
        # went: at the new rate its next token comes one interval after that
        since = self._last_grant if bound is not None else ticket.issued
        self._next = max(now, since + 1.0 / self.rate)


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

    def try_acquire(self, operation: str) -> Ticket | float:
        """The call may go (its ticket), or the time to ask again."""
        with self._lock:
            rate = self._rate(operation)
            slot = rate.take()
            return Ticket(operation, self._clock(), rate.cuts) if slot is None else slot

    def acquire(self, operation: str, stop: threading.Event | None = None) -> Ticket:
        """Wait for the operation's next slot; a `stop` set meanwhile ends the wait early
        (the caller checks it and gives the call up)."""
        while True:
            got = self.try_acquire(operation)
            if isinstance(got, Ticket):
                return got
            wait = max(0.0, got - self._clock())
            if stop is None:
                self._sleep(wait)
            elif stop.wait(wait):  # the caller gives the call up: no slot is taken
                return Ticket(operation, self._clock())

    def answered(self, ticket: Ticket, *, throttled: bool) -> None:
        with self._lock:
            self._rate(ticket.operation).answered(ticket, throttled=throttled)

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
