"""The sandbox's package archive, built with the machine's dpkg-deb (no Docker)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest

from ops.sandbox import packages

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return packages.build_repository(tmp_path_factory.mktemp("repo") / "repo", now=NOW)


def release(repo: Path, suite: str) -> dict[str, str]:
    text = (repo / "dists" / suite / "Release").read_text()
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def names_in(repo: Path, suite: str) -> list[tuple[str, str]]:
    text = (repo / "dists" / suite / "main/binary-all/Packages").read_text()
    stanzas = [dict(ln.split(": ", 1) for ln in s.splitlines()) for s in text.split("\n\n") if s]
    return sorted((s["Package"], s["Version"]) for s in stanzas)


def test_suites_are_dated_by_their_release_files(repo: Path) -> None:
    assert release(repo, packages.UPDATES_SUITE)["Date"] == "Sun, 29 Nov 2026 12:00:00 UTC"
    assert release(repo, packages.SUITE)["Date"] == "Fri, 30 Oct 2026 12:00:00 UTC"
    assert release(repo, packages.SECURITY_SUITE)["Label"] == "Debian-Security"


def test_old_versions_in_the_main_suite_and_new_ones_where_they_are_published(repo: Path) -> None:
    main = names_in(repo, packages.SUITE)
    for package in packages.PACKAGES:
        assert (package.name, packages.OLD_VERSION) in main
        assert (package.name, packages.NEW_VERSION) in names_in(repo, package.suite)
    assert names_in(repo, packages.SECURITY_SUITE) == [("fleetops-libsec", "1.1-1")]
    assert names_in(repo, packages.UPDATES_SUITE) == [("fleetops-fresh", "1.1-1")]


def test_release_hashes_match_the_indexes(repo: Path) -> None:
    import hashlib

    text = (repo / "dists" / packages.SUITE / "Release").read_text()
    entries = [line.split() for line in text.split("SHA256:\n", 1)[1].splitlines()]
    assert len(entries) == 2
    for digest, size, name in entries:
        blob = (repo / "dists" / packages.SUITE / name).read_bytes()
        assert (hashlib.sha256(blob).hexdigest(), len(blob)) == (digest, int(size))


def test_the_kernel_stand_in_asks_for_a_reboot_in_its_postinst(repo: Path) -> None:
    deb = repo / "pool/main/fleetops-kernel_1.1-1_all.deb"
    postinst = subprocess.run(
        ["dpkg-deb", "--info", str(deb), "postinst"], capture_output=True, text=True, check=True
    ).stdout
    assert "touch /run/reboot-required" in postinst
    plain = repo / "pool/main/fleetops-tool_1.1-1_all.deb"
    listing = subprocess.run(["dpkg-deb", "--info", str(plain)], capture_output=True, text=True)
    assert "postinst" not in listing.stdout


def test_standin_index_carries_security_dates_and_reboot(repo: Path) -> None:
    index = {e["name"]: e for e in json.loads((repo / packages.STANDIN_INDEX).read_text())}
    assert index["fleetops-libsec"]["security"] is True
    assert index["fleetops-tool"]["security"] is False
    assert index["fleetops-kernel"]["reboot"] is True
    assert index["fleetops-fresh"]["issued"] == "2026-11-29 12:00:00"
    assert index["fleetops-tool"]["issued"] == "2026-10-30 12:00:00"


def test_host_configuration_lines() -> None:
    source = packages.apt_source("http://127.0.0.1:9")
    assert source.count("[trusted=yes] http://127.0.0.1:9/ ") == 3
    assert "bookworm-fleetops-security main" in source
    assert "baseurl=http://127.0.0.1:9/" in packages.yum_repo("http://127.0.0.1:9")
    assert "fleetops-kernel=1.0-1" in packages.old_versions()
