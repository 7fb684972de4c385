"""`ops inventory list` and `eol` end to end against the shared sandbox.

Platforms come from the Run Command emulator's DescribeInstanceInformation;
the Docker column comes from one `docker --version` fan-out run in the
containers. The Amazon Linux hosts are STAND-INS that report themselves as
Amazon Linux 2 and 2023 (their os-release and SSM record), not Amazon Linux.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from tests.support.sandbox import SandboxSession

AL2_END = date(2026, 6, 30)
PLATFORM_KEYS = {"debian": "debian-12", "al2": "al2", "al2023": "al2023"}


def listing(sandbox: SandboxSession, *extra: str) -> list[dict[str, Any]]:
    done = sandbox.ops("--output", "json", "inventory", "list", *extra, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def test_list_shows_every_container_host_with_platform_docker_and_eos(
    sandbox: SandboxSession,
) -> None:
    rows = {r["instance_id"]: r for r in listing(sandbox, "--refresh")}
    hosts: list[dict[str, Any]] = sandbox.status["hosts"]  # type: ignore[assignment]
    assert {h["instance_id"] for h in hosts} <= set(rows)
    past = datetime.now(UTC).date() > AL2_END
    for h in hosts:
        row = rows[h["instance_id"]]
        assert row["platform"] == PLATFORM_KEYS[h["platform"]], row
        assert row["agent_status"] == "Online"
        # reached where its ops:ssh tag says, not at its private IP
        assert (row["ssh_host"], row["ssh_port"]) == ("127.0.0.1", h["ssh_port"]), row
        # The images carry no Docker engine: every host answered, and answered `none`.
        assert row["docker_version"] == "none", row
        if h["platform"] == "al2":
            assert row["end_of_support"] == AL2_END.isoformat()
            assert row["past_end_of_support"] is past
        else:
            assert row["past_end_of_support"] is False

    # Within the TTL the Docker column comes from the environment's cache: no new fan-out.
    cache = sandbox.state_dir / "inventory" / "sandbox.docker.json"
    stamp = cache.stat().st_mtime_ns
    again = {r["instance_id"]: r["docker_version"] for r in listing(sandbox)}
    assert cache.stat().st_mtime_ns == stamp
    assert {again[h["instance_id"]] for h in hosts} == {"none"}

    table = sandbox.ops("inventory", "list", timeout=300)
    assert table.returncode == 0
    al2 = next(h for h in hosts if h["platform"] == "al2")
    line = next(ln for ln in table.stdout.splitlines() if al2["instance_id"] in ln)
    assert ("PAST 2026-06-30" in line) is past


def test_eol_counts_per_role_and_env(sandbox: SandboxSession) -> None:
    done = sandbox.ops("--output", "json", "inventory", "eol", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    hosts: list[dict[str, Any]] = sandbox.status["hosts"]  # type: ignore[assignment]
    al2 = [h for h in hosts if h["platform"] == "al2"]
    if datetime.now(UTC).date() <= AL2_END:
        assert summary["total"] == 0
        return
    assert summary["total"] == len(al2)
    assert summary["by_platform"] == {"al2": len(al2)}
    assert summary["by_env"] == {"sandbox": len(al2)}
    roles: dict[str, int] = {}
    for h in al2:
        roles[h["role"]] = roles.get(h["role"], 0) + 1
    assert summary["by_role"] == roles
