"""Counts-or-percentages, and the failure budget that stops a fan-out.

Concurrency and error limits are written the way SSM writes MaxConcurrency
and MaxErrors ("50" or "10%"), so an operator can move between `ops run` and
`--server-side` without relearning the notation. The transport asks this
module whether it may start more hosts; it never decides that itself.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass

from ops.errors import BadInput

# Invocation outcomes that spend the failure budget (as SSM's MaxErrors counts them).
ERROR_STATUSES = frozenset({"Failed", "TimedOut", "Undeliverable", "DeliveryTimedOut"})

_AMOUNT = re.compile(r"^\s*(\d+)\s*(%?)\s*$")


@dataclass(frozen=True)
class Amount:
    """A count of hosts, or a percentage of the hosts in the run."""

    value: int
    percent: bool

    def resolve(self, total: int, *, at_least_one: bool = False) -> int:
        """Hosts this amount stands for in a run of `total` hosts.

        Percentages round up for concurrency (10% of 5 hosts still runs one)
        and down for error budgets (10% of 5 hosts tolerates none), as SSM does.
        """
        if not self.percent:
            count = self.value
        elif at_least_one:
            count = math.ceil(total * self.value / 100)
        else:
            count = math.floor(total * self.value / 100)
        return max(count, 1) if at_least_one else count

    def __str__(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)


def parse_amount(text: str | int, *, option: str, minimum: int) -> Amount:
    """Parse "N" or "P%"; refuse anything else with a message that says how to mend it."""
    match = _AMOUNT.match(str(text))
    if not match:
        raise BadInput(
            f"{option} must be a count such as 10 or a percentage such as 10%, got {text!r}"
        )
    value, percent = int(match.group(1)), bool(match.group(2))
    if percent and not minimum <= value <= 100:
        raise BadInput(f"{option} percentage must be between {minimum}% and 100%, got {text}")
    if value < minimum:
        raise BadInput(f"{option} must be at least {minimum}, got {text}")
    return Amount(value, percent)


def parse_concurrency(text: str | int) -> Amount:
    return parse_amount(text, option="--concurrency", minimum=1)


def parse_max_errors(text: str | int) -> Amount:
    return parse_amount(text, option="--max-errors", minimum=0)


class FailureBudget:
    """How many hosts may be in flight, and whether errors have spent the budget.

    Follows SSM's MaxErrors rule: with a budget of N, the (N+1)th error stops
    dispatch. Work already in flight is left to finish.

    While hosts are still being listed (`counting`), percentages are taken of
    the hosts known so far, which only ever errs towards fewer hosts in
    flight and fewer errors allowed; a budget spent on that smaller total
    holds dispatch back rather than stopping it, and the verdict waits for
    the final count (`close`).
    """

    def __init__(
        self,
        total: int,
        concurrency: Amount,
        max_errors: Amount,
        batch_limit: int = 50,
        *,
        counting: bool = False,
    ):
        self._concurrency_amount = concurrency
        self._errors_amount = max_errors
        self.batch_limit = batch_limit
        self.counting = counting
        self.total = 0
        self.concurrency = 0
        self.allowed_errors = 0
        self._errors = 0
        self._lock = threading.Lock()
        self.grow(total)

    def grow(self, hosts: int) -> None:
        """More hosts joined the run (listed while it was going)."""
        self.total += hosts
        self.concurrency = self._concurrency_amount.resolve(self.total, at_least_one=True)
        self.allowed_errors = self._errors_amount.resolve(self.total)

    def close(self) -> None:
        """The total is final: from now on a spent budget stops the run."""
        self.counting = False

    @property
    def errors(self) -> int:
        return self._errors

    @property
    def exhausted(self) -> bool:
        """No new host may start now."""
        return self._errors > self.allowed_errors

    @property
    def stopped(self) -> bool:
        """No new host will ever start: spent, and no host still to be counted can mend it."""
        return self.exhausted and not self.counting

    def record(self, status: str) -> None:
        if status in ERROR_STATUSES:
            with self._lock:
                self._errors += 1

    def next_batch(self, in_flight: int, remaining: int) -> int:
        """How many more hosts to start now (0: wait, or stop if the budget is spent).

        A batch is sent only when a full one fits in the free slots (or what is
        left does), so a fleet is not sprayed with one-host commands as hosts
        finish one by one; SSM's 50-id limit caps every batch.
        """
        if self.exhausted or remaining <= 0:
            return 0
        free = self.concurrency - in_flight
        want = min(self.batch_limit, self.concurrency, remaining)
        return want if free >= want else 0
