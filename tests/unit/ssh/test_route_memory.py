"""The route memory: what it keeps, and what it refuses to hand back."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from ops.fleet.inventory import InventoryHost
from ops.fleet.route_memory import FILE_NAME, KEEP_HOSTS, KEEP_TARGETS, memory_key, recall, remember


def _routes(hosts: list[InventoryHost]) -> list[tuple[str, str, int, str | None]]:
    return [(h.instance_id, h.ssh_host, h.ssh_port, h.ssh_user) for h in hosts]


def test_routes_come_back_in_their_order_from_a_private_file(tmp_path: Path) -> None:
    key = memory_key("prod", None, "us-east-1", "Role=web", "root", None)
    routes = [("i-0b", "10.0.0.2", 22, "root"), ("i-0a", "10.0.0.1", 2201, "ec2-user")]
    remember(tmp_path, key, routes)
    assert _routes(recall(tmp_path, key, [])) == routes
    assert stat.S_IMODE((tmp_path / FILE_NAME).stat().st_mode) == 0o600
    assert (
        recall(tmp_path, memory_key("prod", None, "us-east-1", "Role=db", "root", None), []) == []
    )


def test_the_key_tells_environments_accounts_regions_targets_and_users_apart() -> None:
    base = ["prod", "ops", "us-east-1", "Role=web", "root", None]
    keys = {memory_key(*base)}
    for index, other in enumerate(["stage", "other", "eu-west-1", "Role=db", "admin", "jump"]):
        changed = list(base)
        changed[index] = other
        keys.add(memory_key(*changed))
    assert len(keys) == 7


def test_malformed_entries_and_addresses_outside_the_networks_are_dropped(tmp_path: Path) -> None:
    key = memory_key("prod")
    good = {"instance_id": "i-0abc", "host": "10.0.0.1", "port": 22, "user": "root"}
    bad = [
        {**good, "instance_id": "i-0abc; rm -rf /"},
        {**good, "instance_id": 7},
        {**good, "host": "10.0.0.1 -oProxyCommand=x"},
        {**good, "host": "$(reboot)"},
        {**good, "port": "22"},
        {**good, "port": True},
        {**good, "port": 70000},
        {**good, "user": "root -o x"},
        {**good, "user": ""},
        "i-0abc",
        {**good, "host": "192.168.1.5"},  # outside 10.0.0.0/8
    ]
    v6 = {"instance_id": "i-0def", "host": "fd00::5", "port": 2222, "user": "ec2-user"}
    (tmp_path / FILE_NAME).write_text(json.dumps({key: {"hosts": [*bad, good, v6]}}))
    assert _routes(recall(tmp_path, key, ["10.0.0.0/8", "fd00::/8"])) == [
        ("i-0abc", "10.0.0.1", 22, "root"),
        ("i-0def", "fd00::5", 2222, "ec2-user"),
    ]
    assert _routes(recall(tmp_path, key, ["10.0.0.0/8"])) == [("i-0abc", "10.0.0.1", 22, "root")]


def test_a_file_that_does_not_parse_is_no_memory_and_is_replaced(tmp_path: Path) -> None:
    key = memory_key("prod")
    for text in ("{not json", "[1, 2]", json.dumps({key: []}), json.dumps({key: {"hosts": 3}})):
        (tmp_path / FILE_NAME).write_text(text)
        assert recall(tmp_path, key, []) == []
    remember(tmp_path, key, [("i-01", "10.0.0.1", 22, "root")])
    assert len(recall(tmp_path, key, [])) == 1


def test_only_the_latest_targets_and_the_first_hosts_are_kept(tmp_path: Path) -> None:
    many = [(f"i-{n:08x}", "10.0.0.1", 22, "root") for n in range(KEEP_HOSTS + 10)]
    remember(tmp_path, memory_key("first"), many)
    assert len(recall(tmp_path, memory_key("first"), [])) == KEEP_HOSTS
    for n in range(KEEP_TARGETS):
        remember(tmp_path, memory_key(str(n)), many[:1])
    assert recall(tmp_path, memory_key("first"), []) == []
    assert len(recall(tmp_path, memory_key("0"), [])) == 1
    # used again, a target moves to the newest end and outlives the others
    remember(tmp_path, memory_key("0"), many[:2])
    remember(tmp_path, memory_key("new"), many[:1])
    assert len(recall(tmp_path, memory_key("0"), [])) == 2
    assert recall(tmp_path, memory_key("1"), []) == []


def test_a_state_folder_that_cannot_be_written_costs_nothing_but_the_memory(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    remember(blocked / "state", memory_key("prod"), [("i-01", "10.0.0.1", 22, "root")])
    assert recall(blocked / "state", memory_key("prod"), []) == []
    assert not list(tmp_path.glob(".ssh-routes-*"))
