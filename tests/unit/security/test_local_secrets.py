"""Secrets on the operator's machine: state folder ownership and modes, masked extra vars."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli.main import cli
from ops.journal import open_journal
from ops.redact import MASK, Redactor, looks_secret, masked
from ops.transports.ansible import _write_extravars
from ops.workflows import playbook as wf

SMALL = str(Path(__file__).resolve().parents[3] / "playbooks" / "examples" / "small.yml")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_dir_is_closed_to_others_and_journal_is_0600(isolated_state: Path) -> None:
    isolated_state.chmod(0o755)
    result = CliRunner().invoke(cli, ["runs", "list"])
    assert result.exit_code == 0, result.output
    assert mode(isolated_state) == 0o700
    with open_journal() as journal:
        journal.begin_run("run", {"command": "true"}, "sandbox")
        files = list(isolated_state.glob("journal.sqlite3*"))  # the database, its -wal and -shm
        assert len(files) == 3 and {mode(p) for p in files} == {0o600}, files


def test_state_dir_owned_by_someone_else_is_refused(
    isolated_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    theirs = isolated_state / "theirs"
    theirs.mkdir()
    theirs.chmod(0o777)
    os.chown(theirs, 4242, 4242)
    monkeypatch.setenv("OPS_STATE_DIR", str(theirs))
    result = CliRunner().invoke(cli, ["runs", "list"])
    assert result.exit_code == 2, result.output
    assert "belongs to uid 4242" in result.output and "OPS_STATE_DIR" in result.output
    assert mode(theirs) == 0o777  # refused, not touched
    assert list(theirs.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("db_password", True),
        ("API_TOKEN", True),
        ("client_secret", True),
        ("ssh_key", True),
        ("passphrase", True),
        ("app_version", False),
        ("replicas", False),
    ],
)
def test_secret_looking_names(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


def test_extra_vars_are_masked_in_the_plan_and_in_messages() -> None:
    variables = {"db_password": "hunter2hunter2", "api_token": "abc123xyz", "version": "1.2"}
    assert masked(variables) == {"db_password": MASK, "api_token": MASK, "version": "1.2"}
    request = wf.PlaybookRequest(playbook=Path(SMALL), extravars=variables)
    recorded = json.dumps(request.as_dict())
    assert "hunter2hunter2" not in recorded and "abc123xyz" not in recorded
    assert '"version": "1.2"' in recorded
    text = "login failed for hunter2hunter2 with token abc123xyz (version 1.2)"
    assert (
        Redactor(variables).scrub(text)
        == f"login failed for {MASK} with token {MASK} (version 1.2)"
    )


def test_dry_run_output_masks_secret_extra_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    from ops.fleet.inventory import InventoryHost

    hosts = [InventoryHost(instance_id="i-0123456789abcdef0", ssh_host="127.0.0.1")]
    monkeypatch.setattr("ops.cli.playbook.resolve_hosts", lambda *_a, **_k: hosts)
    args = ["--output", "json", "playbook", SMALL, "--all", "--dry-run"]
    result = CliRunner().invoke(cli, [*args, "-e", "db_password=hunter2hunter2", "-e", "v=1"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["extravars"] == {"db_password": MASK, "v": "1"}
    assert "hunter2hunter2" not in result.output


def test_push_extravars_file_is_private(tmp_path: Path) -> None:
    path = _write_extravars(tmp_path, {"db_password": "x"})
    assert path is not None and mode(path) == 0o600
    assert json.loads(path.read_text()) == {"db_password": "x"}
    assert _write_extravars(tmp_path / "none", {}) is None


def test_playbook_without_targeting_refuses_naming_all(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_hosts(*_a: object, **_k: object) -> None:
        raise AssertionError("hosts were resolved without targeting")

    monkeypatch.setattr("ops.cli.playbook.resolve_hosts", no_hosts)
    result = CliRunner().invoke(cli, ["--yes", "playbook", SMALL])
    assert result.exit_code == 2, result.output
    assert "--all" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("batch", ["0", "0%", " 0 "])
def test_batch_zero_is_refused(batch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ops.fleet.inventory import InventoryHost

    hosts = [InventoryHost(instance_id=f"i-{n:017x}") for n in range(3)]
    monkeypatch.setattr("ops.cli.playbook.resolve_hosts", lambda *_a, **_k: hosts)
    result = CliRunner().invoke(cli, ["--yes", "playbook", SMALL, "--all", "--batch", batch])
    assert result.exit_code == 2, result.output
    assert "--batch" in result.output and "at least 1" in result.output


def test_a_small_percentage_of_a_small_fleet_is_one_host_a_wave() -> None:
    from ops.fleet.inventory import InventoryHost

    hosts = [InventoryHost(instance_id=f"i-{n:017x}") for n in range(3)]
    plan = wf.plan(wf.PlaybookRequest(playbook=Path(SMALL), batch="10%"), hosts)
    assert [len(w) for w in plan.waves] == [1, 1, 1]


def test_presigned_bundle_url_is_sigv4_and_lives_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.parse import parse_qs, urlsplit

    from ops import aws
    from ops.transports.ansible_pull import PRESIGN_SECONDS, presign

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    assert 60 <= PRESIGN_SECONDS <= 15 * 60
    url = presign(aws.client("s3", region="eu-west-1"), "bucket", "pull/x.tar.gz")
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == [str(PRESIGN_SECONDS)]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]


def test_pull_script_keeps_the_url_off_curls_command_line() -> None:
    from ops.transports.ansible_pull import pull_script

    url = "https://bucket.s3.amazonaws.com/pull/x.tar.gz?X-Amz-Signature=abc&X-Amz-Credential=K"
    script = pull_script(url, "0" * 64, "project/site.yml", check=False, diff=False)
    lines = script.splitlines()
    assert [ln for ln in lines if "X-Amz-Signature" in ln] == [f"ops_url='{url}'"]
    curl = next(ln for ln in lines if "curl -fsS" in ln and "bundle.tar.gz" in ln)
    assert "ops_url" not in curl and "-K -" in curl
    assert "unset ops_url" in lines
