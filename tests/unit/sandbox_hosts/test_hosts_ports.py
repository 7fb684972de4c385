"""Port and spec checks refuse a bad fleet before any container starts."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.errors import BadInput
from ops.sandbox import hosts
from ops.sandbox.hosts import HostSpec, free_port, free_ports, port_in_use, start_hosts


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any Docker call would mean a check came too late."""

    def refuse(*args: str, **kwargs: object) -> str:
        raise AssertionError(f"docker called before the specs were checked: {args}")

    monkeypatch.setattr(hosts, "_docker", refuse)


def test_listening_port_is_in_use(listener: int) -> None:
    assert port_in_use(listener)


def test_free_port_is_free() -> None:
    assert not port_in_use(free_port())


def test_free_ports_are_distinct() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8


@pytest.mark.usefixtures("no_docker")
def test_taken_port_is_refused_naming_it(listener: int, tmp_path: Path) -> None:
    spec = HostSpec("web1", "debian", "web", listener, free_port())
    with pytest.raises(BadInput, match=str(listener)):
        start_hosts([spec], key_dir=tmp_path, label="unit")


@pytest.mark.usefixtures("no_docker")
@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([HostSpec("Web_1", "debian", "web", 20001, 20002)], "not a valid hostname"),
        ([HostSpec("web1", "centos", "web", 20001, 20002)], "unknown platform"),
        ([HostSpec("web1", "debian", "web;rm -rf /", 20001, 20002)], "role"),
        ([HostSpec("web1", "debian", "web", 80, 20002)], "outside 1024-65535"),
        ([HostSpec("web1", "debian", "web", 20001, 20001)], "given to both"),
        (
            [
                HostSpec("web1", "debian", "web", 20001, 20002),
                HostSpec("web1", "debian", "web", 20003, 20004),
            ],
            "appears twice",
        ),
        ([], "no hosts"),
    ],
)
def test_bad_specs_are_refused(specs: list[HostSpec], message: str, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=message):
        start_hosts(specs, key_dir=tmp_path, label="unit")


@pytest.mark.usefixtures("no_docker")
@pytest.mark.parametrize("label", ["", "UPPER", "a b", "x;y", "-lead", "a" * 41])
def test_bad_labels_are_refused(label: str) -> None:
    with pytest.raises(BadInput, match="label"):
        hosts.stop_hosts(label)
