#!/usr/bin/env python3
"""Stand-in package tools for the Amazon Linux stand-in hosts (NOT Amazon Linux).

The sandbox cannot reach an Amazon Linux image or repository, so the AL2 and
AL2023 branches of the playbooks run against a Debian host that carries these
shims. They exist so that a playbook's platform branch takes the same exit
codes it would on the real thing (`yum check-update` answering 100, a reboot
reported by `needs-restarting -r` until the host restarts) and so that a test
can read back what was asked for in /var/log/standin-commands.log. Nothing is
really installed: packages are recorded in a small state file.

With a repository file at /etc/yum.repos.d/fleetops-sandbox.repo (the
sandbox writes it at `up`, then runs `fleetops-standin repo-init`), the
updates come from the sandbox's package repository instead: its
standin-index.json, fetched over HTTP each time, names each package's old and
new version, whether it is a security fix, when it was issued and whether it
needs a reboot; `yum/dnf updateinfo list|info` answer from it.

One script serves every command; it dispatches on the name it was called by.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shlex
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

LOG = Path("/var/log/standin-commands.log")
STATE = Path("/var/lib/fleetops-standin/state.json")
FLAVOR_FILE = Path("/etc/fleetops-standin/flavor")
BOOT_ID = Path("/run/fleetops/boot-id")
REPO_FILE = Path("/etc/yum.repos.d/fleetops-sandbox.repo")
INDEX_NAME = "standin-index.json"

# Packages whose update needs a reboot, as needs-restarting -r judges it.
CORE = {"kernel", "glibc", "linux-firmware", "systemd", "openssl-libs", "dbus"}

FLAVORS = {
    "al2": {
        "dist": "amzn2",
        "repo": "amzn2-core",
        "updates": {
            "kernel": "4.14.355-277.643.amzn2",
            "openssl-libs": "1:1.0.2k-24.amzn2.0.14",
            "curl": "8.3.0-1.amzn2.0.8",
        },
        "installed": ["kernel", "glibc", "openssl-libs", "curl", "yum", "python3", "sudo"],
    },
    "al2023": {
        "dist": "amzn2023",
        "repo": "amazonlinux",
        "updates": {
            "kernel": "6.1.134-152.225.amzn2023",
            "openssl-libs": "1:3.0.8-1.amzn2023.0.20",
            "curl-minimal": "8.11.1-4.amzn2023.0.1",
        },
        "installed": ["kernel", "glibc", "openssl-libs", "curl-minimal", "dnf", "python3", "sudo"],
    },
}

EXTRAS_TOPICS = [
    ("ansible2", "ansible", "[ =2.4.2  =2.4.6  =2.8  =stable ]"),
    ("httpd_modules", "httpd", "[ =1.0  =stable ]"),
    ("memcached1.5", "memcached", "[ =1.5.1  =1.5.16  =1.5.17 ]"),
    ("docker", "docker", "[ =17.12.1  =18.03.1  =18.06.1  =18.09.9  =stable ]"),
    ("nginx1", "nginx", "[ =stable ]"),
    ("python3.8", "python38", "[ =stable ]"),
    ("kernel-5.10", "kernel", "[ =stable ]"),
]


def flavor() -> str:
    try:
        return FLAVOR_FILE.read_text().strip() or "al2"
    except OSError:
        return "al2"


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return "unknown"


def log_invocation(argv: list[str]) -> None:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = f"{stamp} {shlex.join([Path(argv[0]).name, *argv[1:]])}\n"
    with contextlib.suppress(OSError), LOG.open("a") as fh:
        fh.write(line)


def default_state() -> dict:
    spec = FLAVORS[flavor()]
    return {
        "pending": dict(spec["updates"]),
        "installed": sorted(spec["installed"]),
        "extras_enabled": [],
        "reboot_needed_boot": None,
        "reboot_needed_by": [],
    }


@contextlib.contextmanager
def state() -> Iterator[dict]:
    """Read, let the caller change, and write back the state under a lock."""
    STATE.parent.mkdir(parents=True, exist_ok=True)
    with open(STATE.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(STATE.read_text())
        except (OSError, ValueError):
            data = default_state()
        yield data
        tmp = STATE.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, STATE)


def version_of(pkg: str, data: dict | None = None) -> str:
    spec = FLAVORS[flavor()]
    if data and pkg in data.get("versions", {}):
        return str(data["versions"][pkg])
    return spec["updates"].get(pkg, f"1.0-1.{spec['dist']}")


def repo_index() -> list[dict]:
    """The sandbox repository's packages, or none when no repository is configured."""
    try:
        text = REPO_FILE.read_text()
    except OSError:
        return []
    urls = [line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith("baseurl=")]
    if not urls:
        return []
    try:
        with urllib.request.urlopen(urls[0].rstrip("/") + "/" + INDEX_NAME, timeout=10) as reply:
            return list(json.loads(reply.read()))
    except (OSError, ValueError) as exc:  # as yum and dnf do: say which repository, exit 1
        print(f"Error: Cannot retrieve repository metadata for fleetops-sandbox: {exc}",
              file=sys.stderr)
        sys.exit(1)


def pending_of(data: dict, index: list[dict] | None = None) -> dict[str, str]:
    """Updates not yet applied: the built-in ones, and the repository's newer versions."""
    pending = dict(data["pending"])
    versions = data.get("versions", {})
    for entry in repo_index() if index is None else index:
        if entry["name"] in versions and versions[entry["name"]] != entry["new"]:
            pending[entry["name"]] = entry["new"]
    return pending


def advisory(entry: dict) -> str:
    stamp = entry["issued"][:10].replace("-", "")
    prefix = "ALAS2" if flavor() == "al2" else "ALAS2023"
    return f"{prefix}-{stamp[:4]}-{int(stamp[4:]) % 10000:04d}-{entry['name']}"


def split_args(args: list[str]) -> tuple[set[str], list[str]]:
    """Separate options from words; options that take a value are kept whole."""
    opts: set[str] = set()
    words: list[str] = []
    takes_value = {"-e", "-d", "-c", "--releasever", "--installroot", "-R"}
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            opts.add(arg.split("=", 1)[0])
            skip = arg in takes_value
        else:
            words.append(arg)
    return opts, words


def banner(tool: str, quiet: bool) -> None:
    if quiet:
        return
    if tool == "yum":
        print("Loaded plugins: extras_suggestions, langpacks, priorities, update-motd")
    else:
        print("Last metadata expiration check: 0:01:12 ago.")


def confirm(opts: set[str]) -> bool:
    """Without -y and without a terminal, yum and dnf give up: say so as they do."""
    if "-y" in opts or "--assumeyes" in opts:
        return True
    print("Is this ok [y/d/N]: ", end="")
    if sys.stdin.isatty() and sys.stdin.readline().strip().lower() in ("y", "yes"):
        return True
    print("\nExiting on user command")
    print("Your transaction was saved, rerun it with:")
    return False


def apply_updates(data: dict, names: list[str]) -> list[str]:
    index = repo_index() if data.get("versions") else []
    pending = pending_of(data, index)
    by_name = {entry["name"]: entry for entry in index}
    chosen = [n for n in (names or list(pending)) if n in pending]
    for name in chosen:
        data["pending"].pop(name, None)
        if name in by_name:
            data["versions"][name] = by_name[name]["new"]
        if name not in data["installed"]:
            data["installed"] = sorted([*data["installed"], name])
    core = [n for n in chosen if n in CORE or by_name.get(n, {}).get("reboot")]
    if core:
        data["reboot_needed_boot"] = boot_id()
        data["reboot_needed_by"] = sorted(set(data.get("reboot_needed_by", [])) | set(core))
    return chosen


def needs_restarting(args: list[str]) -> int:
    opts, _ = split_args(args)
    if "-r" not in opts and "--reboothint" not in opts:
        return 0
    with state() as data:
        needed = data.get("reboot_needed_boot") == boot_id()
        pkgs = data.get("reboot_needed_by", []) if needed else []
        if not needed:
            data["reboot_needed_boot"] = None
            data["reboot_needed_by"] = []
    if needed:
        print("Core libraries or services have been updated since boot-up:")
        for pkg in pkgs:
            print(f"  * {pkg}")
        print()
        print("Reboot is required to fully utilize these updates.")
        print("More information: https://access.redhat.com/solutions/27943")
        return 1
    print("No core libraries or services have been updated since boot-up.")
    print("Reboot should not be necessary.")
    return 0


def package_manager(tool: str, args: list[str]) -> int:
    opts, words = split_args(args)
    quiet = "-q" in opts or "--quiet" in opts
    if not words:
        print(f"usage: {tool} [options] COMMAND", file=sys.stderr)
        return 1
    cmd, rest = words[0], words[1:]
    spec = FLAVORS[flavor()]
    if cmd == "needs-restarting":
        return needs_restarting(args[args.index(cmd) + 1 :])
    if cmd in ("makecache", "clean", "repolist"):
        banner(tool, quiet)
        return 0
    if cmd in ("check-update", "check-upgrade"):
        banner(tool, quiet)
        with state() as data:
            pending = {k: v for k, v in pending_of(data).items() if not rest or k in rest}
        if not pending:
            return 0
        print()
        for name, version in sorted(pending.items()):
            print(f"{name + '.x86_64':<40}{version:<32}{spec['repo']}")
        return 100
    if cmd in ("update", "upgrade", "update-minimal", "upgrade-minimal"):
        banner(tool, quiet)
        with state() as data:
            pending = pending_of(data)
            todo = [n for n in (rest or list(pending)) if n in pending]
            if not todo:
                print("No packages marked for update" if tool == "yum" else "Nothing to do.")
                if tool == "dnf":
                    print("Complete!")
                return 0
            if not confirm(opts):
                return 1
            for name in apply_updates(data, rest):
                print(f"  Updating   : {name}-{version_of(name, data)}.x86_64")
        print("Complete!")
        return 0
    if cmd == "updateinfo":
        return updateinfo(tool, rest, quiet)
    if cmd in ("install", "reinstall"):
        banner(tool, quiet)
        if not rest:
            print("Error: Need to pass a list of pkgs to install", file=sys.stderr)
            return 1
        with state() as data:
            new = [p for p in rest if p not in data["installed"]]
            for pkg in rest:
                if pkg not in new:
                    print(f"Package {pkg}-{version_of(pkg)}.x86_64 already installed")
            if not new:
                print("Nothing to do")
                return 0
            if not confirm(opts):
                return 1
            data["installed"] = sorted(set(data["installed"]) | set(new))
            for pkg in new:
                print(f"  Installing : {pkg}-{version_of(pkg)}.x86_64")
        print("Complete!")
        return 0
    if cmd in ("remove", "erase"):
        banner(tool, quiet)
        with state() as data:
            gone = [p for p in rest if p in data["installed"]]
            if not gone:
                print("No Packages marked for removal")
                return 0
            if not confirm(opts):
                return 1
            data["installed"] = [p for p in data["installed"] if p not in gone]
        print("Complete!")
        return 0
    if cmd == "list" and rest[:1] == ["installed"]:
        with state() as data:
            wanted = [p for p in data["installed"] if not rest[1:] or p in rest[1:]]
        if not wanted:
            print("Error: No matching Packages to list", file=sys.stderr)
            return 1
        print("Installed Packages")
        for pkg in wanted:
            print(f"{pkg + '.x86_64':<40}{version_of(pkg, data):<32}@{spec['repo']}")
        return 0
    print(f"No such command: {cmd}. Please use /usr/bin/{tool} --help", file=sys.stderr)
    return 1


def updateinfo(tool: str, rest: list[str], quiet: bool) -> int:
    """`updateinfo list` (advisory, type, package) and `updateinfo info` (with Issued)
    for the repository's pending updates, as yum and dnf print them."""
    banner(tool, quiet)
    index = repo_index()
    with state() as data:
        pending = pending_of(data, index)
    entries = [e for e in index if e["name"] in pending]
    if rest[:1] == ["info"]:
        for entry in entries:
            kind = "security" if entry["security"] else "bugfix"
            print("=" * 79)
            print(f"  {entry['name']} update")
            print("=" * 79)
            print(f"  Update ID : {advisory(entry)}")
            print(f"       Type : {kind}")
            print(f"     Issued : {entry['issued']}")
            print(f"   Packages : {entry['name']}-{entry['new']}.x86_64")
            print()
        return 0
    for entry in entries:
        kind = "important/Sec." if entry["security"] else "bugfix"
        if tool == "dnf" and entry["security"]:
            kind = "Important/Sec."
        print(f"{advisory(entry):<36} {kind:<15} {entry['name']}-{entry['new']}.x86_64")
    if tool == "yum":
        print("updateinfo list done")
    return 0


def rpm(args: list[str]) -> int:
    opts, words = split_args(args)
    if not ({"-q", "--query", "-qa"} & opts):
        print("rpm (stand-in): only queries are imitated", file=sys.stderr)
        return 1
    with state() as data:
        installed = list(data["installed"])
    if "-qa" in opts or "-a" in opts:
        for pkg in installed:
            print(f"{pkg}-{version_of(pkg, data)}.x86_64")
        return 0
    missing = 0
    for pkg in words:
        if pkg in installed:
            print(f"{pkg}-{version_of(pkg, data)}.x86_64")
        else:
            print(f"package {pkg} is not installed")
            missing += 1
    return min(missing, 255)


def extras(args: list[str]) -> int:
    _opts, words = split_args(args)
    cmd, rest = (words[0], words[1:]) if words else ("list", [])
    topics = {name: (pkg, versions) for name, pkg, versions in EXTRAS_TOPICS}
    if cmd == "list":
        with state() as data:
            enabled = set(data["extras_enabled"])
        for i, (name, _pkg, versions) in enumerate(EXTRAS_TOPICS):
            shown = f"{name}=latest" if name in enabled else name
            status = "enabled" if name in enabled else "available"
            print(f"  {i:>2}  {shown:<24} {status:<12} {versions}")
        return 0
    if cmd in ("enable", "install"):
        names = [r.split("=", 1)[0] for r in rest]
        unknown = [n for n in names if n not in topics]
        if not names or unknown:
            print(f"Topic {' '.join(unknown) or '(none)'} is not found.", file=sys.stderr)
            return 1
        with state() as data:
            data["extras_enabled"] = sorted(set(data["extras_enabled"]) | set(names))
            if cmd == "install":
                pkgs = [topics[n][0] for n in names]
                data["installed"] = sorted(set(data["installed"]) | set(pkgs))
        for name in names:
            print(f"Installing {topics[name][0]}" if cmd == "install" else f"Enabled {name}")
        if cmd == "install":
            print("Complete!")
        return 0
    if cmd == "disable":
        with state() as data:
            data["extras_enabled"] = [t for t in data["extras_enabled"] if t not in rest]
        return 0
    print(f"amazon-linux-extras: unknown command {cmd}", file=sys.stderr)
    return 1


def admin(args: list[str]) -> int:
    """Let a test put the stand-in into a known state (new updates, or a clean slate)."""
    if args[:1] == ["reset"]:
        with state() as data:
            data.clear()
            data.update(default_state())
        return 0
    if args[:1] == ["set-updates"]:
        with state() as data:
            data["pending"] = {p: version_of(p) for p in args[1:]}
        return 0
    if args[:1] == ["repo-init"]:
        index = repo_index()
        with state() as data:
            data["pending"] = {}
            data["versions"] = {entry["name"]: entry["old"] for entry in index}
            data["installed"] = sorted(set(data["installed"]) | set(data["versions"]))
        return 0
    if args[:1] == ["show"]:
        with state() as data:
            print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    print("usage: fleetops-standin reset | set-updates PKG... | repo-init | show", file=sys.stderr)
    return 64


def main(argv: list[str]) -> int:
    log_invocation(argv)
    prog = Path(argv[0]).name
    args = argv[1:]
    if prog == "fleetops-standin":
        return admin(args)
    if prog == "needs-restarting":
        return needs_restarting(args)
    if prog == "rpm":
        return rpm(args)
    if prog == "amazon-linux-extras":
        return extras(args)
    if prog in ("yum", "dnf"):
        return package_manager(prog, args)
    print(f"stand-in: no imitation for {prog}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
