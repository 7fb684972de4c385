"""A patch night on N sandbox hosts: each wave's wall time beside its unavoidable parts.

One private sandbox (6 hosts by default: 4 Debian, an AL2 and an AL2023
stand-in) with the sandbox's load balancer (HTTP checks every 5 s, 2 to turn
healthy, 5 s deregistration delay).
`ops patch run` runs as a user runs it (a subprocess, `--yes --poll 1`); the
figures come from its journal. A wave's hosts go through their steps
together, so its unavoidable time is, for the slowest host, drain + apply
(the package install, SSM round trip included) + reboot + register (until
healthy); what the wave took beyond that (precheck, postcheck, the gate,
the journal, the step boundaries between hosts) is the tool's overhead.

    .venv/bin/python benchmarks/patch.py [--platforms debian:4,al2:1,al2023:1] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
UNAVOIDABLE = ("drain", "apply", "reboot", "register")
STEPS = ("precheck", "drain", "apply", "reboot", "postcheck", "register")


def _ops(
    env: dict[str, str], *args: str, timeout: float = 1200
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wave_figures(export: dict[str, Any]) -> list[dict[str, Any]]:
    """Per wave: wall time (first step start to last step end) and the slowest host's
    unavoidable seconds, from the journal's result rows (end time and duration)."""
    waves: list[list[str]] = export["run"]["arguments"]["waves"]
    rows = [
        s
        for s in export["steps"]
        if s["status"] == "Success" and s["detail"].get("duration_s") is not None
    ]
    figures = []
    for number, ids in enumerate(waves):
        mine = [r for r in rows if r["host"] in ids]
        if not mine:
            continue
        start = min(r["ended_at"] - r["detail"]["duration_s"] for r in mine)
        end = max(r["ended_at"] for r in mine)
        parts = {
            host: sum(
                r["detail"]["duration_s"]
                for r in mine
                if r["host"] == host and r["phase"] in UNAVOIDABLE
            )
            for host in ids
        }
        floor = max(parts.values())
        wall = end - start
        slowest = {
            step: max((r["detail"]["duration_s"] for r in mine if r["phase"] == step), default=0.0)
            for step in STEPS
        }
        per_host = max(
            sum(r["detail"]["duration_s"] for r in mine if r["host"] == host) for host in ids
        )
        figures.append(
            {
                "wave": number,
                "hosts": len(ids),
                "wall_s": round(wall, 2),
                "unavoidable_s": round(floor, 2),
                "overhead_s": round(wall - floor, 2),
                "overhead_pct": round(100 * (wall - floor) / wall, 1) if wall else 0.0,
                # where the overhead goes: the read-only checks (slowest host each),
                # hosts waiting for the slowest at each step boundary, and the rest
                # (gate, journal, starting each step) between the steps
                "precheck_s": round(slowest["precheck"], 2),
                "postcheck_s": round(slowest["postcheck"], 2),
                "step_waits_s": round(sum(slowest.values()) - per_host, 2),
                "between_steps_s": round(wall - sum(slowest.values()), 2),
                "slowest_step_s": {step: round(value, 2) for step, value in slowest.items()},
            }
        )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platforms", default="debian:4,al2:1,al2023:1")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--timeout", type=float, default=900, help="Seconds the patch run may take at most."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ops-bench-patch-") as folder:
        base = Path(folder)
        inventories = base / "inventories"
        subprocess.run(["cp", "-r", str(REPO / "inventories"), str(inventories)], check=True)
        for stale in inventories.glob("*/hosts.yml"):
            stale.unlink()
        env = {
            **os.environ,
            "OPS_STATE_DIR": str(base / "state"),
            "OPS_INVENTORIES": str(inventories),
        }
        up = _ops(env, "sandbox", "up", "--platforms", args.platforms)
        if up.returncode != 0:
            print(up.stderr[-3000:], file=sys.stderr)
            _ops(env, "sandbox", "down")  # whatever part of it did start
            return 1
        try:
            for line in _ops(env, "sandbox", "env").stdout.splitlines():
                key, _, value = line.removeprefix("export ").partition("=")
                env[key] = value.strip("'")
            started = time.monotonic()
            night = _ops(env, "--yes", "patch", "run", "--poll", "1", timeout=args.timeout)
            total = time.monotonic() - started
            if night.returncode != 0:
                print(night.stderr[-3000:], file=sys.stderr)
                return 1
            runs = json.loads(_ops(env, "--output", "json", "runs", "list").stdout)
            export = json.loads(_ops(env, "runs", "export", runs[0]["id"]).stdout)
        finally:
            _ops(env, "sandbox", "down")
    figures = wave_figures(export)
    print(f"patch night on {args.platforms}: {total:.1f} s end to end (planning included)")
    print(
        f"{'wave':>4} {'hosts':>5} {'wall s':>8} {'unavoidable s':>14} {'overhead s':>11} {'%':>6}"
    )
    for f in figures:
        print(
            f"{f['wave']:>4} {f['hosts']:>5} {f['wall_s']:>8.1f} {f['unavoidable_s']:>14.1f} "
            f"{f['overhead_s']:>11.1f} {f['overhead_pct']:>6.1f}"
        )
    print("overhead by part (s): wave, precheck, postcheck, step waits, between steps")
    for f in figures:
        print(
            f"{f['wave']:>4} {f['precheck_s']:>9.2f} {f['postcheck_s']:>10.2f} "
            f"{f['step_waits_s']:>11.2f} {f['between_steps_s']:>14.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"total_s": total, "waves": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
