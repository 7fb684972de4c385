"""The client factory: retries, user agent and the per-service endpoint overrides."""

from __future__ import annotations

import pytest

from ops import __version__, aws


@pytest.fixture(autouse=True)
def dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)


def test_adaptive_retries_attempts_and_user_agent() -> None:
    ssm = aws.client("ssm", region="eu-west-1", max_attempts=7)
    config = ssm.meta.config
    # botocore's max_attempts counts retries; the first call comes on top
    assert config.retries["mode"] == "adaptive"
    assert config.retries["total_max_attempts"] == 8
    assert f"fleetops/{__version__}" in config.user_agent_extra
    assert ssm.meta.region_name == "eu-west-1"


def test_per_service_endpoint_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:5001")
    assert aws.client("ssm", region="us-east-1").meta.endpoint_url == "http://127.0.0.1:5001"
    assert aws.client("ec2", region="us-east-1").meta.endpoint_url == "http://127.0.0.1:5000"
