"""Parsing and policy: count-or-percent amounts, the failure budget, target expressions."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.engine.budget import Amount, FailureBudget, parse_concurrency, parse_max_errors
from ops.errors import BadInput
from ops.fleet.targets import TargetSpec, build_spec, parse_tags, read_instance_file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50", Amount(50, False)),
        ("10%", Amount(10, True)),
        (" 7 ", Amount(7, False)),
        (3, Amount(3, False)),
    ],
)
def test_concurrency_parses_counts_and_percentages(text: str, expected: Amount) -> None:
    assert parse_concurrency(text) == expected


@pytest.mark.parametrize("text", ["0", "0%", "101%", "-1", "ten", "5.5", "", "%"])
def test_bad_concurrency_is_bad_input(text: str) -> None:
    with pytest.raises(BadInput, match="--concurrency"):
        parse_concurrency(text)


@pytest.mark.parametrize("text", ["120%", "-2", "x"])
def test_bad_max_errors_is_bad_input(text: str) -> None:
    with pytest.raises(BadInput, match="--max-errors"):
        parse_max_errors(text)


def test_zero_errors_is_a_valid_budget() -> None:
    assert parse_max_errors("0") == Amount(0, False)
    assert parse_max_errors("0%").resolve(100) == 0


def test_percentages_round_up_for_concurrency_and_down_for_errors() -> None:
    assert Amount(10, True).resolve(5, at_least_one=True) == 1
    assert Amount(10, True).resolve(5) == 0
    assert Amount(25, True).resolve(10, at_least_one=True) == 3


def test_budget_sends_full_batches_up_to_concurrency() -> None:
    budget = FailureBudget(1000, Amount(120, False), Amount(0, False))
    assert budget.next_batch(in_flight=0, remaining=1000) == 50
    assert budget.next_batch(in_flight=100, remaining=900) == 0  # 20 free, a batch is 50
    assert budget.next_batch(in_flight=70, remaining=900) == 50
    assert budget.next_batch(in_flight=0, remaining=7) == 7
    small = FailureBudget(10, Amount(3, False), Amount(0, False))
    assert small.next_batch(in_flight=0, remaining=10) == 3


def test_budget_stops_after_the_error_past_the_limit() -> None:
    budget = FailureBudget(100, Amount(10, False), Amount(2, False))
    for status in ("Failed", "Success", "TimedOut", "Cancelled"):
        budget.record(status)
    assert not budget.exhausted
    budget.record("Undeliverable")
    assert budget.exhausted
    assert budget.next_batch(in_flight=0, remaining=50) == 0


def test_tags_parse_and_match_keys_case_insensitively() -> None:
    spec = TargetSpec(parse_tags(["role=web,env=prod"]))
    assert spec.matches({"Role": "web", "Env": "prod", "Name": "w1"}, "i-0123456789abcdef0")
    assert not spec.matches({"Role": "web", "Env": "staging"}, "i-0123456789abcdef0")
    assert not spec.matches({"Role": "web"}, "i-0123456789abcdef0")
    assert spec.describe() == "role=web,env=prod"


@pytest.mark.parametrize("text", ["role", "role=", "=web", "role=web,role=db"])
def test_bad_tag_expressions_are_refused(text: str) -> None:
    with pytest.raises(BadInput, match="--target"):
        parse_tags([text])


def test_name_glob_and_default_filter() -> None:
    spec = build_spec(names=["web-*"]).with_default_filter({"Env": "sandbox"})
    assert spec.matches({"Name": "web-1", "env": "sandbox"}, "i-0123456789abcdef0")
    assert not spec.matches({"Name": "db-1", "Env": "sandbox"}, "i-0123456789abcdef0")
    assert not spec.matches({"Name": "web-1", "Env": "prod"}, "i-0123456789abcdef0")
    mine = build_spec(targets=["env=prod"]).with_default_filter({"Env": "sandbox"})
    assert mine.tags == {"env": "prod"}


def test_from_file_reads_ids_and_refuses_bad_files(tmp_path: Path) -> None:
    good = tmp_path / "ids.txt"
    good.write_text("# web tier\ni-0123456789abcdef0\n\ni-0123456789abcdef1  # second\n")
    assert read_instance_file(good) == ["i-0123456789abcdef0", "i-0123456789abcdef1"]
    with pytest.raises(BadInput, match="cannot read"):
        read_instance_file(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("web-1\n")
    with pytest.raises(BadInput, match="not an instance id"):
        read_instance_file(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    with pytest.raises(BadInput, match="no instance ids"):
        read_instance_file(empty)


def test_no_selector_is_refused() -> None:
    with pytest.raises(BadInput, match="no target"):
        build_spec()
