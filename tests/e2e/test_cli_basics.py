"""The installed `ops` command as a user runs it from a shell."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops import __version__

OPS = (
    str(Path(sys.executable).parent / "ops")
    if (Path(sys.executable).parent / "ops").exists()
    else (shutil.which("ops") or "ops")
)


def run_ops(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPS, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def test_help_lists_every_group_with_one_line() -> None:
    result = run_ops("--help")
    assert result.returncode == 0
    commands = result.stdout.split("Commands:")[1].splitlines()
    names = {line.split()[0] for line in commands if line.startswith("  ") and line.strip()}
    assert {"runs", "completion"} <= names


def test_version() -> None:
    result = run_ops("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_runs_list_json_on_an_empty_journal() -> None:
    result = run_ops("runs", "list", "--output", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_completion_script() -> None:
    result = run_ops("completion", "bash")
    assert result.returncode == 0
    assert "_OPS_COMPLETE" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--output", "yaml", "runs", "list"],
        ["runs", "show", "no-such-run"],
        ["--env", "../x", "runs", "list"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    result = run_ops(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines()[-1].lower().startswith(("ops: error:", "error:"))


def test_no_color_is_honoured() -> None:
    result = run_ops("runs", "list", env={"NO_COLOR": "1", "TERM": "xterm-256color"})
    assert result.returncode == 0
    assert "\x1b[" not in result.stdout
