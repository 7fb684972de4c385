"""The team-wide lease against moto's DynamoDB over real HTTP, across threads and processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from ops.fleet.lock import Heartbeat, Holder, LeaseLost, LockHeld, LockTable, held, lock_key

REPO = Path(__file__).resolve().parents[3]
KEY = lock_key("sandbox", "service", "hello")


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def ddb(url: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1")


@pytest.fixture
def table_name(request: pytest.FixtureRequest) -> str:
    return f"locks-{request.node.name[:40].replace('[', '-').replace(']', '')}"


def table(url: str, name: str, said: list[str] | None = None) -> LockTable:
    return LockTable(name, client=ddb(url), announce=None if said is None else said.append)


def test_missing_table_is_created_and_said_once(
    aws_env: dict, moto_url: str, table_name: str
) -> None:
    said: list[str] = []
    first = table(moto_url, table_name, said)
    first.ensure()
    table(moto_url, table_name, said).ensure()
    assert said == [f"created the lock table {table_name} (DynamoDB, once per account)"]
    ttl = ddb(moto_url).describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "purge_at"
    # a second machine losing the create race finds the table in use and carries on
    table(moto_url, table_name, said)._create()
    assert len(said) == 1


def test_two_acquirers_at_once_exactly_one_wins(
    aws_env: dict, moto_url: str, table_name: str
) -> None:
    table(moto_url, table_name).ensure()
    barrier = threading.Barrier(2)
    outcomes: dict[str, Any] = {}

    def contend(run_id: str) -> None:
        locks = table(moto_url, table_name)
        barrier.wait()
        try:
            outcomes[run_id] = locks.acquire(KEY, Holder("alice", "laptop", 100, run_id), ttl=30)
        except LockHeld as exc:
            outcomes[run_id] = exc

    threads = [threading.Thread(target=contend, args=(r,)) for r in ("run-a", "run-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    refused = [o for o in outcomes.values() if isinstance(o, LockHeld)]
    won = [o for o in outcomes.values() if not isinstance(o, LockHeld)]
    assert len(won) == 1 and len(refused) == 1
    assert refused[0].holder.run_id == won[0].holder.run_id
    assert f"run {won[0].holder.run_id}" in str(refused[0])
    assert "alice@laptop (pid 100" in str(refused[0])
    assert refused[0].exit_code == 3


def test_expiry_renew_and_release(aws_env: dict, moto_url: str, table_name: str) -> None:
    locks = table(moto_url, table_name)
    first = locks.acquire(KEY, Holder("alice", "a", 1, "r1"), ttl=1.0)
    renewed = locks.renew(first, ttl=1.5)
    assert renewed.expires_at > first.expires_at
    with pytest.raises(LockHeld):
        locks.acquire(KEY, Holder("bob", "b", 2, "r2"), ttl=30)
    # no renewal: the lease lapses and the next acquirer takes it
    deadline = time.monotonic() + 30
    while True:
        try:
            second = locks.acquire(KEY, Holder("bob", "b", 2, "r2"), ttl=30)
            break
        except LockHeld:
            assert time.monotonic() < deadline, "the lease never lapsed"
            time.sleep(0.1)
    assert time.time() >= renewed.expires_at
    # the lapsed holder can neither renew nor release what is now bob's
    with pytest.raises(LeaseLost):
        locks.renew(renewed)
    assert locks.release(renewed) is False
    assert locks.current(KEY).holder.run_id == "r2"
    assert locks.release(second) is True
    assert locks.current(KEY) is None


def test_break_lock_returns_the_holder_and_the_heartbeat_notices(
    aws_env: dict, moto_url: str, table_name: str
) -> None:
    locks = table(moto_url, table_name)
    with held(locks, KEY, Holder("alice", "a", 1, "r1"), ttl=0.6) as beat:
        broken = locks.break_lock(KEY)
        assert broken is not None and broken.holder.operator == "alice"
        assert beat.lost.wait(timeout=20), "the heartbeat never noticed the broken lease"
        with pytest.raises(LeaseLost):
            beat.check()
    assert locks.current(KEY) is None
    assert locks.break_lock(KEY) is None


def test_heartbeat_keeps_a_live_lease_past_its_ttl(
    aws_env: dict, moto_url: str, table_name: str
) -> None:
    locks = table(moto_url, table_name)
    lease = locks.acquire(KEY, Holder("alice", "a", 1, "r1"), ttl=0.6)
    beat = Heartbeat(locks, lease, ttl=0.6).start()
    try:
        deadline = time.monotonic() + 20
        while beat.lease.expires_at < lease.expires_at + 1.2:  # at least two renewals
            assert time.monotonic() < deadline and not beat.lost.is_set()
            time.sleep(0.05)
        with pytest.raises(LockHeld):
            locks.acquire(KEY, Holder("bob", "b", 2, "r2"), ttl=30)
    finally:
        beat.stop()
    assert locks.release(beat.lease)


HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from ops.fleet.lock import Heartbeat, Holder, LockTable, lock_key
    table = LockTable(sys.argv[1])
    key = lock_key("sandbox", "service", "hello")
    lease = table.acquire(key, Holder.here("run-killed"), ttl=2.0)
    beat = Heartbeat(table, lease, ttl=2.0).start()
    last = lease.expires_at
    print("HELD", flush=True)
    while True:
        time.sleep(0.05)
        if beat.lease.expires_at != last:
            last = beat.lease.expires_at
            print("RENEWED", flush=True)
    """
)


def test_a_holder_killed_with_sigkill_loses_the_lease_after_its_ttl(
    aws_env: dict, moto_url: str, table_name: str
) -> None:
    table(moto_url, table_name).ensure()
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, table_name],
        cwd=REPO,
        env={**os.environ, **aws_env, "OPS_OPERATOR": "carol"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        lines = [child.stdout.readline().strip() for _ in range(3)]
        assert lines == ["HELD", "RENEWED", "RENEWED"], lines
        locks = table(moto_url, table_name)
        with pytest.raises(LockHeld) as refused:
            locks.acquire(KEY, Holder("dave", "d", 4, "r4"), ttl=30)
        assert refused.value.holder.pid == child.pid
        assert refused.value.holder.operator == "carol"
        last_expiry = refused.value.expires
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                lease = locks.acquire(KEY, Holder("dave", "d", 4, "r4"), ttl=30)
                break
            except LockHeld as exc:
                assert exc.holder.pid == child.pid
                assert time.monotonic() < deadline, "a dead holder kept the lease"
                time.sleep(0.1)
        assert lease.acquired_at >= last_expiry
        assert locks.release(lease)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


class Flaky:
    """The real client; chosen calls fail or race first, as a network or a peer would."""

    def __init__(self, real: Any, **plans: list[str]) -> None:
        self.real, self.plans = real, plans

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.real, name)
        plan = self.plans.get(name)

        def call(**kwargs: Any) -> Any:
            if plan:
                step = plan.pop(0)
                if step == "race-release":  # the holder lets go between our put and our read
                    self.real.delete_item(
                        TableName=kwargs["TableName"], Key={"lock_id": {"S": KEY}}
                    )
                    return method(**kwargs)
                from botocore.exceptions import ClientError

                raise ClientError({"Error": {"Code": step, "Message": "injected"}}, name)
            return method(**kwargs)

        return call


def test_a_failed_renewal_is_retried_on_the_next_beat(
    aws_env: dict, moto_url: str, table_name: str
) -> None:
    real = table(moto_url, table_name)
    lease = real.acquire(KEY, Holder("alice", "a", 1, "r1"), ttl=0.9)
    flaky = LockTable(table_name, client=Flaky(ddb(moto_url), update_item=["InternalServerError"]))
    beat = Heartbeat(flaky, lease, ttl=0.9).start()
    try:
        deadline = time.monotonic() + 20
        while beat.lease.expires_at == lease.expires_at:  # the second beat renews
            assert time.monotonic() < deadline, "no renewal after a failed one"
            time.sleep(0.05)
        assert beat.error is not None and "InternalServerError" in str(beat.error)
        assert not beat.lost.is_set()
    finally:
        beat.stop()
    assert real.release(beat.lease)


def test_acquire_retries_when_the_holder_released_meanwhile(
    aws_env: dict, moto_url: str, table_name: str
) -> None:
    real = table(moto_url, table_name)
    real.acquire(KEY, Holder("alice", "a", 1, "r1"), ttl=30)
    racing = LockTable(table_name, client=Flaky(ddb(moto_url), get_item=["race-release"]))
    racing._ready = True
    won = racing.acquire(KEY, Holder("bob", "b", 2, "r2"), ttl=30)
    assert real.current(KEY).holder.run_id == "r2"
    assert real.release(won)


def test_errors_other_than_the_expected_ones_surface(
    aws_env: dict, moto_url: str, table_name: str
) -> None:
    from botocore.exceptions import ClientError

    broken = LockTable(
        table_name, client=Flaky(ddb(moto_url), describe_table=["AccessDeniedException"])
    )
    with pytest.raises(ClientError, match="AccessDeniedException"):
        broken.ensure()
    locks = table(moto_url, table_name)
    lease = locks.acquire(KEY, Holder("alice", "a", 1, "r1"), ttl=30)
    for operation in ("update_item", "delete_item", "put_item"):
        flaky = LockTable(
            table_name, client=Flaky(ddb(moto_url), **{operation: ["ThrottlingException"]})
        )
        flaky._ready = True
        with pytest.raises(ClientError, match="ThrottlingException"):
            {
                "update_item": lambda f=flaky: f.renew(lease),
                "delete_item": lambda f=flaky: f.release(lease),
                "put_item": lambda f=flaky: f.acquire(KEY, Holder("bob", "b", 2, "r2")),
            }[operation]()
    assert locks.release(lease)
