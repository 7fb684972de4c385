"""One AWS sandbox (moto + the Run Command emulator) shared by the whole test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sandbox_aws_helpers import Ssm

from ops.sandbox.aws_side import AwsSandbox
from ops.sandbox.emulator import Dist, SyntheticProfile

FAST = SyntheticProfile(
    pickup_seconds=Dist.fixed(0.05),
    duration_seconds=Dist.fixed(0.1),
    output_chars=Dist.fixed(64),
)


@pytest.fixture(scope="session")
def aws_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsSandbox]:
    sandbox = AwsSandbox(tmp_path_factory.mktemp("aws-sandbox"), seed=7)
    sandbox.start()
    sandbox.set_throttle(enabled=False)
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def aws(aws_sandbox: AwsSandbox) -> Iterator[AwsSandbox]:
    """The shared sandbox, put back to calm defaults after each test."""
    yield aws_sandbox
    aws_sandbox.clear_faults()
    aws_sandbox.admin.set_throttle(multiplier=1.0, enabled=False)
    aws_sandbox.admin.settings(delivery_timeout_scale=1.0, reboot_seconds=1.0)


@pytest.fixture(scope="session")
def fleet(aws_sandbox: AwsSandbox) -> list[str]:
    return aws_sandbox.add_synthetic(8, tags={"Role": "basic"}, name_prefix="basic", profile=FAST)


@pytest.fixture
def ssm(aws: AwsSandbox) -> Ssm:
    return Ssm(aws.client("ssm", mode="standard", max_attempts=1))
