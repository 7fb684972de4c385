"""Settings precedence (flag > OPS_* > ops.yml > default) and every refusal of bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli.main import cli
from ops.config import Settings, load_settings
from ops.errors import ConfigError


@pytest.fixture
def inventories(tmp_path: Path) -> Path:
    env = tmp_path / "inventories" / "staging"
    env.mkdir(parents=True)
    (env / "ops.yml").write_text(
        "region: eu-west-1\nprofile: from-file\nmax_attempts: 4\n"
        "target_filter:\n  Env: staging\nconcurrency: 20%\n"
    )
    return tmp_path / "inventories"


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    settings = load_settings("sandbox", environ={}, root=tmp_path)
    assert settings == Settings(env="sandbox")


def test_file_beats_default(inventories: Path) -> None:
    settings = load_settings("staging", environ={}, root=inventories)
    assert settings.region == "eu-west-1"
    assert settings.max_attempts == 4
    assert settings.target_filter == {"Env": "staging"}
    assert settings.concurrency == "20%"
    assert settings.ssh_user == "root"  # default still applies where the file is silent


def test_variable_beats_file(inventories: Path) -> None:
    environ = {"OPS_REGION": "ap-south-1", "OPS_MAX_ATTEMPTS": "7", "OPS_TARGET_FILTER": "Role=web"}
    settings = load_settings("staging", environ=environ, root=inventories)
    assert settings.region == "ap-south-1"
    assert settings.max_attempts == 7
    assert settings.target_filter == {"Role": "web"}
    assert settings.profile == "from-file"


def test_flag_beats_variable_and_file(inventories: Path) -> None:
    environ = {"OPS_REGION": "ap-south-1", "OPS_PROFILE": "from-env"}
    settings = load_settings(
        "staging", flags={"region": "us-west-2", "profile": None}, environ=environ, root=inventories
    )
    assert settings.region == "us-west-2"
    assert settings.profile == "from-env"  # a flag left unset does not hide the variable


def test_env_name_from_variable(inventories: Path) -> None:
    settings = load_settings(None, environ={"OPS_ENV": "staging"}, root=inventories)
    assert settings.env == "staging"
    assert settings.region == "eu-west-1"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("regoin: us-east-1\n", "unknown key 'regoin'"),
        ("max_attempts: many\n", "max_attempts must be a whole number"),
        ("max_attempts: 0\n", "max_attempts must be a whole number"),
        ("max_attempts: true\n", "max_attempts must be a whole number"),
        ("target_filter: [a, b]\n", "target_filter must be a mapping"),
        ("target_groups: web\n", "target_groups must be a list"),
        ("target_groups: [1, 2]\n", "target_groups must be a list"),
        ("region: [us-east-1]\n", "region must be a region name"),
        ("ssh_networks: 10.0.0.0/8\n", "ssh_networks must be a list of networks"),
        ("ssh_networks: [10.0.0.0/33]\n", "'10.0.0.0/33' is not a network"),
        ("region: us-east-1\n  bad: : indent\n", "not valid YAML at line"),
        ("- just\n- a list\n", "expected a mapping of settings"),
    ],
)
def test_bad_file_is_refused(tmp_path: Path, content: str, fragment: str) -> None:
    env = tmp_path / "prod"
    env.mkdir()
    (env / "ops.yml").write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_settings("prod", environ={}, root=tmp_path)
    message = str(caught.value)
    assert fragment in message
    assert str(env / "ops.yml") in message
    assert caught.value.exit_code == 2


def test_undecodable_file_is_refused(tmp_path: Path) -> None:
    env = tmp_path / "prod"
    env.mkdir()
    (env / "ops.yml").write_bytes(b"region: \xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot read settings"):
        load_settings("prod", environ={}, root=tmp_path)


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"OPS_MAX_ATTEMPTS": "lots"}, "OPS_MAX_ATTEMPTS: max_attempts must be"),
        ({"OPS_MAX_ATTEMPTS": "99"}, "max_attempts must be"),
        ({"OPS_TARGET_FILTER": "Role"}, "expected tag=value"),
        ({"OPS_SSH_NETWORKS": "127.0.0.0/8,loopback"}, "'loopback' is not a network"),
    ],
)
def test_bad_variable_is_refused(tmp_path: Path, environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings("sandbox", environ=environ, root=tmp_path)


def test_unknown_or_malformed_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has no folder"):
        load_settings("nowhere", environ={}, root=tmp_path)
    with pytest.raises(ConfigError, match="not valid"):
        load_settings("../etc", environ={}, root=tmp_path)


def test_cli_refuses_bad_settings_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / "broken"
    env.mkdir()
    (env / "ops.yml").write_text("colour: blue\n")
    monkeypatch.setenv("OPS_INVENTORIES", str(tmp_path))
    from ops.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["--env", "broken", "runs", "list"])
    assert exited.value.code == 2


def test_shipped_environments_load(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[3] / "inventories"
    for env in ("sandbox", "staging", "production"):
        assert load_settings(env, environ={}, root=root).env == env
    assert load_settings("sandbox", environ={}, root=root).ssh_networks == ["127.0.0.0/8"]


def test_help_works_even_with_broken_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_INVENTORIES", str(tmp_path))
    result = CliRunner().invoke(cli, ["--env", "missing", "--help"])
    assert result.exit_code == 0
    assert "runs" in result.output
