"""The Run Command fan-out engine: send in batches, collect with few calls, never lose a result.

The engine paces itself by asking a FailureBudget (ops.engine.budget) how many
hosts it may start; it never decides that itself. What it does own is the
cost of talking to SSM at fleet scale:

- SendCommand takes at most 50 instance ids, so work goes out in batches, and
  several batches are in flight at once.
- Completion is watched with one ListCommands listing for all of the run's
  commands (its counters say which commands moved), and only those commands
  are listed with ListCommandInvocations(Details=True). Polling one
  GetCommandInvocation per host per round is what makes naive scripts slow
  and throttled at a thousand hosts.
- GetCommandInvocation is called only when a host's 2,500-character detail
  output was cut, and S3 is read only when the 24,000-character
  GetCommandInvocation output was cut too.
- Every call runs under botocore's adaptive retries (ops.aws) and, around
  that, tenacity's jittered exponential backoff: a throttling storm slows a
  run down but does not end it.

Results are handed to a callback as each host finishes and are not kept, so
memory stays flat however large the fleet.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlparse

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from ops.aws import client
from ops.aws_errors import denial, is_access_denied
from ops.config import Settings
from ops.engine.budget import FailureBudget
from ops.engine.feed import Feed
from ops.fleet.discovery import Host

DOCUMENT = "AWS-RunShellScript"
BATCH_LIMIT = 50  # SendCommand's InstanceIds limit
DETAIL_LIMIT = 2500  # ListCommandInvocations(Details=True) output limit
CONTENT_LIMIT = 24000  # GetCommandInvocation stdout limit
STDERR_LIMIT = 8000  # GetCommandInvocation stderr limit
ERROR_MARKER = "\n----------ERROR-------\n"
_CLOCK_SKEW = 300  # seconds of clock difference tolerated when searching for a sent command
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

_OPEN_INVOCATION = frozenset({"Pending", "InProgress", "Delayed", "Cancelling"})
_OPEN_COMMAND = frozenset({"Pending", "InProgress", "Cancelling"})
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


@dataclass
class FanOutReport:
    command_ids: list[str]
    counts: dict[str, int]
    stopped_by_budget: bool = False
    interrupted: bool = False
    listing_error: str | None = None  # the host listing failed part way; the rest never started
    listing_complete: bool = True  # False when a cancel came before the listing ended
    denied: str | None = None  # IAM refused a send ("ssm:SendCommand on ..."); no more were sent


def is_transient(exc: BaseException) -> bool:
    """Throttling, 5xx and dropped connections are worth another try; nothing else is."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in _TRANSIENT_CODES or int(status or 0) >= 500
    return isinstance(exc, ConnectionError | ReadTimeoutError)


def is_throttle(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and "Throttl" in str(
        exc.response.get("Error", {}).get("Code", "")
    )


def retrying(max_delay: float = 900.0) -> Retrying:
    """Jittered exponential backoff over botocore's own retries, for as long as a
    storm lasts (bounded so a dead endpoint still ends the run)."""
    return Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(multiplier=0.1, max=5.0),
        stop=stop_after_delay(max_delay),
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

    def __init__(
        self,
        ssm: Any,
        s3: Any = None,
        *,
        per_operation: dict[str, Any] | None = None,
        max_retry_delay: float = 900.0,
    ) -> None:
        self.ssm = ssm
        self.s3 = s3
        # botocore's adaptive mode slows a whole client when any of its calls is
        # throttled; SSM throttles per operation, so each hot operation gets its
        # own client and a throttled poll never slows the sends.
        self.per_operation = per_operation or {}
        self.max_retry_delay = max_retry_delay
        self.throttled = 0
        self._lock = threading.Lock()

    def call(self, operation: str, **kwargs: Any) -> Any:
        method = getattr(self.per_operation.get(operation, self.ssm), operation)
        for attempt in retrying(self.max_retry_delay):
            with attempt:
                try:
                    return method(**kwargs)
                except ClientError as exc:
                    if is_throttle(exc):
                        with self._lock:
                            self.throttled += 1
                    raise
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
    ) -> str:
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
        return self._send_once(arguments)

    def _send_once(self, arguments: dict[str, Any]) -> str:
        """SendCommand, retried without ever running the command twice.

        SendCommand takes no idempotency token. A throttled call was refused
        and is simply retried, but a 5xx or a dropped connection may come
        after SSM created the command: a blind retry would run it again on
        every host of the batch. So each send carries a marker in its
        Comment, and after such an error the run's recent commands are
        searched for it before anything is sent again.
        """
        marker = f"#{uuid.uuid4().hex[:12]}"
        comment = str(arguments.get("Comment", ""))[: 99 - len(marker)]
        arguments = {**arguments, "Comment": f"{comment} {marker}".strip()}
        since = datetime.now(UTC) - timedelta(seconds=_CLOCK_SKEW)
        method = self.per_operation.get("send_command", self.ssm).send_command
        unsure = False
        for attempt in retrying(self.max_retry_delay):
            with attempt:
                if unsure:
                    found = self.sent_with(marker, since)
                    if found is not None:
                        return found
                try:
                    response = method(**arguments)
                except ClientError as exc:
                    if is_throttle(exc):
                        with self._lock:
                            self.throttled += 1
                    else:
                        unsure = unsure or is_transient(exc)
                    raise
                except (ConnectionError, ReadTimeoutError):
                    unsure = True
                    raise
                return str(response["Command"]["CommandId"])
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    def sent_with(self, marker: str, since: datetime) -> str | None:
        """The id of a command sent since `since` whose Comment ends with `marker`."""
        for command in self.commands_since(since):
            if str(command.get("Comment", "")).endswith(marker):
                return str(command["CommandId"])
        return None

    def commands_since(self, since: datetime) -> Iterator[dict[str, Any]]:
        """Commands sent since `since`, newest first, a ListCommands page at a time;
        a caller that stops early costs no further page."""
        token: str | None = None
        after = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        while True:
            kwargs: dict[str, Any] = {
                "MaxResults": 50,
                "Filters": [{"key": "InvokedAfter", "value": after}],
            }
            if token:
                kwargs["NextToken"] = token
            page = self.call("list_commands", **kwargs)
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
        self, command_ids: Iterable[str], since: datetime
    ) -> dict[str, dict[str, Any]]:
        """Status and counters of the run's commands, from as few ListCommands pages as possible."""
        wanted = set(command_ids)
        if len(wanted) <= 2:
            found: dict[str, dict[str, Any]] = {}
            for command_id in wanted:
                for command in self.call("list_commands", CommandId=command_id).get("Commands", []):
                    found[command["CommandId"]] = command
            return found
        found = {}
        for command in self.commands_since(since):
            if command["CommandId"] in wanted:
                found[command["CommandId"]] = command
                if len(found) == len(wanted):
                    break
        return found

    def invocations(self, command_id: str) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"CommandId": command_id, "Details": True, "MaxResults": 50}
            if token:
                kwargs["NextToken"] = token
            page = self.call("list_command_invocations", **kwargs)
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
        if _cut(text, DETAIL_LIMIT):
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

    def _full_output(
        self, invocation: dict[str, Any], plugin: dict[str, Any]
    ) -> tuple[str, str, bool]:
        response = self.call(
            "get_command_invocation",
            CommandId=invocation["CommandId"],
            InstanceId=invocation["InstanceId"],
        )
        stdout = response.get("StandardOutputContent") or ""
        stderr = response.get("StandardErrorContent") or ""
        truncated = False
        if _cut(stdout, CONTENT_LIMIT):
            full = self._from_s3(
                response.get("StandardOutputUrl") or plugin.get("StandardOutputUrl")
            )
            if full is None:
                stdout, truncated = _strip_marker(stdout), True
            else:
                stdout = full
        if _cut(stderr, STDERR_LIMIT):
            full = self._from_s3(response.get("StandardErrorUrl") or plugin.get("StandardErrorUrl"))
            if full is None:
                stderr, truncated = _strip_marker(stderr), True
            else:
                stderr = full
        return stdout, stderr, truncated

    def _from_s3(self, url: str | None) -> str | None:
        location = s3_location(url)
        if self.s3 is None or location is None:
            return None
        bucket, key = location
        for attempt in retrying(self.max_retry_delay):
            with attempt:
                try:
                    body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchBucket"):
                        return None
                    raise
        return bytes(body).decode("utf-8", errors="replace")


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


@dataclass
class _Command:
    """What the engine knows of one SendCommand: which hosts it still owes."""

    command_id: str
    waiting: dict[str, str]  # instance id -> name, not yet reported
    open_ids: bool = False  # Targets: any instance may answer
    completed_seen: int = -1
    listed_at: float = field(default_factory=time.monotonic)
    finished: bool = False
    names: dict[str, str] = field(default_factory=dict)


ResultHandler = Callable[[HostResult], None]
DispatchHandler = Callable[[list[Host]], None]
ListedHandler = Callable[[list[Host]], None]


class FanOut:
    """One fan-out run. `cancel()` may be called from a signal handler."""

    def __init__(
        self,
        transport: SsmTransport,
        spec: CommandSpec,
        *,
        poll_min: float = 0.25,
        poll_max: float = 5.0,
        cancel_wait: float = 30.0,
        linger: float = 1.0,
        workers: int = 8,
    ) -> None:
        self.transport = transport
        self.spec = spec
        self.poll_min = poll_min
        self.poll_max = poll_max
        self.cancel_wait = cancel_wait
        self.linger = linger
        self.workers = workers
        self._cancel = threading.Event()
        self._commands: dict[str, _Command] = {}
        self._counts: dict[str, int] = {}
        self._budget: FailureBudget | None = None
        self.denied: str | None = None

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # entry points ------------------------------------------------------
    def run_client_side(
        self,
        hosts: Sequence[Host],
        budget: FailureBudget,
        on_result: ResultHandler,
        on_dispatch: DispatchHandler | None = None,
        *,
        more: Iterable[list[Host]] | None = None,
        on_listed: ListedHandler | None = None,
    ) -> FanOutReport:
        """Batches of at most 50, as many in flight as the budget allows.

        `more` yields hosts still being listed (ops.fleet.discovery.Listing):
        they join the run as they arrive, `on_listed` hears of each page, and
        the budget counts them in (its percentages follow the growing total).
        """
        self._budget = budget
        pending: deque[Host] = deque(hosts)
        feed: Feed[Host] | None = None
        if more is not None:
            budget.counting = True
            feed = Feed(more, name="ops-listing")
        return self._run(
            pending, on_result, on_dispatch, server_side=None, feed=feed, on_listed=on_listed
        )

    def run_server_side(
        self,
        hosts: Sequence[Host],
        on_result: ResultHandler,
        *,
        max_concurrency: str,
        max_errors: str,
        targets: Sequence[dict[str, Any]] = (),
        on_dispatch: DispatchHandler | None = None,
    ) -> FanOutReport:
        """SSM paces the run: one command with Targets, or one per 50 ids."""
        pending: deque[Host] = deque(hosts)
        plan = {"max_concurrency": max_concurrency, "max_errors": max_errors, "targets": targets}
        return self._run(pending, on_result, on_dispatch, server_side=plan)

    # the loop ----------------------------------------------------------
    def _run(
        self,
        pending: deque[Host],
        on_result: ResultHandler,
        on_dispatch: DispatchHandler | None,
        server_side: dict[str, Any] | None,
        feed: Feed[Host] | None = None,
        on_listed: ListedHandler | None = None,
    ) -> FanOutReport:
        started = datetime.now(UTC).replace(microsecond=0)
        budget = self._budget
        sends: dict[cf.Future[tuple[str | None, list[Host]]], list[Host]] = {}
        poll: cf.Future[list[tuple[str, HostResult | None]]] | None = None
        next_poll = time.monotonic() + self.poll_min
        interval = self.poll_min
        cancel_deadline: float | None = None
        stopped_by_budget = False

        def emit(result: HostResult) -> None:
            self._counts[result.status] = self._counts.get(result.status, 0) + 1
            if self._budget is not None:
                self._budget.record(result.status)
            on_result(result)

        in_flight = 0
        with (
            cf.ThreadPoolExecutor(self.workers, thread_name_prefix="ssm-send") as senders,
            cf.ThreadPoolExecutor(1, thread_name_prefix="ssm-poll") as poller,
        ):
            while True:
                # hosts still being listed -------------------------------
                if feed is not None and not feed.done and not self.cancelled:
                    for page in feed.take():
                        pending.extend(page)
                        if budget is not None:
                            budget.grow(len(page))
                        if on_listed is not None:
                            on_listed(page)
                    if feed.done and budget is not None:
                        budget.close()
                listing = feed is not None and not feed.done
                # A listing that broke leaves a set this run no longer knows:
                # what is in flight finishes, what was listed is not started.
                listing_failed = feed is not None and feed.error is not None

                # dispatch ------------------------------------------------
                if self.cancelled:
                    if cancel_deadline is None:
                        cancel_deadline = time.monotonic() + self.cancel_wait
                        self._cancel_all(senders)
                elif not listing_failed and self.denied is None:
                    for batch, kwargs in self._batches(pending, in_flight, server_side):
                        if on_dispatch is not None:
                            on_dispatch(batch)
                        future = senders.submit(self._send, batch, kwargs)
                        sends[future] = batch
                        in_flight += len(batch)

                # sends that came back -----------------------------------
                for future in [f for f in sends if f.done()]:
                    batch = sends.pop(future)
                    try:
                        command_id, refused = future.result()
                    except (ClientError, BotoCoreError) as exc:
                        in_flight -= len(batch)
                        for host in batch:
                            emit(_undeliverable(host, exc))
                        if is_access_denied(exc):  # IAM said no: every later send would fail too
                            self.denied = denial(exc)
                        continue
                    in_flight -= len(refused)
                    for host in refused:
                        emit(
                            HostResult(
                                host.instance_id,
                                host.name,
                                UNREACHABLE,
                                stderr="not an Online SSM managed instance (InvalidInstanceId)",
                            )
                        )
                    refused_ids = {h.instance_id for h in refused}
                    batch = [h for h in batch if h.instance_id not in refused_ids]
                    if command_id is None:
                        continue
                    self._commands[command_id] = _Command(
                        command_id,
                        {h.instance_id: h.name for h in batch},
                        open_ids=bool(server_side and server_side["targets"]),
                        names={h.instance_id: h.name for h in batch},
                    )
                    if self.cancelled:
                        self._cancel_one(senders, command_id)

                # results ------------------------------------------------
                if poll is not None and poll.done():
                    found = poll.result()
                    poll = None
                    reported = 0
                    for command_id, result in found:
                        command = self._commands[command_id]
                        if result is None:
                            command.finished = True
                            for instance_id, name in command.waiting.items():
                                in_flight -= 1
                                emit(
                                    HostResult(
                                        instance_id, name, NOT_STARTED, command_id=command_id
                                    )
                                )
                            command.waiting.clear()
                            continue
                        if result.instance_id in command.waiting:
                            command.waiting.pop(result.instance_id)
                            in_flight -= 1
                        elif not command.open_ids:
                            continue
                        reported += 1
                        if _never_ran(result) and not self.cancelled:
                            # SSM's own MaxErrors stopped it before it ran (--server-side)
                            result.status = NOT_STARTED
                            stopped_by_budget = True
                        emit(result)
                    waiting = sum(len(c.waiting) for c in self._commands.values())
                    interval = self._next_interval(interval, reported, waiting)
                    next_poll = time.monotonic() + interval

                active = [c for c in self._commands.values() if not c.finished]
                now = time.monotonic()
                if poll is None and active and now >= next_poll:
                    snapshot = {
                        c.command_id: (c.completed_seen, set(c.waiting), c.open_ids) for c in active
                    }
                    poll = poller.submit(self._poll_round, snapshot, started)

                # done? --------------------------------------------------
                dispatch_over = (
                    (not pending and not listing)
                    or self.cancelled
                    or listing_failed
                    or self.denied is not None
                    or (budget is not None and budget.stopped)
                )
                if dispatch_over and not sends and poll is None and not active:
                    break
                if (
                    cancel_deadline is not None
                    and now > cancel_deadline
                    and poll is None
                    and not sends
                ):
                    for command in active:
                        command.finished = True
                        for instance_id, name in command.waiting.items():
                            emit(
                                HostResult(
                                    instance_id,
                                    name,
                                    CANCELLED,
                                    stderr="no final state from SSM within "
                                    f"{self.cancel_wait:.0f}s of the cancel",
                                    command_id=command.command_id,
                                )
                            )
                        command.waiting.clear()
                    break

                waitable: list[cf.Future[Any]] = [*sends, *([poll] if poll else [])]
                timeout = max(0.01, min(0.2, next_poll - time.monotonic()))
                if waitable:
                    cf.wait(waitable, timeout=timeout, return_when=cf.FIRST_COMPLETED)
                elif listing and feed is not None:
                    feed.wait(timeout)
                else:
                    self._cancel.wait(timeout)

            if feed is not None:
                feed.stop()
            if budget is not None and budget.stopped and pending:
                stopped_by_budget = True
            if self.cancelled or self.denied:  # not the budget that stopped it
                stopped_by_budget = False
            for host in pending:
                emit(HostResult(host.instance_id, host.name, NOT_STARTED))
            pending.clear()
        listing_error = None
        if feed is not None and feed.error is not None:
            listing_error = f"listing hosts failed part way: {feed.error}"
        return FanOutReport(
            command_ids=list(self._commands),
            counts=dict(self._counts),
            stopped_by_budget=stopped_by_budget,
            interrupted=self.cancelled,
            listing_error=listing_error,
            listing_complete=feed is None or (feed.done and feed.error is None),
            denied=self.denied,
        )

    def _batches(
        self, pending: deque[Host], in_flight: int, server_side: dict[str, Any] | None
    ) -> Iterator[tuple[list[Host], dict[str, Any]]]:
        if server_side is not None:
            if server_side["targets"] and pending:
                batch = list(pending)
                pending.clear()
                yield (
                    batch,
                    {
                        "targets": server_side["targets"],
                        "max_concurrency": server_side["max_concurrency"],
                        "max_errors": server_side["max_errors"],
                    },
                )
                return
            while pending:
                batch = [pending.popleft() for _ in range(min(BATCH_LIMIT, len(pending)))]
                yield (
                    batch,
                    {
                        "instance_ids": [h.instance_id for h in batch],
                        "max_concurrency": server_side["max_concurrency"],
                        "max_errors": server_side["max_errors"],
                    },
                )
            return
        assert self._budget is not None
        while pending:
            size = self._budget.next_batch(in_flight, len(pending))
            if size <= 0:
                return
            batch = [pending.popleft() for _ in range(size)]
            in_flight += size
            # SSM must not pace or stop a batch on its own: the budget does that.
            yield (
                batch,
                {
                    "instance_ids": [h.instance_id for h in batch],
                    "max_concurrency": "100%",
                    "max_errors": "100%",
                },
            )

    def _send(self, batch: list[Host], kwargs: dict[str, Any]) -> tuple[str | None, list[Host]]:
        """Send one batch; hosts SSM turns away as unmanaged are handed back, the rest resent.

        SendCommand refuses a whole batch for one unmanaged id, and large
        target sets are not looked up host by host beforehand (see discovery).
        """
        try:
            return self.transport.send(self.spec, **kwargs), []
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code != "InvalidInstanceId" or not kwargs.get("instance_ids"):
                raise
        online = self.transport.online(kwargs["instance_ids"])
        kept = [h for h in batch if h.instance_id in online]
        refused = [h for h in batch if h.instance_id not in online]
        if not kept:
            return None, refused
        retry = {**kwargs, "instance_ids": [h.instance_id for h in kept]}
        return self.transport.send(self.spec, **retry), refused

    def _next_interval(self, interval: float, reported: int, waiting: int) -> float:
        """Back off while nothing finishes; stay close behind the fleet while hosts do.

        The floor grows with the hosts still pending (a big listing costs more
        calls per round); the tail of a run, with few pending, is polled fast.
        """
        floor = min(self.poll_max, self.poll_min + waiting / 4000)
        if reported:
            return floor
        return min(self.poll_max, max(floor, interval * 1.5))

    def _poll_round(
        self, snapshot: dict[str, tuple[int, set[str], bool]], since: datetime
    ) -> list[tuple[str, HostResult | None]]:
        """List the commands that moved; a None result closes a command (hosts never started)."""
        states = self.transport.command_states(snapshot, since)
        moved: list[str] = []
        closing: set[str] = set()
        for command_id, (completed_seen, _waiting, _open) in snapshot.items():
            state = states.get(command_id)
            if state is None:
                moved.append(command_id)  # not listed yet: ask it directly
                continue
            completed = int(state.get("CompletedCount", 0))
            command = self._commands[command_id]
            if state.get("Status") not in _OPEN_COMMAND:
                closing.add(command_id)
            all_done = completed >= int(state.get("TargetCount", 0) or 0) > 0
            # A command whose hosts finish one by one is listed at most once per
            # `linger` seconds; one whose hosts are all done is listed at once.
            lingered = time.monotonic() - command.listed_at >= self.linger
            if command_id in closing or (completed != completed_seen and (all_done or lingered)):
                moved.append(command_id)
                command.completed_seen = completed
                command.listed_at = time.monotonic()
        found: list[tuple[str, HostResult | None]] = []
        with cf.ThreadPoolExecutor(self.workers, thread_name_prefix="ssm-list") as pool:
            for command_id, results, complete in pool.map(
                lambda cid: self._collect(cid, snapshot[cid][1], snapshot[cid][2]), moved
            ):
                found.extend((command_id, result) for result in results)
                if command_id in closing and complete:
                    found.append((command_id, None))
        return found

    def _collect(
        self, command_id: str, waiting: set[str], open_ids: bool
    ) -> tuple[str, list[HostResult], bool]:
        """New terminal results of one command, and whether none of its invocations is open."""
        results: list[HostResult] = []
        complete = True
        names = self._commands[command_id].names
        for invocation in self.transport.invocations(command_id):
            instance_id = invocation.get("InstanceId", "")
            if invocation.get("Status") in _OPEN_INVOCATION:
                complete = False
                continue
            if instance_id in waiting or (open_ids and instance_id not in names):
                if open_ids:
                    names.setdefault(instance_id, invocation.get("InstanceName", ""))
                results.append(self.transport.result(invocation, names.get(instance_id, "")))
        return command_id, results, complete

    def _cancel_all(self, pool: cf.ThreadPoolExecutor) -> None:
        for command in self._commands.values():
            if not command.finished:
                self._cancel_one(pool, command.command_id)

    def _cancel_one(self, pool: cf.ThreadPoolExecutor, command_id: str) -> None:
        pool.submit(self.transport.cancel, command_id)


def _never_ran(result: HostResult) -> bool:
    return result.status == CANCELLED and result.duration_s is None and result.exit_code is None


def _undeliverable(host: Host, exc: BaseException) -> HostResult:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        reason = f"SendCommand refused: {error.get('Code')}: {error.get('Message')}"
    else:
        reason = f"SendCommand failed: {exc}"
    return HostResult(host.instance_id, host.name, UNDELIVERABLE, stderr=reason)


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
    # On the polling operations botocore's adaptive mode paces the calls (its
    # client side rate limiter) and retries once (botocore counts max_attempts
    # as retries); past that the engine's tenacity loop takes over with short
    # jittered waits, instead of botocore's back-off growing to 20 s in a worker.
    # SendCommand is the operation the floor is made of, and the adaptive
    # limiter halves its rate at the first throttle and climbs back slowly
    # (at 1,000 hosts sending took ~3.5 s instead of ~2 s); in standard mode
    # with tenacity's jittered retries the sends stay at SSM's own rate, at
    # the cost of more throttled answers (all retried).
    hot = ("list_commands", "list_command_invocations", "get_command_invocation")
    per_operation = {operation: ssm(max_attempts=1) for operation in hot}
    # No botocore retries at all for SendCommand: a retry after a 5xx must look
    # for the command first (SsmTransport._send_once), which botocore cannot.
    per_operation["send_command"] = ssm(max_attempts=0, retry_mode="standard")
    return SsmTransport(ssm(), s3, per_operation=per_operation)
