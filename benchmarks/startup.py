"""What every `ops` call pays before it does anything: `--help`, `--version`, tab completion.

Side by side in one run: this tree, and a baseline commit extracted with
`git archive` (default: the last commit before the lazy root group), both
started by the same interpreter with the tree first on sys.path, alternating
run by run so that a busy machine slows both alike. Reports medians.

    python benchmarks/startup.py [--runs 15] [--baseline REF] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = "d5452b1"  # before the lazy group: every command module imported at start
LAUNCH = "import sys; sys.argv[0] = 'ops'; from ops.cli.main import main; main()"
CASES = {
    "python + click alone": (["-"], {}),
    "ops --version": (["--version"], {}),
    "ops --help": (["--help"], {}),
    "completion (ops r<TAB>)": (
        [],
        {"_OPS_COMPLETE": "bash_complete", "COMP_WORDS": "ops r", "COMP_CWORD": "1"},
    ),
}


def once(tree: Path, argv: list[str], extra: dict[str, str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), **extra}
    code = "import click" if argv == ["-"] else LAUNCH  # the floor: the interpreter and click
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=tree,
        env=env,
        check=True,  # a crash is not a fast start
        capture_output=True,
        timeout=60,
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        base = Path(tmp)
        archive = subprocess.run(
            ["git", "archive", args.baseline], cwd=REPO, check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
        trees = {"baseline": base, "this tree": REPO}
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.runs):
            for case, (argv, extra) in CASES.items():
                for name, tree in trees.items():
                    times.setdefault((case, name), []).append(once(tree, argv, extra))

    rows = []
    print(f"{'call':<26} {'baseline s':>11} {'this tree s':>12} {'ratio':>7}")
    for case in CASES:
        old = statistics.median(times[(case, "baseline")])
        new = statistics.median(times[(case, "this tree")])
        rows.append({"call": case, "baseline_s": old, "this_tree_s": new, "runs": args.runs})
        print(f"{case:<26} {old:>11.3f} {new:>12.3f} {new / old:>7.2f}")
    if args.json:
        args.json.write_text(json.dumps({"baseline": args.baseline, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
