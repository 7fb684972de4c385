"""AWS failures as one line that says what is wrong and how to mend it.

botocore's own exceptions end in a long traceback that names neither the
profile nor the remedy; an on-call engineer at 3 a.m. needs "no credentials
for profile X in region Y: run `aws sso login --profile X`". The root
group turns every botocore exception a command lets through into an
AwsProblem here (exit 2: the command stopped before it changed anything);
`-v` adds the traceback.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)

from ops.errors import BadInput

EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
INVALID = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "AuthFailure",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "IncompleteSignature",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "MissingAuthenticationToken",
}
DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "Forbidden",
}
_DENIAL = re.compile(r"perform: (?P<action>[\w-]+:\w+)(?: on resource: (?P<resource>\S+))?")
SANDBOX_HINT = 'eval "$(ops sandbox env)"'
AWS_ERRORS = (BotoCoreError, ClientError)  # what the root group hands to explain()


class AwsProblem(BadInput):
    """An AWS call was refused or unreachable; the message carries cause and remedy."""


def is_access_denied(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and _code(exc) in DENIED


def denial(exc: ClientError) -> str:
    """'ssm:SendCommand on arn:...' from AWS's message, else the operation that was refused."""
    message = str(exc.response.get("Error", {}).get("Message", ""))
    match = _DENIAL.search(message)
    if match:
        resource = (match["resource"] or "").rstrip(".,")
        return f"{match['action']}" + (f" on {resource}" if resource else "")
    return f"{exc.operation_name}"


def explain(exc: BaseException, *, profile: str | None, region: str | None) -> AwsProblem | None:
    """The one-line AwsProblem for a botocore failure, or None if it is not one of ours."""
    who = f"profile {profile or os.environ.get('AWS_PROFILE') or 'default'}"
    where = f"region {region or '(none)'}"
    login = f"aws sso login --profile {profile or os.environ.get('AWS_PROFILE') or 'NAME'}"
    if isinstance(exc, ProfileNotFound):
        return AwsProblem(f"AWS {exc}; name a profile from ~/.aws/config with --profile")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AwsProblem(
            f"no AWS credentials for {who} in {where}: run `{login}`, or `{SANDBOX_HINT}` "
            "for the local sandbox"
        )
    if isinstance(exc, TokenRetrievalError | UnauthorizedSSOTokenError | SSOError):
        return AwsProblem(f"the AWS session for {who} has expired: run `{login}`")
    if isinstance(exc, NoRegionError):
        return AwsProblem("no AWS region: give --region, set region in ops.yml or AWS_REGION")
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return _unreachable(exc, region)
    if isinstance(exc, ClientError):
        code = _code(exc)
        if code in EXPIRED:
            return AwsProblem(
                f"the AWS credentials for {who} have expired ({code} on {exc.operation_name}): "
                f"run `{login}` for fresh ones"
            )
        if code in INVALID:
            return AwsProblem(
                f"AWS does not accept the credentials of {who} ({code} on {exc.operation_name}):"
                f" check the keys in use, run `{login}`, or `{SANDBOX_HINT}` for the sandbox"
            )
        if code in DENIED:
            return AwsProblem(
                f"access denied: {denial(exc)} ({code}); grant it to the role in use, "
                "`ops iam policy` prints what each command needs"
            )
    return None


def _unreachable(exc: BotoCoreError, region: str | None) -> AwsProblem:
    url = str(getattr(exc, "kwargs", {}).get("endpoint_url", "")) or "the AWS endpoint"
    if region and not known_region(region):
        return AwsProblem(
            f"unknown AWS region {region!r} (nothing answers at {url}): check --region, "
            "ops.yml's region or AWS_REGION"
        )
    parts = urlsplit(url)
    if parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return AwsProblem(
            f"nothing answers at {url}: the local sandbox may be down (`ops sandbox status`, "
            "`ops sandbox up`), or unset AWS_ENDPOINT_URL* to reach AWS"
        )
    return AwsProblem(
        f"cannot reach {url}: check the network, a proxy, or AWS_ENDPOINT_URL* overrides"
    )


def known_region(region: str, loader: Any = None) -> bool:
    """A region botocore's endpoint data names (patterns would let typos through).

    `loader` is a session's botocore loader: its cached endpoint data costs nothing.
    """
    if loader is None:
        from botocore.loaders import Loader

        loader = Loader()
    data = loader.load_data("endpoints")
    return any(region in part.get("regions", {}) for part in data.get("partitions", []))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
