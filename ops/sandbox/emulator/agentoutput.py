"""Output text as the SSM agent builds it, so clients meet the agent's markers and byte limits.

Ported from the agent's own code (amazon-ssm-agent,
agent/framework/processor/executer/iohandler/iohandler.go `TruncateOutput`
and agent/plugins/pluginutil/pluginutil.go `StringPrefix`): the agent is Go,
so every length is a count of UTF-8 bytes, and a cut can fall inside a
multi-byte character (Go's JSON encoder then writes U+FFFD, as
`errors="replace"` does here).
"""

from __future__ import annotations

DETAIL_LIMIT = 2500  # MaximumPluginOutputSize: the Output of ListCommandInvocations(Details)
STDOUT_LIMIT = 24000  # MaxStdoutLength: GetCommandInvocation's StandardOutputContent
STDERR_LIMIT = 8000  # the service's limit on StandardErrorContent
ERROR_TITLE = "\n----------ERROR-------\n"
TRUNCATED_OUT = "\n---Output truncated---"
TRUNCATED_ERR = "\n---Error truncated----"
CONTENT_SUFFIX = "--output truncated--"


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def detail_output(stdout: str, stderr: str, capacity: int = DETAIL_LIMIT) -> str:
    """stdout, the error title and stderr, cut to `capacity` bytes with the agent's markers."""
    out, err = stdout.encode(), stderr.encode()
    title = ERROR_TITLE.encode() if err else b""
    available = capacity - len(title)
    if len(out) + len(err) < available:
        return _text(out + title + err)
    half = available // 2
    if len(out) > half and len(err) > half:
        size = available - len(TRUNCATED_ERR) - len(TRUNCATED_OUT)
        return (
            _text(out[: size // 2])
            + TRUNCATED_OUT
            + _text(title)
            + _text(err[: size // 2])
            + TRUNCATED_ERR
        )
    if len(out) <= half:
        size = available - len(TRUNCATED_ERR)
        return _text(out + title + err[: size - len(out)]) + TRUNCATED_ERR
    size = available - len(TRUNCATED_OUT)
    return _text(out[: size - len(err)]) + TRUNCATED_OUT + _text(title + err)


def content(text: str, limit: int) -> str:
    """The agent's StringPrefix: at `limit` bytes or more, cut and end with its suffix."""
    data = text.encode()
    if len(data) < limit:
        return text
    if limit > len(CONTENT_SUFFIX):
        return _text(data[: limit - len(CONTENT_SUFFIX)]) + CONTENT_SUFFIX
    return CONTENT_SUFFIX[:limit]


def failure_note(stderr: str, exit_code: int) -> str:
    """stderr with the line the agent appends when a script exits non-zero
    (runscript.go: MarkAsFailed("failed to run commands: exit status N"))."""
    note = f"failed to run commands: exit status {exit_code}"
    return f"{stderr}\n{note}" if stderr else note
