"""A ten-task playbook on six sandbox hosts, push over SSH vs pull over SSM.

Both modes run against the same sandbox fleet (`ops sandbox up`, private
state folder): push through ansible-runner over SSH, pull through the Run
Command emulator, which runs the pull script in each container (curl from
moto's S3, sha256 check, `ansible-playbook -c local`). The first pull also
installs ansible-core from Debian's packages on every host; it is reported
on its own line and left out of the steady-state figures. Beside the
figures the script prints the per-task overhead users report for Ansible's
aws_ssm connection plugin; those numbers are quoted from the linked reports,
not measured here (no AWS account can be reached from the sandbox).

    .venv/bin/python benchmarks/playbook.py [--hosts 6] [--rounds 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from ops.config import Settings
from ops.fleet.inventory import InventoryHost
from ops.transports.ansible import OK, PlaybookResult, PushOptions, push
from ops.transports.ansible_pull import PullOptions, build_bundle, pull, stage
from ops.transports.ssm import open_transport

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


def _check(result: PlaybookResult) -> None:
    if any(h.status != OK for h in result.hosts):
        print(json.dumps(result.as_dict(), indent=2), file=sys.stderr)
        raise SystemExit(1)


def _fleet_hosts() -> tuple[list[InventoryHost], Path]:
    from ops.sandbox.state import SandboxState, state_file

    state = SandboxState.load(state_file())
    assert state is not None
    hosts = [
        InventoryHost(
            instance_id=h.instance_id,
            name=h.name,
            role=h.role,
            env="sandbox",
            ssh_host="127.0.0.1",
            ssh_port=h.ssh_port,
            ssh_user="root",
            extra_vars={"ansible_python_interpreter": "/usr/bin/python3"},
        )
        for h in state.hosts
    ]
    return hosts, Path(state.key_path)


def measure(rounds: int, forks: int) -> tuple[list[float], float, list[float]]:
    """Push and pull on the running sandbox; pull's first round (the install) kept apart."""
    hosts, key = _fleet_hosts()
    work = Path(tempfile.mkdtemp(prefix="ops-bench-"))
    options = PushOptions(ssh_key=str(key), known_hosts=key.parent / "known_hosts", forks=forks)
    push_walls: list[float] = []
    for round_ in range(rounds):
        result = push(PLAYBOOK, hosts, work / f"push-{round_}", options)
        _check(result)
        push_walls.append(result.elapsed)
    settings = Settings(output_bucket="fleetops-sandbox-output")
    transport = open_transport(settings)
    assert transport.s3 is not None
    bundle = build_bundle(PLAYBOOK, {}, hosts, {})
    _key, url = stage(transport.s3, "fleetops-sandbox-output", "ops/", bundle)
    pull_options = PullOptions(concurrency=forks)
    pull_walls: list[float] = []
    for _round in range(rounds + 1):
        result = pull(
            transport, url, bundle, hosts, pull_options, "fleetops-sandbox-output", "ops/"
        )
        _check(result)
        pull_walls.append(result.elapsed)
    shutil.rmtree(work, ignore_errors=True)
    return push_walls, pull_walls[0], pull_walls[1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)

    from ops.sandbox import fleet
    from ops.sandbox.spec import build_spec

    base = Path(tempfile.mkdtemp(prefix="ops-bench-sandbox-"))
    os.environ["OPS_STATE_DIR"] = str(base / "state")
    os.environ["OPS_INVENTORIES"] = str(base / "inventories")
    shutil.copytree(REPO / "inventories", base / "inventories")
    try:
        fleet.up(build_spec(None, f"debian:{args.hosts}", 0, 0), echo=lambda _m: None)
        os.environ.update(fleet.env())
        push_walls, pull_first, pull_walls = measure(args.rounds, max(args.hosts, 1))
    finally:
        fleet.down(echo=lambda _m: None)
        shutil.rmtree(base, ignore_errors=True)

    push_median = statistics.median(push_walls)
    pull_median = statistics.median(pull_walls)
    results = {
        "hosts": args.hosts,
        "tasks": TASKS,
        "rounds": args.rounds,
        "push_ssh_wall_s": [round(w, 2) for w in push_walls],
        "push_ssh_wall_median_s": round(push_median, 2),
        "push_ssh_per_task_s": round(push_median / TASKS, 3),
        "pull_ssm_first_run_with_install_s": round(pull_first, 2),
        "pull_ssm_wall_s": [round(w, 2) for w in pull_walls],
        "pull_ssm_wall_median_s": round(pull_median, 2),
        "pull_ssm_per_task_s": round(pull_median / TASKS, 3),
        "aws_ssm_connection_plugin_reported": AWS_SSM_REPORTS,
    }
    print(f"ten-task playbook on {args.hosts} sandbox hosts, {args.rounds} rounds (median)")
    print(f"{'mode':<40}{'wall':>10}{'per task':>12}")
    print(f"{'push over SSH (measured)':<40}{push_median:>8.2f} s{push_median / TASKS:>10.3f} s")
    print(f"{'pull over SSM (measured)':<40}{pull_median:>8.2f} s{pull_median / TASKS:>10.3f} s")
    print(f"{'pull over SSM, first run + install':<40}{pull_first:>8.2f} s{'-':>12}")
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
