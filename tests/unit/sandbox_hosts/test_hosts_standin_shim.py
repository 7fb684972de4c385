"""The Amazon Linux stand-in commands, run outside a container with their paths redirected."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from ops.sandbox.images import images_dir


@pytest.fixture(params=["al2", "al2023"])
def shim(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    spec = importlib.util.spec_from_file_location("standin", images_dir() / "standin/standin.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "flavor").write_text(request.param)
    (tmp_path / "boot-id").write_text("boot-1")
    monkeypatch.setattr(module, "LOG", tmp_path / "standin-commands.log")
    monkeypatch.setattr(module, "STATE", tmp_path / "state" / "state.json")
    monkeypatch.setattr(module, "FLAVOR_FILE", tmp_path / "flavor")
    monkeypatch.setattr(module, "BOOT_ID", tmp_path / "boot-id")
    module.flavor_name = request.param  # type: ignore[attr-defined]
    return module


def run(shim: ModuleType, *argv: str) -> int:
    return int(shim.main([f"/usr/bin/{argv[0]}", *argv[1:]]))


def tool(shim: ModuleType) -> str:
    return "yum" if shim.flavor_name == "al2" else "dnf"


def test_patch_cycle_exit_codes(shim: ModuleType, tmp_path: Path) -> None:
    pm = tool(shim)
    assert run(shim, pm, "check-update") == 100
    assert run(shim, pm, "update", "-y") == 0
    assert run(shim, pm, "check-update") == 0
    assert run(shim, "needs-restarting", "-r") == 1
    (tmp_path / "boot-id").write_text("boot-2")
    assert run(shim, "needs-restarting", "-r") == 0
    log = (tmp_path / "standin-commands.log").read_text()
    assert f"{pm} check-update" in log
    assert f"{pm} update -y" in log


def test_update_without_yes_and_without_terminal_gives_up(shim: ModuleType) -> None:
    assert run(shim, tool(shim), "update") == 1
    assert run(shim, tool(shim), "check-update") == 100


def test_install_records_the_package(shim: ModuleType) -> None:
    assert run(shim, "rpm", "-q", "docker") == 1
    assert run(shim, tool(shim), "install", "-y", "docker") == 0
    assert run(shim, "rpm", "-q", "docker") == 0


def test_amazon_linux_extras(shim: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(shim, "amazon-linux-extras", "install", "-y", "docker") == 0
    assert run(shim, "amazon-linux-extras", "install", "-y", "nosuchtopic") == 1
    capsys.readouterr()
    assert run(shim, "amazon-linux-extras", "list") == 0
    assert "docker=latest" in capsys.readouterr().out
    assert run(shim, "rpm", "-q", "docker") == 0


def test_admin_can_queue_new_updates(shim: ModuleType) -> None:
    assert run(shim, tool(shim), "update", "-y") == 0
    assert run(shim, "fleetops-standin", "set-updates", "curl") == 0
    assert run(shim, tool(shim), "check-update") == 100
