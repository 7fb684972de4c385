"""The `patch` section of ops.yml: validated, and refused with the file and key named."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli.main import cli
from ops.config import PatchSettings, load_settings
from ops.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    env = tmp_path / "inventories" / "staging"
    env.mkdir(parents=True, exist_ok=True)
    (env / "ops.yml").write_text(text)
    return tmp_path / "inventories"


def test_patch_section_is_read(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        "patch:\n  exclude: ['docker*', kernel*]\n  approve_after_days: 7\n"
        "  undated: hold\n  max_unavailable: 50%\n",
    )
    settings = load_settings("staging", environ={}, root=root)
    assert settings.patch == PatchSettings(["docker*", "kernel*"], 7, "hold", "50%")


def test_defaults_without_a_patch_section(tmp_path: Path) -> None:
    settings = load_settings("staging", environ={}, root=write(tmp_path, "region: eu-west-1\n"))
    assert settings.patch == PatchSettings([], 0, "approve", "25%")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("patch: [a]", "patch must be a mapping"),
        ("patch:\n  approve_after_days: soon", "patch.approve_after_days must be a whole number"),
        ("patch:\n  approve_after_days: -1", "patch.approve_after_days must be a whole number"),
        ("patch:\n  approve_after_days: true", "patch.approve_after_days must be a whole number"),
        ("patch:\n  exclude: docker*", "patch.exclude must be a list of package globs"),
        ("patch:\n  exclude: [1]", "patch.exclude must be a list of package globs"),
        ("patch:\n  undated: maybe", "patch.undated must be approve or hold"),
        ("patch:\n  max_unavailable: 0", "patch.max_unavailable must be a count"),
        ("patch:\n  max_unavailable: 150%", "patch.max_unavailable must be a count"),
        ("patch:\n  wave: 2", "unknown key patch.wave"),
    ],
)
def test_bad_patch_settings_name_the_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    root = write(tmp_path, body + "\n")
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings("staging", environ={}, root=root)
    assert str(root / "staging" / "ops.yml") in str(caught.value)


def test_the_cli_exits_2_on_a_bad_patch_setting(tmp_path: Path) -> None:
    root = write(tmp_path, "patch:\n  approve_after_days: soon\n")
    result = CliRunner().invoke(
        cli, ["--env", "staging", "patch", "plan"], env={"OPS_INVENTORIES": str(root)}
    )
    assert result.exit_code == 2
    assert "ops.yml: patch.approve_after_days must be" in result.output


def test_plan_refuses_a_zero_wave_before_any_aws_call(tmp_path: Path) -> None:
    root = write(tmp_path, "region: eu-west-1\n")
    env = {
        "OPS_INVENTORIES": str(root),
        "OPS_STATE_DIR": str(tmp_path / "state"),
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: any call would fail
    }
    result = CliRunner().invoke(cli, ["--env", "staging", "patch", "plan", "--wave", "0"], env=env)
    assert result.exit_code == 2, result.output
    assert "--wave must be at least 1" in result.output
