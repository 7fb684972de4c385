"""Fleet data marked inert for Ansible: tag values, names and addresses are text, never templates.

Anyone allowed to tag an instance would otherwise run code wherever Ansible
renders the inventory (`{{ lookup('pipe', ...) }}` in a Role tag runs on the
machine running `ops`, or as root on a host pulling its playbook). Ansible's
own answer is the `!unsafe` YAML tag (AnsibleUnsafeText once loaded): the
value is passed through as it is, never templated. Values are wrapped with
`unsafe()` where the inventory is built and written with `!unsafe` by
`dump()`; everything else stays plain YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

UNSAFE_TAG = "!unsafe"


class Unsafe(str):
    """A string from the fleet: written as `!unsafe`, compared and printed as plain text."""

    __slots__ = ()


def unsafe(value: Any) -> Any:
    """Strings become Unsafe; numbers, None and booleans stay as they are (nothing to template)."""
    if isinstance(value, str) and not isinstance(value, Unsafe):
        return Unsafe(value)
    return value


class _Dumper(yaml.SafeDumper):
    """SafeDumper that knows Unsafe; every other type is dumped as SafeDumper would."""


def _represent_unsafe(dumper: yaml.SafeDumper, value: Unsafe) -> yaml.Node:
    style = '"' if any(ch in value for ch in "\n\r\t") or not value.isprintable() else None
    return dumper.represent_scalar(UNSAFE_TAG, str(value), style=style)


_Dumper.add_representer(Unsafe, _represent_unsafe)


def dump(data: Mapping[str, Any]) -> str:
    """YAML with fleet strings tagged `!unsafe` (Ansible's yaml inventory plugin reads it)."""
    return yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `!unsafe` back as Unsafe (what Ansible's loader also does)."""


def _construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Unsafe:
    return Unsafe(loader.construct_scalar(node))  # type: ignore[arg-type]


_Loader.add_constructor(UNSAFE_TAG, _construct_unsafe)


def load(text: str) -> Any:
    """Read YAML written by dump(): `!unsafe` scalars come back as Unsafe strings."""
    return yaml.load(text, Loader=_Loader)
