"""Service models cut down to the operations a caller makes, cached per botocore version.

Making an EC2 client is mostly botocore reading EC2's model: some 4,400 shapes
and 830 operations (a 550 kB gzip, about 0.07 s of JSON decoding alone, more to
build a method per operation), while listing hosts calls DescribeInstances and
nothing else: about 0.12 s of CPU of the 0.5 s an `ops run --via ssh` took;
from the cut (118 shapes, two operations) the client is made in about 0.04 s.
botocore looks for models in data folders besides its own (Loader.search_paths,
as it does for ~/.aws/models and AWS_DATA_PATH), so the installed botocore's
EC2 model, cut to the operations asked for and the shapes they reach, is
written once per botocore version under the user's cache folder and loaded
from there under an API version name of its own. The cut keeps the model's
metadata, its API version and every shape those operations use, so the
client serializes and parses them exactly as the full one does, signs with
the same session's credentials, and resolves its endpoint (AWS_ENDPOINT_URL_EC2
and the rest) by the same rules; the EC2 rule set is copied beside it.

The name sorts before every real API version ("0-" against "2016-..."), so a
full client, which asks botocore for the latest version, never gets the cut.
Whenever something else could shape the service's model (a model of it in
another data folder, a pinned `api_versions`), or the cache folder is not the
user's own (0700) and writable, no cut is made and the client is the full one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import botocore
from botocore.exceptions import DataNotFoundError, UnknownServiceError

# A botocore version's folder unused this long is removed when another one is written:
# an upgrade leaves no trail, and two installs that share the cache do not evict each other.
STALE_AFTER_S = 30 * 24 * 3600
_MODEL = "service-2"
_RULES = "endpoint-rule-set-1"


def cache_root() -> Path:
    """$XDG_CACHE_HOME/fleetops/botocore, i.e. ~/.cache/fleetops/botocore by default."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fleetops" / "botocore"


def cut(model: dict[str, Any], operations: Iterable[str]) -> dict[str, Any]:
    """The model with only these operations and the shapes they reach; all else as it was."""
    shapes = model["shapes"]
    kept_operations: dict[str, Any] = {}
    pending: list[str] = []
    for name in sorted(set(operations)):
        if name not in model["operations"]:
            raise ValueError(f"{model['metadata'].get('serviceId')} has no operation {name!r}")
        operation = model["operations"][name]
        kept_operations[name] = operation
        pending += [operation[part]["shape"] for part in ("input", "output") if part in operation]
        pending += [error["shape"] for error in operation.get("errors", [])]
    kept: dict[str, Any] = {}
    while pending:
        name = pending.pop()
        if name in kept:
            continue
        shape = kept[name] = shapes[name]
        pending += [member["shape"] for member in shape.get("members", {}).values()]
        pending += [shape[part]["shape"] for part in ("member", "key", "value") if part in shape]
    return {**model, "operations": kept_operations, "shapes": kept}


def version_name(operations: Collection[str]) -> str:
    """The API version name a cut of these operations is kept under."""
    digest = hashlib.sha256(",".join(sorted(set(operations))).encode()).hexdigest()[:12]
    return f"0-fleetops-{digest}"


def cut_version(
    loader: Any, service: str, operations: Collection[str], pinned: str | None = None
) -> str | None:
    """The api_version to pass to create_client for a client of just these operations, its
    model cut and cached now if it is not yet; None when a full client must be made instead.

    `loader` is the session's data loader (the cache folder is added to its search paths);
    `pinned` the session's `api_versions` entry for the service, if any.
    """
    if pinned:
        return None
    try:
        folder = cache_root() / botocore.__version__
    except RuntimeError:  # no home folder to be found (no HOME, no passwd entry)
        return None
    name = version_name(operations)
    if _overridden(loader, service, folder):
        return None
    try:
        made = _private(folder.parent) and (folder / service / name / f"{_MODEL}.json").is_file()
        if not made:
            _write(loader, service, operations, folder, name)
    except OSError:
        return None  # no cache to be had (read-only home, a file in the way): the full model
    if str(folder) not in loader.search_paths:
        loader.search_paths.append(str(folder))
    return name


def discard(service: str, operations: Collection[str]) -> None:
    """Remove a cut that failed to load, so the next client writes it again."""
    shutil.rmtree(
        cache_root() / botocore.__version__ / service / version_name(operations),
        ignore_errors=True,
    )


def _overridden(loader: Any, service: str, ours: Path) -> bool:
    """Whether a data folder other than botocore's own holds a model of the service."""
    for path in loader.search_paths:
        if path in (str(ours), loader.BUILTIN_DATA_PATH):
            continue
        versions = Path(path) / service
        if versions.is_dir() and any(
            (entry / f"{_MODEL}.json").exists() or (entry / f"{_MODEL}.json.gz").exists()
            for entry in versions.iterdir()
        ):
            return True
    return False


def _private(root: Path) -> bool:
    """The cache root exists, is ours and closed to others: a model or rule set someone
    else could write would decide where EC2 calls go. False when it had to be made."""
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True, mode=0o700)  # another process may be first
        return False
    info = root.stat()
    if info.st_uid != os.geteuid():
        raise PermissionError(f"{root} belongs to uid {info.st_uid}")
    if info.st_mode & 0o077:
        root.chmod(0o700)
    return True


def _write(loader: Any, service: str, operations: Collection[str], folder: Path, name: str) -> None:
    """Cut the service's latest model into folder/service/name, whole or not at all."""
    try:
        model = loader.load_service_model(service, _MODEL)
        rules = loader.load_service_model(service, _RULES)
    except (DataNotFoundError, UnknownServiceError) as exc:
        raise FileNotFoundError(str(exc)) from exc
    target = folder / service / name
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        (staging / f"{_MODEL}.json").write_text(
            json.dumps(cut(model, operations), separators=(",", ":"))
        )
        (staging / f"{_RULES}.json").write_text(json.dumps(rules, separators=(",", ":")))
        try:
            staging.rename(target)
        except OSError:
            if not (target / f"{_MODEL}.json").is_file():
                raise  # not another process' finished copy: something is wrong
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _prune(folder)


def _prune(current: Path) -> None:
    """Remove the folders of other botocore versions that no client has been made from
    for STALE_AFTER_S (a folder's time is refreshed each time a cut is written in it)."""
    os.utime(current)
    limit = time.time() - STALE_AFTER_S
    for other in current.parent.iterdir():
        if other != current and other.is_dir() and other.stat().st_mtime < limit:
            shutil.rmtree(other, ignore_errors=True)
