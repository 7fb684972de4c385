"""Where `ops` finds its files, `ops init`, `ops doctor` and the lazy root group."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli.main import COMMANDS, cli
from ops.project import bundled, find_project, resolve_playbook

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder outside the checkout, with no project variables set."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for var in ("OPS_PROJECT", "OPS_INVENTORIES", "OPS_ENV"):
        monkeypatch.delenv(var, raising=False)
    return folder


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_project_is_found_upwards_like_git(elsewhere: Path) -> None:
    (elsewhere / "inventories").mkdir()
    deep = elsewhere / "a" / "b"
    deep.mkdir(parents=True)
    found = find_project(deep)
    assert found.root == elsewhere.resolve()
    assert found.inventories == elsewhere.resolve() / "inventories"


def test_without_a_project_the_packaged_defaults_serve(elsewhere: Path) -> None:
    found = find_project(elsewhere)
    assert found.root is None
    assert found.inventories == bundled("inventories")
    assert (found.inventories / "sandbox" / "ops.yml").is_file()
    assert (bundled("images") / "debian" / "Dockerfile").is_file()


def test_a_packaged_example_playbook_is_found_from_any_folder(elsewhere: Path) -> None:
    found = resolve_playbook(Path("examples/small.yml"), find_project(elsewhere))
    assert found == bundled("playbooks") / "examples" / "small.yml"
    missing = resolve_playbook(Path("nowhere.yml"), find_project(elsewhere))
    assert missing == Path("nowhere.yml")


def test_project_option_without_inventories_is_exit_2_and_writes_nothing(
    elsewhere: Path,
) -> None:
    result = CliRunner().invoke(cli, ["--project", str(elsewhere), "runs", "list"])
    assert result.exit_code == 2
    assert "has no inventories/ folder" in result.output
    assert _tree(elsewhere) == []


def test_ops_project_variable_without_inventories_is_refused(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_PROJECT", str(elsewhere))
    result = CliRunner().invoke(cli, ["runs", "list"])
    assert result.exit_code == 2
    assert "OPS_PROJECT" in result.output


def test_init_writes_a_layout_that_ops_then_reads(elsewhere: Path) -> None:
    result = CliRunner().invoke(cli, ["init", str(elsewhere / "fleet")])
    assert result.exit_code == 0, result.output
    root = elsewhere / "fleet"
    for rel in (
        "inventories/staging/ops.yml",
        "inventories/production/ops.yml",
        "inventories/sandbox/ops.yml",
        "playbooks/hello.yml",
        "molecule/README.md",
        ".gitignore",
    ):
        assert (root / rel).is_file(), rel
    production = (root / "inventories/production/ops.yml").read_text()
    for key in ("region", "target_filter", "output_bucket", "alarm_names", "max_errors"):
        assert f"# {key}:" in production
    # the written settings parse, and the project is found from inside it
    shown = CliRunner().invoke(cli, ["--project", str(root), "--env", "production", "runs", "list"])
    assert shown.exit_code == 0, shown.output


def test_init_over_an_existing_layout_is_exit_2_and_writes_nothing(elsewhere: Path) -> None:
    (elsewhere / ".gitignore").write_text("mine\n")
    before = _tree(elsewhere)
    result = CliRunner().invoke(cli, ["init", str(elsewhere)])
    assert result.exit_code == 2
    assert "never overwrites" in result.output
    assert _tree(elsewhere) == before
    assert (elsewhere / ".gitignore").read_text() == "mine\n"


def test_doctor_with_nothing_set_up_names_each_missing_piece(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(elsewhere / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(elsewhere / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("PATH", str(elsewhere))  # no ssh, no ansible-playbook, no docker
    result = CliRunner().invoke(cli, ["--env", "staging", "doctor"])
    assert result.exit_code == 2
    missing = [line for line in result.output.splitlines() if line.startswith("ops: missing:")]
    pieces = {line.split(":")[2].strip() for line in missing}
    assert {"project", "aws", "ssh"} <= pieces, result.output
    assert any("ops init" in line for line in missing)
    assert any("credentials" in line.lower() for line in missing)


def test_version_verbose_says_which_folders(elsewhere: Path) -> None:
    result = CliRunner().invoke(cli, ["--version", "-v"])
    assert result.exit_code == 0
    assert "project:" in result.output
    assert "playbooks:" in result.output


def test_help_and_version_import_no_command_module() -> None:
    """The lazy group: `ops --help` lists every command from its own table."""
    probe = (
        "import sys\n"
        "from ops.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('ops.cli.', 'boto', 'ansible', 'rich')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.strip().splitlines()[-1]
    assert loaded == "['ops.cli.context', 'ops.cli.main']", loaded
    for name in COMMANDS:
        assert f"  {name} " in out.stdout


def test_completion_of_command_names_imports_no_command_module() -> None:
    probe = (
        "import sys\n"
        "from ops.cli.main import main\n"
        "try:\n    main([])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('ops.cli.', 'boto'))))\n"
    )
    env = {**os.environ, "_OPS_COMPLETE": "bash_complete", "COMP_WORDS": "ops r", "COMP_CWORD": "1"}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[:2] == ["plain,run", "plain,runs"], out.stdout
    assert lines[-1] == "['ops.cli.context', 'ops.cli.main']", lines[-1]


def test_every_lazy_entry_names_a_real_command() -> None:
    runner = CliRunner()
    for name in COMMANDS:
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_sandbox_up_without_the_extra_names_it_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ops.sandbox import fleet

    monkeypatch.setattr(fleet, "SANDBOX_EXTRA", ("moto", "fleetops_no_such_module"))
    result = CliRunner().invoke(cli, ["sandbox", "up", "--hosts", "1"])
    assert result.exit_code == 2
    assert "pip install 'fleetops[sandbox]'" in result.output
    assert not (tmp_path / "sandbox").exists()
