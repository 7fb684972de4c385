"""Pull over SSM without a fleet: the bundle, the script, and reading results back."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from ops.errors import BadInput
from ops.fleet.inventory import InventoryHost
from ops.transports.ansible_pull import (
    EXIT_NO_ANSIBLE,
    build_bundle,
    bundle_groups,
    collect_roles,
    host_recap,
    parse_output,
    pull_inventory,
    pull_script,
)
from ops.transports.ssm import FAILED, SUCCESS, UNDELIVERABLE, HostResult
from ops.workflows.inventory import parse_docker_version

REPO = Path(__file__).resolve().parents[3]
HOST = InventoryHost(
    instance_id="i-0123456789abcdef0",
    name="web-1",
    role="web",
    ssh_host="127.0.0.1",
    ssh_port=2201,
    ssh_user="root",
)


def test_bundle_is_deterministic_and_carries_roles_vars_and_callback(tmp_path: Path) -> None:
    book = tmp_path / "site.yml"
    book.write_text("- hosts: all\n  roles: [ansible_runtime]\n")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.j2").write_text("x\n")
    roles = collect_roles(["ansible_runtime"], [REPO / "playbooks" / "roles"])
    first = build_bundle(book, roles, [HOST], {"a": "1"})
    (tmp_path / "templates" / "t.j2").touch()  # a newer mtime must not change the bytes
    second = build_bundle(book, roles, [HOST], {"a": "1"})
    assert first.data == second.data and first.sha256 == second.sha256
    assert build_bundle(book, roles, [HOST], {"a": "2"}).sha256 != first.sha256
    with tarfile.open(fileobj=io.BytesIO(first.data), mode="r:gz") as tar:
        names = tar.getnames()
        extravars = json.loads(tar.extractfile("ops/extravars.json").read())  # type: ignore[union-attr]
    assert "project/site.yml" in names and "project/templates/t.j2" in names
    assert "project/roles/ansible_runtime/tasks/main.yml" in names
    assert "ops/callback_plugins/ops_recap.py" in names
    assert extravars == {"a": "1"}
    assert first.playbook == "project/site.yml"


def test_missing_role_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="role 'nope'"):
        collect_roles(["nope"], [tmp_path])


def test_pull_inventory_drops_ssh_reach_and_keeps_identity() -> None:
    hostvars = pull_inventory([HOST])["all"]["hosts"][HOST.instance_id]
    assert hostvars["ansible_connection"] == "local"
    assert "ansible_host" not in hostvars and "ansible_port" not in hostvars
    assert hostvars["ops_name"] == "web-1"


def test_script_quotes_every_variable_part() -> None:
    url = "http://127.0.0.1:1/b/k?X-Amz-Signature=a&b='c'$(reboot)"
    script = pull_script(url, "ab" * 32, "project/my book.yml", check=True, diff=False)
    assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0
    assert "$(reboot)'" in script  # inside single quotes: never expanded
    assert "'my book.yml'" in script and " --check" in script and "--diff" not in script


def recap_line(host: str, **counts: int) -> str:
    stats = {k: {host: v} for k, v in counts.items()}
    stats["processed"] = {host: 1}
    return "OPS-RECAP " + json.dumps({"tasks": 3, **stats})


def test_recap_parsed_into_the_push_shape() -> None:
    task = {"host": HOST.instance_id, "task": "Fail", "status": "failed", "changed": False}
    out = "\n".join(
        [
            "noise",
            "OPS-TASK " + json.dumps({**task, "message": "boom"}),
            recap_line(HOST.instance_id, ok=2, changed=1, failures=1),
        ]
    )
    parsed = parse_output(out)
    assert parsed.tasks == 3 and parsed.events[0].message == "boom"
    item, _ = host_recap(
        HostResult(HOST.instance_id, "web-1", FAILED, exit_code=2, stdout=out), HOST
    )
    assert (item.status, item.ok, item.changed, item.failed) == ("failed", 2, 1, 1)
    assert item.message == "Fail: boom"


def test_no_recap_maps_ssm_status_and_script_step() -> None:
    gone = HostResult(HOST.instance_id, "web-1", UNDELIVERABLE, stderr="agent offline")
    assert host_recap(gone, HOST)[0].status == "unreachable"
    broken = HostResult(
        HOST.instance_id, "web-1", FAILED, exit_code=EXIT_NO_ANSIBLE, stderr="ops-pull: no\n"
    )
    item = host_recap(broken, HOST)[0]
    assert item.status == "failed" and "still missing" in item.message
    ok_without_recap = HostResult(HOST.instance_id, "web-1", SUCCESS, exit_code=0, stdout="")
    assert host_recap(ok_without_recap, HOST)[0].status == "failed"


@pytest.mark.parametrize(
    ("stdout", "version"),
    [
        ("Docker version 24.0.7, build afdd53b\n", "24.0.7"),
        ("Docker version 20.10.25+dfsg1, build b82b9f3\n", "20.10.25+dfsg1"),
        ("none\n", "none"),
        ("garbage\n", ""),
    ],
)
def test_docker_version_parsed(stdout: str, version: str) -> None:
    assert parse_docker_version(stdout) == version


def test_a_bundle_carries_only_the_host_vars_of_the_hosts_it_reaches(tmp_path: Path) -> None:
    """Hosts without vars of their own share one bundle; a host with some gets its own,
    and no bundle carries another host's host_vars entry (file or folder) or inventory."""
    (tmp_path / "project").mkdir()
    book = tmp_path / "project" / "site.yml"
    book.write_text("- hosts: all\n  tasks: []\n")
    static = tmp_path / "static"
    (static / "group_vars").mkdir(parents=True)
    (static / "group_vars" / "all.yml").write_text("common: 1\n")
    (static / "host_vars" / "i-000000000000000bb").mkdir(parents=True)
    (static / "host_vars" / "i-000000000000000aa.yml").write_text("secret: alpha\n")
    (static / "host_vars" / "i-000000000000000bb" / "vars.yml").write_text("secret: bravo\n")
    (static / "host_vars" / "bastion1").write_text("secret: other\n")
    (static / "host_vars" / ".hidden.yml").write_text("secret: hidden\n")
    a, b, c, d = (
        InventoryHost(f"i-000000000000000{x}", f"web-{x}") for x in ("aa", "bb", "cc", "dd")
    )
    groups = bundle_groups([a, b, c, d], static)
    assert [(name, [h.name for h in hosts]) for name, hosts in groups] == [
        ("shared", ["web-cc", "web-dd"]), (a.instance_id, ["web-aa"]), (b.instance_id, ["web-bb"])
    ]  # fmt: skip
    assert bundle_groups([a, c], None) == [("shared", [a, c])]
    with_vars = InventoryHost("i-000000000000000ee", "web-ee", extra_vars={"port": 1})
    assert bundle_groups([with_vars], None) == [(with_vars.instance_id, [with_vars])]

    def contents(hosts: list[InventoryHost]) -> tuple[list[str], str]:
        bundle = build_bundle(book, {}, hosts, {}, static)
        with tarfile.open(fileobj=io.BytesIO(bundle.data), mode="r:gz") as tar:
            names = tar.getnames()
            text = b"".join(
                tar.extractfile(m).read()
                for m in tar.getmembers()
                if m.isfile()  # type: ignore[union-attr]
            ).decode()
        return [n for n in names if n.startswith("ops/inventory/")], text

    names, text = contents([a])
    assert sorted(names) == [
        "ops/inventory/group_vars/all.yml",
        "ops/inventory/host_vars/i-000000000000000aa.yml",
        "ops/inventory/ops_hosts.yml",
    ]
    assert "alpha" in text and "bravo" not in text and "other" not in text
    assert b.instance_id not in text and c.instance_id not in text
    names, text = contents([b])
    assert "ops/inventory/host_vars/i-000000000000000bb/vars.yml" in names
    assert "bravo" in text and "alpha" not in text
    names, text = contents([c, d])
    assert not [n for n in names if "host_vars" in n]
    assert not any(secret in text for secret in ("alpha", "bravo", "other", "hidden"))
    assert c.instance_id in text and d.instance_id in text and a.instance_id not in text
