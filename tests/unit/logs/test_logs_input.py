"""`ops logs collect` refuses bad input with exit 2 before any AWS call or host."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli.main import cli
from ops.errors import BadInput
from ops.journal import open_journal
from ops.sandbox.hosts import free_port
from ops.workflows.logs_input import (
    build_request,
    check_container,
    check_dest,
    check_path,
    check_unit,
    parse_size,
    parse_when,
)

NOW = 1_800_000_000.0


def test_when_takes_durations_iso_times_and_epochs() -> None:
    assert parse_when("2h", NOW, "--since") == NOW - 7200
    assert parse_when("30m", NOW, "--since") == NOW - 1800
    assert parse_when("1.5d", NOW, "--since") == NOW - 1.5 * 86400
    assert parse_when("@1700000000", NOW, "--since") == 1_700_000_000
    assert parse_when("2026-06-30T22:00Z", NOW, "--since") == 1_782_856_800
    assert parse_when("2026-06-30T22:00", NOW, "--since") == 1_782_856_800  # naive is UTC
    assert parse_when("2026-06-30T23:00+01:00", NOW, "--since") == 1_782_856_800
    for bad in ("yesterday", "2x", "", "@soon", "-2h"):
        with pytest.raises(BadInput, match="--since"):
            parse_when(bad, NOW, "--since")


def test_sizes_are_powers_of_1024() -> None:
    assert parse_size("200MB") == 200 * 1024**2
    assert parse_size("1.5G") == int(1.5 * 1024**3)
    assert parse_size("512KiB") == 512 * 1024
    assert parse_size("4096") == 4096
    for bad in ("lots", "10 parsecs", "-1MB", "100"):
        with pytest.raises(BadInput, match="--max-size"):
            parse_size(bad)


def test_paths_units_and_containers() -> None:
    assert check_path("/var/log/app/*.log") == "/var/log/app/*.log"
    assert check_path("/var/log/with space/ü") == "/var/log/with space/ü"
    for bad, why in (
        ("var/log", "absolute"),
        ("/var/log/../../etc/shadow", r"'\.\.'"),
        ("/var/log/..", r"'\.\.'"),
        ("/var/log/a\nb", "control"),
    ):
        with pytest.raises(BadInput, match=why):
            check_path(bad)
    assert check_path("/var/log/..hidden") == "/var/log/..hidden"  # a name, not a parent
    for good in ("docker.service", "getty@tty1.service", "sys-devices-x\\x2d1.device", "nginx*"):
        assert check_unit(good) == good
    for bad in ("a b", "-x", "$(reboot)", "unit;rm", ""):
        with pytest.raises(BadInput, match="--unit"):
            check_unit(bad)
    assert check_container("all") == "all"
    assert check_container("web_1.app-2") == "web_1.app-2"
    for bad in ("-f", "a b", "../x", "", "x" * 200):
        with pytest.raises(BadInput, match="--container"):
            check_container(bad)


def test_destination_must_be_writable(tmp_path: Path) -> None:
    assert check_dest(tmp_path / "new" / "deeper") == (tmp_path / "new" / "deeper").resolve()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(BadInput, match="not a directory"):
        check_dest(blocker / "sub")
    with pytest.raises(BadInput, match="--dest"):
        check_dest(Path("/proc/ops-logs"))


def test_window_and_transport_choices(tmp_path: Path) -> None:
    common = {
        "paths": (),
        "units": (),
        "containers": ("web", "web", "all"),
        "max_size": "1MB",
        "dest": tmp_path,
        "redact": False,
    }
    request = build_request(since="2h", until="1h", via=None, bucket="b", now=NOW, **common)
    assert (request.since, request.until, request.via) == (NOW - 7200, NOW - 3600, "s3")
    assert request.containers == ("web", "all")
    assert build_request(since="2h", until=None, via=None, bucket=None, **common).via == "ssh"
    with pytest.raises(BadInput, match="not before"):
        build_request(since="1h", until="2h", via=None, bucket="b", now=NOW, **common)
    with pytest.raises(BadInput, match="needs an S3 bucket"):
        build_request(since="1h", until=None, via="s3", bucket=None, **common)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--path", "var/log"], "must be absolute"),
        (["--path", "/var/log/../../etc"], "'..' is not allowed"),
        (["--unit", "ssh service"], "not a systemd unit name"),
        (["--container", "--rm"], "not a Docker container name"),
        (["--since", "last tuesday"], "--since 'last tuesday'"),
        (["--until", "whenever"], "--until 'whenever'"),
        (["--max-size", "huge"], "--max-size 'huge'"),
        (["--dest", "/proc/ops-logs"], "--dest /proc/ops-logs"),
        ([], "--since is required"),
    ],
)
def test_bad_input_exits_2_before_any_host(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS points at a port nobody answers: any call would fail, not exit 2 with the message."""
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    argv = ["logs", "collect", "--instance", "i-0123456789abcdef0"]
    if "--since" not in args and message != "--since is required":
        argv += ["--since", "2h"]
    result = CliRunner().invoke(cli, [*argv, *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with open_journal() as journal:
        assert journal.list_runs(kind="logs") == []


def test_resume_refuses_new_flags_and_unknown_runs() -> None:
    mixed = CliRunner().invoke(cli, ["logs", "collect", "--resume", "r-1", "--since", "1h"])
    assert mixed.exit_code == 2
    assert "drop --since" in mixed.stderr
    unknown = CliRunner().invoke(cli, ["logs", "collect", "--resume", "r-1"])
    assert unknown.exit_code == 2
    assert "no `ops logs collect` run 'r-1'" in unknown.stderr
    search = CliRunner().invoke(cli, ["logs", "search", "x"])
    assert search.exit_code == 2
    assert "no `ops logs collect` run in the journal yet" in search.stderr
