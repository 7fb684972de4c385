"""A service's deploy spec, `inventories/<env>/services/<name>.yml`, validated whole.

Every problem names the file and the field, and is raised before any host or
AWS API is touched. Environment values are literal text or `ssm:/path`
references to Parameter Store; a key that looks like a secret must be a
reference, so a password never sits in the repository in plain text.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ops.config import inventories_dir, validate_env_name
from ops.errors import BadInput
from ops.fleet import image_ref
from ops.fleet.image_ref import ImageRef

SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
SSM_REF = re.compile(r"^ssm:(/[A-Za-z0-9_.\-/]{1,1010})$")
SECRET_WORDS = re.compile(
    r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL|AUTH)",
    re.IGNORECASE,
)
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
VAR_REF = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
_HTTP_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*$")
_ABS_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
HOST_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._-]{0,127}$")

_KEYS = {
    "repository",
    "container_name",
    "port",
    "environment",
    "volumes",
    "restart",
    "health_check",
    "target_groups",
    "batch_size",
    "min_healthy",
    "drain_seconds",
    "registry_auth",
    "hosts",
    "replaces",
}


@dataclass(frozen=True)
class HealthCheck:
    """HTTP path probed on the host's app port, or the image's own HEALTHCHECK."""

    kind: str  # "http" or "image"
    path: str = "/"
    port: int | None = None  # None: the host's app port
    timeout_seconds: int = 120


@dataclass(frozen=True)
class Volume:
    source: str  # an absolute host path or a named volume
    target: str
    read_only: bool = False

    def docker_arg(self) -> str:
        return f"{self.source}:{self.target}{':ro' if self.read_only else ''}"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    path: Path
    repository: ImageRef
    container_name: str
    port: int
    health_check: HealthCheck
    environment: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # env key -> SSM parameter name
    volumes: tuple[Volume, ...] = ()
    restart: str = "unless-stopped"
    target_groups: tuple[str, ...] = ()
    batch_size: str = "50%"
    min_healthy: str = "50%"
    drain_seconds: int = 30
    registry_auth: str = "none"  # none | ecr
    hosts: dict[str, str] = field(default_factory=dict)  # tag filter; empty: the groups' members
    # host services (systemd or SysV) that held the port before: stopped and disabled for good
    replaces: tuple[str, ...] = ()


def _fail(path: Path, key: str, message: str) -> BadInput:
    return BadInput(f"{path}: {key}: {message}")


def _int(path: Path, key: str, raw: object, low: int, high: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        return_msg = f"must be a whole number from {low} to {high}, got {raw!r}"
        raise _fail(path, key, return_msg)
    return raw


def _share(path: Path, key: str, raw: object, *, allow_zero: bool) -> str:
    """A count (`2`) or a percentage (`25%`)."""
    text = str(raw).strip() if isinstance(raw, int | str) and not isinstance(raw, bool) else ""
    match = re.fullmatch(r"(\d{1,6})(%?)", text)
    if not match:
        raise _fail(path, key, f"must be a count or a percentage such as 2 or 25%, got {raw!r}")
    number = int(match.group(1))
    if match.group(2) and number > 100:
        raise _fail(path, key, f"a percentage cannot exceed 100%, got {text}")
    if number == 0 and not allow_zero:
        raise _fail(path, key, "must be at least 1 (or 1%)")
    return text


def _expand(path: Path, key: str, text: str, environ: dict[str, str] | os._Environ[str]) -> str:
    """`${NAME}` in the repository, so the sandbox's registry port need not be committed."""

    def sub(match: re.Match[str]) -> str:
        value = environ.get(match.group(1))
        if not value:
            raise _fail(path, key, f"${{{match.group(1)}}} is not set in the environment")
        return value

    return VAR_REF.sub(sub, text)


def _environment(path: Path, raw: object) -> tuple[dict[str, str], dict[str, str]]:
    if raw is None:
        return {}, {}
    if not isinstance(raw, dict):
        raise _fail(path, "environment", "must be a mapping of NAME to value or ssm:/path")
    plain: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for env_key, value in raw.items():
        where = f"environment.{env_key}"
        if not isinstance(env_key, str) or not ENV_KEY.match(env_key):
            raise _fail(path, where, "names must be letters, digits and _, not starting a digit")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _fail(path, where, "must be text, a number or ssm:/parameter/name")
        text = str(value)
        ref = SSM_REF.match(text)
        if ref:
            secrets[env_key] = ref.group(1)
        elif text.startswith("ssm:"):
            raise _fail(path, where, f"{text!r} is not ssm:/parameter/name")
        elif SECRET_WORDS.search(env_key):
            raise _fail(
                path,
                where,
                "looks like a secret: store it in Parameter Store (SecureString) "
                "and write ssm:/path/to/it here instead of the value",
            )
        else:
            plain[env_key] = text
    return plain, secrets


def _volumes(path: Path, raw: object) -> tuple[Volume, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(path, "volumes", "must be a list of SOURCE:TARGET[:ro]")
    volumes = []
    for index, item in enumerate(raw):
        where = f"volumes[{index}]"
        parts = item.split(":") if isinstance(item, str) else []
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise _fail(path, where, f"must be SOURCE:TARGET[:ro|rw], got {item!r}")
        source, target = parts[0], parts[1]
        if not (_ABS_PATH.match(source) or _VOLUME_NAME.match(source)) or ".." in source:
            raise _fail(path, where, f"source {source!r} must be an absolute path or volume name")
        if not _ABS_PATH.match(target) or ".." in target:
            raise _fail(path, where, f"target {target!r} must be an absolute path")
        volumes.append(Volume(source, target, len(parts) == 3 and parts[2] == "ro"))
    return tuple(volumes)


def _health(path: Path, raw: object) -> HealthCheck:
    if raw is None:
        raise _fail(
            path,
            "health_check",
            "is required: give {http: /path} or {image: true} to use the image's HEALTHCHECK",
        )
    if not isinstance(raw, dict):
        raise _fail(path, "health_check", "must be a mapping such as {http: /health}")
    unknown = set(raw) - {"http", "image", "port", "timeout_seconds"}
    if unknown:
        raise _fail(path, f"health_check.{sorted(unknown)[0]}", "unknown key")
    timeout = _int(path, "health_check.timeout_seconds", raw.get("timeout_seconds", 120), 1, 3600)
    if raw.get("image") is True and "http" not in raw:
        return HealthCheck(kind="image", timeout_seconds=timeout)
    http = raw.get("http")
    if not isinstance(http, str) or not _HTTP_PATH.match(http):
        raise _fail(path, "health_check.http", f"must be a URL path such as /health, got {http!r}")
    port = raw.get("port")
    if port is not None:
        port = _int(path, "health_check.port", port, 1, 65535)
    return HealthCheck(kind="http", path=http, port=port, timeout_seconds=timeout)


def _names(path: Path, key: str, raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(i, str) and i for i in raw):
        raise _fail(path, key, "must be a list of names or ARNs")
    return tuple(raw)


def _hosts(path: Path, raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise _fail(path, "hosts", "must be a mapping of tag name to value, e.g. {Role: web}")
    for tag, value in raw.items():
        if not isinstance(tag, str) or isinstance(value, bool) or not isinstance(value, str | int):
            raise _fail(path, f"hosts.{tag}", "tag names and values must be text")
    return {str(k): str(v) for k, v in raw.items()}


def _replaces(path: Path, raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(
        isinstance(i, str) and HOST_SERVICE.match(i) for i in raw
    ):
        raise _fail(path, "replaces", "must be a list of host service names, e.g. [nginx]")
    return tuple(raw)


def parse_spec(
    name: str, path: Path, data: object, environ: dict[str, str] | None = None
) -> ServiceSpec:
    """Validate one loaded spec; `environ` feeds `${VAR}` in the repository."""
    env = os.environ if environ is None else environ
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a mapping of service settings")
    unknown = sorted(set(map(str, data)) - _KEYS)
    if unknown:
        raise _fail(path, unknown[0], f"unknown key; known keys: {', '.join(sorted(_KEYS))}")
    repo_raw = data.get("repository")
    if not isinstance(repo_raw, str) or not repo_raw:
        raise _fail(path, "repository", "is required: the image name without a tag")
    try:
        repository = image_ref.parse_repository(_expand(path, "repository", repo_raw, env))
    except BadInput as exc:
        raise _fail(path, "repository", str(exc)) from None
    container = data.get("container_name", name)
    if not isinstance(container, str) or not CONTAINER_NAME.match(container):
        raise _fail(path, "container_name", f"{container!r} is not a valid container name")
    restart = data.get("restart", "unless-stopped")
    if restart not in RESTART_POLICIES:
        raise _fail(path, "restart", f"must be one of {', '.join(RESTART_POLICIES)}")
    auth = data.get("registry_auth", "ecr" if repository.ecr else "none")
    if auth not in ("none", "ecr"):
        raise _fail(path, "registry_auth", "must be none or ecr")
    plain, secrets = _environment(path, data.get("environment"))
    return ServiceSpec(
        name=name,
        path=path,
        repository=repository,
        container_name=container,
        port=_int(path, "port", data.get("port"), 1, 65535),
        health_check=_health(path, data.get("health_check")),
        environment=plain,
        secrets=secrets,
        volumes=_volumes(path, data.get("volumes")),
        restart=restart,
        target_groups=_names(path, "target_groups", data.get("target_groups")),
        batch_size=_share(path, "batch_size", data.get("batch_size", "50%"), allow_zero=False),
        min_healthy=_share(path, "min_healthy", data.get("min_healthy", "50%"), allow_zero=True),
        drain_seconds=_int(path, "drain_seconds", data.get("drain_seconds", 30), 0, 3600),
        registry_auth=auth,
        hosts=_hosts(path, data.get("hosts")),
        replaces=_replaces(path, data.get("replaces")),
    )


def spec_path(env: str, service: str, root: Path | None = None) -> Path:
    if not SERVICE_NAME.match(service or ""):
        raise BadInput(f"service name {service!r}: use lower-case letters, digits, - and _")
    base = root if root is not None else inventories_dir()
    return base / validate_env_name(env) / "services" / f"{service}.yml"


def load_spec(
    env: str, service: str, *, root: Path | None = None, environ: dict[str, str] | None = None
) -> ServiceSpec:
    """Read and validate `inventories/<env>/services/<service>.yml`."""
    path = spec_path(env, service, root)
    if not path.is_file():
        raise BadInput(f"{path}: no such service spec; create it (see README, 'Service spec')")
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{path}: not valid YAML{where}") from None
    return parse_spec(service, path, data, environ)
