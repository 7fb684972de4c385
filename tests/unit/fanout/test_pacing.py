"""The learning client-side rate, against a simulated service bucket on a simulated clock."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator

import pytest

from ops.sandbox.emulator.throttle import DEFAULT_RATES, Throttle
from ops.transports.pacing import AimdRate, Pacer, Ticket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


def drive(
    pacer: Pacer | None, clock: Clock, service: Throttle, calls: int, *, gap: float = 0.002
) -> tuple[int, float]:
    """Make `calls` successful calls as fast as allowed, retrying throttled ones after a
    short back-off; returns (throttled answers, seconds taken)."""
    started = clock.now
    throttled = 0
    done = 0
    while done < calls:
        ticket = pacer.acquire("SendCommand") if pacer is not None else None
        clock.now += gap  # the round trip
        ok = service.allow("SendCommand")
        if pacer is not None and ticket is not None:
            pacer.answered(ticket, throttled=not ok)
        if ok:
            done += 1
        else:
            throttled += 1
            clock.sleep(0.05)
    return throttled, clock.now - started


def senders(
    pacer: Pacer,
    clock: Clock,
    service: Throttle,
    calls: int,
    *,
    threads: int = 8,
    rtt: float = 0.02,
    late: float = 0.02,
    seed: int = 1,
) -> tuple[list[tuple[float, bool]], float]:
    """`threads` senders sharing `calls` calls, as the fan-out's send pool does: each
    waits for the pacer (waking up to `late` seconds late, as a busy machine's
    threads do), its call reaches the service half a round trip later, and a
    throttled call is tried again at once through the pacer (as
    SsmTransport._until_granted does). Simulated time: returns each call's
    (time it reached the service, granted) and when the last granted answer came."""
    jitter = random.Random(seed)
    left = [calls]
    log: list[tuple[float, bool]] = []
    last = [clock.now]

    def sender() -> Iterator[float]:
        while left[0] > 0:
            left[0] -= 1
            while True:
                got = pacer.try_acquire("SendCommand")
                while not isinstance(got, Ticket):
                    yield got + jitter.uniform(0.0, late)
                    got = pacer.try_acquire("SendCommand")
                yield clock.now + rtt / 2
                granted = service.allow("SendCommand")
                log.append((clock.now, granted))
                yield clock.now + rtt / 2
                pacer.answered(got, throttled=not granted)
                if granted:
                    last[0] = clock.now
                    break

    waiting = [(clock.now, n, sender()) for n in range(threads)]
    while waiting:
        at, n, thread = heapq.heappop(waiting)
        clock.now = max(clock.now, at)
        wake = next(thread, None)
        if wake is not None:
            heapq.heappush(waiting, (wake, n, thread))
    return log, last[0]


def quota(operation: str, multiplier: float) -> tuple[float, float]:
    rate, burst = DEFAULT_RATES[operation]
    return rate * multiplier, max(1.0, burst * multiplier)


# the emulator's quotas as the benchmark meets them: cut to a tenth (SendCommand
# and ListCommands 0.5/s with a burst of 1, ListCommandInvocations 1/s with 2)
# and at their defaults; `calls` as many as a run makes of them or more
@pytest.mark.parametrize(
    ("operation", "multiplier", "calls"),
    [
        ("SendCommand", 0.1, 40),
        ("SendCommand", 0.1, 120),
        ("ListCommandInvocations", 0.1, 40),
        ("SendCommand", 1.0, 20),
        ("SendCommand", 1.0, 200),
        ("ListCommandInvocations", 1.0, 300),
    ],
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_many_senders_lose_no_time_against_the_quota(
    operation: str, multiplier: float, calls: int, seed: int
) -> None:
    rate, burst = quota(operation, multiplier)
    clock = Clock()
    service = Throttle({"SendCommand": (rate, burst)}, clock=clock)
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    log, last = senders(pacer, clock, service, calls, seed=seed)
    first = log[0][0]
    ideal = (calls - burst) / rate  # every token taken the moment it is there
    assert last - first <= ideal * 1.05 + 0.5
    # the first round: every sender's call is out before the first throttled
    # answer comes back; after it, at most a tenth of the calls
    throttled = [at for at, granted in log if not granted]
    first_round = [at for at in throttled if at <= throttled[0] + 0.1]
    assert len(first_round) <= 8
    assert len(throttled) - len(first_round) <= 0.10 * calls


def test_senders_waiting_when_the_service_slows_down_cut_once_not_each() -> None:
    """Calls already waiting for their slots when a cut comes wait for the new one: none
    goes out at the old spacing to be throttled as a round of its own (each such
    round used to cut again, deeper each time, far below what the service grants)."""
    clock = Clock()
    service = Throttle({"SendCommand": (5.0, 10.0)}, clock=clock)
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    senders(pacer, clock, service, 200)
    service.configure(multiplier=0.1)  # 0.5/s with a burst of 1
    log, last = senders(pacer, clock, service, 60)
    throttled = sum(1 for _, granted in log if not granted)
    assert throttled <= 10  # the fall found within a few rounds
    assert last - log[0][0] <= 60 / 0.5 * 1.05
    assert pacer.stats()["SendCommand"]["rate"] == pytest.approx(0.5, rel=0.06)


def test_a_cut_while_a_call_waits_holds_it_back() -> None:
    clock = Clock()
    cut: list[Ticket] = []

    def sleep(seconds: float) -> None:
        if not cut:  # a throttled answer comes back while the call waits
            cut.append(early)
            pacer.answered(early, throttled=True)
        clock.sleep(seconds)

    pacer = Pacer({"SendCommand": 10.0}, clock=clock, sleep=sleep)
    early = pacer.acquire("SendCommand")
    pacer.answered(pacer.acquire("SendCommand"), throttled=False)  # the burst of two
    waited = pacer.acquire("SendCommand")  # its slot was 0.1 s on, before the cut
    assert cut
    assert waited.cuts == 1
    assert waited.issued - early.issued >= 1 / 9.0 - 1e-9  # the cut rate's interval


# (rate, burst, slack): a service bucket with a burst lends back what a rate just
# under it leaves unused; one without (burst 1) does not, so AIMD's saw-tooth
# costs time there (measured: 1.09x at 0.5/s, 1.13x at 1/s over a minute)
@pytest.mark.parametrize(
    ("rate", "burst", "slack"),
    [(5.0, 10.0, 1.02), (10.0, 20.0, 1.02), (50.0, 100.0, 1.02), (0.5, 1.0, 1.2), (1.0, 1.0, 1.2)],
)
def test_throttled_share_stays_under_a_tenth(rate: float, burst: float, slack: float) -> None:
    calls = int(burst + rate * 60)  # a minute's worth past the burst
    clock = Clock()
    service = Throttle({"SendCommand": (rate, burst)}, clock=clock)
    throttled, took = drive(Pacer(clock=clock, sleep=clock.sleep), clock, service, calls)
    ideal = (calls - burst) / rate
    assert throttled <= 0.10 * (calls + throttled)
    assert took <= ideal * slack + 0.5

    # the same work unpaced, as before: as fast, but mostly throttled answers
    blind_clock = Clock()
    blind_service = Throttle({"SendCommand": (rate, burst)}, clock=blind_clock)
    blind_throttled, blind_took = drive(None, blind_clock, blind_service, calls)
    assert blind_throttled > 2 * throttled
    assert took <= blind_took * slack + 0.5


def test_rate_follows_a_service_that_slows_down() -> None:
    clock = Clock()
    service = Throttle({"SendCommand": (10.0, 20.0)}, clock=clock)
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    drive(pacer, clock, service, 300)
    service.configure(multiplier=0.2)  # another tool now takes most of the quota
    throttled, _ = drive(pacer, clock, service, 150)
    assert throttled <= 0.20 * (150 + throttled)  # the fall is found within a few rounds
    throttled, took = drive(pacer, clock, service, 150)
    assert throttled <= 0.10 * (150 + throttled)
    assert took <= 150 / 2.0 * 1.15
    assert pacer.stats()["SendCommand"]["rate"] == pytest.approx(2.0, rel=0.3)


def test_unthrottled_operation_is_never_paced() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        pacer.answered(pacer.acquire("ListCommands"), throttled=False)
    assert clock.now == 1000.0
    assert pacer.stats()["ListCommands"] == {"rate": None, "calls": 1000, "throttled": 0}


def test_one_cut_per_round_and_the_first_from_what_was_granted() -> None:
    clock = Clock()
    rate = AimdRate(clock=clock)
    issued = [Ticket("SendCommand", clock.now, rate.cuts) for _ in range(12) if rate.take() is None]
    for ticket in issued[:10]:
        rate.answered(ticket, throttled=False)
    clock.now += 0.1
    for ticket in issued[10:]:  # two answers of the same round
        rate.answered(ticket, throttled=True)
    assert rate.rate == pytest.approx(5.0)  # half of the 10 granted in the last second
    assert rate.throttles == 2
    assert rate.cuts == 1
    assert rate.take() is not None  # the service's bucket is empty: wait
    clock.now += 1.0
    assert rate.take() is None
    rate.answered(Ticket("SendCommand", clock.now, rate.cuts), throttled=True)
    assert rate.cuts == 2
    # nothing granted for 1.1 s and still no token: fewer than one call per 1.1 s
    assert rate.rate == pytest.approx(0.97 / 1.1 * 0.9)  # and under it, being a streak


def test_a_throttled_call_after_a_granted_one_bounds_the_rate() -> None:
    """No token when the call went, though there had been no fewer than none when the
    last granted call went: the service grants less than one call per that gap."""
    clock = Clock()
    rate = AimdRate(4.0, clock=clock)
    for _ in range(3):
        assert rate.take() is None
        rate.answered(Ticket("SendCommand", clock.now, rate.cuts), throttled=False)
        clock.now += 0.25
    assert rate.take() is None
    rate.answered(Ticket("SendCommand", clock.now, rate.cuts), throttled=True)
    assert rate.rate == pytest.approx(4.0 * 0.97)  # just under one call per 0.25 s
    assert rate.take() == pytest.approx(clock.now - 0.25 + 1 / (4.0 * 0.97))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        AimdRate(0.0)
    with pytest.raises(ValueError):
        AimdRate(decrease=1.5)
    with pytest.raises(ValueError):
        AimdRate(burst=0.5)


def test_throttled_before_anything_was_granted_starts_from_a_guess_and_climbs() -> None:
    clock = Clock()
    rate = AimdRate(clock=clock)
    assert rate.take() is None
    rate.answered(Ticket("SendCommand", clock.now), throttled=True)
    assert rate.rate == pytest.approx(1.0)
    for _ in range(rate.recover):
        clock.now += 1.0
        assert rate.take() is None
        rate.answered(Ticket("SendCommand", clock.now, rate.cuts), throttled=False)
    assert rate.rate == pytest.approx(4.0)  # four times the guess within `recover` calls
