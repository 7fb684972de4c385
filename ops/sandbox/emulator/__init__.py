"""A local stand-in for SSM Run Command that actually runs commands.

moto's Run Command marks every invocation Success at once and runs nothing,
which hides every behaviour a fan-out engine has to cope with: pickup delay,
throttling, agents that drop off, timeouts, reboots. This package serves the
SSM JSON protocol on loopback, runs commands in containers or simulates them
with seeded timers, and forwards every operation it does not implement to
moto's server unchanged.
"""

from __future__ import annotations

from ops.sandbox.emulator.executors import Dist, SyntheticProfile
from ops.sandbox.emulator.throttle import DEFAULT_RATES

__all__ = ["DEFAULT_RATES", "Dist", "SyntheticProfile"]
