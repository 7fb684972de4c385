"""`ops patch plan` on the session sandbox: real apt on Debian, the stand-ins' shims on AL."""

from __future__ import annotations

import json
from typing import Any

from tests.support.sandbox import SandboxSession

APPROVED = {"fleetops-tool", "fleetops-libsec", "fleetops-kernel"}


def _plan(sandbox: SandboxSession, *args: str) -> dict[str, Any]:
    done = sandbox.ops("--output", "json", "patch", "plan", *args, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    assert isinstance(data, dict)
    return data


def _send_commands(sandbox: SandboxSession) -> int:
    calls = sandbox.ops("--output", "json", "sandbox", "calls", "--operation", "SendCommand")
    assert calls.returncode == 0, calls.stderr
    return len(json.loads(calls.stdout))


def test_plan_shows_every_container_hosts_pending_updates(sandbox: SandboxSession) -> None:
    hosts = {h["instance_id"]: h for h in sandbox.status["hosts"]}  # type: ignore[union-attr]
    data = _plan(sandbox)
    assert set(data) == {"hosts", "waves"}
    planned = {h["instance_id"]: h for h in data["hosts"]}
    assert set(planned) == set(hosts)
    for instance_id, host in planned.items():
        expected_platform = {"debian": "debian-12", "al2": "al2", "al2023": "al2023"}
        assert host["platform"] == expected_platform[hosts[instance_id]["platform"]]
        pending = {p["name"]: p for p in host["pending"]}
        assert set(pending) == APPROVED, host
        for entry in pending.values():
            assert (entry["current"], entry["new"]) == ("1.0-1", "1.1-1")
            assert entry["security"] is (entry["name"] == "fleetops-libsec")
        assert [p["name"] for p in host["held"]] == ["docker-fleetops-plugin"]  # docker*
        assert [p["name"] for p in host["not_approved"]] == ["fleetops-fresh"]  # published today
        assert host["reboot_required"] is True  # fleetops-kernel writes /run/reboot-required
    waves = data["waves"]
    assert len(waves[0]) == 1  # the canary
    assert sorted(i for wave in waves for i in wave) == sorted(hosts)


def test_security_only_approves_the_security_fix_alone(sandbox: SandboxSession) -> None:
    data = _plan(sandbox, "--security-only", "--canary", "0", "--wave", "1")
    for host in data["hosts"]:
        assert [p["name"] for p in host["pending"]] == ["fleetops-libsec"]
        assert host["reboot_required"] is False
    assert all(len(wave) == 1 for wave in data["waves"])


def test_bad_input_exits_2_before_any_host_is_asked(sandbox: SandboxSession) -> None:
    before = _send_commands(sandbox)
    too_big = sandbox.ops("patch", "plan", "--canary", "99")
    assert too_big.returncode == 2
    assert "--canary 99 is larger than the" in too_big.stderr
    zero = sandbox.ops("patch", "plan", "--wave", "0")
    assert zero.returncode == 2 and "--wave must be at least 1" in zero.stderr
    assert _send_commands(sandbox) == before


def test_table_names_the_canary_and_the_waves(sandbox: SandboxSession) -> None:
    done = sandbox.ops("patch", "plan", "--max-unavailable", "1")
    assert done.returncode == 0, done.stderr
    names = sorted(h["name"] for h in sandbox.status["hosts"])  # type: ignore[union-attr]
    waves = [line for line in done.stdout.splitlines() if line.startswith(("canary:", "wave "))]
    # all in one zone and one at a time: the canary and then one host a wave
    assert waves[0].startswith("canary: ") and len(waves) == len(names)
    assert sorted(line.split(": ", 1)[1] for line in waves) == names
