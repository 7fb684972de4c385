"""How the fan-out engine reads results: ListCommandInvocations(Details=True) only when
it pays, against an in-memory SSM whose reads can lag behind a send."""

from __future__ import annotations

import time
from typing import Any

from fanout_fakes import FakeSsm, _error

from ops.engine.budget import FailureBudget, parse_concurrency, parse_max_errors
from ops.engine.fanout import FanOut
from ops.fleet.discovery import Host
from ops.transports.ssm import CommandSpec, HostResult, SsmTransport


def _run(ssm: FakeSsm, hosts: list[Host], **options: float) -> list[tuple[float, HostResult]]:
    """Each result with the seconds since the run began when it was reported."""
    fanout = FanOut(SsmTransport(ssm, max_retry_delay=60), CommandSpec(["echo ok"]),
                    poll_min=0.02, poll_max=0.2, **options)  # fmt: skip
    started = time.monotonic()
    results: list[tuple[float, HostResult]] = []
    budget = FailureBudget(len(hosts), parse_concurrency("100%"), parse_max_errors("100%"))
    fanout.run_client_side(hosts, budget, lambda r: results.append((time.monotonic() - started, r)))
    assert sorted(r.instance_id for _, r in results) == sorted(h.instance_id for h in hosts)
    assert {r.status for _, r in results} == {"Success"}
    return results


def test_a_batch_whose_hosts_finish_together_is_listed_once() -> None:
    ssm = FakeSsm()
    hosts = ssm.add(200, delay=0.3)
    _run(ssm, hosts)
    assert ssm.calls["SendCommand"] == 4
    # one Details listing per command: none while its hosts run, none twice
    assert ssm.calls["ListCommandInvocations"] == 4


def test_hosts_finishing_one_by_one_still_stream() -> None:
    ssm = FakeSsm()
    hosts = [*ssm.add(1, delay=0.1), *ssm.add(1, delay=0.3), *ssm.add(1, delay=3.0)]
    results = _run(ssm, hosts, linger=0.2, linger_max=0.4)
    when = {r.instance_id: at for at, r in results}
    # the first two are reported long before the last host ends
    assert when[hosts[0].instance_id] < 1.5 and when[hosts[1].instance_id] < 1.5
    assert when[hosts[2].instance_id] >= 3.0


def test_partial_listings_come_at_doubling_gaps() -> None:
    ssm = FakeSsm()
    # one command whose 20 hosts end one every 0.1 s, from 0.1 s to 2.0 s
    hosts = [host for step in range(1, 21) for host in ssm.add(1, delay=step / 10)]
    results = _run(ssm, hosts, linger=0.1, linger_max=0.8)
    listings = ssm.calls["ListCommandInvocations"]
    # gaps of 0.1, 0.2, 0.4, 0.8, 0.8 s, then the last: a handful, not one per host
    assert 3 <= listings <= 8, listings
    assert min(at for at, _ in results) < 1.0  # the first results did not wait for the last


class LaggingSsm(FakeSsm):
    """Reads lag behind SendCommand as SSM's do: for `lag` seconds a new command is not
    in ListCommands and ListCommandInvocations answers InvalidCommandId for it."""

    def __init__(self, lag: float = 0.0) -> None:
        super().__init__()
        self.lag = lag
        self.unreadable = 0  # ListCommandInvocations calls answered InvalidCommandId

    def _young(self, command_id: str) -> bool:
        return time.time() - self.requested[command_id] < self.lag

    def list_commands(self, **kwargs: Any) -> dict[str, Any]:
        page = super().list_commands(**kwargs)
        page["Commands"] = [c for c in page["Commands"] if not self._young(c["CommandId"])]
        return page

    def list_command_invocations(self, **kwargs: Any) -> dict[str, Any]:
        if self._young(kwargs["CommandId"]):
            self.calls["ListCommandInvocations"] += 1
            self.unreadable += 1
            raise _error("InvalidCommandId")
        return super().list_command_invocations(**kwargs)


def test_a_command_not_listed_yet_is_not_asked_for() -> None:
    ssm = LaggingSsm(lag=0.5)
    hosts = ssm.add(100, delay=0.05)
    _run(ssm, hosts, linger=1.0)
    assert ssm.unreadable == 0
    assert ssm.calls["ListCommandInvocations"] == 2


def test_a_command_listcommands_lags_behind_is_asked_for_after_linger() -> None:
    ssm = LaggingSsm(lag=1.0)
    hosts = ssm.add(150, delay=0.05)  # three commands: ListCommands is paged, not asked by id
    results = _run(ssm, hosts, linger=0.3)
    # asked for directly once missing for `linger` (still unreadable then), and collected
    assert ssm.unreadable >= 1
    assert min(at for at, _ in results) >= 1.0
