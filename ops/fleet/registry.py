"""Resolve an image tag to its digest before any host is touched.

A deploy pins every host to one digest, so a tag moved mid-deploy cannot
give two batches different bytes. Registries are asked over the Docker
Registry HTTP API v2 (a HEAD on the manifest, `Docker-Content-Digest`);
ECR repositories through `describe_images`, which needs no registry login.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from ops import aws
from ops.errors import BadInput, OpsError
from ops.fleet.image_ref import ImageRef, check_digest

# Index types first: a multi-arch tag resolves to the index digest `docker pull` records.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
DOCKER_HUB_API = "registry-1.docker.io"
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(OpsError):
    """The registry could not be asked (down, refused, or answered nonsense)."""


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def base_url(registry: str) -> str:
    """Plain HTTP only on loopback (the sandbox's registry); TLS everywhere else."""
    if registry == "docker.io":
        registry = DOCKER_HUB_API
    return f"{'http' if _is_loopback(registry) else 'https'}://{registry}"


Opener = Callable[[urllib.request.Request, float], Any]


def _default_open(request: urllib.request.Request, timeout: float) -> Any:
    return urllib.request.urlopen(request, timeout=timeout)


def _bearer_token(challenge: str, opener: Opener, timeout: float, basic: str | None) -> str:
    """Anonymous (or basic-authenticated) token from the realm a 401 names."""
    params = dict(_CHALLENGE.findall(challenge))
    realm = params.pop("realm", "")
    if not realm.startswith(("https://", "http://")):
        raise RegistryError(f"registry asked for a token without a usable realm: {challenge!r}")
    request = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(params)}")
    if basic:
        request.add_header("Authorization", f"Basic {basic}")
    try:
        with opener(request, timeout) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RegistryError(f"registry token request to {realm} failed: {exc}") from None
    token = body.get("token") or body.get("access_token")
    if not isinstance(token, str):
        raise RegistryError(f"registry token answer from {realm} carried no token")
    return token


def registry_digest(
    ref: ImageRef,
    *,
    opener: Opener = _default_open,
    timeout: float = 15.0,
    basic_auth: tuple[str, str] | None = None,
) -> str:
    """The digest a registry serves for `ref`'s tag, by HEAD and, failing a header, by GET."""
    url = f"{base_url(ref.registry)}/v2/{ref.repository}/manifests/{ref.tag or 'latest'}"
    basic = base64.b64encode(":".join(basic_auth).encode()).decode() if basic_auth else None
    auth: str | None = f"Basic {basic}" if basic else None
    for method in ("HEAD", "GET"):
        for attempt in range(2):
            request = urllib.request.Request(url, method=method)
            request.add_header("Accept", ", ".join(MANIFEST_TYPES))
            if auth:
                request.add_header("Authorization", auth)
            try:
                with opener(request, timeout) as response:
                    digest = response.headers.get("Docker-Content-Digest")
                    if digest:
                        return check_digest(digest)
                    if method == "GET":
                        return "sha256:" + hashlib.sha256(response.read()).hexdigest()
                    break  # a HEAD without the header: ask again with GET
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 0:
                    challenge = exc.headers.get("WWW-Authenticate", "")
                    if challenge.lower().startswith("bearer"):
                        token = _bearer_token(challenge, opener, timeout, basic)
                        auth = f"Bearer {token}"
                        continue
                if exc.code == 404:
                    raise BadInput(
                        f"image {ref} not found in {ref.registry}: no such tag or repository"
                    ) from None
                raise RegistryError(
                    f"registry {ref.registry} refused {method} {ref.repository}:{ref.tag}: "
                    f"HTTP {exc.code}"
                ) from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise RegistryError(f"registry {ref.registry} unreachable: {reason}") from None
    raise RegistryError(f"registry {ref.registry} did not give a digest for {ref}")


def ecr_digest(ref: ImageRef, *, profile: str | None = None) -> str:
    """ECR's own answer (`describe_images`): the region and account come from the host name."""
    match = ref.ecr
    if match is None:
        raise BadInput(f"{ref.registry} is not an ECR registry")
    ecr = aws.client("ecr", profile=profile, region=match.group("region"))
    try:
        answer = ecr.describe_images(
            registryId=match.group("account"),
            repositoryName=ref.repository,
            imageIds=[{"imageTag": ref.tag or "latest"}],
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ImageNotFoundException", "RepositoryNotFoundException"):
            raise BadInput(f"image {ref} not found in ECR ({code})") from None
        raise RegistryError(f"ECR describe_images for {ref} failed: {code or exc}") from None
    details = answer.get("imageDetails") or []
    if not details:
        raise BadInput(f"image {ref} not found in ECR")
    return check_digest(details[0]["imageDigest"])


def resolve(
    ref: ImageRef, *, profile: str | None = None, opener: Opener = _default_open
) -> ImageRef:
    """`ref` with its digest filled in; a digest already given is trusted as the pin."""
    if ref.digest:
        return ref
    digest = ecr_digest(ref, profile=profile) if ref.ecr else registry_digest(ref, opener=opener)
    return ref.with_digest(digest)
