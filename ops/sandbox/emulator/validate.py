"""Input checks against botocore's own SSM model, so the sandbox refuses what AWS refuses.

botocore's ParamValidator covers types, required members and minimums; the
service also enforces maximums, patterns and enums server-side, which a
client-side validator skips, so those are checked here as the service does,
with its "N validation error(s) detected" wording.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape
from botocore.validate import ParamValidator


class ApiError(Exception):
    """An error the emulator returns as an SSM error body (`__type` and `message`)."""

    def __init__(self, code: str, message: str = "", status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@lru_cache(maxsize=1)
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("ssm")


@lru_cache(maxsize=64)
def operation_model(name: str) -> OperationModel:
    return service_model().operation_model(name)


@lru_cache(maxsize=256)
def _pattern(expr: str) -> re.Pattern[str] | None:
    try:
        return re.compile(expr)
    except re.error:
        # Java-only constructs such as \p{L}; the service checks these, we cannot.
        return None


def _shown(value: Any) -> str:
    """A value as the service's (Java) messages print it: [a, b], {k=v}, never a Python repr."""
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_shown(v)}" for k, v in value.items()) + "}"
    return str(value)


def _violation(value: Any, path: str, rule: str) -> str:
    """One constraint failure, worded as the service words it."""
    return f"Value '{_shown(value)}' at '{path}' failed to satisfy constraint: {rule}"


def _constraints(shape: Shape, value: Any, path: str, errors: list[str]) -> None:
    meta = shape.metadata
    kind = shape.type_name
    if value is None:
        return
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                _constraints(member, value[name], f"{path}.{name[0].lower()}{name[1:]}", errors)
        return
    if kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(
                _violation(
                    value, path, f"Member must have length less than or equal to {meta['max']}"
                )
            )
        for index, item in enumerate(value):
            _constraints(shape.member, item, f"{path}.{index + 1}.member", errors)
        return
    if kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            _constraints(shape.value, item, f"{path}.{key}", errors)
        return
    if kind == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(
                _violation(
                    value, path, f"Member must have length less than or equal to {meta['max']}"
                )
            )
        if shape.enum and value not in shape.enum:
            errors.append(
                _violation(
                    value, path, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]"
                )
            )
        pattern = _pattern(meta["pattern"]) if "pattern" in meta else None
        if pattern is not None and not pattern.search(value):
            errors.append(
                _violation(
                    value,
                    path,
                    f"Member must satisfy regular expression pattern: {meta['pattern']}",
                )
            )
        return
    if kind in ("integer", "long") and isinstance(value, int):
        if "max" in meta and value > meta["max"]:
            errors.append(
                _violation(
                    value, path, f"Member must have value less than or equal to {meta['max']}"
                )
            )
        if "min" in meta and value < meta["min"]:
            errors.append(
                _violation(
                    value, path, f"Member must have value greater than or equal to {meta['min']}"
                )
            )


def validate(operation: str, params: Any) -> dict[str, Any]:
    """Return the parameters if valid, else raise ApiError(ValidationException)."""
    if not isinstance(params, dict):
        raise ApiError("SerializationException", "request body must be a JSON object")
    shape = operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        raise ApiError("ValidationException", report.generate_report())
    errors: list[str] = []
    for name, member in shape.members.items():
        if name in params:
            _constraints(member, params[name], name[0].lower() + name[1:], errors)
    if errors:
        count = len(errors)
        noun = "error" if count == 1 else "errors"
        raise ApiError(
            "ValidationException",
            f"{count} validation {noun} detected: " + "; ".join(errors),
        )
    return params
