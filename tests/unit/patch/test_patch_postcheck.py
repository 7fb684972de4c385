"""The patch run's postcheck script against a stand-in `docker` on PATH: it waits for the
daemon and for each container that ran before the reboot, fails at once on one that
cannot come back, and names each failure. The real path (a sandbox host with Docker
rebooted by a patch run) is tests/integration/patch/test_patch_docker_containers.py."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from ops.cli.patch_run import Lines
from ops.transports.ssm import FAILED, HostResult
from ops.workflows.patch_run import (
    Clients,
    HostEntry,
    PatchRun,
    Timing,
    parse_containers,
    postcheck_script,
    sections,
)

# A docker that answers `info` only after `ready` calls, and `container inspect NAME`
# from state/NAME: one line per call, the last one repeated.
FAKE_DOCKER = r"""#!/bin/sh
state="$FAKE_STATE"
case "$1" in
info)
    n=$(cat "$state/info-calls" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" >"$state/info-calls"
    [ "$n" -gt "$(cat "$state/ready")" ] ;;
container)
    for last; do :; done
    [ -f "$state/$last" ] || exit 1
    n=$(cat "$state/$last.calls" 2>/dev/null || echo 0); n=$((n + 1))
    echo "$n" >"$state/$last.calls"
    line=$(sed -n "${n}p" "$state/$last"); [ -n "$line" ] || line=$(tail -n 1 "$state/$last")
    echo "$line" ;;
*) exit 2 ;;
esac
"""


def run_postcheck(
    tmp_path: Path, containers: dict[str, list[str]], wait: int = 3, ready: int = 0
) -> tuple[int, dict[str, list[str]], str, Path]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    (state / "ready").write_text(f"{ready}\n")
    for name, lines in containers.items():
        if lines:
            (state / name).write_text("".join(f"{line}\n" for line in lines))
    script = postcheck_script(True, list(containers), None, wait)
    done = subprocess.run(
        ["sh"],
        input=script,
        text=True,
        capture_output=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_STATE": str(state)},
        timeout=30,
        check=False,
    )
    return done.returncode, sections(done.stdout), done.stderr, state


def test_waits_for_the_daemon_and_for_a_container_to_come_back_healthy(tmp_path: Path) -> None:
    code, found, err, state = run_postcheck(
        tmp_path,
        {"web": ["restarting|always|none", "running|always|starting", "running|always|healthy"]},
        wait=10,
        ready=2,
    )
    assert (code, err) == (0, "")
    assert found["docker"] == ["active"]
    assert parse_containers(found["containers"]) == [
        {"name": "web", "state": "running", "health": "healthy"}
    ]
    assert (state / "info-calls").read_text().strip() == "3"  # asked until it answered
    assert (state / "web.calls").read_text().strip() == "3"


def test_a_container_without_a_health_check_passes_once_running(tmp_path: Path) -> None:
    code, found, err, _state = run_postcheck(tmp_path, {"worker": ["running|unless-stopped|none"]})
    assert (code, err) == (0, "")
    assert found["containers"] == ["worker|running|none"]


def test_a_stopped_container_that_will_not_restart_fails_at_once_and_is_named(
    tmp_path: Path,
) -> None:
    code, found, err, state = run_postcheck(
        tmp_path,
        {"oneshot": ["exited|no|healthy"], "gone": [], "web": ["running|always|healthy"]},
        wait=60,
    )
    assert code == 1
    assert err.splitlines() == [
        "container oneshot is not running again (exited, restart policy no)",
        "container gone is gone",
    ]
    assert parse_containers(found["containers"]) == [
        {"name": "oneshot", "state": "exited", "health": "-"},
        {"name": "gone", "state": "missing", "health": "none"},
        {"name": "web", "state": "running", "health": "healthy"},
    ]
    assert (state / "oneshot.calls").read_text().strip() == "1"  # not waited for


def test_an_unhealthy_container_fails_at_the_deadline(tmp_path: Path) -> None:
    # whole seconds: 3 leave at least 2 between the first ask and the deadline, even when loaded
    code, found, err, state = run_postcheck(tmp_path, {"web": ["running|always|unhealthy"]}, wait=3)
    assert code == 1
    assert err.strip() == "container web runs again but is not healthy (unhealthy)"
    assert found["containers"] == ["web|running|unhealthy"]
    assert int((state / "web.calls").read_text()) >= 2  # asked again until the deadline


def test_a_daemon_that_never_answers_fails_and_checks_no_container(tmp_path: Path) -> None:
    code, found, err, state = run_postcheck(tmp_path, {"web": ["running|always|none"]}, 1, 10**6)
    assert code == 1
    assert err.strip() == "docker is not running"
    assert found["docker"] == ["inactive"]
    assert "containers" not in found or found["containers"] == []
    assert not (state / "web.calls").exists()


def test_parse_containers_skips_what_does_not_parse() -> None:
    assert parse_containers(["web|running|healthy", "garbage", "|x|y", "db|exited"]) == [
        {"name": "web", "state": "running", "health": "healthy"},
        {"name": "db", "state": "exited", "health": "none"},
    ]


class _Ssm:
    """Answers every command with the given stdout (a precheck's sections)."""

    def __init__(self, stdout: str) -> None:
        self.stdout = stdout

    def get_waiter(self, _name: str) -> Any:
        class Done:
            def wait(self, **_kwargs: Any) -> None:
                return None

        return Done()

    def send_command(self, **_kwargs: Any) -> dict[str, Any]:
        return {"Command": {"CommandId": "c-1"}}

    def get_command_invocation(self, **_kwargs: Any) -> dict[str, Any]:
        return {"Status": "Success", "StandardOutputContent": self.stdout}


def test_precheck_keeps_only_what_can_be_a_container_name() -> None:
    out = "@@boot\nb1\n@@docker\nactive\n@@containers\nweb\n$(reboot)\nweb; rm -rf /\ndb.1_x-y\n"
    run = PatchRun(Clients(_Ssm(out), None, None), {}, Timing(poll=1.0))
    found = run.precheck(HostEntry("i-1", "web-1", "debian", []), {})
    assert found["docker"] is True
    assert found["containers"] == ["web", "db.1_x-y"]


def test_a_failed_step_line_shows_what_the_host_said_not_the_agent_note(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stderr = (
        "ops patch: postcheck: Failed: container oneshot is not running again (exited)\n"
        "container gone is gone\n\nfailed to run commands: exit status 1"
    )
    Lines().step("postcheck", HostResult("i-1", "worker-1", FAILED, stderr=stderr))
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        "worker-1: postcheck Failed: ops patch: postcheck: Failed: container oneshot is not "
        "running again (exited); container gone is gone"
    )
