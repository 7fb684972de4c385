"""SSM Run Command API calls: send (with the lost-response marker), list, results, cancel, S3.

This module knows the API and its limits, not the policy: how many hosts go
at once, when to poll and when to stop belong to the fan-out scheduler in
ops.engine.fanout, which drives an SsmTransport.

- SendCommand takes at most 50 instance ids and no idempotency token: each
  send carries a marker so a lost answer is found, not sent again.
- GetCommandInvocation is called only when a host's 2,500-character detail
  output was cut, and S3 is read only when the 24,000-character
  GetCommandInvocation output was cut too.
- Every call runs under botocore's adaptive retries (ops.aws) and, around
  that, tenacity's jittered exponential backoff: a throttling storm slows a
  run down but does not end it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlparse

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_when_event_set,
    wait_random_exponential,
)

from ops.aws import client
from ops.config import Settings
from ops.transports.pacing import Pacer

DOCUMENT = "AWS-RunShellScript"
BATCH_LIMIT = 50  # SendCommand's InstanceIds limit
DETAIL_LIMIT = 2500  # ListCommandInvocations(Details=True) output limit
CONTENT_LIMIT = 24000  # GetCommandInvocation stdout limit
STDERR_LIMIT = 8000  # GetCommandInvocation stderr limit
ERROR_MARKER = "\n----------ERROR-------\n"
TRUNCATION_MARKERS = ("---Output truncated---", "--output truncated--")

# Statuses a result can carry (the shape later commands share).
SUCCESS = "Success"
FAILED = "Failed"
TIMED_OUT = "TimedOut"
CANCELLED = "Cancelled"
UNDELIVERABLE = "Undeliverable"
DELIVERY_TIMED_OUT = "DeliveryTimedOut"
NOT_STARTED = "NotStarted"
UNREACHABLE = "Unreachable"
STATUSES = (
    SUCCESS,
    FAILED,
    TIMED_OUT,
    CANCELLED,
    UNDELIVERABLE,
    DELIVERY_TIMED_OUT,
    NOT_STARTED,
    UNREACHABLE,
)

OPEN_INVOCATION = frozenset({"Pending", "InProgress", "Delayed", "Cancelling"})
OPEN_COMMAND = frozenset({"Pending", "InProgress", "Cancelling"})
# the reads a run polls with: retried for `poll_patience`, then the run gives up
POLLS = frozenset({"list_commands", "list_command_invocations", "get_command_invocation"})
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
    }
)


@dataclass(frozen=True)
class CommandSpec:
    """What to run: shell text for AWS-RunShellScript, and its limits."""

    commands: list[str]
    execution_timeout: int = 3600
    delivery_timeout: int | None = None
    comment: str = "ops run"
    output_bucket: str | None = None
    output_prefix: str = "ops/"

    def send_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "DocumentName": DOCUMENT,
            "Parameters": {
                "commands": self.commands,
                "executionTimeout": [str(self.execution_timeout)],
            },
            "Comment": self.comment[:100],
        }
        if self.delivery_timeout is not None:
            arguments["TimeoutSeconds"] = self.delivery_timeout
        if self.output_bucket:
            arguments["OutputS3BucketName"] = self.output_bucket
            arguments["OutputS3KeyPrefix"] = self.output_prefix
        return arguments


@dataclass(slots=True)
class HostResult:
    """One host's outcome; `as_dict` is the per-host shape every command reports."""

    instance_id: str
    name: str
    status: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    output_truncated: bool = False
    duration_s: float | None = None
    command_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "status": self.status,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "output_truncated": self.output_truncated,
            "duration_s": self.duration_s,
        }


class SendUnsure(Exception):
    """SendCommand failed where SSM may already have created the command (a 5xx, a
    read timeout, a dropped connection), and the search for its marker could not
    tell: sending again might run it twice, so nobody may. `ops runs resume`
    settles it later from SSM by the marker."""

    def __init__(self, marker: str, cause: BaseException, search: BaseException | None) -> None:
        self.marker = marker
        self.cause = cause
        self.search = search
        why = f"SendCommand answer lost ({_describe(cause)})"
        looked = f"; the search for it failed ({_describe(search)})" if search else ""
        super().__init__(f"{why}{looked}; marker {marker}")


class SendStopped(Exception):
    """A send given up before it went out: the caller's stop (a cancel) was set."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code')}: {error.get('Message')}"
    return f"{type(exc).__name__}: {exc}"


def is_transient(exc: BaseException) -> bool:
    """Throttling, 5xx and dropped connections are worth another try; nothing else is."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in _TRANSIENT_CODES or int(status or 0) >= 500
    return isinstance(exc, ConnectionError | HTTPClientError)


def is_ambiguous(exc: BaseException) -> bool:
    """A failure that may have come after the service acted on the request: a 5xx,
    or a connection that broke once the request was on the wire (botocore's
    HTTPClientError: ConnectionClosedError, ReadTimeoutError, ...). A refused
    connection or a throttled call never reached it."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return int(status or 0) >= 500 and not is_throttle(exc)
    return isinstance(exc, HTTPClientError)


def is_throttle(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and "Throttl" in str(
        exc.response.get("Error", {}).get("Code", "")
    )


def retrying(max_delay: float = 900.0, stop: threading.Event | None = None) -> Retrying:
    """Jittered exponential backoff over botocore's own retries, for as long as a
    storm lasts (bounded so a dead endpoint still ends the run; `stop` set ends it
    at once)."""
    until = stop_after_delay(max_delay)
    return Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(multiplier=0.1, max=5.0),
        stop=until if stop is None else until | stop_when_event_set(stop),
        reraise=True,
    )


def outcome(status: str, details: str | None) -> str:
    """Map SSM's Status and StatusDetails to the result status operators see."""
    if details in (UNDELIVERABLE, DELIVERY_TIMED_OUT):
        return details
    if status == "TimedOut" or details == "ExecutionTimedOut":
        return TIMED_OUT
    if status in (SUCCESS, CANCELLED):
        return status
    return FAILED


def split_output(text: str) -> tuple[str, str]:
    """The detail output is stdout, then stderr after SSM's error marker."""
    stdout, marker, stderr = text.partition(ERROR_MARKER)
    return stdout, stderr if marker else ""


def _cut(text: str, limit: int) -> bool:
    return len(text) >= limit or any(marker in text for marker in TRUNCATION_MARKERS)


def _strip_marker(text: str) -> str:
    for marker in TRUNCATION_MARKERS:
        text = text.replace("\n" + marker, "").replace(marker, "")
    return text


def _seconds(start: Any, end: Any) -> float | None:
    if isinstance(start, datetime) and isinstance(end, datetime):
        return round(max((end - start).total_seconds(), 0.0), 3)
    return None


class SsmTransport:
    """Sends and collects over SSM; knows the API, not the policy."""

    # how far the local clock may be from AWS's when a time filter is sent
    clock_skew = timedelta(minutes=15)
    # how long reads may take to show what was just written (SSM is eventually
    # consistent): a send whose answer was lost is looked for this long, an
    # invocation GetCommandInvocation does not know yet is asked for again
    catch_up_seconds = 10.0
    # pace calls by default (False: as fast as they are made, throttled ones
    # retried; what `ops` did before, kept for side-by-side measurement)
    paced = True
    # how long a poll (ListCommands, ListCommandInvocations, GetCommandInvocation)
    # is retried with back-off before the run gives it up
    poll_patience = 120.0

    def __init__(
        self,
        ssm: Any,
        s3: Any = None,
        *,
        per_operation: dict[str, Any] | None = None,
        max_retry_delay: float = 900.0,
        pacer: Pacer | None = None,
    ) -> None:
        self.ssm = ssm
        self.s3 = s3
        # botocore's adaptive mode slows a whole client when any of its calls is
        # throttled; SSM throttles per operation, so each hot operation gets its
        # own client and a throttled poll never slows the sends.
        self.per_operation = per_operation or {}
        self.max_retry_delay = max_retry_delay
        # each operation paced to what SSM grants, learnt from its throttled
        # answers (ops.transports.pacing); unpaced until the first of them
        self.pacer = pacer if pacer is not None else (Pacer() if self.paced else None)
        self.throttled = 0
        self._lock = threading.Lock()
        self._sent_to: dict[str, int] = {}  # command id -> instance ids it was sent to
        # command id -> RequestedDateTime, the service's own clock: time filters
        # are computed from these, never from the local clock
        self._requested: dict[str, datetime] = {}
        self._offset = timedelta(0)  # the service's clock less ours, from its Date headers

    def service_now(self) -> datetime:
        """Now by the service's clock, as its last answer's Date header put it (to the
        second); the local clock until an answer came."""
        return datetime.now(UTC) + self._offset

    def _learn_clock(self, response: dict[str, Any]) -> None:
        date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        if not date:
            return
        try:
            theirs = parsedate_to_datetime(str(date))
        except (TypeError, ValueError):
            return
        if theirs.tzinfo is not None:
            self._offset = theirs - datetime.now(UTC)

    def _paced(
        self, operation: str, method: Any, stop: threading.Event | None = None, **kwargs: Any
    ) -> Any:
        """One attempt of a call, paced when a Pacer is set; throttled answers are counted.
        With `stop` set before the call goes out, SendStopped and no call."""
        ticket = self.pacer.acquire(operation, stop) if self.pacer is not None else None
        if stop is not None and stop.is_set():
            raise SendStopped()
        try:
            response = method(**kwargs)
        except ClientError as exc:
            self._learn_clock(exc.response)
            throttled = is_throttle(exc)
            if throttled:
                with self._lock:
                    self.throttled += 1
            if ticket is not None and self.pacer is not None:
                self.pacer.answered(ticket, throttled=throttled)
            raise
        if ticket is not None and self.pacer is not None:
            self.pacer.answered(ticket, throttled=False)
        if isinstance(response, dict):
            self._learn_clock(response)
        return response

    def _until_granted(
        self, operation: str, method: Any, stop: threading.Event | None = None, **kwargs: Any
    ) -> Any:
        """A paced call whose throttled answers are tried again at once: the pacer
        has just slowed the operation down, and a back-off on top of its wait
        would only leave the service's rate unused."""
        deadline = time.monotonic() + self.max_retry_delay
        while True:
            try:
                return self._paced(operation, method, stop, **kwargs)
            except ClientError as exc:
                if self.pacer is None or not is_throttle(exc) or time.monotonic() > deadline:
                    raise

    def call(self, operation: str, **kwargs: Any) -> Any:
        method = getattr(self.per_operation.get(operation, self.ssm), operation)
        # a poll (or a cancel) that keeps failing is given up sooner: the run then
        # stops and reports, where a send may wait out a long throttling storm
        patient = operation in POLLS or operation == "cancel_command"
        limit = min(self.poll_patience, self.max_retry_delay) if patient else self.max_retry_delay
        for attempt in retrying(limit):
            with attempt:
                return self._until_granted(operation, method, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    # sending -----------------------------------------------------------
    def send(
        self,
        spec: CommandSpec,
        *,
        instance_ids: Sequence[str] = (),
        targets: Sequence[dict[str, Any]] = (),
        max_concurrency: str | None = None,
        max_errors: str | None = None,
        stop: threading.Event | None = None,
    ) -> str:
        """The new command's id. `stop` set (a cancel was asked) ends the retries of a
        send that was refused or throttled; SendUnsure when its answer was lost and
        the search could not tell whether SSM has it."""
        arguments = spec.send_arguments()
        if instance_ids:
            if len(instance_ids) > BATCH_LIMIT:
                raise ValueError(f"SendCommand takes at most {BATCH_LIMIT} instance ids")
            arguments["InstanceIds"] = list(instance_ids)
        else:
            arguments["Targets"] = list(targets)
        if max_concurrency is not None:
            arguments["MaxConcurrency"] = max_concurrency
        if max_errors is not None:
            arguments["MaxErrors"] = max_errors
        command_id = self._send_once(arguments, stop)
        if instance_ids:
            with self._lock:
                self._sent_to[command_id] = len(instance_ids)
        return command_id

    def _send_once(self, arguments: dict[str, Any], stop: threading.Event | None = None) -> str:
        """SendCommand, retried without ever running the command twice.

        SendCommand takes no idempotency token. A throttled call was refused
        and is simply retried, but a 5xx, a read timeout or a dropped
        connection may come after SSM created the command: a blind retry would
        run it again on every host of the batch. So each send carries a marker
        in its Comment, and after such an error the recent commands are
        searched for it for at least the client's read timeout (SSM may still
        be answering the lost request, and ListCommands lags) before anything
        is sent again. A search that cannot decide raises SendUnsure.
        """
        marker = f"#{uuid.uuid4().hex[:12]}"
        comment = str(arguments.get("Comment", ""))[: 99 - len(marker)]
        arguments = {**arguments, "Comment": f"{comment} {marker}".strip()}
        method = self.per_operation.get("send_command", self.ssm).send_command
        for attempt in retrying(self.max_retry_delay, stop):
            with attempt:
                # the local clock may be off by `clock_skew` until the service's is learnt
                since = self.service_now() - self.clock_skew
                try:
                    response = self._until_granted("send_command", method, stop, **arguments)
                except (ClientError, BotoCoreError) as exc:
                    if not is_ambiguous(exc):
                        raise
                    found = self._search_lost(marker, since, exc)
                    if found is None:
                        raise  # not created: sending again is safe
                    return found
                command = response["Command"]
                self._remember(command)
                return str(command["CommandId"])
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    def search_window(self) -> float:
        """How long a lost send is looked for: the send client's read timeout (a
        request SSM still works on may take that long), at least `catch_up_seconds`."""
        sender = self.per_operation.get("send_command", self.ssm)
        config = getattr(getattr(sender, "meta", None), "config", None)
        read_timeout = getattr(config, "read_timeout", None)
        try:
            return max(self.catch_up_seconds, float(read_timeout or 0))
        except (TypeError, ValueError):
            return self.catch_up_seconds

    def _search_lost(self, marker: str, since: datetime, cause: BaseException) -> str | None:
        """The lost send's command id; None once a listing made after the whole
        window still lacks it; SendUnsure when no listing could be made (errors
        past the window, or ones that will never pass, such as AccessDenied)."""
        deadline = time.monotonic() + self.search_window()
        error: BaseException | None = None
        while True:
            listed = False
            try:
                for command in self._commands_since(since, retry=False):
                    if str(command.get("Comment", "")).endswith(marker):
                        self._remember(command)
                        return str(command["CommandId"])
                listed = True
            except (ClientError, BotoCoreError) as exc:
                if not is_transient(exc):
                    raise SendUnsure(marker, cause, exc) from exc
                error = exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if listed:
                    return None
                raise SendUnsure(marker, cause, error) from error
            time.sleep(min(1.0, remaining))

    def _remember(self, command: dict[str, Any]) -> None:
        requested = command.get("RequestedDateTime")
        if isinstance(requested, datetime):
            with self._lock:
                self._requested[str(command["CommandId"])] = requested

    def requested_at(self, command_id: str) -> datetime | None:
        """The command's RequestedDateTime as SSM answered it, if this transport saw it."""
        with self._lock:
            return self._requested.get(command_id)

    def commands_since(self, since: datetime) -> Iterator[dict[str, Any]]:
        """Commands sent since `since`, newest first, a ListCommands page at a time;
        a caller that stops early costs no further page."""
        return self._commands_since(since, retry=True)

    def _commands_since(self, since: datetime, *, retry: bool) -> Iterator[dict[str, Any]]:
        token: str | None = None
        after = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lister = self.per_operation.get("list_commands", self.ssm).list_commands
        while True:
            kwargs: dict[str, Any] = {
                "MaxResults": 50,
                "Filters": [{"key": "InvokedAfter", "value": after}],
            }
            if token:
                kwargs["NextToken"] = token
            if retry:
                page = self.call("list_commands", **kwargs)
            else:
                page = self._paced("list_commands", lister, **kwargs)
            yield from page.get("Commands", [])
            token = page.get("NextToken")
            if not token:
                return

    def online(self, instance_ids: Sequence[str]) -> set[str]:
        """Which of these ids SSM manages with an Online agent (one call for up to 50)."""
        found: set[str] = set()
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "Filters": [{"Key": "InstanceIds", "Values": list(instance_ids)}],
                "MaxResults": 50,
            }
            if token:
                kwargs["NextToken"] = token
            page = self.call("describe_instance_information", **kwargs)
            for info in page.get("InstanceInformationList", []):
                if info.get("PingStatus") == "Online":
                    found.add(info["InstanceId"])
            token = page.get("NextToken")
            if not token:
                return found

    def cancel(self, command_id: str) -> None:
        try:
            self.call("cancel_command", CommandId=command_id)
        except ClientError as exc:
            # A command that already finished cannot be cancelled; that is fine.
            if exc.response.get("Error", {}).get("Code") not in ("InvalidCommandId",):
                raise

    # collecting --------------------------------------------------------
    def command_states(
        self, command_ids: Iterable[str], since: datetime | None = None
    ) -> dict[str, dict[str, Any]]:
        """Status and counters of the run's commands, from as few ListCommands pages as possible.

        A command ListCommands cannot show yet (InvalidCommandId just after the
        send) is left out, as one not listed. The listing's InvokedAfter bound
        is the oldest RequestedDateTime SSM gave these commands, by its own
        clock; only for commands this transport did not send (a resume) is it
        `since` (a local time) widened by the clock skew tolerated.
        """
        wanted = set(command_ids)
        if len(wanted) <= 2:
            found: dict[str, dict[str, Any]] = {}
            for command_id in wanted:
                try:
                    listed = self.call("list_commands", CommandId=command_id)
                except ClientError as exc:
                    if _error_code(exc) != "InvalidCommandId":
                        raise
                    continue
                for command in listed.get("Commands", []):
                    found[command["CommandId"]] = command
            return found
        found = {}
        for command in self.commands_since(self._invoked_after(wanted, since)):
            if command["CommandId"] in wanted:
                found[command["CommandId"]] = command
                if len(found) == len(wanted):
                    break
        return found

    def _invoked_after(self, command_ids: set[str], since: datetime | None) -> datetime:
        with self._lock:
            known = [self._requested[c] for c in command_ids if c in self._requested]
        # InvokedAfter is read to the second: a second earlier keeps the oldest in
        oldest = min(known, default=None)
        if oldest is not None and len(known) == len(command_ids):
            return oldest - timedelta(seconds=1)
        local = (since if since is not None else self.service_now()) - self.clock_skew
        return local if oldest is None else min(local, oldest - timedelta(seconds=1))

    def invocations(self, command_id: str) -> Iterator[dict[str, Any]]:
        """The command's invocations as listed now; none while the command itself is not
        readable yet (InvalidCommandId just after the send).

        A fresh invocation may be missing from a listing for a while, even once
        its command reads as finished. When a listing holds fewer invocations
        than the ids this transport sent the command to, one more entry says so,
        open (Status Pending, StatusDetails NotListedYet, no InstanceId): a
        caller that closes a command once nothing is open keeps waiting.
        """
        listed = 0
        for invocation in self._listed(command_id):
            listed += 1
            yield invocation
        with self._lock:
            sent_to = self._sent_to.get(command_id, 0)
        if listed < sent_to:
            yield {"CommandId": command_id, "InstanceId": "", "Status": "Pending",
                   "StatusDetails": "NotListedYet"}  # fmt: skip

    def _listed(self, command_id: str) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"CommandId": command_id, "Details": True, "MaxResults": 50}
            if token:
                kwargs["NextToken"] = token
            try:
                page = self.call("list_command_invocations", **kwargs)
            except ClientError as exc:
                if token is None and _error_code(exc) == "InvalidCommandId":
                    return
                raise
            yield from page.get("CommandInvocations", [])
            token = page.get("NextToken")
            if not token:
                return

    def result(self, invocation: dict[str, Any], name: str) -> HostResult:
        """A terminal invocation as a HostResult, fetching output only where it was cut."""
        plugins = invocation.get("CommandPlugins") or [{}]
        plugin = plugins[0]
        status = outcome(invocation.get("Status", ""), invocation.get("StatusDetails"))
        code = plugin.get("ResponseCode")
        text = plugin.get("Output") or ""
        stdout, stderr = split_output(text)
        truncated = False
        # the agent cuts the detail output at 2,500 bytes and says so with a marker
        if _cut(text, DETAIL_LIMIT) or self.DETAIL_ERROR_CUT in text:
            stdout, stderr, truncated = self._full_output(invocation, plugin)
        return HostResult(
            instance_id=invocation["InstanceId"],
            name=name or invocation.get("InstanceName", ""),
            status=status,
            exit_code=int(code) if code is not None and code != -1 else None,
            stdout=stdout,
            stderr=stderr,
            output_truncated=truncated,
            duration_s=_seconds(
                plugin.get("ResponseStartDateTime"), plugin.get("ResponseFinishDateTime")
            ),
            command_id=invocation.get("CommandId"),
        )

    DETAIL_ERROR_CUT = "\n---Error truncated----"  # the agent's marker for a cut stderr

    def _invocation(self, command_id: str, instance_id: str) -> dict[str, Any]:
        """GetCommandInvocation; InvocationDoesNotExist just after the send is a wait,
        for up to `catch_up_seconds`, not a failure."""
        deadline = time.monotonic() + self.catch_up_seconds
        while True:
            try:
                response: dict[str, Any] = self.call(
                    "get_command_invocation", CommandId=command_id, InstanceId=instance_id
                )
                return response
            except ClientError as exc:
                if _error_code(exc) != "InvocationDoesNotExist" or time.monotonic() > deadline:
                    raise
            time.sleep(0.25)

    def _full_output(
        self, invocation: dict[str, Any], plugin: dict[str, Any]
    ) -> tuple[str, str, bool]:
        response = self._invocation(invocation["CommandId"], invocation["InstanceId"])
        stdout = response.get("StandardOutputContent") or ""
        stderr = response.get("StandardErrorContent") or ""
        truncated = False
        if _cut(stdout, CONTENT_LIMIT):
            full = self._from_s3(
                response.get("StandardOutputUrl") or plugin.get("StandardOutputUrl")
            )
            if full is None or len(full) < len(stdout) - 40:
                stdout, truncated = _strip_marker(stdout), True
            else:
                stdout = full
        if _cut(stderr, STDERR_LIMIT):
            full = self._from_s3(response.get("StandardErrorUrl") or plugin.get("StandardErrorUrl"))
            if full is None or len(full) < len(stderr) - 40:
                stderr, truncated = _strip_marker(stderr), True
            else:
                stderr = full
        return stdout, stderr, truncated

    def _from_s3(self, url: str | None) -> str | None:
        """A stream's full text from S3; None when it cannot be read.

        The agent uploads only streams that had output, so NoSuchKey means the
        stream was empty: that is "" (a caller holding more text than that
        keeps its own).
        """
        location = s3_location(url)
        if self.s3 is None or location is None:
            return None
        bucket, key = location
        for attempt in retrying(self.max_retry_delay):
            with attempt:
                try:
                    body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                except ClientError as exc:
                    code = _error_code(exc)
                    if code == "NoSuchKey":
                        return ""
                    if code == "NoSuchBucket":
                        return None
                    raise
        return bytes(body).decode("utf-8", errors="replace")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def s3_location(url: str | None) -> tuple[str, str] | None:
    """(bucket, key) from the StandardOutputUrl SSM reports, path or virtual-host style."""
    if not url:
        return None
    if url.startswith("s3://"):
        bucket, _, key = url[5:].partition("/")
        return (bucket, key) if bucket and key else None
    parsed = urlparse(url)
    path = unquote(parsed.path).lstrip("/")
    host = parsed.hostname or ""
    if ".s3." in host and not host.startswith("s3."):
        bucket = host.split(".s3.", 1)[0]
        return (bucket, path) if path else None
    bucket, _, key = path.partition("/")
    return (bucket, key) if bucket and key else None


def open_transport(settings: Settings, *, workers: int = 16) -> SsmTransport:
    """A transport with clients for the settings; S3 only when an output bucket is set."""

    def ssm(max_attempts: int = settings.max_attempts, retry_mode: str = "adaptive") -> Any:
        return client(
            "ssm",
            profile=settings.profile,
            region=settings.region,
            max_attempts=max_attempts,
            max_pool_connections=max(workers * 2, 10),
            retry_mode=retry_mode,
        )

    s3 = None
    if settings.output_bucket:
        s3 = client(
            "s3",
            profile=settings.profile,
            region=settings.region,
            max_attempts=settings.max_attempts,
        )
    hot = ("list_commands", "list_command_invocations", "get_command_invocation")
    # No botocore retry on the polls either: a throttled answer must reach the
    # transport's pacer (ops.transports.pacing), which learns the rate SSM
    # grants from it; a retry inside botocore hides it (27-29 % of the calls
    # were throttled at 2,000 hosts with rates cut to a tenth, against 7 %).
    per_operation = {operation: ssm(max_attempts=0, retry_mode="standard") for operation in hot}
    # No botocore retries at all for SendCommand: a retry after a 5xx must look
    # for the command first (SsmTransport._send_once), which botocore cannot.
    per_operation["send_command"] = ssm(max_attempts=0, retry_mode="standard")
    return SsmTransport(ssm(), s3, per_operation=per_operation)
