"""Fan-out benchmark: `ops run` against the ways people usually script SSM Run Command.

    python benchmarks/fanout.py --instances 100,1000,10000 --json PATH
    python benchmarks/fanout.py --instances 2000 --rate-multiplier 0.1 --strategies ideal,ops
    python benchmarks/fanout.py --instances 10000 --strategies ideal,ops --repeat 3

One sandbox (moto + the Run Command emulator, throttling on at its default
rates, or those times --rate-multiplier) serves every strategy; each fleet
size gets its own synthetic instances, and each strategy runs in its own
process so its peak RSS is its own. For every run the table shows wall time,
the floor (the least time the emulator's rates and the hosts' durations
allow), the ratio to `ideal` measured in the same run, SSM API calls by
operation, throttled responses (and their share of the calls), results lost
and peak RSS. With --repeat N every strategy runs N times, in rounds (each
round runs every strategy once, so `ops` and `ideal` meet the same machine
load), each run is divided by its own round's `ideal`, and a last table
gives the median of the rounds.

Strategies:
  ideal            the reference: a minimal client handed the instance ids,
                   pacing itself exactly to the emulator's rates (no throttled
                   calls), 50-id batches, one ListCommandInvocations per batch
                   once its hosts can be done (it knows their profile), no
                   details, nothing parsed it does not need
  ops              ops run --concurrency 100% --output jsonl
  ops-unpaced      the same, its calls not paced (SsmTransport.paced False):
                   throttled calls simply retried, as before pacing
  ops-no-botocore-retry  ops with its SSM clients made with no botocore retry
                   (max_attempts 0), so every throttled answer reaches the pacer:
                   a proposed change to open_transport, measured before it is made
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STRATEGIES = (
    "ideal",
    "ops",
    "ops-unpaced",
    "ops-no-botocore-retry",
    "ops-server-side",
    "naive-boto3",
    "aws-cli-pattern",
)
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


class Paced:
    """The service's own token bucket, kept on the client's side: a call waits for a
    token, so the service never has to refuse one. `margin` keeps the client a hair
    under the rate, since the two clocks start a request's round trip apart."""

    def __init__(self, rate: float, burst: float, margin: float = 0.97) -> None:
        import threading

        self.rate = rate * margin
        self.burst = max(1.0, burst)
        self.tokens = self.burst - 1.0  # one kept back for the clocks' difference
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst - 1.0, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= 1.0
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


def ideal_worker(
    ids: list[str], out: Path, limit: float, multiplier: float, output_bucket: str | None = None
) -> None:
    """The reference client: what the emulator's rates allow, with nothing wasted.
    With `output_bucket` its commands ask for output in S3, as `ops`' do when the
    environment names an output bucket, so the service does the same work for both."""
    import concurrent.futures as cf

    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from ops.sandbox.emulator import DEFAULT_RATES

    def bucket(operation: str) -> Paced:
        rate, burst = DEFAULT_RATES[operation]
        return Paced(rate * multiplier, burst * multiplier)

    ssm = boto3.client(
        "ssm", config=Config(retries={"mode": "standard", "max_attempts": 1},
                             max_pool_connections=32),
    )  # fmt: skip
    sends, lists = bucket("SendCommand"), bucket("ListCommandInvocations")
    ready_after = PICKUP[1] + DURATION[1] + 0.1  # every host of a batch can be done by then
    deadline = time.monotonic() + limit

    def call(paced: Paced, method: Any, **kwargs: Any) -> Any:
        while time.monotonic() < deadline:
            paced.take()
            try:
                return method(**kwargs)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ThrottlingException":
                    raise
        raise TimeoutError("limit reached")

    output = {"OutputS3BucketName": output_bucket, "OutputS3KeyPrefix": "ops/"}
    if not output_bucket:
        output = {}

    def send(batch: list[str]) -> tuple[str, float]:
        reply = call(sends, ssm.send_command, InstanceIds=batch,
                     DocumentName="AWS-RunShellScript", Parameters={"commands": [COMMAND]},
                     MaxConcurrency="100%", MaxErrors="100%", **output)  # fmt: skip
        return reply["Command"]["CommandId"], time.monotonic()

    def collect(command_id: str, sent_at: float, expected: int) -> list[tuple[str, str]]:
        time.sleep(max(0.0, sent_at + ready_after - time.monotonic()))
        while True:
            try:
                page = call(lists, ssm.list_command_invocations, CommandId=command_id,
                            MaxResults=50)  # fmt: skip
            except ClientError as exc:  # not readable yet
                if exc.response["Error"]["Code"] != "InvalidCommandId":
                    raise
                page = {"CommandInvocations": []}
            done = [
                (inv["InstanceId"], inv["Status"])
                for inv in page["CommandInvocations"]
                if inv["Status"] in TERMINAL
            ]
            if len(done) == expected:
                return done
            time.sleep(0.5)

    batches = [ids[start : start + BATCH] for start in range(0, len(ids), BATCH)]
    with cf.ThreadPoolExecutor(8) as senders, cf.ThreadPoolExecutor(64) as listers:
        collecting = []
        for future, batch in [(senders.submit(send, b), b) for b in batches]:
            command_id, sent_at = future.result()
            collecting.append(listers.submit(collect, command_id, sent_at, len(batch)))
        with out.open("w") as sink:
            for done in cf.as_completed(collecting):
                for instance_id, status in done.result():
                    sink.write(json.dumps({"instance_id": instance_id, "status": status}) + "\n")


# --- the harness ----------------------------------------------------------------


def without_output_bucket(folder: Path) -> Path:
    """A copy of the project's inventories whose sandbox names no output bucket."""
    shutil.copytree(ROOT / "inventories", folder)
    settings = folder / "sandbox" / "ops.yml"
    lines = settings.read_text().splitlines(keepends=True)
    settings.write_text("".join(line for line in lines if not line.startswith("output_bucket:")))
    return folder


def floor_seconds(
    count: int, rates: dict[str, tuple[float, float]], multiplier: float = 1.0
) -> float:
    """Sends at the SendCommand rate (50 ids each), collection at the listing rate,
    whichever is slower, then the slowest host of the last batch (rates and bursts
    scaled as the emulator scales them)."""
    batches = math.ceil(count / BATCH)
    send_rate, send_burst = rates["SendCommand"]
    list_rate, list_burst = rates["ListCommandInvocations"]
    send_rate, list_rate = send_rate * multiplier, list_rate * multiplier
    send_burst, list_burst = max(1.0, send_burst * multiplier), max(1.0, list_burst * multiplier)
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
    if os.environ.get("FANOUT_BENCH_UNPACED"):
        from ops.transports.ssm import SsmTransport

        SsmTransport.paced = False
    if os.environ.get("FANOUT_BENCH_NO_BOTOCORE_RETRY"):
        from ops.transports import ssm

        made = ssm.client

        def no_retry(service: str, **kwargs: Any) -> Any:
            if service == "ssm":
                kwargs.update(max_attempts=0, retry_mode="standard")
            return made(service, **kwargs)

        ssm.client = no_retry
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
    if proc.returncode and not stdout.stat().st_size:  # nothing written: say why
        print(err.strip()[-2000:], file=sys.stderr)
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
    found: set[str] = set()
    if not path.exists():
        return found
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
    parser.add_argument(
        "--rate-multiplier",
        type=float,
        default=1.0,
        help="scale every emulator rate and burst (0.1: a tenth, as on a busy account)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every strategy (medians are reported)"
    )
    parser.add_argument(
        "--keep-calls",
        type=Path,
        help="copy the call logs (the emulator's ssm-calls.jsonl, moto's) into this folder",
    )
    parser.add_argument(
        "--no-output-bucket",
        action="store_true",
        help="no output in S3 for any strategy (by default `ideal` asks for it as `ops` does)",
    )
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=("naive", "cli", "ideal"), help=argparse.SUPPRESS)
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
    if args.worker == "ideal":
        ideal_worker(
            args.ids.read_text().split(), args.out, args.limit, args.rate_multiplier, args.bucket
        )
        return 0

    from ops.sandbox.aws_side import MOTO_CALLS, AwsSandbox
    from ops.sandbox.emulator import DEFAULT_RATES, Dist, SyntheticProfile
    from ops.sandbox.resources import SANDBOX_BUCKET

    sizes = [int(part) for part in args.instances.split(",") if part.strip()]
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = set(strategies) - set(STRATEGIES)
    if unknown or any(size < 1 for size in sizes) or args.rate_multiplier <= 0 or args.repeat < 1:
        parser.error(
            f"unknown strategies {sorted(unknown)}, a size below 1, a multiplier <= 0 "
            "or a repeat below 1"
        )
    work = Path(tempfile.mkdtemp(prefix="fanout-bench-"))
    sandbox = AwsSandbox(work / "aws", seed=7)
    sandbox.start()
    if args.rate_multiplier != 1.0:
        sandbox.set_throttle(multiplier=args.rate_multiplier)
    runs: list[dict[str, Any]] = []
    calls_file = sandbox.state_dir / "ssm-calls.jsonl"
    try:
        sandbox.client("s3").create_bucket(Bucket=SANDBOX_BUCKET)
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
        bucket: list[str] = ["--bucket", SANDBOX_BUCKET]
        if args.no_output_bucket:
            env["OPS_INVENTORIES"] = str(without_output_bucket(work / "inventories"))
            bucket = []
        for size in sizes:
            suite = f"bench{size}"
            ids = sandbox.add_synthetic(
                size, tags={"Suite": suite}, name_prefix=suite, profile=profile
            )
            ids_file = work / f"{suite}.ids"
            ids_file.write_text("\n".join(ids))
            floor = floor_seconds(size, DEFAULT_RATES, args.rate_multiplier)
            rounds = [(r, strategy) for r in range(1, args.repeat + 1) for strategy in strategies]
            for round_no, strategy in rounds:
                out = work / f"{suite}-{strategy}.jsonl"
                ops = [sys.executable, "-m", "ops", "--yes", "run", "--target", f"suite={suite}"]
                ops += ["--concurrency", "100%", "--max-errors", "100%", "--output", "jsonl"]
                command = {
                    "ops": [*ops, "--", COMMAND],
                    "ops-unpaced": [*ops, "--", COMMAND],
                    "ops-no-botocore-retry": [*ops, "--", COMMAND],
                    "ops-server-side": [*ops, "--server-side", "--", COMMAND],
                    "naive-boto3": [sys.executable, __file__, "--worker", "naive", "--ids",
                                    str(ids_file), "--out", str(out), "--limit", str(args.limit)],
                    "aws-cli-pattern": [sys.executable, __file__, "--worker", "cli", "--suite",
                                        suite, "--out", str(out), "--limit", str(args.limit)],
                    "ideal": [sys.executable, __file__, "--worker", "ideal", "--ids",
                              str(ids_file), "--out", str(out), "--limit", str(args.limit),
                              "--rate-multiplier", str(args.rate_multiplier), *bucket],
                }[strategy]  # fmt: skip
                # let the token buckets refill between strategies (they refill at the rate)
                time.sleep(2 / min(1.0, args.rate_multiplier))
                offset = calls_file.stat().st_size if calls_file.exists() else 0
                stdout = out if strategy.startswith("ops") else work / f"{suite}-{strategy}.log"
                launched = time.time()
                child_env = dict(env)
                if strategy == "ops-unpaced":
                    child_env["FANOUT_BENCH_UNPACED"] = "1"
                if strategy == "ops-no-botocore-retry":
                    child_env["FANOUT_BENCH_NO_BOTOCORE_RETRY"] = "1"
                wall, rss, error = run_measured(command, child_env, stdout, args.limit)
                time.sleep(0.5)
                calls, throttled, first_send = read_calls(calls_file, offset)
                # wall time from the first SendCommand on: the part the floor describes
                sending = wall - (first_send - launched) if first_send else wall
                lost = len(set(ids) - collected(out))
                run = {
                    "strategy": strategy,
                    "round": round_no,
                    "instances": size,
                    "rate_multiplier": args.rate_multiplier,
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
        if args.keep_calls:
            args.keep_calls.mkdir(parents=True, exist_ok=True)
            for log in (calls_file, sandbox.state_dir / MOTO_CALLS):
                if log.exists():
                    shutil.copyfile(log, args.keep_calls / log.name)
    print()
    add_ratios(runs)
    print_table(runs)
    if args.repeat > 1:
        print()
        print_medians(runs)
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


def add_ratios(runs: list[dict[str, Any]]) -> None:
    """Each run's wall time over `ideal`'s in the same sandbox run (same size, same rates),
    and its throttled answers as a share of its SSM calls."""

    def key(run: dict[str, Any]) -> tuple[int, float, int]:
        return run["instances"], run["rate_multiplier"], run.get("round", 1)

    ideal = {key(r): r for r in runs if r["strategy"] == "ideal"}
    for run in runs:
        total = sum(run["api_calls"].values())
        run["throttled_share"] = round(run["throttled"] / total, 3) if total else 0.0
        reference = ideal.get(key(run))
        if reference and reference["wall_s"] and not reference.get("error"):
            run["x_ideal"] = round(run["wall_s"] / reference["wall_s"], 2)
            run["x_ideal_from_first_send"] = round(
                run["from_first_send_s"] / reference["from_first_send_s"], 2
            )


def print_table(runs: list[dict[str, Any]]) -> None:
    header = (
        "| strategy | instances | rates | wall s | from first send s | x ideal (wall) "
        "| x ideal (from first send) | floor s | x floor | API calls | throttled | lost "
        "| peak RSS MB |"
    )
    print("| round " + header)
    print("|" + "---|" * 14)
    for run in runs:
        calls = ", ".join(f"{op} {n}" for op, n in run["api_calls"].items())
        ratio = run["wall_s"] / run["floor_s"] if run["floor_s"] else 0.0
        x_ideal = f"{run['x_ideal']:.2f}" if "x_ideal" in run else "-"
        x_first = f"{run['x_ideal_from_first_send']:.2f}" if "x_ideal" in run else "-"
        print(
            f"| {run.get('round', 1)} "
            f"| {run['strategy']} | {run['instances']:,} | x{run['rate_multiplier']:g} | "
            f"{run['wall_s']:.1f} | {run['from_first_send_s']:.1f} | {x_ideal} | {x_first} | "
            f"{run['floor_s']:.1f} | {ratio:.2f} | {calls} | "
            f"{run['throttled']} ({run['throttled_share']:.0%}) | "
            f"{run['lost']} | {run['peak_rss_mb']:.0f} |"
        )


def print_medians(runs: list[dict[str, Any]]) -> None:
    """Per strategy and size: the median of the rounds (ratios each to its own round's
    `ideal`), the worst loss and RSS, the throttled share of all the rounds' calls."""
    groups: dict[tuple[str, int, float], list[dict[str, Any]]] = {}
    for run in runs:
        group_key = (run["strategy"], run["instances"], run["rate_multiplier"])
        groups.setdefault(group_key, []).append(run)
    print(
        "| strategy | instances | rates | rounds | median wall s | median x ideal (wall) "
        "| median x ideal (from first send) | calls | throttled | max lost | max peak RSS MB |"
    )
    print("|" + "---|" * 11)
    for (strategy, size, multiplier), group in groups.items():

        def median(field: str, group: list[dict[str, Any]] = group) -> str:
            values = [r[field] for r in group if field in r]
            return f"{statistics.median(values):.2f}" if values else "-"

        calls = sum(sum(r["api_calls"].values()) for r in group)
        throttled = sum(r["throttled"] for r in group)
        share = throttled / calls if calls else 0.0
        print(
            f"| {strategy} | {size:,} | x{multiplier:g} | {len(group)} | {median('wall_s')} | "
            f"{median('x_ideal')} | {median('x_ideal_from_first_send')} | {calls} | "
            f"{throttled} ({share:.1%}) | {max(r['lost'] for r in group)} | "
            f"{max(r['peak_rss_mb'] for r in group):.0f} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
