"""Push over SSH to real container hosts: check mode, a real change, per-host failures."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import uuid
from pathlib import Path

from ansible_helpers import PLAYBOOKS, REPO, docker_exec, inventory_hosts

from ops.config import Settings, known_hosts_path
from ops.fleet.inventory import InventoryHost, write_inventory_dir
from ops.journal.store import Journal
from ops.sandbox.hosts import RunningHost, free_port
from ops.sandbox.keys import ensure_keypair
from ops.transports.ansible import FAILED, OK, UNREACHABLE, PushOptions, TaskEvent, push
from ops.workflows import playbook as wf

SMALL = REPO / "playbooks" / "examples" / "small.yml"


def key_file(key_dir: Path) -> str:
    return str(ensure_keypair(key_dir).private_path)


def test_check_mode_changes_nothing_then_push_applies(
    fleet: tuple[list[RunningHost], Path], tmp_path: Path
) -> None:
    running, key_dir = fleet
    hosts = inventory_hosts(running)
    base = PushOptions(ssh_key=key_file(key_dir), known_hosts=key_dir / "known_hosts")

    events: list[TaskEvent] = []
    checked = push(
        SMALL,
        hosts,
        tmp_path / "check",
        PushOptions(**{**base.__dict__, "check": True}),
        events.append,
    )
    assert [h.status for h in checked.hosts] == [OK] * 3
    assert all(h.changed >= 1 for h in checked.hosts), checked.as_dict()
    assert {e.host for e in events} == {h.instance_id for h in hosts}
    for host in running:
        assert docker_exec(host.container, "test", "-e", "/etc/fleetops-example").returncode == 1
        assert docker_exec(host.container, "dpkg", "-s", "tree").returncode == 1

    applied = push(SMALL, hosts, tmp_path / "apply", base)
    assert [h.status for h in applied.hosts] == [OK] * 3
    assert all(h.changed == 3 for h in applied.hosts), applied.as_dict()
    assert applied.tasks == 3
    for host, inv in zip(running, hosts, strict=True):
        identity = docker_exec(host.container, "cat", "/etc/fleetops-example/identity")
        assert f"instance_id={inv.instance_id}" in identity.stdout
        assert docker_exec(host.container, "dpkg", "-s", "tree").returncode == 0

    again = push(SMALL, hosts, tmp_path / "again", base)
    assert [(h.status, h.changed) for h in again.hosts] == [(OK, 0)] * 3


def test_unreachable_and_failing_hosts_reported_per_host(
    fleet: tuple[list[RunningHost], Path], tmp_path: Path
) -> None:
    running, key_dir = fleet
    hosts = inventory_hosts(running)[:2]
    dead = InventoryHost(
        instance_id="i-00000000000000dea",
        name="dead",
        ssh_host="127.0.0.1",
        ssh_port=free_port(),
        ssh_user="root",
    )
    journal = Journal(tmp_path / "journal.sqlite3")
    settings = Settings(ssh_key=key_file(key_dir))
    request = wf.PlaybookRequest(
        playbook=PLAYBOOKS / "fail_one.yml",
        extravars={"fail_name": hosts[1].name},
        host_key_policy="strict",
    )
    plan = wf.plan(request, [*hosts, dead])
    # The sandbox records verified host keys; the workflow's own file starts from them.
    known_hosts_path().parent.mkdir(parents=True, exist_ok=True)
    known_hosts_path().write_text((key_dir / "known_hosts").read_text())
    report = wf.run(plan, settings, journal)

    by_id = {h.instance_id: h for h in report.hosts}
    assert by_id[hosts[0].instance_id].status == OK
    assert by_id[hosts[1].instance_id].status == FAILED
    assert "asked to fail" in by_id[hosts[1].instance_id].message
    assert by_id[dead.instance_id].status == UNREACHABLE
    assert by_id[dead.instance_id].unreachable == 1
    assert report.exit_code == 1

    steps = journal.steps(report.run_id)
    recaps = {s.host: s.status for s in steps if s.phase == "recap"}
    assert recaps == {
        hosts[0].instance_id: OK,
        hosts[1].instance_id: FAILED,
        dead.instance_id: UNREACHABLE,
    }
    finished = {s.host: s.status for s in steps if s.phase == wf.STEP and s.ended_at}
    assert finished == {
        hosts[0].instance_id: "Success",
        hosts[1].instance_id: "Failed",
        dead.instance_id: "Unreachable",
    }
    task_rows = [s for s in steps if s.phase == "task"]
    assert any(s.detail["task"] == "Fail where asked" and s.status == FAILED for s in task_rows)


def test_unknown_host_key_is_refused_under_strict_policy(
    fleet: tuple[list[RunningHost], Path], tmp_path: Path
) -> None:
    running, key_dir = fleet
    hosts = inventory_hosts(running)[:1]
    empty = tmp_path / "known_hosts"
    result = push(
        PLAYBOOKS / "slow.yml",
        hosts,
        tmp_path / "strict",
        PushOptions(ssh_key=key_file(key_dir), known_hosts=empty, limit=None),
    )
    assert result.hosts[0].status == UNREACHABLE
    assert "strict checking" in result.hosts[0].message


def test_cancel_stops_the_run(fleet: tuple[list[RunningHost], Path], tmp_path: Path) -> None:
    running, key_dir = fleet
    hosts = inventory_hosts(running)
    cancel = threading.Event()

    def on_event(event: TaskEvent) -> None:
        if event.task == "Reach the host":
            cancel.set()

    result = push(
        PLAYBOOKS / "slow.yml",
        hosts,
        tmp_path / "cancel",
        PushOptions(ssh_key=key_file(key_dir), known_hosts=key_dir / "known_hosts"),
        on_event,
        cancel,
    )
    assert result.cancelled
    assert result.elapsed < 50


def test_exported_inventory_loads_in_ansible_inventory(
    fleet: tuple[list[RunningHost], Path], tmp_path: Path
) -> None:
    running, _ = fleet
    hosts = inventory_hosts(running)
    static = tmp_path / "static"
    (static / "group_vars").mkdir(parents=True)
    (static / "group_vars" / "role_web.yml").write_text("web_greeting: hello\n")
    (static / "hosts").write_text("[bastion]\nbastion1 ansible_host=127.0.0.1\n")
    folder = write_inventory_dir(tmp_path / "inv", hosts, static)
    out = subprocess.run(
        ["ansible-inventory", "-i", str(folder), "--list"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    data = json.loads(out.stdout)
    assert set(data["role_web"]["hosts"]) == {h.instance_id for h in hosts}
    assert set(data["platform_debian_12"]["hosts"]) == {h.instance_id for h in hosts}
    assert data["bastion"]["hosts"] == ["bastion1"]
    hostvars = data["_meta"]["hostvars"][hosts[0].instance_id]
    assert hostvars["ansible_port"] == running[0].ssh_port
    assert hostvars["web_greeting"] == "hello"


def test_a_playbook_run_left_part_way_is_resumed_on_the_hosts_it_had_not_finished(
    fleet: tuple[list[RunningHost], Path], tmp_path: Path
) -> None:
    """The first process finished wave 1, had wave 2 in flight and never reached wave 3
    when it died; the resume runs waves 2 and 3 and leaves wave 1's host alone."""
    running, key_dir = fleet
    hosts = inventory_hosts(running)
    path = f"/tmp/ops-resume-{uuid.uuid4().hex[:8]}"
    book = tmp_path / "append.yml"  # no -e: a run with extra vars is not resumed
    book.write_text(
        (PLAYBOOKS / "append.yml").read_text().replace("{{ append_path | quote }}", path)
    )
    journal = Journal(tmp_path / "journal.sqlite3")
    settings = Settings(ssh_key=key_file(key_dir))
    known_hosts_path().parent.mkdir(parents=True, exist_ok=True)
    known_hosts_path().write_text((key_dir / "known_hosts").read_text())
    plan = wf.plan(wf.PlaybookRequest(playbook=book, batch="1"), hosts)
    # the first process: every host intended, wave 1 done, wave 2 started, then it died
    run = journal.begin_run(wf.KIND, plan.as_dict(), "sandbox")
    rows = {}
    for index, wave in enumerate(plan.waves):
        ids = journal.intend(run.id, wf.STEP, [(h.instance_id, {"name": h.name}) for h in wave],
                             index)  # fmt: skip
        rows.update(zip((h.instance_id for h in wave), ids, strict=True))
    options = PushOptions(ssh_key=settings.ssh_key, known_hosts=known_hosts_path())
    first = push(plan.playbook, plan.waves[0], tmp_path / "first", options)
    assert first.hosts[0].status == OK
    journal.record_steps(run.id, wf.STEP, [(hosts[0].instance_id, "Success", {})])
    journal.started([rows[hosts[1].instance_id]])
    dead = subprocess.Popen(["true"])
    dead.wait()
    db = sqlite3.connect(journal.path)
    db.execute("UPDATE runs SET pid = ? WHERE id = ?", (dead.pid, run.id))
    db.commit()
    db.close()
    stale = journal.get_run(run.id)
    assert stale is not None and stale.state == "abandoned"
    assert wf.open_hosts(journal, stale)[1] == [h.instance_id for h in hosts[1:]]

    # the resume
    claimed = journal.claim(run.id)
    report = wf.resume(claimed, settings, journal, {h.instance_id: h for h in hosts[1:]})
    assert report.status == "succeeded" and report.run_id == run.id
    assert [h.instance_id for h in report.hosts] == [h.instance_id for h in hosts[1:]]
    for host in running:
        assert docker_exec(host.container, "cat", path).stdout.splitlines() == ["ran"]
    finished = {
        s.host: s.status for s in journal.steps(run.id) if s.phase == wf.STEP and s.ended_at
    }
    assert finished == {h.instance_id: "Success" for h in hosts}
    after = journal.get_run(run.id)
    assert after is not None and after.status == "succeeded"
