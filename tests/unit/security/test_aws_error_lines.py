"""Each botocore failure `explain` knows becomes one line naming cause and remedy.

The sandbox tests drive the common ones through the CLI; these reach the
branches a sandbox cannot produce (a missing profile, an SSO session, no
region, a remote endpoint, a refusal AWS words without an action).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoRegionError,
    ProfileNotFound,
    TokenRetrievalError,
)
from click.testing import CliRunner

from ops.aws_errors import AwsProblem, explain, known_region
from ops.cli.main import cli


def client_error(code: str, message: str = "", operation: str = "DescribeInstances") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def line(exc: BaseException, **where: str | None) -> str:
    problem = explain(exc, profile=where.get("profile"), region=where.get("region", "us-east-1"))
    assert isinstance(problem, AwsProblem) and int(problem.exit_code) == 2
    return str(problem)


def test_branches_the_sandbox_cannot_reach() -> None:
    assert "--profile" in line(ProfileNotFound(profile="prod"))
    sso = line(TokenRetrievalError(provider="sso", error_msg="expired"), profile="prod")
    assert "expired" in sso and "aws sso login --profile prod" in sso
    assert "--region" in line(NoRegionError())
    remote = line(EndpointConnectionError(endpoint_url="https://ssm.eu-west-1.amazonaws.com/"))
    assert "cannot reach https://ssm.eu-west-1.amazonaws.com/" in remote
    typo = line(EndpointConnectionError(endpoint_url="https://ec2.eu-wets-1.amazonaws.com/"),
                region="eu-wets-1")  # fmt: skip
    assert "unknown AWS region 'eu-wets-1'" in typo


def test_access_denied_without_an_action_in_the_message_names_the_operation() -> None:
    worded = line(client_error("UnauthorizedOperation", "You are not authorized."))
    assert "access denied: DescribeInstances (UnauthorizedOperation)" in worded
    full = line(
        client_error(
            "AccessDeniedException",
            "User: arn:aws:iam::1:user/x is not authorized to perform: ssm:SendCommand on "
            "resource: arn:aws:ssm:us-east-1::document/AWS-RunShellScript because ...",
            "SendCommand",
        )
    )
    assert "ssm:SendCommand on arn:aws:ssm:us-east-1::document/AWS-RunShellScript" in full


def test_errors_it_does_not_know_are_left_alone() -> None:
    assert explain(client_error("ValidationException"), profile=None, region="us-east-1") is None


def test_regions_are_known_from_botocore_data() -> None:
    assert known_region("us-east-1") and known_region("eu-central-2")
    assert not known_region("us-esat-1")


def test_missing_profile_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    result = CliRunner().invoke(cli, ["--profile", "nosuch-ops-test", "inventory", "list"])
    assert result.exit_code == 2, result.output
    assert "nosuch-ops-test" in result.output and "Traceback" not in result.output
