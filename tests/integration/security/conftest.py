"""One moto server and Run Command emulator (no container hosts) for the AWS error tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ops.sandbox.aws_side import AwsSandbox

OUTPUT_BUCKET = "fleetops-sandbox-output"


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsSandbox]:
    sandbox = AwsSandbox(tmp_path_factory.mktemp("security-aws"), seed=14)
    sandbox.start()
    try:
        sandbox.client("s3").create_bucket(Bucket=OUTPUT_BUCKET)
        yield sandbox
    finally:
        sandbox.stop()
