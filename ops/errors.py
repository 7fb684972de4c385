"""Exit codes and the exceptions that carry them.

Every layer raises these instead of printing and exiting, so the CLI is the
one place that turns a failure into a line on stderr and a process status.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    HOSTS_FAILED = 1
    BAD_INPUT = 2
    STOPPED = 3
    INTERRUPTED = 130


class OpsError(Exception):
    """Base class: a message meant for the operator, and the exit code it maps to."""

    exit_code: ExitCode = ExitCode.HOSTS_FAILED


class BadInput(OpsError):
    """Refused before anything changed: a flag, a file or a setting is wrong."""

    exit_code = ExitCode.BAD_INPUT


class ConfigError(BadInput):
    """A settings file is unreadable, or a key or value in it is wrong."""


class BudgetExhausted(OpsError):
    """A failure budget or a gate stopped the operation."""

    exit_code = ExitCode.STOPPED
