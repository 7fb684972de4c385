"""Pull over SSM: each instance fetches the playbook bundle and runs Ansible on itself.

Users of Ansible's aws_ssm connection plugin report it two to four times
slower than SSH because every task opens an SSM session and moves its files
through S3. Here the whole playbook travels once: it is packed with its roles
into one deterministic tar.gz, put in S3, and one Run Command per batch (the
fan-out scheduler in ops.engine.fanout, which paces and collects) tells every
host to fetch it through a presigned URL, check its sha256, unpack it, install
Ansible where it is missing, and run `ansible-playbook -c local` with a JSON
callback. `ops` parses each host's recap into the same HostRecap push returns.

Nothing the user typed is written into the shell script: extra variables go
in a JSON file inside the bundle, and the only variable parts of the script
(URL, digest, playbook path) are shlex-quoted.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ops.engine.budget import Amount, FailureBudget
from ops.engine.fanout import FanOut
from ops.errors import BadInput
from ops.fleet.discovery import Host
from ops.fleet.inventory import InventoryHost, render, static_sources, to_yaml
from ops.transports.ansible import (
    FAILED,
    NOT_RUN,
    OK,
    UNREACHABLE,
    HostRecap,
    PlaybookResult,
    TaskEvent,
    recap,
)
from ops.transports.ssm import (
    DELIVERY_TIMED_OUT,
    NOT_STARTED,
    CommandSpec,
    HostResult,
    SsmTransport,
)
from ops.transports.ssm import UNDELIVERABLE as SSM_UNDELIVERABLE
from ops.transports.ssm import UNREACHABLE as SSM_UNREACHABLE

CALLBACK_SOURCE = Path(__file__).with_name("pull_callback.py")
CALLBACK_NAME = "ops_recap"
TASK_PREFIX = "OPS-TASK "
RECAP_PREFIX = "OPS-RECAP "
BUNDLE_LIMIT = 20 * 1024 * 1024  # bytes; a playbook that big is carrying data, not code
# A presigned URL is a bearer credential for the bundle: it lives long enough
# for a wave's hosts to pick the command up and fetch, and is signed afresh per wave.
PRESIGN_SECONDS = 10 * 60
# Host vars that say how to reach a host over SSH; on the host itself they mean nothing.
_CONNECTION_VARS = ("ansible_host", "ansible_port", "ansible_user", "ansible_ssh_private_key_file")
_SKIP_NAMES = {"__pycache__", ".git", ".molecule", ".cache"}

# Exit codes of the pull script, so a host's failure says which step failed.
EXIT_FETCH = 81
EXIT_DIGEST = 82
EXIT_UNPACK = 83
EXIT_PLATFORM = 84
EXIT_INSTALL = 85
EXIT_NO_ANSIBLE = 86
EXIT_IDENTITY = 87
SCRIPT_FAILURES = {
    EXIT_FETCH: "could not fetch the bundle from S3",
    EXIT_DIGEST: "the bundle's sha256 did not match",
    EXIT_UNPACK: "could not unpack the bundle",
    EXIT_PLATFORM: "no way to install Ansible on this platform",
    EXIT_INSTALL: "installing Ansible failed",
    EXIT_NO_ANSIBLE: "ansible-playbook is still missing after the install",
    EXIT_IDENTITY: "the host could not tell its instance id",
}


@dataclass(frozen=True)
class Bundle:
    """The packed playbook: bytes, their digest, and where the playbook sits inside."""

    data: bytes
    sha256: str
    playbook: str  # path of the playbook inside the bundle
    roles: tuple[str, ...]


@dataclass(frozen=True)
class PullOptions:
    check: bool = False
    diff: bool = False
    concurrency: int = 10
    extravars: Mapping[str, Any] = field(default_factory=dict)
    execution_timeout: int = 3600
    delivery_timeout: int | None = None
    static_inventory: Path | None = None
    comment: str = "ops playbook --via ssm"


# the bundle ------------------------------------------------------------------
def role_dependencies(role_dir: Path) -> list[str]:
    """Role names a role's meta/main.yml depends on (they travel with it)."""
    for name in ("main.yml", "main.yaml"):
        meta = role_dir / "meta" / name
        if meta.is_file():
            try:
                data = yaml.safe_load(meta.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError):
                return []
            found: list[str] = []
            for entry in (data.get("dependencies") or []) if isinstance(data, dict) else []:
                role = entry if isinstance(entry, str) else (entry or {}).get("role")
                if isinstance(role, str):
                    found.append(role)
            return found
    return []


def collect_roles(roles: Sequence[str], search: Sequence[Path]) -> dict[str, Path]:
    """Each named role and its dependencies, found on the same paths push uses."""
    found: dict[str, Path] = {}
    queue = list(roles)
    while queue:
        name = queue.pop(0)
        if name in found or "{{" in name or name.count(".") >= 2:
            continue  # templated or collection roles cannot be packed from here
        where = next((base / name for base in search if (base / name).is_dir()), None)
        if where is None:
            raise BadInput(f"role {name!r} was not found on {', '.join(map(str, search))}")
        found[name] = where
        queue.extend(role_dependencies(where))
    return found


def pull_inventory(hosts: Sequence[InventoryHost]) -> dict[str, Any]:
    """The push inventory with SSH reach removed: each host runs itself, connection local.

    Host names stay instance ids, so a template or a `when` reads the same
    values pushed or pulled, and the recap is keyed the same way.
    """
    inventory = render(hosts)
    for hostvars in inventory["all"]["hosts"].values():
        for name in _CONNECTION_VARS:
            hostvars.pop(name, None)
        hostvars["ansible_connection"] = "local"
    return inventory


# How Ansible's host_group_vars plugin names a host's vars: <host>, <host>.yml, .yaml,
# .json, or a folder <host>/.
_VARS_SUFFIXES = (".yml", ".yaml", ".json")


def host_vars_owner(entry: Path) -> str | None:
    """The inventory host a host_vars/ entry belongs to (None for a hidden one)."""
    if entry.name.startswith("."):
        return None
    if entry.is_file() and entry.suffix in _VARS_SUFFIXES:
        return entry.stem
    return entry.name


def host_vars_entries(static_inventory: Path | None) -> dict[str, list[Path]]:
    """The static inventory's host_vars/ entries, by the host each belongs to."""
    folder = static_inventory / "host_vars" if static_inventory is not None else None
    found: dict[str, list[Path]] = {}
    if folder is None or not folder.is_dir():
        return found
    for entry in sorted(folder.iterdir()):
        owner = host_vars_owner(entry)
        if owner is not None:
            found.setdefault(owner, []).append(entry)
    return found


def has_own_vars(host: InventoryHost, entries: Mapping[str, list[Path]]) -> bool:
    """Variables of its own (host_vars/ under its instance id, or set for it by ops)."""
    return bool(host.extra_vars) or host.instance_id in entries


def bundle_groups(
    hosts: Sequence[InventoryHost], static_inventory: Path | None
) -> list[tuple[str, list[InventoryHost]]]:
    """Which hosts may share a bundle: ("shared", the hosts with no vars of their own)
    first, then (instance id, [host]) for each host that has some.

    A bundle is readable by every host it reaches (and so is its presigned URL,
    in the command every one of them runs): a host's own variables travel only
    in a bundle, and a send, addressed to that host alone.
    """
    entries = host_vars_entries(static_inventory)
    shared = [h for h in hosts if not has_own_vars(h, entries)]
    groups: list[tuple[str, list[InventoryHost]]] = [("shared", shared)] if shared else []
    groups += [(h.instance_id, [h]) for h in hosts if has_own_vars(h, entries)]
    return groups


def _walk(
    root: Path, arc_root: str, skip_top: frozenset[str] = frozenset()
) -> list[tuple[str, Path]]:
    entries: list[tuple[str, Path]] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in skip_top or any(
            p in _SKIP_NAMES or p.startswith(".") or p.endswith(".retry") for p in rel.parts
        ):
            continue
        if path.is_file():
            entries.append((f"{arc_root}/{rel.as_posix()}", path))
    return entries


def _entry(entry: Path, arc_root: str) -> list[tuple[str, Path]]:
    if entry.is_dir():
        return _walk(entry, f"{arc_root}/{entry.name}")
    return [(f"{arc_root}/{entry.name}", entry)] if entry.is_file() else []


def _add(tar: tarfile.TarFile, name: str, data: bytes, executable: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = 0o755 if executable else 0o644
    tar.addfile(info, io.BytesIO(data))


def build_bundle(
    playbook: Path,
    roles: Mapping[str, Path],
    hosts: Sequence[InventoryHost],
    extravars: Mapping[str, Any],
    static_inventory: Path | None = None,
) -> Bundle:
    """Pack playbook dir (less its roles/), the named roles, inventory, vars and callback.

    The inventory holds `hosts` only, and of the static host_vars/ only their
    entries: what a bundle carries, every host it reaches can read.
    Deterministic - sorted names, zero times and owners, gzip without a name
    or time - so the same inputs give the same sha256, which the hosts check.
    """
    project = playbook.resolve().parent
    files: list[tuple[str, Path]] = _walk(project, "project", frozenset({"roles"}))
    for name in sorted(roles):
        files += _walk(roles[name], f"project/roles/{name}")
    generated: list[tuple[str, bytes]] = [
        ("ops/inventory/ops_hosts.yml", to_yaml(pull_inventory(hosts)).encode()),
        (
            "ops/extravars.json",
            json.dumps(dict(extravars), sort_keys=True, default=str).encode(),
        ),
        (f"ops/callback_plugins/{CALLBACK_NAME}.py", CALLBACK_SOURCE.read_bytes()),
    ]
    if static_inventory is not None:
        own = {h.instance_id for h in hosts}
        for source in static_sources(static_inventory):
            if source.name == "host_vars":  # only the vars of the hosts this bundle reaches
                for owner, entries in host_vars_entries(static_inventory).items():
                    files += [item for entry in entries if owner in own
                              for item in _entry(entry, "ops/inventory/host_vars")]  # fmt: skip
            elif source.is_dir():
                files += _walk(source, f"ops/inventory/{source.name}")
            else:
                files.append((f"ops/inventory/{source.name}", source))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(generated):
            _add(tar, name, data)
        for name, path in sorted(files):
            _add(tar, name, path.read_bytes(), executable=bool(path.stat().st_mode & 0o111))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0) as gz:
        gz.write(raw.getvalue())
    data = packed.getvalue()
    if len(data) > BUNDLE_LIMIT:
        raise BadInput(
            f"{playbook}: the bundle is {len(data) // 1024 // 1024} MB (limit "
            f"{BUNDLE_LIMIT // 1024 // 1024} MB); move data files out of the playbook folder"
        )
    return Bundle(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        playbook=f"project/{playbook.name}",
        roles=tuple(sorted(roles)),
    )


def stage(s3: Any, bucket: str, prefix: str, bundle: Bundle) -> tuple[str, str]:
    """Put the bundle in S3 under a run-unique key; return (key, presigned GET URL)."""
    key = f"{prefix}pull/{uuid.uuid4().hex}/{bundle.sha256}.tar.gz"
    put_bundle(s3, bucket, key, bundle)
    return key, presign(s3, bucket, key)


def bundle_key(prefix: str, token: str, group: str) -> str:
    """Where one bundle of a run goes: known (and journalled) before it is put there."""
    return f"{prefix}pull/{token}/{group}.tar.gz"


def put_bundle(s3: Any, bucket: str, key: str, bundle: Bundle) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=bundle.data, ContentType="application/gzip")


def presign(s3: Any, bucket: str, key: str, seconds: int = PRESIGN_SECONDS) -> str:
    """A GET URL for the staged bundle that expires in minutes (signed locally, no call)."""
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
    )
    return str(url)


def bundle_locations(arguments: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(bucket, key) of each bundle a journalled playbook run staged or was about to.

    `bundles` ({bucket, keys}) is what runs record; `bundle` ({bucket, key})
    is how runs recorded their one bundle before bundles were per host.
    """
    found: list[tuple[str, str]] = []
    for field_name, keys_name in (("bundles", "keys"), ("bundle", "key")):
        staged = arguments.get(field_name)
        if not isinstance(staged, Mapping):
            continue
        bucket, keys = staged.get("bucket"), staged.get(keys_name)
        keys = [keys] if isinstance(keys, str) else keys
        if isinstance(bucket, str) and bucket and isinstance(keys, list):
            found += [(bucket, key) for key in keys if isinstance(key, str) and key]
    return found


def delete_bundle(s3: Any, bucket: str, key: str) -> bool:
    """Remove a staged bundle (it may hold secret extra vars); False if S3 refused.

    Called when a run ends, and by the resume of a run that was killed before
    it could clean up (its journal arguments carry the locations: bundle_locations).
    A bundle already gone counts as removed: S3's DeleteObject succeeds for it.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError):
        return False
    return True


# the script ------------------------------------------------------------------
_SCRIPT = r"""set -u
ops_url={url}
ops_sum={digest}
ops_work=$(mktemp -d /tmp/ops-pull.XXXXXX) || exit {EXIT_UNPACK}
trap 'rm -rf "$ops_work"' EXIT
say() {{ echo "ops-pull: $*" >&2; }}
# The URL reaches curl on its standard input (printf is a shell builtin), never
# in an argument list that `ps` would show to every user of the host.
printf 'url = "%s"\n' "$ops_url" \
  | curl -fsS --retry 3 --connect-timeout 10 -o "$ops_work/bundle.tar.gz" -K - \
  || {{ say "fetching the bundle failed"; exit {EXIT_FETCH}; }}
unset ops_url
ops_got=$(sha256sum "$ops_work/bundle.tar.gz" | cut -d' ' -f1)
[ "$ops_got" = "$ops_sum" ] || {{ say "sha256 $ops_got, expected $ops_sum"; exit {EXIT_DIGEST}; }}
mkdir "$ops_work/b" && tar -xzf "$ops_work/bundle.tar.gz" -C "$ops_work/b" \
  || {{ say "unpacking the bundle failed"; exit {EXIT_UNPACK}; }}
if ! command -v ansible-playbook >/dev/null 2>&1; then
  . /etc/os-release
  case "${{ID:-}}:${{VERSION_ID:-}}" in
    amzn:2) set -- amazon-linux-extras install -y ansible2 ;;
    amzn:2023*) set -- dnf install -y ansible-core ;;
    debian:*|ubuntu:*) set -- apt-get install -y -q --no-install-recommends ansible-core ;;
    *) say "no way to install Ansible on ${{ID:-?}} ${{VERSION_ID:-?}}"; exit {EXIT_PLATFORM} ;;
  esac
  say "installing Ansible: $*"
  if [ "$1" = apt-get ]; then
    export DEBIAN_FRONTEND=noninteractive
    "$@" >"$ops_work/install.log" 2>&1 \
      || {{ apt-get update -q >>"$ops_work/install.log" 2>&1 \
            && "$@" >>"$ops_work/install.log" 2>&1; }}
  else
    "$@" >"$ops_work/install.log" 2>&1
  fi || {{ tail -n 20 "$ops_work/install.log" >&2; exit {EXIT_INSTALL}; }}
  command -v ansible-playbook >/dev/null 2>&1 \
    || {{ say "no ansible-playbook after: $*"; exit {EXIT_NO_ANSIBLE}; }}
  echo "OPS-INSTALLED $*"
fi
ops_id=${{AWS_SSM_INSTANCE_ID:-}}
if [ -z "$ops_id" ]; then
  ops_token=$(curl -fsS -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' \
    http://169.254.169.254/latest/api/token 2>/dev/null) || ops_token=
  ops_id=$(curl -fsS -m 2 -H "X-aws-ec2-metadata-token: $ops_token" \
    http://169.254.169.254/latest/meta-data/instance-id 2>/dev/null) || ops_id=
fi
case "$ops_id" in
  i-*|mi-*) ;;
  *) say "cannot tell this host's instance id"; exit {EXIT_IDENTITY} ;;
esac
mkdir -p "$ops_work/tmp"
cd "$ops_work/b/project" || exit {EXIT_UNPACK}
ANSIBLE_STDOUT_CALLBACK={callback} \
ANSIBLE_CALLBACK_PLUGINS="$ops_work/b/ops/callback_plugins" \
ANSIBLE_ROLES_PATH="$ops_work/b/project/roles" \
ANSIBLE_LOCAL_TEMP="$ops_work/tmp" ANSIBLE_REMOTE_TEMP="$ops_work/tmp" \
ANSIBLE_RETRY_FILES_ENABLED=False ANSIBLE_NOCOLOR=True ANSIBLE_DEPRECATION_WARNINGS=False \
ANSIBLE_HOST_KEY_CHECKING=False \
  ansible-playbook -i "$ops_work/b/ops/inventory" -c local --limit "$ops_id" \
    -e "@$ops_work/b/ops/extravars.json"{flags} {playbook}
"""


def pull_script(url: str, digest: str, playbook: str, check: bool, diff: bool) -> str:
    """The one shell script every host runs; every variable part is shlex-quoted."""
    import shlex

    flags = (" --check" if check else "") + (" --diff" if diff else "")
    rel = playbook.removeprefix("project/")
    return _SCRIPT.format(
        url=shlex.quote(url),
        digest=shlex.quote(digest),
        playbook=shlex.quote(rel),
        callback=CALLBACK_NAME,
        flags=flags,
        **{name: value for name, value in globals().items() if name.startswith("EXIT_")},
    )


# reading the results ---------------------------------------------------------
@dataclass
class PulledOutput:
    stats: dict[str, dict[str, int]] | None
    tasks: int
    events: list[TaskEvent]
    installed: str | None


def parse_output(stdout: str) -> PulledOutput:
    """OPS-TASK and OPS-RECAP lines from one host's output; anything else is ignored."""
    stats: dict[str, dict[str, int]] | None = None
    tasks = 0
    events: list[TaskEvent] = []
    installed: str | None = None
    for line in stdout.splitlines():
        if line.startswith(TASK_PREFIX):
            try:
                item = json.loads(line[len(TASK_PREFIX) :])
            except ValueError:
                continue
            events.append(
                TaskEvent(
                    host=str(item.get("host", "")),
                    task=str(item.get("task", "")),
                    status=str(item.get("status", "")),
                    changed=bool(item.get("changed", False)),
                    message=str(item.get("message", "")),
                )
            )
        elif line.startswith(RECAP_PREFIX):
            try:
                data = json.loads(line[len(RECAP_PREFIX) :])
            except ValueError:
                continue
            tasks = int(data.pop("tasks", 0) or 0)
            stats = {k: dict(v) for k, v in data.items() if isinstance(v, dict)}
        elif line.startswith("OPS-INSTALLED "):
            installed = line.removeprefix("OPS-INSTALLED ").strip()
    return PulledOutput(stats, tasks, events, installed)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def host_recap(result: HostResult, host: InventoryHost) -> tuple[HostRecap, PulledOutput]:
    """One host's SSM result as the recap push would have given for it."""
    parsed = parse_output(result.stdout)
    if parsed.stats is not None and host.instance_id in (parsed.stats.get("processed") or {}):
        messages = {
            e.host: f"{e.task}: {e.message}"
            for e in reversed(parsed.events)
            if e.status in (FAILED, UNREACHABLE) and e.message
        }
        return recap(parsed.stats, [host], messages)[0], parsed
    item = HostRecap(host.instance_id, host.name, FAILED)
    if result.status in (SSM_UNDELIVERABLE, DELIVERY_TIMED_OUT, SSM_UNREACHABLE):
        item.status, item.unreachable = UNREACHABLE, 1
    elif result.status == NOT_STARTED:
        item.status = NOT_RUN
    reason = SCRIPT_FAILURES.get(result.exit_code or 0, "")
    detail = _last_line(result.stderr) or _last_line(result.stdout)
    item.message = "; ".join(x for x in (result.status, reason, detail) if x)[:400]
    return item, parsed


def pull(
    transport: SsmTransport,
    url: str,
    bundle: Bundle,
    hosts: Sequence[InventoryHost],
    options: PullOptions,
    output_bucket: str | None,
    output_prefix: str,
    on_event: Callable[[TaskEvent], None] | None = None,
    cancel: threading.Event | None = None,
    on_host: Callable[[HostRecap, PulledOutput], None] | None = None,
) -> PlaybookResult:
    """Send the pull script to these hosts through the fan-out engine; recap per host.

    The engine paces the run (`options.concurrency` hosts at once) and fetches
    output past SSM's 24,000 characters from S3 when an output bucket is set.
    Every host is attempted: stopping between waves is the workflow's call.
    """
    if not hosts:
        raise BadInput("no hosts to run the playbook on; check the targeting")
    script = pull_script(url, bundle.sha256, bundle.playbook, options.check, options.diff)
    spec = CommandSpec(
        commands=[script],
        execution_timeout=options.execution_timeout,
        delivery_timeout=options.delivery_timeout,
        comment=options.comment,
        output_bucket=output_bucket,
        output_prefix=output_prefix,
    )
    fanout = FanOut(transport, spec)
    by_id = {h.instance_id: h for h in hosts}
    results: dict[str, HostRecap] = {}
    tasks = 0
    lock = threading.Lock()

    def on_result(result: HostResult) -> None:
        nonlocal tasks
        host = by_id.get(result.instance_id)
        if host is None:
            return
        item, parsed = host_recap(result, host)
        with lock:
            results[host.instance_id] = item
            tasks = max(tasks, parsed.tasks)
        if on_event is not None:
            for event in parsed.events:
                on_event(event)
        if on_host is not None:
            on_host(item, parsed)

    done = threading.Event()

    def watch_cancel() -> None:
        while cancel is not None and not done.wait(0.2):
            if cancel.is_set():
                fanout.cancel()
                return

    watcher = threading.Thread(target=watch_cancel, name="ops-pull-cancel", daemon=True)
    watcher.start()
    budget = FailureBudget(len(hosts), Amount(options.concurrency, False), Amount(100, True))
    started = time.monotonic()
    try:
        report = fanout.run_client_side(
            [Host(instance_id=h.instance_id, name=h.name) for h in hosts], budget, on_result
        )
    finally:
        done.set()
        watcher.join(timeout=1)
    recaps = [
        results.get(h.instance_id) or HostRecap(h.instance_id, h.name, NOT_RUN) for h in hosts
    ]
    if report.interrupted:
        status, rc = "canceled", 130
    elif all(r.status == OK for r in recaps):
        status, rc = "successful", 0
    else:
        status, rc = "failed", 2
    return PlaybookResult(status, rc, recaps, time.monotonic() - started, tasks)
