"""The boto3 SSM client the emulator tests share, plus the few waits every test needs."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

# how long reads may lag behind a send: the emulator's largest lag, with room to spare
CATCH_UP = 5.0


def _lagging(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    return code in ("InvalidCommandId", "InvocationDoesNotExist")


class Ssm:
    """A boto3 SSM client aimed at the emulator, plus the few waits every test needs."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def shell(self, instance_ids: list[str], *commands: str, **extra: Any) -> str:
        reply = self.client.send_command(
            InstanceIds=instance_ids,
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": list(commands)},
            **extra,
        )
        return str(reply["Command"]["CommandId"])

    def command(self, command_id: str) -> dict[str, Any]:
        """The command once ListCommands sees it (it lags a little behind SendCommand)."""
        deadline = time.monotonic() + CATCH_UP
        while True:
            try:
                result: dict[str, Any] = self.client.list_commands(CommandId=command_id)[
                    "Commands"
                ][0]
                return result
            except ClientError as exc:
                if not _lagging(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def wait(self, command_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll ListCommands until every invocation is terminal; return the command."""
        deadline = time.monotonic() + timeout
        while True:
            command = self.command(command_id)
            resolved = command["TargetCount"] > 0 or command["StatusDetails"] == "NoInstancesInTag"
            done = resolved and command["CompletedCount"] == command["TargetCount"]
            if done and command["Status"] not in ("Pending", "InProgress", "Cancelling"):
                return command
            if time.monotonic() > deadline:
                raise AssertionError(f"command {command_id} still {command['Status']}: {command}")
            time.sleep(0.1)

    def invocations(self, command_id: str, details: bool = False) -> dict[str, dict[str, Any]]:
        """Every invocation of the command, once the listing has caught up with its
        TargetCount (a fresh invocation may be missing from a listing for a while)."""
        deadline = time.monotonic() + CATCH_UP
        while True:
            expected = self.command(command_id)["TargetCount"]
            pages = self.client.get_paginator("list_command_invocations").paginate(
                CommandId=command_id, Details=details
            )
            found = {inv["InstanceId"]: inv for page in pages for inv in page["CommandInvocations"]}
            if (expected and len(found) >= expected) or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def get(self, command_id: str, instance_id: str) -> dict[str, Any]:
        """GetCommandInvocation, waiting out InvocationDoesNotExist just after the send."""
        deadline = time.monotonic() + CATCH_UP
        while True:
            try:
                result: dict[str, Any] = self.client.get_command_invocation(
                    CommandId=command_id, InstanceId=instance_id
                )
                return result
            except ClientError as exc:
                if not _lagging(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def ping(self, instance_id: str) -> str:
        reply = self.client.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
        )
        rows = reply["InstanceInformationList"]
        return str(rows[0]["PingStatus"]) if rows else "absent"

    def pings_until_success(self, command_id: str, instance_id: str, timeout: float) -> list[str]:
        """The agent's PingStatus, read every 0.1 s until the invocation succeeds (or the
        timeout passes): a reboot shows as ConnectionLost between two Onlines."""
        pings = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pings.append(self.ping(instance_id))
            if self.get(command_id, instance_id)["Status"] == "Success":
                break
            time.sleep(0.1)
        return pings
