"""The HTTP face of the emulator: SSM's awsJson1_1 protocol, moto forwarding, admin endpoints.

Errors use the JSON protocol's shape ({"__type": code, "message": ...}) and
status codes: 400 for client errors and throttling, 500 for
InternalServerError, which is what botocore's parser and its retry handler
key on. Keep-alive (HTTP/1.1) matters: boto3 reuses connections and a
benchmark without it measures TCP set-up, not the emulator.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ops.sandbox.emulator.auth import Auth, AuthError
from ops.sandbox.emulator.calllog import CallLog
from ops.sandbox.emulator.model import Model
from ops.sandbox.emulator.throttle import Throttle
from ops.sandbox.emulator.validate import ApiError, validate

log = logging.getLogger(__name__)

TARGET_PREFIX = "AmazonSSM."
ADMIN_PREFIX = "/_sandbox/"
_HOP_HEADERS = {
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "server",
    "date",
}


def _rss_bytes() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def error_body(exc: ApiError) -> dict[str, str]:
    """An error as awsJson1_1 writes it, its message under both spellings.

    SSM's error shapes name the member `Message` (InvalidInstanceId,
    ThrottlingException) or `message` (InvalidInstanceInformationFilterValue),
    and SDKs differ in which they read; the text is never empty.
    """
    message = exc.message or exc.code
    return {"__type": exc.code, "message": message, "Message": message}


class Emulator:
    """Everything one emulator process holds; the HTTP handler is a thin shell over it."""

    def __init__(
        self,
        model: Model,
        *,
        moto_url: str,
        call_log: CallLog,
        throttle: Throttle | None = None,
        auth: Auth | None = None,
    ) -> None:
        self.model = model
        self.auth = auth  # None only in-process (unit tests); the sandbox process always checks
        self.moto_url = moto_url.rstrip("/")
        self.calls = call_log
        self.throttle = throttle or Throttle()
        self.started = time.time()
        self.operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "SendCommand": model.send_command,
            "ListCommands": model.list_commands,
            "ListCommandInvocations": model.list_command_invocations,
            "GetCommandInvocation": model.get_command_invocation,
            "CancelCommand": model.cancel_command,
            "DescribeInstanceInformation": model.describe_instance_information,
        }

    def handle_api(
        self, operation: str, body: bytes
    ) -> tuple[int, dict[str, Any], str | None, bool, dict[str, Any]]:
        """Serve one operation: (status, response body, error code, throttled, parameters)."""
        params: dict[str, Any] = {}
        try:
            try:
                loaded = json.loads(body or b"{}")
            except ValueError:
                raise ApiError("SerializationException", "request body is not valid JSON") from None
            params = loaded if isinstance(loaded, dict) else {}
            if not self.throttle.allow(operation):
                raise ApiError("ThrottlingException", "Rate exceeded")
            if self.model.faults.roll_5xx():
                raise ApiError(
                    "InternalServerError", "An internal error occurred (sandbox fault).", 500
                )
            validate(operation, loaded)
            result = self.operations[operation](params)
            if operation == "SendCommand" and self.model.faults.roll_5xx("lost_response"):
                raise ApiError(
                    "InternalServerError", "An internal error occurred (sandbox fault).", 500
                )
            return 200, result, None, False, params
        except ApiError as exc:
            return exc.status, error_body(exc), exc.code, exc.code == "ThrottlingException", params

    # ---- admin ----------------------------------------------------------

    def admin(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        model = self.model
        if path == "status" and method == "GET":
            return {
                "pid": os.getpid(),
                "uptime": time.time() - self.started,
                "rss_bytes": _rss_bytes(),
                "throttle": self.throttle.describe(),
                "calls": self.calls.last_seq,
                **model.status(),
            }
        if path == "deny" and method == "POST" and self.auth is not None:
            return {"denied": self.auth.deny(body.get("actions") or [])}
        if path == "instances" and method == "POST":
            ids = model.register(body.get("instances") or [])
            return {"registered": len(ids)}
        if path == "instances" and method == "GET":
            with model.lock:
                return {"instances": [model.instance_json(i) for i in model.instances.values()]}
        if path == "faults" and method == "POST":
            with model.lock:
                known = [i for i, inst in model.instances.items() if not inst.terminated]
            chosen = model.faults.set(
                str(body.get("kind")),
                known=known,
                instances=body.get("instances"),
                fraction=body.get("fraction"),
                params=body.get("params") or {},
            )
            return {"instances": chosen}
        if path == "faults" and method == "DELETE":
            model.faults.clear(body.get("instances") if isinstance(body, dict) else None)
            return {"cleared": True}
        if path == "faults" and method == "GET":
            return model.faults.describe()
        if path == "throttle" and method == "POST":
            rates = body.get("rates")
            try:
                self.throttle.configure(
                    multiplier=body.get("multiplier"),
                    rates={k: (float(v[0]), float(v[1])) for k, v in rates.items()}
                    if rates
                    else None,
                    enabled=body.get("enabled"),
                )
            except ValueError as exc:
                raise ApiError("ValidationException", str(exc)) from None
            return self.throttle.describe()
        if path == "settings" and method == "POST":
            with model.lock:
                for key, value in body.items():
                    if not hasattr(model.settings, key):
                        raise ApiError("ValidationException", f"unknown setting {key!r}")
                    setattr(model.settings, key, float(value))
                return vars(model.settings)
        if path == "calls" and method == "GET":
            since = int(query.get("since", ["0"])[0])
            return {"calls": self.calls.since(since)}
        if path == "reset" and method == "POST":
            model.reset(keep_instances=bool(body.get("keep_instances", True)))
            self.throttle.reset()
            return {"reset": True}
        raise ApiError("NotFound", f"no admin endpoint {method} /_sandbox/{path}", 404)

    # ---- forwarding -----------------------------------------------------

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Pass a request to moto unchanged and hand its answer back."""
        request = urllib.request.Request(
            self.moto_url + path,
            data=body if method not in ("GET", "HEAD") else None,
            method=method,
            headers={k: v for k, v in headers.items() if k.lower() not in _HOP_HEADERS},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, list(response.getheaders()), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, list(exc.headers.items()), exc.read()


def make_handler(emulator: Emulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fleetops-ssm-emulator"
        # headers and body go out as two writes; with Nagle on, delayed ACKs add 40 ms to each
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-amzn-RequestId", os.urandom(16).hex())
            self.end_headers()
            self.wfile.write(body)

        def _dispatch(self) -> None:
            started = time.perf_counter()
            body = self._body()
            split = urlsplit(self.path)
            if split.path.startswith(ADMIN_PREFIX):
                # faults, denials and the call log: as guarded as SendCommand itself
                if not self._authorised("", body, started):
                    return
                self._admin(split.path[len(ADMIN_PREFIX) :], parse_qs(split.query), body)
                return
            target = self.headers.get("X-Amz-Target", "")
            operation = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else ""
            if not self._authorised(operation, body, started):
                return
            if operation in emulator.operations:
                status, payload, error, throttled, params = emulator.handle_api(operation, body)
                # logged before the answer leaves: a caller that has its response
                # must find the call in the log (tests and `ops sandbox calls` read it)
                emulator.calls.record(
                    operation,
                    params,
                    status=status,
                    error=error,
                    throttled=throttled,
                    elapsed_ms=(time.perf_counter() - started) * 1000,
                )
                self._send(status, json.dumps(payload).encode(), "application/x-amz-json-1.1")
                return
            status, headers, answer = emulator.forward(
                self.command, self.path, dict(self.headers.items()), body
            )
            emulator.calls.record(
                operation or f"{self.command} {split.path}",
                {},
                status=status,
                error=None if status < 400 else "forwarded",
                throttled=False,
                elapsed_ms=(time.perf_counter() - started) * 1000,
            )
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in _HOP_HEADERS:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def _authorised(self, operation: str, body: bytes, started: float) -> bool:
            """Answer as SSM does and log the call when the signature or IAM says no."""
            if emulator.auth is None:
                return True
            try:
                headers = dict(self.headers.items())
                emulator.auth.check(self.command, self.path, headers, body, operation)
            except AuthError as exc:
                emulator.calls.record(
                    operation or f"{self.command} {urlsplit(self.path).path}",
                    {},
                    status=exc.status,
                    error=exc.code,
                    throttled=False,
                    elapsed_ms=(time.perf_counter() - started) * 1000,
                )
                payload = {"__type": exc.code, "message": exc.message}
                self._send(exc.status, json.dumps(payload).encode(), "application/x-amz-json-1.1")
                return False
            return True

        def _admin(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
            try:
                data = json.loads(body) if body else {}
                result = emulator.admin(self.command, path.strip("/"), query, data)
                self._send(200, json.dumps(result, default=str).encode(), "application/json")
            except ApiError as exc:
                payload = {"__type": exc.code, "message": exc.message}
                self._send(exc.status, json.dumps(payload).encode(), "application/json")
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                payload = {"__type": "ValidationException", "message": str(exc)}
                self._send(400, json.dumps(payload).encode(), "application/json")

        do_POST = _dispatch
        do_GET = _dispatch
        do_PUT = _dispatch
        do_DELETE = _dispatch
        do_HEAD = _dispatch

    return Handler


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def serve(emulator: Emulator, host: str, port: int) -> EmulatorServer:
    """Bind and return the server; the caller runs serve_forever (in a thread or not)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the emulator listens on loopback only")
    return EmulatorServer((host, port), make_handler(emulator))


def serve_in_thread(emulator: Emulator, port: int = 0) -> tuple[EmulatorServer, threading.Thread]:
    server = serve(emulator, "127.0.0.1", port)
    thread = threading.Thread(target=server.serve_forever, name="ssm-emulator", daemon=True)
    thread.start()
    return server, thread
