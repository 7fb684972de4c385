"""Every Molecule scenario, and ansible-lint and yamllint over playbooks and roles.

Run by the README's one test command, so role changes are checked like code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["NO_COLOR"] = "1"
    return env


def _run(*argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_yamllint_clean() -> None:
    proc = _run("yamllint", "-s", "playbooks", "molecule", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_clean() -> None:
    proc = _run("ansible-lint", "playbooks", "molecule", timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_every_role_has_a_scenario() -> None:
    roles = sorted(p.name for p in (REPO / "playbooks" / "roles").iterdir() if p.is_dir())
    assert set(roles) <= set(SCENARIOS), f"roles without a molecule/<role> scenario: {roles}"


@pytest.fixture(scope="module")
def host_images() -> None:
    """Scenarios run the sandbox's host images; build them if this is the first tier run."""
    from ops.sandbox.images import ensure_images

    ensure_images({"debian", "al2", "al2023"})


@pytest.mark.parametrize(
    "scenario",
    # each scenario its own xdist group: their instances have distinct names, so they may
    # run beside each other and beside the integration tier
    [pytest.param(s, marks=pytest.mark.xdist_group(f"molecule-{s}")) for s in SCENARIOS],
)
def test_molecule_scenario(scenario: str, host_images: None) -> None:
    """create, converge, idempotence, verify, destroy (the scenario's test_sequence)."""
    proc = _run("molecule", "test", "-s", scenario, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
