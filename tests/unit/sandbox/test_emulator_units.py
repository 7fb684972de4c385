"""The emulator's parts on their own: buckets, validation, faults, synthetic hosts, call log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.sandbox.emulator import DEFAULT_RATES, Dist, SyntheticProfile
from ops.sandbox.emulator.calllog import CallLog
from ops.sandbox.emulator.executors import filler, synthetic_outcome
from ops.sandbox.emulator.faults import Faults
from ops.sandbox.emulator.throttle import Throttle
from ops.sandbox.emulator.validate import ApiError, validate

IDS = [f"i-{n:017x}" for n in range(60)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_burst_then_refills_at_rate() -> None:
    clock = Clock()
    throttle = Throttle({"SendCommand": (2.0, 3.0)}, clock=clock)
    assert [throttle.allow("SendCommand") for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token at 2/s
    assert [throttle.allow("SendCommand") for _ in range(2)] == [True, False]
    clock.now += 10  # refill stops at the burst
    assert sum(throttle.allow("SendCommand") for _ in range(10)) == 3


def test_multiplier_disable_and_unknown_operations() -> None:
    clock = Clock()
    throttle = Throttle({"ListCommands": (1.0, 10.0)}, clock=clock)
    throttle.configure(multiplier=0.2)
    assert sum(throttle.allow("ListCommands") for _ in range(10)) == 2
    throttle.configure(enabled=False)
    assert all(throttle.allow("ListCommands") for _ in range(50))
    assert all(Throttle(clock=clock).allow("GetParameter") for _ in range(100))
    with pytest.raises(ValueError):
        throttle.configure(multiplier=0)


def test_default_rates_cover_every_emulated_operation() -> None:
    assert set(DEFAULT_RATES) == {
        "SendCommand",
        "CancelCommand",
        "ListCommands",
        "ListCommandInvocations",
        "GetCommandInvocation",
        "DescribeInstanceInformation",
    }
    assert all(rate > 0 and burst >= rate for rate, burst in DEFAULT_RATES.values())


def send(**extra: object) -> dict[str, object]:
    return {"DocumentName": "AWS-RunShellScript", "InstanceIds": IDS[:2], **extra}


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        (send(InstanceIds=IDS[:51]), "less than or equal to 50"),
        (send(InstanceIds=["host-1"]), "regular expression pattern"),
        (send(MaxConcurrency="0"), "regular expression pattern"),
        (send(TimeoutSeconds=5), "valid min value: 30"),
        (send(TimeoutSeconds="60"), "Invalid type"),
        ({"InstanceIds": IDS[:1]}, "Missing required parameter"),
        (send(Bogus=1), "Unknown parameter"),
    ],
)
def test_send_command_validation(params: dict[str, object], fragment: str) -> None:
    with pytest.raises(ApiError) as exc:
        validate("SendCommand", params)
    assert exc.value.code == "ValidationException"
    assert fragment in exc.value.message


def test_validation_reports_every_error_and_accepts_valid_input() -> None:
    with pytest.raises(ApiError) as exc:
        validate(
            "ListCommandInvocations",
            {"MaxResults": 51, "Filters": [{"key": "Colour", "value": "x"}]},
        )
    assert exc.value.message.startswith("2 validation errors detected")
    assert "enum value set" in exc.value.message
    assert validate("SendCommand", send(MaxErrors="10%"))["MaxErrors"] == "10%"


def test_fraction_faults_are_seeded_and_sized() -> None:
    first = Faults(seed=3).set("fail", known=IDS, fraction=0.1)
    again = Faults(seed=3).set("fail", known=list(reversed(IDS)), fraction=0.1)
    other = Faults(seed=4).set("fail", known=IDS, fraction=0.1)
    assert first == again and len(first) == 6
    assert first != other


def test_fault_parameters_are_checked_and_typed() -> None:
    faults = Faults()
    faults.set("slow_pickup", known=IDS, instances=IDS[:1], params={"seconds": "2"})
    assert faults.get(IDS[0], "slow_pickup") == {"seconds": 2.0}
    assert faults.get(IDS[1], "slow_pickup") is None
    for kind, kwargs in [
        ("melt", {"instances": IDS[:1]}),
        ("fail", {"instances": ["i-ffffffffffffffff0"]}),
        ("fail", {"instances": IDS[:1], "params": {"signal": 9}}),
        ("fail", {}),
    ]:
        with pytest.raises(ApiError):
            faults.set(kind, known=IDS, **kwargs)  # type: ignore[arg-type]
    faults.clear()
    assert faults.get(IDS[0], "slow_pickup") is None


def test_error_5xx_rate_is_roughly_the_fraction() -> None:
    faults = Faults(seed=1)
    assert not any(faults.roll_5xx() for _ in range(100))
    faults.set("error_5xx", known=IDS, fraction=0.3)
    hits = sum(faults.roll_5xx() for _ in range(2000))
    assert 500 <= hits <= 700


def outcome(commands: list[str], attempt: int = 0, **profile: object) -> object:
    return synthetic_outcome(
        seed=5,
        instance_id=IDS[0],
        command_id="c0ffee00-0000-4000-8000-000000000000",
        attempt=attempt,
        commands=commands,
        hostname="web-1",
        profile=SyntheticProfile(**profile),  # type: ignore[arg-type]
    )


def test_interpreted_scripts() -> None:
    run = outcome(["echo a b", "hostname", "echo err >&2", "sleep 2", "exit 3", "echo never"])
    assert (run.stdout, run.stderr, run.exit_code) == ("a b\nweb-1\n", "err\n", 3)  # type: ignore[attr-defined]
    assert run.duration >= 2  # type: ignore[attr-defined]
    assert outcome(["exit 194"]).exit_code == 194  # type: ignore[attr-defined]
    assert outcome(["exit 194"], attempt=1).exit_code == 0  # type: ignore[attr-defined]
    assert outcome(["seq 3"]).stdout == "1\n2\n3\n"  # type: ignore[attr-defined]


def test_profile_outcomes_are_reproducible() -> None:
    profile = {"failure_rate": 0.5, "output_chars": Dist.uniform(100, 5000)}
    first = outcome(["apt-get upgrade"], **profile)
    assert first == outcome(["apt-get upgrade"], **profile)
    assert first.stdout == "" and first.stdout_fill >= 100  # type: ignore[attr-defined]
    codes = {
        synthetic_outcome(
            seed=5,
            instance_id=iid,
            command_id="c0ffee00-0000-4000-8000-000000000000",
            attempt=0,
            commands=["apt-get upgrade"],
            hostname="h",
            profile=SyntheticProfile(failure_rate=0.5),
        ).exit_code
        for iid in IDS
    }
    assert codes == {0, 1}


def test_filler_is_exact_and_deterministic() -> None:
    text = filler(IDS[0], "abcdef12-0000", 30001)
    assert len(text) == 30001 and text == filler(IDS[0], "abcdef12-0000", 30001)
    assert filler(IDS[0], "x", 0) == ""


def test_distributions_and_profile_round_trip() -> None:
    import random

    rng = random.Random(0)
    assert Dist.fixed(2.5).sample(rng) == 2.5
    assert all(1 <= Dist.uniform(1, 2).sample(rng) <= 2 for _ in range(100))
    assert all(Dist.lognormal(0, 3, cap=4).sample(rng) <= 4 for _ in range(100))
    profile = SyntheticProfile(pickup_seconds=Dist.lognormal(-1, 0.5, cap=3), failure_rate=0.2)
    assert SyntheticProfile.from_json(json.loads(json.dumps(profile.to_json()))) == profile


def test_call_log_ring_and_file(tmp_path: Path) -> None:
    log = CallLog(tmp_path / "calls.jsonl", capacity=3)
    for n in range(5):
        log.record(
            "SendCommand",
            {"InstanceIds": IDS[:n], "Parameters": {"commands": ["secret"]}},
            status=200,
            error=None,
            throttled=False,
            elapsed_ms=1.0,
        )
    log.close()
    assert [e["seq"] for e in log.since(0)] == [3, 4, 5]
    assert [e["seq"] for e in log.since(4)] == [5]
    assert log.since(5) == []
    lines = (tmp_path / "calls.jsonl").read_text().splitlines()
    assert len(lines) == 5
    last = json.loads(lines[-1])
    assert last["params"] == {"InstanceIds": "<4 items>"}
    assert "secret" not in "".join(lines)
