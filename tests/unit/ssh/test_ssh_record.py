"""The host-side record of `ops run --via ssh`, run by the shells a host has (dash, bash).

No SSH here: the shell text the transport would send runs in a local shell with
HOME in a temporary folder, so the claim, the refusal of a second start, the
states a resume reads and the records an older `ops` left are checked on the
shells themselves. tests/integration/run_ssh runs the same text through sshd.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ops.transports import ssh_run

SHELLS = [s for s in ("dash", "bash") if shutil.which(s)]
MARKER = "ssh-0123456789abcdef"


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "HOME": str(tmp_path)}

    def run(text: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([request.param, "-c", text], env=env, capture_output=True,
                              timeout=30, check=False)  # fmt: skip

    return run


def _runs(home: Path) -> Path:
    return home / ".ops" / "runs"


def test_the_record_claims_its_marker_once_and_keeps_the_answer(shell, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert shell(ssh_run.probe(MARKER)).returncode == 1
    assert shell(ssh_run.state(MARKER)).stdout == b"absent\n"

    done = shell(ssh_run.wrapped("printf 'a\\nb'; echo oops >&2; exit 3", MARKER, 30))
    assert (done.returncode, done.stdout, done.stderr) == (3, b"a\nb", b"oops\n")

    again = shell(ssh_run.wrapped("touch ran-twice", MARKER, 30))
    assert again.returncode == ssh_run.ALREADY_STARTED and b"started before" in again.stderr
    assert not (tmp_path / "ran-twice").exists()

    assert shell(ssh_run.probe(MARKER)).returncode == 0
    assert shell(ssh_run.state(MARKER)).stdout == b"rc 3\n"
    assert shell(ssh_run.read(MARKER, "out")).stdout == b"a\nb"
    assert shell(ssh_run.read(MARKER, "err")).stdout == b"oops\n"
    names = sorted(p.name for p in _runs(tmp_path).iterdir())
    assert names == [f"{MARKER}.{s}" for s in ("err", "job", "out", "pid", "rc")]


def test_a_record_whose_process_is_gone_without_an_exit_code_is_lost(shell, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runs = _runs(tmp_path)
    runs.mkdir(parents=True)
    gone = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, check=True).stdout
    (runs / f"{MARKER}.pid").write_bytes(gone)
    assert shell(ssh_run.state(MARKER)).stdout == b"lost\n"
    (runs / f"{MARKER}.pid").write_bytes(f"{os.getpid()}\n".encode())  # alive: this test
    assert shell(ssh_run.state(MARKER)).stdout == b"running\n"


def test_a_folder_left_by_an_older_ops_is_read_and_never_run_again(shell, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = _runs(tmp_path) / MARKER
    folder.mkdir(parents=True)
    for name, text in (("pid", "1\n"), ("out", "from before\n"), ("err", ""), ("rc", "0\n")):
        (folder / name).write_text(text)
    assert shell(ssh_run.probe(MARKER)).returncode == 0
    assert shell(ssh_run.state(MARKER)).stdout == b"rc 0\n"
    assert shell(ssh_run.read(MARKER, "out")).stdout == b"from before\n"
    again = shell(ssh_run.wrapped("touch ran-twice", MARKER, 30))
    assert again.returncode == ssh_run.ALREADY_STARTED
    assert not (tmp_path / "ran-twice").exists()


def test_a_cancel_stops_the_command_and_its_record_says_so(shell, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "HOME": str(tmp_path)}
    started = tmp_path / "started"
    text = ssh_run.wrapped(f"touch {shlex.quote(str(started))}; exec sleep 60", MARKER, 120)
    with subprocess.Popen(["sh", "-c", text], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as running:  # fmt: skip
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # polls for the command's first act, bounded
        assert shell(ssh_run.state(MARKER)).stdout == b"running\n"
        assert shell(ssh_run.cancel(MARKER)).returncode == 0
        # `timeout` passes the TERM on and exits as its command did: killed by it
        assert running.wait(timeout=30) == 128 + signal.SIGTERM
        assert shell(ssh_run.state(MARKER)).stdout == f"rc {128 + signal.SIGTERM}\n".encode()
