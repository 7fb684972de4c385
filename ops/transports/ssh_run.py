"""A command over SSH that leaves a record on the host, so a resume can settle it.

SSM keeps every invocation (status, exit code, output) and a resume asks it.
sshd keeps nothing, so the command is wrapped: the wrapper claims the marker
of the send by creating `<marker>.pid` under noclobber (`set -C`: the shell
opens it O_EXCL, so a second start of the same marker refuses, and no
`mkdir` process is spent on it), runs the command with its output in
`<marker>.out` and `<marker>.err`, and writes `<marker>.rc` last. A resume
then reads the record: absent means the command never started (send it), an
exit code means it finished (collect it, never run it again), neither means
it is still running (wait). Records left by earlier versions of `ops` are a
folder `<marker>/` holding the same files; every reader here takes both.

The command travels inside the exec request itself (one SSH message, so a
process killed mid-send cannot leave half a script to run), shlex-quoted;
nothing else variable reaches the shell but the marker and whole numbers,
both checked here.
"""

from __future__ import annotations

import re
import shlex

RUNS_DIR = '"${HOME:-/tmp}/.ops/runs"'
MARKER_PREFIX = "ssh-"
OUTPUT_CAP = 1_000_000  # bytes of stdout (and of stderr) brought back per host
PRUNE_DAYS = 7
# exit codes of the wrapper itself (never the command's: those are in the rc file)
ALREADY_STARTED = 253
_MARKER = re.compile(r"^ssh-[0-9a-f]{8,32}$")


def _record(marker: str) -> str:
    if not _MARKER.match(marker):
        raise ValueError(f"not an ssh marker: {marker!r}")
    return f"d={RUNS_DIR}/{marker}"


def _either(marker: str) -> str:
    """Sets `p` to the prefix of the record's files (`$d.` or, from an older `ops`, `$d/`)."""
    return f'{_record(marker)}; if [ -d "$d" ]; then p="$d/"; else p="$d."; fi'


def wrapped(command: str, marker: str, timeout: int) -> str:
    """Shell text that runs `command` under `timeout` seconds and records it under `marker`."""
    if "\0" in command:
        raise ValueError("a command cannot hold a NUL byte")
    seconds = int(timeout)
    refuse = f'{{ echo "ops: $d was started before" >&2; exit {ALREADY_STARTED}; }}'
    return "\n".join(
        [
            "umask 077",
            _record(marker),
            f'r={RUNS_DIR}; [ -d "$r" ] || mkdir -p "$r" || exit 252',
            f'[ -e "$d" ] && {refuse}',
            "set -C",
            f'{{ echo $$ > "$d.pid"; }} 2>/dev/null || {refuse}',
            "set +C",
            f"s={shlex.quote(command)}",
            "if command -v timeout >/dev/null 2>&1; then",
            f'  timeout -k 5 {seconds} sh -c "$s" </dev/null >"$d.out" 2>"$d.err" &',
            "else",
            '  sh -c "$s" </dev/null >"$d.out" 2>"$d.err" &',
            "fi",
            'echo $! > "$d.job"',
            "wait $!",
            "rc=$?",
            'echo "$rc" > "$d.rc"',
            f'[ -s "$d.out" ] && head -c {OUTPUT_CAP + 1} "$d.out"',
            f'[ -s "$d.err" ] && head -c {OUTPUT_CAP + 1} "$d.err" >&2',
            # one run in 16 (by pid, no fork to decide) prunes the old records
            f'[ $(($$ % 16)) -eq 0 ] && find "$r" -mindepth 1 -maxdepth 1 -mtime +{PRUNE_DAYS} '
            "-exec rm -rf {} + >/dev/null 2>&1 </dev/null &",
            'exit "$rc"',
        ]
    )


def probe(marker: str) -> str:
    """Exit 0 when the command of `marker` started on this host, 1 when it never did."""
    return f'{_record(marker)}; [ -d "$d" ] || [ -e "$d.pid" ]'


def state(marker: str) -> str:
    """One line on stdout: `rc N` (finished), `running`, `lost` (its process ended
    without an exit code: a reboot, a kill) or `absent` (never started)."""
    return "\n".join(
        [
            _either(marker),
            '[ -e "${p}pid" ] || [ -d "$d" ] || { echo absent; exit 0; }',
            'if [ -s "${p}rc" ]; then echo "rc $(cat "${p}rc")"; exit 0; fi',
            'q=$(cat "${p}pid" 2>/dev/null)',
            'if [ -n "$q" ] && ! kill -0 "$q" 2>/dev/null; then',
            '  if [ -s "${p}rc" ]; then echo "rc $(cat "${p}rc")"; else echo lost; fi',
            "else",
            "  echo running",
            "fi",
        ]
    )


def read(marker: str, stream: str) -> str:
    """The recorded stdout (`out`) or stderr (`err`) of `marker`, cut at the cap."""
    if stream not in ("out", "err"):
        raise ValueError(stream)
    return f'{_either(marker)}; head -c {OUTPUT_CAP + 1} "${{p}}{stream}" 2>/dev/null; true'


def cancel(marker: str) -> str:
    """Stop the command of `marker` (SIGTERM to `timeout`, which passes it on)."""
    return f'{_either(marker)}; j=$(cat "${{p}}job" 2>/dev/null) && [ -n "$j" ] && kill -TERM "$j"'


def parse_state(text: str) -> tuple[str, int | None]:
    """(`finished`|`running`|`lost`|`absent`, exit code) from `state`'s line."""
    line = text.strip().splitlines()[-1] if text.strip() else ""
    if line.startswith("rc "):
        value = line[3:].strip()
        if value.isdigit():
            return "finished", int(value)
        return "lost", None
    if line in ("running", "lost", "absent"):
        return line, None
    raise ValueError(f"unexpected answer from the host: {line[:80]!r}")
