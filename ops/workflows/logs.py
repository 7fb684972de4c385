"""`ops logs collect`: build a bundle on every host, bring it home, verify, unpack, index.

Two phases, each journalled per host before and after it acts:

- build: the builder (logs_host.py) runs on the host over SSM or SSH. With
  `--via s3` every host gets its own presigned PUT URL (no S3 write
  permission on the instance, no host can write another's key) and uploads
  its bundle; with `--via ssh` the bundle waits on the host for SFTP.
- fetch: the free disk is checked against what the hosts reported, then each
  bundle is downloaded, its sha256 checked against the host's answer (a
  mismatch is fetched once more, then reported), unpacked below
  DEST/<run-id>/<instance-id>/, each file checked against the manifest,
  and the copy left in S3 or on the host removed.

The journal step of each phase holds what a resume needs: the build's
bundle sha256 and where it is; the fetch's `fetched` flag, sha256 and the
host's index entry. `resume` skips hosts already fetched and fetches
without rebuilding the hosts already built, so no host is fetched twice.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.config import Settings, known_hosts_path
from ops.errors import BadInput, ExitCode, OpsError
from ops.fleet.inventory import InventoryHost
from ops.journal.store import Journal, Run
from ops.transports.ssh import SshTarget, SshTransport, SshUnreachable, options_from_settings
from ops.transports.ssm import HostResult, SsmTransport, open_transport
from ops.workflows.logs_input import LogRequest
from ops.workflows.logs_remote import (
    BadAnswer,
    BuildAnswer,
    failure_text,
    host_source,
    parse_answer,
    run_over_ssm,
    ssh_command,
    ssm_script,
)
from ops.workflows.logs_store import BundleError, HostEntry, sha256_file, unpack, write_index

KIND = "logs"
BUILD = "build"
FETCH = "fetch"
OK = "ok"
FAILED = "failed"
UNREACHABLE = "unreachable"
NOT_RUN = "not_run"
PRESIGN_SECONDS = 3600
FETCH_ATTEMPTS = 2
BUNDLES = ".bundles"


@dataclass
class Listener:
    """What the CLI shows while the run goes: hosts built, bytes fetched."""

    build_total: Callable[[int], None] = lambda _n: None
    built: Callable[[str, str], None] = lambda _iid, _status: None
    fetch_total: Callable[[int], None] = lambda _n: None
    advance: Callable[[int], None] = lambda _n: None
    fetched: Callable[[str, str], None] = lambda _iid, _status: None


@dataclass
class LogReport:
    run_id: str
    folder: Path
    status: str
    hosts: list[HostEntry]
    elapsed: float

    @property
    def exit_code(self) -> ExitCode:
        if self.status == "cancelled":
            return ExitCode.INTERRUPTED
        return ExitCode.OK if all(h.status == OK for h in self.hosts) else ExitCode.HOSTS_FAILED

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "folder": str(self.folder),
            "status": self.status,
            "elapsed": round(self.elapsed, 3),
            "hosts": [h.as_dict() for h in self.hosts],
        }


class NotEnoughDisk(OpsError):
    """The bundles would not fit; nothing was downloaded and the run can be resumed."""


@dataclass
class _Built:
    """A bundle waiting to be fetched: in S3 (`key`) or on the host (`path`)."""

    answer: BuildAnswer
    key: str = ""
    seconds: float = 0.0

    def detail(self) -> dict[str, Any]:
        a = self.answer
        return {
            "sha256": a.sha256,
            "size": a.size,
            "files": a.files,
            "left_out": a.left_out,
            "content_bytes": a.content_bytes,
            "path": a.path,
            "key": self.key,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> _Built:
        answer = BuildAnswer(
            sha256=str(detail["sha256"]),
            size=int(detail["size"]),
            files=int(detail.get("files", 0)),
            left_out=int(detail.get("left_out", 0)),
            content_bytes=int(detail.get("content_bytes", 0)),
            path=str(detail.get("path") or ""),
            uploaded=bool(detail.get("key")),
        )
        return cls(answer, str(detail.get("key") or ""), float(detail.get("seconds", 0.0)))


@dataclass
class _State:
    """One run as it goes; shared by worker threads under `lock`."""

    run: Run
    request: LogRequest
    folder: Path
    hosts: dict[str, InventoryHost]
    entries: dict[str, HostEntry] = field(default_factory=dict)
    built: dict[str, _Built] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def settle(self, instance_id: str, status: str, message: str, **extra: Any) -> HostEntry:
        host = self.hosts[instance_id]
        entry = HostEntry(instance_id, host.name, status, message[:400], **extra)
        with self.lock:
            self.entries[instance_id] = entry
        return entry


def begin(journal: Journal, request: LogRequest, hosts: Sequence[InventoryHost], env: str) -> Run:
    """The run in the journal before any host is touched."""
    arguments = {"request": request.as_dict(), "hosts": [h.instance_id for h in hosts]}
    return journal.begin_run(KIND, arguments, env)


def prior_state(journal: Journal, run_id: str) -> tuple[Run, LogRequest, list[str]]:
    """A logs run to resume: its record, its request (same window) and its hosts."""
    run = journal.get_run(run_id)
    if run is None or run.kind != KIND:
        raise BadInput(f"no `ops logs collect` run {run_id!r} in the journal (`ops runs list`)")
    request = LogRequest.from_dict(run.arguments["request"])
    return run, request, list(run.arguments.get("hosts") or [])


def collect(
    run: Run,
    request: LogRequest,
    hosts: Sequence[InventoryHost],
    settings: Settings,
    journal: Journal,
    *,
    listener: Listener | None = None,
    cancel: threading.Event | None = None,
    host_key_policy: str = "strict",
    workers: int = 8,
) -> LogReport:
    """Build, fetch, unpack and index; on a resumed run only what is still owed."""
    listener = listener or Listener()
    cancel = cancel or threading.Event()
    started = time.monotonic()
    folder = request.dest / run.id
    folder.mkdir(parents=True, exist_ok=True)
    state = _State(run, request, folder, {h.instance_id: h for h in hosts})
    _load_prior(state, journal)
    transport = open_transport(settings, workers=workers) if request.via == "s3" else None
    ssh = (
        SshTransport(
            options_from_settings(
                settings,
                known_hosts=known_hosts_path(),
                host_key_policy=host_key_policy,
                workers=workers,
            )
        )
        if request.via == "ssh"
        else None
    )
    status = "succeeded"
    try:
        to_build = [
            h
            for h in hosts
            if h.instance_id not in state.entries and h.instance_id not in state.built
        ]
        listener.build_total(len(hosts))
        for iid in list(state.entries) + list(state.built):
            listener.built(iid, "resumed")
        if transport is not None:
            _build_s3(state, to_build, transport, settings, journal, listener, cancel)
        elif ssh is not None:
            _build_ssh(state, to_build, ssh, journal, listener, cancel)
        _check_disk(state)
        _fetch_all(state, transport, ssh, settings, journal, listener, cancel, workers)
        if cancel.is_set():
            status = "cancelled"
    except BaseException:
        journal.end_run(run.id, "error")
        raise
    finally:
        if ssh is not None:
            ssh.close()
    for host in hosts:
        if host.instance_id not in state.entries:
            state.settle(host.instance_id, NOT_RUN, "not started (cancelled)")
    entries = [state.entries[h.instance_id] for h in hosts]
    if status == "succeeded" and any(e.status != OK for e in entries):
        status = "failed"
    write_index(folder, run.id, request.as_dict(), entries)
    journal.end_run(run.id, status)
    return LogReport(run.id, folder, status, entries, time.monotonic() - started)


def _load_prior(state: _State, journal: Journal) -> None:
    """What an earlier attempt of this run finished: fetched hosts and built bundles."""
    for step in journal.steps(state.run.id):
        if step.host not in state.hosts:
            continue
        if step.phase == FETCH and step.status == OK and step.detail.get("fetched"):
            state.entries[step.host] = HostEntry.from_dict(step.detail["entry"])
            state.built.pop(step.host, None)
        elif step.phase == BUILD and step.status == OK and step.host not in state.entries:
            state.built[step.host] = _Built.from_detail(step.detail)


# build -------------------------------------------------------------------------
def _bucket_key(settings: Settings, run_id: str, instance_id: str) -> str:
    return f"{settings.output_prefix}logs/{run_id}/{instance_id}-{uuid.uuid4().hex[:8]}.tar.gz"


def _build_s3(
    state: _State,
    hosts: Sequence[InventoryHost],
    transport: SsmTransport,
    settings: Settings,
    journal: Journal,
    listener: Listener,
    cancel: threading.Event,
) -> None:
    """Each Online host gets its own command and URL; the rest are reported unreachable."""
    assert transport.s3 is not None and settings.output_bucket
    online = [h for h in hosts if h.agent_status == "Online"]
    for host in hosts:
        if host.agent_status != "Online":
            reason = f"SSM agent is {host.agent_status or 'unknown'}"
            journal.record_steps(
                state.run.id, BUILD, [(host.instance_id, UNREACHABLE, {"message": reason})]
            )
            state.settle(host.instance_id, UNREACHABLE, reason)
            listener.built(host.instance_id, UNREACHABLE)
    if not online or cancel.is_set():
        return
    keys: dict[str, str] = {}
    scripts: dict[str, str] = {}
    steps: dict[str, int] = {}
    started: dict[str, float] = {}
    for host in online:
        iid = host.instance_id
        keys[iid] = _bucket_key(settings, state.run.id, iid)
        url = transport.s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": settings.output_bucket, "Key": keys[iid]},
            ExpiresIn=PRESIGN_SECONDS,
        )
        scripts[iid] = ssm_script(state.request.job(iid), str(url))
        steps[iid] = journal.step_started(state.run.id, iid, BUILD, {"key": keys[iid], "via": "s3"})
        started[iid] = time.monotonic()

    def on_done(result: HostResult) -> None:
        iid = result.instance_id
        if iid not in steps:
            return
        seconds = time.monotonic() - started[iid]
        if result.status == "NotStarted":
            journal.step_finished(steps[iid], NOT_RUN, {"message": "cancelled before sending"})
            state.settle(iid, NOT_RUN, "not started (cancelled)")
            listener.built(iid, NOT_RUN)
            return
        try:
            if result.status != "Success":
                raise BadAnswer(
                    f"{result.status}: "
                    + failure_text(result.exit_code, result.stderr, result.stdout)
                )
            answer = parse_answer(result.stdout)
            if not answer.uploaded:
                raise BadAnswer(f"upload to S3 failed: {answer.upload_error or 'no detail'}")
        except BadAnswer as exc:
            status = (
                UNREACHABLE if result.status in ("Undeliverable", "DeliveryTimedOut") else FAILED
            )
            journal.step_finished(steps[iid], status, {"message": str(exc), "key": keys[iid]})
            state.settle(iid, status, str(exc), seconds=seconds)
            listener.built(iid, status)
            return
        built = _Built(answer, keys[iid], seconds)
        journal.step_finished(steps[iid], OK, built.detail())
        with state.lock:
            state.built[iid] = built
        listener.built(iid, OK)

    run_over_ssm(
        transport,
        scripts,
        {h.instance_id: h.name for h in online},
        on_done=on_done,
        cancel=cancel,
    )


def _build_ssh(
    state: _State,
    hosts: Sequence[InventoryHost],
    ssh: SshTransport,
    journal: Journal,
    listener: Listener,
    cancel: threading.Event,
) -> None:
    source = host_source().encode("utf-8")
    by_id = {h.instance_id: h for h in hosts}

    def work(target: SshTarget) -> None:
        iid = target.instance_id
        if cancel.is_set():
            return
        step = journal.step_started(
            state.run.id, iid, BUILD, {"via": "ssh", "endpoint": target.label}
        )
        started = time.monotonic()
        try:
            result = ssh.run_command(
                target, ssh_command(state.request.job(iid), target.user), stdin=source, timeout=1800
            )
            if not result.ok:
                raise BadAnswer(
                    failure_text(
                        result.exit_code,
                        result.stderr.decode("utf-8", "replace"),
                        result.stdout.decode("utf-8", "replace"),
                    )
                )
            answer = parse_answer(result.stdout.decode("utf-8", "replace"))
            if not answer.path:
                raise BadAnswer("the builder named no bundle path")
        except (BadAnswer, SshUnreachable) as exc:
            status = UNREACHABLE if isinstance(exc, SshUnreachable) else FAILED
            journal.step_finished(step, status, {"message": str(exc)})
            state.settle(iid, status, str(exc), seconds=time.monotonic() - started)
            listener.built(iid, status)
            return
        built = _Built(answer, "", time.monotonic() - started)
        journal.step_finished(step, OK, built.detail())
        with state.lock:
            state.built[iid] = built
        listener.built(iid, OK)

    targets: list[SshTarget] = []
    for host in by_id.values():
        try:
            targets.append(SshTarget.from_host(host))
        except BadInput as exc:  # no ops:ssh tag and no private IP: nowhere to go
            journal.record_steps(state.run.id, BUILD, [(host.instance_id, UNREACHABLE, {})])
            state.settle(host.instance_id, UNREACHABLE, str(exc))
            listener.built(host.instance_id, UNREACHABLE)
    ssh.map(targets, work)


# fetch -------------------------------------------------------------------------
def _check_disk(state: _State) -> None:
    """Bundles plus what they unpack to must fit on the control machine's disk."""
    need = sum(b.answer.size + b.answer.content_bytes for b in state.built.values())
    free = shutil.disk_usage(state.folder).free
    if need and free < need:
        raise NotEnoughDisk(
            f"the bundles need {need / 1024**2:.1f} MB at {state.folder}, {free / 1024**2:.1f} MB "
            f"is free; make room, then `ops logs collect --resume {state.run.id}` (nothing "
            "will be built again)"
        )


def _fetch_all(
    state: _State,
    transport: SsmTransport | None,
    ssh: SshTransport | None,
    settings: Settings,
    journal: Journal,
    listener: Listener,
    cancel: threading.Event,
    workers: int,
) -> None:
    pending = sorted(state.built.items())
    listener.fetch_total(sum(b.answer.size for _i, b in pending))
    if not pending:
        return
    bundles = state.folder / BUNDLES
    bundles.mkdir(parents=True, exist_ok=True)

    def fetch_one(iid: str, built: _Built) -> None:
        if cancel.is_set():
            return
        host = state.hosts[iid]
        step = journal.step_started(state.run.id, iid, FETCH, {"sha256": built.answer.sha256})
        local = bundles / f"{iid}.tar.gz"
        started = time.monotonic()
        try:
            _download_verified(iid, built, local, transport, ssh, host, settings, listener)
            manifest = unpack(local, state.folder / iid)
        except (BundleError, SshUnreachable, OSError) as exc:
            journal.step_finished(step, FAILED, {"message": str(exc), "fetched": False})
            state.settle(iid, FAILED, str(exc), seconds=built.seconds + time.monotonic() - started)
            listener.fetched(iid, FAILED)
            return
        finally:
            with contextlib.suppress(OSError):
                local.unlink()
        entry = state.settle(
            iid,
            OK,
            "",
            files=len(manifest.get("files", [])),
            bytes=sum(int(f.get("size", 0)) for f in manifest.get("files", [])),
            seconds=built.seconds + time.monotonic() - started,
            bundle_sha256=built.answer.sha256,
            bundle_size=built.answer.size,
            manifest=manifest,
        )
        journal.step_finished(
            step, OK, {"fetched": True, "sha256": built.answer.sha256, "entry": entry.as_dict()}
        )
        listener.fetched(iid, OK)
        _remove_remote(iid, built, transport, ssh, host, settings)

    with cf.ThreadPoolExecutor(
        max_workers=max(1, min(workers, 4)), thread_name_prefix="ops-fetch"
    ) as pool:
        for future in [pool.submit(fetch_one, iid, built) for iid, built in pending]:
            future.result()
    with contextlib.suppress(OSError):
        bundles.rmdir()


def _download_verified(
    iid: str,
    built: _Built,
    local: Path,
    transport: SsmTransport | None,
    ssh: SshTransport | None,
    host: InventoryHost,
    settings: Settings,
    listener: Listener,
) -> None:
    """Download; a sha256 that differs from the host's answer is fetched once more."""
    got = ""
    for _attempt in range(FETCH_ATTEMPTS):
        if transport is not None:
            assert transport.s3 is not None
            transport.s3.download_file(
                settings.output_bucket, built.key, str(local), Callback=listener.advance
            )
        else:
            assert ssh is not None
            ssh.get_file(
                SshTarget.from_host(host), built.answer.path, local, _Deltas(listener.advance)
            )
        got = sha256_file(local)
        if got == built.answer.sha256:
            return
    raise BundleError(
        f"bundle sha256 {got[:12]}... differs from the host's {built.answer.sha256[:12]}... "
        f"after {FETCH_ATTEMPTS} downloads"
    )


class _Deltas:
    """SFTP reports bytes so far; the progress bar wants bytes since the last call."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        self.advance = advance
        self.seen = 0

    def __call__(self, done: int, _total: int) -> None:
        self.advance(done - self.seen)
        self.seen = done


def _remove_remote(
    iid: str,
    built: _Built,
    transport: SsmTransport | None,
    ssh: SshTransport | None,
    host: InventoryHost,
    settings: Settings,
) -> None:
    """The verified copy is home: the one in S3 or on the host may hold secrets, so it goes."""
    import shlex

    with contextlib.suppress(Exception):
        if transport is not None and transport.s3 is not None and built.key:
            transport.s3.delete_object(Bucket=settings.output_bucket, Key=built.key)
        elif ssh is not None and built.answer.path:
            ssh.run_command(
                SshTarget.from_host(host), f"rm -f -- {shlex.quote(built.answer.path)}", timeout=60
            )
