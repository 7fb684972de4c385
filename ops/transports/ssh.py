"""paramiko as a transport: run a command, put a file, get a file, on many hosts at once.

The contract follows pyinfra's connectors (run_shell_command, put_file,
get_file, one connector a file): what is done on a host is the workflow's
business, how the host is reached is this module's. One connection per host
is opened on first use and reused for the whole run; a thread pool spreads
the hosts. Host keys are checked against the known_hosts file `ops` manages
(ops.config.known_hosts_path, where `ops sandbox up` also records its
hosts): `strict` refuses an unknown key, `accept-new` records it on first
contact, and a changed key is refused under both, as OpenSSH does. The file
is read once a transport, on its first connection, and each connection is
handed only its own host's entries: read on every connection, a run over N
hosts parsed N times N keys. A jump
host from the settings (`ssh_jump_host`, user@host[:port]) is reached once
and every host behind it through a direct-tcpip channel, the way OpenSSH's
ProxyJump does it, with the jump host's own key checked the same way.

A run may warm the transport first (`warm`): connections to the hosts it
expects, opened on their own threads while it is still finding out which
hosts it has. A warm connection is a login and nothing more: it checks the
host key strictly whatever the run's policy (it never records a key), it is
used only by a host the run then names with the same address, port and
user, and `keep` closes the rest unused.
"""

from __future__ import annotations

import concurrent.futures as cf
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ops.errors import BadInput, OpsError
from ops.transports.paramiko_import import paramiko

HOST_KEY_POLICIES = ("strict", "accept-new")
_JUMP_HOST = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?$"
)
_CHUNK = 65536
SESSIONS_PER_HOST = 4

T = TypeVar("T")


class SshUnreachable(OpsError):
    """The host could not be reached, logged in to, or its key did not check out."""


@dataclass(frozen=True)
class SshTarget:
    """Where one host's sshd answers; `instance_id` names it in results."""

    instance_id: str
    host: str
    port: int = 22
    user: str = "root"

    @classmethod
    def from_host(cls, host: Any, default_user: str = "root") -> SshTarget:
        """From an InventoryHost (its `ops:ssh` endpoint, else the private IP on port 22)."""
        address = getattr(host, "address", "") or getattr(host, "private_ip", "")
        if not address:
            raise BadInput(f"{host.instance_id}: no SSH address (no ops:ssh tag, no private IP)")
        return cls(
            instance_id=str(host.instance_id),
            host=str(address),
            port=int(getattr(host, "ssh_port", 22) or 22),
            user=str(getattr(host, "ssh_user", None) or default_user),
        )

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class JumpHost:
    user: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_user: str) -> JumpHost:
        match = _JUMP_HOST.match(text.strip())
        if not match or not 0 < int(match.group("port") or 22) < 65536:
            raise BadInput(f"jump host {text!r} is not user@host[:port]; fix ssh_jump_host")
        return cls(
            match.group("user") or default_user, match.group("host"), int(match.group("port") or 22)
        )


@dataclass(frozen=True)
class SshOptions:
    key_file: Path | None = None
    known_hosts: Path | None = None
    host_key_policy: str = "strict"
    jump_host: str | None = None
    connect_timeout: float = 10.0
    workers: int = 16
    jump_user: str = "root"  # when ssh_jump_host names no user


@dataclass
class CommandResult:
    instance_id: str
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    duration_s: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Record an unseen host's key in ops' known_hosts (OpenSSH's accept-new).

    A host whose recorded key differs never reaches this policy: paramiko
    refuses it with BadHostKeyException first. The key joins the transport's
    copy of the file too, so a connection opened again later in the run checks it.
    """

    def __init__(self, path: Path | None, lock: threading.Lock, known: paramiko.HostKeys) -> None:
        self.path = path
        self.lock = lock
        self.known = known

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        with self.lock:
            self.known.add(hostname, key.get_name(), key)
        if self.path is None:
            return
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with self.path.open("a") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            self.path.chmod(0o600)


class SshTransport:
    """One run's SSH connections; thread-safe, close() (or `with`) ends them all."""

    def __init__(self, options: SshOptions) -> None:
        if options.host_key_policy not in HOST_KEY_POLICIES:
            raise BadInput(
                f"host-key policy {options.host_key_policy!r} is not one of "
                f"{', '.join(HOST_KEY_POLICIES)}"
            )
        self.options = options
        self._jump = (
            JumpHost.parse(options.jump_host, options.jump_user) if options.jump_host else None
        )
        self._pkey = _load_key(options.key_file) if options.key_file else None
        self._lock = threading.Lock()
        self._known_lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._sessions: dict[str, threading.BoundedSemaphore] = {}
        self._clients: dict[str, paramiko.SSHClient] = {}
        self._jump_client: paramiko.SSHClient | None = None
        self._known: paramiko.HostKeys | None = None
        self._warming: dict[str, tuple[SshTarget, cf.Future[paramiko.SSHClient]]] = {}
        self._closed = False
        self.connects = 0  # how many SSH connections this run opened (tests and benchmarks)
        self.warm_used = 0  # how many of them were opened by `warm` and then used

    # connections -------------------------------------------------------
    def __enter__(self) -> SshTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients = list(self._clients.values())
            self._clients.clear()
            warming = [future for _target, future in self._warming.values()]
            self._warming.clear()
            jump, self._jump_client = self._jump_client, None
        for future in warming:
            future.add_done_callback(_close_warm)
        for client in clients:
            client.close()
        if jump is not None:
            jump.close()

    def _host_keys(self) -> paramiko.HostKeys:
        """ops' known_hosts as this transport read it on its first connection."""
        with self._known_lock:
            if self._known is None:
                path = self.options.known_hosts
                found = path is not None and path.is_file()
                self._known = paramiko.HostKeys(str(path) if found else None)
            return self._known

    def _new_client(self, host: str, port: int, *, strict: bool = False) -> paramiko.SSHClient:
        """A client that knows the recorded keys of `host:port` alone, under the name
        paramiko looks them up by (`host` on port 22, `[host]:port` elsewhere);
        `strict` refuses an unknown key whatever the transport's policy."""
        client = paramiko.SSHClient()
        known = self._host_keys()
        name = host if port == 22 else f"[{host}]:{port}"
        with self._known_lock:
            recorded = dict(known.lookup(name) or {})
        keys = client.get_host_keys()
        for key_type, key in recorded.items():
            keys.add(name, key_type, key)
        if self.options.host_key_policy == "accept-new" and not strict:
            policy: paramiko.MissingHostKeyPolicy = _AcceptNew(
                self.options.known_hosts, self._known_lock, known
            )
        else:
            policy = paramiko.RejectPolicy()
        client.set_missing_host_key_policy(policy)
        return client

    def _login(
        self, client: paramiko.SSHClient, host: str, port: int, user: str, sock: Any = None
    ) -> None:
        timeout = self.options.connect_timeout
        client.connect(
            host,
            port=port,
            username=user,
            pkey=self._pkey,
            key_filename=None,
            allow_agent=self._pkey is None,
            look_for_keys=self._pkey is None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            sock=sock,
        )
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(30)
        with self._lock:
            self.connects += 1

    def _jump_transport(self) -> paramiko.Transport:
        """The jump host's connection, opened once for the run (its key checked too)."""
        assert self._jump is not None
        jump = self._jump
        with self._host_lock("\0jump"):
            client = self._jump_client
            transport = client.get_transport() if client is not None else None
            if transport is not None and transport.is_active():
                return transport
            client = self._new_client(jump.host, jump.port)
            try:
                self._login(client, jump.host, jump.port, jump.user)
            except Exception as exc:
                client.close()
                raise SshUnreachable(
                    f"jump host {jump.user}@{jump.host}:{jump.port}: {_describe(exc)}"
                ) from exc
            self._jump_client = client
            transport = client.get_transport()
            assert transport is not None
            return transport

    def _through_jump(self, target: SshTarget) -> paramiko.Channel:
        try:
            return self._jump_transport().open_channel(
                "direct-tcpip",
                (target.host, target.port),
                ("127.0.0.1", 0),
                timeout=self.options.connect_timeout,
            )
        except (paramiko.SSHException, OSError) as exc:
            raise SshUnreachable(
                f"{target.instance_id} ({target.label}) through the jump host: {_describe(exc)}"
            ) from exc

    def _session_slot(self, target: SshTarget) -> threading.BoundedSemaphore:
        """sshd allows MaxSessions (10 by default) channels per connection; a closed channel
        frees its slot a moment later, so threads sharing a host stay well below that."""
        with self._lock:
            return self._sessions.setdefault(
                target.instance_id, threading.BoundedSemaphore(SESSIONS_PER_HOST)
            )

    def _host_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._host_locks.setdefault(key, threading.Lock())

    def warm(self, targets: Iterable[SshTarget]) -> int:
        """Start connecting to `targets`, each on a daemon thread (a host that never answers
        cannot hold the process at exit); returns how many were started."""
        started = 0
        for target in targets:
            with self._lock:
                iid = target.instance_id
                if self._closed or iid in self._warming or iid in self._clients:
                    continue
                future: cf.Future[paramiko.SSHClient] = cf.Future()
                self._warming[iid] = (target, future)
            thread = threading.Thread(
                target=self._warm_one, args=(target, future), name="ops-ssh-warm", daemon=True
            )
            thread.start()
            started += 1
        return started

    def _warm_one(self, target: SshTarget, future: cf.Future[paramiko.SSHClient]) -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(self._connect(target, strict=True))
        except BaseException as exc:
            future.set_exception(exc)

    def keep(self, targets: Iterable[SshTarget]) -> None:
        """Close the warm connections of hosts not among `targets`, or reached elsewhere now."""
        wanted = {t.instance_id: t for t in targets}
        with self._lock:
            dropped = [iid for iid, (t, _f) in self._warming.items() if wanted.get(iid) != t]
            futures = [self._warming.pop(iid)[1] for iid in dropped]
        for future in futures:
            future.add_done_callback(_close_warm)

    def _warmed(self, target: SshTarget) -> paramiko.SSHClient | None:
        """The host's warm connection if one was started for this very route, else None.

        A warm attempt the host did not answer (refused, timed out) is the
        host's answer for this run: trying again would make an unreachable
        host cost two connect timeouts. One refused for its key or login is
        tried again under the run's own policy."""
        with self._lock:
            warm = self._warming.pop(target.instance_id, None)
        if warm is None:
            return None
        route, future = warm
        if route != target:
            future.add_done_callback(_close_warm)
            return None
        try:
            client = future.result()
        except OSError as exc:
            raise _unreachable(target, exc) from exc
        except Exception:
            return None
        if not _alive(client):
            client.close()
            return None
        with self._lock:
            self.warm_used += 1
        return client

    def client(self, target: SshTarget) -> paramiko.SSHClient:
        """The host's connection, opened on first use and reused for the run."""
        with self._host_lock(target.instance_id):
            warm = self._warmed(target)
            if warm is not None:
                with self._lock:
                    self._clients[target.instance_id] = warm
                return warm
            with self._lock:
                client = self._clients.get(target.instance_id)
            if client is not None:
                if _alive(client):
                    return client
                client.close()
            try:
                client = self._connect(target)
            except SshUnreachable:  # the jump host's, which names the jump host
                raise
            except Exception as exc:
                raise _unreachable(target, exc) from exc
            with self._lock:
                self._clients[target.instance_id] = client
            return client

    def _connect(self, target: SshTarget, *, strict: bool = False) -> paramiko.SSHClient:
        """A new logged-in connection to `target` (through the jump host when there is one);
        the failure as raised, with the half-made client closed."""
        client = self._new_client(target.host, target.port, strict=strict)
        try:
            sock = self._through_jump(target) if self._jump is not None else None
            self._login(client, target.host, target.port, target.user, sock)
        except BaseException:
            client.close()
            raise
        return client

    # the contract ------------------------------------------------------
    def run_command(
        self,
        target: SshTarget,
        command: str,
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run shell text on the host; `stdin` (a script, a secret) goes in on the channel,
        never on a command line. The caller quotes every variable part of `command`."""
        with self._session_slot(target):
            return self._run(target, command, stdin, timeout)

    def _run(
        self, target: SshTarget, command: str, stdin: bytes | None, timeout: float | None
    ) -> CommandResult:
        client = self.client(target)
        transport = client.get_transport()
        assert transport is not None
        started = time.monotonic()
        try:
            channel = transport.open_session(timeout=self.options.connect_timeout)
        except (paramiko.SSHException, OSError) as exc:
            raise SshUnreachable(f"{target.instance_id}: cannot open a session: {exc}") from exc
        with channel:
            channel.settimeout(timeout)
            channel.exec_command(command)
            errors: list[bytes] = []
            feeder = None
            if stdin:
                feeder = threading.Thread(target=_feed, args=(channel, stdin), daemon=True)
                feeder.start()
            else:
                _feed(channel, None)  # nothing to send: end our side now, without a thread
            reader = threading.Thread(target=_drain_stderr, args=(channel, errors), daemon=True)
            reader.start()
            out: list[bytes] = []
            timed_out = False
            try:
                while True:
                    data = channel.recv(_CHUNK)
                    if not data:
                        break
                    out.append(data)
                code: int | None = channel.recv_exit_status()
            except TimeoutError:
                timed_out, code = True, None
                channel.close()
            reader.join(timeout=5)
            if feeder is not None:
                feeder.join(timeout=5)
        return CommandResult(
            target.instance_id,
            code,
            b"".join(out),
            b"".join(errors),
            round(time.monotonic() - started, 3),
            timed_out,
        )

    def put_file(
        self, target: SshTarget, data: bytes | Path, remote: str, mode: int = 0o600
    ) -> int:
        """Write `data` (bytes or a local file) to `remote`, created with `mode` before any
        byte lands, so a secret is never readable by others even for a moment."""
        payload = data.read_bytes() if isinstance(data, Path) else data
        with (
            self._session_slot(target),
            self.client(target).open_sftp() as sftp,
            sftp.open(remote, "wb") as fh,
        ):
            sftp.chmod(remote, mode)
            fh.set_pipelined(True)
            fh.write(payload)
        return len(payload)

    def get_file(
        self,
        target: SshTarget,
        remote: str,
        local: Path,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Copy `remote` to `local` over SFTP (prefetched); returns the bytes copied."""
        local.parent.mkdir(parents=True, exist_ok=True)
        with self._session_slot(target), self.client(target).open_sftp() as sftp:
            sftp.get(remote, str(local), callback=on_progress)
        return local.stat().st_size

    def map(
        self,
        targets: Iterable[SshTarget],
        work: Callable[[SshTarget], T],
        on_done: Callable[[SshTarget, T | BaseException], None] | None = None,
    ) -> dict[str, T | BaseException]:
        """`work` on every target from a pool of `workers` threads; a host's exception is its
        result, so one bad host never stops the others."""
        results: dict[str, T | BaseException] = {}
        targets = list(targets)
        if not targets:
            return results
        with cf.ThreadPoolExecutor(
            max_workers=max(1, min(self.options.workers, len(targets))),
            thread_name_prefix="ops-ssh",
        ) as pool:
            futures = {pool.submit(work, t): t for t in targets}
            for future in cf.as_completed(futures):
                target = futures[future]
                try:
                    value: T | BaseException = future.result()
                except Exception as exc:
                    value = exc
                results[target.instance_id] = value
                if on_done is not None:
                    on_done(target, value)
        return results

    def run_many(
        self,
        targets: Iterable[SshTarget],
        command: str,
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        on_done: Callable[[SshTarget, CommandResult | BaseException], None] | None = None,
    ) -> dict[str, CommandResult | BaseException]:
        """One command on many hosts (what `ops run --via ssh` needs)."""
        return self.map(
            targets, lambda t: self.run_command(t, command, stdin=stdin, timeout=timeout), on_done
        )


def options_from_settings(
    settings: Any, *, known_hosts: Path, host_key_policy: str = "strict", workers: int = 16
) -> SshOptions:
    """SshOptions from ops settings (`ssh_key`, `ssh_jump_host`)."""
    key = getattr(settings, "ssh_key", None)
    return SshOptions(
        key_file=Path(key).expanduser() if key else None,
        known_hosts=known_hosts,
        host_key_policy=host_key_policy,
        jump_host=getattr(settings, "ssh_jump_host", None),
        workers=workers,
        jump_user=str(getattr(settings, "ssh_user", None) or "root"),
    )


def _alive(client: paramiko.SSHClient) -> bool:
    transport = client.get_transport()
    return transport is not None and transport.is_active()


def _unreachable(target: SshTarget, exc: BaseException) -> SshUnreachable:
    return SshUnreachable(f"{target.instance_id} ({target.label}): {_describe(exc)}")


def _close_warm(future: cf.Future[paramiko.SSHClient]) -> None:
    if future.exception() is None:
        future.result().close()


def _load_key(path: Path) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(str(path))
    except (OSError, ValueError, paramiko.SSHException) as exc:
        raise BadInput(f"ssh_key {path}: cannot read the private key: {exc}") from None


def _feed(channel: paramiko.Channel, data: bytes | None) -> None:
    try:
        if data:
            channel.sendall(data)
        channel.shutdown_write()
    except (OSError, paramiko.SSHException):
        pass  # the command ended without reading all its input; its exit status says why


def _drain_stderr(channel: paramiko.Channel, sink: list[bytes]) -> None:
    try:
        while True:
            data = channel.recv_stderr(_CHUNK)
            if not data:
                return
            sink.append(data)
    except (OSError, paramiko.SSHException):
        return


def _describe(exc: BaseException) -> str:
    if isinstance(exc, paramiko.BadHostKeyException):
        return "host key does not match the one in ops' known_hosts (refused)"
    if isinstance(exc, paramiko.AuthenticationException):
        return "authentication failed (check ssh_key and ssh_user)"
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return "host key unknown to ops' known_hosts (strict); use accept-new to record it"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out connecting"
    return str(exc) or type(exc).__name__
