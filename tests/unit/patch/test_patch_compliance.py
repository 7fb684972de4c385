"""`ops patch compliance` from recorded probe output and a real journal (no hosts)."""

from __future__ import annotations

import json
from pathlib import Path

from ops.fleet.discovery import Host
from ops.journal.store import Journal
from ops.transports.ssm import FAILED, SUCCESS, HostResult
from ops.workflows.patch import PlanOptions, build_plan
from ops.workflows.patch_compliance import LastPatch, assess, last_patches
from tests.unit.patch.test_patch_plan import AL2, DEBIAN, NOW, SANDBOX_PATCH

DAY = 86_400.0


def _plan() -> object:
    hosts = [Host("i-1", "web-1"), Host("i-2", "web-2"), Host("i-3", "web-3")]
    results = {
        "i-1": HostResult("i-1", "web-1", SUCCESS, stdout=DEBIAN),
        "i-2": HostResult("i-2", "web-2", SUCCESS, stdout="@@os debian 12\n@@apt-upgradable\n"),
        "i-3": HostResult("i-3", "web-3", FAILED, stderr="no route to host"),
    }
    return build_plan(hosts, results, {}, SANDBOX_PATCH, PlanOptions(canary=0), NOW)


def test_missing_updates_security_first_and_the_fleet_share() -> None:
    now = NOW.timestamp()
    last = {"i-2": LastPatch("run-2", now - 3 * DAY - 60)}
    result = assess(_plan(), last, now)  # type: ignore[arg-type]
    data = result.as_dict()
    by_name = {h["name"]: h for h in data["hosts"]}
    web1 = by_name["web-1"]
    assert web1["state"] == "non-compliant"
    # security first; held (docker*) and not yet approved (fleetops-fresh) are not missing
    assert [u["name"] for u in web1["missing"]] == [
        "fleetops-libsec",
        "fleetops-kernel",
        "fleetops-tool",
        "libfoo",
    ]
    assert web1["missing"][0]["security"] and web1["missing_security"] == 1
    assert [u["name"] for u in web1["held"]] == ["docker-fleetops-plugin"]
    assert [u["name"] for u in web1["not_approved"]] == ["fleetops-fresh"]
    assert web1["days_since_patch"] is None and web1["last_patch_run"] is None
    assert by_name["web-2"]["state"] == "compliant" and by_name["web-2"]["days_since_patch"] == 3
    assert by_name["web-2"]["last_patch_run"] == "run-2"
    assert by_name["web-3"]["state"] == "unknown" and "no route" in by_name["web-3"]["error"]
    assert data["fleet"] == {
        "hosts": 3,
        "compliant": 1,
        "non-compliant": 1,
        "unknown": 1,
        "compliant_share": round(1 / 3, 4),
    }
    json.dumps(data)  # JSON as everywhere


def test_security_only_leaves_other_updates_out_of_missing() -> None:
    hosts = [Host("i-1", "web-1")]
    results = {"i-1": HostResult("i-1", "web-1", SUCCESS, stdout=AL2)}
    planned = build_plan(
        hosts, results, {}, SANDBOX_PATCH, PlanOptions(canary=0, security_only=True), NOW
    )
    [host] = assess(planned, {}, NOW.timestamp()).hosts
    assert [u.name for u in host.missing] == ["fleetops-libsec"]


def test_the_last_patch_is_the_newest_register_success_in_this_environment(
    tmp_path: Path,
) -> None:
    with Journal(tmp_path / "journal.sqlite3") as journal:
        old = journal.begin_run("patch", {}, "sandbox")
        journal.record_steps(old.id, "register", [("i-1", SUCCESS, {}), ("i-2", SUCCESS, {})])
        journal.end_run(old.id, "succeeded")
        new = journal.begin_run("patch", {}, "sandbox")
        journal.record_steps(new.id, "apply", [("i-1", SUCCESS, {})])
        journal.record_steps(new.id, "register", [("i-1", SUCCESS, {}), ("i-2", FAILED, {})])
        journal.end_run(new.id, "failed")
        elsewhere = journal.begin_run("patch", {}, "production")
        journal.record_steps(elsewhere.id, "register", [("i-3", SUCCESS, {})])
        other_kind = journal.begin_run("deploy", {}, "sandbox")
        journal.record_steps(other_kind.id, "register", [("i-3", SUCCESS, {})])
        found = last_patches(journal, "sandbox", ["i-1", "i-2", "i-3", "i-4"])
    assert found["i-1"].run_id == new.id
    assert found["i-2"].run_id == old.id  # its newer run failed to put it back
    assert "i-3" not in found and "i-4" not in found
