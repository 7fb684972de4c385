"""`ops run` refuses bad input with exit 2 before it reaches AWS."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli.main import cli
from ops.workflows import run as run_workflow


@pytest.fixture(autouse=True)
def no_aws(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    touched: list[str] = []

    def refuse(*_args: object, **_kwargs: object) -> None:
        touched.append("aws")
        raise AssertionError("AWS was called for bad input")

    monkeypatch.setattr(run_workflow, "discover_hosts", refuse)
    monkeypatch.setattr(run_workflow, "open_transport", refuse)
    return touched


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0", "--", "uptime"], "--concurrency"),
        (["--max-errors", "120%", "--", "uptime"], "--max-errors"),
        (["--timeout", "-1", "--", "uptime"], "--timeout"),
        ([], "no command"),
        (["--", "  "], "empty"),
        (["--from-file", "/nonexistent/ids.txt", "--", "uptime"], "cannot read"),
        (["--target", "role", "--", "uptime"], "--target"),
        (["--instance", "web-1", "--", "uptime"], "not an instance id"),
    ],
)
def test_bad_input_exits_2_without_aws(args: list[str], message: str, no_aws: list[str]) -> None:
    base = (
        ["run"]
        if "--from-file" in args or "--instance" in args
        else ["run", "--target", "role=web"]
    )
    result = CliRunner().invoke(cli, [*base, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert no_aws == []


def test_no_target_exits_2() -> None:
    result = CliRunner().invoke(cli, ["run", "--", "uptime"])
    assert result.exit_code == 2 and "no target" in result.output


def test_unreadable_script_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["run", "--target", "role=web", "--script", str(tmp_path / "nope.sh")]
    )
    assert result.exit_code == 2 and "--script" in result.output


def test_argument_lists_are_quoted_for_the_shell() -> None:
    assert run_workflow.commands_from(("echo", "a b; rm -rf /"), None) == ["echo 'a b; rm -rf /'"]
    assert run_workflow.commands_from(("uptime; df -h",), None) == ["uptime; df -h"]
