"""Container images for the sandbox fleet, built once and reused by tag.

No image registry answers here, so the base is made from Debian's own
packages with debootstrap and `docker import`; the host images are built
FROM it. Each image carries a label with the hash of what it was made from
(its recipe files and its parent image), so a build happens only when an
image is missing or its recipe changed, and a changed parent rebuilds its
children.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ops.errors import BadInput, OpsError
from ops.project import bundled

HASH_LABEL = "org.fleetops.content-hash"
SUITE = "bookworm"
BASE_TAG = "fleetops/base:bookworm"
BASE_PACKAGES = ("python3", "openssh-server", "sudo")
BUILD_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Recipe:
    """How one host image is built: a Dockerfile and the folders it copies from."""

    tag: str
    dockerfile: str
    sources: tuple[str, ...]
    parent: str


RECIPES: dict[str, Recipe] = {
    "debian": Recipe("fleetops/host:debian-12", "debian/Dockerfile", ("debian",), BASE_TAG),
    "al2": Recipe(
        "fleetops/host:al2-standin",
        "al2-standin/Dockerfile",
        ("al2-standin", "standin"),
        "fleetops/host:debian-12",
    ),
    "al2023": Recipe(
        "fleetops/host:al2023-standin",
        "al2023-standin/Dockerfile",
        ("al2023-standin", "standin"),
        "fleetops/host:debian-12",
    ),
}
PLATFORMS = frozenset(RECIPES)

Echo = Callable[[str], None]


def image_for(platform: str) -> str:
    """The tag a host of this platform runs; unknown platforms are refused up front."""
    try:
        return RECIPES[platform].tag
    except KeyError:
        known = ", ".join(sorted(PLATFORMS))
        raise BadInput(f"unknown platform {platform!r}; use one of: {known}") from None


def images_dir() -> Path:
    """The recipes the package ships (see ops.project); OPS_IMAGES_DIR points at others."""
    explicit = os.environ.get("OPS_IMAGES_DIR")
    folder = Path(explicit) if explicit else bundled("images")
    if not (folder / "debian" / "Dockerfile").is_file():
        raise OpsError(f"image recipes not found in {folder}; set OPS_IMAGES_DIR")
    return folder


# --- where Debian's packages come from -------------------------------------


def parse_deb822(text: str) -> list[tuple[str, list[str]]]:
    """(URI, suites) for each enabled binary stanza of a deb822 .sources file."""
    found: list[tuple[str, list[str]]] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:
                fields[key] += " " + raw.strip()
                continue
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = fields.get("suites", "").split()
        found.extend((uri, suites) for uri in fields.get("uris", "").split())
    return found


def parse_one_line(text: str) -> list[tuple[str, list[str]]]:
    """(URI, [suite]) for each `deb` line of a classic sources.list."""
    found: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            found.append((words[0], [words[1]]))
    return found


def apt_mirror(root: Path = Path("/"), suite: str = SUITE) -> str:
    """The Debian mirror this machine already trusts, so the build needs no new network path."""
    explicit = os.environ.get("OPS_DEBIAN_MIRROR")
    if explicit:
        return explicit
    apt = root / "etc" / "apt"
    entries: list[tuple[str, list[str]]] = []
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        entries += parse_deb822(path.read_text(errors="replace"))
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            entries += parse_one_line(path.read_text(errors="replace"))
    usable = [(uri, suites) for uri, suites in entries if uri.split(":", 1)[0] in ("http", "https")]
    for uri, suites in usable:
        if suite in suites:
            return uri
    if usable:
        return usable[0][0]
    raise OpsError(f"no Debian mirror for {suite} in {apt}; set OPS_DEBIAN_MIRROR")


# --- docker -----------------------------------------------------------------


def _run(
    args: list[str],
    *,
    what: str,
    stdin: IO[bytes] | None = None,
    env: dict[str, str] | None = None,
) -> str:
    proc = subprocess.run(
        args, stdin=stdin, env=env, capture_output=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-25:])
        raise OpsError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return out


def image_info(tag: str) -> tuple[str, dict[str, str]] | None:
    """(image id, labels) of a local image, or None when the tag is absent."""
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .}}", tag],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout)
    return data["Id"], (data.get("Config") or {}).get("Labels") or {}


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:32]


def base_hash() -> str:
    recipe = {"suite": SUITE, "variant": "minbase", "include": list(BASE_PACKAGES)}
    return _digest([json.dumps(recipe, sort_keys=True).encode()])


def recipe_hash(recipe: Recipe, folder: Path, parent_id: str) -> str:
    """Hash of every file the recipe copies, its Dockerfile, and the parent's image id."""
    parts = [parent_id.encode(), (folder / recipe.dockerfile).read_bytes()]
    for source in recipe.sources:
        for path in sorted((folder / source).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:  # a test's import leaves one
                parts += [str(path.relative_to(folder)).encode(), path.read_bytes()]
    return _digest(parts)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "fleetops" / "debootstrap"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _ensure_debootstrap(echo: Echo) -> str:
    found = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise OpsError("debootstrap is missing; install it (apt-get install debootstrap) as root")
    echo("installing debootstrap (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], what="apt-get update", env=env)
    _run(["apt-get", "install", "-y", "-qq", "debootstrap"], what="install debootstrap", env=env)
    found = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if not found:
        raise OpsError("debootstrap was installed but is not on PATH")
    return found


def build_base(content_hash: str, echo: Echo) -> None:
    """debootstrap a minimal bookworm and import it: the only way to a base without a registry."""
    if os.geteuid() != 0:
        raise OpsError(f"building {BASE_TAG} runs debootstrap, which needs root")
    debootstrap = _ensure_debootstrap(echo)
    mirror = apt_mirror()
    echo(f"debootstrap {SUITE} from {mirror}")
    with tempfile.TemporaryDirectory(prefix="fleetops-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(
            [
                debootstrap,
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                f"--cache-dir={_cache_dir()}",
                SUITE,
                str(rootfs),
                mirror,
            ],
            what="debootstrap",
        )
        for leftover in ("etc/hostname", "etc/resolv.conf"):
            (rootfs / leftover).unlink(missing_ok=True)
        changes = [
            f"LABEL {HASH_LABEL}={content_hash}",
            'LABEL org.opencontainers.image.description="Debian 12 minbase from debootstrap"',
            'CMD ["/bin/bash"]',
        ]
        import_cmd = ["docker", "import"]
        for change in changes:
            import_cmd += ["--change", change]
        import_cmd += ["-", BASE_TAG]
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
        )
        try:
            _run(import_cmd, what="docker import", stdin=tar.stdout)
        finally:
            if tar.stdout:
                tar.stdout.close()
            tar_rc = tar.wait()
        if tar_rc != 0:
            raise OpsError(f"tar of the debootstrap root failed (exit {tar_rc})")


def build_host(recipe: Recipe, folder: Path, content_hash: str) -> None:
    _run(
        [
            "docker",
            "build",
            "--network",
            "host",
            "--file",
            str(folder / recipe.dockerfile),
            "--build-arg",
            f"BASE={recipe.parent}",
            "--label",
            f"{HASH_LABEL}={content_hash}",
            "--tag",
            recipe.tag,
            str(folder),
        ],
        what=f"docker build {recipe.tag}",
    )


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time on this machine: parallel test sessions share the tags."""
    path = Path(tempfile.gettempdir()) / "fleetops-images.lock"
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _order(platforms: set[str]) -> list[str]:
    """Parents before children: debian first, since both stand-ins are built from it."""
    for platform in platforms:
        image_for(platform)
    wanted = set(platforms)
    if wanted & {"al2", "al2023"}:
        wanted.add("debian")
    return sorted(wanted, key=lambda p: (p != "debian", p))


def ensure_images(platforms: set[str], *, echo: Echo | None = None) -> dict[str, str]:
    """Build whatever is missing or stale for these platforms; return platform -> tag."""
    say: Echo = echo or (lambda _msg: None)
    order = _order(platforms)
    folder = images_dir()
    with _build_lock():
        wanted_hash = base_hash()
        info = image_info(BASE_TAG)
        if info is None or info[1].get(HASH_LABEL) != wanted_hash:
            started = time.monotonic()
            build_base(wanted_hash, say)
            say(f"built {BASE_TAG} in {time.monotonic() - started:.1f} s")
        else:
            say(f"{BASE_TAG} is current")
        for platform in order:
            recipe = RECIPES[platform]
            parent = image_info(recipe.parent)
            if parent is None:
                raise OpsError(f"{recipe.parent} vanished while building {recipe.tag}")
            wanted_hash = recipe_hash(recipe, folder, parent[0])
            info = image_info(recipe.tag)
            if info is not None and info[1].get(HASH_LABEL) == wanted_hash:
                say(f"{recipe.tag} is current")
                continue
            started = time.monotonic()
            build_host(recipe, folder, wanted_hash)
            say(f"built {recipe.tag} in {time.monotonic() - started:.1f} s")
    return {platform: RECIPES[platform].tag for platform in sorted(platforms)}


def main(argv: list[str]) -> int:
    """`python -m ops.sandbox.images [PLATFORM...]`: what scripts/build_images.sh runs."""
    platforms = set(argv) or set(PLATFORMS)
    try:
        tags = ensure_images(platforms, echo=lambda msg: print(f"images: {msg}", flush=True))
    except OpsError as err:
        print(f"images: {err}", file=sys.stderr)
        return int(err.exit_code)
    for platform, tag in sorted(tags.items()):
        print(f"{platform}\t{tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
