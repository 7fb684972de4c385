"""Target expressions: which instances a command is meant for.

Parsed and checked before any AWS call, so a typo in `--target` or an
unreadable `--from-file` is refused (exit 2) instead of matching nothing or,
worse, everything. Tag keys match case-insensitively because operators type
`role=web` while EC2 tags are usually written `Role`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ops.errors import BadInput

INSTANCE_ID = re.compile(r"^(i|mi)-[0-9a-f]{8,17}$")
_TAG_KEY = re.compile(r"^[\w .:/=+@-]{1,128}$")


@dataclass(frozen=True)
class TargetSpec:
    """Every selector the operator gave; all given selectors must match (AND)."""

    tags: dict[str, str] = field(default_factory=dict)
    instance_ids: tuple[str, ...] = ()
    name_globs: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.tags or self.instance_ids or self.name_globs)

    def with_default_filter(self, default: Mapping[str, str]) -> TargetSpec:
        """Add the environment's filter; a tag the operator named himself wins."""
        mine = {key.lower() for key in self.tags}
        merged = dict(self.tags)
        for key, value in default.items():
            if key.lower() not in mine:
                merged[key] = value
        return TargetSpec(merged, self.instance_ids, self.name_globs)

    def describe(self) -> str:
        """The expression as the operator would type it, for messages."""
        parts = [f"{key}={value}" for key, value in self.tags.items()]
        if self.name_globs:
            parts.append("name=" + "|".join(self.name_globs))
        if self.instance_ids:
            shown = ",".join(self.instance_ids[:3])
            more = f" (+{len(self.instance_ids) - 3} more)" if len(self.instance_ids) > 3 else ""
            parts.append(f"instance={shown}{more}")
        return ",".join(parts) or "any instance"

    def matches(self, tags: Mapping[str, str], instance_id: str) -> bool:
        if self.instance_ids and instance_id not in self.instance_ids:
            return False
        folded = {key.lower(): value for key, value in tags.items()}
        for key, value in self.tags.items():
            if folded.get(key.lower()) != value:
                return False
        if self.name_globs:
            name = folded.get("name", "")
            if not any(fnmatch.fnmatchcase(name, glob) for glob in self.name_globs):
                return False
        return True


def parse_tags(expressions: Iterable[str]) -> dict[str, str]:
    """`role=web,env=prod` (repeatable) -> {"role": "web", "env": "prod"}."""
    tags: dict[str, str] = {}
    for expression in expressions:
        for part in expression.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                raise BadInput(
                    f"--target expects tag=value[,tag=value], got {expression!r}; "
                    "for example --target role=web,env=prod"
                )
            if not _TAG_KEY.match(key):
                raise BadInput(f"--target: {key!r} is not a valid tag key")
            if key.lower() in {k.lower() for k in tags} and tags.get(key) != value:
                raise BadInput(f"--target names tag {key!r} twice with different values")
            tags[key] = value
    return tags


def check_instance_ids(ids: Iterable[str], *, source: str) -> list[str]:
    """Validate ids; keep the operator's order, drop repeats."""
    seen: dict[str, None] = {}
    for raw in ids:
        instance_id = raw.strip()
        if not INSTANCE_ID.match(instance_id):
            raise BadInput(
                f"{source}: {instance_id!r} is not an instance id"
                " (expected i- and 8 or 17 hex digits)"
            )
        seen.setdefault(instance_id, None)
    return list(seen)


def read_instance_file(path: Path) -> list[str]:
    """One instance id a line; blank lines and # comments are ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BadInput(f"--from-file {path}: cannot read it ({reason})") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    ids = [line for line in lines if line]
    if not ids:
        raise BadInput(f"--from-file {path}: no instance ids in it (one id a line)")
    return [*check_instance_ids(ids, source=f"--from-file {path}")]


def build_spec(
    *,
    targets: Sequence[str] = (),
    instances: Sequence[str] = (),
    names: Sequence[str] = (),
    from_file: Path | None = None,
) -> TargetSpec:
    """One TargetSpec from all the targeting flags, or BadInput if none was given."""
    tags = parse_tags(targets)
    ids = check_instance_ids(instances, source="--instance")
    if from_file is not None:
        ids = check_instance_ids([*ids, *read_instance_file(from_file)], source="--from-file")
    globs = tuple(glob.strip() for glob in names if glob.strip())
    spec = TargetSpec(tags, tuple(ids), globs)
    if spec.empty:
        raise BadInput(
            "no target: give --target tag=value, --instance ID, --name GLOB or --from-file PATH"
        )
    return spec
