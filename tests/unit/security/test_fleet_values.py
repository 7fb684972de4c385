"""Fleet values in the inventory are `!unsafe` text; on a terminal they are shown escaped."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from rich.console import Console

from ops.fleet import inventory as inv
from ops.fleet import unsafe
from ops.render.output import plain, print_table
from ops.transports.ansible import ansible_binary
from ops.transports.ansible_pull import pull_inventory

PAYLOAD = "web{{ lookup('pipe', 'touch /tmp/x') }}"


def hostile() -> inv.InventoryHost:
    return inv.InventoryHost(
        instance_id="i-0123456789abcdef0",
        name="web-$(touch /tmp/y)\n- hosts: all",
        role=PAYLOAD,
        env="prod`id`",
        private_ip="10.0.0.1",
        az="us-east-1a",
        platform_name="Debian GNU/Linux",
        platform_version="12",
        ssh_host="127.0.0.1",
        ssh_port=2201,
        app_port=8080,
        ssh_user="root",
    )


def test_every_fleet_string_is_written_unsafe_and_reads_back_unchanged() -> None:
    host = hostile()
    text = inv.to_yaml(inv.render([host]))
    data = unsafe.load(text)
    hv = data["all"]["hosts"][host.instance_id]
    for var, value in (
        ("ops_name", host.name),
        ("ops_role", host.role),
        ("ops_env", host.env),
        ("ansible_host", "127.0.0.1"),
        ("ops_instance_id", host.instance_id),
    ):
        assert hv[var] == value
        assert isinstance(hv[var], unsafe.Unsafe), var
    # numbers and operator settings are not fleet text: left as they are
    assert hv["ansible_port"] == 2201 and hv["ops_app_port"] == 8080
    assert not isinstance(hv["ansible_user"], unsafe.Unsafe)
    # the newline cannot open a new YAML key, and group names stay sanitised
    assert "\n- hosts: all" not in text
    assert set(data["all"]["children"]) == {
        "role_web_lookup_pipe_touch_tmp_x",
        "env_prod_id",
        "platform_debian_12",
        "az_us_east_1a",
    }
    assert text.count("!unsafe") >= 7


def test_pull_inventory_keeps_values_unsafe() -> None:
    host = hostile()
    data = unsafe.load(inv.to_yaml(pull_inventory([host])))
    hv = data["all"]["hosts"][host.instance_id]
    assert isinstance(hv["ops_role"], unsafe.Unsafe) and hv["ops_role"] == PAYLOAD
    assert hv["ansible_connection"] == "local" and "ansible_host" not in hv


def test_ansible_prints_the_payload_and_runs_nothing(tmp_path: Path) -> None:
    """Real Ansible on the control machine: the `!unsafe` inventory gives text; the same
    inventory as plain YAML (what `ops` wrote before) runs the lookup."""
    marker = tmp_path / "ran"
    host = dataclasses.replace(hostile(), role=f"web{{{{ lookup('pipe', 'touch {marker}') }}}}")
    hosts = [host]

    def debug(inventory_text: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "inventory.yml"
        path.write_text(inventory_text)
        return subprocess.run(
            [ansible_binary("ansible"), "all", "-i", str(path), "-c", "local",
             "-m", "ansible.builtin.debug", "-a", "var=ops_role"],
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "ANSIBLE_PYTHON_INTERPRETER": sys.executable},
        )  # fmt: skip

    safe = debug(inv.to_yaml(inv.render(hosts)))
    assert safe.returncode == 0, safe.stdout + safe.stderr
    assert "lookup('pipe'" in safe.stdout and not marker.exists()
    plain_yaml = debug(yaml.safe_dump(json.loads(json.dumps(inv.render(hosts)))))
    assert plain_yaml.returncode == 0, plain_yaml.stdout + plain_yaml.stderr
    assert marker.exists(), "the control case must show what the payload does unmarked"


def test_terminal_output_escapes_control_characters_and_markup() -> None:
    assert plain("web\n1\x1b[31m") == "web\\n1\\x1b[31m"
    assert plain("ok name") == "ok name"
    out = io.StringIO()
    import ops.render.output as output

    original = output.console
    output.console = lambda no_color=False, stderr=False: Console(file=out, width=200)  # type: ignore[assignment]
    try:
        print_table(["name"], [["[bold]web[/bold]\nforged row"]])
    finally:
        output.console = original  # type: ignore[assignment]
    shown = out.getvalue()
    assert "[bold]web[/bold]\\nforged row" in shown  # markup shown as text, newline escaped
