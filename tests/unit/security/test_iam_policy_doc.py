"""`ops iam policy` output: per command, narrowed to the environment, refusing unknown names."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ops import iam
from ops.cli.main import cli


def test_policy_for_one_command_grants_only_its_actions() -> None:
    result = CliRunner().invoke(cli, ["iam", "policy", "inventory", "--output", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["commands"] == ["inventory"]
    assert iam.granted(document["operator"]) == set(iam.ACTIONS["inventory"])
    assert not any(a.startswith("s3:") for a in iam.granted(document["operator"]))


def test_all_commands_and_no_bucket() -> None:
    policy = iam.operator_policy(iam.commands([]), region="eu-west-1", bucket=None)
    assert iam.granted(policy) == iam.actions(iam.ACTIONS) - {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
    }
    sids = {s["Sid"] for s in policy["Statement"]}
    assert "SendToTheEnvironment" in sids and "ReadOutput" not in sids
    send = next(s for s in policy["Statement"] if s["Sid"] == "SendToTheEnvironment")
    assert "Condition" not in send  # no target_filter: nothing to narrow by
    assert iam.instance_profile_policy(None)["Statement"][0]["Resource"] == [
        "arn:aws:s3:::OUTPUT_BUCKET/*"
    ]


def test_unknown_command_is_refused_and_local_ones_need_nothing() -> None:
    result = CliRunner().invoke(cli, ["iam", "policy", "deploy-all"])
    assert result.exit_code == 2 and "no command 'deploy-all'" in result.output
    assert iam.commands(["sandbox", "run"]) == ["run"]
    table = CliRunner().invoke(cli, ["iam", "policy", "run"])
    assert table.exit_code == 0
    assert "# operator role: ops run" in table.output and "# instance profile" in table.output
