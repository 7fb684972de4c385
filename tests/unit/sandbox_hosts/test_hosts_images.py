"""Image recipes: platforms, where Debian comes from, and when a rebuild is due."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.errors import BadInput, OpsError
from ops.sandbox import images
from ops.sandbox.images import (
    RECIPES,
    apt_mirror,
    ensure_images,
    image_for,
    images_dir,
    parse_deb822,
    parse_one_line,
    recipe_hash,
)

DEB822 = """\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_platform_tags() -> None:
    assert image_for("debian") == "fleetops/host:debian-12"
    assert image_for("al2") == "fleetops/host:al2-standin"
    assert image_for("al2023") == "fleetops/host:al2023-standin"


def test_unknown_platform_is_refused() -> None:
    with pytest.raises(BadInput, match="unknown platform 'rhel9'"):
        image_for("rhel9")


def test_ensure_refuses_unknown_platform_before_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "image_info", lambda tag: pytest.fail("docker was asked"))
    with pytest.raises(BadInput):
        ensure_images({"debian", "windows"})


def test_deb822_stanzas() -> None:
    assert parse_deb822(DEB822) == [
        ("http://mirror.example/debian", ["bookworm", "bookworm-updates"]),
        ("http://security.example/debian-security", ["bookworm-security"]),
    ]


def test_deb822_skips_disabled_and_source_stanzas() -> None:
    text = (
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n"
    )
    assert parse_deb822(text) == []


def test_one_line_format_with_options_and_comments() -> None:
    text = (
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://one.example/debian "
        "bookworm main\n"
        "deb http://two.example/debian bookworm-updates main # trailing\n"
    )
    assert parse_one_line(text) == [
        ("http://one.example/debian", ["bookworm"]),
        ("http://two.example/debian", ["bookworm-updates"]),
    ]


def _apt_root(tmp_path: Path) -> Path:
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True)
    return tmp_path


def test_mirror_from_sources_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPS_DEBIAN_MIRROR", raising=False)
    root = _apt_root(tmp_path)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(DEB822)
    assert apt_mirror(root) == "http://mirror.example/debian"


def test_mirror_prefers_the_suite_over_security(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPS_DEBIAN_MIRROR", raising=False)
    root = _apt_root(tmp_path)
    (root / "etc/apt/sources.list").write_text(
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb http://plain.example/debian bookworm main\n"
    )
    assert apt_mirror(root) == "http://plain.example/debian"


def test_mirror_override_and_absence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _apt_root(tmp_path)
    monkeypatch.delenv("OPS_DEBIAN_MIRROR", raising=False)
    with pytest.raises(OpsError, match="OPS_DEBIAN_MIRROR"):
        apt_mirror(root)
    monkeypatch.setenv("OPS_DEBIAN_MIRROR", "http://override.example/debian")
    assert apt_mirror(root) == "http://override.example/debian"


def test_recipe_hash_follows_files_and_parent(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "images"
    shutil.copytree(images_dir(), folder)
    recipe = RECIPES["al2"]
    first = recipe_hash(recipe, folder, "sha256:parent-a")
    assert recipe_hash(recipe, folder, "sha256:parent-a") == first
    assert recipe_hash(recipe, folder, "sha256:parent-b") != first
    shim = folder / "standin" / "standin.py"
    shim.write_text(shim.read_text() + "\n# changed\n")
    assert recipe_hash(recipe, folder, "sha256:parent-a") != first


def test_standin_images_are_labelled_as_standins() -> None:
    for platform in ("al2", "al2023"):
        text = (images_dir() / RECIPES[platform].dockerfile).read_text()
        assert "org.fleetops.standin=true" in text
        assert "stand-in" in text
