"""The load balancer's health state machine, on a fake clock and a scripted probe."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from ops.sandbox.elb_health import HealthBook, http_status, matches


@dataclass
class Group:
    arn: str = "arn:tg/web"
    health_check_interval_seconds: int = 5
    health_check_timeout_seconds: int = 2
    healthy_threshold_count: str = "2"
    unhealthy_threshold_count: str = "3"
    health_check_path: str = "/health"
    health_check_port: str = "traffic-port"
    matcher: dict[str, Any] = field(default_factory=lambda: {"HttpCode": "200"})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2)


def book_with(answers: dict[int, list[int | None]], clock: Clock) -> tuple[HealthBook, list[Any]]:
    seen: list[Any] = []

    def probe(port: int, path: str, timeout: float) -> int | None:
        seen.append((port, path, timeout))
        return answers[port].pop(0)

    return HealthBook(probe=probe, clock=clock), seen


def test_initial_until_the_healthy_threshold_then_unhealthy_after_failures(
    pool: ThreadPoolExecutor,
) -> None:
    clock, group = Clock(), Group()
    book, seen = book_with({8080: [200, 200, 500, None, 503, 200, 200]}, clock)
    book.registered(group.arn, "i-1", 8080)
    states = []
    for _ in range(7):
        book.check_due([group], pool)
        states.append(book.state_of(group.arn, "i-1"))
        clock.now += 5
    assert states == [
        "initial", "healthy", "healthy", "healthy", "unhealthy", "unhealthy", "healthy",
    ]  # fmt: skip
    assert seen[0] == (8080, "/health", 2.0)


def test_a_check_waits_for_its_interval(pool: ThreadPoolExecutor) -> None:
    clock, group = Clock(), Group()
    book, seen = book_with({8080: [200, 200]}, clock)
    book.registered(group.arn, "i-1", 8080)
    assert book.check_due([group], pool) == 1
    clock.now += 4.9
    assert book.check_due([group], pool) == 0
    clock.now += 0.1
    assert book.check_due([group], pool) == 1
    assert len(seen) == 2


def test_a_named_health_check_port_is_checked_instead_of_the_traffic_port(
    pool: ThreadPoolExecutor,
) -> None:
    clock, group = Clock(), Group(health_check_port="9000")
    book, seen = book_with({9000: [200]}, clock)
    book.registered(group.arn, "i-1", 8080)
    book.check_due([group], pool)
    assert seen[0][0] == 9000


def test_deregistered_targets_drain_for_the_delay_then_leave() -> None:
    clock = Clock()
    book = HealthBook(probe=lambda *_: 200, clock=clock)
    book.registered("tg", "i-1", 8080)
    book.deregistered("tg", {"Id": "i-1", "Port": 8080}, delay=5)
    assert book.state_of("tg", "i-1") is None
    assert book.draining("tg") == [{"Id": "i-1", "Port": 8080}]
    clock.now += 4.9
    assert book.draining("tg")
    clock.now += 0.1
    assert book.draining("tg") == []


def test_registering_again_ends_the_drain_and_starts_over() -> None:
    clock = Clock()
    book = HealthBook(probe=lambda *_: 200, clock=clock)
    book.deregistered("tg", {"Id": "i-1", "Port": 8080}, delay=300)
    book.registered("tg", "i-1", 8080)
    assert book.draining("tg") == []
    assert book.state_of("tg", "i-1") == "initial"


@pytest.mark.parametrize(
    ("code", "matcher", "passed"),
    [
        (200, "200", True),
        (302, "200,302", True),
        (299, "200-299", True),
        (300, "200-299", False),
        (None, "200", False),
        (500, "200", False),
    ],
)
def test_matcher(code: int | None, matcher: str, passed: bool) -> None:
    assert matches(code, matcher) is passed


def test_http_status_of_a_closed_port_is_none() -> None:
    from ops.sandbox.hosts import free_port

    assert http_status(free_port(), "/", 0.5) is None
