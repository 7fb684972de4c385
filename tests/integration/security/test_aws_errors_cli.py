"""AWS failures through `ops` as a user runs it: one line with cause and remedy, no traceback.

The sandbox's Run Command emulator answers as SSM does: an unknown key, an
expired session token, AccessDenied for an action it was told to refuse;
a closed loopback port stands for a sandbox that is down.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ops.sandbox.aws_side import AwsSandbox
from ops.sandbox.emulator.auth import session_token
from ops.sandbox.hosts import free_port
from tests.support.sandbox import REPO, ops_command

SUITE = "errors"


def ops(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ops_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


@pytest.fixture
def env(aws: AwsSandbox, isolated_state: Path, tmp_path: Path) -> dict[str, str]:
    """The sandbox's variables, and nothing from the machine's own AWS set-up."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    return {
        **base,
        **aws.env(),
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
        "OPS_ENV": "sandbox",
        "OPS_STATE_DIR": str(isolated_state),
        "OPS_MAX_ATTEMPTS": "2",
    }


@pytest.fixture(scope="module")
def hosts(aws: AwsSandbox) -> list[str]:
    return aws.add_synthetic(120, tags={"Suite": SUITE, "Env": "sandbox"}, name_prefix=SUITE)


def one_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert done.returncode == code, (done.returncode, done.stdout[-1000:], done.stderr[-3000:])
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def sends(aws: AwsSandbox, since: int) -> list[dict[str, Any]]:
    return [c for c in aws.calls(since) if c["operation"] == "SendCommand"]


def last_seq(aws: AwsSandbox) -> int:
    calls = aws.calls()
    return int(calls[-1]["seq"]) if calls else 0


RUN = ("--yes", "run", "--target", f"suite={SUITE}", "--", "uptime")


def test_no_credentials(env: dict[str, str], aws: AwsSandbox, hosts: list[str]) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(key)
    mark = last_seq(aws)
    for args in (RUN, ("inventory", "list")):
        line = one_line(ops(env, *args), 2, "no AWS credentials", "profile default")
        assert "aws sso login --profile" in line and "ops sandbox env" in line
        assert "region us-east-1" in line
    assert sends(aws, mark) == []


def test_expired_and_unknown_tokens(env: dict[str, str], aws: AwsSandbox, hosts: list[str]) -> None:
    mark = last_seq(aws)
    secret = aws.credentials.secret_access_key
    env["AWS_SESSION_TOKEN"] = session_token(secret, time.time() - 60)
    one_line(ops(env, *RUN), 2, "have expired", "ExpiredTokenException", "aws sso login")
    env["AWS_SESSION_TOKEN"] = aws.credentials.session_token
    env["AWS_ACCESS_KEY_ID"] = "AKIAANOTHERLOCALUSER"
    one_line(ops(env, *RUN), 2, "does not accept the credentials", "UnrecognizedClientException")
    assert sends(aws, mark) == []


def test_access_denied_before_anything_changes(
    env: dict[str, str], aws: AwsSandbox, hosts: list[str]
) -> None:
    mark = last_seq(aws)
    aws.admin.deny(["ssm:DescribeInstanceInformation"])
    try:
        line = one_line(ops(env, *RUN), 2, "access denied", "ssm:DescribeInstanceInformation")
    finally:
        aws.admin.deny([])
    assert "ops iam policy" in line and "on arn:aws:ssm:" in line
    assert sends(aws, mark) == []


def test_access_denied_mid_run_stops_sending(
    env: dict[str, str], aws: AwsSandbox, hosts: list[str]
) -> None:
    mark = last_seq(aws)
    aws.admin.deny(["ssm:SendCommand"])
    try:
        done = ops(env, "--output", "json", *RUN[:-2], "--concurrency", "50", "--", "uptime")
    finally:
        aws.admin.deny([])
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    # the first batch was refused; no other batch was sent after it
    assert report["summary"] == {"Undeliverable": 50, "NotStarted": 70}, report["summary"]
    assert len(sends(aws, mark)) == 1
    note = next(ln for ln in done.stderr.splitlines() if "access denied" in ln)
    assert "ssm:SendCommand" in note and "stopped sending" in note and "70 hosts" in note


def test_endpoint_that_does_not_answer(env: dict[str, str], hosts: list[str]) -> None:
    port = free_port()
    env["AWS_ENDPOINT_URL_SSM"] = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    line = one_line(ops(env, *RUN), 2, f"127.0.0.1:{port}", "sandbox may be down")
    assert time.monotonic() - started < 60
    env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    assert "ops sandbox up" in one_line(ops(env, "inventory", "list"), 2, "nothing answers")
    # -v adds the traceback to the same line
    verbose = ops(env, "-v", "inventory", "list")
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr
    assert line.startswith("ops: error: ")


def test_unknown_region(env: dict[str, str], aws: AwsSandbox) -> None:
    mark = last_seq(aws)
    one_line(ops(env, "--region", "us-esat-1", *RUN), 2, "unknown AWS region 'us-esat-1'")
    one_line(ops(env, "--region", "us-esat-1", "inventory", "list"), 2, "unknown AWS region")
    assert aws.calls(mark) == []
