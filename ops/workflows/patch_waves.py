"""Waves of a patch night: a canary first, then waves that keep the service up.

A host being patched is out of service (drained, maybe rebooting), so a wave
may never take more than the allowed share of any Role or availability zone
out at once: `max_unavailable` is a count, or a percentage of each group's
size (rounded up, and at least one, so every group can make progress). `wave`
caps a wave's size on top of that. The canary wave obeys the same limits: a
canary that would breach them is refused rather than quietly shrunk.

Pure functions of the hosts' groups, so they can be tested exhaustively.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ops.engine.budget import Amount
from ops.errors import BadInput

GROUP_KEYS = ("role", "az")


@dataclass(frozen=True)
class WaveHost:
    instance_id: str
    role: str
    az: str

    def groups(self) -> list[tuple[str, str]]:
        return [("role", self.role), ("az", self.az)]


def group_limits(hosts: Sequence[WaveHost], max_unavailable: Amount) -> dict[tuple[str, str], int]:
    """How many hosts of each Role and each AZ may be out at once."""
    sizes = Counter(group for host in hosts for group in host.groups())
    return {g: max_unavailable.resolve(size, at_least_one=True) for g, size in sizes.items()}


def _fill(
    pending: list[WaveHost], limits: dict[tuple[str, str], int], size: int
) -> tuple[list[WaveHost], list[WaveHost]]:
    """Take hosts in order while every group stays within its limit; (wave, left over)."""
    counts: Counter[tuple[str, str]] = Counter()
    wave: list[WaveHost] = []
    rest: list[WaveHost] = []
    for host in pending:
        fits = len(wave) < size and all(counts[g] < limits[g] for g in host.groups())
        if fits:
            wave.append(host)
            counts.update(host.groups())
        else:
            rest.append(host)
    return wave, rest


def plan_waves(
    hosts: Sequence[WaveHost],
    *,
    canary: int,
    wave: Amount | None,
    max_unavailable: Amount,
) -> list[list[str]]:
    """Instance ids wave by wave: the canary wave (if `canary` > 0) and then the rest.

    Hosts keep their given order inside the constraints (callers sort them, so
    a plan is the same every time for the same fleet).
    """
    if canary < 0:
        raise BadInput(f"--canary must be 0 or more, got {canary}")
    if canary > len(hosts):
        raise BadInput(
            f"--canary {canary} is larger than the {len(hosts)} hosts to patch; "
            f"give at most {len(hosts)}"
        )
    if wave is not None and wave.value < 1:
        raise BadInput(f"--wave must be at least 1, got {wave}")
    limits = group_limits(hosts, max_unavailable)
    pending = list(hosts)
    waves: list[list[str]] = []
    if canary:
        first, pending = _fill(pending, limits, canary)
        if len(first) < canary:
            raise BadInput(
                f"--canary {canary} would take more hosts of one Role or AZ out at once than "
                f"--max-unavailable {max_unavailable} allows; lower --canary or raise "
                "--max-unavailable"
            )
        waves.append([h.instance_id for h in first])
    rest_total = len(pending)
    size = wave.resolve(rest_total, at_least_one=True) if wave is not None else rest_total
    while pending:
        batch, pending = _fill(pending, limits, size)
        waves.append([h.instance_id for h in batch])  # never empty: every limit is >= 1
    return waves
