"""The reboot step and the command wait of `ops patch run`, on a fake SSM client
(the real path, real reboots included, is in tests/integration/patch)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from botocore.exceptions import WaiterError

from ops.transports.reboot import RebootFailed
from ops.workflows.patch_run import (
    Clients,
    HostEntry,
    PatchRun,
    StepFailed,
    Timing,
    reboot_script,
    wait_command,
)


class Waiter:
    """Ends as told after the given number of attempts, recording each WaiterConfig."""

    def __init__(self, outcomes: list[str]) -> None:
        self.outcomes = outcomes
        self.configs: list[dict[str, Any]] = []

    def wait(self, **kwargs: Any) -> None:
        self.configs.append(kwargs["WaiterConfig"])
        outcome = self.outcomes.pop(0)
        if outcome == "slow":
            raise WaiterError("CommandExecuted", "Max attempts exceeded", {"Status": "InProgress"})
        if outcome == "failed":
            raise WaiterError(
                "CommandExecuted",
                "Waiter encountered a terminal failure state: Failed",
                {"Status": "Failed"},
            )


class Ssm:
    def __init__(self, waiter: Waiter, stdout: str = "") -> None:
        self.waiter = waiter
        self.stdout = stdout
        self.sent: list[str] = []
        self.pings = 0

    def get_waiter(self, _name: str) -> Waiter:
        return self.waiter

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        self.sent.append(kwargs["Parameters"]["commands"][0])
        return {"Command": {"CommandId": f"c-{len(self.sent)}"}}

    def get_command_invocation(self, **_kwargs: Any) -> dict[str, Any]:
        return {"Status": "Success", "StandardOutputContent": self.stdout}

    def describe_instance_information(self, **_kwargs: Any) -> dict[str, Any]:
        self.pings += 1
        return {"InstanceInformationList": [{"PingStatus": "Online"}]}


def test_quick_first_reads_then_the_poll() -> None:
    waiter = Waiter(["slow", "done"])
    wait_command(Ssm(waiter), "c-1", "i-1", Timing(poll=1.0), first_delay=0.25)
    assert waiter.configs == [{"Delay": 0.25, "MaxAttempts": 5}, {"Delay": 1.0, "MaxAttempts": 900}]


def test_a_command_that_fails_in_the_quick_reads_is_not_waited_for_again() -> None:
    waiter = Waiter(["failed"])
    wait_command(Ssm(waiter), "c-1", "i-1", Timing(poll=1.0), first_delay=0.25)
    assert len(waiter.configs) == 1


def test_no_quick_reads_when_the_wave_is_large_and_a_timeout_bounds_the_attempts() -> None:
    waiter = Waiter(["slow"])
    wait_command(Ssm(waiter), "c-1", "i-1", Timing(poll=2.0), first_delay=2.0, timeout=60)
    assert waiter.configs == [{"Delay": 2.0, "MaxAttempts": 30}]


def test_the_first_delay_follows_the_wave_size() -> None:
    run = PatchRun(Clients(None, None, None), {}, Timing(poll=1.0))
    assert run.first_delay == 0.2
    run.in_flight = 4
    assert run.first_delay == 0.5
    run.in_flight = 50  # never slower than the poll
    assert run.first_delay == 1.0


def test_the_reboot_script_is_valid_shell_with_the_boot_id_quoted() -> None:
    script = reboot_script("ab12", "x'; reboot; '")
    done = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "'x'\"'\"'; reboot; '\"'\"''" in script


def _reboot(stdout: str, boot_before: str = "boot-1") -> tuple[dict[str, Any], Ssm]:
    ssm = Ssm(Waiter(["done"]), stdout)
    run = PatchRun(Clients(ssm, None, None), {}, Timing(poll=1.0))
    entry = HostEntry("i-1", "web-1", "debian-12", [])
    return run.reboot(entry, {"precheck": {"boot_id": boot_before}}), ssm


@pytest.mark.parametrize(
    ("stdout", "rebooted"),
    [
        ("@@outcome\nno\n@@boot\nboot-1\n", False),
        ("@@outcome\nalready\n@@boot\nboot-2\n", True),
        ("@@outcome\nrebooted\n@@boot\nboot-2\n", True),
    ],
)
def test_the_reboot_step_reads_one_command(stdout: str, rebooted: bool) -> None:
    found, ssm = _reboot(stdout)
    assert found["rebooted"] is rebooted and found["boot_before"] == "boot-1"
    assert len(ssm.sent) == 1 and "boot-1" in ssm.sent[0]
    assert ssm.pings == (2 if "rebooted" in stdout else 1)


def test_a_reboot_that_left_the_boot_id_as_it_was_fails() -> None:
    with pytest.raises(RebootFailed, match="did not change"):
        _reboot("@@outcome\nrebooted\n@@boot\nboot-1\n")


def test_a_boot_id_that_is_no_boot_id_is_refused_before_any_command() -> None:
    ssm = Ssm(Waiter([]))
    run = PatchRun(Clients(ssm, None, None), {}, Timing())
    entry = HostEntry("i-1", "web-1", "debian-12", [])
    with pytest.raises(StepFailed, match="boot id"):
        run.reboot(entry, {"precheck": {"boot_id": "$(reboot)"}})
    assert ssm.sent == []
