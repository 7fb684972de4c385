"""Tag values are data: template, shell and newline payloads in a host's tags run nowhere.

The shared sandbox's hosts are re-tagged for this module and their tags put
back afterwards (with the inventory caches dropped), so the other tests of the
session see the fleet as it was. Pull runs on a real Debian host; the Amazon
Linux STAND-INS only carry the bad `ops:ssh` / `ops:app-port` tags here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.support.sandbox import REPO, SandboxSession

SMALL = str(REPO / "playbooks" / "examples" / "small.yml")
MARK = f"/tmp/ops-inject-{uuid.uuid4().hex[:8]}"


def payloads(kind: str) -> dict[str, str]:
    """One payload of each kind per tag, every one of which would leave a marker file."""
    return {
        "Name": f"web-$(touch {MARK}-{kind}-name)\n- hosts: all",
        "Role": f"web{{{{ lookup('pipe', 'touch {MARK}-{kind}-role') }}}}",
        "Env": f"sandbox`touch {MARK}-{kind}-env`;touch {MARK}-{kind}-env2",
    }


def _ec2(sandbox: SandboxSession) -> Any:
    env = sandbox.env
    return boto3.session.Session().client(
        "ec2",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def _tags(ec2: Any, instance_id: str) -> dict[str, str]:
    found = ec2.describe_instances(InstanceIds=[instance_id])
    [instance] = [i for r in found["Reservations"] for i in r["Instances"]]
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def _hosts(sandbox: SandboxSession, *platforms: str) -> list[dict[str, Any]]:
    hosts: list[dict[str, Any]] = sandbox.status["hosts"]  # type: ignore[assignment]
    return sorted((h for h in hosts if h["platform"] in platforms), key=lambda h: h["name"])


def in_host(container: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", container, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def hostile(sandbox_session: SandboxSession) -> Iterator[dict[str, Any]]:
    """Two Debian hosts with payloads in Name/Role/Env; the stand-ins with bad address tags."""
    sandbox = sandbox_session
    ec2 = _ec2(sandbox)
    pushed, pulled = _hosts(sandbox, "debian")[:2]
    bad_ssh, bad_port = _hosts(sandbox, "al2", "al2023")[:2]
    originals = {h["instance_id"]: _tags(ec2, h["instance_id"]) for h in (pushed, pulled)}
    originals |= {h["instance_id"]: _tags(ec2, h["instance_id"]) for h in (bad_ssh, bad_port)}
    tagged = {
        pushed["instance_id"]: payloads("push"),
        pulled["instance_id"]: payloads("pull"),
        bad_ssh["instance_id"]: {"ops:ssh": f"127.0.0.1 -oProxyCommand=touch\t{MARK}-ssh"},
        bad_port["instance_id"]: {"ops:app-port": f"80$(touch {MARK}-port)\n"},
    }
    try:
        for instance_id, tags in tagged.items():
            ec2.create_tags(
                Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            )
        yield {
            "pushed": pushed,
            "pulled": pulled,
            "bad_ssh": bad_ssh,
            "bad_port": bad_port,
            "tags": tagged,
        }
    finally:
        for instance_id, tags in originals.items():
            ec2.create_tags(
                Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            )
        # nothing the other tests read may still carry the payloads
        shutil.rmtree(sandbox.state_dir / "inventory", ignore_errors=True)


def targeting(*hosts: dict[str, Any]) -> list[str]:
    """By instance id, across envs: the Env payload takes the hosts out of the sandbox filter."""
    args = ["--all-envs"]
    for host in hosts:
        args += ["--instance", host["instance_id"]]
    return args


def no_marker_anywhere(sandbox: SandboxSession) -> None:
    here = sorted(str(p) for p in Path("/tmp").glob(Path(MARK).name + "*"))
    assert here == [], f"a payload ran on the control machine: {here}"
    hosts: list[dict[str, Any]] = sandbox.status["hosts"]  # type: ignore[assignment]
    for host in hosts:
        found = in_host(host["container"], f"ls -d {MARK}* 2>/dev/null").stdout.split()
        assert found == [], f"a payload ran on {host['name']}: {found}"


def test_inventory_shows_payloads_as_text_and_leaves_bad_addresses_out(
    sandbox_session: SandboxSession, hostile: dict[str, Any]
) -> None:
    sandbox = sandbox_session
    everyone = [hostile[k] for k in ("pushed", "pulled", "bad_ssh", "bad_port")]
    listed = sandbox.ops(
        "--output", "json", "inventory", "list", "--refresh", *targeting(*everyone), timeout=300
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = {r["instance_id"]: r for r in json.loads(listed.stdout)}
    # the hosts whose address tags are not addresses are left out, with a note each
    assert set(rows) == {hostile["pushed"]["instance_id"], hostile["pulled"]["instance_id"]}
    for key, tag in (("bad_ssh", "ops:ssh"), ("bad_port", "ops:app-port")):
        note = next(ln for ln in listed.stderr.splitlines() if hostile[key]["instance_id"] in ln)
        assert "left out" in note and tag in note, listed.stderr
    for key in ("pushed", "pulled"):
        row = rows[hostile[key]["instance_id"]]
        tags = hostile["tags"][hostile[key]["instance_id"]]
        assert (row["name"], row["role"], row["env"]) == (tags["Name"], tags["Role"], tags["Env"])

    table = sandbox.ops("inventory", "list", *targeting(hostile["pushed"]), timeout=300)
    assert table.returncode == 0, table.stderr[-2000:]
    # the newline in the Name shows escaped: "- hosts: all" cannot start a line of its own
    assert "web-$(touch" in table.stdout
    cells = [cell.strip() for ln in table.stdout.splitlines() for cell in ln.split("│")]
    assert not any(cell.startswith("- hosts") for cell in cells), table.stdout
    assert "\\" in table.stdout  # the escape shows (the cell may fold it across lines)

    exported = sandbox.ops("inventory", "export", *targeting(hostile["pushed"]), timeout=300)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert "!unsafe" in exported.stdout

    class Loader(yaml.SafeLoader):
        pass

    seen: list[str] = []

    def unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> str:
        value = str(loader.construct_scalar(node))  # type: ignore[arg-type]
        seen.append(value)
        return value

    Loader.add_constructor("!unsafe", unsafe)
    inventory = yaml.load(exported.stdout, Loader=Loader)
    hv = inventory["all"]["hosts"][hostile["pushed"]["instance_id"]]
    tags = hostile["tags"][hostile["pushed"]["instance_id"]]
    assert (hv["ops_name"], hv["ops_role"], hv["ops_env"]) == (
        tags["Name"],
        tags["Role"],
        tags["Env"],
    )
    assert {tags["Name"], tags["Role"], tags["Env"]} <= set(seen)  # each one tagged !unsafe
    no_marker_anywhere(sandbox)


@pytest.mark.parametrize("via", ["ssh", "ssm"])
def test_playbook_templates_nothing_from_tags(
    sandbox_session: SandboxSession, hostile: dict[str, Any], via: str
) -> None:
    sandbox = sandbox_session
    host = hostile["pushed" if via == "ssh" else "pulled"]
    in_host(host["container"], "rm -rf /etc/fleetops-example")
    done = sandbox.ops(
        "--yes", "--output", "json", "playbook", SMALL, "--via", via, "--refresh",
        *targeting(host), timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    [recap] = json.loads(done.stdout)["hosts"]
    assert recap["status"] == "ok", recap
    identity = in_host(host["container"], "cat /etc/fleetops-example/identity").stdout
    tags = hostile["tags"][host["instance_id"]]
    # the template wrote the tag values as they are: nothing was evaluated
    assert f"role={tags['Role']}\n" in identity, identity
    assert f"name={tags['Name']}\n" in identity, identity
    no_marker_anywhere(sandbox)


def test_run_prints_names_as_text(sandbox_session: SandboxSession, hostile: dict[str, Any]) -> None:
    sandbox = sandbox_session
    host = hostile["pushed"]
    done = sandbox.ops(
        "--yes", "run", *targeting(host), "--", "cat /etc/hostname", timeout=300
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(ln for ln in done.stdout.splitlines() if host["instance_id"] in ln)
    assert "web-$(touch" in line and "\\n- hosts: all" in line, done.stdout
    no_marker_anywhere(sandbox)
