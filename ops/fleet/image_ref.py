"""Container image references: `[registry/]repository[:tag][@digest]`, parsed strictly.

The grammar follows the distribution project's reference format, so whatever
`docker pull` accepts parses here and whatever it refuses is refused before
any host is touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ops.errors import BadInput

DEFAULT_REGISTRY = "docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$"
)


@dataclass(frozen=True)
class ImageRef:
    """One image: where it lives, and the tag and/or digest that name a version of it."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """registry/repository, the part a spec pins and a tag or digest completes."""
        return f"{self.registry}/{self.repository}"

    @property
    def pinned(self) -> str:
        """What a host pulls: by digest once resolved, so every batch runs the same bytes."""
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag or 'latest'}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def ecr(self) -> re.Match[str] | None:
        return ECR_HOST.match(self.registry)

    def with_digest(self, digest: str) -> ImageRef:
        return ImageRef(self.registry, self.repository, self.tag, check_digest(digest))


def _is_domain(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or first.startswith("[")


def parse(text: str, *, what: str = "image reference") -> ImageRef:
    """Parse like `docker pull` does; a bare Docker Hub name gains `library/`."""
    raw = (text or "").strip()
    if not raw or len(raw) > 512:
        raise BadInput(f"{what} {text!r} does not parse: expected [registry/]name[:tag][@digest]")
    first, slash, _ = raw.partition("/")
    if slash and not _is_domain(first):
        raw_for_match = f"{DEFAULT_REGISTRY}/{raw}"
    elif not slash:
        raw_for_match = f"{DEFAULT_REGISTRY}/library/{raw}"
    else:
        raw_for_match = raw
    match = _REFERENCE.match(raw_for_match)
    if match is None or match.group("domain") is None:
        raise BadInput(
            f"{what} {text!r} does not parse: expected [registry/]name[:tag][@digest] "
            "with a lower-case name, e.g. registry.example.com/team/app:1.4"
        )
    digest = match.group("digest")
    return ImageRef(
        registry=match.group("domain"),
        repository=match.group("path"),
        tag=match.group("tag"),
        digest=check_digest(digest) if digest else None,
    )


def parse_repository(text: str, *, what: str = "repository") -> ImageRef:
    """A spec's repository: a name without tag or digest (the deploy supplies those)."""
    ref = parse(text, what=what)
    if ref.tag or ref.digest:
        raise BadInput(f"{what} {text!r} must not carry a tag or digest; give the name only")
    return ref


def check_digest(digest: str) -> str:
    """Only sha256 digests: the algorithm registries and Docker actually use."""
    if not _SHA256.match(digest or ""):
        raise BadInput(f"digest {digest!r} is not sha256: followed by 64 lower-case hex digits")
    return digest


def for_service(repository: ImageRef, text: str) -> ImageRef:
    """`--image` as a full reference, or a bare `TAG` / `@DIGEST` of the spec's repository.

    A full reference must name the spec's repository: deploying another image
    under this service's name is a mistake worth refusing.
    """
    raw = (text or "").strip()
    if raw.startswith("@"):
        return ImageRef(repository.registry, repository.repository, None, check_digest(raw[1:]))
    if raw and "/" not in raw and ":" not in raw and "@" not in raw:
        if not re.fullmatch(_TAG, raw):
            raise BadInput(f"image tag {raw!r} does not parse: letters, digits, _ . - (max 128)")
        return ImageRef(repository.registry, repository.repository, raw, None)
    ref = parse(raw)
    if ref.name != repository.name:
        raise BadInput(
            f"image {raw!r} is not from the service's repository {repository.name}; "
            "give a tag, @digest, or a reference to that repository"
        )
    return ref
