"""The package repository's web server: a threaded http.server on a loopback port.

A process of its own (pid file in the state folder), like moto and the Run
Command emulator, so that `down` can stop what an earlier `up` started.
Run as `python -m ops.sandbox.repo_server --port N --root DIR`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PID_FILE = "repo-server.pid"
LOG_FILE = "repo-server.log"


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def serve(root: Path, port: int) -> None:
    handler = functools.partial(_Handler, directory=str(root))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        server.serve_forever()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start(folder: Path, root: Path, port: int, timeout: float = 30.0) -> int:
    """Start the server on 127.0.0.1:port serving `root`; the pid once it answers."""
    with (folder / LOG_FILE).open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ops.sandbox.repo_server",
                "--port",
                str(port),
                "--root",
                str(root),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (folder / PID_FILE).write_text(f"{process.pid}\n", encoding="ascii")
    deadline = time.monotonic() + timeout
    while not _answers(f"http://127.0.0.1:{port}/dists/"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(folder)
            tail = (folder / LOG_FILE).read_text(errors="replace")[-1000:]
            raise RuntimeError(f"package repository did not answer on port {port}:\n{tail}")
        time.sleep(0.05)
    return process.pid


def stop(folder: Path) -> None:
    """Stop the server the pid file names; nothing to do when there is none."""
    path = folder / PID_FILE
    try:
        pid = int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ops.sandbox.repo_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.root, args.port)


if __name__ == "__main__":
    main()
