"""Fan-out benchmark: `ops run` against the ways people usually script SSM Run Command.

    python benchmarks/fanout.py --instances 100,1000,10000 --json PATH

One sandbox (moto + the Run Command emulator, throttling on at its default
rates) serves every strategy; each fleet size gets its own synthetic
instances, and each strategy runs in its own process so its peak RSS is its
own. For every run the table shows wall time, the floor (the least time the
emulator's rates and the hosts' durations allow), SSM API calls by
operation, throttled responses, results lost and peak RSS.

Strategies:
  ops              ops run --concurrency 100% --output jsonl
  ops-server-side  ops run --server-side --concurrency 100% --output jsonl
  naive-boto3      one SendCommand per instance, GetCommandInvocation polling
                   per instance every second, botocore standard retries
  aws-cli-pattern  aws ssm send-command --targets ..., then
                   aws ssm list-command-invocations --details every 5 s
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STRATEGIES = ("ops", "ops-server-side", "naive-boto3", "aws-cli-pattern")
TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled"}
COMMAND = "uptime"  # outside the synthetic hosts' tiny shell, so the profile's timings apply
PICKUP = (0.05, 0.3)
DURATION = (0.5, 1.5)
BATCH = 50


# --- workers (run in their own process) ---------------------------------------


def naive_worker(ids: list[str], out: Path, limit: float) -> None:
    """What a first script looks like: send one by one, then poll each host."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    ssm = boto3.client("ssm", config=Config(retries={"mode": "standard"}))
    commands: dict[str, str] = {}
    deadline = time.monotonic() + limit
    with out.open("w") as sink:
        for instance_id in ids:
            if time.monotonic() > deadline:
                break
            try:
                reply = ssm.send_command(
                    InstanceIds=[instance_id],
                    DocumentName="AWS-RunShellScript",
                    Parameters={"commands": [COMMAND]},
                )
                commands[instance_id] = reply["Command"]["CommandId"]
            except ClientError:
                continue  # the send is lost; a first script rarely retries it
        while commands and time.monotonic() < deadline:
            for instance_id, command_id in list(commands.items()):
                try:
                    reply = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
                except ClientError:
                    continue
                if reply["Status"] in TERMINAL:
                    sink.write(json.dumps({"instance_id": instance_id, "status": reply["Status"]}))
                    sink.write("\n")
                    del commands[instance_id]
            time.sleep(1)


def cli_worker(suite: str, out: Path, limit: float) -> None:
    """The AWS CLI pattern from the docs: send by tag, poll the invocation list every 5 s."""
    aws = shutil.which("aws")
    if aws is None:
        raise SystemExit("aws CLI not found")
    sent = subprocess.run(
        [
            aws, "ssm", "send-command", "--document-name", "AWS-RunShellScript",
            "--targets", f"Key=tag:Suite,Values={suite}",
            "--max-concurrency", "100%", "--max-errors", "100%",
            "--parameters", json.dumps({"commands": [COMMAND]}), "--output", "json",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    command_id = json.loads(sent.stdout)["Command"]["CommandId"]
    deadline = time.monotonic() + limit
    done: dict[str, str] = {}
    while time.monotonic() < deadline:
        listed = subprocess.run(
            [aws, "ssm", "list-command-invocations", "--command-id", command_id, "--details",
             "--output", "json"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if listed.returncode == 0:
            invocations = json.loads(listed.stdout).get("CommandInvocations", [])
            for invocation in invocations:
                if invocation["Status"] in TERMINAL:
                    done[invocation["InstanceId"]] = invocation["Status"]
            if invocations and len(done) == len(invocations):
                break
        time.sleep(5)
    with out.open("w") as sink:
        for instance_id, status in done.items():
            sink.write(json.dumps({"instance_id": instance_id, "status": status}) + "\n")


# --- the harness ----------------------------------------------------------------


def floor_seconds(count: int, rates: dict[str, tuple[float, float]]) -> float:
    """Sends at the SendCommand rate (50 ids each), collection at the listing rate,
    whichever is slower, then the slowest host of the last batch."""
    batches = math.ceil(count / BATCH)
    send_rate, send_burst = rates["SendCommand"]
    list_rate, list_burst = rates["ListCommandInvocations"]
    send = max(0.0, batches - send_burst) / send_rate
    collect = max(0.0, batches - list_burst) / list_rate
    return round(max(send, collect) + PICKUP[1] + DURATION[1], 2)


def _peak_rss_kb() -> int:
    """This process's own high-water mark (VmHWM starts afresh at exec, unlike
    ru_maxrss, which a forked child inherits from its parent), or its children's."""
    import resource

    own = 0
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                own = int(line.split()[1])
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def rss_wrapped(argv: list[str]) -> None:
    """`--rss-wrap FILE -m module args...` or `--rss-wrap FILE script args...`:
    run the target in this process and write its peak RSS (KB) at exit."""
    import atexit
    import runpy

    report = Path(argv[0])
    atexit.register(lambda: report.write_text(str(_peak_rss_kb())))
    if argv[1] == "-m":
        sys.argv = [argv[2], *argv[3:]]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv[1:]
        runpy.run_path(argv[1], run_name="__main__")


def run_measured(
    argv: list[str], env: dict[str, str], stdout: Path, limit: float
) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and the end of stderr of one child process,
    stopped after `limit` seconds (the results it had not collected count as lost)."""
    report = stdout.with_suffix(".rss")
    report.unlink(missing_ok=True)
    wrapped = [argv[0], __file__, "--rss-wrap", str(report), *argv[1:]]
    started = time.monotonic()
    with stdout.open("w") as sink:
        proc = subprocess.Popen(wrapped, env=env, stdout=sink, stderr=subprocess.PIPE, text=True)
        try:
            _, err = proc.communicate(timeout=limit + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            err += f"\nstopped after {limit + 60:.0f}s"
    wall = time.monotonic() - started
    rss = int(report.read_text()) / 1024 if report.exists() else float("nan")
    return wall, rss, err.strip()[-300:] if proc.returncode not in (0, 1) else ""


def read_calls(path: Path, offset: int) -> tuple[Counter[str], int, float | None]:
    """Calls by operation, throttled responses, and when the first SendCommand arrived."""
    calls: Counter[str] = Counter()
    throttled = 0
    first_send: float | None = None
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    for line in data.splitlines():
        entry = json.loads(line)
        calls[entry["operation"]] += 1
        throttled += bool(entry["throttled"])
        if entry["operation"] == "SendCommand" and first_send is None:
            first_send = float(entry["time"])
    return calls, throttled, first_send


def collected(path: Path) -> set[str]:
    found = set()
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("status") in TERMINAL or entry.get("status") == "Undeliverable":
                found.add(entry["instance_id"])
    return found


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--rss-wrap"]:
        rss_wrapped(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", default="100,1000,10000")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--json", type=Path, help="write the runs here")
    parser.add_argument(
        "--limit", type=float, default=900.0, help="seconds a strategy may take before it is cut"
    )
    parser.add_argument("--worker", choices=("naive", "cli"), help=argparse.SUPPRESS)
    parser.add_argument("--ids", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--suite", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "naive":
        naive_worker(args.ids.read_text().split(), args.out, args.limit)
        return 0
    if args.worker == "cli":
        cli_worker(args.suite, args.out, args.limit)
        return 0

    from ops.sandbox.aws_side import AwsSandbox
    from ops.sandbox.emulator import DEFAULT_RATES, Dist, SyntheticProfile

    sizes = [int(part) for part in args.instances.split(",") if part.strip()]
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = set(strategies) - set(STRATEGIES)
    if unknown or any(size < 1 for size in sizes):
        parser.error(f"unknown strategies {sorted(unknown)} or a size below 1")
    work = Path(tempfile.mkdtemp(prefix="fanout-bench-"))
    sandbox = AwsSandbox(work / "aws", seed=7)
    sandbox.start()
    runs: list[dict[str, Any]] = []
    try:
        sandbox.client("s3").create_bucket(Bucket="fleetops-sandbox-output")
        profile = SyntheticProfile(
            pickup_seconds=Dist.uniform(*PICKUP), duration_seconds=Dist.uniform(*DURATION)
        )
        env = {
            **os.environ,
            **sandbox.env(),
            "OPS_ENV": "sandbox",
            "OPS_STATE_DIR": str(work / "ops"),
            "PYTHONPATH": str(ROOT),
        }
        calls_file = sandbox.state_dir / "ssm-calls.jsonl"
        for size in sizes:
            suite = f"bench{size}"
            ids = sandbox.add_synthetic(
                size, tags={"Suite": suite}, name_prefix=suite, profile=profile
            )
            ids_file = work / f"{suite}.ids"
            ids_file.write_text("\n".join(ids))
            floor = floor_seconds(size, DEFAULT_RATES)
            for strategy in strategies:
                out = work / f"{suite}-{strategy}.jsonl"
                ops = [sys.executable, "-m", "ops", "--yes", "run", "--target", f"suite={suite}"]
                ops += ["--concurrency", "100%", "--max-errors", "100%", "--output", "jsonl"]
                command = {
                    "ops": [*ops, "--", COMMAND],
                    "ops-server-side": [*ops, "--server-side", "--", COMMAND],
                    "naive-boto3": [sys.executable, __file__, "--worker", "naive", "--ids",
                                    str(ids_file), "--out", str(out), "--limit", str(args.limit)],
                    "aws-cli-pattern": [sys.executable, __file__, "--worker", "cli", "--suite",
                                        suite, "--out", str(out), "--limit", str(args.limit)],
                }[strategy]  # fmt: skip
                time.sleep(2)  # let the token buckets refill between strategies
                offset = calls_file.stat().st_size if calls_file.exists() else 0
                stdout = out if strategy.startswith("ops") else work / f"{suite}-{strategy}.log"
                launched = time.time()
                wall, rss, error = run_measured(command, env, stdout, args.limit)
                time.sleep(0.5)
                calls, throttled, first_send = read_calls(calls_file, offset)
                # wall time from the first SendCommand on: the part the floor describes
                sending = wall - (first_send - launched) if first_send else wall
                lost = len(set(ids) - collected(out))
                run = {
                    "strategy": strategy,
                    "instances": size,
                    "wall_s": round(wall, 2),
                    "floor_s": floor,
                    "from_first_send_s": round(sending, 2),
                    "api_calls": dict(sorted(calls.items())),
                    "throttled": throttled,
                    "lost": lost,
                    "peak_rss_mb": round(rss, 1),
                }
                if error or lost:
                    run["error"] = error or "results not collected before the limit"
                runs.append(run)
                print_row(run)
    finally:
        sandbox.stop()
    print()
    print_table(runs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def print_row(run: dict[str, Any]) -> None:
    print(
        f"{run['strategy']:>16} n={run['instances']:<6} wall {run['wall_s']:>8.1f}s "
        f"from first send {run['from_first_send_s']:>8.1f}s floor {run['floor_s']:>6.1f}s "
        f"lost {run['lost']} rss {run['peak_rss_mb']:.0f} MB",
        file=sys.stderr,
        flush=True,
    )


def print_table(runs: list[dict[str, Any]]) -> None:
    header = (
        "| strategy | instances | wall s | from first send s | floor s | x floor | API calls "
        "| throttled | lost | peak RSS MB |"
    )
    print(header)
    print("|" + "---|" * 10)
    for run in runs:
        calls = ", ".join(f"{op} {n}" for op, n in run["api_calls"].items())
        ratio = run["wall_s"] / run["floor_s"] if run["floor_s"] else 0.0
        print(
            f"| {run['strategy']} | {run['instances']:,} | {run['wall_s']:.1f} | "
            f"{run['from_first_send_s']:.1f} | {run['floor_s']:.1f} | {ratio:.2f} | {calls} | "
            f"{run['throttled']} | "
            f"{run['lost']} | {run['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
