"""`ops iam policy` is exactly what the commands call: checked against the sandbox's call log.

Each command runs on the shared sandbox; `ops sandbox calls` lists what it
called, and who signed each call (the operator's key, or the emulator acting
as the hosts' SSM agent when it writes command output to S3). Every call an
operator made must be granted by that command's policy, every call the
agent made by the instance profile policy, and no policy may grant an action
that no command made. Rare paths are driven on purpose: output past 2,500
and 24,000 characters, and a run cancelled with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.sandbox import REPO, SandboxSession, ops_command

SMALL = str(REPO / "playbooks" / "examples" / "small.yml")
IAM_PREFIX = {"ssm": "ssm", "ec2": "ec2", "s3": "s3", "elbv2": "elasticloadbalancing"}
# API operations IAM authorises under another action's name
# Only their read-only verb runs here (patch plan); the load balancer, alarm,
# ECR and lock actions of `patch run` and `deploy` are not driven by this test.
PARTLY_RUN = {"patch"}
IAM_ACTION = {"s3:HeadObject": "s3:GetObject", "s3:ListObjectsV2": "s3:ListBucket"}
# Granted for a path the sandbox's few hosts never take: a listing longer than one
# DescribeInstances page goes on zone by zone. The fan-out tests drive it (2,000
# instances in tests/integration/fanout/test_fanout_run.py check the zone listings).
LONG_LISTING_ONLY = {"ec2:DescribeAvailabilityZones"}


def calls(sandbox: SandboxSession, since: int = 0) -> list[dict[str, Any]]:
    done = sandbox.ops("sandbox", "calls", "--since", str(since), "--output", "json")
    assert done.returncode == 0, done.stderr
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found


def made(sandbox: SandboxSession, since: int, operator_key: str) -> tuple[set[str], set[str]]:
    """(actions signed by the operator, actions signed by anyone else) after call `since`."""
    operator: set[str] = set()
    others: set[str] = set()
    for call in calls(sandbox, since):
        action = f"{IAM_PREFIX[call['service']]}:{call['operation']}"
        action = IAM_ACTION.get(action, action)
        # the emulator's own calls are SSM served to the operator; moto logs the signer
        signer = call.get("key", operator_key) if call["service"] != "ssm" else operator_key
        (operator if signer == operator_key else others).add(action)
    return operator, others


def policy(sandbox: SandboxSession, command: str) -> tuple[set[str], set[str]]:
    done = sandbox.ops("iam", "policy", command, "--output", "json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)

    def granted(doc: dict[str, Any]) -> set[str]:
        return {a for s in doc["Statement"] for a in s["Action"]}

    return granted(document["operator"]), granted(document["instance_profile"])


def run_cancelled(sandbox: SandboxSession) -> None:
    """`ops run -- sleep 60`, Ctrl-C once the command is sent: it cancels what is in flight."""
    since = len(calls(sandbox))
    proc = subprocess.Popen(
        [*ops_command(), "--yes", "run", "--target", "role=web", "--", "sleep 60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=sandbox.process_env, cwd=REPO,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(c["operation"] == "SendCommand" for c in calls(sandbox, since)):
                break
            time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert any(c["operation"] == "CancelCommand" for c in calls(sandbox, since)), err


def test_each_command_calls_only_what_its_policy_grants(
    sandbox: SandboxSession, tmp_path: Path
) -> None:
    dest = tmp_path / "logs"
    key = sandbox.env["AWS_ACCESS_KEY_ID"]
    debian = sorted(
        h["name"]
        for h in sandbox.status["hosts"]  # type: ignore[attr-defined]
        if h["platform"] == "debian"
    )[0]
    runs: dict[str, list[list[str]]] = {
        "inventory": [
            ["--output", "json", "inventory", "list", "--refresh"],
            ["inventory", "export", "--refresh"],
            ["inventory", "eol", "--refresh"],
        ],
        "run": [
            ["--yes", "run", "--target", "role=web", "--", "uptime"],
            # past the 2,500 characters ListCommandInvocations carries, and past 24,000
            ["--yes", "run", "--target", "role=web", "--", "head -c 3000 /dev/zero | tr '\\0' x"],
            ["--yes", "run", "--target", "role=web", "--", "head -c 30000 /dev/zero | tr '\\0' x"],
        ],
        "playbook": [
            ["--yes", "playbook", SMALL, "--via", "ssh", "--name", debian],
            ["--yes", "playbook", SMALL, "--via", "ssm", "--name", debian],
        ],
        "docker": [["--output", "json", "docker", "status", "--name", debian]],
        "logs": [
            ["--yes", "logs", "collect", "--name", debian, "--since", "1h",
             "--path", "/etc/hostname", "--via", "s3", "--dest", str(dest)],
        ],
        "patch": [["--output", "json", "patch", "plan", "--name", debian]],
    }  # fmt: skip
    # `docker status` answers 1 when a host drifts from the settings (no engine here)
    allowed = {"docker": (0, 1)}
    operator_all: set[str] = set()
    agent_all: set[str] = set()
    granted_all: set[str] = set()
    for command, argvs in runs.items():
        since = len(calls(sandbox))
        for argv in argvs:
            done = sandbox.ops(*argv, timeout=600)
            assert done.returncode in allowed.get(command, (0,)), (argv, done.stderr[-2000:])
        if command == "run":
            run_cancelled(sandbox)
        operator, agent = made(sandbox, since, key)
        granted, instance = policy(sandbox, command)
        assert operator <= granted, f"ops {command} called {operator - granted} ungranted"
        assert agent <= instance, f"the hosts did {agent - instance} ungranted"
        operator_all |= operator
        agent_all |= agent
        if command not in PARTLY_RUN:
            granted_all |= granted
        if command == "inventory":
            assert granted - LONG_LISTING_ONLY == operator, (
                "ops inventory's policy grants more than it calls"
            )
    assert granted_all >= LONG_LISTING_ONLY
    granted_all -= LONG_LISTING_ONLY
    assert granted_all == operator_all, f"granted, never called: {granted_all - operator_all}"
    _, instance = policy(sandbox, "playbook")
    assert instance == agent_all == {"s3:PutObject"}


def test_policy_is_narrowed_to_the_environment(sandbox: SandboxSession) -> None:
    done = sandbox.ops("iam", "policy", "playbook", "--output", "json")
    document = json.loads(done.stdout)["operator"]
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["SendTheOneDocument"]["Resource"] == [
        "arn:aws:ssm:us-east-1::document/AWS-RunShellScript"
    ]
    assert by_sid["SendToTheEnvironment"]["Condition"] == {
        "StringEquals": {"ssm:resourceTag/Env": "sandbox"}
    }
    assert by_sid["StageBundles"]["Resource"] == [
        "arn:aws:s3:::fleetops-sandbox-output/ops/pull/*",  # output_prefix ops/
        "arn:aws:s3:::fleetops-sandbox-output/ops/logs/*",
    ]
    deploy = json.loads(sandbox.ops("iam", "policy", "deploy", "--output", "json").stdout)
    statements = {s["Sid"]: s for s in deploy["operator"]["Statement"]}
    assert statements["DrainAndRegister"]["Resource"] == [
        "arn:aws:elasticloadbalancing:us-east-1:*:targetgroup/web/*"  # the env's target group
    ]
    assert statements["TeamLock"]["Resource"] == [
        "arn:aws:dynamodb:us-east-1:*:table/fleetops-locks"
    ]
    bad = sandbox.ops("iam", "policy", "deploy-all")
    assert bad.returncode == 2 and "no command 'deploy-all'" in bad.stderr
