"""What `ops sandbox up` was asked for, validated before anything starts."""

from __future__ import annotations

from dataclasses import dataclass, field

from ops.errors import BadInput

PLATFORMS = ("debian", "al2", "al2023")
MAX_HOSTS = 32
MAX_SYNTHETIC = 20_000


@dataclass(frozen=True)
class HostPlan:
    name: str
    platform: str
    role: str


@dataclass(frozen=True)
class SandboxSpec:
    platforms: dict[str, int] = field(default_factory=lambda: {"debian": 3})
    synthetic: int = 0
    seed: int = 0

    @property
    def host_count(self) -> int:
        return sum(self.platforms.values())

    def hosts(self) -> list[HostPlan]:
        """Name and role every container host; about two thirds serve web traffic.

        Platforms are interleaved so that web and worker both get each platform.
        """
        order: list[str] = []
        remaining = dict(self.platforms)
        while any(remaining.values()):
            for platform in PLATFORMS:
                if remaining.get(platform, 0) > 0:
                    order.append(platform)
                    remaining[platform] -= 1
        web_count = max(1, round(len(order) * 2 / 3)) if order else 0
        plans = []
        counters = {"web": 0, "worker": 0}
        for index, platform in enumerate(order):
            role = "web" if index < web_count else "worker"
            counters[role] += 1
            plans.append(HostPlan(name=f"{role}-{counters[role]}", platform=platform, role=role))
        return plans


def parse_platforms(text: str) -> dict[str, int]:
    """`debian:4,al2:1,al2023:1` -> counts; a bare name means one host."""
    counts: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, raw = part.partition(":")
        name = name.strip().lower()
        if name not in PLATFORMS:
            raise BadInput(
                f"unknown platform {name!r} in --platforms; choose from {', '.join(PLATFORMS)}"
            )
        try:
            count = int(raw) if raw else 1
        except ValueError:
            raise BadInput(f"--platforms: {part!r} needs a whole count, e.g. {name}:2") from None
        if count < 0:
            raise BadInput(f"--platforms: the count for {name} cannot be negative")
        counts[name] = counts.get(name, 0) + count
    return {name: n for name, n in counts.items() if n > 0}


def build_spec(hosts: int | None, platforms: str | None, synthetic: int, seed: int) -> SandboxSpec:
    """Reconcile --hosts and --platforms; refuse anything that cannot be brought up whole."""
    if hosts is not None and hosts < 0:
        raise BadInput("--hosts cannot be negative")
    if synthetic < 0:
        raise BadInput("--synthetic cannot be negative")
    if synthetic > MAX_SYNTHETIC:
        raise BadInput(f"--synthetic is limited to {MAX_SYNTHETIC} instances on one machine")
    if platforms:
        counts = parse_platforms(platforms)
        total = sum(counts.values())
        if hosts is not None and hosts != total:
            raise BadInput(
                f"--hosts {hosts} disagrees with --platforms {platforms} ({total} hosts); "
                "give one or make them match"
            )
    else:
        counts = {"debian": 3 if hosts is None else hosts}
        counts = {k: v for k, v in counts.items() if v > 0}
    if sum(counts.values()) > MAX_HOSTS:
        raise BadInput(f"at most {MAX_HOSTS} container hosts; use --synthetic for scale")
    if not counts and synthetic == 0:
        raise BadInput("nothing to bring up: ask for --hosts or --synthetic instances")
    return SandboxSpec(platforms=counts, synthetic=synthetic, seed=seed)
