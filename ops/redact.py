"""Secrets typed on the command line stay out of the journal and the output.

`-e db_password=...` is how people hand a playbook a secret. The journal is
kept for audit and shared, and task messages are printed and recorded: a
variable whose name looks secret has its value masked in both, and any
place its value shows up in a host's message is masked too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "********"
_SECRET_NAME = re.compile(r"pass(word|wd|phrase)?|token|secret|key|credential", re.IGNORECASE)
_MIN_SCRUB = 4  # shorter values would mask ordinary words in every message


def looks_secret(name: str) -> bool:
    """password, db_pass, api_token, client_secret, ssh_key, aws_access_key_id ..."""
    return bool(_SECRET_NAME.search(name))


def masked(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The variables with the values of secret-looking names replaced by MASK."""
    return {k: MASK if looks_secret(k) else v for k, v in variables.items()}


class Redactor:
    """Masks the values of secret-looking variables wherever they appear in text."""

    def __init__(self, variables: Mapping[str, Any]) -> None:
        values = {str(v) for k, v in variables.items() if looks_secret(k) and v is not None}
        self._values = sorted((v for v in values if len(v) >= _MIN_SCRUB), key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, MASK)
        return text

    def scrub_all(self, texts: Iterable[str]) -> list[str]:
        return [self.scrub(t) for t in texts]
