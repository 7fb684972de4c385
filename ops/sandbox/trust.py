"""The sandbox's host keys in the known_hosts file `ops` checks SSH against.

`up` verifies each container's host key over paramiko before anything else
talks to it; handing those lines to `ops`' own known_hosts lets `ops
playbook` keep strict host-key checking without knowing a sandbox exists.
`down` takes them out again, so a later sandbox on the same loopback ports
never meets a stale key.
"""

from __future__ import annotations

from pathlib import Path


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def add(source: Path, target: Path) -> int:
    """Append the lines of `source` that `target` lacks; how many were added."""
    have = set(_lines(target))
    new = [line for line in _lines(source) if line not in have]
    if new:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with target.open("a") as fh:
            fh.write("\n".join(new) + "\n")
        target.chmod(0o600)
    return len(new)


def remove(source: Path, target: Path) -> int:
    """Take the lines of `source` out of `target`; how many were removed."""
    gone = set(_lines(source))
    kept = _lines(target)
    if not gone or not kept:
        return 0
    remaining = [line for line in kept if line not in gone]
    if len(remaining) != len(kept):
        target.write_text("".join(line + "\n" for line in remaining))
    return len(kept) - len(remaining)
