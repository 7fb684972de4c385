"""A small client for the emulator's /_sandbox/ admin endpoints (loopback only).

The admin endpoints set faults, throttling and denials and read every call
the sandbox served, so they are guarded as the SSM API is: each request is
SigV4-signed with the sandbox's own key (botocore's signer), and the
emulator refuses any other. A local user without that key reaches nothing.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from ops.sandbox.emulator.auth import Credentials


class AdminError(RuntimeError):
    pass


class AdminClient:
    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        region: str = "us-east-1",
        timeout: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.region = region
        self.timeout = timeout

    def _headers(self, method: str, url: str, data: bytes | None) -> dict[str, str]:
        """Content-Type, and the SigV4 headers when the client holds the sandbox's key."""
        headers = {"Content-Type": "application/json"}
        if self.credentials is None:
            return headers  # the emulator refuses it: what a caller without the key gets
        creds = self.credentials
        signed = AWSRequest(method=method, url=url, data=data or b"", headers=headers)
        SigV4Auth(
            BotoCredentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
            "ssm",
            self.region,
        ).add_auth(signed)
        return dict(signed.headers.items())

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        url = f"{self.base_url}/_sandbox/{path}"
        request = urllib.request.Request(
            url, data=data, method=method, headers=self._headers(method, url, data)
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise AdminError(f"{method} /_sandbox/{path}: HTTP {exc.code}: {detail}") from None

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "status")
        return result

    def register(self, instances: list[dict[str, Any]]) -> int:
        return int(self._call("POST", "instances", {"instances": instances})["registered"])

    def set_fault(
        self,
        kind: str,
        *,
        instances: list[str] | None = None,
        fraction: float | None = None,
        params: dict[str, Any] | None = None,
    ) -> list[str]:
        body = {"kind": kind, "instances": instances, "fraction": fraction, "params": params}
        return list(self._call("POST", "faults", body)["instances"])

    def deny(self, actions: list[str]) -> list[str]:
        """From now on these actions (e.g. ssm:SendCommand) answer AccessDenied; [] lifts it."""
        return list(self._call("POST", "deny", {"actions": actions})["denied"])

    def clear_faults(self, instances: list[str] | None = None) -> None:
        self._call("DELETE", "faults", {"instances": instances})

    def set_throttle(
        self,
        *,
        multiplier: float | None = None,
        rates: dict[str, tuple[float, float]] | None = None,
        enabled: bool | None = None,
    ) -> dict[str, Any]:
        body = {
            "multiplier": multiplier,
            "rates": {k: list(v) for k, v in rates.items()} if rates else None,
            "enabled": enabled,
        }
        result: dict[str, Any] = self._call("POST", "throttle", body)
        return result

    def settings(self, **values: float) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "settings", values)
        return result

    def calls(self, since: int = 0) -> list[dict[str, Any]]:
        return list(self._call("GET", f"calls?since={int(since)}")["calls"])

    def reset(self, *, keep_instances: bool = True) -> None:
        self._call("POST", "reset", {"keep_instances": keep_instances})
