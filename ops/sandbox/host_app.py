#!/usr/bin/env python3
"""The placeholder a sandbox host runs on its app port, for the load balancer to check.

Copied into every container host as the service `fleetops-app`
(ops/sandbox/host_service.py), started at boot while it is enabled, so it is
down while the host reboots and back once it has booted, as a real service
would be, until a deploy disables it. It stands alone (the hosts have
python3, not `ops`): GET /health answers 200 while it runs; its pid is in
/run/fleetops/app.pid so a test can stop it as a crashed service would stop.
"""

from __future__ import annotations

import http.server
import os
import socket
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"ok {socket.gethostname()}\n".encode()
        self.send_response(200 if self.path in ("/", "/health") else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def main() -> int:
    port = int(os.environ.get("APP_PORT", "0"))
    if not 0 < port < 65536:
        print("fleetops-app: APP_PORT must be a port number", file=sys.stderr)
        return 64
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
