"""Reboot a host through SSM Run Command and wait until it is really back.

"Back" means three things, each checked: the reboot command reached Success
(the agent ran the script again after the reboot, as exit code 194 asks), the
agent reports Online, and the host's boot id changed. The script is
idempotent by a marker file kept across the reboot, so the agent's rerun
finishes instead of rebooting again. The boot id is the kernel's
(/proc/sys/kernel/random/boot_id), or /run/fleetops/boot-id where a
sandbox container host keeps its own (containers share the machine's kernel).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import WaiterError

from ops.errors import OpsError

DOCUMENT = "AWS-RunShellScript"
BOOT_ID_COMMAND = "cat /run/fleetops/boot-id 2>/dev/null || cat /proc/sys/kernel/random/boot_id"


class RebootFailed(OpsError):
    """The host did not come back rebooted within the time allowed."""


@dataclass(frozen=True)
class Rebooted:
    instance_id: str
    boot_before: str
    boot_after: str
    seconds: float


def reboot_script(token: str) -> str:
    marker = f"/var/lib/fleetops/reboot-{token}"
    return (
        f'if [ -e "{marker}" ]; then rm -f "{marker}"; exit 0; fi\n'
        f'mkdir -p /var/lib/fleetops && touch "{marker}" && exit 194\n'
    )


def _run(ssm: Any, instance_id: str, script: str, comment: str, timeout: float, poll: float) -> Any:
    command = ssm.send_command(
        InstanceIds=[instance_id],
        DocumentName=DOCUMENT,
        Parameters={"commands": [script]},
        Comment=comment[:100],
    )["Command"]["CommandId"]
    try:
        ssm.get_waiter("command_executed").wait(
            CommandId=command,
            InstanceId=instance_id,
            WaiterConfig={"Delay": max(1, int(poll)), "MaxAttempts": max(1, int(timeout / poll))},
        )
    except WaiterError as exc:
        reply = getattr(exc, "last_response", {}) or {}
        raise RebootFailed(
            f"{instance_id}: {comment} ended {reply.get('Status', 'unknown')}: "
            f"{str(reply.get('StandardErrorContent', ''))[-200:]}"
        ) from None
    return ssm.get_command_invocation(CommandId=command, InstanceId=instance_id)


def boot_id(ssm: Any, instance_id: str, *, timeout: float = 120, poll: float = 1) -> str:
    reply = _run(ssm, instance_id, BOOT_ID_COMMAND, "ops: read boot id", timeout, poll)
    return str(reply["StandardOutputContent"]).strip()


def wait_online(ssm: Any, instance_id: str, *, timeout: float = 300, poll: float = 1) -> None:
    deadline = time.monotonic() + timeout
    status = "unknown"
    while True:
        info = ssm.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
        )["InstanceInformationList"]
        status = info[0]["PingStatus"] if info else "not registered"
        if status == "Online":
            return
        if time.monotonic() > deadline:
            raise RebootFailed(f"{instance_id}: the SSM agent is {status} after {timeout:.0f} s")
        time.sleep(poll)


def reboot_and_wait(
    ssm: Any, instance_id: str, *, timeout: float = 600, poll: float = 2
) -> Rebooted:
    """Reboot one host and return once it is back with a new boot id."""
    started = time.monotonic()
    before = boot_id(ssm, instance_id, poll=poll)
    _run(ssm, instance_id, reboot_script(uuid.uuid4().hex), "ops: reboot", timeout, poll)
    wait_online(ssm, instance_id, timeout=timeout, poll=poll)
    after = boot_id(ssm, instance_id, poll=poll)
    if not after or after == before:
        raise RebootFailed(f"{instance_id}: the boot id did not change ({before!r}): no reboot")
    return Rebooted(instance_id, before, after, round(time.monotonic() - started, 3))
