"""Push a ten-task playbook over SSH to six sandbox hosts: wall time and time per task.

Pull over SSM is not built yet, so only push is measured. Beside the figures
the script prints the per-task overhead users report for Ansible's aws_ssm
connection plugin; those numbers are quoted from the linked reports, not
measured here (no AWS account can be reached from the sandbox).

    .venv/bin/python benchmarks/playbook.py [--hosts 6] [--rounds 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

from ops.fleet.inventory import InventoryHost
from ops.sandbox.hosts import HostSpec, free_ports, start_hosts, stop_hosts
from ops.sandbox.keys import ensure_keypair
from ops.transports.ansible import OK, PushOptions, push

REPO = Path(__file__).resolve().parents[1]
PLAYBOOK = REPO / "playbooks" / "examples" / "ten_tasks.yml"
TASKS = 10

# Reported, not measured: what users of the aws_ssm connection plugin wrote.
AWS_SSM_REPORTS = [
    {
        "source": "https://github.com/ansible-collections/amazon.aws/issues/2636",
        "quote": "setting up the SSM connection takes about 3 s for each task; "
        "a 12 min playbook over SSH took 24 min over SSM (2x)",
        "per_task_overhead_s": 3.0,
    },
    {
        "source": "https://github.com/ansible-collections/community.aws/issues/1853",
        "quote": "10 s to run a file task that changes nothing; at least 4x slower than SSH "
        "(one SSM session opened and closed per task)",
        "per_task_overhead_s": 10.0,
    },
    {
        "source": "https://github.com/ansible-collections/community.aws/issues/1895",
        "quote": "every file, including each task's module payload, goes through S3",
        "per_task_overhead_s": None,
    },
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="ops-bench-"))
    key_dir = work / "keys"
    label = f"bench{uuid.uuid4().hex[:6]}"
    ssh_ports, app_ports = free_ports(args.hosts), free_ports(args.hosts)
    specs = [
        HostSpec(name=f"b{i}", platform="debian", role="bench", ssh_port=s, app_port=a)
        for i, (s, a) in enumerate(zip(ssh_ports, app_ports, strict=True), start=1)
    ]
    walls: list[float] = []
    try:
        running = start_hosts(specs, key_dir=key_dir, label=label)
        hosts = [
            InventoryHost(
                instance_id=f"i-{0xB0000000 + i:017x}",
                name=h.name,
                role=h.role,
                ssh_host="127.0.0.1",
                ssh_port=h.ssh_port,
                ssh_user="root",
                extra_vars={"ansible_python_interpreter": "/usr/bin/python3"},
            )
            for i, h in enumerate(running, start=1)
        ]
        options = PushOptions(
            ssh_key=str(ensure_keypair(key_dir).private_path),
            known_hosts=key_dir / "known_hosts",
            forks=max(args.hosts, 1),
        )
        for round_ in range(args.rounds):
            result = push(PLAYBOOK, hosts, work / f"round-{round_}", options)
            if any(h.status != OK for h in result.hosts):
                print(json.dumps(result.as_dict(), indent=2), file=sys.stderr)
                return 1
            walls.append(result.elapsed)
    finally:
        stop_hosts(label)

    median = statistics.median(walls)
    results = {
        "hosts": args.hosts,
        "tasks": TASKS,
        "rounds": args.rounds,
        "push_ssh_wall_s": [round(w, 2) for w in walls],
        "push_ssh_wall_median_s": round(median, 2),
        "push_ssh_per_task_s": round(median / TASKS, 3),
        "pull_ssm": "not built",
        "aws_ssm_connection_plugin_reported": AWS_SSM_REPORTS,
    }
    print(f"ten-task playbook on {args.hosts} sandbox hosts, {args.rounds} rounds")
    print(f"{'mode':<28}{'wall (median)':>16}{'per task':>12}")
    print(f"{'push over SSH (measured)':<28}{median:>14.2f} s{median / TASKS:>10.3f} s")
    print(f"{'pull over SSM':<28}{'not built':>16}")
    print("aws_ssm connection plugin, per-task overhead as users report it (quoted):")
    for report in AWS_SSM_REPORTS:
        overhead = report["per_task_overhead_s"]
        shown = f"~{overhead:.0f} s/task" if overhead else "-"
        print(f"  {shown:<14} {report['quote']}  <{report['source']}>")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
