"""How many ListCommandInvocations requests per second the Run Command emulator serves.

Throttling is switched off so the figure is the emulator's own ceiling. Two
clients are measured: boto3 (what the toolkit uses; signing and parsing cost
client CPU on the same machine) and a bare keep-alive HTTP client (closer to
the server's own limit). Bounded by --seconds per row; loopback only.

    python benchmarks/emulator_rps.py --seconds 5 --json out.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ops.sandbox.aws_side import AwsSandbox

BODY_PAGE = 50


def boto3_worker(sandbox: AwsSandbox, command_id: str, stop: float, out: list[float]) -> None:
    client = sandbox.client("ssm", mode="standard", max_attempts=1)
    while time.perf_counter() < stop:
        started = time.perf_counter()
        client.list_command_invocations(CommandId=command_id, MaxResults=BODY_PAGE, Details=True)
        out.append(time.perf_counter() - started)


def signed_headers(sandbox: AwsSandbox, body: str) -> dict[str, str]:
    """One SigV4 signature for the repeated request (the emulator checks every one)."""
    creds = sandbox.credentials
    request = AWSRequest(
        method="POST",
        url=sandbox.ssm_url + "/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "AmazonSSM.ListCommandInvocations",
        },
    )
    SigV4Auth(
        Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
        "ssm",
        sandbox.region,
    ).add_auth(request)
    return dict(request.headers.items())


def raw_worker(sandbox: AwsSandbox, command_id: str, stop: float, out: list[float]) -> None:
    body = json.dumps({"CommandId": command_id, "MaxResults": BODY_PAGE, "Details": True})
    headers = signed_headers(sandbox, body)
    port = sandbox.ssm_port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.perf_counter() < stop:
        started = time.perf_counter()
        conn.request("POST", "/", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        out.append(time.perf_counter() - started)
    conn.close()


def measure(kind: str, threads: int, seconds: float, run: Any) -> dict[str, Any]:
    samples: list[list[float]] = [[] for _ in range(threads)]
    stop = time.perf_counter() + seconds
    workers = [threading.Thread(target=run, args=(stop, samples[n])) for n in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    latencies = sorted(x for chunk in samples for x in chunk)
    count = len(latencies)
    return {
        "client": kind,
        "threads": threads,
        "requests": count,
        "rps": round(count / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if count else None,
        "p99_ms": round(latencies[int(count * 0.99) - 1] * 1000, 2) if count else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each row")
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--threads", default="1,4,8", help="comma-separated thread counts")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 60 or not 0 < args.instances <= 10000:
        parser.error("--seconds must be in (0, 60] and --instances in (0, 10000]")
    threads = [int(n) for n in args.threads.split(",")]

    with tempfile.TemporaryDirectory(prefix="emulator-rps-") as state:
        sandbox = AwsSandbox(Path(state), seed=1)
        sandbox.start()
        try:
            sandbox.set_throttle(enabled=False)
            # registered in the emulator only: moto's EC2 plays no part in this figure
            sandbox.admin.register(
                [
                    {"InstanceId": f"i-{n:017x}", "Tags": {"Role": "bench"}}
                    for n in range(args.instances)
                ]
            )
            client = sandbox.client("ssm")
            command_id = client.send_command(
                Targets=[{"Key": "tag:Role", "Values": ["bench"]}],
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": ["uptime"]},
                MaxConcurrency="100%",
            )["Command"]["CommandId"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                command = client.list_commands(CommandId=command_id)["Commands"][0]
                if command["CompletedCount"] == command["TargetCount"]:
                    break
                time.sleep(0.2)
            rows = []
            for count in threads:
                rows.append(
                    measure(
                        "boto3",
                        count,
                        args.seconds,
                        lambda stop, out: boto3_worker(sandbox, command_id, stop, out),
                    )
                )
                rows.append(
                    measure(
                        "raw-http",
                        count,
                        args.seconds,
                        lambda stop, out: raw_worker(sandbox, command_id, stop, out),
                    )
                )
            status = sandbox.admin.status()
        finally:
            sandbox.stop()

    print(f"ListCommandInvocations, {BODY_PAGE} per page with Details, {args.instances} hosts")
    print(f"{'client':<10}{'threads':>8}{'requests':>10}{'rps':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for row in rows:
        print(
            f"{row['client']:<10}{row['threads']:>8}{row['requests']:>10}{row['rps']:>10}"
            f"{row['p50_ms']:>10}{row['p99_ms']:>10}"
        )
    result = {
        "benchmark": "emulator_rps",
        "operation": "ListCommandInvocations",
        "page_size": BODY_PAGE,
        "instances": args.instances,
        "seconds_per_row": args.seconds,
        "emulator_rss_bytes": status.get("rss_bytes"),
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
