"""The shared sandbox fleet: real containers reached over SSM (emulated), SSH and Ansible."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import paramiko

from tests.support.sandbox import SandboxSession


def _client(session: SandboxSession, service: str) -> Any:
    env = session.env
    return boto3.client(
        service,
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["AWS_ENDPOINT_URL_SSM"] if service == "ssm" else env["AWS_ENDPOINT_URL"],
    )


def _hosts(session: SandboxSession) -> list[dict[str, Any]]:
    hosts = session.status["hosts"]
    assert isinstance(hosts, list)
    return hosts


def test_sendcommand_through_plain_boto3_returns_each_real_hostname(
    sandbox: SandboxSession,
) -> None:
    ssm = _client(sandbox, "ssm")
    hosts = {h["instance_id"]: h for h in _hosts(sandbox)}
    command = ssm.send_command(
        InstanceIds=list(hosts),
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["hostname"]},
    )["Command"]
    deadline = time.monotonic() + 60
    outputs: dict[str, str] = {}
    while time.monotonic() < deadline and len(outputs) < len(hosts):
        try:
            for page in ssm.get_paginator("list_command_invocations").paginate(
                CommandId=command["CommandId"], Details=True
            ):
                for inv in page["CommandInvocations"]:
                    if inv["Status"] == "Success":
                        outputs[inv["InstanceId"]] = inv["CommandPlugins"][0]["Output"].strip()
        except ssm.exceptions.InvalidCommandId:
            pass  # reads lag behind the send, as the service's do: not readable yet
        time.sleep(0.5)
    assert set(outputs) == set(hosts)
    for instance_id, host in hosts.items():
        real = subprocess.run(
            ["docker", "exec", host["container"], "hostname"], capture_output=True, text=True
        ).stdout.strip()
        assert outputs[instance_id] == real == host["name"]


def test_ssh_with_the_generated_key_reaches_every_host(sandbox: SandboxSession) -> None:
    key_path = str(sandbox.status["key"])
    known_hosts = str(sandbox.state_dir / "sandbox" / "keys" / "known_hosts")
    for host in _hosts(sandbox):
        client = paramiko.SSHClient()
        client.load_host_keys(known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            "127.0.0.1",
            port=host["ssh_port"],
            username="root",
            key_filename=key_path,
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        try:
            _in, out, _err = client.exec_command("cat /etc/os-release; hostname")
            text = out.read().decode()
        finally:
            client.close()
        assert host["name"] in text.splitlines()[-1]
        expected_id = "amzn" if host["platform"].startswith("al") else "debian"
        assert f"ID={expected_id}" in text or f'ID="{expected_id}"' in text


def test_ansible_ping_reaches_every_host(sandbox: SandboxSession) -> None:
    inventory = str(sandbox.status["inventory"])
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible"),
            "all",
            "-i",
            inventory,
            "-m",
            "ansible.builtin.ping",
            "-o",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**sandbox.process_env, "ANSIBLE_HOST_KEY_CHECKING": "True"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for host in _hosts(sandbox):
        assert f"{host['name']} | SUCCESS" in result.stdout


def test_ec2_load_balancer_and_bucket_describe_the_fleet(sandbox: SandboxSession) -> None:
    ec2 = _client(sandbox, "ec2")
    hosts = {h["instance_id"]: h for h in _hosts(sandbox)}
    found = {}
    for page in ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag:Env", "Values": ["sandbox"]}]
    ):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                found[instance["InstanceId"]] = tags
    assert set(hosts) <= set(found)
    for instance_id, host in hosts.items():
        assert found[instance_id]["Name"] == host["name"]
        assert found[instance_id]["Role"] == host["role"]
    elb = _client(sandbox, "elbv2")
    group = elb.describe_target_groups(Names=["web"])["TargetGroups"][0]
    health = elb.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
    registered = {t["Target"]["Id"] for t in health["TargetHealthDescriptions"]}
    assert registered == {i for i, h in hosts.items() if h["role"] == "web"}
    buckets = {b["Name"] for b in _client(sandbox, "s3").list_buckets()["Buckets"]}
    assert "fleetops-sandbox-output" in buckets


def test_second_up_answers_with_status_not_a_second_fleet(sandbox: SandboxSession) -> None:
    # this sandbox's containers only: other sandboxes (other test workers) come and go
    ps = ["docker", "ps", "-q", "--filter", f"label=org.fleetops.sandbox={sandbox.status['label']}"]
    before = subprocess.run(ps, capture_output=True, text=True).stdout.split()
    assert before
    again = sandbox.ops("--output", "json", "sandbox", "up", "--hosts", "5")
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["label"] == sandbox.status["label"]
    assert len(data["hosts"]) == len(_hosts(sandbox))
    after = subprocess.run(ps, capture_output=True, text=True).stdout.split()
    assert sorted(before) == sorted(after)


def test_status_marks_stand_ins_and_calls_log_lists_operations(sandbox: SandboxSession) -> None:
    status = sandbox.ops("--no-color", "sandbox", "status")
    assert status.returncode == 0
    assert "running=True" in status.stdout
    assert "(stand-in)" in status.stdout
    calls = sandbox.ops("sandbox", "calls", "--output", "json")
    assert calls.returncode == 0
    served = json.loads(calls.stdout)
    operations = {(c["service"], c["operation"]) for c in served}
    assert {("ssm", "DescribeInstanceInformation"), ("ssm", "SendCommand")} & operations
    # moto's calls are there too: `up` launched the hosts' instances and made the bucket
    assert {("ec2", "RunInstances"), ("s3", "CreateBucket")} <= operations
    times = [c["time"] for c in served]
    assert times == sorted(times) and [c["n"] for c in served] == list(range(1, len(served) + 1))


def test_ssh_endpoint_tags_key_and_host_keys_are_handed_to_ops(sandbox: SandboxSession) -> None:
    """`ops inventory` and `ops playbook` know nothing of the sandbox: its hosts carry
    `ops:ssh` tags, `ops sandbox env` names the key, and `up` trusted the host keys."""
    ec2 = _client(sandbox, "ec2")
    hosts = {h["instance_id"]: h for h in _hosts(sandbox)}
    tags: dict[str, dict[str, str]] = {}
    for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=list(hosts)):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags[instance["InstanceId"]] = {t["Key"]: t["Value"] for t in instance["Tags"]}
    for instance_id, host in hosts.items():
        assert tags[instance_id]["ops:ssh"] == f"127.0.0.1:{host['ssh_port']}"
        assert tags[instance_id]["ops:app-port"] == str(host["app_port"])
    assert sandbox.env["OPS_SSH_KEY"] == str(sandbox.status["key"])
    trusted = (sandbox.state_dir / "ssh" / "known_hosts").read_text().splitlines()
    for host in hosts.values():
        assert any(line.startswith(f"[127.0.0.1]:{host['ssh_port']} ") for line in trusted)
