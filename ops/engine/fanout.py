"""The fan-out scheduler: send in batches, collect with few calls, never lose a result.

The scheduler paces itself by asking a FailureBudget (ops.engine.budget) how
many hosts it may start; it never decides that itself. What it does own is
the cost of talking to SSM at fleet scale:

- SendCommand takes at most 50 instance ids, so work goes out in batches, and
  several batches are in flight at once.
- Completion is watched with one ListCommands listing for all of the run's
  commands (its counters say which commands moved), and only those commands
  are listed with ListCommandInvocations(Details=True). Polling one
  GetCommandInvocation per host per round is what makes naive scripts slow
  and throttled at a thousand hosts.
- The API calls themselves (retries, the lost-response marker, cut output)
  are ops.transports.ssm's.

Results are handed to a callback as each host finishes and are not kept, so
memory stays flat however large the fleet.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from ops.aws_errors import denial, is_access_denied
from ops.engine.budget import FailureBudget
from ops.engine.feed import Feed
from ops.fleet.discovery import Host
from ops.transports.ssm import (
    BATCH_LIMIT,
    CANCELLED,
    NOT_STARTED,
    OPEN_COMMAND,
    OPEN_INVOCATION,
    STATUSES,
    UNDELIVERABLE,
    UNREACHABLE,
    CommandSpec,
    HostResult,
    SendStopped,
    SendUnsure,
    SsmTransport,
)

# Outcomes only the scheduler can tell: a cancel SSM refused, or one it never
# confirmed. Either way the command may still be running on the host.
CANCEL_FAILED = "CancelFailed"
RUNNING = "Running"
# A send whose answer was lost and which no search could find or rule out: the
# command may exist. Neither Undeliverable nor an error against the budget.
UNKNOWN = "Unknown"
ALL_STATUSES = (*STATUSES, CANCEL_FAILED, RUNNING, UNKNOWN)
# Not an end: resume settles these from SSM instead of counting them done.
UNSETTLED = frozenset({NOT_STARTED, CANCEL_FAILED, RUNNING, UNKNOWN})


def new_marker() -> str:
    """A send's own mark, put at the front of its Comment (never cut there) and
    journalled before SendCommand, so a resume can find the command by it."""
    return f"ops-{uuid.uuid4().hex[:12]}"


class SendHooks(Protocol):
    """Told of every send, in order, so a journal can write ahead of it."""

    def sending(self, hosts: list[Host], marker: str) -> None:
        """Before SendCommand: must be durable when it returns."""

    def sent(self, hosts: list[Host], command_id: str) -> None:
        """As soon as SendCommand returned the command's id."""

    def unsent(self, hosts: list[Host]) -> None:
        """SSM refused these hosts outright: nothing was created for them."""


@dataclass
class FanOutReport:
    command_ids: list[str]
    counts: dict[str, int]
    stopped_by_budget: bool = False
    interrupted: bool = False
    listing_error: str | None = None  # the host listing failed part way; the rest never started
    listing_complete: bool = True  # False when a cancel came before the listing ended
    denied: str | None = None  # IAM refused a send ("ssm:SendCommand on ..."); no more were sent
    poll_error: str | None = None  # polling failed past its patience; what was sent was cancelled

    def add(self, part: FanOutReport) -> None:
        """Fold in the report of another part of the same step (a group, a transport)."""
        self.command_ids.extend(part.command_ids)
        for status, count in part.counts.items():
            self.counts[status] = self.counts.get(status, 0) + count
        self.stopped_by_budget = self.stopped_by_budget or part.stopped_by_budget
        self.interrupted = self.interrupted or part.interrupted
        self.listing_error = self.listing_error or part.listing_error
        self.denied = self.denied or part.denied


@dataclass
class _Command:
    """What the engine knows of one SendCommand: which hosts it still owes."""

    command_id: str
    waiting: dict[str, str]  # instance id -> name, not yet reported
    open_ids: bool = False  # Targets: any instance may answer
    completed_seen: int = -1
    finished: bool = False
    # a partial listing (some hosts done, not all) may go from `due` on; each one
    # doubles `gap`, the wait the next new completions start
    due: float | None = None
    gap: float = 0.0
    missing_since: float | None = None  # first poll ListCommands did not show it in
    names: dict[str, str] = field(default_factory=dict)
    target_count: int = 0  # TargetCount as SSM last listed it (Targets resolve late)


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
        linger: float = 2.0,
        linger_max: float = 16.0,
        workers: int = 8,
        hooks: SendHooks | None = None,
    ) -> None:
        self.transport = transport
        self.spec = spec
        self.hooks = hooks
        self.poll_min = poll_min
        self.poll_max = poll_max
        self.cancel_wait = cancel_wait
        self.linger = linger
        self.linger_max = max(linger, linger_max)
        self.workers = workers
        self._cancel = threading.Event()
        self._commands: dict[str, _Command] = {}
        self._counts: dict[str, int] = {}
        self._budget: FailureBudget | None = None
        self.denied: str | None = None
        self._cancel_failed: dict[str, str] = {}  # command id -> why CancelCommand failed
        self._cancel_lock = threading.Lock()
        self._cancels: list[cf.Future[None]] = []
        self.poll_error: str | None = None

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
        adopt: Mapping[str, list[Host]] | None = None,
        since: datetime | None = None,
    ) -> FanOutReport:
        """Batches of at most 50, as many in flight as the budget allows.

        `more` yields hosts still being listed (ops.fleet.discovery.Listing):
        they join the run as they arrive, `on_listed` hears of each page, and
        the budget counts them in (its percentages follow the growing total).
        `adopt` hands over commands an earlier process sent (command id ->
        hosts it owes, sent after `since`): they are collected, never resent.
        """
        self._budget = budget
        pending: deque[Host] = deque(hosts)
        feed: Feed[Host] | None = None
        if more is not None:
            budget.counting = True
            feed = Feed(more, name="ops-listing")
        for command_id, owed in (adopt or {}).items():
            names = {h.instance_id: h.name for h in owed}
            self._commands[command_id] = _Command(command_id, dict(names), names=names)
        return self._run(
            pending,
            on_result,
            on_dispatch,
            server_side=None,
            feed=feed,
            on_listed=on_listed,
            since=since,
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
        since: datetime | None = None,
    ) -> FanOutReport:
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

        in_flight = sum(len(c.waiting) for c in self._commands.values())
        # Cancels have workers of their own: a cancel never queues behind sends
        # (which may be waiting out a throttle) or a poll.
        with (
            cf.ThreadPoolExecutor(self.workers, thread_name_prefix="ssm-send") as senders,
            cf.ThreadPoolExecutor(1, thread_name_prefix="ssm-poll") as poller,
            cf.ThreadPoolExecutor(self.workers, thread_name_prefix="ssm-list") as listers,
            cf.ThreadPoolExecutor(2, thread_name_prefix="ssm-cancel") as cancellers,
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
                halted = self.poll_error is not None

                # dispatch ------------------------------------------------
                if self.cancelled:
                    if cancel_deadline is None:
                        cancel_deadline = time.monotonic() + self.cancel_wait
                        self._cancel_all(cancellers)
                elif not listing_failed and self.denied is None and not halted:
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
                    except SendUnsure as exc:
                        in_flight -= len(batch)
                        for host in batch:
                            emit(HostResult(host.instance_id, host.name, UNKNOWN, stderr=str(exc)))
                        continue
                    except _Abandoned:
                        in_flight -= len(batch)
                        for host in batch:
                            emit(HostResult(host.instance_id, host.name, NOT_STARTED))
                        continue
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
                    if self.cancelled or halted:
                        self._cancel_one(cancellers, command_id)

                # cancels SSM refused: those hosts may still be running
                for command_id, reason in self._take_cancel_failures():
                    command = self._commands[command_id]
                    if command.finished:
                        continue
                    command.finished = True
                    for instance_id, name in command.waiting.items():
                        in_flight -= 1
                        emit(
                            HostResult(
                                instance_id,
                                name,
                                CANCEL_FAILED,
                                stderr=f"CancelCommand failed ({reason}); "
                                "the command may still be running",
                                command_id=command_id,
                            )
                        )
                    command.waiting.clear()

                # results ------------------------------------------------
                if poll is not None and poll.done():
                    try:
                        found = poll.result()
                    except (ClientError, BotoCoreError) as exc:
                        # the transport retried it with back-off for its patience:
                        # the run gives up, cancels what it sent, reports what it has
                        found = []
                        if not halted:
                            self.poll_error = _poll_failure(exc)
                            halted = True
                            self._cancel_all(cancellers)
                    poll = None
                    reported = 0
                    for command_id, result in found:
                        command = self._commands[command_id]
                        if command.finished:
                            continue  # already reported (its cancel failed)
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
                if poll is None and active and now >= next_poll and not halted:
                    snapshot = {
                        c.command_id: (c.completed_seen, set(c.waiting), c.open_ids) for c in active
                    }
                    poll = poller.submit(self._poll_round, snapshot, since, listers)

                if halted and not sends and poll is None and self._cancels_done():
                    for command_id, reason in self._take_cancel_failures():
                        self._close(self._commands[command_id], CANCEL_FAILED, emit,
                                    f"CancelCommand failed ({reason}); "
                                    "the command may still be running")  # fmt: skip
                    for command in active:
                        self._close(command, RUNNING, emit,
                                    f"not collected: {self.poll_error}; CancelCommand was "
                                    "sent, its outcome not read")  # fmt: skip
                    break

                # done? --------------------------------------------------
                dispatch_over = (
                    (not pending and not listing)
                    or self.cancelled
                    or halted
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
                                    RUNNING,
                                    stderr="cancel not confirmed: no final state from SSM "
                                    f"within {self.cancel_wait:.0f}s of the cancel",
                                    command_id=command.command_id,
                                )
                            )
                        command.waiting.clear()
                    break

                waitable: list[cf.Future[Any]] = [*sends, *([poll] if poll else [])]
                # a poll in flight wakes the loop when it ends: no need to spin until then
                due = 0.2 if poll is not None else next_poll - time.monotonic()
                timeout = max(0.01, min(0.2, due))
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
            if self.cancelled or self.denied or self.poll_error:  # not the budget that stopped it
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
            poll_error=self.poll_error,
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
        if self.cancelled or self.poll_error:  # queued behind other sends when the run stopped
            raise _Abandoned()
        spec = self.spec
        if self.hooks is not None:
            marker = new_marker()
            spec = replace(spec, comment=f"{marker} {spec.comment}")
            self.hooks.sending(batch, marker)
        try:
            try:
                return self._sent(batch, self.transport.send(spec, stop=self._cancel, **kwargs)), []
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code != "InvalidInstanceId" or not kwargs.get("instance_ids"):
                    raise
            online = self.transport.online(kwargs["instance_ids"])
            kept = [h for h in batch if h.instance_id in online]
            refused = [h for h in batch if h.instance_id not in online]
            if self.hooks is not None and refused:
                self.hooks.unsent(refused)
            if not kept:
                return None, refused
            retry = {**kwargs, "instance_ids": [h.instance_id for h in kept]}
            return self._sent(kept, self.transport.send(spec, stop=self._cancel, **retry)), refused
        except (ClientError, BotoCoreError, SendStopped) as exc:
            # Anything but SendUnsure means SSM created nothing: after a cancel the
            # retries stopped, and the hosts go back to never sent.
            if not self.cancelled:
                raise
            if self.hooks is not None:
                self.hooks.unsent(batch)
            raise _Abandoned() from exc

    def _sent(self, hosts: list[Host], command_id: str) -> str:
        if self.hooks is not None:
            self.hooks.sent(hosts, command_id)
        return command_id

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
        self,
        snapshot: dict[str, tuple[int, set[str], bool]],
        since: datetime | None,
        listers: cf.ThreadPoolExecutor,
    ) -> list[tuple[str, HostResult | None]]:
        """List the commands that moved; a None result closes a command (hosts never started).

        ListCommandInvocations(Details=True) is the expensive read (50 outputs a
        page), so a command is listed once its hosts are all done, as its
        CompletedCount says, or when it closes. One whose hosts finish one by one
        is listed part-way once `linger` has passed since new completions were
        first seen, then at gaps that double up to `linger_max`: results of a
        long command still stream, without one listing per host.
        """
        states = self.transport.command_states(snapshot, since)
        now = time.monotonic()
        moved: list[str] = []
        closing: set[str] = set()
        for command_id, (completed_seen, _waiting, _open) in snapshot.items():
            command = self._commands[command_id]
            state = states.get(command_id)
            if state is None:
                # Reads lag behind a send: a command ListCommands does not show yet
                # is unreadable to ListCommandInvocations too. Asked for directly
                # only once it has been missing for `linger`.
                if command.missing_since is None:
                    command.missing_since = now
                if now - command.missing_since >= self.linger:
                    moved.append(command_id)
                continue
            command.missing_since = None
            completed = int(state.get("CompletedCount", 0))
            command.target_count = int(state.get("TargetCount", 0) or 0)
            if state.get("Status") not in OPEN_COMMAND:
                closing.add(command_id)
            all_done = completed >= command.target_count > 0
            fresh = completed > max(completed_seen, 0)  # hosts done since it was last listed
            if fresh and command.due is None:
                command.due = now + (command.gap or self.linger)
            partial = command.due is not None and now >= command.due
            if command_id in closing or (fresh and (all_done or partial)):
                moved.append(command_id)
                command.completed_seen = completed
                command.due = None
                if not all_done and command_id not in closing:
                    command.gap = min(self.linger_max, 2 * (command.gap or self.linger))
        found: list[tuple[str, HostResult | None]] = []
        for command_id, results, complete in listers.map(
            lambda cid: self._collect(cid, snapshot[cid][1], snapshot[cid][2]), moved
        ):
            found.extend((command_id, result) for result in results)
            if command_id in closing and complete:
                found.append((command_id, None))
        return found

    def _collect(
        self, command_id: str, waiting: set[str], open_ids: bool
    ) -> tuple[str, list[HostResult], bool]:
        """New terminal results of one command, and whether it is complete: none of its
        invocations open, and as many ended as its TargetCount says it has. A command
        sent with Targets resolves them late and its invocations show in listings
        later still, so only the TargetCount SSM reports can close it."""
        results: list[HostResult] = []
        complete = True
        ended = 0
        command = self._commands[command_id]
        names = command.names
        for invocation in self.transport.invocations(command_id):
            instance_id = invocation.get("InstanceId", "")
            if invocation.get("Status") in OPEN_INVOCATION:
                complete = False
                continue
            ended += 1
            if instance_id in waiting or (open_ids and instance_id not in names):
                if open_ids:
                    names.setdefault(instance_id, invocation.get("InstanceName", ""))
                results.append(self.transport.result(invocation, names.get(instance_id, "")))
        return command_id, results, complete and ended >= command.target_count

    def _cancel_all(self, pool: cf.ThreadPoolExecutor) -> None:
        for command in self._commands.values():
            if not command.finished:
                self._cancel_one(pool, command.command_id)

    def _cancel_one(self, pool: cf.ThreadPoolExecutor, command_id: str) -> None:
        future = pool.submit(self.transport.cancel, command_id)
        future.add_done_callback(lambda done: self._cancel_done(command_id, done))
        with self._cancel_lock:
            self._cancels.append(future)

    def _cancels_done(self) -> bool:
        with self._cancel_lock:
            return all(future.done() for future in self._cancels)

    def _close(self, command: _Command, status: str, emit: ResultHandler, reason: str) -> None:
        """Report every host a command still owes with `status`; it is not polled again."""
        if command.finished:
            return
        command.finished = True
        for instance_id, name in command.waiting.items():
            emit(HostResult(instance_id, name, status, stderr=reason,
                            command_id=command.command_id))  # fmt: skip
        command.waiting.clear()

    def _cancel_done(self, command_id: str, future: cf.Future[None]) -> None:
        error = future.exception()
        if error is None:
            return
        if isinstance(error, ClientError):
            details = error.response.get("Error", {})
            reason = f"{details.get('Code')}: {details.get('Message')}"
        else:
            reason = f"{type(error).__name__}: {error}"
        with self._cancel_lock:
            self._cancel_failed[command_id] = reason

    def _take_cancel_failures(self) -> list[tuple[str, str]]:
        with self._cancel_lock:
            taken = list(self._cancel_failed.items())
            self._cancel_failed.clear()
        return taken


class _Abandoned(Exception):
    """A send given up because the run was cancelled or halted: nothing was created."""


def _poll_failure(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "") or "polling"
        return f"{operation} failed: {error.get('Code')}: {error.get('Message')}"
    return f"polling failed: {type(exc).__name__}: {exc}"


def _never_ran(result: HostResult) -> bool:
    return result.status == CANCELLED and result.duration_s is None and result.exit_code is None


def _undeliverable(host: Host, exc: BaseException) -> HostResult:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        reason = f"SendCommand refused: {error.get('Code')}: {error.get('Message')}"
    else:
        reason = f"SendCommand failed: {exc}"
    return HostResult(host.instance_id, host.name, UNDELIVERABLE, stderr=reason)
