"""Inventory rendering, platform facts, runner-event mapping and bad-input refusal (no Docker)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli.main import cli
from ops.config import state_dir
from ops.errors import BadInput
from ops.fleet import inventory as inv
from ops.fleet import unsafe
from ops.fleet.platforms import PLATFORMS, lookup, parse_os_release
from ops.transports.ansible import PushOptions, recap, ssh_common_args, to_task_event
from ops.workflows import playbook as wf

REPO = Path(__file__).resolve().parents[3]
SMALL = REPO / "playbooks" / "examples" / "small.yml"


def host(n: int, **kw: object) -> inv.InventoryHost:
    base: dict[str, object] = {
        "instance_id": f"i-{n:017x}",
        "name": f"web{n}",
        "role": "web",
        "env": "sandbox",
        "az": "us-east-1a",
        "private_ip": f"10.0.0.{n}",
        "platform_name": "Amazon Linux",
        "platform_version": "2",
    }
    base.update(kw)
    return inv.InventoryHost(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "version", "key"),
    [
        ("Amazon Linux", "2", "al2"),
        ("amzn", "2023", "al2023"),
        ("Amazon Linux", "2023.6.20241031", "al2023"),
        ("Debian GNU/Linux", "12", "debian-12"),
        ("debian", "11", "debian-11"),
        ("Ubuntu", "22.04", "ubuntu-22.04"),
    ],
)
def test_platform_lookup(name: str, version: str, key: str) -> None:
    assert lookup(name, version).key == key


def test_al2_end_of_support_is_2026_06_30() -> None:
    al2 = PLATFORMS["al2"]
    assert al2.end_of_support == date(2026, 6, 30)
    assert not al2.past_end_of_support(date(2026, 6, 30))
    assert al2.past_end_of_support(date(2026, 7, 1))
    assert not PLATFORMS["al2023"].past_end_of_support(date(2026, 7, 1))


def test_unknown_platform_is_listed_not_dropped() -> None:
    odd = lookup("Rocky Linux", "9.3")
    assert odd.key == "rocky-linux-9.3"
    assert odd.end_of_support is None


def test_parse_os_release() -> None:
    fields = parse_os_release('ID="amzn"\nVERSION_ID="2"\n# comment\n')
    assert fields == {"ID": "amzn", "VERSION_ID": "2"}


def test_render_groups_and_hostvars() -> None:
    hosts = [host(1), host(2, role="api", az="us-east-1b", platform_version="2023")]
    data = inv.render(hosts)["all"]
    assert set(data["hosts"]) == {h.instance_id for h in hosts}
    assert data["hosts"][hosts[0].instance_id]["ansible_host"] == "10.0.0.1"
    assert data["hosts"][hosts[0].instance_id]["ops_platform"] == "al2"
    assert set(data["children"]) == {
        "role_web",
        "role_api",
        "env_sandbox",
        "platform_al2",
        "platform_al2023",
        "az_us_east_1a",
        "az_us_east_1b",
    }


def test_render_refuses_duplicate_ids() -> None:
    with pytest.raises(BadInput):
        inv.render([host(1), host(1)])


def test_group_names_are_valid() -> None:
    assert inv.group_name("role", "Web-Front end") == "role_web_front_end"
    assert inv.group_name("role", "") == ""


def test_adapter_reads_discovery_shaped_hosts() -> None:
    class Found:
        instance_id = "i-0123456789abcdef0"
        name = "db1"
        tags = {"Role": "db", "Env": "prod"}
        platform = "Amazon Linux"
        platform_version = "2"
        ping_status = "Online"

    adapted = inv.as_inventory_host(Found())
    assert (adapted.role, adapted.env, adapted.platform.key) == ("db", "prod", "al2")
    assert adapted.agent_status == "Online"


def test_eol_summary_counts_per_role_and_env() -> None:
    hosts = [host(1), host(2, role="api"), host(3, platform_version="2023")]
    summary = inv.eol_summary(hosts, today=date(2026, 7, 1))
    assert summary["total"] == 2
    assert summary["by_role"] == {"api": 1, "web": 1}
    assert summary["by_env"] == {"sandbox": 2}


def test_cache_round_trip_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    inv.write_cache(path, "k", [host(1)])
    assert inv.read_cache(path, "k") == [host(1)]
    assert inv.read_cache(path, "other") is None
    assert inv.read_cache(path, "k", ttl=-1) is None


def test_ssh_args_quote_paths_and_refuse_odd_jump_hosts(tmp_path: Path) -> None:
    odd = tmp_path / "dir with space" / "known_hosts"
    args = ssh_common_args(PushOptions(known_hosts=odd))
    assert "StrictHostKeyChecking=yes" in args
    assert f"'UserKnownHostsFile={odd}'" in args
    with pytest.raises(BadInput):
        ssh_common_args(PushOptions(jump_host="bastion; rm -rf /"))
    assert "ProxyJump=ops@bastion:22" in ssh_common_args(PushOptions(jump_host="ops@bastion:22"))
    assert "accept-new" in ssh_common_args(PushOptions(host_key_policy="accept-new"))


def test_runner_events_map_to_task_events() -> None:
    failed = to_task_event(
        {
            "event": "runner_on_failed",
            "event_data": {"host": "i-1", "task": "t", "res": {"msg": "boom\nmore"}},
        }
    )
    assert failed is not None
    assert (failed.status, failed.message) == ("failed", "boom")
    ignored = to_task_event(
        {"event": "runner_on_failed", "event_data": {"host": "i-1", "ignore_errors": True}}
    )
    assert ignored is not None and ignored.status == "ok"
    assert to_task_event({"event": "playbook_on_start"}) is None


def test_recap_statuses() -> None:
    hosts = [host(1), host(2), host(3), host(4)]
    ids = [h.instance_id for h in hosts]
    stats = {
        "ok": {ids[0]: 3, ids[1]: 1},
        "changed": {ids[0]: 2},
        "failures": {ids[1]: 1},
        "dark": {ids[2]: 1},
        "processed": {ids[0]: 1, ids[1]: 1, ids[2]: 1},
    }
    out = recap(stats, hosts, {ids[1]: "t: boom"})
    assert [r.status for r in out] == ["ok", "failed", "unreachable", "not_run"]
    assert out[0].changed == 2 and out[1].message == "t: boom"


def test_extravars_and_amounts(tmp_path: Path) -> None:
    f = tmp_path / "vars.yml"
    f.write_text("a: 1\nb: two\n")
    assert wf.parse_extravars(["x=1", f"@{f}", "b=three"]) == {"x": "1", "a": 1, "b": "three"}
    for bad in ("novalue", "1x=2", f"@{tmp_path / 'missing.yml'}"):
        with pytest.raises(BadInput):
            wf.parse_extravars([bad])
    assert wf.parse_amount("25%", 10, "--batch") == 2
    assert wf.parse_amount("3", 10, "--batch") == 3
    with pytest.raises(BadInput):
        wf.parse_amount("lots", 10, "--batch")


def test_plan_waves_and_budget() -> None:
    hosts = [host(n) for n in range(1, 6)]
    plan = wf.plan(wf.PlaybookRequest(SMALL, batch="2", max_fail="20%"), hosts)
    assert [len(w) for w in plan.waves] == [2, 2, 1]
    assert plan.max_failures == 1
    with pytest.raises(BadInput):
        wf.plan(wf.PlaybookRequest(SMALL, via="carrier-pigeon"), hosts)
    with pytest.raises(BadInput):
        wf.plan(wf.PlaybookRequest(SMALL), [])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("- hosts: all\n  tasks: [\n", "not valid YAML"),
        ("- hosts: all\n  roles: [no_such_role]\n", "role 'no_such_role' was not found"),
        ("hosts: all\n", "list of plays"),
        ("- hosts: all\n  tasks:\n    - no.such.module: {}\n", "syntax-check failed"),
    ],
)
def test_bad_playbook_exits_2_before_any_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, expected: str
) -> None:
    path = tmp_path / "site.yml"
    if content is not None:
        path.write_text(content)

    def no_hosts(*_a: object, **_k: object) -> None:
        raise AssertionError("hosts were resolved for a bad playbook")

    monkeypatch.setattr("ops.cli.playbook.resolve_hosts", no_hosts)
    result = CliRunner().invoke(cli, ["--yes", "playbook", str(path), "-t", "Role=web"])
    assert result.exit_code == 2, result.output
    assert expected in result.output


def test_inventory_export_from_cache_is_ansible_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    # two hosts reached on loopback ports (as their ops:ssh tags say), one only by private IP
    hosts = [host(1, ssh_host="127.0.0.1", ssh_port=2201), host(2, ssh_host="127.0.0.1"), host(3)]
    from ops.fleet.targets import TargetSpec

    key = f"us-east-1|{TargetSpec({'Env': 'sandbox'}).describe()}"
    inv.write_cache(inv.cache_path(state_dir(), "sandbox"), key, hosts)
    result = CliRunner().invoke(cli, ["inventory", "export", "--format", "ansible"])
    assert result.exit_code == 0, result.output
    data = unsafe.load(result.stdout)
    # the sandbox's ssh_networks (127.0.0.0/8) keeps SSH off the private IP
    assert set(data["all"]["children"]["role_web"]["hosts"]) == {h.instance_id for h in hosts[:2]}
    assert data["all"]["hosts"][hosts[0].instance_id]["ansible_port"] == 2201
    assert "1 host(s) left out" in result.stderr and "127.0.0.0/8" in result.stderr
    listed = CliRunner().invoke(cli, ["inventory", "list", "--output", "json"])
    assert json.loads(listed.stdout)[0]["end_of_support"] == "2026-06-30"


def test_a_playbook_run_with_extra_vars_is_not_resumed(isolated_state: Path) -> None:
    """The journal keeps the names of -e variables, never their values: such a run is
    refused (exit 2) and left as it was, not resumed without them."""
    import sqlite3
    import subprocess
    import sys

    from ops.journal import open_journal

    plan = wf.plan(wf.PlaybookRequest(SMALL, extravars={"token": "s3cret"}), [host(1)])
    with open_journal() as journal:
        run = journal.begin_run("playbook", plan.as_dict(), "sandbox")
        journal.intend(run.id, wf.STEP, [("i-00000000000000001", {"name": "web1"})], 0)
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        db = sqlite3.connect(journal.path)
        db.execute("UPDATE runs SET pid = ? WHERE id = ?", (dead.pid, run.id))
        db.commit()
        db.close()
        before = journal.get_run(run.id)
    assert before is not None and before.state == "abandoned"
    assert "s3cret" not in json.dumps(before.arguments)
    result = CliRunner().invoke(cli, ["runs", "resume", run.id, "--yes"])
    assert result.exit_code == 2, result.output
    assert "had extra variables" in result.output
    with open_journal() as journal:
        assert journal.get_run(run.id) == before
        assert wf.open_hosts(journal, before)[1] == ["i-00000000000000001"]


def test_playbook_and_docker_install_share_the_transport_options() -> None:
    """One decorator declares --via and --host-key-policy; only the default --via differs."""
    from ops.cli.docker import install
    from ops.cli.playbook import playbook

    def options(command: object) -> dict[str, tuple[object, ...]]:
        params = {p.name: p for p in command.params}  # type: ignore[attr-defined]
        return {
            name: (tuple(params[name].type.choices), params[name].default)
            for name in ("via", "host_key_policy")
        }

    assert options(playbook) == {
        "via": (("ssh", "ssm"), "ssh"),
        "host_key_policy": (("strict", "accept-new"), "strict"),
    }
    assert options(install) == {**options(playbook), "via": (("ssh", "ssm"), "ssm")}
    for args in (["playbook", str(SMALL), "--all"], ["docker", "install"]):
        result = CliRunner().invoke(cli, ["--yes", *args, "--via", "pigeon"])
        assert result.exit_code == 2 and "--via" in result.output, result.output


def test_a_playbook_run_recorded_without_its_plan_is_not_resumed() -> None:
    with pytest.raises(BadInput, match="recorded without its plan"):
        wf.request_from({"via": "ssm"})
    request = wf.request_from({"playbook": str(SMALL), "via": "ssm", "forks": 3, "batch": "2"})
    assert (request.via, request.forks, request.batch, request.host_key_policy) == (
        "ssm", 3, "2", "strict"
    )  # fmt: skip
