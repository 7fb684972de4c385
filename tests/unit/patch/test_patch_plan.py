"""Probe parsing, approval policy and the plan, on recorded probe output (no hosts)."""

from __future__ import annotations

import datetime as dt

import pytest

from ops.config import PatchSettings
from ops.engine.budget import Amount
from ops.errors import BadInput
from ops.fleet.discovery import Host
from ops.transports.ssm import HostResult
from ops.workflows.patch import PlanOptions, build_plan, classify, needs_reboot, parse_options
from ops.workflows.patch_probe import Update, parse_probe

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)

DEBIAN = """@@os debian 12
@@apt-upgradable
Listing...
docker-fleetops-plugin/bookworm-fleetops 1.1-1 all [upgradable from: 1.0-1]
fleetops-fresh/bookworm-fleetops-updates 1.1-1 all [upgradable from: 1.0-1]
fleetops-kernel/bookworm-fleetops 1.1-1 all [upgradable from: 1.0-1]
fleetops-libsec/bookworm-fleetops-security 1.1-1 all [upgradable from: 1.0-1]
fleetops-tool/bookworm-fleetops 1.1-1 all [upgradable from: 1.0-1]
libfoo/stable-updates,stable 2.0 amd64 [upgradable from: 1.9]
not a line apt would print
@@apt-releases
bookworm-fleetops-security|Fri, 30 Oct 2026 12:09:05 UTC
bookworm-fleetops-updates|Sun, 29 Nov 2026 11:09:05 UTC
bookworm-fleetops|Fri, 30 Oct 2026 12:09:05 UTC
oldstable|Sat, 11 Jul 2026 10:16:37 UTC
broken|not a date
@@reboot
no
"""

AL2 = """@@os amzn 2
@@check-update

docker-fleetops-plugin.x86_64           1.1-1                           amzn2-core
fleetops-fresh.x86_64                   1.1-1                           amzn2-core
fleetops-kernel.x86_64                  1.1-1                           amzn2-core
fleetops-libsec.x86_64                  1.1-1                           amzn2-core
fleetops-tool.x86_64                    1.1-1                           amzn2-core
bash.x86_64                             4.2.46-35.amzn2                 amzn2-core
@@updateinfo
ALAS2-2026-1030-fleetops-tool        bugfix          fleetops-tool-1.1-1.x86_64
ALAS2-2026-1030-fleetops-libsec      important/Sec.  fleetops-libsec-1.1-1.x86_64
ALAS2-2026-1129-fleetops-fresh       bugfix          fleetops-fresh-1.1-1.x86_64
ALAS2-2026-1030-docker-fleetops-plugin bugfix          docker-fleetops-plugin-1.1-1.x86_64
ALAS2-2026-1030-fleetops-kernel      bugfix          fleetops-kernel-1.1-1.x86_64
updateinfo list done
@@updateinfo-info
  Update ID : ALAS2-2026-1030-fleetops-tool
     Issued : 2026-10-30 12:09:05
  Update ID : ALAS2-2026-1030-fleetops-libsec
     Issued : 2026-10-30 12:09:05
  Update ID : ALAS2-2026-1129-fleetops-fresh
     Issued : 2026-11-29 11:09:05
  Update ID : ALAS2-2026-1030-docker-fleetops-plugin
     Issued : 2026-10-30 12:09:05
  Update ID : ALAS2-2026-1030-fleetops-kernel
     Issued : 2026-10-30
@@rpm
docker-fleetops-plugin-1.0-1.x86_64
fleetops-fresh-1.0-1.x86_64
fleetops-kernel-1.0-1.x86_64
fleetops-libsec-1.0-1.x86_64
fleetops-tool-1.0-1.x86_64
bash-4.2.46-34.amzn2.x86_64
@@reboot
yes
"""

SANDBOX_PATCH = PatchSettings(exclude=["docker*", "containerd*"], approve_after_days=7)


def by_name(updates: list[Update]) -> dict[str, Update]:
    return {u.name: u for u in updates}


def test_apt_output_gives_versions_security_and_suite_dates() -> None:
    host = parse_probe(DEBIAN)
    assert host.platform == "debian-12" and not host.reboot_pending
    updates = by_name(host.updates)
    assert set(updates) == {
        "docker-fleetops-plugin", "fleetops-fresh", "fleetops-kernel", "fleetops-libsec",
        "fleetops-tool", "libfoo",
    }  # fmt: skip
    assert updates["fleetops-libsec"] == Update(
        "fleetops-libsec",
        "1.0-1",
        "1.1-1",
        True,
        dt.datetime(2026, 10, 30, 12, 9, 5, tzinfo=dt.UTC),
    )
    assert not updates["fleetops-tool"].security
    assert updates["fleetops-fresh"].published == dt.datetime(2026, 11, 29, 11, 9, 5, tzinfo=dt.UTC)
    assert updates["libfoo"].published is None  # its suites have no Release in the lists


def test_yum_output_gives_versions_security_and_advisory_dates() -> None:
    host = parse_probe(AL2)
    assert host.platform == "al2" and host.reboot_pending
    updates = by_name(host.updates)
    assert updates["fleetops-libsec"].security and not updates["fleetops-tool"].security
    assert updates["fleetops-tool"].current == "1.0-1" and updates["fleetops-tool"].new == "1.1-1"
    assert updates["fleetops-kernel"].published == dt.datetime(2026, 10, 30, tzinfo=dt.UTC)
    assert updates["bash"] == Update("bash", "4.2.46-34.amzn2", "4.2.46-35.amzn2", False, None)


def test_dnf_platform_label_and_unsupported_hosts() -> None:
    assert parse_probe(AL2.replace("@@os amzn 2", "@@os amzn 2023")).platform == "al2023"
    odd = parse_probe("@@os freebsd 14\n@@unsupported\n")
    assert odd.error and "freebsd" in odd.error
    assert parse_probe("").error


def test_classify_holds_excluded_waits_for_fresh_and_approves_the_rest() -> None:
    approved, held, waiting = classify(
        parse_probe(DEBIAN).updates, SANDBOX_PATCH, security_only=False, now=NOW
    )
    assert [u.name for u in held] == ["docker-fleetops-plugin"]
    assert [(u.name, why.split(",")[0]) for u, why in waiting] == [
        ("fleetops-fresh", "published 2026-11-29")
    ]
    assert [u.name for u in approved] == [
        "fleetops-kernel", "fleetops-libsec", "fleetops-tool", "libfoo",
    ]  # fmt: skip


def test_security_only_and_undated_hold() -> None:
    settings = PatchSettings(approve_after_days=0, undated="hold")
    approved, _held, waiting = classify(
        parse_probe(AL2).updates, settings, security_only=True, now=NOW
    )
    assert [u.name for u in approved] == ["fleetops-libsec"]
    reasons = dict((u.name, why) for u, why in waiting)
    assert "security" in reasons["fleetops-tool"]
    approved, _held, waiting = classify(
        parse_probe(AL2).updates, settings, security_only=False, now=NOW
    )
    assert "undated" in dict((u.name, why) for u, why in waiting)["bash"]
    assert "bash" not in [u.name for u in approved]


def test_reboot_prediction() -> None:
    kernel = Update("fleetops-kernel", "1", "2", False)
    tool = Update("fleetops-tool", "1", "2", False)
    assert needs_reboot([kernel], False)
    assert needs_reboot([Update("linux-image-amd64", "1", "2", True)], False)
    assert needs_reboot([Update("glibc", "1", "2", True)], False)
    assert not needs_reboot([tool], False)
    assert needs_reboot([], True)


def host(instance_id: str, name: str, role: str) -> Host:
    return Host(instance_id, name, {"Name": name, "Role": role}, "Online", "Debian GNU/Linux", "12")


def test_build_plan_shape_errors_and_waves() -> None:
    hosts = [
        host("i-1", "web-1", "web"),
        host("i-2", "web-2", "web"),
        host("i-3", "worker-1", "worker"),
    ]
    results = {
        "i-1": HostResult("i-1", "web-1", "Success", 0, DEBIAN),
        "i-2": HostResult("i-2", "web-2", "Success", 0, AL2),
        "i-3": HostResult("i-3", "worker-1", "Failed", 1, "", "boom"),
    }
    options = PlanOptions(canary=1, max_unavailable=Amount(1, False))
    plan = build_plan(hosts, results, {"i-1": "a", "i-2": "b"}, SANDBOX_PATCH, options, NOW)
    data = plan.as_dict()
    assert set(data) == {"hosts", "waves"}
    web1 = data["hosts"][0]
    assert {"instance_id", "name", "platform", "pending", "reboot_required"} <= set(web1)
    assert web1["platform"] == "debian-12" and web1["reboot_required"] is True  # fleetops-kernel
    assert all(set(p) == {"name", "current", "new", "security"} for p in web1["pending"])
    assert [p["name"] for p in web1["held"]] == ["docker-fleetops-plugin"]
    assert [p["name"] for p in web1["not_approved"]] == ["fleetops-fresh"]
    worker = data["hosts"][2]
    assert worker["error"].startswith("probe Failed") and worker["pending"] == []
    assert plan.waves == [["i-1"], ["i-2"]]  # one web at a time; the failed host is left out


def test_parse_options_refuses_bad_input_before_any_host() -> None:
    patch = PatchSettings()
    with pytest.raises(BadInput, match="--wave must be at least 1"):
        parse_options(security_only=False, canary=1, wave="0", max_unavailable=None, settings=patch)
    with pytest.raises(BadInput, match="--max-unavailable"):
        parse_options(
            security_only=False, canary=1, wave=None, max_unavailable="0%", settings=patch
        )
    with pytest.raises(BadInput, match="--canary must be 0 or more"):
        parse_options(
            security_only=False, canary=-1, wave=None, max_unavailable=None, settings=patch
        )
    options = parse_options(
        security_only=True, canary=2, wave="30%", max_unavailable=None, settings=patch
    )
    assert options.wave == Amount(30, True) and options.max_unavailable == Amount(25, True)
