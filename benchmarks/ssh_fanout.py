"""`ops run --via ssh` on N sandbox hosts beside Ansible's ad-hoc run and a bare paramiko pool.

One private sandbox of N Debian container hosts (sshd on loopback) serves
every contender; the command is `hostname`, and each contender's answers are
checked against the hosts' names. Each contender is a fresh process, timed
from its start to its exit, as an operator would wait for it:

- bare: a paramiko thread pool written here (N threads: connect, exec, read,
  close), host keys checked against the known_hosts `ops` manages; the floor.
- ops: `ops --yes --output json run --via ssh` (discovery through EC2 and SSM,
  the journal, the host-side record of each command).
- ansible: `ansible all -m command -a hostname -f N`, strict host-key
  checking against the same known_hosts, its default ssh arguments with a
  fresh ControlPath folder per run (so no run inherits another's masters).

Rounds rotate the order; medians are reported with ops' ratios to both.
Every contender runs with the same bytecode cache (PYTHONPYCACHEPREFIX, a
folder of the run's own) and one untimed run of each fills it first: an
installed `ops` has its modules compiled at install, and a checkout run under
PYTHONDONTWRITEBYTECODE would otherwise compile every module of `ops` (not
the few of the bare pool) on every call.
"fan-out s" is the part after start-up: for ops the journalled run (the
intents written to the run's end: connect, run, collect, record), for the
bare pool its thread pool alone; Ansible's is not separable (-).

"CPU s" is user+sys of the contender's process and its children; "machine
s" is the CPU every core of the machine spent while it ran (/proc/stat): the
hosts' sshd and what it starts, moto, the contender. On two cores the sandbox
saturates, and the wall follows the machine's CPU more than the contender's.
With --baseline REF, `ops` from that commit (a `git archive` of it, on
PYTHONPATH, the same interpreter) runs beside this tree's in the same rounds.

    .venv/bin/python benchmarks/ssh_fanout.py [--hosts 30] [--rounds 3] [--baseline REF]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# wall s, the answers, fan-out s, CPU s, machine CPU s
Outcome = tuple[float, set[str], float, float, float]


def bare_pool(targets: list[dict[str, Any]], key: str, known_hosts: str) -> dict[str, str]:
    """hostname on every target from a pool of one thread per host: the floor."""
    import paramiko

    pkey = paramiko.PKey.from_path(key)

    def one(target: dict[str, Any]) -> tuple[str, str]:
        client = paramiko.SSHClient()
        client.load_host_keys(known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                "127.0.0.1",
                port=int(target["port"]),
                username="root",
                pkey=pkey,
                allow_agent=False,
                look_for_keys=False,
                timeout=30,
            )
            _in, out, _err = client.exec_command("hostname")
            return target["name"], out.read().decode().strip()
        finally:
            client.close()

    started = time.monotonic()
    with cf.ThreadPoolExecutor(max_workers=len(targets)) as pool:
        found = dict(pool.map(one, targets))
    found["\0fan_out_s"] = f"{time.monotonic() - started:.4f}"
    return found


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has been busy since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _timed(
    argv: list[str], env: dict[str, str], cwd: Path = REPO, **kwargs: Any
) -> tuple[float, str, float, float]:
    """Wall, CPU (user+sys of the process and its children) and the whole machine's CPU
    (sshd in the hosts, moto, everything) of one call, and its stdout."""
    busy = machine_busy_s()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=900, **kwargs
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    machine = machine_busy_s() - busy
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:4]} exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, done.stdout, cpu, machine


def run_bare(targets: list[dict[str, Any]], env: dict[str, str]) -> Outcome:
    wall, out, cpu, machine = _timed(
        [sys.executable, __file__, "--bare"], env, input=json.dumps(targets)
    )  # fmt: skip
    found = json.loads(out)
    inner = float(found.pop("\0fan_out_s"))
    return wall, set(found.values()), inner, cpu, machine


def run_ops(env: dict[str, str], hosts: int, tree: Path = REPO) -> Outcome:
    """`ops` from this checkout, or from another tree (a baseline) by PYTHONPATH."""
    if tree != REPO:
        env = {**env, "PYTHONPATH": str(tree)}
    wall, out, cpu, machine = _timed(
        [sys.executable, "-m", "ops", "--yes", "--output", "json", "run", "--target",
         "Env=sandbox", "--via", "ssh", "--concurrency", str(hosts), "--", "hostname"],
        env,
        cwd=tree,
    )  # fmt: skip
    results = json.loads(out)["results"]
    assert all(r["status"] == "Success" for r in results), results
    from ops.journal import open_journal

    with open_journal() as journal:  # the journalled part: intents to the run's end
        run = journal.list_runs(limit=1, kind="run")[0]
    inner = (run.ended_at or run.started_at) - run.started_at
    return wall, {r["stdout"].strip() for r in results}, inner, cpu, machine


def run_ansible(inventory: Path, env: dict[str, str], hosts: int, work: Path) -> Outcome:
    control = Path(tempfile.mkdtemp(prefix="cp-", dir=work))
    env = {**env, "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control)}
    wall, out, cpu, machine = _timed(
        [str(BIN / "ansible"), "all", "-i", str(inventory), "-m", "command", "-a", "hostname",
         "-f", str(hosts), "-o"],
        env,
    )  # fmt: skip
    names = set()
    for line in out.splitlines():
        # one line per host with -o:  HOST | CHANGED | rc=0 | (stdout) NAME
        if "(stdout)" in line:
            names.add(line.rsplit("(stdout)", 1)[1].strip())
    return wall, names, -1.0, cpu, machine  # fan-out not separable from its start-up


def _inventory(path: Path, targets: list[dict[str, Any]], key: str, known: str) -> None:
    lines = ["[fleet]"]
    for t in targets:
        lines.append(f"{t['name']} ansible_host=127.0.0.1 ansible_port={t['port']}")
    lines += [
        "[fleet:vars]",
        "ansible_user=root",
        f"ansible_ssh_private_key_file={key}",
        f"ansible_ssh_common_args='-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes'",
        "ansible_python_interpreter=/usr/bin/python3",
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run ops from this commit (git archive), side by side in the same rounds",
    )
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare:  # the child process of the bare contender
        targets = json.loads(sys.stdin.read())
        print(json.dumps(bare_pool(targets, os.environ["OPS_SSH_KEY"], os.environ["KNOWN"])))
        return 0

    from ops.config import known_hosts_path
    from ops.sandbox import fleet
    from ops.sandbox import hosts as hosts_module
    from ops.sandbox.spec import build_spec
    from ops.sandbox.state import SandboxState, state_file

    base = Path(tempfile.mkdtemp(prefix="ops-bench-sshfan-"))
    os.environ["OPS_STATE_DIR"] = str(base / "state")
    os.environ["OPS_INVENTORIES"] = str(base / "inventories")
    shutil.copytree(REPO / "inventories", base / "inventories")
    names = ["bare", "ops", "ansible"]
    if args.baseline:
        names.insert(1, f"ops@{args.baseline}")
        tree = base / "baseline"
        tree.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.baseline], cwd=REPO, check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    walls: dict[str, list[float]] = {name: [] for name in names}
    inner: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    machines: dict[str, list[float]] = {name: [] for name in names}
    try:
        # 30 hosts starting 16 at a time on a busy 2-core machine can take longer than
        # the 90 s a test allows a host to answer SSH; the benchmark waits longer
        hosts_module.READY_TIMEOUT_S = max(hosts_module.READY_TIMEOUT_S, 300.0)
        started = time.monotonic()
        fleet.up(build_spec(None, f"debian:{args.hosts}", 0, 0), echo=lambda _m: None)
        up_s = time.monotonic() - started
        os.environ.update(fleet.env())
        state = SandboxState.load(state_file())
        assert state is not None
        targets = [{"name": h.name, "port": h.ssh_port} for h in state.hosts]
        expected = {h.name for h in state.hosts}
        known = str(known_hosts_path())
        env = {**os.environ, "KNOWN": known, "ANSIBLE_HOST_KEY_CHECKING": "True"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
        inventory = base / "hosts.ini"
        _inventory(inventory, targets, os.environ["OPS_SSH_KEY"], known)
        contenders: dict[str, Callable[[], Outcome]] = {
            "bare": lambda: run_bare(targets, env),
            "ops": lambda: run_ops(env, args.hosts),
            "ansible": lambda: run_ansible(inventory, env, args.hosts, base),
        }
        if args.baseline:
            contenders[names[1]] = lambda: run_ops(env, args.hosts, tree)
        order = names
        for name in order:  # untimed: fills the bytecode cache and checks the answers
            if contenders[name]()[1] != expected:
                print(f"{name}: answers differ from the hosts (warm-up)")
                return 1
        for round_ in range(args.rounds):
            turn = round_ % len(order)
            for name in order[turn:] + order[:turn]:
                wall, answers, fan_out, cpu, machine = contenders[name]()
                if answers != expected:
                    print(f"{name}: answers differ from the hosts: {sorted(answers)[:5]}...")
                    return 1
                walls[name].append(wall)
                inner[name].append(fan_out)
                cpus[name].append(cpu)
                machines[name].append(machine)
    finally:
        fleet.down(echo=lambda _m: None)
        shutil.rmtree(base, ignore_errors=True)

    medians = {name: statistics.median(values) for name, values in walls.items()}
    rows: list[dict[str, Any]] = [
        {
            "contender": name,
            "wall_s": [round(v, 3) for v in walls[name]],
            "median_s": round(medians[name], 3),
            "x_bare": round(medians[name] / medians["bare"], 2),
            "fan_out_s": [round(v, 3) for v in inner[name]] if name != "ansible" else None,
            "fan_out_median_s": (
                round(statistics.median(inner[name]), 3) if name != "ansible" else None
            ),
            "cpu_s": [round(v, 3) for v in cpus[name]],
            "cpu_median_s": round(statistics.median(cpus[name]), 3),
            "machine_cpu_s": [round(v, 3) for v in machines[name]],
            "machine_cpu_median_s": round(statistics.median(machines[name]), 3),
        }
        for name in walls
    ]
    print(f"hostname on {args.hosts} hosts over SSH, {args.rounds} rounds, median wall "
          f"(sandbox up took {up_s:.0f} s)")  # fmt: skip
    width = max(10, *(len(name) + 2 for name in names))
    print(f"{'contender':<{width}}{'median s':>10}{'x bare':>8}{'fan-out s':>11}{'CPU s':>8}"
          f"{'machine s':>11}   rounds")  # fmt: skip
    for row in rows:
        rounds = " ".join(f"{v:.2f}" for v in row["wall_s"])
        fan_out = row["fan_out_median_s"]
        shown = "-" if fan_out is None else f"{fan_out:.2f}"
        print(f"{row['contender']:<{width}}{row['median_s']:>10.2f}{row['x_bare']:>8.2f}"
              f"{shown:>11}{row['cpu_median_s']:>8.2f}{row['machine_cpu_median_s']:>11.2f}"
              f"   {rounds}")  # fmt: skip
    fan = statistics.median(inner["ops"]) / statistics.median(inner["bare"])
    print(f"fan-out alone (ops: the journalled run; bare: its pool): ops / bare {fan:.2f}")
    speedup = medians["ansible"] / medians["ops"]
    print(f"ops / bare: {medians['ops'] / medians['bare']:.2f} (goal <= 1.2); "
          f"ansible / ops: {speedup:.1f} (goal >= 5)")  # fmt: skip
    if args.baseline:
        old = walls[names[1]]
        pairs = [new / was for new, was in zip(walls["ops"], old, strict=True)]
        print(f"ops / {names[1]}: {medians['ops'] / medians[names[1]]:.3f} (medians); "
              f"per round {' '.join(f'{p:.2f}' for p in pairs)}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "hosts": args.hosts,
            "rounds": args.rounds,
            "rows": rows,
            "ops_over_bare": round(medians["ops"] / medians["bare"], 2),
            "ops_over_bare_fan_out": round(fan, 2),
            "ansible_over_ops": round(speedup, 2),
            "baseline": args.baseline,
        }
        args.json.write_text(json.dumps(body, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
