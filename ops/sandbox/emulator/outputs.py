"""The emulator's own calls to moto: writing command output to S3, terminating instances.

Clients are made lazily and shared: botocore clients are thread-safe, and
making one costs tens of milliseconds, too much per invocation.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config


class MotoSide:
    def __init__(self, moto_url: str, region: str) -> None:
        self._url = moto_url
        self._region = region
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = boto3.session.Session().client(
                    service,
                    endpoint_url=self._url,
                    region_name=self._region,
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                    config=Config(retries={"mode": "standard", "max_attempts": 3}),
                )
            return self._clients[service]

    def put_object(self, bucket: str, key: str, text: str) -> None:
        self.client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"))

    def terminate_instance(self, instance_id: str) -> None:
        self.client("ec2").terminate_instances(InstanceIds=[instance_id])
