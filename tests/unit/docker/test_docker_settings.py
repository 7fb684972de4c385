"""The `docker:` section of ops.yml: defaults, each key checked, and refusals that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli import docker as docker_cli
from ops.cli.main import cli
from ops.config import DockerSettings, load_settings
from ops.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    env = tmp_path / "inventories" / "staging"
    env.mkdir(parents=True)
    (env / "ops.yml").write_text(text)
    return tmp_path / "inventories"


def test_defaults_are_the_ec2_users_10m_by_3_and_live_restore(tmp_path: Path) -> None:
    settings = load_settings("sandbox", environ={}, root=tmp_path)
    assert settings.docker == DockerSettings(("ec2-user", "ssm-user"), "10m", 3, True)


def test_a_docker_section_is_read(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        "docker:\n  users: [deploy, ec2-user]\n  log_max_size: 50m\n"
        "  log_max_file: 5\n  live_restore: false\n",
    )
    docker = load_settings("staging", environ={}, root=root).docker
    assert docker == DockerSettings(("deploy", "ec2-user"), "50m", 5, False)


def test_keys_left_out_keep_their_defaults(tmp_path: Path) -> None:
    root = write(tmp_path, "docker:\n  log_max_file: 7\n")
    docker = load_settings("staging", environ={}, root=root).docker
    assert (docker.users, docker.log_max_file) == (("ec2-user", "ssm-user"), 7)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("docker:\n  users: ec2-user\n", "docker.users must be a list of user names"),
        ("docker:\n  users: [ec2-user, 'x; rm -rf /']\n", "is not a valid user name"),
        ("docker:\n  users: [3]\n", "is not a valid user name"),
        ("docker:\n  log_max_size: ten\n", "docker.log_max_size must be a size"),
        ("docker:\n  log_max_file: 0\n", "docker.log_max_file must be a whole number from 1"),
        ("docker:\n  log_max_file: '3'\n", "docker.log_max_file must be"),
        ("docker:\n  live_restore: 'yes'\n", "docker.live_restore must be true or false"),
        ("docker:\n  max_size: 10m\n", "unknown key docker.max_size"),
        ("docker: [users]\n", "docker must be a mapping"),
    ],
)
def test_bad_docker_settings_are_refused_naming_file_and_key(
    tmp_path: Path, section: str, message: str
) -> None:
    root = write(tmp_path, section)
    with pytest.raises(ConfigError) as raised:
        load_settings("staging", environ={}, root=root)
    assert message in str(raised.value)
    assert str(root / "staging" / "ops.yml") in str(raised.value)


def test_users_not_a_list_exits_2_before_any_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write(tmp_path, "docker:\n  users: ec2-user\n")
    monkeypatch.setenv("OPS_INVENTORIES", str(root))
    touched: list[str] = []
    monkeypatch.setattr(docker_cli, "resolve_hosts", lambda *a, **k: touched.append("hosts"))
    result = CliRunner().invoke(cli, ["--env", "staging", "docker", "install", "--yes"])
    assert result.exit_code == 2, result.output
    assert "docker.users must be a list" in result.output
    assert "staging/ops.yml" in result.output
    assert touched == []
