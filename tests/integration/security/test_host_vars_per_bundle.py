"""Pulled over SSM, a host receives its own host_vars and never another host's.

Two real Debian hosts of the shared sandbox get host_vars of their own in
the environment's static inventory (inventories/sandbox/host_vars/<id>.yml),
each a value only it may see. `ops playbook --via ssm` runs a playbook that
writes the host's own value and searches the unpacked bundle it was sent for
either value (the pattern is written so the playbook itself never matches).
Each host finds its own value, in its own host_vars file only, and not the
other's; each SendCommand that carried a host's bundle URL was addressed to
that host alone; both bundles are gone from S3 when the run ends.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import yaml

from ops.sandbox.emulator.auth import Credentials
from ops.sandbox.emulator.client import AdminClient
from tests.support.patch_sandbox import client
from tests.support.sandbox import SandboxSession

BUCKET = "fleetops-sandbox-output"


def in_host(host: dict[str, Any], script: str) -> str:
    done = subprocess.run(["docker", "exec", host["container"], "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    return done.stdout


def bundles(sandbox: SandboxSession) -> list[str]:
    listed = client(sandbox, "s3").list_objects_v2(Bucket=BUCKET)
    return sorted(o["Key"] for o in listed.get("Contents", []) if "/pull/" in f"/{o['Key']}")


def commands(ssm: Any) -> list[dict[str, Any]]:
    return [c for page in ssm.get_paginator("list_commands").paginate() for c in page["Commands"]]


def test_each_host_gets_only_its_own_host_vars_and_its_own_send(
    sandbox_session: SandboxSession, tmp_path: Path
) -> None:
    sandbox = sandbox_session
    hosts: list[dict[str, Any]] = sandbox.status["hosts"]  # type: ignore[assignment]
    first, second = sorted((h for h in hosts if h["platform"] == "debian"), key=lambda h: h["name"])
    token = uuid.uuid4().hex[:10]
    values = {first["instance_id"]: f"alpha-{token}", second["instance_id"]: f"bravo-{token}"}
    out = f"/tmp/ops-host-vars-{token}"
    # regular expressions the playbook's own text does not match ("alph[a]-..." is not "alpha-")
    patterns = {"alpha": f"alph[a]-{token}", "bravo": f"brav[o]-{token}"}
    tasks = [
        {"name": "Write this host's own value",
         "ansible.builtin.copy": {"content": "{{ own_value }}\n", "dest": f"{out}-own",
                                  "mode": "0600"}},
        *({"name": f"Search the bundle for {label}",
           "ansible.builtin.shell": f"grep -rlE '{pattern}' {{{{ playbook_dir }}}}/.. "
                                   f"> {out}-{label} || true",
           "changed_when": False} for label, pattern in patterns.items()),
    ]  # fmt: skip
    book = tmp_path / f"hv-{token}.yml"
    book.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": tasks}]))
    folder = sandbox.inventories / "sandbox" / "host_vars"
    folder.mkdir()
    ssm = client(sandbox, "ssm")
    before = bundles(sandbox)
    known = {c["CommandId"] for c in commands(ssm)}
    try:
        for instance_id, value in values.items():
            (folder / f"{instance_id}.yml").write_text(yaml.safe_dump({"own_value": value}))
        done = sandbox.ops(
            "--yes", "--output", "json", "playbook", str(book), "--via", "ssm",
            "--name", first["name"], "--name", second["name"], timeout=600,
        )  # fmt: skip
    finally:
        shutil.rmtree(folder)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    report = json.loads(done.stdout)
    assert {h["instance_id"]: h["status"] for h in report["hosts"]} == dict.fromkeys(values, "ok")
    labels = {first["instance_id"]: ("alpha", "bravo"), second["instance_id"]: ("bravo", "alpha")}
    for host in (first, second):
        own, other = labels[host["instance_id"]]
        assert in_host(host, f"cat {out}-own").strip() == values[host["instance_id"]]
        found = in_host(host, f"cat {out}-{own}").split()
        assert [Path(p).name for p in found] == [f"{host['instance_id']}.yml"], found
        assert in_host(host, f"cat {out}-{other}").split() == [], host["name"]
        in_host(host, f"rm -f {out}-own {out}-alpha {out}-bravo")
    # each host's bundle went out in a command addressed to that host alone
    sent = [c for c in commands(ssm) if c["CommandId"] not in known]
    carried = {
        instance_id: [c for c in sent if f"/{instance_id}.tar.gz" in json.dumps(c["Parameters"])]
        for instance_id in values
    }
    for instance_id, found_in in carried.items():
        assert len(found_in) == 1, (instance_id, [c["InstanceIds"] for c in sent])
        assert found_in[0]["InstanceIds"] == [instance_id]
    assert bundles(sandbox) == before, "a bundle outlived its run"


def test_a_refused_send_starts_no_host_of_its_own_bundle(
    sandbox_session: SandboxSession, tmp_path: Path
) -> None:
    """IAM refuses SendCommand: the shared bundle's send is the only one tried; the host
    with a bundle of its own is not sent at all, and neither host is reported done."""
    sandbox = sandbox_session
    hosts: list[dict[str, Any]] = sandbox.status["hosts"]  # type: ignore[assignment]
    shared, own = sorted((h for h in hosts if h["platform"] == "debian"), key=lambda h: h["name"])
    book = tmp_path / "noop.yml"
    book.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": []}]))
    folder = sandbox.inventories / "sandbox" / "host_vars"
    folder.mkdir()
    env = sandbox.env
    admin = AdminClient(env["AWS_ENDPOINT_URL_SSM"], Credentials(
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN", "")
    ))  # fmt: skip
    before = bundles(sandbox)
    seen = len(json.loads(sandbox.ops("sandbox", "calls", "--output", "json").stdout))
    try:
        (folder / f"{own['instance_id']}.yml").write_text("own_value: x\n")
        admin.deny(["ssm:SendCommand"])
        done = sandbox.ops(
            "--yes", "--output", "json", "playbook", str(book), "--via", "ssm", "--forks", "1",
            "--name", shared["name"], "--name", own["name"], timeout=300,
        )  # fmt: skip
    finally:
        admin.deny([])
        shutil.rmtree(folder)
    assert done.returncode == 1, (done.stdout[-2000:], done.stderr[-2000:])
    calls = sandbox.ops("sandbox", "calls", "--since", str(seen), "--operation", "SendCommand",
                        "--output", "json")  # fmt: skip
    tried = [c["params"].get("InstanceIds") for c in json.loads(calls.stdout)]
    assert [c.get("error") for c in json.loads(calls.stdout)] == ["AccessDeniedException"]
    assert tried in ([[shared["instance_id"]]], [None]), tried
    report = {h["instance_id"]: h["status"] for h in json.loads(done.stdout)["hosts"]}
    assert report[own["instance_id"]] == "not_run" and report[shared["instance_id"]] != "ok"
    assert bundles(sandbox) == before
