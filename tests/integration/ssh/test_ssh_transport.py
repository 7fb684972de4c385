"""The paramiko transport against the session sandbox's container hosts (real sshd).

Host keys are checked against the known_hosts `ops` manages (the sandbox put
its verified keys there at `up`); a test that needs another file writes its
own under tmp_path and never touches the shared one.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import paramiko
import pytest

from ops.config import known_hosts_path
from ops.sandbox.hosts import free_port
from ops.transports.ssh import SshOptions, SshTarget, SshTransport, SshUnreachable
from tests.support.sandbox import SandboxSession


def _targets(sandbox: SandboxSession) -> list[SshTarget]:
    hosts: list[dict[str, Any]] = sandbox.status["hosts"]  # type: ignore[assignment]
    return [SshTarget(h["instance_id"], "127.0.0.1", int(h["ssh_port"]), "root") for h in hosts]


def _options(sandbox: SandboxSession, **changes: Any) -> SshOptions:
    base: dict[str, Any] = {
        "key_file": Path(sandbox.env["OPS_SSH_KEY"]),
        "known_hosts": known_hosts_path(),
        "connect_timeout": 10.0,
    }
    base.update(changes)
    return SshOptions(**base)


def test_commands_reuse_one_connection_per_host(sandbox: SandboxSession) -> None:
    targets = _targets(sandbox)
    with SshTransport(_options(sandbox)) as ssh:
        first = ssh.run_many(targets, "hostname; echo err >&2; exit 3")
        second = ssh.run_many(targets, "cat", stdin=b"from stdin \xc3\xbc\n")
        assert ssh.connects == len(targets)
    for target in targets:
        one, two = first[target.instance_id], second[target.instance_id]
        assert not isinstance(one, BaseException) and not isinstance(two, BaseException)
        assert one.exit_code == 3 and not one.ok
        assert one.stdout.strip() and one.stderr == b"err\n"
        assert two.ok and two.stdout == b"from stdin \xc3\xbc\n"


def test_put_and_get_a_file_with_its_mode(sandbox: SandboxSession, tmp_path: Path) -> None:
    target = _targets(sandbox)[0]
    payload = os.urandom(300_000)
    remote = f"/tmp/ops-ssh-test-{uuid.uuid4().hex}"
    seen: list[int] = []
    with SshTransport(_options(sandbox)) as ssh:
        try:
            assert ssh.put_file(target, payload, remote, mode=0o600) == len(payload)
            mode = ssh.run_command(target, f"stat -c %a {remote}").stdout.strip()
            size = ssh.get_file(
                target, remote, tmp_path / "back", lambda done, _t: seen.append(done)
            )
        finally:
            ssh.run_command(target, f"rm -f {remote}")
    assert mode == b"600"
    assert size == len(payload)
    assert (
        hashlib.sha256((tmp_path / "back").read_bytes()).digest()
        == hashlib.sha256(payload).digest()
    )
    assert seen and seen[-1] == len(payload)


def test_strict_refuses_a_host_missing_from_known_hosts(
    sandbox: SandboxSession, tmp_path: Path
) -> None:
    target = _targets(sandbox)[0]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with (
        SshTransport(_options(sandbox, known_hosts=empty)) as ssh,
        pytest.raises(SshUnreachable, match="unknown to ops' known_hosts"),
    ):
        ssh.run_command(target, "true")


def test_accept_new_records_the_key_then_strict_accepts_it(
    sandbox: SandboxSession, tmp_path: Path
) -> None:
    target = _targets(sandbox)[0]
    path = tmp_path / "known_hosts"
    with SshTransport(_options(sandbox, known_hosts=path, host_key_policy="accept-new")) as ssh:
        assert ssh.run_command(target, "true").ok
    line = path.read_text().strip()
    assert line.startswith(f"[127.0.0.1]:{target.port} ")
    # the key recorded is the one ops' own known_hosts has for this host
    assert line.split(" ", 1)[1] in known_hosts_path().read_text()
    with SshTransport(_options(sandbox, known_hosts=path)) as ssh:
        assert ssh.run_command(target, "true").ok


def test_known_hosts_is_read_once_for_all_the_hosts_of_a_transport(
    sandbox: SandboxSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets = _targets(sandbox)
    reads: list[str] = []
    load = paramiko.HostKeys.load

    def counted(self: paramiko.HostKeys, filename: str) -> None:
        reads.append(filename)
        load(self, filename)

    monkeypatch.setattr(paramiko.HostKeys, "load", counted)
    with SshTransport(_options(sandbox)) as ssh:
        done = ssh.run_many(targets, "hostname")
        assert ssh.connects == len(targets)
    assert all(not isinstance(r, BaseException) and r.ok for r in done.values())
    assert reads == [str(known_hosts_path())]


def test_accept_new_checks_a_key_it_recorded_when_the_connection_is_opened_again(
    sandbox: SandboxSession, tmp_path: Path
) -> None:
    target = _targets(sandbox)[0]
    path = tmp_path / "known_hosts"
    with SshTransport(_options(sandbox, known_hosts=path, host_key_policy="accept-new")) as ssh:
        assert ssh.run_command(target, "true").ok
        ssh.client(target).close()  # the next command opens a new connection
        assert ssh.run_command(target, "true").ok
        assert ssh.connects == 2
    assert path.read_text().count("\n") == 1  # recorded once, then checked


def test_a_changed_host_key_is_refused_even_with_accept_new(
    sandbox: SandboxSession, tmp_path: Path
) -> None:
    target = _targets(sandbox)[0]
    fake = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(32)).decode()
    path = tmp_path / "known_hosts"
    path.write_text(f"[127.0.0.1]:{target.port} ssh-ed25519 {fake}\n")
    for policy in ("strict", "accept-new"):
        options = _options(sandbox, known_hosts=path, host_key_policy=policy)
        with SshTransport(options) as ssh, pytest.raises(SshUnreachable, match="does not match"):
            ssh.run_command(target, "true")
    assert path.read_text().count("\n") == 1  # nothing was added


def test_a_key_the_host_does_not_know_is_an_authentication_failure(
    sandbox: SandboxSession, tmp_path: Path
) -> None:
    key = tmp_path / "other_key"
    paramiko.ECDSAKey.generate().write_private_key_file(str(key))
    with (
        SshTransport(_options(sandbox, key_file=key)) as ssh,
        pytest.raises(SshUnreachable, match="authentication failed"),
    ):
        ssh.run_command(_targets(sandbox)[0], "true")


def test_a_host_that_does_not_answer_is_reported_not_raised_in_map(
    sandbox: SandboxSession,
) -> None:
    good = _targets(sandbox)[0]
    dead = SshTarget("i-0deadbeef0000000", "127.0.0.1", free_port(), "root")
    with SshTransport(_options(sandbox, connect_timeout=3.0)) as ssh:
        results = ssh.run_many([good, dead], "echo ok")
    assert not isinstance(results[good.instance_id], BaseException)
    failure = results[dead.instance_id]
    assert isinstance(failure, SshUnreachable)
    assert dead.instance_id in str(failure)


def test_a_jump_host_carries_every_connection(sandbox: SandboxSession) -> None:
    """Host 0 is the bastion: the others are reached through direct-tcpip channels on it."""
    jump, *behind = _targets(sandbox)
    options = _options(sandbox, jump_host=f"root@127.0.0.1:{jump.port}")
    with SshTransport(options) as ssh:
        results = ssh.run_many(behind, "hostname")
        # the bastion's sshd saw each hop as a forwarded connection from itself
        assert ssh.connects == len(behind) + 1
    names = {r.stdout.strip() for r in results.values() if not isinstance(r, BaseException)}
    assert len(names) == len(behind)


def test_a_jump_host_that_fails_is_named(sandbox: SandboxSession) -> None:
    target = _targets(sandbox)[0]
    options = _options(sandbox, jump_host=f"root@127.0.0.1:{free_port()}", connect_timeout=3.0)
    with SshTransport(options) as ssh, pytest.raises(SshUnreachable, match="jump host"):
        ssh.run_command(target, "true")


def test_many_threads_share_one_connection_per_host(sandbox: SandboxSession) -> None:
    target = _targets(sandbox)[0]
    with SshTransport(_options(sandbox)) as ssh, cf.ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda i: ssh.run_command(target, f"echo {i}").stdout, range(16)))
        assert ssh.connects == 1
    assert sorted(int(o) for o in outs) == list(range(16))
