"""The sandbox's package repository: small Debian packages the project builds itself.

Pending updates in the sandbox must be real, so `up` builds a few packages
with dpkg-deb, each in an older and a newer version, and lays them out as an
apt archive with three suites, as Debian splits its own:

- `bookworm-fleetops`: every old version, and the new versions of the
  ordinary updates (one of them a "kernel" whose postinst asks for a reboot
  the way Debian's kernel packages do, through /run/reboot-required);
- `bookworm-fleetops-security`: a security update. apt has no updateinfo;
  an update counts as security when its candidate comes from a suite named
  `*-security`, which is how Debian publishes them (`apt list --upgradable`
  names the suite);
- `bookworm-fleetops-updates`: an update published today.

Debian dates suites, not packages: each Release file carries `Date:`, and
an update is as old as the Release of the suite that brings it. The first two
suites are dated `OLD_DAYS` ago, the updates suite at build time, so a
`patch.approve_after_days` of a few days approves the first and holds back the
last. One package is named like the Docker engine's plug-ins (`docker-*`) so
that a `patch.exclude` glob has something to hold.

The Amazon Linux stand-ins have no apt view of their own; the same build
writes `standin-index.json` (name, old and new version, security, issued
date, reboot) that their yum/dnf shims read over HTTP.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm-fleetops"
SECURITY_SUITE = f"{SUITE}-security"
UPDATES_SUITE = f"{SUITE}-updates"
SUITES = (SUITE, SECURITY_SUITE, UPDATES_SUITE)
OLD_DAYS = 30
OLD_VERSION = "1.0-1"
NEW_VERSION = "1.1-1"
STANDIN_INDEX = "standin-index.json"
APT_SOURCE = "/etc/apt/sources.list.d/fleetops-sandbox.list"
YUM_REPO = "/etc/yum.repos.d/fleetops-sandbox.repo"

REBOOT_POSTINST = """#!/bin/sh
# As Debian's kernel packages do: ask for a reboot through /run/reboot-required.
set -e
if [ "$1" = configure ]; then
    touch /run/reboot-required
    echo "$DPKG_MAINTSCRIPT_PACKAGE" >>/run/reboot-required.pkgs
fi
exit 0
"""


@dataclass(frozen=True)
class SandboxPackage:
    name: str
    suite: str  # where the new version is published
    reboot: bool = False
    description: str = ""

    @property
    def security(self) -> bool:
        return self.suite.endswith("-security")


PACKAGES: tuple[SandboxPackage, ...] = (
    SandboxPackage("fleetops-tool", SUITE, description="an ordinary update"),
    SandboxPackage("fleetops-libsec", SECURITY_SUITE, description="a security fix"),
    SandboxPackage("fleetops-fresh", UPDATES_SUITE, description="published today"),
    SandboxPackage("docker-fleetops-plugin", SUITE, description="held by patch.exclude docker*"),
    SandboxPackage("fleetops-kernel", SUITE, reboot=True, description="needs a reboot"),
)


def _release_date(suite: str, now: dt.datetime) -> dt.datetime:
    return now if suite == UPDATES_SUITE else now - dt.timedelta(days=OLD_DAYS)


def _build_deb(package: SandboxPackage, version: str, pool: Path, work: Path) -> Path:
    root = work / f"{package.name}_{version}"
    (root / "DEBIAN").mkdir(parents=True)
    doc = root / "usr/share/doc" / package.name
    doc.mkdir(parents=True)
    (doc / "VERSION").write_text(f"{package.name} {version}\n", encoding="ascii")
    (root / "DEBIAN/control").write_text(
        f"Package: {package.name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: fleetops sandbox <sandbox@fleetops.invalid>\nSection: misc\n"
        f"Priority: optional\nDescription: fleetops sandbox package ({package.description})\n",
        encoding="ascii",
    )
    if package.reboot:
        postinst = root / "DEBIAN/postinst"
        postinst.write_text(REBOOT_POSTINST, encoding="ascii")
        postinst.chmod(0o755)
    target = pool / f"{package.name}_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(target)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return target


def _stanza(deb: Path, root: Path) -> str:
    fields = subprocess.run(
        ["dpkg-deb", "--field", str(deb)], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()
    data = deb.read_bytes()
    return (
        f"{fields}\nFilename: {deb.relative_to(root).as_posix()}\nSize: {len(data)}\n"
        f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
    )


def _write_suite(root: Path, suite: str, stanzas: list[str], date: dt.datetime) -> None:
    folder = root / "dists" / suite
    index_dir = folder / "main" / "binary-all"
    index_dir.mkdir(parents=True)
    text = "\n".join(stanzas).encode("utf-8")
    (index_dir / "Packages").write_bytes(text)
    (index_dir / "Packages.gz").write_bytes(gzip.compress(text, mtime=0))
    lines = []
    for name in ("Packages", "Packages.gz"):
        blob = (index_dir / name).read_bytes()
        lines.append(f" {hashlib.sha256(blob).hexdigest()} {len(blob)} main/binary-all/{name}")
    label = "Debian-Security" if suite.endswith("-security") else "Debian"
    (folder / "Release").write_text(
        f"Origin: fleetops-sandbox\nLabel: {label}\nSuite: {suite}\nCodename: {suite}\n"
        f"Date: {date.strftime('%a, %d %b %Y %H:%M:%S UTC')}\n"
        "Architectures: all amd64 arm64\nComponents: main\n"
        "Description: fleetops sandbox packages\nSHA256:\n" + "\n".join(lines) + "\n",
        encoding="ascii",
    )


def build_repository(root: Path, now: dt.datetime | None = None) -> Path:
    """Build the archive under `root` (replacing what was there); returns `root`."""
    now = now or dt.datetime.now(dt.UTC)
    shutil.rmtree(root, ignore_errors=True)
    pool = root / "pool" / "main"
    pool.mkdir(parents=True)
    by_suite: dict[str, list[str]] = {suite: [] for suite in SUITES}
    index = []
    with tempfile.TemporaryDirectory(prefix="fleetops-debs-") as work:
        for package in PACKAGES:
            old = _build_deb(package, OLD_VERSION, pool, Path(work))
            new = _build_deb(package, NEW_VERSION, pool, Path(work))
            by_suite[SUITE].append(_stanza(old, root))
            by_suite[package.suite].append(_stanza(new, root))
            index.append(
                {
                    "name": package.name,
                    "old": OLD_VERSION,
                    "new": NEW_VERSION,
                    "security": package.security,
                    "issued": _release_date(package.suite, now).strftime("%Y-%m-%d %H:%M:%S"),
                    "reboot": package.reboot,
                }
            )
    for suite, stanzas in by_suite.items():
        _write_suite(root, suite, stanzas, _release_date(suite, now))
    (root / STANDIN_INDEX).write_text(json.dumps(index, indent=2), encoding="utf-8")
    return root


def apt_source(url: str) -> str:
    """The sources.list lines a sandbox host gets. `trusted=yes`: the archive is
    unsigned, which is acceptable only because it is served on loopback by the
    sandbox itself; a real repository is signed and checked."""
    return "".join(f"deb [trusted=yes] {url}/ {suite} main\n" for suite in SUITES)


def yum_repo(url: str) -> str:
    """The stand-ins' repository file; their shims read `baseurl` to find the index."""
    return f"[fleetops-sandbox]\nname=fleetops sandbox\nbaseurl={url}/\nenabled=1\ngpgcheck=0\n"


def old_versions() -> list[str]:
    """apt-get install arguments that put a host on the older version of every package."""
    return [f"{package.name}={OLD_VERSION}" for package in PACKAGES]
