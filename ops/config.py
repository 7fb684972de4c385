"""Environments and settings: flag > OPS_* variable > inventories/<env>/ops.yml > default.

Settings are validated up front, so a typo in ops.yml is refused with the file,
the key and what was expected, before any host is touched.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.errors import ConfigError
from ops.project import find_project

ENV_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_LOG_SIZE = re.compile(r"^[1-9][0-9]*[kmg]?$")


@dataclass(frozen=True)
class DockerSettings:
    """The `docker:` section: what `ops docker install` configures and `status` checks."""

    users: tuple[str, ...] = ("ec2-user", "ssm-user")
    log_max_size: str = "10m"
    log_max_file: int = 3
    live_restore: bool = True


# docker key -> (expected python type, human description)
_DOCKER_SCHEMA: dict[str, tuple[type, str]] = {
    "users": (list, "a list of user names (added to the docker group where they exist)"),
    "log_max_size": (str, "a size such as 10m, 500k or 1g"),
    "log_max_file": (int, "a whole number of log files (1-100)"),
    "live_restore": (bool, "true or false"),
}


@dataclass(frozen=True)
class PatchSettings:
    """What `ops patch` may install, as Patch Manager's baselines decide it."""

    exclude: list[str] = field(default_factory=list)  # package globs never installed
    approve_after_days: int = 0  # updates published fewer days ago wait
    undated: str = "approve"  # updates the repository does not date: approve | hold
    max_unavailable: str = "25%"  # hosts of one Role or AZ out at once, count or share


@dataclass(frozen=True)
class Settings:
    """One environment's settings after every source has been applied."""

    env: str = "sandbox"
    region: str = "us-east-1"
    profile: str | None = None
    target_filter: dict[str, str] = field(default_factory=dict)
    ssh_user: str = "root"
    ssh_key: str | None = None
    ssh_jump_host: str | None = None
    ssh_networks: list[str] = field(default_factory=list)
    output_bucket: str | None = None
    output_prefix: str = "ops/"
    target_groups: list[str] = field(default_factory=list)
    alarm_names: list[str] = field(default_factory=list)
    max_attempts: int = 10
    concurrency: str = "50"
    max_errors: str = "10%"
    docker: DockerSettings = field(default_factory=DockerSettings)
    patch: PatchSettings = field(default_factory=PatchSettings)


# key -> (expected python type, human description)
_SCHEMA: dict[str, tuple[type | tuple[type, ...], str]] = {
    "region": (str, "a region name such as us-east-1"),
    "profile": (str, "an AWS profile name"),
    "target_filter": (dict, "a mapping of tag name to value"),
    "ssh_user": (str, "a user name"),
    "ssh_key": (str, "a path to a private key"),
    "ssh_jump_host": (str, "user@host[:port] of a bastion"),
    "ssh_networks": (list, "a list of networks such as 10.0.0.0/8"),
    "output_bucket": (str, "an S3 bucket name"),
    "output_prefix": (str, "an S3 key prefix"),
    "target_groups": (list, "a list of target group names or ARNs"),
    "alarm_names": (list, "a list of CloudWatch alarm names"),
    "max_attempts": (int, "a whole number of attempts (1-50)"),
    "concurrency": ((str, int), "a count or a percentage such as 50 or 10%"),
    "max_errors": ((str, int), "a count or a percentage such as 5 or 10%"),
    "docker": (dict, f"a mapping with the keys {', '.join(_DOCKER_SCHEMA)}"),
    "patch": (dict, "a mapping of patch settings (exclude, approve_after_days, ...)"),
}


def setting_descriptions() -> dict[str, str]:
    """Each key and what it takes, in schema order (for `ops init`'s settings files)."""
    return {key: description for key, (_type, description) in _SCHEMA.items()}


# patch.<key> -> (expected python type, human description)
_PATCH_SCHEMA: dict[str, tuple[type | tuple[type, ...], str]] = {
    "exclude": (list, "a list of package globs such as docker* or kernel*"),
    "approve_after_days": (int, "a whole number of days, 0 or more"),
    "undated": (str, "approve or hold"),
    "max_unavailable": ((str, int), "a count or a percentage such as 1 or 25%"),
}

# A nested section has no single OPS_* variable; it is set in ops.yml.
_ENV_VARS = {key: f"OPS_{key.upper()}" for key in _SCHEMA if key not in ("docker", "patch")}


def inventories_dir() -> Path:
    """The folder holding one subfolder per environment.

    OPS_INVENTORIES wins (tests and an installed `ops` pointed at a checkout),
    then the project's own (see ops.project), then the packaged defaults.
    """
    explicit = os.environ.get("OPS_INVENTORIES")
    if explicit:
        return Path(explicit)
    return find_project().inventories


def state_dir() -> Path:
    """Where the journal and the sandbox keep their files ($OPS_STATE_DIR or XDG state)."""
    explicit = os.environ.get("OPS_STATE_DIR")
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        path = Path(base) / "fleetops"
    path.mkdir(parents=True, exist_ok=True)
    return path


def known_hosts_path() -> Path:
    """The host keys `ops` trusts for SSH, kept apart from the operator's own file."""
    return state_dir() / "ssh" / "known_hosts"


def validate_env_name(name: str) -> str:
    if not name or not set(name) <= ENV_NAME_CHARS:
        raise ConfigError(
            f"environment name {name!r} is not valid: use lower-case letters, digits, - and _"
        )
    return name


def _check_value(source: str, key: str, raw: object) -> Any:
    expected, description = _SCHEMA[key]
    if isinstance(raw, bool) or not isinstance(raw, expected):
        raise ConfigError(
            f"{source}: {key} must be {description}, got {type(raw).__name__} {raw!r}"
        )
    value: Any = raw
    if key == "patch":
        return _check_patch(source, value)
    if key == "target_filter":
        for tag, tag_value in value.items():
            if not isinstance(tag, str) or not isinstance(tag_value, str | int):
                raise ConfigError(f"{source}: target_filter must map tag names to strings")
        return {str(k): str(v) for k, v in value.items()}
    if key in ("target_groups", "alarm_names", "ssh_networks"):
        if not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{source}: {key} must be {description}")
        if key == "ssh_networks":
            for item in value:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ConfigError(
                        f"{source}: ssh_networks: {item!r} is not a network such as 10.0.0.0/8"
                    ) from None
        return list(value)
    if key == "max_attempts" and not 1 <= value <= 50:
        raise ConfigError(f"{source}: max_attempts must be {description}, got {value}")
    if key in ("concurrency", "max_errors"):
        return str(value)
    if key == "docker":
        return _check_docker(source, value)
    return value


def _check_docker(source: str, raw: dict[Any, Any]) -> DockerSettings:
    """The docker section, each key checked; user names are validated, never trusted."""
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _DOCKER_SCHEMA:
            known = ", ".join(_DOCKER_SCHEMA)
            raise ConfigError(f"{source}: unknown key docker.{key}; known keys: {known}")
        expected, description = _DOCKER_SCHEMA[key]
        if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
            raise ConfigError(
                f"{source}: docker.{key} must be {description}, "
                f"got {type(value).__name__} {value!r}"
            )
        values[key] = value
    users = values.get("users")
    if users is not None:
        for user in users:
            if not isinstance(user, str) or not _USER_NAME.match(user):
                raise ConfigError(f"{source}: docker.users: {user!r} is not a valid user name")
        values["users"] = tuple(users)
    size = values.get("log_max_size")
    if size is not None and not _LOG_SIZE.match(size):
        raise ConfigError(
            f"{source}: docker.log_max_size must be a size such as 10m, 500k or 1g, got {size!r}"
        )
    count = values.get("log_max_file")
    if count is not None and not 1 <= count <= 100:
        raise ConfigError(
            f"{source}: docker.log_max_file must be a whole number from 1 to 100, got {count}"
        )
    return DockerSettings(**values)


def _check_patch(source: str, raw: dict[Any, Any]) -> PatchSettings:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _PATCH_SCHEMA:
            known = ", ".join(sorted(_PATCH_SCHEMA))
            raise ConfigError(f"{source}: unknown key patch.{key}; known keys: {known}")
        expected, description = _PATCH_SCHEMA[key]
        wrong = isinstance(value, bool) or not isinstance(value, expected)
        if key == "exclude" and not wrong:
            wrong = not all(isinstance(item, str) and item for item in value)
        elif key == "approve_after_days" and not wrong:
            wrong = value < 0
        elif key == "undated" and not wrong:
            wrong = value not in ("approve", "hold")
        elif key == "max_unavailable" and not wrong:
            wrong = not re.fullmatch(r"\s*[1-9]\d*\s*%?\s*", str(value)) or (
                str(value).strip().endswith("%") and int(str(value).strip()[:-1]) > 100
            )
        if wrong:
            shown = f"{type(value).__name__} {value!r}"
            raise ConfigError(f"{source}: patch.{key} must be {description}, got {shown}")
        values[key] = str(value) if key == "max_unavailable" else value
    return PatchSettings(**values)


def _coerce_env_var(name: str, key: str, raw: str) -> Any:
    expected, description = _SCHEMA[key]
    if expected is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}: {key} must be {description}, got {raw!r}") from None
    if expected is dict:
        pairs = {}
        for part in filter(None, raw.split(",")):
            tag, sep, value = part.partition("=")
            if not sep or not tag:
                raise ConfigError(f"{name}: expected tag=value[,tag=value], got {raw!r}")
            pairs[tag.strip()] = value.strip()
        return pairs
    if expected is list:
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def load_file(path: Path) -> dict[str, Any]:
    """Read and validate one ops.yml; a missing file is an empty one."""
    if not path.exists():
        return {}
    import yaml  # here, not at the top: `ops --version` and completion never read settings

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read settings: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}; fix the file or restore it") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _SCHEMA:
            known = ", ".join(sorted(_SCHEMA))
            raise ConfigError(f"{path}: unknown key {key!r}; known keys: {known}")
        values[key] = _check_value(str(path), key, value)
    return values


def load_settings(
    env: str | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    root: Path | None = None,
) -> Settings:
    """Merge every source; the first one that names a key wins, flags first."""
    environ = os.environ if environ is None else environ
    env_name = validate_env_name(env or environ.get("OPS_ENV") or "sandbox")
    base = root if root is not None else inventories_dir()
    folder = base / env_name
    if env_name != "sandbox" and not folder.is_dir():
        raise ConfigError(
            f"environment {env_name!r} has no folder {folder}; create it or pick another --env"
        )
    merged: dict[str, Any] = load_file(folder / "ops.yml")
    for key, var in _ENV_VARS.items():
        if var in environ and environ[var] != "":
            merged[key] = _check_value(var, key, _coerce_env_var(var, key, environ[var]))
    for key, value in (flags or {}).items():
        if value is None:
            continue
        if key not in _SCHEMA:
            raise ConfigError(f"unknown setting {key!r}")
        merged[key] = _check_value(f"--{key.replace('_', '-')}", key, value)
    return dataclasses.replace(Settings(env=env_name), **merged)
