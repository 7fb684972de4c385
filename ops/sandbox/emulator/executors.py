"""How a command runs: for real in a container, or simulated from seeded distributions.

Synthetic hosts compute their whole outcome up front (pickup delay, duration,
exit code, output size) from a generator seeded by the sandbox seed, the
instance and the command, so a run replays exactly; the scheduler then only
needs two timer events per invocation, which is what lets ten thousand of
them live in one process.
"""

from __future__ import annotations

import random
import shlex
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

SCRIPT_DIR = "/var/lib/fleetops-ssm"  # the agent's orchestration folder, root only
BOOT_ID = "/run/fleetops/boot-id"  # a sandbox host's own boot id, written at each start
LINUX_REBOOT = 194  # the agent's RebootExitCode on Linux: reboot, then run the script again
WINDOWS_REBOOT = 3010  # the same on Windows; on Linux `exit 3010` is status 194 (8 bits)
KILLED = 137  # what the agent reports for a script stopped by timeout or cancel


def reboot_code(platform_type: str) -> int:
    """The exit code that asks the agent for a reboot on this platform (appconfig)."""
    return WINDOWS_REBOOT if platform_type == "Windows" else LINUX_REBOOT


@dataclass(frozen=True)
class Dist:
    """A serialisable distribution: fixed, uniform(a, b), or lognormal(mu=a, sigma=b) up to cap."""

    kind: str = "fixed"
    a: float = 0.0
    b: float = 0.0
    cap: float = 1e9

    @classmethod
    def fixed(cls, value: float) -> Dist:
        return cls("fixed", value, value)

    @classmethod
    def uniform(cls, low: float, high: float) -> Dist:
        return cls("uniform", low, high)

    @classmethod
    def lognormal(cls, mu: float, sigma: float, cap: float = 1e9) -> Dist:
        return cls("lognormal", mu, sigma, cap)

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "lognormal":
            return min(self.cap, rng.lognormvariate(self.a, self.b))
        raise ValueError(f"unknown distribution {self.kind!r}")

    @classmethod
    def from_json(cls, data: Any) -> Dist:
        if isinstance(data, int | float):
            return cls.fixed(float(data))
        return cls(
            str(data["kind"]), float(data["a"]), float(data["b"]), float(data.get("cap", 1e9))
        )


@dataclass(frozen=True)
class SyntheticProfile:
    """Seeded behaviour of a simulated host for commands it cannot interpret."""

    pickup_seconds: Dist = field(default_factory=lambda: Dist.uniform(0.05, 0.3))
    duration_seconds: Dist = field(default_factory=lambda: Dist.uniform(0.1, 0.8))
    failure_rate: float = 0.0
    failure_exit_code: int = 1
    output_chars: Dist = field(default_factory=lambda: Dist.uniform(20, 400))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SyntheticProfile:
        if not data:
            return cls()
        return cls(
            pickup_seconds=Dist.from_json(data.get("pickup_seconds", asdict(cls().pickup_seconds))),
            duration_seconds=Dist.from_json(
                data.get("duration_seconds", asdict(cls().duration_seconds))
            ),
            failure_rate=float(data.get("failure_rate", 0.0)),
            failure_exit_code=int(data.get("failure_exit_code", 1)),
            output_chars=Dist.from_json(data.get("output_chars", asdict(cls().output_chars))),
        )


@dataclass
class Outcome:
    """What one run of a script does; `stdout_fill` > 0 means generated filler of that length."""

    pickup: float
    duration: float
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    stdout_fill: int = 0


def filler(instance_id: str, command_id: str, size: int) -> str:
    """Deterministic output of exactly `size` characters, generated only when read."""
    if size <= 0:
        return ""
    line = f"{instance_id} {command_id[:8]} synthetic output line "
    parts: list[str] = []
    total = 0
    index = 0
    while total < size:
        text = f"{line}{index:06d}\n"
        parts.append(text)
        total += len(text)
        index += 1
    return "".join(parts)[:size]


def _interpret(lines: list[str], hostname: str, rerun: bool) -> Outcome | None:
    """Run the tiny shell subset synthetic hosts understand; None if any line is outside it.

    `exit N` is status N mod 256, as in sh: synthetic hosts are Linux like the
    container hosts, so `exit 3010` is 194, the Linux agent's reboot code.
    After a reboot (`rerun`), 194 counts as `exit 0`, as a real script that
    checks its own marker file would.
    """
    out: list[str] = []
    err: list[str] = []
    duration = 0.02
    code = 0
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            return None
        verb, args = words[0], words[1:]
        if verb == "sleep" and len(args) == 1:
            try:
                duration += float(args[0])
            except ValueError:
                return None
        elif verb == "exit" and len(args) <= 1:
            try:
                code = (int(args[0]) if args else 0) & 0xFF
            except ValueError:
                return None
            if rerun and code == LINUX_REBOOT:
                code = 0
            break
        elif verb == "echo":
            if args and args[-1] == ">&2":
                err.append(" ".join(args[:-1]) + "\n")
            else:
                out.append(" ".join(args) + "\n")
        elif verb == "hostname" and not args:
            out.append(hostname + "\n")
        elif verb == "seq" and len(args) == 1 and args[0].isdigit():
            out.append("".join(f"{i}\n" for i in range(1, int(args[0]) + 1)))
        elif verb in ("true", ":") and not args:
            continue
        elif verb == "false" and not args:
            code = 1
            break
        else:
            return None
    return Outcome(0.0, duration, code, "".join(out), "".join(err))


def synthetic_outcome(
    *,
    seed: int,
    instance_id: str,
    command_id: str,
    attempt: int,
    commands: list[str],
    hostname: str,
    profile: SyntheticProfile,
) -> Outcome:
    rng = random.Random(f"{seed}:{instance_id}:{command_id}:{attempt}")
    pickup = max(0.0, profile.pickup_seconds.sample(rng))
    lines = [part for command in commands for part in command.splitlines()]
    interpreted = _interpret(lines, hostname, rerun=attempt > 0)
    if interpreted is not None:
        interpreted.pickup = pickup
        return interpreted
    duration = max(0.0, profile.duration_seconds.sample(rng))
    failed = rng.random() < profile.failure_rate
    size = max(0, int(profile.output_chars.sample(rng)))
    return Outcome(
        pickup,
        duration,
        profile.failure_exit_code if failed else 0,
        stderr="synthetic failure\n" if failed else "",
        stdout_fill=size,
    )


class ContainerExecutor:
    """Runs scripts with `docker exec`, each in its own session so a kill reaches every child."""

    def __init__(self, docker: str = "docker") -> None:
        self._docker = docker
        self._lock = threading.Lock()
        self._running: dict[str, tuple[subprocess.Popen[bytes], str, str]] = {}

    def run(
        self,
        key: str,
        container: str,
        commands: list[str],
        working_directory: str,
        timeout: float,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, str, str, bool]:
        """Run to completion or timeout; returns (exit code, stdout, stderr, timed_out).

        `env` is what the SSM agent puts in a script's environment
        (AWS_SSM_INSTANCE_ID, AWS_SSM_REGION_NAME), so a script can tell which
        instance it runs on without the instance metadata service.
        """
        pid_file = f"/tmp/.fleetops-ssm-{key}.pid"
        script = "\n".join(commands)
        inner = f"echo $$ > {shlex.quote(pid_file)}\n"
        if working_directory:
            inner += f"cd -- {shlex.quote(working_directory)} || exit 1\n"
        inner += script
        # As the agent does, the script runs from a file only root can read
        # (_script.sh), never from an argument list `ps` shows to every user.
        path = f"{SCRIPT_DIR}/{key}/_script.sh"
        start = (
            f"umask 077 && mkdir -p {shlex.quote(path.rsplit('/', 1)[0])} && "
            f"cat > {shlex.quote(path)} && exec sh {shlex.quote(path)}"
        )
        argv = [self._docker, "exec", "-i"]
        for name, value in (env or {}).items():
            argv += ["-e", f"{name}={value}"]
        argv += [container, "setsid", "-w", "sh", "-c", start]
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        with self._lock:
            self._running[key] = (proc, container, pid_file)
        timed_out = False
        try:
            try:
                out, err = proc.communicate(inner.encode("utf-8"), timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                self._kill_inside(container, pid_file)
                proc.kill()
                out, err = proc.communicate()
        finally:
            with self._lock:
                self._running.pop(key, None)
        code = KILLED if timed_out else proc.returncode
        if code < 0:
            code = KILLED
        return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), timed_out

    def cancel(self, key: str) -> bool:
        with self._lock:
            entry = self._running.get(key)
        if entry is None:
            return False
        proc, container, pid_file = entry
        self._kill_inside(container, pid_file)
        proc.kill()
        return True

    def _kill_inside(self, container: str, pid_file: str) -> None:
        # dash's kill takes no "--", so the group is named as "-PID" right after the signal
        quoted = shlex.quote(pid_file)
        script = (
            f'pid=$(cat {quoted} 2>/dev/null) && [ -n "$pid" ] && '
            f'(kill -9 "-$pid" 2>/dev/null || kill -9 "$pid"); rm -f {quoted}'
        )
        subprocess.run(
            [self._docker, "exec", container, "sh", "-c", script],
            capture_output=True,
            timeout=30,
            check=False,
        )

    def restart(self, container: str, ready_timeout: float = 60.0) -> bool:
        """Restart, then wait until the container has booted again: the agent is back only then.

        A restarted container keeps /run, where a sandbox host keeps its boot id,
        and `docker exec` works as soon as the container runs, before its
        entrypoint has written the new id. A real agent starts late in boot, long
        after the kernel's boot id changed; so where the host keeps one, the agent
        is back once it reads differently, and elsewhere once `docker exec` works.
        """
        before = self._boot_id(container)
        done = subprocess.run(
            [self._docker, "restart", "-t", "1", container],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            return False
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            now = self._boot_id(container)
            if now is not None and (not before or (now and now != before)):
                return True
            time.sleep(0.2)
        return False

    def _boot_id(self, container: str) -> str | None:
        """The host's boot id ("" where it keeps none); None while `docker exec` fails."""
        probe = subprocess.run(
            [self._docker, "exec", container, "sh", "-c", f"cat {BOOT_ID} 2>/dev/null; true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return probe.stdout.strip() if probe.returncode == 0 else None
