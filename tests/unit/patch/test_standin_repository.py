"""The stand-ins' yum/dnf shims answering from the sandbox repository over real HTTP."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from ops.sandbox import packages, repo_server
from ops.sandbox.images import images_dir


@pytest.fixture(scope="module")
def repo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import functools
    import http.server

    root = packages.build_repository(tmp_path_factory.mktemp("repo") / "repo")
    handler = functools.partial(repo_server._Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(params=["al2", "al2023"])
def shim(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_url: str
) -> ModuleType:
    spec = importlib.util.spec_from_file_location("standin", images_dir() / "standin/standin.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "flavor").write_text(request.param)
    (tmp_path / "boot-id").write_text("boot-1")
    (tmp_path / "fleetops.repo").write_text(packages.yum_repo(repo_url))
    for name, path in {
        "LOG": "log",
        "STATE": "state/state.json",
        "FLAVOR_FILE": "flavor",
        "BOOT_ID": "boot-id",
        "REPO_FILE": "fleetops.repo",
    }.items():
        monkeypatch.setattr(module, name, tmp_path / path)
    module.tool = "yum" if request.param == "al2" else "dnf"  # type: ignore[attr-defined]
    assert module.main(["/usr/local/sbin/fleetops-standin", "repo-init"]) == 0
    return module


def run(shim: ModuleType, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = int(shim.main([f"/usr/bin/{argv[0]}", *argv[1:]]))
    return code, capsys.readouterr().out


def test_repository_updates_replace_the_built_in_ones(
    shim: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(shim, capsys, shim.tool, "-q", "check-update")
    assert code == 100
    listed = sorted(line.split(".x86_64")[0] for line in out.splitlines() if line.strip())
    assert listed == sorted(p.name for p in packages.PACKAGES)
    assert (
        run(shim, capsys, "rpm", "-q", "fleetops-tool")[1].strip() == "fleetops-tool-1.0-1.x86_64"
    )


def test_updateinfo_marks_the_security_fix_and_dates_every_advisory(
    shim: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    _code, listing = run(shim, capsys, shim.tool, "updateinfo", "list")
    security = [line for line in listing.splitlines() if "/Sec." in line]
    assert len(security) == 1 and "fleetops-libsec-1.1-1.x86_64" in security[0]
    _code, info = run(shim, capsys, shim.tool, "updateinfo", "info")
    assert info.count("Issued : ") == len(packages.PACKAGES)


def test_updating_the_kernel_package_needs_a_reboot_and_clears_it(
    shim: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(shim, capsys, "needs-restarting", "-r")[0] == 0
    assert run(shim, capsys, shim.tool, "-y", "update", "fleetops-kernel", "fleetops-tool")[0] == 0
    assert run(shim, capsys, "needs-restarting", "-r")[0] == 1
    assert run(shim, capsys, "rpm", "-q", "fleetops-kernel")[1].strip().endswith("1.1-1.x86_64")
    _code, out = run(shim, capsys, shim.tool, "-q", "check-update")
    assert "fleetops-kernel" not in out and "fleetops-libsec" in out
    _code, listing = run(shim, capsys, shim.tool, "updateinfo", "list")
    assert "fleetops-tool" not in listing


def test_an_unreachable_repository_fails_as_yum_does(
    shim: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from ops.sandbox.hosts import free_port

    (tmp_path / "fleetops.repo").write_text(packages.yum_repo(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(SystemExit) as exited:
        shim.main([f"/usr/bin/{shim.tool}", "check-update"])
    assert exited.value.code == 1
    assert "Cannot retrieve repository metadata" in capsys.readouterr().err
