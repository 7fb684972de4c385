"""Commands, invocations and instances, and the state machine Run Command reports.

The statuses, status details and counters follow the service's documented
meaning ("Understanding command statuses"): Undeliverable and delivery
timeouts do not count against MaxErrors, execution timeouts and failures do,
and an invocation killed by timeout or cancel reports exit code 137 as the
Linux agent does. Everything here runs under one lock; the only work done
outside it is running a container command, restarting a container and
writing output to S3.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ops.sandbox.emulator.agentoutput import (
    DETAIL_LIMIT,
    STDERR_LIMIT,
    STDOUT_LIMIT,
    content,
    detail_output,
    failure_note,
)
from ops.sandbox.emulator.executors import (
    KILLED,
    ContainerExecutor,
    SyntheticProfile,
    filler,
    reboot_code,
    synthetic_outcome,
)
from ops.sandbox.emulator.faults import Faults
from ops.sandbox.emulator.scheduler import Scheduler
from ops.sandbox.emulator.validate import ApiError

log = logging.getLogger(__name__)

DOCUMENT = "AWS-RunShellScript"
PLUGIN = "aws:runShellScript"
PLUGIN_KEY = "awsrunShellScript"
MAX_REBOOTS = 4
DEFAULT_EXECUTION_TIMEOUT = 3600
DEFAULT_DELIVERY_TIMEOUT = 3600
ACCOUNT = "123456789012"  # the account id moto serves

TERMINAL_DETAILS = {
    "Success",
    "Failed",
    "ExecutionTimedOut",
    "DeliveryTimedOut",
    "Cancelled",
    "Terminated",
    "Undeliverable",
}
# ErrorCount is "the number of targets for which the status is Failed or Execution
# Timed Out" (the model's Command.ErrorCount); Undeliverable, delivery timeouts and
# the Terminated invocations MaxErrors skipped are not errors.
ERROR_DETAILS = {"Failed", "ExecutionTimedOut"}
# ListCommandInvocations' Status filter takes these values (the model's CommandFilter)
INVOCATION_STATUS_FILTER = {
    "Pending",
    "InProgress",
    "Delayed",
    "Success",
    "Cancelled",
    "Failed",
    "TimedOut",
    "AccessDenied",
    "DeliveryTimedOut",
    "ExecutionTimedOut",
    "Undeliverable",
    "InvalidPlatform",
    "Terminated",
}
COMMAND_STATUS_FILTER = {
    "Pending",
    "InProgress",
    "Success",
    "Cancelled",
    "Failed",
    "TimedOut",
    "AccessDenied",
    "DeliveryTimedOut",
    "ExecutionTimedOut",
    "Incomplete",
    "NoInstancesInTag",
    "LimitExceeded",
}
# invocation status -> the plugin's (narrower) status enum
PLUGIN_STATUS = {"Delayed": "Pending", "Cancelling": "InProgress"}


@dataclass
class Settings:
    """Sandbox-only knobs; a delivery timeout scale below 1 keeps timeout tests short.

    The service is eventually consistent: after SendCommand, reads may not see
    the command or its invocations for a while, and a command sent with
    Targets resolves them later. Each command and each invocation draws its own
    lag, seeded, from [consistency_lag_min, consistency_lag_max] seconds; both
    at 0 make every read consistent at once.
    """

    delivery_timeout_scale: float = 1.0
    reboot_seconds: float = 1.0
    delayed_retry_seconds: float = 0.5
    consistency_lag_min: float = 0.2
    consistency_lag_max: float = 0.8


@dataclass(slots=True)
class Instance:
    instance_id: str
    name: str
    tags: dict[str, str]
    computer_name: str
    ip_address: str
    platform_name: str
    platform_version: str
    platform_type: str
    agent_version: str
    container: str | None
    profile: SyntheticProfile
    registered: float
    down: bool = False
    terminated: bool = False


@dataclass(slots=True)
class Invocation:
    command: Command
    instance: Instance
    status: str = "Pending"
    details: str = "Pending"
    response_code: int = -1
    start: float | None = None
    end: float | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_fill: int = 0
    attempt: int = 0
    gen: int = 0
    dispatched: bool = False
    deadline: float = 0.0
    visible_at: float = 0.0
    uploading: bool = False

    @property
    def terminal(self) -> bool:
        return self.details in TERMINAL_DETAILS

    @property
    def key(self) -> str:
        return f"{self.command.command_id}-{self.instance.instance_id}"

    def visible(self, now: float) -> bool:
        return now >= self.visible_at

    def full_stdout(self) -> str:
        if self.stdout_fill:
            return filler(self.instance.instance_id, self.command.command_id, self.stdout_fill)
        return self.stdout


@dataclass
class Command:
    command_id: str
    request: dict[str, Any]
    commands: list[str]
    working_directory: str
    execution_timeout: int
    delivery_timeout: int
    requested: float
    max_concurrency: str
    max_errors: str
    concurrency_limit: int
    error_limit: int
    invocations: dict[str, Invocation] = field(default_factory=dict)
    order: list[Invocation] = field(default_factory=list)
    queue: deque[Invocation] = field(default_factory=deque)
    in_flight: int = 0
    completed: int = 0
    errors: int = 0
    delivery_timed_out: int = 0
    status: str = "Pending"
    details: str = "Pending"
    cancelled: bool = False
    stopped: bool = False
    filling: bool = False
    visible_at: float = 0.0
    resolved: bool = True
    ramp: int = 0  # Targets: hosts allowed in flight now (1, 2, 4, ...); 0 means no ramp
    wave_done: int = 0
    lags: random.Random | None = None

    @property
    def bucket(self) -> str:
        return str(self.request.get("OutputS3BucketName") or "")

    @property
    def prefix(self) -> str:
        return str(self.request.get("OutputS3KeyPrefix") or "")


def _java_list(values: Iterable[str]) -> str:
    """A list as the service's messages print one: [a, b], no quotes (never a Python repr)."""
    return "[" + ", ".join(str(v) for v in values) + "]"


def _when(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ApiError("InvalidFilterValue", f"{value} is not a valid date") from None


def _iso(stamp: float | None) -> str:
    if stamp is None:
        return ""
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _limit(raw: str, count: int, *, floor_one: bool) -> int:
    value = math.floor(count * int(raw[:-1]) / 100) if raw.endswith("%") else int(raw)
    return max(1, value) if floor_one else value


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))["o"]
    except (ValueError, KeyError, TypeError):
        raise ApiError("InvalidNextToken", "The specified token isn't valid.") from None
    if not isinstance(value, int) or value < 0:
        raise ApiError("InvalidNextToken", "The specified token isn't valid.")
    return value


def _page(items: list[Any], max_results: int, token: str | None) -> tuple[list[Any], str | None]:
    start = _offset(token)
    end = start + max_results
    return items[start:end], (_token(end) if end < len(items) else None)


class Model:
    def __init__(
        self,
        *,
        seed: int = 0,
        region: str = "us-east-1",
        moto_url: str | None = None,
        s3_writer: Callable[[str, str, str], None] | None = None,
        terminator: Callable[[str], None] | None = None,
        executor: ContainerExecutor | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.seed = seed
        self.region = region
        self.moto_url = moto_url or ""
        self.settings = Settings()
        self.faults = Faults(seed)
        self.scheduler = Scheduler()
        self.instances: dict[str, Instance] = {}
        self.commands: dict[str, Command] = {}
        self.command_order: list[Command] = []
        self._rng = random.Random(f"commands:{seed}")
        self._profiles: dict[str, SyntheticProfile] = {}
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ssm-work")
        self._s3_writer = s3_writer
        self._terminator = terminator
        self._executor = executor or ContainerExecutor()

    # ---- registry -------------------------------------------------------

    def register(self, entries: Iterable[dict[str, Any]]) -> list[str]:
        ids: list[str] = []
        now = time.time()
        with self.lock:
            for entry in entries:
                instance_id = str(entry["InstanceId"])
                raw_profile = entry.get("Profile")
                key = json.dumps(raw_profile, sort_keys=True)
                profile = self._profiles.get(key)
                if profile is None:
                    profile = SyntheticProfile.from_json(raw_profile)
                    self._profiles[key] = profile
                name = str(entry.get("Name") or instance_id)
                self.instances[instance_id] = Instance(
                    instance_id=instance_id,
                    name=name,
                    tags={str(k): str(v) for k, v in (entry.get("Tags") or {}).items()},
                    computer_name=str(entry.get("ComputerName") or name),
                    ip_address=str(entry.get("IPAddress") or "127.0.0.1"),
                    platform_name=str(entry.get("PlatformName") or "Debian GNU/Linux"),
                    platform_version=str(entry.get("PlatformVersion") or "12"),
                    platform_type=str(entry.get("PlatformType") or "Linux"),
                    agent_version=str(entry.get("AgentVersion") or "3.3.1142.0"),
                    container=entry.get("Container") or None,
                    profile=profile,
                    registered=now,
                )
                ids.append(instance_id)
        return ids

    def ping_status(self, instance: Instance) -> str:
        if instance.down or self.faults.get(instance.instance_id, "agent_offline") is not None:
            return "ConnectionLost"
        return "Online"

    def reset(self, *, keep_instances: bool = True) -> None:
        with self.lock:
            self.scheduler.clear()
            for command in self.commands.values():
                for inv in command.order:
                    inv.gen += 1
                    if inv.instance.container and inv.status in ("InProgress", "Cancelling"):
                        self._executor.cancel(inv.key)
            self.commands.clear()
            self.command_order.clear()
            self.faults.clear()
            self.settings = Settings()
            if not keep_instances:
                self.instances.clear()
            for instance in self.instances.values():
                instance.down = False

    def close(self) -> None:
        self.scheduler.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- SendCommand ----------------------------------------------------

    def send_command(self, req: dict[str, Any]) -> dict[str, Any]:
        if req["DocumentName"] != DOCUMENT:
            raise ApiError("InvalidDocument", f"Document {req['DocumentName']} does not exist.")
        if req.get("DocumentVersion") not in (None, "$DEFAULT", "$LATEST", "1"):
            raise ApiError("InvalidDocumentVersion", "The document version is not valid.")
        params = req.get("Parameters") or {}
        unknown = sorted(set(params) - {"commands", "workingDirectory", "executionTimeout"})
        if unknown:
            raise ApiError(
                "InvalidParameters",
                f"Parameters [{_java_list(unknown)}] are not valid for {DOCUMENT}.",
            )
        commands = [c for c in params.get("commands", []) if c.strip()]
        if not commands:
            raise ApiError(
                "InvalidParameters", "Parameter commands is required and must not be empty."
            )
        workdir_values = params.get("workingDirectory") or [""]
        timeout_values = params.get("executionTimeout") or [str(DEFAULT_EXECUTION_TIMEOUT)]
        try:
            execution_timeout = int(timeout_values[0])
        except ValueError:
            execution_timeout = -1
        if len(timeout_values) != 1 or not 1 <= execution_timeout <= 172800:
            raise ApiError(
                "InvalidParameters",
                "executionTimeout must be a whole number of seconds from 1 to 172800.",
            )
        has_ids = bool(req.get("InstanceIds"))
        has_targets = bool(req.get("Targets"))
        if has_ids == has_targets:
            raise ApiError(
                "ValidationException", "Specify either InstanceIds or Targets, but not both."
            )
        if has_targets:
            self._check_targets(req["Targets"])
        with self.lock:
            instances = self._resolve_ids(req["InstanceIds"]) if has_ids else []
            max_concurrency = str(req.get("MaxConcurrency") or "50")
            max_errors = str(req.get("MaxErrors") or "0")
            now = time.time()
            command_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            command = Command(
                command_id=command_id,
                request=req,
                commands=commands,
                working_directory=workdir_values[0],
                execution_timeout=execution_timeout,
                delivery_timeout=int(req.get("TimeoutSeconds") or DEFAULT_DELIVERY_TIMEOUT),
                requested=now,
                max_concurrency=max_concurrency,
                max_errors=max_errors,
                concurrency_limit=0,
                error_limit=0,
                lags=random.Random(f"lags:{self.seed}:{command_id}"),
            )
            command.visible_at = now + self._lag(command)
            self.commands[command.command_id] = command
            self.command_order.append(command)
            if has_ids:
                self._start(command, instances)
            else:
                # a command sent with Targets starts with none resolved (TargetCount 0)
                command.resolved = False
                command.ramp = 1
                self.scheduler.after(self._lag(command), self._resolve, command)
            return {"Command": self.command_json(command)}

    def _lag(self, command: Command) -> float:
        low = self.settings.consistency_lag_min
        high = max(low, self.settings.consistency_lag_max)
        if high <= 0 or command.lags is None:
            return 0.0
        return command.lags.uniform(low, high)

    def _resolve(self, command: Command) -> None:
        with self.lock:
            if command.command_id not in self.commands or command.resolved:
                return
            self._start(command, self._resolve_targets(command.request["Targets"]))

    def _start(self, command: Command, instances: list[Instance]) -> None:
        """Create the invocations, each visible to reads after its own lag, and start them.

        The delivery deadline is TimeoutSeconds plus the execution timeout
        ("the total of both", user guide: Understanding command timeouts).
        """
        command.resolved = True
        count = len(instances)
        command.concurrency_limit = _limit(command.max_concurrency, count, floor_one=True)
        command.error_limit = _limit(command.max_errors, count, floor_one=False)
        now = time.time()
        scale = self.settings.delivery_timeout_scale
        delivery = (command.delivery_timeout + command.execution_timeout) * scale
        deadline = command.requested + delivery
        for instance in instances:
            inv = Invocation(
                command=command,
                instance=instance,
                deadline=deadline,
                visible_at=now + self._lag(command),
            )
            command.invocations[instance.instance_id] = inv
            command.order.append(inv)
            command.queue.append(inv)
            self.scheduler.after(deadline - now, self._delivery_deadline, inv)
        if not instances:
            command.status, command.details = "Success", "NoInstancesInTag"
        self._fill(command)

    def _resolve_ids(self, ids: list[str]) -> list[Instance]:
        if len(set(ids)) != len(ids):
            raise ApiError("DuplicateInstanceId", "Instance IDs must be unique.")
        bad = [i for i in ids if i not in self.instances or self.instances[i].terminated]
        if bad:
            raise ApiError(
                "InvalidInstanceId",
                f"Instances [{_java_list(bad)}] not in a valid state for account {ACCOUNT}",
            )
        return [self.instances[i] for i in ids]

    @staticmethod
    def _check_targets(targets: list[dict[str, Any]]) -> None:
        """Target keys are checked when the command is sent; matching happens later."""
        for target in targets:
            key = str(target.get("Key", ""))
            if key not in ("InstanceIds", "tag-key") and not key.startswith("tag:"):
                raise ApiError("InvalidParameters", f"Target key {key} is not supported.")

    def _resolve_targets(self, targets: list[dict[str, Any]]) -> list[Instance]:
        chosen = [i for i in self.instances.values() if not i.terminated]
        for target in targets:
            key = str(target.get("Key", ""))
            values = set(target.get("Values") or [])
            if key == "InstanceIds":
                chosen = [i for i in chosen if i.instance_id in values]
            elif key.startswith("tag:"):
                tag = key[4:]
                chosen = [i for i in chosen if i.tags.get(tag) in values]
            else:
                chosen = [i for i in chosen if values & set(i.tags)]
        return chosen

    # ---- the state machine ----------------------------------------------

    def _fill(self, command: Command) -> None:
        """Start queued invocations while concurrency allows and the error budget holds.

        Finishing an invocation calls back in here; the flag keeps that from
        recursing once per queued host, the outer loop picks the work up.
        A command sent with Targets widens as the service documents its rate
        control: one host, then two, four, ... up to MaxConcurrency. Hosts left
        when MaxErrors is passed end Terminated; on a cancel, Cancelled.
        """
        if command.filling:
            return
        command.filling = True
        try:
            while command.queue and command.in_flight < self._window(command):
                if command.stopped or command.cancelled:
                    break
                inv = command.queue.popleft()
                if inv.terminal:
                    continue
                command.in_flight += 1
                inv.dispatched = True
                self._deliver(inv)
            if command.stopped or command.cancelled:
                details = "Cancelled" if command.cancelled else "Terminated"
                while command.queue:
                    inv = command.queue.popleft()
                    if not inv.terminal:
                        self._finish(inv, "Cancelled", details, -1)
        finally:
            command.filling = False

    @staticmethod
    def _window(command: Command) -> int:
        if command.ramp:
            return min(command.ramp, command.concurrency_limit)
        return command.concurrency_limit

    def _deliver(self, inv: Invocation) -> None:
        if inv.terminal or inv.status not in ("Pending", "Delayed"):
            return
        if time.time() >= inv.deadline:
            self._finish(inv, "TimedOut", "DeliveryTimedOut", -1)
            return
        instance = inv.instance
        if self.faults.get(instance.instance_id, "undeliverable") is not None:
            self.scheduler.after(0.05, self._undeliverable, inv, inv.gen)
            return
        if self.ping_status(instance) != "Online":
            inv.status = inv.details = "Delayed"
            self.scheduler.after(
                self.settings.delayed_retry_seconds, self._retry_delayed, inv, inv.gen
            )
            return
        pickup = 0.02
        if instance.container is None:
            pickup = self._outcome(inv).pickup
        slow = self.faults.get(instance.instance_id, "slow_pickup")
        if slow is not None:
            pickup += float(slow["seconds"])
        self.scheduler.after(pickup, self._pick_up, inv, inv.gen)

    def _outcome(self, inv: Invocation) -> Any:
        return synthetic_outcome(
            seed=self.seed,
            instance_id=inv.instance.instance_id,
            command_id=inv.command.command_id,
            attempt=inv.attempt,
            commands=inv.command.commands,
            hostname=inv.instance.computer_name,
            profile=inv.instance.profile,
        )

    def _undeliverable(self, inv: Invocation, gen: int) -> None:
        with self.lock:
            if gen == inv.gen and not inv.terminal:
                self._finish(inv, "Failed", "Undeliverable", -1)

    def _retry_delayed(self, inv: Invocation, gen: int) -> None:
        with self.lock:
            if gen == inv.gen and inv.status == "Delayed":
                self._deliver(inv)

    def _delivery_deadline(self, inv: Invocation) -> None:
        """TimeoutSeconds plus the execution timeout have passed: whatever has not
        ended, pending or still running, ends DeliveryTimedOut."""
        with self.lock:
            if inv.terminal or inv.uploading:
                return
            if inv.instance.container is not None and inv.status in ("InProgress", "Cancelling"):
                self._pool.submit(self._executor.cancel, inv.key)
            self._finish(inv, "TimedOut", "DeliveryTimedOut", -1)

    def _pick_up(self, inv: Invocation, gen: int) -> None:
        with self.lock:
            if gen != inv.gen or inv.terminal or inv.status not in ("Pending", "Delayed"):
                return
            if time.time() >= inv.deadline:
                self._finish(inv, "TimedOut", "DeliveryTimedOut", -1)
                return
            if self.ping_status(inv.instance) != "Online":
                self._deliver(inv)
                return
            inv.status = inv.details = "InProgress"
            if inv.start is None:
                inv.start = time.time()
            self._run(inv)

    def _run(self, inv: Invocation) -> None:
        """Start (or, after a reboot, restart) the script on the host."""
        instance = inv.instance
        command = inv.command
        terminate = self.faults.get(instance.instance_id, "terminate")
        if terminate is not None:
            self.scheduler.after(
                float(terminate["after_seconds"]), self._terminate, instance.instance_id
            )
        if self.faults.get(instance.instance_id, "hang") is not None:
            self.scheduler.after(command.execution_timeout, self._timed_out, inv, inv.gen)
            return
        if instance.container is not None:
            gen = inv.gen
            self._pool.submit(self._run_container, inv, gen)
            return
        outcome = self._outcome(inv)
        if outcome.duration >= command.execution_timeout:
            self.scheduler.after(command.execution_timeout, self._timed_out, inv, inv.gen)
            return
        self.scheduler.after(outcome.duration, self._synthetic_done, inv, inv.gen, outcome)

    def _synthetic_done(self, inv: Invocation, gen: int, outcome: Any) -> None:
        with self.lock:
            if gen != inv.gen or inv.terminal:
                return
            inv.stdout, inv.stderr, inv.stdout_fill = (
                outcome.stdout,
                outcome.stderr,
                outcome.stdout_fill,
            )
            self._exited(inv, outcome.exit_code)

    def _run_container(self, inv: Invocation, gen: int) -> None:
        command = inv.command
        assert inv.instance.container is not None
        try:
            code, out, err, timed_out = self._executor.run(
                inv.key,
                inv.instance.container,
                command.commands,
                command.working_directory,
                command.execution_timeout,
                env={
                    "AWS_SSM_INSTANCE_ID": inv.instance.instance_id,
                    "AWS_SSM_REGION_NAME": self.region,
                },
            )
        except Exception as exc:  # docker missing or the container gone
            code, out, err, timed_out = 1, "", f"cannot run in container: {exc}\n", False
        with self.lock:
            if gen != inv.gen or inv.terminal:
                return
            if inv.status == "Cancelling":
                self._finish(inv, "Cancelled", "Cancelled", KILLED)
                return
            inv.stdout, inv.stderr, inv.stdout_fill = out, err, 0
            if timed_out:
                self._complete(inv, "TimedOut", "ExecutionTimedOut", KILLED)
                return
            self._exited(inv, code)

    def _timed_out(self, inv: Invocation, gen: int) -> None:
        with self.lock:
            if gen == inv.gen and not inv.terminal:
                if inv.instance.container is not None:
                    self._executor.cancel(inv.key)
                inv.gen += 1
                self._complete(inv, "TimedOut", "ExecutionTimedOut", KILLED)

    def _exited(self, inv: Invocation, code: int) -> None:
        forced = self.faults.get(inv.instance.instance_id, "fail")
        if forced is not None:
            code = int(forced["exit_code"])
        # The agent's reboot code is its platform's: 194 on Linux, 3010 on Windows
        # (appconfig RebootExitCode). Either means "reboot, then run the script
        # again"; on Linux 3010 is an ordinary failing exit code.
        if code == reboot_code(inv.instance.platform_type) and inv.attempt < MAX_REBOOTS:
            self._reboot(inv)
            return
        if code == 0:
            self._complete(inv, "Success", "Success", 0)
        else:
            inv.stderr = failure_note(inv.stderr, code)
            self._complete(inv, "Failed", "Failed", code)

    def _reboot(self, inv: Invocation) -> None:
        instance = inv.instance
        instance.down = True
        gen = inv.gen
        if instance.container is not None:
            self._pool.submit(self._restart_container, inv, gen)
        else:
            self.scheduler.after(self.settings.reboot_seconds, self._back_up, inv, gen)

    def _restart_container(self, inv: Invocation, gen: int) -> None:
        assert inv.instance.container is not None
        self._executor.restart(inv.instance.container)
        self._back_up(inv, gen)

    def _back_up(self, inv: Invocation, gen: int) -> None:
        with self.lock:
            inv.instance.down = False
            if gen != inv.gen or inv.terminal:
                return
            inv.attempt += 1
            self._run(inv)

    def _terminate(self, instance_id: str) -> None:
        with self.lock:
            instance = self.instances.get(instance_id)
            if instance is None or instance.terminated:
                return
            instance.terminated = True
            for command in self.command_order:
                inv = command.invocations.get(instance_id)
                if inv is not None and not inv.terminal:
                    if instance.container is not None:
                        self._executor.cancel(inv.key)
                    inv.gen += 1
                    self._finish(inv, "Failed", "Terminated", -1)
        if self._terminator is not None:
            self._pool.submit(self._terminator, instance_id)

    def _complete(self, inv: Invocation, status: str, details: str, code: int) -> None:
        """End a script that ran: its output reaches S3 first, as the agent uploads
        before it reports, so a terminal status means the objects are there."""
        if not (inv.command.bucket and self._s3_writer is not None):
            self._finish(inv, status, details, code)
            return
        inv.uploading = True
        gen = inv.gen
        self._pool.submit(self._upload_then_finish, inv, gen, status, details, code)

    def _upload_then_finish(
        self, inv: Invocation, gen: int, status: str, details: str, code: int
    ) -> None:
        self._write_output(inv)
        with self.lock:
            inv.uploading = False
            if gen == inv.gen and not inv.terminal:
                self._finish(inv, status, details, code)

    def _finish(self, inv: Invocation, status: str, details: str, code: int) -> None:
        command = inv.command
        inv.status, inv.details, inv.response_code = status, details, code
        inv.end = time.time()
        inv.gen += 1
        command.completed += 1
        if details in ERROR_DETAILS:
            command.errors += 1
        if details == "DeliveryTimedOut":
            command.delivery_timed_out += 1
        if inv.dispatched:
            inv.dispatched = False
            command.in_flight -= 1
        if command.errors > command.error_limit:
            command.stopped = True
        if command.ramp and command.ramp < command.concurrency_limit:
            command.wave_done += 1
            if command.wave_done >= command.ramp:
                command.ramp, command.wave_done = command.ramp * 2, 0
        self._fill(command)
        self._settle(command)

    def _settle(self, command: Command) -> None:
        if command.completed < len(command.order):
            if command.cancelled:
                command.status = command.details = "Cancelling"
            elif any(inv.status != "Pending" for inv in command.order):
                command.status = command.details = "InProgress"
            return
        if not command.order:
            return
        if command.cancelled:
            command.status = command.details = "Cancelled"
            return
        counted = [inv for inv in command.order if inv.details != "Undeliverable"]
        details = {inv.details for inv in counted}
        if counted and details == {"Success"}:
            command.status = command.details = "Success"
        elif command.errors > command.error_limit:
            errored = {d for d in details if d in ERROR_DETAILS}
            if errored == {"ExecutionTimedOut"}:
                command.status, command.details = "TimedOut", "ExecutionTimedOut"
            else:
                command.status = command.details = "Failed"
        elif counted and details == {"DeliveryTimedOut"}:
            command.status, command.details = "TimedOut", "DeliveryTimedOut"
        else:
            command.status, command.details = "Failed", "Incomplete"

    def _write_output(self, inv: Invocation) -> None:
        """Upload each stream that has output; the agent skips an empty file (fileS3.go)."""
        if self._s3_writer is None:
            return
        base = self._key_base(inv)
        try:
            stdout = inv.full_stdout()
            if stdout:
                self._s3_writer(inv.command.bucket, f"{base}/stdout", stdout)
            if inv.stderr:
                self._s3_writer(inv.command.bucket, f"{base}/stderr", inv.stderr)
        except Exception:
            log.exception("writing output of %s to S3 failed", inv.key)

    def _key_base(self, inv: Invocation) -> str:
        prefix = inv.command.prefix.rstrip("/")
        parts = [inv.command.command_id, inv.instance.instance_id, PLUGIN_KEY, f"0.{PLUGIN_KEY}"]
        return "/".join([prefix, *parts] if prefix else parts)

    def _url(self, inv: Invocation, stream: str) -> str:
        """Where a stream's output goes; named whether or not anything was uploaded."""
        if not inv.command.bucket:
            return ""
        return f"{self.moto_url}/{inv.command.bucket}/{self._key_base(inv)}/{stream}"

    # ---- CancelCommand --------------------------------------------------

    def cancel_command(self, req: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            command = self._command(req["CommandId"])
            only = req.get("InstanceIds")
            if only:
                if len(set(only)) != len(only):
                    raise ApiError("DuplicateInstanceId", "Instance IDs must be unique.")
                missing = [i for i in only if i not in command.invocations]
                if missing:
                    raise ApiError(
                        "InvalidInstanceId",
                        f"Instances [{_java_list(missing)}] are not in command "
                        f"{command.command_id}",
                    )
                targets = [command.invocations[i] for i in only]
            else:
                targets = command.order
                if command.completed < len(command.order) or not command.resolved:
                    command.cancelled = True
            for inv in targets:
                if inv.terminal or inv.status == "Cancelling":
                    continue
                if inv.status in ("Pending", "Delayed"):
                    self._finish(inv, "Cancelled", "Cancelled", -1)
                    continue
                inv.status = inv.details = "Cancelling"
                if inv.instance.container is not None:
                    self._pool.submit(self._executor.cancel, inv.key)
                else:
                    inv.gen += 1
                    self.scheduler.after(0.1, self._cancelled, inv, inv.gen)
            self._fill(command)
            self._settle(command)
        return {}

    def _cancelled(self, inv: Invocation, gen: int) -> None:
        with self.lock:
            if gen == inv.gen and not inv.terminal:
                self._finish(inv, "Cancelled", "Cancelled", KILLED)

    # ---- reads ----------------------------------------------------------

    def _command(self, command_id: str, *, visible: bool = False) -> Command:
        """The command, or InvalidCommandId; `visible` also hides one that reads
        cannot see yet (an eventually consistent read cannot tell the two apart)."""
        command = self.commands.get(command_id)
        if command is None or (visible and time.time() < command.visible_at):
            raise ApiError("InvalidCommandId", f"Command {command_id} is not valid")
        return command

    @staticmethod
    def _filter_ok(
        requested: float,
        statuses: tuple[str, str],
        executing: bool,
        filters: list[dict[str, str]],
    ) -> bool:
        """Whether one command or invocation passes checked `filters`; a Status value
        matches its status or its detailed status (TimedOut covers both timeouts)."""
        for item in filters:
            key, value = item["key"], item["value"]
            if key in ("InvokedAfter", "InvokedBefore"):
                bound = _when(value)
                if key == "InvokedAfter" and requested < bound:
                    return False
                if key == "InvokedBefore" and requested > bound:
                    return False
            elif key == "Status":
                if value not in statuses:
                    return False
            elif key == "ExecutionStage":
                if (value == "Executing") != executing:
                    return False
            elif key == "DocumentName" and value != DOCUMENT:
                return False
        return True

    @staticmethod
    def _check_filters(req: dict[str, Any], *, invocations: bool) -> list[dict[str, str]]:
        """Refuse the filter combinations the model's documentation forbids."""
        filters: list[dict[str, str]] = req.get("Filters") or []
        keys = [f["key"] for f in filters]
        if len(set(keys)) != len(keys):
            raise ApiError("InvalidFilterKey", "Each filter key can be specified only once")
        if invocations and "ExecutionStage" in keys:
            raise ApiError(
                "InvalidFilterKey",
                "The ExecutionStage filter can't be used with ListCommandInvocations",
            )
        allowed = INVOCATION_STATUS_FILTER if invocations else COMMAND_STATUS_FILTER
        for item in filters:
            key, value = item["key"], item["value"]
            if key in ("InvokedAfter", "InvokedBefore"):
                _when(value)
            elif key == "Status" and value not in allowed:
                raise ApiError("InvalidFilterValue", f"{value} is not a valid value for Status")
            elif key == "ExecutionStage" and value not in ("Executing", "Complete"):
                raise ApiError(
                    "InvalidFilterValue", f"{value} is not a valid value for ExecutionStage"
                )
            elif key not in ("Status", "ExecutionStage", "DocumentName"):
                raise ApiError("InvalidFilterKey", f"{key} is not a valid filter key")
        pending = {"key": "Status", "value": "Pending"} in filters
        if not invocations and req.get("InstanceId") and pending:
            raise ApiError(
                "InvalidFilterKey",
                "You can't specify an InstanceId with the filter Status = Pending",
            )
        return filters

    def list_commands(self, req: dict[str, Any]) -> dict[str, Any]:
        filters = self._check_filters(req, invocations=False)
        now = time.time()
        with self.lock:
            if req.get("CommandId"):
                commands = [self._command(req["CommandId"], visible=True)]
            else:
                commands = [c for c in reversed(self.command_order) if now >= c.visible_at]
            if req.get("InstanceId"):
                commands = [c for c in commands if req["InstanceId"] in c.invocations]
            commands = [
                c
                for c in commands
                if self._filter_ok(
                    c.requested,
                    (c.status, c.details),
                    c.completed < len(c.order) or not c.resolved,
                    filters,
                )
            ]
            page, token = _page(commands, int(req.get("MaxResults") or 50), req.get("NextToken"))
            out: dict[str, Any] = {"Commands": [self.command_json(c) for c in page]}
        if token:
            out["NextToken"] = token
        return out

    def list_command_invocations(self, req: dict[str, Any]) -> dict[str, Any]:
        filters = self._check_filters(req, invocations=True)
        instance_id = req.get("InstanceId")
        now = time.time()
        with self.lock:
            if req.get("CommandId"):
                command = self._command(req["CommandId"], visible=True)
                if instance_id:
                    one = command.invocations.get(instance_id)
                    invocations = [one] if one is not None else []
                else:
                    invocations = command.order
            else:
                invocations = [
                    inv
                    for c in reversed(self.command_order)
                    for inv in c.order
                    if not instance_id or inv.instance.instance_id == instance_id
                ]
            invocations = [inv for inv in invocations if inv.visible(now)]
            if filters:
                invocations = [
                    inv
                    for inv in invocations
                    if self._filter_ok(
                        inv.command.requested,
                        (inv.status, inv.details),
                        not inv.terminal,
                        filters,
                    )
                ]
            page, token = _page(invocations, int(req.get("MaxResults") or 50), req.get("NextToken"))
            details = bool(req.get("Details"))
            out: dict[str, Any] = {
                "CommandInvocations": [self.invocation_json(inv, details) for inv in page]
            }
        if token:
            out["NextToken"] = token
        return out

    def get_command_invocation(self, req: dict[str, Any]) -> dict[str, Any]:
        plugin = req.get("PluginName")
        if plugin is not None and plugin != PLUGIN:
            raise ApiError("InvalidPluginName", f"Plugin {plugin} is not valid for {DOCUMENT}")
        missing = ApiError(
            "InvocationDoesNotExist",
            f"Invocation of command {req['CommandId']} on {req['InstanceId']} does not exist",
        )
        with self.lock:
            command = self.commands.get(req["CommandId"])
            inv = None if command is None else command.invocations.get(req["InstanceId"])
            if command is None or inv is None or not inv.visible(time.time()):
                raise missing
            stdout = inv.full_stdout() if inv.terminal else ""
            elapsed = ""
            if inv.start is not None:
                seconds = (inv.end or time.time()) - inv.start
                elapsed = f"PT{seconds:.3f}S"
            return {
                "CommandId": command.command_id,
                "InstanceId": inv.instance.instance_id,
                "Comment": command.request.get("Comment", ""),
                "DocumentName": DOCUMENT,
                "DocumentVersion": "$DEFAULT",
                "PluginName": PLUGIN,
                "ResponseCode": inv.response_code,
                "ExecutionStartDateTime": _iso(inv.start),
                "ExecutionElapsedTime": elapsed,
                "ExecutionEndDateTime": _iso(inv.end) if inv.start is not None else "",
                "Status": inv.status,
                "StatusDetails": inv.details,
                "StandardOutputContent": content(stdout, STDOUT_LIMIT),
                "StandardOutputUrl": self._url(inv, "stdout"),
                "StandardErrorContent": content(inv.stderr if inv.terminal else "", STDERR_LIMIT),
                "StandardErrorUrl": self._url(inv, "stderr"),
                "CloudWatchOutputConfig": {
                    "CloudWatchLogGroupName": "",
                    "CloudWatchOutputEnabled": False,
                },
            }

    def describe_instance_information(self, req: dict[str, Any]) -> dict[str, Any]:
        old = req.get("InstanceInformationFilterList") or []
        new = req.get("Filters") or []
        if old and new:
            raise ApiError(
                "ValidationException",
                "Specify either InstanceInformationFilterList or Filters, not both.",
            )
        tags = [f for f in new if f["Key"].startswith("tag:") or f["Key"] == "tag-key"]
        if tags and len(tags) != len(new):
            raise ApiError(
                "InvalidFilterKey", "Tag filters can't be combined with other filter types"
            )
        checks = [(f["key"], set(f["valueSet"])) for f in old] + [
            (f["Key"], set(f["Values"])) for f in new
        ]
        with self.lock:
            rows = [i for i in self.instances.values() if not i.terminated]
            for key, values in checks:
                rows = self._filter_instances(rows, key, values, strict=bool(old))
            # the model: "The default value is 10 items."
            page, token = _page(rows, int(req.get("MaxResults") or 10), req.get("NextToken"))
            out: dict[str, Any] = {"InstanceInformationList": [self.instance_json(i) for i in page]}
        if token:
            out["NextToken"] = token
        return out

    def _filter_instances(
        self, rows: list[Instance], key: str, values: set[str], *, strict: bool
    ) -> list[Instance]:
        if key == "InstanceIds":
            return [i for i in rows if i.instance_id in values]
        if key == "PingStatus":
            return [i for i in rows if self.ping_status(i) in values]
        if key == "PlatformTypes":
            return [i for i in rows if i.platform_type in values]
        if key == "AgentVersion":
            return [i for i in rows if i.agent_version in values]
        if key == "ResourceType":
            return [i for i in rows if "EC2Instance" in values]
        if key == "AssociationStatus":
            return [i for i in rows if "Success" in values]
        if not strict and key.startswith("tag:"):
            return [i for i in rows if i.tags.get(key[4:]) in values]
        if not strict and key == "tag-key":
            return [i for i in rows if values & set(i.tags)]
        raise ApiError(
            "InvalidFilterKey" if not strict else "InvalidInstanceInformationFilterValue",
            f"{key} is not a valid filter key",
        )

    # ---- wire shapes ----------------------------------------------------

    def command_json(self, command: Command) -> dict[str, Any]:
        req = command.request
        return {
            "CommandId": command.command_id,
            "DocumentName": DOCUMENT,
            "DocumentVersion": req.get("DocumentVersion", "$DEFAULT"),
            "Comment": req.get("Comment", ""),
            "ExpiresAfter": command.requested
            + command.delivery_timeout
            + command.execution_timeout,
            "Parameters": req.get("Parameters", {}),
            "InstanceIds": list(req.get("InstanceIds") or []),
            "Targets": list(req.get("Targets") or []),
            "RequestedDateTime": command.requested,
            "Status": command.status,
            "StatusDetails": command.details,
            "OutputS3Region": req.get("OutputS3Region", self.region),
            "OutputS3BucketName": command.bucket,
            "OutputS3KeyPrefix": command.prefix,
            "MaxConcurrency": command.max_concurrency,
            "MaxErrors": command.max_errors,
            "TargetCount": len(command.order),
            "CompletedCount": command.completed,
            "ErrorCount": command.errors,
            "DeliveryTimedOutCount": command.delivery_timed_out,
            "ServiceRole": req.get("ServiceRoleArn", ""),
            **_unset_delivery_configs(),
            "TimeoutSeconds": command.delivery_timeout,
            "TriggeredAlarms": [],
        }

    def invocation_json(self, inv: Invocation, details: bool) -> dict[str, Any]:
        command = inv.command
        out: dict[str, Any] = {
            "CommandId": command.command_id,
            "InstanceId": inv.instance.instance_id,
            "InstanceName": inv.instance.computer_name,
            "Comment": command.request.get("Comment", ""),
            "DocumentName": DOCUMENT,
            "DocumentVersion": "$DEFAULT",
            "RequestedDateTime": command.requested,
            "Status": inv.status,
            "StatusDetails": inv.details,
            "TraceOutput": "",
            "StandardOutputUrl": self._url(inv, "stdout"),
            "StandardErrorUrl": self._url(inv, "stderr"),
            "CommandPlugins": [],
            "ServiceRole": command.request.get("ServiceRoleArn", ""),
            **_unset_delivery_configs(),
        }
        if details:
            output = ""
            if inv.terminal:
                output = detail_output(inv.full_stdout(), inv.stderr, DETAIL_LIMIT)
            plugin: dict[str, Any] = {
                "Name": PLUGIN,
                "Status": PLUGIN_STATUS.get(inv.status, inv.status),
                "StatusDetails": inv.details,
                "ResponseCode": inv.response_code,
                "Output": output,
                "StandardOutputUrl": self._url(inv, "stdout"),
                "StandardErrorUrl": self._url(inv, "stderr"),
                "OutputS3Region": command.request.get("OutputS3Region", self.region),
                "OutputS3BucketName": command.bucket,
                "OutputS3KeyPrefix": self._key_base(inv).rsplit("/", 1)[0]
                if command.bucket
                else "",
            }
            if inv.start is not None:
                plugin["ResponseStartDateTime"] = inv.start
            if inv.end is not None and inv.start is not None:
                plugin["ResponseFinishDateTime"] = inv.end
            out["CommandPlugins"] = [plugin]
        return out

    def instance_json(self, instance: Instance) -> dict[str, Any]:
        return {
            "InstanceId": instance.instance_id,
            "PingStatus": self.ping_status(instance),
            "LastPingDateTime": time.time(),
            "AgentVersion": instance.agent_version,
            "IsLatestVersion": False,
            "PlatformType": instance.platform_type,
            "PlatformName": instance.platform_name,
            "PlatformVersion": instance.platform_version,
            "ResourceType": "EC2Instance",
            "IPAddress": instance.ip_address,
            "ComputerName": instance.computer_name,
            "AssociationStatus": "Success",
            "SourceId": instance.instance_id,
            "SourceType": "AWS::EC2::Instance",
        }

    def status(self) -> dict[str, Any]:
        with self.lock:
            live = sum(1 for c in self.command_order if c.completed < len(c.order))
            return {
                "instances": len(self.instances),
                "terminated": sum(1 for i in self.instances.values() if i.terminated),
                "commands": len(self.command_order),
                "commands_running": live,
                "invocations": sum(len(c.order) for c in self.command_order),
                "scheduled_events": self.scheduler.pending(),
                "faults": self.faults.describe(),
                "settings": vars(self.settings),
            }


def _unset_delivery_configs() -> dict[str, Any]:
    """Notification and CloudWatch settings as the service reports them when none were asked for.

    Commands and invocations both carry them; fresh dicts each time, since callers
    may serialise or change a response.
    """
    return {
        "NotificationConfig": {
            "NotificationArn": "",
            "NotificationEvents": [],
            "NotificationType": "",
        },
        "CloudWatchOutputConfig": {
            "CloudWatchLogGroupName": "",
            "CloudWatchOutputEnabled": False,
        },
    }
