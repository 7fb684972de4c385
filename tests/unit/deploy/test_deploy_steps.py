"""Role variables per host, secrets from Parameter Store (moto), and which hosts a deploy
leaves alone."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from ops.config import Settings
from ops.errors import BadInput
from ops.fleet import image_ref
from ops.fleet.discovery import Host
from ops.fleet.parameters import get_secrets
from ops.workflows.deploy import HostView, is_unchanged
from ops.workflows.deploy_probe import ContainerState
from ops.workflows.deploy_spec import parse_spec
from ops.workflows.deploy_steps import PLAYBOOK, host_port, role_vars

DIGEST = "sha256:" + "ef" * 32


def spec(**extra: object):
    data = {
        "repository": "127.0.0.1:5000/hello",
        "port": 8080,
        "health_check": {"http": "/health", "timeout_seconds": 30},
        "environment": {"GREETING": "hi", "API_TOKEN": "ssm:/svc/token"},
        "volumes": ["/var/lib/hello:/data:ro"],
        **extra,
    }
    return parse_spec("hello", Path("hello.yml"), data, environ={})


def test_role_vars_pin_the_digest_and_use_the_hosts_port() -> None:
    image = image_ref.parse("127.0.0.1:5000/hello:v2").with_digest(DIGEST)
    host = Host("i-1", "web-1", tags={"ops:app-port": "41001"})
    values = role_vars(spec(), image, host, {"API_TOKEN": "s3cret"})
    assert values["container_service_image"] == f"127.0.0.1:5000/hello@{DIGEST}"
    assert values["container_service_port"] == 41001
    assert values["container_service_env"] == {"GREETING": "hi"}
    assert values["container_service_secret_env"] == {"API_TOKEN": "s3cret"}
    assert values["container_service_volumes"] == ["/var/lib/hello:/data:ro"]
    assert values["container_service_health_path"] == "/health"
    assert values["container_service_health_timeout"] == 30
    assert values["container_service_replaces"] == []
    placeholder = role_vars(spec(replaces=["fleetops-app"]), image, host, {})
    assert placeholder["container_service_replaces"] == ["fleetops-app"]
    image_check = role_vars(spec(health_check={"image": True}), image, Host("i-2"), {})
    assert image_check["container_service_health_path"] == ""
    assert image_check["container_service_port"] == 8080
    assert PLAYBOOK.is_file()


def test_unresolved_image_and_bad_port_tag_are_refused() -> None:
    with pytest.raises(BadInput, match="not resolved to a digest"):
        role_vars(spec(), image_ref.parse("127.0.0.1:5000/hello:v2"), Host("i-1"), {})
    with pytest.raises(BadInput, match="is not a port number"):
        host_port(spec(), Host("i-1", "web-1", tags={"ops:app-port": "80x"}))


@mock_aws
def test_secrets_come_decrypted_and_a_missing_one_is_bad_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name="/svc/token", Value="s3cret", Type="SecureString")
    assert get_secrets(Settings(), {"API_TOKEN": "/svc/token"}, ssm=ssm) == {"API_TOKEN": "s3cret"}
    assert get_secrets(Settings(), {}, ssm=ssm) == {}
    with pytest.raises(BadInput, match="no parameter /svc/absent"):
        get_secrets(Settings(), {"A": "/svc/token", "B": "/svc/absent"}, ssm=ssm)


def test_only_a_host_running_the_digest_healthy_in_its_groups_is_unchanged() -> None:
    def view(digest: str | None, healthy: bool | None, target: str | None) -> HostView:
        state = ContainerState(True, digest=digest, running=True, healthy=healthy)
        targets = {"web": target} if target else {}
        return HostView(Host("i-1", "web-1"), state, targets, target is not None)

    web = ("web",)
    assert is_unchanged(view(DIGEST, True, "healthy"), DIGEST, web)
    assert not is_unchanged(view("sha256:" + "0" * 64, True, "healthy"), DIGEST, web)
    assert not is_unchanged(view(DIGEST, True, "unhealthy"), DIGEST, web)  # failing the LB
    assert not is_unchanged(view(DIGEST, True, "initial"), DIGEST, web)  # not proven yet
    assert not is_unchanged(view(DIGEST, True, None), DIGEST, web)  # left out of its group
    assert not is_unchanged(view(None, None, "healthy"), None, web)  # nothing resolved
    # the group's verdict wins over one slow answer to the probe
    assert is_unchanged(view(DIGEST, False, "healthy"), DIGEST, web)
    stopped = HostView(Host("i-1", "web-1"), ContainerState(True, digest=DIGEST), {}, False)
    assert not is_unchanged(stopped, DIGEST)  # on the digest but not running
    # without target groups, the container's own check decides
    assert is_unchanged(view(DIGEST, True, None), DIGEST)
    assert not is_unchanged(view(DIGEST, False, None), DIGEST)
    assert not is_unchanged(view(DIGEST, None, None), DIGEST)


def test_parameter_store_refusal_is_an_ops_error() -> None:
    from botocore.stub import Stubber

    from ops import aws
    from ops.errors import OpsError

    ssm = aws.client("ssm", region="us-east-1")
    with Stubber(ssm) as stub:
        stub.add_client_error("get_parameters", "AccessDeniedException")
        with pytest.raises(OpsError, match="AccessDeniedException"):
            get_secrets(Settings(), {"A": "/svc/a"}, ssm=ssm)


@mock_aws
def test_a_target_group_that_does_not_exist_is_bad_input() -> None:
    from ops.fleet.target_groups import target_states

    elbv2 = boto3.client("elbv2", region_name="us-east-1")
    with pytest.raises(BadInput, match="target group not found: absent"):
        target_states(elbv2, ["absent"])
