"""Per-batch time of `ops deploy run` against the sum of its unavoidable parts.

Run against a sandbox whose web hosts already run the service (`ops sandbox up
--registry`, `ops docker install`, a first `ops deploy run`), with its
environment exported (`eval "$(ops sandbox env)"`):

    .venv/bin/python benchmarks/deploy.py --service hello --from v1 --to v2 --json deploy.json

It deploys --to (then --from again, so the fleet ends as it began) and reads
each batch's steps from the journal: drain, swap, register, and the batch's
wall time. The unavoidable parts are measured on their own on one host of
the fleet, outside `ops`: drain is the load balancer's deregistration
delay as the drain step saw it, pull is `docker pull` by digest of an image
the host did not have, start is `docker run` until the HTTP check answers
200, health is the register step (the target group's healthy threshold
times its interval). What a batch takes beyond their sum is the tool's own
overhead (Ansible, SSH, polling, the journal).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
OPS = [sys.executable, "-m", "ops"]

PROBE = r"""
import subprocess, sys, time, urllib.request
image, port = sys.argv[1], sys.argv[2]
subprocess.run(["docker", "rm", "-f", "ops-bench"], capture_output=True)
subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
t0 = time.monotonic()
subprocess.run(["docker", "pull", "--quiet", image], check=True, capture_output=True)
t1 = time.monotonic()
subprocess.run(["docker", "run", "-d", "--name", "ops-bench", "--network", "host",
                "-e", "PORT=" + port, image], check=True, capture_output=True)
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:%s/health" % port, timeout=2) as r:
            if r.status == 200:
                break
    except Exception:
        time.sleep(0.1)
t2 = time.monotonic()
subprocess.run(["docker", "rm", "-f", "ops-bench"], capture_output=True)
print("%.3f %.3f" % (t1 - t0, t2 - t1))
"""


def ops(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPS, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=os.environ
    )


def must(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        sys.exit(f"{what} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def deploy(service: str, tag: str, batch: str) -> tuple[str, float]:
    started = time.monotonic()
    out = must(
        ops("--yes", "--output", "json", "deploy", "run", service, "--image", tag,
            "--batch", batch),
        f"deploy {tag}",
    )  # fmt: skip
    return json.loads(out)["run_id"], time.monotonic() - started


def batches(run_id: str) -> list[dict[str, float]]:
    """Per batch: each step's longest host, and the wall from the first drain to the
    last host in service."""
    shown = json.loads(must(ops("--output", "json", "runs", "show", run_id), "runs show"))
    arguments = shown["run"]["arguments"]
    done: dict[tuple[str, str], tuple[float, float]] = {}
    for step in shown["steps"]:
        if step["status"] in ("Success", "Failed"):
            took = float((step.get("detail") or {}).get("duration_s") or 0.0)
            done[(step["phase"], step["host"])] = (float(step["ended_at"]) - took, took)
    rows = []
    for hosts in arguments["batches"]:
        row: dict[str, float] = {}
        for phase in ("drain", "swap", "register"):
            row[phase] = max(done[(phase, h)][1] for h in hosts)
        start = min(done[("drain", h)][0] for h in hosts)
        end = max(sum(done[("register", h)]) for h in hosts)
        row["wall"] = end - start
        rows.append(row)
    return rows


def pull_and_start(container: str, image: str, port: int) -> tuple[float, float]:
    """`docker pull` and `docker run` until healthy, inside one sandbox host, by hand."""
    done = subprocess.run(
        ["docker", "exec", container, "python3", "-c", PROBE, image, str(port)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    pull, start = (float(x) for x in done.stdout.split())
    return pull, start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", default="hello")
    parser.add_argument("--from", dest="source", default="v1")
    parser.add_argument("--to", dest="target", default="v2")
    parser.add_argument("--batch", default="2")
    parser.add_argument("--spare-port", type=int, default=18080, help="for the by-hand start")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    plan = json.loads(
        must(ops("--output", "json", "deploy", "plan", args.service, "--image", args.target),
             "deploy plan")
    )  # fmt: skip
    status = json.loads(must(ops("--output", "json", "sandbox", "status"), "sandbox status"))
    first = next(h for h in status["hosts"] if h["role"] == "web")
    pull, start = pull_and_start(first["container"], plan["pull"], args.spare_port)

    run_id, wall = deploy(args.service, args.target, args.batch)
    rows = batches(run_id)
    back_id, _ = deploy(args.service, args.source, args.batch)  # the fleet as it was
    table = []
    for number, row in enumerate(rows, start=1):
        floor = row["drain"] + pull + start + row["register"]
        table.append(
            {
                "batch": number,
                "wall_s": round(row["wall"], 1),
                "drain_s": round(row["drain"], 1),
                "pull_s": round(pull, 1),
                "start_s": round(start, 1),
                "health_s": round(row["register"], 1),
                "floor_s": round(floor, 1),
                "overhead_s": round(row["wall"] - floor, 1),
                "ratio": round(row["wall"] / floor, 2) if floor else None,
            }
        )
    print(" | ".join(table[0]))
    for line in table:
        print(" | ".join(str(v) for v in line.values()))
    print(
        f"deploy {args.target}: {wall:.1f} s in all, {len(rows)} batches "
        f"(median batch {median(r['wall'] for r in rows):.1f} s); back to {args.source} in "
        f"run {back_id}; commands: {shlex.join(['deploy', 'run', args.service])}"
    )
    if args.json:
        args.json.write_text(json.dumps({"run_id": run_id, "batches": table}, indent=2))


if __name__ == "__main__":
    main()
