"""The emulator answers only requests signed with the sandbox's own key, as SSM words it."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from ops.sandbox.emulator.auth import Auth, Credentials, session_token
from ops.sandbox.emulator.calllog import CallLog
from ops.sandbox.emulator.client import AdminClient, AdminError
from ops.sandbox.emulator.model import Model
from ops.sandbox.emulator.server import Emulator, serve_in_thread


@pytest.fixture
def served() -> Iterator[tuple[str, Credentials, Emulator]]:
    creds = Credentials.generate()
    model = Model(seed=3)
    emulator = Emulator(
        model, moto_url="http://127.0.0.1:9", call_log=CallLog(None), auth=Auth(creds)
    )
    server, _ = serve_in_thread(emulator)
    yield f"http://127.0.0.1:{server.server_address[1]}", creds, emulator
    server.shutdown()
    server.server_close()
    model.close()


def ssm(url: str, key: str, secret: str, token: str | None = None) -> Any:
    return boto3.session.Session().client(
        "ssm",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )


def code(call: Any) -> str:
    with pytest.raises(ClientError) as exc:
        call()
    return str(exc.value.response["Error"]["Code"])


def test_only_the_sandbox_key_and_its_secret_get_in(
    served: tuple[str, Credentials, Emulator],
) -> None:
    url, creds, _ = served
    own = ssm(url, creds.access_key_id, creds.secret_access_key, creds.session_token)
    assert own.list_commands()["Commands"] == []
    # a long-term key without a token is the same key: accepted
    assert ssm(url, creds.access_key_id, creds.secret_access_key).list_commands()
    other = ssm(url, "AKIAOTHERUSEROFHOST1", "their-secret")
    assert code(other.list_commands) == "UnrecognizedClientException"
    forged = ssm(url, creds.access_key_id, "guessed-secret")
    assert code(forged.list_commands) == "InvalidSignatureException"
    # a request with no signature at all
    request = urllib.request.Request(
        url, data=b"{}", headers={"X-Amz-Target": "AmazonSSM.ListCommands"}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(request, timeout=10)
    assert unsigned.value.code == 400
    assert b"MissingAuthenticationTokenException" in unsigned.value.read()


def test_expired_and_foreign_session_tokens(served: tuple[str, Credentials, Emulator]) -> None:
    url, creds, _ = served
    stale = session_token(creds.secret_access_key, time.time() - 60)
    client = ssm(url, creds.access_key_id, creds.secret_access_key, stale)
    assert code(client.list_commands) == "ExpiredTokenException"
    foreign = session_token("another-secret", time.time() + 3600)
    client = ssm(url, creds.access_key_id, creds.secret_access_key, foreign)
    assert code(client.list_commands) == "UnrecognizedClientException"


def test_denied_actions_answer_access_denied_naming_action(
    served: tuple[str, Credentials, Emulator],
) -> None:
    url, creds, emulator = served
    assert emulator.admin("POST", "deny", {}, {"actions": ["ssm:SendCommand"]}) == {
        "denied": ["ssm:SendCommand"]
    }
    client = ssm(url, creds.access_key_id, creds.secret_access_key, creds.session_token)
    with pytest.raises(ClientError) as exc:
        client.send_command(InstanceIds=["i-0123456789abcdef0"], DocumentName="AWS-RunShellScript",
                            Parameters={"commands": ["true"]})  # fmt: skip
    assert exc.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "perform: ssm:SendCommand on resource" in exc.value.response["Error"]["Message"]
    assert client.list_commands()["Commands"] == []  # other actions still allowed


def test_credentials_file_is_private(tmp_path: Path) -> None:
    creds = Credentials.generate()
    path = tmp_path / "creds.json"
    creds.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert Credentials.load(path) == creds
    assert creds.access_key_id.startswith("AKIA") and len(creds.access_key_id) == 20


def test_admin_routes_answer_only_requests_signed_with_the_sandbox_key(
    served: tuple[str, Credentials, Emulator],
) -> None:
    """Faults, throttling, denials and the call log are as guarded as SendCommand."""
    url, creds, emulator = served
    # unsigned, as another local user would send it: refused, and nothing changed
    for method, path, body in (
        ("POST", "faults", b'{"kind": "fail", "fraction": 1.0}'),
        ("POST", "throttle", b'{"multiplier": 100}'),
        ("POST", "deny", b'{"actions": ["ssm:ListCommands"]}'),
        ("GET", "calls?since=0", None),
        ("GET", "status", None),
    ):
        request = urllib.request.Request(
            f"{url}/_sandbox/{path}", data=body, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 400, path
        assert b"MissingAuthenticationTokenException" in refused.value.read(), path
    assert emulator.auth is not None and emulator.auth.denied() == []
    assert (
        emulator.throttle.describe()
        == Emulator(
            Model(seed=1), moto_url="http://127.0.0.1:9", call_log=CallLog(None)
        ).throttle.describe()
    )
    # signed with another key, or with the right key id and a guessed secret: refused
    for key, secret in (("AKIAOTHERUSEROFHOST1", "theirs"), (creds.access_key_id, "guessed")):
        with pytest.raises(AdminError, match="HTTP 400"):
            AdminClient(url, Credentials(key, secret, "")).deny(["ssm:ListCommands"])
    assert emulator.auth.denied() == []
    # the sandbox's own key: served
    admin = AdminClient(url, creds)
    assert admin.deny(["ssm:ListCommands"]) == ["ssm:ListCommands"]
    assert admin.deny([]) == []
    assert admin.status()["calls"] >= 0
    assert isinstance(admin.calls(0), list)
