"""Image references parse like `docker pull` reads them, and nothing else gets through."""

from __future__ import annotations

import pytest

from ops.errors import BadInput
from ops.fleet import image_ref

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", None, None),
        ("team/app:1.4", "docker.io", "team/app", "1.4", None),
        ("127.0.0.1:5000/hello:v1", "127.0.0.1:5000", "hello", "v1", None),
        ("localhost/a/b/c", "localhost", "a/b/c", None, None),
        (f"reg.example.com/app:v2@{DIGEST}", "reg.example.com", "app", "v2", DIGEST),
        (f"reg.example.com/app@{DIGEST}", "reg.example.com", "app", None, DIGEST),
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web-api:2026-01",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "web-api",
            "2026-01",
            None,
        ),
    ],
)
def test_parses_what_docker_accepts(text, registry, repository, tag, digest) -> None:
    ref = image_ref.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Upper/Case",
        "reg.example.com/app:",
        "reg.example.com/app:bad tag",
        "reg.example.com/app@sha256:short",
        "reg.example.com/app@md5:" + "a" * 32,
        "reg.example.com//app",
        "app:-leadingdash",
        "reg.example.com/app;rm -rf /",
    ],
)
def test_refuses_what_does_not_parse(text: str) -> None:
    with pytest.raises(BadInput, match=r"does not parse|not sha256"):
        image_ref.parse(text)


def test_pinned_prefers_the_digest() -> None:
    ref = image_ref.parse("reg.example.com/app:v2").with_digest(DIGEST)
    assert ref.pinned == f"reg.example.com/app@{DIGEST}"
    assert str(ref) == f"reg.example.com/app:v2@{DIGEST}"
    assert image_ref.parse("reg.example.com/app").pinned == "reg.example.com/app:latest"


def test_ecr_host_is_recognised() -> None:
    ecr = image_ref.parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/web:1").ecr
    assert ecr is not None and ecr.group("region") == "eu-west-1"
    assert image_ref.parse("reg.example.com/web:1").ecr is None


def test_for_service_accepts_tag_digest_or_same_repository() -> None:
    repo = image_ref.parse_repository("127.0.0.1:5000/hello")
    assert image_ref.for_service(repo, "v2").tag == "v2"
    assert image_ref.for_service(repo, f"@{DIGEST}").digest == DIGEST
    assert image_ref.for_service(repo, "127.0.0.1:5000/hello:v3").tag == "v3"
    with pytest.raises(BadInput, match="not from the service's repository"):
        image_ref.for_service(repo, "127.0.0.1:5000/other:v3")
    with pytest.raises(BadInput, match="does not parse"):
        image_ref.for_service(repo, "v 2")
    with pytest.raises(BadInput, match="not sha256"):
        image_ref.for_service(repo, "@sha256:nothex")


def test_repository_must_not_carry_a_tag() -> None:
    with pytest.raises(BadInput, match="must not carry a tag"):
        image_ref.parse_repository("reg.example.com/app:v1")
