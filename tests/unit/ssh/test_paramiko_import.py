"""paramiko comes in without invoke, and invoke stays importable afterwards."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
import ops.transports.ssh
import paramiko.config
loaded = "invoke" in sys.modules
mark = "invoke" in sys.modules and sys.modules["invoke"] is None
import invoke
print(json.dumps({"loaded": loaded, "mark": mark, "config": paramiko.config.invoke is None,
                  "later": invoke.__name__}))
"""

_FIRST = """
import json, sys
import invoke
import ops.transports.ssh
import paramiko.config
print(json.dumps({"config": paramiko.config.invoke is invoke}))
"""


def _probe(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(done.stdout)


def test_paramiko_loads_without_invoke_and_leaves_it_importable() -> None:
    found = _probe(_PROBE)
    assert found == {"loaded": False, "mark": False, "config": True, "later": "invoke"}


def test_a_process_that_imported_invoke_first_keeps_it_for_paramiko() -> None:
    assert _probe(_FIRST) == {"config": True}
