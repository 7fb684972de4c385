"""Parsing a DescribeInstances page: botocore's timestamp parser beside ops.aws_timestamps.

One page of N instances (four timestamps each: launch, network attachment,
volume attachment, usage-operation update, as EC2 sends them) is parsed by an
EC2 client of `ops.aws` whose HTTP send is short-circuited, so only the
response parsing is timed; the two parsers alternate round by round in one
process. No sandbox and no network.

    .venv/bin/python benchmarks/timestamps.py [--instances 1000] [--rounds 7] [--json PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_INSTANCE = (
    "<item><instanceId>i-{n:017x}</instanceId>"
    "<launchTime>2026-12-05T10:00:00.000Z</launchTime>"
    "<networkInterfaceSet><item><attachment><attachTime>2026-12-05T10:00:00.000Z</attachTime>"
    "</attachment></item></networkInterfaceSet>"
    "<blockDeviceMapping><item><deviceName>/dev/xvda</deviceName><ebs>"
    "<attachTime>2026-12-05T10:00:01.000Z</attachTime></ebs></item></blockDeviceMapping>"
    "<usageOperationUpdateTime>2026-12-05T10:00:00.000Z</usageOperationUpdateTime></item>"
)


def page(instances: int) -> bytes:
    items = "".join(
        f"<item><reservationId>r-{n:017x}</reservationId><instancesSet>"
        f"{_INSTANCE.format(n=n)}</instancesSet></item>"
        for n in range(instances)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        f"<requestId>r</requestId><reservationSet>{items}</reservationSet>"
        "</DescribeInstancesResponse>"
    ).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "benchmark")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_ENDPOINT_URL_EC2", None)

    from botocore.awsrequest import AWSResponse
    from botocore.utils import parse_timestamp
    from urllib3.response import HTTPResponse

    from ops import aws, aws_timestamps

    body = page(args.instances)
    ec2 = aws.client("ec2", region="us-east-1", operations=("DescribeInstances",))
    ec2.meta.events.register(
        "before-send.ec2.DescribeInstances",
        lambda **_kw: AWSResponse(
            "https://ec2.us-east-1.amazonaws.com/",
            200,
            {},
            HTTPResponse(body=io.BytesIO(body), preload_content=False),
        ),
    )
    factory = aws.session(None, "us-east-1").get_component("response_parser_factory")
    contenders: dict[str, Callable[[Any], Any]] = {
        "botocore (dateutil)": parse_timestamp,
        "ops.aws_timestamps": aws_timestamps.parse,
    }
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(args.rounds):
        names = list(contenders)
        for name in names[round_ % 2 :] + names[: round_ % 2]:
            factory.set_parser_defaults(timestamp_parser=contenders[name])
            started = time.process_time()
            answer = ec2.describe_instances()
            cpu[name].append(time.process_time() - started)
            if len(answer["Reservations"]) != args.instances:
                print(f"{name}: {len(answer['Reservations'])} reservations parsed")
                return 1
    medians = {name: statistics.median(values) for name, values in cpu.items()}
    base = medians["botocore (dateutil)"]
    print(f"one DescribeInstances page of {args.instances} instances "
          f"({4 * args.instances} timestamps), CPU s to parse, {args.rounds} rounds")  # fmt: skip
    print(f"{'parser':<22}{'median s':>10}{'ratio':>8}   rounds")
    for name, values in cpu.items():
        rounds = " ".join(f"{v:.3f}" for v in values)
        print(f"{name:<22}{medians[name]:>10.3f}{medians[name] / base:>8.2f}   {rounds}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "instances": args.instances,
                    "rounds": args.rounds,
                    "cpu_s": cpu,
                    "median_s": medians,
                    "ratio": medians["ops.aws_timestamps"] / base,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
