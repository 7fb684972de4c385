"""reboot_and_wait's refusals, on a fake SSM client (the real path is in integration)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import WaiterError

from ops.transports import reboot


class FakeWaiter:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def wait(self, **_kwargs: Any) -> None:
        if self.fail:
            raise WaiterError("CommandExecuted", "failed", {"Status": "Failed"})


class FakeSsm:
    """Answers every command with the same boot id: a host that never rebooted."""

    def __init__(self, *, fail_commands: bool = False, ping: str = "Online") -> None:
        self.fail_commands = fail_commands
        self.ping = ping
        self.sent: list[str] = []

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        self.sent.append(kwargs["Parameters"]["commands"][0])
        return {"Command": {"CommandId": f"c-{len(self.sent)}"}}

    def get_waiter(self, _name: str) -> FakeWaiter:
        return FakeWaiter(self.fail_commands)

    def get_command_invocation(self, **_kwargs: Any) -> dict[str, Any]:
        return {"StandardOutputContent": "same-boot\n"}

    def describe_instance_information(self, **_kwargs: Any) -> dict[str, Any]:
        return {"InstanceInformationList": [{"PingStatus": self.ping}]}


def test_a_boot_id_that_did_not_change_is_a_failed_reboot() -> None:
    ssm = FakeSsm()
    with pytest.raises(reboot.RebootFailed, match="boot id did not change"):
        reboot.reboot_and_wait(ssm, "i-1", timeout=5, poll=1)
    assert "exit 194" in ssm.sent[1]


def test_a_failed_reboot_command_is_reported() -> None:
    with pytest.raises(reboot.RebootFailed, match="read boot id ended Failed"):
        reboot.reboot_and_wait(FakeSsm(fail_commands=True), "i-1", timeout=5, poll=1)


def test_an_agent_that_stays_offline_is_reported() -> None:
    with pytest.raises(reboot.RebootFailed, match="agent is ConnectionLost"):
        reboot.wait_online(FakeSsm(ping="ConnectionLost"), "i-1", timeout=0, poll=0.01)


def test_the_script_finishes_on_the_agents_rerun() -> None:
    script = reboot.reboot_script("abc")
    assert script.index('rm -f "/var/lib/fleetops/reboot-abc"; exit 0') < script.index("exit 194")
