"""`ops logs collect` on N sandbox hosts x M MB, over S3 and over SSH, beside `docker cp`.

One private sandbox (`debian:N`, no synthetic instances) serves every
contender. Each host gets M MB of synthetic application log lines (timestamps,
levels, random request ids, paths and timings) in four files, which gzip
shrinks about as much as real access logs. `ops` runs in-process
through the workflow (build on the hosts, transfer, sha256 checks, unpack);
the ceiling is a plain `docker cp` of the same folder from every container
at once, which moves the bytes with no SSH, no S3, no gzip and no checks.
Throughput is the hosts' bytes over wall time; "built by" is when the last
host had its bundle built (and, over S3, uploaded), the rest is download,
checks and unpacking.

    .venv/bin/python benchmarks/logs.py [--hosts 4] [--mb 20] [--rounds 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FOLDER = "/var/log/ops-bench"
FILES = 4


_GENERATOR = r"""
import os, random, sys
folder, size, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(folder, exist_ok=True)
rnd = random.Random(os.getpid())
levels = ["INFO"] * 8 + ["WARN", "ERROR"]
paths = ["/api/v1/items", "/api/v1/orders", "/healthz", "/api/v2/users", "/static/app.js"]
for n in range(1, files + 1):
    with open(f"{folder}/app-{n}.log", "w") as fh:
        written = 0
        while written < size // files:
            line = (
                f"2026-11-29T{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:"
                f"{rnd.randrange(60):02d}.{rnd.randrange(1000):03d}Z {rnd.choice(levels)} "
                f"[worker-{rnd.randrange(16)}] request id={rnd.getrandbits(64):016x} "
                f"path={rnd.choice(paths)}/{rnd.randrange(100000)} "
                f"status={rnd.choice((200, 200, 200, 201, 304, 404, 500))} "
                f"ms={rnd.randrange(2000)} bytes={rnd.randrange(10**6)}\n"
            )
            fh.write(line)
            written += len(line)
"""


def _generate(container: str, mb: int) -> None:
    """M MB of application log lines in four files, written inside the container."""
    subprocess.run(
        ["docker", "exec", "-i", container, "python3", "-", FOLDER, str(mb * 1024**2), str(FILES)],
        input=_GENERATOR.encode(),
        check=True,
        timeout=600,
    )


def _bytes_on(container: str) -> int:
    out = subprocess.run(
        ["docker", "exec", container, "sh", "-c", f"cat {FOLDER}/* | wc -c"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return int(out.strip())


def docker_cp(containers: list[str], dest: Path) -> float:
    started = time.monotonic()
    with cf.ThreadPoolExecutor(max_workers=len(containers)) as pool:
        jobs = [
            pool.submit(
                subprocess.run,
                ["docker", "cp", f"{c}:{FOLDER}", str(dest / c)],
                check=True,
                capture_output=True,
                timeout=1800,
            )
            for c in containers
        ]
        for job in jobs:
            job.result()
    return time.monotonic() - started


def ops_collect(via: str, dest: Path) -> tuple[float, float, list[str]]:
    """One `ops logs collect` through the workflow; (wall s, s until the last host was
    built, statuses)."""
    from ops.cli.context import OpsContext
    from ops.cli.logs import _hosts
    from ops.cli.options import TargetArgs
    from ops.config import load_settings
    from ops.journal import open_journal
    from ops.workflows import logs as wf
    from ops.workflows.logs_input import build_request

    settings = load_settings()
    request = build_request(
        since="1h",
        until=None,
        paths=(FOLDER,),
        units=(),
        containers=(),
        max_size="2GB",
        dest=dest,
        via=via,
        redact=False,
        bucket=settings.output_bucket,
    )
    started = time.monotonic()
    built = [0.0]

    def on_built(_iid: str, _status: str) -> None:
        built[0] = time.monotonic() - started

    hosts = _hosts(OpsContext(), TargetArgs(), via)
    with open_journal() as journal:
        run = wf.begin(journal, request, hosts, settings.env)
        report = wf.collect(
            run, request, hosts, settings, journal, listener=wf.Listener(built=on_built)
        )
    wall = time.monotonic() - started
    return wall, built[0], [h.status for h in report.hosts]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--mb", type=int, default=20, help="MB of logs per host")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)

    from ops.sandbox import fleet
    from ops.sandbox.spec import build_spec
    from ops.sandbox.state import SandboxState, state_file

    base = Path(tempfile.mkdtemp(prefix="ops-bench-logs-"))
    os.environ["OPS_STATE_DIR"] = str(base / "state")
    os.environ["OPS_INVENTORIES"] = str(base / "inventories")
    shutil.copytree(REPO / "inventories", base / "inventories")
    walls: dict[str, list[float]] = {"docker-cp": [], "ops-s3": [], "ops-ssh": []}
    builds: dict[str, list[float]] = {"docker-cp": [], "ops-s3": [], "ops-ssh": []}
    try:
        fleet.up(build_spec(None, f"debian:{args.hosts}", 0, 0), echo=lambda _m: None)
        os.environ.update(fleet.env())
        state = SandboxState.load(state_file())
        assert state is not None
        containers = [h.container for h in state.hosts]
        with cf.ThreadPoolExecutor(max_workers=len(containers)) as pool:
            list(pool.map(lambda c: _generate(c, args.mb), containers))
        total = sum(_bytes_on(c) for c in containers)
        for round_ in range(args.rounds):
            out = base / f"out-{round_}"
            out.mkdir()
            walls["docker-cp"].append(docker_cp(containers, out))
            for via in ("s3", "ssh"):
                wall, built, statuses = ops_collect(via, out / via)
                if any(s != "ok" for s in statuses):
                    print(f"ops-{via}: hosts not ok: {statuses}", file=sys.stderr)
                    return 1
                walls[f"ops-{via}"].append(wall)
                builds[f"ops-{via}"].append(built)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        fleet.down(echo=lambda _m: None)
        shutil.rmtree(base, ignore_errors=True)

    ceiling = statistics.median(walls["docker-cp"])
    rows: list[dict[str, Any]] = []
    for name, values in walls.items():
        median = statistics.median(values)
        rows.append(
            {
                "contender": name,
                "wall_s": [round(v, 2) for v in values],
                "wall_median_s": round(median, 2),
                "built_after_median_s": (
                    round(statistics.median(builds[name]), 2) if builds[name] else None
                ),
                "mb_per_s": round(total / 1024**2 / median, 1),
                "x_docker_cp": round(median / ceiling, 2),
            }
        )
    print(
        f"logs from {args.hosts} hosts x {args.mb} MB ({total / 1024**2:.0f} MB), "
        f"{args.rounds} round(s), median"
    )
    print(f"{'contender':<12}{'wall s':>10}{'built by s':>12}{'MB/s':>10}{'x docker cp':>14}")
    for row in rows:
        built_by = (
            "-" if row["built_after_median_s"] is None else f"{row['built_after_median_s']:.2f}"
        )
        print(
            f"{row['contender']:<12}{row['wall_median_s']:>10.2f}{built_by:>12}"
            f"{row['mb_per_s']:>10.1f}{row['x_docker_cp']:>14.2f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        body = {"hosts": args.hosts, "mb_per_host": args.mb, "bytes": total, "rows": rows}
        args.json.write_text(json.dumps(body, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
