"""The learning client-side rate, against a simulated service bucket on a simulated clock."""

from __future__ import annotations

import pytest

from ops.sandbox.emulator.throttle import Throttle
from ops.transports.pacing import AimdRate, Pacer


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
    issued = [rate.reserve() for _ in range(12)]
    for stamp in issued[:10]:
        rate.answered(stamp, throttled=False)
    clock.now += 0.1
    for stamp in issued[10:]:  # two answers of the same round
        rate.answered(stamp, throttled=True)
    assert rate.rate == pytest.approx(5.0)  # half of the 10 granted in the last second
    assert rate.throttles == 2
    assert rate.reserve() >= clock.now + 0.1  # the service's bucket is empty: wait
    clock.now += 1.0
    rate.answered(rate.reserve(), throttled=True)
    assert rate.rate == pytest.approx(5.0 * 0.9)


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
    rate.answered(rate.reserve(), throttled=True)
    assert rate.rate == pytest.approx(1.0)
    for _ in range(3):
        clock.now += 1.0
        rate.answered(rate.reserve(), throttled=False)
    assert rate.rate == pytest.approx(4.0)  # back to four times the guess within three calls
