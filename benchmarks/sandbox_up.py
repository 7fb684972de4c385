"""How long `ops sandbox up` takes for a 6-host fleet with warm images, and `down`.

Runs the real command (a subprocess, as a user would) in a throw-away state
folder several times and reports medians: the whole fleet — moto, the Run
Command emulator, 6 container hosts answering SSH, EC2 registration, the
load balancer and the bucket — until the command returns.

    python benchmarks/sandbox_up.py [--runs 3] [--platforms debian:4,al2:1,al2023:1]
                                    [--synthetic 0] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, env=env, cwd=REPO, check=True, capture_output=True, timeout=900)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--platforms", default="debian:4,al2:1,al2023:1")
    parser.add_argument("--synthetic", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    ops = [sys.executable, "-m", "ops"]
    with tempfile.TemporaryDirectory(prefix="sandbox-up-bench-") as tmp:
        inventories = Path(tmp) / "inventories"
        shutil.copytree(
            REPO / "inventories", inventories, ignore=shutil.ignore_patterns("hosts.yml")
        )
        env = {**os.environ, "OPS_STATE_DIR": f"{tmp}/state", "OPS_INVENTORIES": str(inventories)}
        # warm the images first, so every timed run measures the same thing
        subprocess.run(
            [sys.executable, "-m", "ops.sandbox.images"],
            cwd=REPO,
            check=True,
            capture_output=True,
            env=env,
        )
        ups, downs = [], []
        for _ in range(args.runs):
            ups.append(
                timed(
                    [
                        *ops,
                        "sandbox",
                        "up",
                        "--platforms",
                        args.platforms,
                        "--synthetic",
                        str(args.synthetic),
                    ],
                    env,
                )
            )
            downs.append(timed([*ops, "sandbox", "down"], env))
    result = {
        "platforms": args.platforms,
        "synthetic": args.synthetic,
        "runs": args.runs,
        "up_s": ups,
        "down_s": downs,
        "up_median_s": statistics.median(ups),
        "down_median_s": statistics.median(downs),
    }
    print(f"{'step':<22}{'median s':>10}{'min s':>8}{'max s':>8}")
    for name, values in (("sandbox up", ups), ("sandbox down", downs)):
        print(f"{name:<22}{statistics.median(values):>10.2f}{min(values):>8.2f}{max(values):>8.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
