"""The one place that makes AWS clients.

Endpoint overrides are left to botocore, which already honours
AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>; that is how the sandbox
points SSM at the Run Command emulator and everything else at moto.

Clients come from botocore's session itself: a boto3 client of any service
but S3 is that same botocore client, and importing boto3 (s3transfer and the
resource layer behind it) cost about a tenth of a second of every command's
start-up. S3 clients still come through boto3, for its managed transfers
(`download_file`).

botocore's session and config modules are imported when the first client
is made, not with this module: together they are about a tenth of a second
of CPU, and `ops run --via ssh` spends that time beside its first SSH
handshakes (ops.transports.ssh's warm-up) instead of before them.

A caller that makes only a few calls of a service names them (`operations`):
its client comes from a model cut down to them (ops.aws_models): an EC2
client for the host listing is made in about a third of the time.

Every session parses response timestamps with ops.aws_timestamps: the same
instants, without dateutil's general parser for each of them.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Collection
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from botocore.exceptions import DataNotFoundError

from ops import __version__

if TYPE_CHECKING:
    import botocore.session
    from botocore.config import Config

_lock = threading.Lock()


def client_config(
    max_attempts: int = 10, max_pool_connections: int = 50, retry_mode: str = "adaptive"
) -> Config:
    from botocore.config import Config

    return Config(
        retries={"mode": retry_mode, "max_attempts": max_attempts},
        user_agent_extra=f"fleetops/{__version__}",
        max_pool_connections=max_pool_connections,
        connect_timeout=10,
        read_timeout=60,
    )


_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def session(profile: str | None = None, region: str | None = None) -> botocore.session.Session:
    """One session per profile, region and credentials in the environment.

    A session resolves its credentials once; keyed on the variables too, a
    process whose environment changes (a test pointed at another sandbox, a
    shell that exported new keys for a library caller) never signs with
    credentials it no longer has.
    """
    fingerprint = tuple(os.environ.get(name) for name in _CREDENTIAL_VARIABLES)
    return _session(profile, region, fingerprint)


@lru_cache(maxsize=16)
def _session(
    profile: str | None, region: str | None, _fingerprint: tuple[str | None, ...]
) -> botocore.session.Session:
    return _new_session(profile, region)


def _new_session(profile: str | None, region: str | None) -> botocore.session.Session:
    """What boto3.session.Session(profile_name=..., region_name=...) sets up, minus boto3."""
    import botocore.session

    from ops import aws_timestamps

    made = botocore.session.get_session()
    aws_timestamps.install(made)
    if profile is not None:
        made.set_config_variable("profile", profile)
    if region is not None:
        made.set_config_variable("region", region)
    return made


@lru_cache(maxsize=16)
def _with_transfers(botocore_session: botocore.session.Session) -> Any:
    """boto3's session over the same botocore session: its S3 clients carry the managed
    transfer methods. One per botocore session (each boto3 session adds to the loader's
    search path)."""
    import boto3.session

    return boto3.session.Session(botocore_session=botocore_session)


def client(
    service: str,
    *,
    profile: str | None = None,
    region: str | None = None,
    max_attempts: int = 10,
    max_pool_connections: int = 50,
    retry_mode: str = "adaptive",
    operations: Collection[str] = (),
) -> Any:
    """A client with adaptive retries (or `retry_mode`) and the fleetops user agent.

    With `operations` (their API names, e.g. "DescribeInstances") it may have
    only those: its model is cut down to them (see ops.aws_models), or it is
    the full client when no cut can be had.

    Sessions are not thread-safe to create clients from, so creation is
    serialised; the clients themselves are safe to share between threads.
    """
    config = client_config(max_attempts, max_pool_connections, retry_mode)
    if service == "s3":
        # SigV4 everywhere, presigned URLs included: SigV2 URLs carry an absolute
        # expiry and S3 refuses SigV2 in most regions
        from botocore.config import Config

        config = config.merge(Config(signature_version="s3v4"))
    with _lock:
        sess = session(profile, region)
        if service == "s3":
            made = _with_transfers(sess).client(service, config=config)
        elif operations:
            made = _cut_client(sess, service, operations, config)
        else:
            made = sess.create_client(service, config=config)
    check_region(made.meta.region_name, sess.get_component("data_loader"))
    return made


def _cut_client(
    sess: botocore.session.Session, service: str, operations: Collection[str], config: Config
) -> Any:
    """A client from the model cut to `operations`, else the full one: the same session
    (credentials resolved once), config and endpoint rules either way."""
    from ops import aws_models

    loader = sess.get_component("data_loader")
    pinned = sess.get_config_variable("api_versions").get(service)
    version = aws_models.cut_version(loader, service, operations, pinned)
    if version is not None:
        try:
            made = sess.create_client(service, config=config, api_version=version)
        except (json.JSONDecodeError, DataNotFoundError):  # a cached file cut off or gone
            aws_models.discard(service, operations)
        else:
            if set(operations) <= set(made.meta.service_model.operation_names):
                return made
            aws_models.discard(service, operations)
    return sess.create_client(service, config=config)


def check_region(region: str, loader: Any = None) -> None:
    """Refuse a region botocore has never heard of before any call goes out.

    Otherwise the first call would wait on DNS for a host that cannot exist
    (ec2.<typo>.amazonaws.com) and end in a connection error that names neither.
    """
    from ops.aws_errors import AwsProblem, known_region

    if not known_region(region, loader):
        raise AwsProblem(
            f"unknown AWS region {region!r}: check --region, the region in ops.yml or "
            "AWS_REGION (e.g. us-east-1, eu-west-1)"
        )


def fresh_client(service: str, *, profile: str | None = None, region: str | None = None) -> Any:
    """A client from a new session, no retries: for a diagnosis of the credentials as they
    are now, not as a cached session resolved them earlier in the process."""
    return _new_session(profile, region).create_client(
        service, config=client_config(max_attempts=1)
    )
