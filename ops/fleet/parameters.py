"""Secrets for a service's environment, read from SSM Parameter Store at deploy time.

The spec holds only `ssm:/path` references; values are fetched with
decryption just before a batch starts and go to the host in a 0600 env file,
never to output, logs or the journal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from ops.aws import client
from ops.config import Settings
from ops.errors import BadInput, OpsError

BATCH = 10  # GetParameters takes at most 10 names


def get_secrets(settings: Settings, refs: Mapping[str, str], *, ssm: Any = None) -> dict[str, str]:
    """env key -> decrypted value; a parameter that does not exist is bad input (exit 2)."""
    if not refs:
        return {}
    ssm = ssm or client(
        "ssm", profile=settings.profile, region=settings.region, max_attempts=settings.max_attempts
    )
    names = sorted(set(refs.values()))
    values: dict[str, str] = {}
    for start in range(0, len(names), BATCH):
        chunk = names[start : start + BATCH]
        try:
            answer = ssm.get_parameters(Names=chunk, WithDecryption=True)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise OpsError(f"Parameter Store refused GetParameters: {code}") from None
        if answer.get("InvalidParameters"):
            missing = ", ".join(sorted(answer["InvalidParameters"]))
            raise BadInput(f"Parameter Store has no parameter {missing}; create it or fix the spec")
        values.update({p["Name"]: p["Value"] for p in answer.get("Parameters", [])})
    return {key: values[name] for key, name in refs.items()}
