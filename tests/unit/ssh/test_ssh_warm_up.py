"""The transport's warm connections: used only for the route they were opened to,
closed when the listing does not confirm them, and a host's refusal kept as its answer."""

from __future__ import annotations

import threading
from typing import Any

import paramiko
import pytest

from ops.transports.ssh import SshOptions, SshTarget, SshTransport, SshUnreachable

A = SshTarget("i-0a", "127.0.0.1", 2201)
B = SshTarget("i-0b", "127.0.0.1", 2202)


class FakeClient:
    def __init__(self, port: int, strict: bool) -> None:
        self.port = port
        self.strict = strict
        self.closed = threading.Event()
        self.active = True

    def get_transport(self) -> Any:
        return self

    def is_active(self) -> bool:
        return self.active and not self.closed.is_set()

    def close(self) -> None:
        self.closed.set()


def fake(client: object) -> FakeClient:
    assert isinstance(client, FakeClient)
    return client


class Transport(SshTransport):
    """Logins answered by `answers` (per port: an exception to raise, or None), each held
    until `release` is set; every client made is kept in `made`."""

    def __init__(self, answers: dict[int, BaseException | None] | None = None) -> None:
        super().__init__(SshOptions(host_key_policy="accept-new"))
        self.answers = answers or {}
        self.release = threading.Event()
        self.release.set()
        self.made: list[FakeClient] = []
        self.logins: list[tuple[int, bool]] = []

    def _new_client(self, host: str, port: int, *, strict: bool = False) -> Any:
        client = FakeClient(port, strict)
        self.made.append(client)
        return client

    def _login(self, client: Any, host: str, port: int, user: str, sock: Any = None) -> None:
        self.release.wait(10)
        self.logins.append((port, client.strict))
        answer = self.answers.get(port)
        if answer is not None:
            raise answer
        with self._lock:
            self.connects += 1


def test_a_warm_connection_serves_its_own_route_once_confirmed() -> None:
    transport = Transport()
    assert transport.warm([A, B]) == 2
    transport.keep([A, B])
    assert transport.client(A) is transport.made[0]
    assert transport.client(A) is transport.made[0]  # then reused like any connection
    assert transport.warm_used == 1 and transport.connects == 2
    assert transport.logins[0][1] is True  # strict, whatever the run's policy


def test_a_host_the_listing_did_not_confirm_is_closed_unused() -> None:
    transport = Transport()
    transport.release.clear()
    transport.warm([A, B])
    transport.keep([A])
    transport.release.set()
    b = next(c for c in transport.made if c.port == B.port)
    assert b.closed.wait(5)
    transport.client(A)
    assert transport.warm_used == 1


def test_a_host_reached_elsewhere_now_gets_a_new_connection() -> None:
    transport = Transport()
    transport.warm([A])
    moved = SshTarget(A.instance_id, "127.0.0.1", 2299)
    transport.keep([moved])
    client = fake(transport.client(moved))
    assert client.port == 2299 and not client.strict
    assert transport.made[0].closed.wait(5)
    assert transport.warm_used == 0


def test_a_route_changed_after_keep_is_not_served_by_the_old_connection() -> None:
    transport = Transport()
    transport.warm([A])
    moved = SshTarget(A.instance_id, "127.0.0.1", 2299)
    client = fake(transport.client(moved))
    assert client.port == 2299
    assert transport.made[0].closed.wait(5)


def test_a_host_that_did_not_answer_is_unreachable_without_a_second_timeout() -> None:
    transport = Transport({A.port: TimeoutError("timed out")})
    transport.warm([A])
    with pytest.raises(SshUnreachable, match="timed out connecting"):
        transport.client(A)
    assert transport.logins == [(A.port, True)]


def test_a_key_or_login_refused_under_strict_is_tried_again_under_the_run_s_policy() -> None:
    transport = Transport({A.port: paramiko.SSHException("not found in known_hosts")})
    transport.warm([A])
    transport.answers = {}
    client = fake(transport.client(A))
    assert not client.strict
    assert transport.logins == [(A.port, True), (A.port, False)]
    assert transport.warm_used == 0


def test_a_warm_connection_that_dropped_is_opened_again() -> None:
    transport = Transport()
    transport.warm([A])
    transport.release.clear()
    threading.Timer(0.05, transport.release.set).start()
    first = fake(transport._warming[A.instance_id][1].result(5))
    first.active = False
    assert transport.client(A) is not first
    assert first.closed.is_set() and transport.warm_used == 0


def test_close_ends_connections_still_being_opened_and_refuses_new_ones() -> None:
    transport = Transport()
    transport.release.clear()
    transport.warm([A])
    transport.close()
    transport.release.set()
    assert transport.made[0].closed.wait(5)
    assert transport.warm([B]) == 0
    assert transport.warm([A]) == 0


def test_a_host_warmed_twice_or_already_connected_is_not_warmed_again() -> None:
    transport = Transport()
    assert transport.warm([A, A]) == 1
    transport.client(A)
    assert transport.warm([A]) == 0
    assert len(transport.made) == 1
