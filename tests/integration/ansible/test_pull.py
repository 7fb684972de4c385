"""Pull over SSM on the shared sandbox, compared with push over SSH.

Pull is real on the Debian hosts: the Run Command emulator runs the pull
script in the container, curl fetches the bundle from moto's S3 through a
presigned URL on 127.0.0.1, apt installs ansible-core from Debian's packages,
and ansible-playbook runs on the host itself. The Amazon Linux hosts are
STAND-INS (Debian with shim package tools that only log): they show which
install command each branch runs, and cannot run Ansible afterwards.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_helpers import PLAYBOOKS, REPO

from tests.support.sandbox import SandboxSession

SMALL = str(REPO / "playbooks" / "examples" / "small.yml")


def host(sandbox: SandboxSession, name: str) -> dict[str, Any]:
    hosts: list[dict[str, Any]] = sandbox.status["hosts"]  # type: ignore[assignment]
    return next(h for h in hosts if h["name"] == name)


def names_on(sandbox: SandboxSession, *platforms: str) -> list[str]:
    hosts: list[dict[str, Any]] = sandbox.status["hosts"]  # type: ignore[assignment]
    return sorted(h["name"] for h in hosts if h["platform"] in platforms)


def in_host(sandbox: SandboxSession, name: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", host(sandbox, name)["container"], "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )


def playbook(
    sandbox: SandboxSession, path: str, via: str, names: list[str], *extra: str
) -> tuple[int, dict[str, Any]]:
    args = ["--yes", "--output", "json", "playbook", path, "--via", via, *extra]
    for name in names:
        args += ["--name", name]
    done = sandbox.ops(*args, timeout=600)
    assert done.stdout.strip(), done.stderr[-2000:]
    return done.returncode, json.loads(done.stdout)


def counts(report: dict[str, Any]) -> dict[str, tuple[str, int, int, int, int]]:
    return {
        h["name"]: (h["status"], h["ok"], h["changed"], h["failed"], h["skipped"])
        for h in report["hosts"]
    }


@pytest.fixture(scope="module")
def pulled_and_pushed(sandbox_session: SandboxSession) -> dict[str, Any]:
    """On two fresh Debian hosts: check mode over pull, then push to one and pull to the other."""
    sandbox = sandbox_session
    pushed_name, pulled_name = names_on(sandbox, "debian")[:2]
    for name in (pushed_name, pulled_name):  # fresh, whatever ran on the shared hosts before
        in_host(sandbox, name, "rm -rf /etc/fleetops-example; dpkg --purge tree >/dev/null 2>&1")
    # as the image ships, whatever an earlier test on these hosts installed: no Ansible, so
    # the pull has to bring its own
    in_host(sandbox, pulled_name, "dpkg --purge ansible-core ansible >/dev/null 2>&1")
    before = in_host(sandbox, pulled_name, "command -v ansible-playbook")
    code_check, check = playbook(sandbox, SMALL, "ssm", [pulled_name], "--check")
    after_check = in_host(
        sandbox,
        pulled_name,
        "test -e /etc/fleetops-example; echo $?; dpkg -s tree >/dev/null 2>&1; echo $?",
    )
    code_push, push = playbook(sandbox, SMALL, "ssh", [pushed_name])
    code_pull, pull = playbook(sandbox, SMALL, "ssm", [pulled_name])
    _, push_again = playbook(sandbox, SMALL, "ssh", [pushed_name])
    _, pull_again = playbook(sandbox, SMALL, "ssm", [pulled_name])
    return {
        "names": (pushed_name, pulled_name),
        "ansible_before": before.returncode,
        "check": (code_check, check),
        "after_check": after_check.stdout.split(),
        "push": (code_push, push),
        "pull": (code_pull, pull),
        "push_again": push_again,
        "pull_again": pull_again,
    }


def test_check_mode_over_pull_changes_nothing(pulled_and_pushed: dict[str, Any]) -> None:
    _, pulled_name = pulled_and_pushed["names"]
    assert pulled_and_pushed["ansible_before"] != 0, "the Debian image must not carry Ansible"
    code, check = pulled_and_pushed["check"]
    assert code == 0, check
    [recap] = check["hosts"]
    assert (recap["name"], recap["status"]) == (pulled_name, "ok")
    assert recap["changed"] >= 1  # it would change things...
    assert pulled_and_pushed["after_check"] == ["1", "1"]  # ...and changed none of them


def test_push_and_pull_give_the_same_result_and_recap(
    sandbox: SandboxSession, pulled_and_pushed: dict[str, Any]
) -> None:
    pushed_name, pulled_name = pulled_and_pushed["names"]
    code_push, push = pulled_and_pushed["push"]
    code_pull, pull = pulled_and_pushed["pull"]
    assert (code_push, code_pull) == (0, 0), (push, pull)
    assert counts(push)[pushed_name] == counts(pull)[pulled_name] == ("ok", 3, 3, 0, 0)
    assert push["tasks"] == pull["tasks"] == 3
    for name in (pushed_name, pulled_name):
        identity = in_host(sandbox, name, "cat /etc/fleetops-example/identity").stdout
        assert f"instance_id={host(sandbox, name)['instance_id']}\n" in identity
        assert f"name={name}\n" in identity
        assert in_host(sandbox, name, "dpkg -s tree").returncode == 0
        mode = in_host(sandbox, name, "stat -c %a /etc/fleetops-example").stdout.strip()
        assert mode == "755"
    # A second run changes nothing, either way.
    again_push = counts(pulled_and_pushed["push_again"])[pushed_name]
    again_pull = counts(pulled_and_pushed["pull_again"])[pulled_name]
    assert again_push == again_pull == ("ok", 3, 0, 0, 0)


def test_failing_task_is_reported_per_host_over_pull(
    sandbox: SandboxSession, pulled_and_pushed: dict[str, Any]
) -> None:
    names = list(pulled_and_pushed["names"])
    code, report = playbook(
        sandbox,
        str(PLAYBOOKS / "fail_one.yml"),
        "ssm",
        names,
        "-e",
        f"fail_name={names[1]}",
    )
    assert code == 1, report
    by_name = {h["name"]: h for h in report["hosts"]}
    assert (by_name[names[0]]["status"], by_name[names[0]]["failed"]) == ("ok", 0)
    assert (by_name[names[1]]["status"], by_name[names[1]]["failed"]) == ("failed", 1)
    assert "Fail where asked: asked to fail on" in by_name[names[1]]["message"]


def test_extra_vars_never_reach_the_shell(
    sandbox: SandboxSession, pulled_and_pushed: dict[str, Any]
) -> None:
    _, pulled_name = pulled_and_pushed["names"]
    hostile = "x'; touch /tmp/ops-pwned; echo '$(touch /tmp/ops-pwned2)"
    code, report = playbook(
        sandbox, str(PLAYBOOKS / "fail_one.yml"), "ssm", [pulled_name], "-e", f"fail_name={hostile}"
    )
    assert code == 0, report
    assert in_host(sandbox, pulled_name, "ls /tmp/ops-pwned /tmp/ops-pwned2").returncode != 0


def test_amazon_linux_standins_take_their_install_branch(sandbox: SandboxSession) -> None:
    """STAND-INS: the shims log the install command; no real Ansible follows, so the host fails."""
    standins = names_on(sandbox, "al2", "al2023")
    code, report = playbook(sandbox, SMALL, "ssm", standins)
    assert code == 1
    by_name = {h["name"]: h for h in report["hosts"]}
    wanted = {
        "al2": "amazon-linux-extras install -y ansible2",
        "al2023": "dnf install -y ansible-core",
    }
    for name in standins:
        platform = host(sandbox, name)["platform"]
        assert by_name[name]["status"] == "failed"
        assert "ansible-playbook is still missing" in by_name[name]["message"]
        log = in_host(sandbox, name, "cat /var/log/standin-commands.log").stdout
        assert wanted[platform] in log, log


def test_output_past_24000_characters_is_read_from_s3(
    sandbox: SandboxSession, pulled_and_pushed: dict[str, Any], tmp_path: Path
) -> None:
    """220 task lines put the recap past GetCommandInvocation's 24,000 characters."""
    _, pulled_name = pulled_and_pushed["names"]
    tasks = [
        {
            "name": f"Set fact number {i:03d} with a long enough name",
            "ansible.builtin.set_fact": {"n": i},
        }
        for i in range(220)
    ]
    book = tmp_path / "many.yml"
    book.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": tasks}]))
    code, report = playbook(sandbox, str(book), "ssm", [pulled_name])
    assert code == 0, report
    assert counts(report)[pulled_name] == ("ok", 220, 0, 0, 0)
