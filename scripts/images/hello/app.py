"""The sandbox's sample service: answers /health and / with its version on $PORT.

HELLO_HEALTHY=0 (v3) makes /health answer 503 forever, so a deploy of v3
must fail its health gate and roll back.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("HELLO_VERSION", "unknown")
HEALTHY = os.environ.get("HELLO_HEALTHY", "1") == "1"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        ok = HEALTHY or self.path != "/health"
        body = json.dumps({"service": "hello", "version": VERSION, "healthy": ok}).encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    ThreadingHTTPServer((os.environ.get("BIND", "127.0.0.1"), port), Handler).serve_forever()
