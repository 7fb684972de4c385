"""paramiko, imported without invoke.

paramiko's ssh_config module imports invoke, and invoke imports yaml,
unittest.mock and asyncio, for one feature: `Match exec` lines in an
ssh_config file. `ops` reads no ssh_config (every route comes from the
fleet's tags and the settings), and that import was about 45 ms of the
start-up of every `ops run --via ssh`, a sixth of what it paid before its
first connection. While paramiko loads, invoke is marked absent, which
paramiko already handles (it keeps the import error to raise should a
`Match exec` ever be evaluated); the mark is lifted afterwards, so any other
code in the process can still import invoke.
"""

from __future__ import annotations

import sys

if "paramiko" in sys.modules or "invoke" in sys.modules:
    import paramiko
else:
    sys.modules["invoke"] = None  # type: ignore[assignment]
    try:
        import paramiko
    finally:
        if sys.modules.get("invoke", "") is None:
            del sys.modules["invoke"]

__all__ = ["paramiko"]
