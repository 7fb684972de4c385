"""How SSH reaches a host: `ops:ssh` tags, the ssh_networks guard, the sandbox's host keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.fleet import inventory as inv
from ops.sandbox import trust


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("127.0.0.1:2201", ("127.0.0.1", 2201)),
        ("10.1.2.3", ("10.1.2.3", 22)),
        ("bastion.internal:2222", ("bastion.internal", 2222)),
        ("[::1]:2222", ("::1", 2222)),
        ("::1", ("::1", 22)),
        (" 10.1.2.3:22 ", ("10.1.2.3", 22)),
        ("", ("", 22)),
    ],
)
def test_ssh_tag_parsing(tag: str, expected: tuple[str, int]) -> None:
    assert inv.endpoint(tag) == expected


@pytest.mark.parametrize(
    "tag",
    [
        "bastion.internal",  # a name needs its port: only IP, IP:PORT, HOST:PORT
        "127.0.0.1:ssh",
        "127.0.0.1:70000",
        ":2201",
        "127.0.0.1 -oProxyCommand=touch\t/tmp/x",
        "host$(touch x):22",
        "-oProxyCommand=x:22",
        "web\n1:22",
        "a..b:22",
        "[example.com]:22",
        "127.0.0.1:\uff12\uff12",  # full-width digits: digits to str.isdigit, not to ssh
    ],
)
def test_ssh_tags_that_are_not_addresses_are_refused(tag: str) -> None:
    assert inv.endpoint(tag) is None


def _host(n: int, **kw: object) -> inv.InventoryHost:
    return inv.InventoryHost(instance_id=f"i-{n:017x}", private_ip=f"10.0.0.{n}", **kw)  # type: ignore[arg-type]


def test_ssh_networks_keep_ssh_to_the_listed_networks() -> None:
    loop = _host(1, ssh_host="127.0.0.1", ssh_port=2201)
    private = _host(2)
    named = _host(3, ssh_host="bastion.internal")
    inside, outside = inv.within_networks([loop, private, named], ["127.0.0.0/8"])
    assert inside == [loop] and outside == [private, named]
    # no networks: no limit
    assert inv.within_networks([loop, private], []) == ([loop, private], [])
    assert inv.within_networks([private], ["10.0.0.0/24"]) == ([private], [])


def test_tagged_endpoint_reaches_the_inventory_host_vars() -> None:
    host = _host(4, ssh_host="127.0.0.1", ssh_port=2204, app_port=8084)
    hv = host.host_vars()
    assert (hv["ansible_host"], hv["ansible_port"], hv["ops_app_port"]) == ("127.0.0.1", 2204, 8084)
    assert _host(5).host_vars()["ansible_host"] == "10.0.0.5"


def test_sandbox_host_keys_are_added_once_and_removed_again(tmp_path: Path) -> None:
    source = tmp_path / "sandbox_known_hosts"
    source.write_text("[127.0.0.1]:2201 ssh-ed25519 AAAA1\n[127.0.0.1]:2202 ssh-ed25519 AAAA2\n")
    target = tmp_path / "ssh" / "known_hosts"
    target.parent.mkdir()
    target.write_text("prod-bastion ssh-ed25519 KEEP\n")
    assert trust.add(source, target) == 2
    assert trust.add(source, target) == 0
    assert target.read_text().count("AAAA1") == 1
    assert trust.remove(source, target) == 2
    assert target.read_text() == "prod-bastion ssh-ed25519 KEEP\n"
    assert trust.remove(tmp_path / "missing", target) == 0
