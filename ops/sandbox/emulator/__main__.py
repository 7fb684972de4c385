"""`python -m ops.sandbox.emulator`: run the emulator as a background-friendly process.

It writes its pid file and log into the state directory so that a later
process (another test worker, the CLI) can find it and stop it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from ops.sandbox.emulator.auth import CREDENTIALS_FILE, Auth, Credentials
from ops.sandbox.emulator.calllog import CallLog
from ops.sandbox.emulator.model import Model
from ops.sandbox.emulator.outputs import MotoSide
from ops.sandbox.emulator.server import Emulator, serve

PID_FILE = "ssm-emulator.pid"
LOG_FILE = "ssm-emulator.log"
CALLS_FILE = "ssm-calls.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.sandbox.emulator")
    parser.add_argument("--port", type=int, default=0, help="loopback port (0 picks one)")
    parser.add_argument("--moto-url", required=True, help="moto server URL to forward to")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-throttle", action="store_true")
    args = parser.parse_args(argv)

    state: Path = args.state_dir
    state.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=state / LOG_FILE,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    moto = MotoSide(args.moto_url, args.region)
    model = Model(
        seed=args.seed,
        region=args.region,
        moto_url=args.moto_url,
        s3_writer=moto.put_object,
        terminator=moto.terminate_instance,
    )
    # The sandbox's generated key: `ops sandbox up` writes it before starting this process.
    auth = Auth(Credentials.load(state / CREDENTIALS_FILE))
    emulator = Emulator(
        model, moto_url=args.moto_url, call_log=CallLog(state / CALLS_FILE), auth=auth
    )
    if args.no_throttle:
        emulator.throttle.configure(enabled=False)
    server = serve(emulator, "127.0.0.1", args.port)
    port = server.server_address[1]
    pid_file = state / PID_FILE
    pid_file.write_text(f"{os.getpid()}\n", encoding="ascii")
    (state / "ssm-emulator.port").write_text(f"{port}\n", encoding="ascii")
    logging.getLogger(__name__).info(
        "listening on 127.0.0.1:%s, forwarding to %s", port, args.moto_url
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        model.close()
        emulator.calls.close()
        pid_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
