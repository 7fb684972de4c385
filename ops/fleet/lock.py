"""The team-wide lease: one deploy or patch run per service at a time, across machines.

A lease is one DynamoDB item written only when absent or expired (a
conditional put), renewed by its holder's heartbeat and deleted on release.
A holder that dies without releasing (SIGKILL, a lost laptop) stops renewing,
so its lease lapses after its time to live and the next run may take it;
nobody has to clean up by hand. The condition compares `expires_at` with the
acquirer's clock, so clocks must agree to well within the TTL (NTP does).
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ops import aws
from ops.errors import ExitCode, OpsError

DEFAULT_TABLE = "fleetops-locks"
DEFAULT_TTL = 120.0
# DynamoDB's own TTL sweep removes long-dead items; correctness never relies on it
EXPIRY_SLACK = 86_400


class LockHeld(OpsError):
    """Someone else holds the lease; nothing was started."""

    exit_code = ExitCode.STOPPED

    def __init__(self, key: str, holder: Holder, since: float, expires: float) -> None:
        self.key, self.holder, self.since, self.expires = key, holder, since, expires
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since))
        super().__init__(
            f"{key} is locked by {holder.describe()} since {stamp}; the lease lapses "
            f"{max(0, int(expires - time.time()))} s after its last heartbeat "
            "(or break it with --break-lock)"
        )


class LeaseLost(OpsError):
    """Our lease was taken or broken while we held it: stop starting new work."""

    exit_code = ExitCode.STOPPED


@dataclass(frozen=True)
class Holder:
    operator: str
    host: str
    pid: int
    run_id: str

    @classmethod
    def here(cls, run_id: str) -> Holder:
        operator = os.environ.get("OPS_OPERATOR") or getpass.getuser()
        return cls(operator=operator, host=socket.gethostname(), pid=os.getpid(), run_id=run_id)

    def describe(self) -> str:
        return f"{self.operator}@{self.host} (pid {self.pid}, run {self.run_id})"


@dataclass(frozen=True)
class Lease:
    key: str
    lease_id: str
    holder: Holder
    acquired_at: float
    expires_at: float


def lock_key(env: str, kind: str, name: str) -> str:
    """`sandbox/service/hello`: deploy and patch of one service share one key."""
    return f"{env}/{kind}/{name}"


class LockTable:
    """The DynamoDB table of leases; created (with TTL on) the first time it is missing."""

    def __init__(
        self,
        table: str = DEFAULT_TABLE,
        *,
        client: Any = None,
        profile: str | None = None,
        region: str | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        self.table = table
        self.ddb = client or aws.client("dynamodb", profile=profile, region=region)
        self.announce = announce
        self._ready = False

    def ensure(self) -> None:
        if self._ready:
            return
        try:
            self.ddb.describe_table(TableName=self.table)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            self._create()
        self._ready = True

    def _create(self) -> None:
        try:
            self.ddb.create_table(
                TableName=self.table,
                KeySchema=[{"AttributeName": "lock_id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "lock_id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            # another machine created it between our describe and create
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
        else:
            if self.announce:
                self.announce(f"created the lock table {self.table} (DynamoDB, once per account)")
        self.ddb.get_waiter("table_exists").wait(
            TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        try:
            self.ddb.update_time_to_live(
                TableName=self.table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "purge_at"},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ValidationException":  # already enabled
                raise

    def acquire(self, key: str, holder: Holder, ttl: float = DEFAULT_TTL) -> Lease:
        """Take the lease if free, lapsed, or held for the same run; otherwise LockHeld
        names who has it.

        A lease under the same run id belongs to a process that died driving
        that run: the journal lets only one process claim a run, so whoever
        resumes it may take the lease over at once instead of waiting out the TTL.
        """
        self.ensure()
        now = time.time()
        lease = Lease(key, uuid.uuid4().hex, holder, now, now + ttl)
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item=_item(lease),
                # the same run id: a resume of the run whose process died holding it
                ConditionExpression=(
                    "attribute_not_exists(lock_id) OR expires_at < :now OR run_id = :run"
                ),
                ExpressionAttributeValues={":now": {"N": repr(now)}, ":run": {"S": holder.run_id}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            current = self.current(key)
            if current is None:  # released between our put and our read: try once more
                return self.acquire(key, holder, ttl)
            raise LockHeld(key, current.holder, current.acquired_at, current.expires_at) from None
        return lease

    def renew(self, lease: Lease, ttl: float = DEFAULT_TTL) -> Lease:
        """Push the expiry out; LeaseLost if the lease is no longer ours."""
        expires = time.time() + ttl
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key={"lock_id": {"S": lease.key}},
                UpdateExpression="SET expires_at = :e, purge_at = :p",
                ConditionExpression="lease_id = :l",
                ExpressionAttributeValues={
                    ":e": {"N": repr(expires)},
                    ":p": {"N": str(int(expires) + EXPIRY_SLACK)},
                    ":l": {"S": lease.lease_id},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise LeaseLost(f"the lease on {lease.key} was taken or broken") from None
        return Lease(lease.key, lease.lease_id, lease.holder, lease.acquired_at, expires)

    def release(self, lease: Lease) -> bool:
        """Delete our lease; False when it was already gone or taken (nothing to undo)."""
        try:
            self.ddb.delete_item(
                TableName=self.table,
                Key={"lock_id": {"S": lease.key}},
                ConditionExpression="lease_id = :l",
                ExpressionAttributeValues={":l": {"S": lease.lease_id}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def current(self, key: str) -> Lease | None:
        """The live lease on `key`, or None when free or lapsed."""
        self.ensure()
        item = self.ddb.get_item(
            TableName=self.table, Key={"lock_id": {"S": key}}, ConsistentRead=True
        )
        lease = _lease(item.get("Item"))
        if lease is None or lease.expires_at < time.time():
            return None
        return lease

    def break_lock(self, key: str) -> Lease | None:
        """Delete whatever lease is there; the caller journals who it belonged to."""
        self.ensure()
        answer = self.ddb.delete_item(
            TableName=self.table, Key={"lock_id": {"S": key}}, ReturnValues="ALL_OLD"
        )
        return _lease(answer.get("Attributes"))


def _item(lease: Lease) -> dict[str, Any]:
    h = lease.holder
    return {
        "lock_id": {"S": lease.key},
        "lease_id": {"S": lease.lease_id},
        "operator": {"S": h.operator},
        "host": {"S": h.host},
        "pid": {"N": str(h.pid)},
        "run_id": {"S": h.run_id},
        "acquired_at": {"N": repr(lease.acquired_at)},
        "expires_at": {"N": repr(lease.expires_at)},
        "purge_at": {"N": str(int(lease.expires_at) + EXPIRY_SLACK)},
    }


def _lease(item: dict[str, Any] | None) -> Lease | None:
    if not item:
        return None
    holder = Holder(
        operator=item["operator"]["S"],
        host=item["host"]["S"],
        pid=int(item["pid"]["N"]),
        run_id=item["run_id"]["S"],
    )
    return Lease(
        key=item["lock_id"]["S"],
        lease_id=item["lease_id"]["S"],
        holder=holder,
        acquired_at=float(item["acquired_at"]["N"]),
        expires_at=float(item["expires_at"]["N"]),
    )


class Heartbeat:
    """Renews a lease every ttl/3 in a daemon thread; `lost` is set if renewal is refused.

    The workflow checks `lost` (or calls `check()`) before each batch, so a
    broken lock stops new batches while the one in flight finishes.
    """

    def __init__(self, table: LockTable, lease: Lease, ttl: float = DEFAULT_TTL) -> None:
        self.table, self.lease, self.ttl = table, lease, ttl
        self.lost = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lock-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.lease = self.table.renew(self.lease, self.ttl)
            except LeaseLost as exc:
                self.error = exc
                self.lost.set()
                return
            except Exception as exc:
                self.error = exc

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"the lease on {self.lease.key} was taken or broken; stopping")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@contextmanager
def held(
    table: LockTable, key: str, holder: Holder, ttl: float = DEFAULT_TTL
) -> Iterator[Heartbeat]:
    """Acquire, heartbeat while the body runs, release on the way out (even on error)."""
    lease = table.acquire(key, holder, ttl)
    beat = Heartbeat(table, lease, ttl).start()
    try:
        yield beat
    finally:
        beat.stop()
        table.release(beat.lease)
