"""Tag -> digest over the registry API v2 (a loopback HTTP server) and ECR (moto)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from moto import mock_aws

from ops.errors import BadInput
from ops.fleet import image_ref, registry

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": registry.MANIFEST_TYPES[2]}).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


class FakeRegistry(BaseHTTPRequestHandler):
    """A v2 registry with one tag; `mode` picks how it misbehaves."""

    mode = "plain"
    seen: list[tuple[str, str, str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, body: bool) -> None:
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization", "")))
        if self.path.startswith("/token"):
            payload = json.dumps({"token": "tok"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if self.mode == "bearer" and self.headers.get("Authorization") != "Bearer tok":
            port = self.server.server_address[1]
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate",
                f'Bearer realm="http://127.0.0.1:{port}/token",service="reg",scope="repository:hello:pull"',
            )
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.mode == "error":
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path != "/v2/hello/manifests/v1":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        accept = self.headers.get("Accept", "")
        assert "application/vnd.docker.distribution.manifest.v2+json" in accept
        assert "application/vnd.oci.image.index.v1+json" in accept
        self.send_response(200)
        if self.mode != "no-digest-header":
            self.send_header("Docker-Content-Digest", DIGEST)
        self.send_header("Content-Length", str(len(MANIFEST)))
        self.end_headers()
        if body:
            self.wfile.write(MANIFEST)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)


@pytest.fixture
def fake_registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeRegistry.seen = []
    FakeRegistry.mode = "plain"
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_head_gives_the_digest(fake_registry: str) -> None:
    ref = registry.resolve(image_ref.parse(f"{fake_registry}/hello:v1"))
    assert ref.digest == DIGEST and ref.pinned == f"{fake_registry}/hello@{DIGEST}"
    assert [m for m, _, _ in FakeRegistry.seen] == ["HEAD"]


def test_get_and_hash_when_head_has_no_digest_header(fake_registry: str) -> None:
    FakeRegistry.mode = "no-digest-header"
    ref = registry.resolve(image_ref.parse(f"{fake_registry}/hello:v1"))
    assert ref.digest == DIGEST
    assert [m for m, _, _ in FakeRegistry.seen] == ["HEAD", "GET"]


def test_bearer_challenge_fetches_a_token_then_retries(fake_registry: str) -> None:
    FakeRegistry.mode = "bearer"
    ref = registry.resolve(image_ref.parse(f"{fake_registry}/hello:v1"))
    assert ref.digest == DIGEST
    token_call = [p for _, p, _ in FakeRegistry.seen if p.startswith("/token")]
    assert token_call and "scope=repository%3Ahello%3Apull" in token_call[0]
    assert FakeRegistry.seen[-1][2] == "Bearer tok"


def test_missing_tag_is_bad_input(fake_registry: str) -> None:
    with pytest.raises(BadInput, match="not found"):
        registry.resolve(image_ref.parse(f"{fake_registry}/hello:v9"))


def test_server_error_and_unreachable_registry_are_registry_errors(fake_registry: str) -> None:
    FakeRegistry.mode = "error"
    with pytest.raises(registry.RegistryError, match="HTTP 500"):
        registry.resolve(image_ref.parse(f"{fake_registry}/hello:v1"))
    with pytest.raises(registry.RegistryError, match="unreachable"):
        registry.resolve(image_ref.parse("127.0.0.1:1/hello:v1"))


def test_a_given_digest_is_not_asked_again() -> None:
    pinned = image_ref.parse(f"127.0.0.1:1/hello@{DIGEST}")
    assert registry.resolve(pinned) is pinned


def test_loopback_is_plain_http_and_the_rest_tls() -> None:
    assert registry.base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert registry.base_url("localhost:5000") == "http://localhost:5000"
    assert registry.base_url("reg.example.com") == "https://reg.example.com"
    assert registry.base_url("docker.io") == "https://registry-1.docker.io"


@mock_aws
def test_ecr_describe_images_gives_the_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    ecr = boto3.client("ecr", region_name="eu-west-1")
    ecr.create_repository(repositoryName="web")
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": registry.MANIFEST_TYPES[2], "layers": []}
    )
    pushed = ecr.put_image(repositoryName="web", imageManifest=manifest, imageTag="v1")
    account = pushed["image"]["registryId"]
    host = f"{account}.dkr.ecr.eu-west-1.amazonaws.com"
    ref = registry.resolve(image_ref.parse(f"{host}/web:v1"))
    assert ref.digest == pushed["image"]["imageId"]["imageDigest"]
    with pytest.raises(BadInput, match="not found in ECR"):
        registry.resolve(image_ref.parse(f"{host}/web:v9"))
    with pytest.raises(BadInput, match="RepositoryNotFoundException"):
        registry.resolve(image_ref.parse(f"{host}/absent:v1"))


class Answer:
    """A canned urllib response for the opener hook."""

    def __init__(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.body, self.headers = body, headers or {}

    def __enter__(self) -> Answer:
        return self

    def __exit__(self, *args: object) -> None:
        pass

    def read(self) -> bytes:
        return self.body


def challenge_then(token_answer: object):
    """An opener whose registry asks for a bearer token and whose token service answers so."""
    import email.message
    import urllib.error

    def opener(request, timeout):
        if "/token" in request.full_url:
            if isinstance(token_answer, Exception):
                raise token_answer
            return Answer(token_answer)
        headers = email.message.Message()
        headers["WWW-Authenticate"] = (
            'Bearer realm="https://auth.example.com/token",service="reg"'
            if token_answer != "no-realm"
            else 'Bearer service="reg"'
        )
        raise urllib.error.HTTPError(request.full_url, 401, "Unauthorized", headers, None)

    return opener


@pytest.mark.parametrize(
    ("token_answer", "message"),
    [
        (b'{"nothing": 1}', "carried no token"),
        (b"not json", "token request .* failed"),
        (OSError("connection reset"), "token request .* failed"),
        ("no-realm", "without a usable realm"),
    ],
)
def test_token_failures_are_registry_errors(token_answer: object, message: str) -> None:
    ref = image_ref.parse("reg.example.com/hello:v1")
    with pytest.raises(registry.RegistryError, match=message):
        registry.resolve(ref, opener=challenge_then(token_answer))


def test_ecr_other_errors_and_empty_answers() -> None:
    from botocore.stub import Stubber

    from ops import aws

    ref = image_ref.parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v1")
    ecr = aws.client("ecr", region="us-east-1")
    with Stubber(ecr) as stub, pytest.MonkeyPatch.context() as mp:
        mp.setattr(aws, "client", lambda *a, **k: ecr)
        stub.add_client_error("describe_images", "AccessDeniedException")
        with pytest.raises(registry.RegistryError, match="AccessDeniedException"):
            registry.resolve(ref)
        stub.add_response("describe_images", {"imageDetails": []})
        with pytest.raises(BadInput, match="not found in ECR"):
            registry.resolve(ref)
    with pytest.raises(BadInput, match="not an ECR registry"):
        registry.ecr_digest(image_ref.parse("reg.example.com/web:v1"))
