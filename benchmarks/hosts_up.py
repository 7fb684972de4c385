"""How long a sandbox fleet takes to come up with warm images.

Starts N container hosts (a Debian majority plus one of each Amazon Linux
stand-in) several times, and reports the median wall time until every host
answers an SSH login, next to the cost of a reboot and of the teardown. The
image check is timed separately: a warm check must stay near zero, or every
test session pays for it.

    python benchmarks/hosts_up.py [--hosts 6] [--runs 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ops.sandbox.hosts import HostSpec, free_ports, reboot_host, start_hosts, stop_hosts
from ops.sandbox.images import ensure_images


def fleet_specs(count: int) -> list[HostSpec]:
    platforms = ["al2", "al2023"] + ["debian"] * max(0, count - 2)
    ports = free_ports(2 * count)
    return [
        HostSpec(f"bench{i}", platform, "web", ports[2 * i], ports[2 * i + 1])
        for i, platform in enumerate(platforms[:count])
    ]


def one_run(count: int, label: str, key_dir: Path) -> dict[str, float]:
    specs = fleet_specs(count)
    stop_hosts(label)
    started = time.monotonic()
    hosts = start_hosts(specs, key_dir=key_dir, label=label, build=False)
    up = time.monotonic() - started
    started = time.monotonic()
    reboot_host(hosts[0].container, key_dir=key_dir)
    reboot = time.monotonic() - started
    started = time.monotonic()
    stop_hosts(label)
    stop = time.monotonic() - started
    ready = [h.ready_seconds for h in hosts]
    return {
        "all_up_s": up,
        "first_ready_s": min(ready),
        "last_ready_s": max(ready),
        "reboot_one_s": reboot,
        "stop_all_s": stop,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=6)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, dest="json_path")
    args = parser.parse_args(argv)

    started = time.monotonic()
    ensure_images({"debian", "al2", "al2023"})
    warm_check = time.monotonic() - started

    label = f"bench-{os.getpid()}"
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="fleetops-bench-") as tmp:
        try:
            for _ in range(args.runs):
                runs.append(one_run(args.hosts, label, Path(tmp)))
        finally:
            stop_hosts(label)

    metrics = list(runs[0])
    summary = {
        m: {
            "median": statistics.median(r[m] for r in runs),
            "min": min(r[m] for r in runs),
            "max": max(r[m] for r in runs),
        }
        for m in metrics
    }
    print(f"sandbox hosts up: {args.hosts} hosts, {args.runs} runs, warm images")
    print(f"image check (warm): {warm_check:.2f} s")
    print(f"{'metric':<16}{'median s':>10}{'min s':>10}{'max s':>10}")
    for m, s in summary.items():
        print(f"{m:<16}{s['median']:>10.2f}{s['min']:>10.2f}{s['max']:>10.2f}")
    if args.json_path:
        args.json_path.write_text(
            json.dumps(
                {
                    "benchmark": "hosts_up",
                    "hosts": args.hosts,
                    "runs": runs,
                    "summary": summary,
                    "image_check_warm_s": warm_check,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
