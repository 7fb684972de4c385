"""AwsSandbox as other processes see it: the state file, attach, the environment, stop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from ops.sandbox.aws_side import AwsSandbox


def test_attach_and_env_reach_the_same_processes(
    aws: AwsSandbox, fleet: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    again = AwsSandbox.attach(aws.state_dir)
    assert again.running()
    assert (again.moto_url, again.ssm_url) == (aws.moto_url, aws.ssm_url)
    env = again.env()
    assert env["AWS_ENDPOINT_URL_SSM"] == aws.ssm_url and env["AWS_ENDPOINT_URL"] == aws.moto_url
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # plain boto3, configured only by the environment, as the CLI will be
    ssm = boto3.session.Session().client("ssm")
    rows = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": fleet[:1]}])[
        "InstanceInformationList"
    ]
    assert [row["InstanceId"] for row in rows] == fleet[:1]
    ec2 = boto3.session.Session().client("ec2")
    assert ec2.describe_instances(InstanceIds=fleet[:1])["Reservations"]


def test_another_process_can_attach(aws: AwsSandbox, fleet: list[str]) -> None:
    code = (
        "import sys; from pathlib import Path; from ops.sandbox.aws_side import AwsSandbox; "
        "sb = AwsSandbox.attach(Path(sys.argv[1])); print(sb.running(), len(sb.calls()) > 0)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(aws.state_dir)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert done.stdout.split() == ["True", "True"]


def test_stop_is_idempotent_and_cleans_up(tmp_path: Path) -> None:
    sandbox = AwsSandbox(tmp_path / "own")
    sandbox.start()
    pid_file = tmp_path / "own" / "moto.pid"
    pids = [int(pid_file.read_text()), int((tmp_path / "own" / "ssm-emulator.pid").read_text())]
    sandbox.stop()
    sandbox.stop()
    assert not sandbox.running()
    assert not pid_file.exists() and not (tmp_path / "own" / "ssm-emulator.pid").exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(RuntimeError):
        AwsSandbox.attach(tmp_path / "own")
