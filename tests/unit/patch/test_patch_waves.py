"""Waves: canary first, then waves that never take too much of a Role or AZ out."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from ops.engine.budget import Amount, parse_amount
from ops.errors import BadInput
from ops.workflows.patch_waves import WaveHost, group_limits, plan_waves


def fleet(spec: list[tuple[str, str]]) -> list[WaveHost]:
    return [WaveHost(f"i-{n:03d}", role, az) for n, (role, az) in enumerate(spec)]


def amount(text: str) -> Amount:
    return parse_amount(text, option="--x", minimum=1)


def check(hosts: list[WaveHost], waves: list[list[str]], max_unavailable: Amount) -> None:
    """Every host exactly once, no wave empty, no group over its limit."""
    placed = [i for wave in waves for i in wave]
    assert sorted(placed) == sorted(h.instance_id for h in hosts)
    assert all(waves)
    limits = group_limits(hosts, max_unavailable)
    by_id = {h.instance_id: h for h in hosts}
    for wave in waves:
        counts = Counter(g for i in wave for g in by_id[i].groups())
        assert all(counts[g] <= limits[g] for g in counts), (wave, counts, limits)


SIX = fleet([("web", "a"), ("web", "b"), ("web", "a"), ("worker", "b"), ("worker", "a"),
             ("worker", "b")])  # fmt: skip


def test_canary_then_waves_within_half_of_each_group() -> None:
    waves = plan_waves(SIX, canary=1, wave=None, max_unavailable=amount("50%"))
    assert waves[0] == ["i-000"]
    # 50% of three rounds up to two of each Role and each AZ at once
    assert waves[1:] == [["i-001", "i-002", "i-003", "i-004"], ["i-005"]]
    check(SIX, waves, amount("50%"))


def test_one_at_a_time_per_group_with_a_count() -> None:
    waves = plan_waves(SIX, canary=0, wave=None, max_unavailable=amount("1"))
    assert all(len(w) <= 2 for w in waves)  # one web and one worker, never two of an AZ
    check(SIX, waves, amount("1"))


def test_wave_size_caps_each_wave_after_the_canary() -> None:
    waves = plan_waves(SIX, canary=2, wave=amount("2"), max_unavailable=amount("100%"))
    assert [len(w) for w in waves] == [2, 2, 2]


def test_wave_percentage_is_of_the_hosts_after_the_canary() -> None:
    hosts = fleet([("web", "a")] * 10)
    waves = plan_waves(hosts, canary=1, wave=amount("50%"), max_unavailable=amount("100%"))
    assert [len(w) for w in waves] == [1, 5, 4]


def test_percent_rounds_up_and_never_to_zero() -> None:
    hosts = fleet([("web", "a"), ("web", "a"), ("web", "a")])
    limits = group_limits(hosts, amount("10%"))
    assert limits == {("role", "web"): 1, ("az", "a"): 1}
    assert plan_waves(hosts, canary=0, wave=None, max_unavailable=amount("10%")) == [
        ["i-000"], ["i-001"], ["i-002"],
    ]  # fmt: skip


def test_a_small_role_is_not_taken_out_whole_by_a_large_share_of_the_az() -> None:
    hosts = fleet([("db", "a"), ("db", "a"), *[("web", "a")] * 8])
    waves = plan_waves(hosts, canary=0, wave=None, max_unavailable=amount("50%"))
    for wave in waves:
        assert sum(1 for i in wave if i in ("i-000", "i-001")) <= 1
    check(hosts, waves, amount("50%"))


def test_canary_larger_than_the_fleet_is_refused() -> None:
    with pytest.raises(BadInput, match="--canary 7 is larger than the 6 hosts"):
        plan_waves(SIX, canary=7, wave=None, max_unavailable=amount("50%"))


def test_canary_that_breaches_the_group_limits_is_refused() -> None:
    with pytest.raises(BadInput, match="--canary 3 would take more hosts"):
        plan_waves(SIX, canary=3, wave=None, max_unavailable=amount("1"))


def test_negative_canary_is_refused() -> None:
    with pytest.raises(BadInput, match="--canary must be 0 or more"):
        plan_waves(SIX, canary=-1, wave=None, max_unavailable=amount("1"))


def test_zero_wave_is_refused_when_parsed() -> None:
    with pytest.raises(BadInput, match="at least 1"):
        parse_amount("0", option="--wave", minimum=1)
    with pytest.raises(BadInput, match="--wave must be at least 1"):
        plan_waves(SIX, canary=0, wave=Amount(0, False), max_unavailable=amount("1"))


def test_no_hosts_no_waves() -> None:
    assert plan_waves([], canary=0, wave=None, max_unavailable=amount("1")) == []


def test_plans_are_deterministic_for_the_same_input() -> None:
    args = {"canary": 1, "wave": amount("3"), "max_unavailable": amount("34%")}
    assert plan_waves(SIX, **args) == plan_waves(list(SIX), **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(40))
def test_random_fleets_keep_every_invariant(seed: int) -> None:
    rng = random.Random(seed)
    roles = ["web", "worker", "db", "cache"][: rng.randint(1, 4)]
    zones = ["a", "b", "c"][: rng.randint(1, 3)]
    hosts = fleet([(rng.choice(roles), rng.choice(zones)) for _ in range(rng.randint(1, 40))])
    max_unavailable = amount(rng.choice(["1", "2", "10%", "25%", "50%", "100%"]))
    wave = rng.choice([None, amount("1"), amount("3"), amount("30%")])
    canary = rng.randint(0, 1)
    waves = plan_waves(hosts, canary=canary, wave=wave, max_unavailable=max_unavailable)
    check(hosts, waves, max_unavailable)
    if canary:
        assert len(waves[0]) == 1
    if wave is not None:
        cap = wave.resolve(len(hosts) - canary, at_least_one=True)
        assert all(len(w) <= cap for w in waves[canary:])


def test_waves_are_as_few_as_the_tightest_group_needs_when_groups_do_not_overlap() -> None:
    hosts = fleet([(r, "a") for r in ("web",) * 4])
    # one zone, one role: 50% of 4 = 2 at a time
    assert [len(w) for w in plan_waves(hosts, canary=0, wave=None,
                                       max_unavailable=amount("50%"))] == [2, 2]  # fmt: skip
    for combo in itertools.permutations(hosts):
        waves = plan_waves(list(combo), canary=0, wave=None, max_unavailable=amount("50%"))
        assert len(waves) == 2
