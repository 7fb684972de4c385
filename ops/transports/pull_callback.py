"""Ansible stdout callback shipped inside every pull bundle (`ops playbook --via ssm`).

It prints one JSON line per task result (prefix OPS-TASK) and the recap
(prefix OPS-RECAP) in the key names ansible-runner uses, so `ops` reads a
pulled run's per-host counts exactly as it reads a pushed run's.

Why a callback of our own: ansible-core ships no JSON callback (only default,
junit, minimal, oneline, tree); `ansible.posix.json` comes with the `ansible`
package, which `apt-get/dnf install ansible-core` does not bring, and the AL2
`ansible2` topic (Ansible 2.9) calls its own `json`. This file runs on all of
them, including Python 2.7 under Ansible 2.9, so it keeps to syntax both read
(type comments, explicit super(); hence the noqa marks).
"""

from __future__ import absolute_import, division, print_function  # noqa: UP010

import json
import sys

from ansible.plugins.callback import CallbackBase

try:  # noqa: SIM105 - Python 2.7 (Ansible 2.9 on AL2) has no typing module
    from typing import Any  # noqa: F401 (used in type comments)
except ImportError:  # pragma: no cover
    pass

DOCUMENTATION = """
    name: ops_recap
    type: stdout
    short_description: one JSON line per task result and the recap, for fleetops
    description:
      - Prints OPS-TASK and OPS-RECAP lines that fleetops parses per host.
"""

TASK_PREFIX = "OPS-TASK "
RECAP_PREFIX = "OPS-RECAP "


def _attr(obj, *names):
    # type: (Any, str) -> Any
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _message(res):
    # type: (dict) -> str
    msg = res.get("msg") or res.get("stderr") or res.get("reason") or ""
    if isinstance(msg, list):
        msg = " ".join(str(m) for m in msg)
    lines = str(msg).strip().splitlines()
    return lines[0][:300] if lines else ""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "ops_recap"

    def __init__(self, *args, **kwargs):
        # type: (Any, Any) -> None
        super(CallbackModule, self).__init__(*args, **kwargs)  # noqa: UP008
        self._tasks = 0

    def _emit(self, prefix, data):
        # type: (str, dict) -> None
        sys.stdout.write(prefix + json.dumps(data, sort_keys=True) + "\n")
        sys.stdout.flush()

    def _task_result(self, result, status):
        # type: (Any, str) -> None
        host = _attr(result, "host", "_host")
        task = _attr(result, "task", "_task")
        res = _attr(result, "result", "_result") or {}
        if status == "failed" and getattr(task, "ignore_errors", False):
            status = "ok"
        self._emit(
            TASK_PREFIX,
            {
                "host": host.get_name() if host is not None else "",
                "task": task.get_name() if task is not None else "",
                "status": status,
                "changed": bool(res.get("changed", False)),
                "message": _message(res) if status in ("failed", "unreachable") else "",
            },
        )

    def v2_playbook_on_task_start(self, task, is_conditional):
        # type: (Any, Any) -> None
        self._tasks += 1

    def v2_runner_on_ok(self, result, **kwargs):
        # type: (Any, Any) -> None
        self._task_result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        # type: (Any, bool, Any) -> None
        self._task_result(result, "ok" if ignore_errors else "failed")

    def v2_runner_on_unreachable(self, result, **kwargs):
        # type: (Any, Any) -> None
        self._task_result(result, "unreachable")

    def v2_runner_on_skipped(self, result, **kwargs):
        # type: (Any, Any) -> None
        self._task_result(result, "skipped")

    def v2_playbook_on_stats(self, stats):
        # type: (Any) -> None
        data = {"tasks": self._tasks, "processed": dict((h, 1) for h in stats.processed)}
        for key in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored"):
            data[key] = dict(getattr(stats, key, {}) or {})
        self._emit(RECAP_PREFIX, data)
