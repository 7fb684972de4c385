"""A restarted container host is back only once it has booted: its boot id changed.

A fake `docker` stands in for the engine: `exec` answers the boot id a state
file holds, `restart` leaves the old id in place for a few reads (a restarted
container keeps /run until its entrypoint writes the new id), as happened on
a busy machine when the emulator ran the agent's second run too early.
"""

from __future__ import annotations

import stat
from pathlib import Path

from ops.sandbox.emulator.executors import ContainerExecutor

FAKE_DOCKER = """#!/bin/sh
state={state}
case "$1" in
  restart)
    [ -e "$state/restart-fails" ] && exit 1
    echo 3 >"$state/stale-reads"; echo restarted >>"$state/log"; exit 0 ;;
  exec)
    echo exec >>"$state/log"
    [ -e "$state/no-boot-id" ] && exit 0
    n=$(cat "$state/stale-reads" 2>/dev/null || echo 0)
    if [ "$n" -gt 0 ]; then echo $((n - 1)) >"$state/stale-reads"; cat "$state/old"
    elif grep -q restarted "$state/log"; then cat "$state/new"
    else cat "$state/old"; fi
    exit 0 ;;
esac
exit 2
"""


def _executor(tmp_path: Path) -> tuple[ContainerExecutor, Path]:
    state = tmp_path / "state"
    state.mkdir()
    (state / "old").write_text("11111111-aaaa\n")
    (state / "new").write_text("22222222-bbbb\n")
    (state / "log").write_text("")
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER.format(state=state))
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    return ContainerExecutor(str(docker)), state


def _log(state: Path) -> list[str]:
    return (state / "log").read_text().split()


def test_the_agent_is_back_only_once_the_boot_id_changed(tmp_path: Path) -> None:
    executor, state = _executor(tmp_path)
    assert executor.restart("host", ready_timeout=10)
    log = _log(state)
    # one read before, the restart, three reads of the stale id, then the new one
    assert log == ["exec", "restarted", "exec", "exec", "exec", "exec"]


def test_a_host_without_a_boot_id_is_back_once_exec_works(tmp_path: Path) -> None:
    executor, state = _executor(tmp_path)
    (state / "no-boot-id").touch()
    assert executor.restart("host", ready_timeout=10)
    assert _log(state) == ["exec", "restarted", "exec"]


def test_a_boot_id_that_never_changes_is_not_back(tmp_path: Path) -> None:
    executor, state = _executor(tmp_path)
    (state / "new").write_text("11111111-aaaa\n")
    assert not executor.restart("host", ready_timeout=0.5)


def test_a_failed_restart_is_not_back(tmp_path: Path) -> None:
    executor, state = _executor(tmp_path)
    (state / "restart-fails").touch()
    assert not executor.restart("host", ready_timeout=10)
    assert _log(state) == ["exec"]
