"""Service specs: every refusal names the file and the field, and no secret sits in plain text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.errors import BadInput
from ops.workflows.deploy_spec import load_spec, parse_spec

REPO_ROOT = Path(__file__).resolve().parents[3]


def base() -> dict[str, Any]:
    return {
        "repository": "reg.example.com/team/web",
        "port": 8080,
        "health_check": {"http": "/health"},
    }


def spec(**changes: Any) -> Any:
    data = base()
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return parse_spec("web", Path("services/web.yml"), data, environ={})


def test_defaults_fill_a_minimal_spec() -> None:
    result = spec()
    assert result.container_name == "web"
    assert result.restart == "unless-stopped"
    assert (result.batch_size, result.min_healthy, result.drain_seconds) == ("50%", "50%", 30)
    assert result.health_check.kind == "http" and result.health_check.port is None
    assert result.repository.name == "reg.example.com/team/web"
    assert result.registry_auth == "none"


def test_the_sandbox_hello_spec_validates() -> None:
    result = load_spec(
        "sandbox",
        "hello",
        root=REPO_ROOT / "inventories",
        environ={"OPS_SANDBOX_REGISTRY": "127.0.0.1:5999"},
    )
    assert result.repository.name == "127.0.0.1:5999/hello"
    assert result.secrets == {"HELLO_API_TOKEN": "/fleetops/sandbox/hello/api-token"}
    assert result.environment["GREETING"].startswith("hello")
    assert result.volumes[0].docker_arg() == "/var/lib/hello:/data"
    assert result.target_groups == ("web",)
    assert result.hosts == {"Role": "web"}


def test_unset_variable_in_repository_is_refused() -> None:
    with pytest.raises(BadInput, match=r"hello.yml: repository: \$\{OPS_SANDBOX_REGISTRY\}"):
        load_spec("sandbox", "hello", root=REPO_ROOT / "inventories", environ={})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"health_check": None}, "health_check: is required"),
        ({"health_check": {"http": "health"}}, "health_check.http"),
        ({"health_check": {"http": "/h", "port": 0}}, "health_check.port"),
        ({"health_check": {"http": "/h", "retries": 3}}, "health_check.retries"),
        ({"repository": None}, "repository: is required"),
        ({"repository": "Reg/App"}, "repository:"),
        ({"repository": "reg.example.com/app:v1"}, "repository:.*must not carry a tag"),
        ({"port": "8080"}, "port:"),
        ({"port": 70000}, "port:"),
        ({"batch_size": 0}, "batch_size: must be at least 1"),
        ({"batch_size": "150%"}, "batch_size: a percentage cannot exceed"),
        ({"min_healthy": "half"}, "min_healthy:"),
        ({"drain_seconds": -1}, "drain_seconds:"),
        ({"restart": "sometimes"}, "restart:"),
        ({"container_name": "bad name"}, "container_name:"),
        ({"volumes": ["./rel:/data"]}, r"volumes\[0\]"),
        ({"volumes": ["/etc:/data:rx"]}, r"volumes\[0\]"),
        ({"volumes": ["/a/../b:/data"]}, r"volumes\[0\]"),
        ({"environment": {"1BAD": "x"}}, "environment.1BAD"),
        (
            {"environment": {"DB_PASSWORD": "hunter2"}},
            "environment.DB_PASSWORD: looks like a secret",
        ),
        ({"environment": {"API_KEY": "abc"}}, "environment.API_KEY: looks like a secret"),
        ({"environment": {"X": "ssm:relative"}}, "environment.X"),
        ({"environment": {"X": ["a"]}}, "environment.X"),
        ({"target_groups": "web"}, "target_groups:"),
        ({"registry_auth": "basic"}, "registry_auth:"),
        ({"replaces": "nginx"}, "replaces: must be a list"),
        ({"replaces": ["nginx; reboot"]}, "replaces: must be a list"),
        ({"colour": "blue"}, "colour: unknown key"),
        ({"hosts": ["web"]}, "hosts: must be a mapping"),
        ({"hosts": {"Role": True}}, "hosts.Role"),
    ],
)
def test_refusals_name_file_and_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(BadInput, match=rf"services/web.yml: {field}"):
        spec(**changes)


def test_secret_reference_and_image_health_check_are_accepted() -> None:
    result = spec(
        environment={"DB_PASSWORD": "ssm:/prod/db/password", "WORKERS": 4},
        health_check={"image": True},
    )
    assert result.secrets == {"DB_PASSWORD": "/prod/db/password"}
    assert result.environment == {"WORKERS": "4"}
    assert result.health_check.kind == "image"


def test_ecr_repository_defaults_to_ecr_login() -> None:
    result = spec(repository="123456789012.dkr.ecr.us-east-1.amazonaws.com/web")
    assert result.registry_auth == "ecr"


def test_missing_and_broken_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such service spec"):
        load_spec("sandbox", "absent", root=tmp_path)
    services = tmp_path / "sandbox" / "services"
    services.mkdir(parents=True)
    (services / "broken.yml").write_text("repository: [unclosed\n")
    with pytest.raises(BadInput, match=r"broken\.yml: not valid YAML at line"):
        load_spec("sandbox", "broken", root=tmp_path)
    (services / "list.yml").write_text(yaml.safe_dump(["a"]))
    with pytest.raises(BadInput, match=r"list\.yml: expected a mapping"):
        load_spec("sandbox", "list", root=tmp_path)
    with pytest.raises(BadInput, match="service name"):
        load_spec("sandbox", "../etc", root=tmp_path)
