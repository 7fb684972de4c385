"""Who may call the Run Command emulator: only requests signed with the sandbox's own key.

SendCommand runs scripts as root in the sandbox's hosts, and the emulator
listens on loopback, which every local user can reach. So, as SSM does, it
checks each request's SigV4 signature: the access key id in the Credential
must be the one `ops sandbox up` generated (and `ops sandbox env` exports),
and the signature must verify with its secret (botocore's own signer, run
on the request as received). Its answers are the service's own: a missing
signature, an unknown key, a bad signature, a stale date, an expired session
token, and AccessDenied for an action the sandbox was told to refuse (how
tests show what `ops` does when IAM says no).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

CREDENTIALS_FILE = "sandbox-credentials.json"
ACCOUNT = "123456789012"  # moto's default account, so ARNs agree across the sandbox
MAX_SKEW_S = 15 * 60  # SigV4: a request dated further off than this is refused
TOKEN_PREFIX = "fleetops-sandbox"
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


class AuthError(Exception):
    """A refusal as the service words it: HTTP status, error code, message."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str

    @classmethod
    def generate(cls, lifetime_s: float = 30 * 24 * 3600) -> Credentials:
        """A fresh key pair (AKIA-shaped id) and a session token valid for `lifetime_s`."""
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
        key = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
        secret = secrets.token_urlsafe(30)[:40]
        return cls(key, secret, session_token(secret, time.time() + lifetime_s))

    def save(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.__dict__, fh)
        os.chmod(path, 0o600)

    @classmethod
    def load(cls, path: Path) -> Credentials:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["access_key_id"], data["secret_access_key"], data["session_token"])


def session_token(secret: str, expires_at: float) -> str:
    """A session token the sandbox can check by itself: its expiry, signed with the secret."""
    stamp = str(int(expires_at))
    mac = hmac.new(secret.encode(), f"{TOKEN_PREFIX}.{stamp}".encode(), hashlib.sha256)
    return f"{TOKEN_PREFIX}.{stamp}.{mac.hexdigest()}"


class Auth:
    """Checks one request; `deny` makes actions answer AccessDenied from now on."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._denied: set[str] = set()
        self._lock = threading.Lock()

    def deny(self, actions: Iterable[str]) -> list[str]:
        with self._lock:
            self._denied = {a.strip() for a in actions if a.strip()}
            return sorted(self._denied)

    def denied(self) -> list[str]:
        with self._lock:
            return sorted(self._denied)

    def check(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, operation: str
    ) -> None:
        """Raise AuthError unless the request is signed with the sandbox's key and allowed."""
        lower = {k.lower(): v for k, v in headers.items()}
        match = _AUTH.match(lower.get("authorization", "").strip())
        if match is None:
            raise AuthError("MissingAuthenticationTokenException", "Missing Authentication Token")
        if not hmac.compare_digest(match["key"], self.credentials.access_key_id):
            raise AuthError(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        stamp = lower.get("x-amz-date", "")
        try:
            when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise AuthError("IncompleteSignatureException", "Missing X-Amz-Date") from None
        if abs(time.time() - when.timestamp()) > MAX_SKEW_S:
            raise AuthError(
                "InvalidSignatureException",
                f"Signature expired: {stamp} is now earlier than the allowed window.",
            )
        if not hmac.compare_digest(self._signature(match, method, path, lower, body, stamp),
                                   match["signature"]):  # fmt: skip
            raise AuthError(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method.",
            )
        self._check_token(lower.get("x-amz-security-token"))
        action = f"{match['service']}:{operation}"
        if action in self.denied():
            raise AuthError(
                "AccessDeniedException",
                f"User: arn:aws:iam::{ACCOUNT}:user/fleetops-sandbox is not authorized to "
                f"perform: {action} on resource: arn:aws:{match['service']}:{match['region']}:"
                f"{ACCOUNT}:* because no identity-based policy allows the {action} action",
            )

    def _signature(
        self,
        match: re.Match[str],
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        stamp: str,
    ) -> str:
        signed = match["signed"].split(";")
        request = AWSRequest(
            method=method,
            url=f"http://{headers.get('host', '')}{path}",
            headers={name: headers.get(name, "") for name in signed},
            data=body,
        )
        request.context["timestamp"] = stamp
        creds = BotoCredentials(self.credentials.access_key_id, self.credentials.secret_access_key)
        signer = SigV4Auth(creds, match["service"], match["region"])
        canonical = signer.canonical_request(request)
        return str(signer.signature(signer.string_to_sign(request, canonical), request))

    def _check_token(self, token: str | None) -> None:
        """No token: a long-term key. A token: one this sandbox signed, not yet expired."""
        if token is None:
            return
        stamp = token.split(".")[1] if token.count(".") == 2 else ""
        valid = stamp.isdigit() and hmac.compare_digest(
            token, session_token(self.credentials.secret_access_key, int(stamp))
        )
        if not valid:
            raise AuthError(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        if int(stamp) < time.time():
            raise AuthError(
                "ExpiredTokenException", "The security token included in the request is expired"
            )
