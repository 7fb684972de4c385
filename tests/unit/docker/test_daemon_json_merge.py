"""The role's daemon.json merge (library/docker_daemon_config.py): keys kept, never overwritten."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

MODULE = (
    Path(__file__).resolve().parents[3]
    / "playbooks/roles/docker_engine/library/docker_daemon_config.py"
)
ROTATION = {"max-size": "10m", "max-file": 3}
DRIVERS = ["json-file", "local"]


@pytest.fixture(scope="module")
def mod() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docker_daemon_config", MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def merge(mod: ModuleType, existing: dict) -> tuple[dict, str]:
    return mod.merge(
        existing, {"live-restore": True}, {"log-driver": "json-file"}, ROTATION, DRIVERS
    )


def test_an_empty_host_gets_driver_rotation_and_live_restore(mod: ModuleType) -> None:
    merged, note = merge(mod, {})
    assert merged == {
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"},
        "live-restore": True,
    }
    assert note == ""


def test_the_hosts_own_keys_and_log_opts_are_kept(mod: ModuleType) -> None:
    existing = {"data-root": "/srv/docker", "log-opts": {"labels": "app", "max-size": "1g"}}
    merged, _ = merge(mod, existing)
    assert merged["data-root"] == "/srv/docker"
    assert merged["log-opts"] == {"labels": "app", "max-size": "10m", "max-file": "3"}
    assert existing == {"data-root": "/srv/docker", "log-opts": {"labels": "app", "max-size": "1g"}}


def test_merging_twice_changes_nothing(mod: ModuleType) -> None:
    once, _ = merge(mod, {"debug": True})
    twice, _ = merge(mod, once)
    assert twice == once


def test_a_log_driver_of_the_hosts_own_is_kept_without_rotation_options(mod: ModuleType) -> None:
    merged, note = merge(mod, {"log-driver": "awslogs", "log-opts": {"awslogs-group": "g"}})
    assert merged["log-driver"] == "awslogs"
    assert merged["log-opts"] == {"awslogs-group": "g"}  # max-size would stop dockerd here
    assert merged["live-restore"] is True
    assert "awslogs kept" in note


def test_the_local_driver_takes_rotation(mod: ModuleType) -> None:
    merged, note = merge(mod, {"log-driver": "local"})
    assert merged["log-opts"] == {"max-size": "10m", "max-file": "3"} and note == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "is not valid JSON"), ("[1, 2]", "holds a JSON list, not an object")],
)
def test_a_file_that_is_not_a_json_object_is_refused(
    mod: ModuleType, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        mod.read(str(path))


def test_read_and_write_round_trip(mod: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "etc" / "docker" / "daemon.json"
    assert mod.read(str(path)) == ({}, False)
    merged, _ = merge(mod, {})
    mod.write(str(path), mod.render(merged))
    assert mod.read(str(path)) == (merged, True)
    assert json.loads(path.read_text()) == merged
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    path.write_text("  \n")
    assert mod.read(str(path)) == ({}, True)
