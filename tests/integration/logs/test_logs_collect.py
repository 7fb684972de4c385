"""`ops logs collect` on the session sandbox's container hosts, over SSM + S3 and over SSH.

Each test run writes its logs under a folder of its own on two hosts (a
Debian host and the AL2 stand-in) and removes it afterwards: a file larger
than the cap, a binary file, names with spaces and non-ASCII characters, a
file older than the window, and secrets for --redact. The hosts run no
journald and (unless another test installed it) no Docker: their manifests
must say so instead of failing.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from ops.cli.context import OpsContext
from ops.cli.logs import _hosts
from ops.cli.main import cli
from ops.cli.options import TargetArgs
from ops.config import load_settings
from ops.journal import open_journal
from ops.workflows import logs as wf
from ops.workflows.logs_input import LogRequest, build_request
from tests.support.sandbox import SandboxSession

SECRET_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_PASSWORD = "hunter2hunter2"
SECRET_BEARER = "eyJhbGciOi.payload.signature"
NAMES = {
    "app": "app.log",
    "spaced": "sub dir/rés ümé.log",
    "binary": "data.bin",
    "big": "big.log",
    "old": "old.log",
}
CAP = "200KB"


@dataclass
class Generated:
    folder: str
    hosts: list[dict[str, Any]]  # the two hosts with logs
    spare: dict[str, Any]  # a third host, for the offline case
    digests: dict[str, dict[str, str]]  # instance id -> file name -> sha256 on the host
    container_state: dict[str, str]  # instance id -> what the manifest must say of `web`


def _exec(container: str, script: str) -> str:
    done = subprocess.run(
        ["docker", "exec", container, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def _container_state(container: str) -> str:
    """Docker is not in the host image; another test may install it, so ask the host."""
    probe = "command -v docker >/dev/null || exit 3; docker inspect web >/dev/null 2>&1 || exit 4"
    code = subprocess.run(
        ["docker", "exec", container, "sh", "-c", probe], capture_output=True, timeout=60
    ).returncode
    return {
        3: "absent: docker is not installed on this host",
        4: "absent: no such container",
    }.get(code, "ok")


@pytest.fixture(scope="module")
def generated(sandbox_session: SandboxSession) -> Iterator[Generated]:
    hosts: list[dict[str, Any]] = list(sandbox_session.status["hosts"])  # type: ignore[call-overload]
    debian = next(h for h in hosts if h["platform"] == "debian")
    al2 = next(h for h in hosts if h["platform"] == "al2")
    spare = next(h for h in hosts if h not in (debian, al2))
    folder = f"/var/log/ops-logs-test-{uuid.uuid4().hex[:8]}"
    # every name here is a constant of this test (no fleet data), so a shell may write them
    script = f"""set -e
mkdir -p '{folder}/sub dir'
printf '%s\\n' start 'aws_key={SECRET_KEY}' 'password: {SECRET_PASSWORD}' \\
    'Authorization: Bearer {SECRET_BEARER}' end > '{folder}/app.log'
printf 'héllo wörld\\n' > '{folder}/sub dir/rés ümé.log'
head -c 4096 /dev/urandom > '{folder}/data.bin'
printf '\\000\\001' >> '{folder}/data.bin'
head -c 300000 /dev/zero | tr '\\0' 'x' > '{folder}/big.log'
echo 'old entry' > '{folder}/old.log'
touch -d '3 days ago' '{folder}/old.log'
"""
    digests: dict[str, dict[str, str]] = {}
    containers: dict[str, str] = {}
    try:
        for host in (debian, al2):
            _exec(host["container"], script)
            lines = _exec(
                host["container"], f"cd '{folder}' && find . -type f -exec sha256sum {{}} +"
            )
            digests[host["instance_id"]] = {
                line[66:].removeprefix("./"): line[:64] for line in lines.splitlines()
            }
            containers[host["instance_id"]] = _container_state(host["container"])
        yield Generated(folder, [debian, al2], spare, digests, containers)
    finally:
        for host in (debian, al2):
            subprocess.run(
                ["docker", "exec", host["container"], "rm", "-rf", folder],
                capture_output=True,
                timeout=60,
            )


def _collect(sandbox: SandboxSession, gen: Generated, dest: Path, *extra: str) -> Any:
    ids = [a for h in gen.hosts for a in ("--instance", h["instance_id"])]
    return CliRunner().invoke(
        cli,
        [
            "logs",
            "collect",
            *ids,
            "--since",
            "2h",
            "--path",
            gen.folder,
            "--unit",
            "docker.service",
            "--container",
            "web",
            "--max-size",
            CAP,
            "--redact",
            "--dest",
            str(dest),
            "--output",
            "json",
            *extra,
        ],
        catch_exceptions=False,
    )


def _check_host(entry: dict[str, Any], folder: Path, gen: Generated) -> None:
    iid = entry["instance_id"]
    assert entry["status"] == "ok", entry
    host_dir = folder / iid
    rel = gen.folder.lstrip("/")
    by_path = {f["path"]: f for f in entry["files"]}
    # every file listed is on disk with the sha256 the manifest (and index) gives
    for path, item in by_path.items():
        data = (host_dir / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == item["sha256"]
        assert len(data) == item["size"]
    on_host = gen.digests[iid]
    # untouched files arrive byte for byte as they were on the host
    for name in ("spaced", "binary"):
        item = by_path[f"{rel}/{NAMES[name]}"]
        assert item["sha256"] == on_host[NAMES[name]]
        assert item["source"] == f"{gen.folder}/{NAMES[name]}"
    assert by_path[f"{rel}/{NAMES['binary']}"]["kind"] == "binary"
    assert (host_dir / rel / NAMES["spaced"]).read_text(encoding="utf-8") == "héllo wörld\n"
    # outside the window, or over the cap: not there, and the cap says why
    assert f"{rel}/{NAMES['old']}" not in by_path
    assert f"{rel}/{NAMES['big']}" not in by_path
    [left] = entry["left_out"]
    assert left["path"] == f"{gen.folder}/{NAMES['big']}" and left["size"] == 300000
    assert "larger than the cap" in left["reason"]
    # redacted on the host: the secrets never left it, and the index says what was masked
    app = (host_dir / rel / NAMES["app"]).read_text()
    for secret in (SECRET_KEY, SECRET_PASSWORD, SECRET_BEARER):
        assert secret not in app
    assert "start" in app and "end" in app
    [masked] = [r for r in entry["redactions"] if r["path"] == f"{rel}/{NAMES['app']}"]
    assert masked["masked"] == {"aws_access_key": 1, "secret_assignment": 1, "bearer_token": 1}
    # no journald and no such container here: said so, not failed
    assert entry["journald"]["available"] is False and entry["journald"]["reason"]
    assert entry["containers"]["web"] == gen.container_state[iid]
    if gen.container_state[iid] == "ok":  # Docker and a `web` container on this host
        assert (host_dir / "_ops/containers/web.log").is_file()
    facts = (host_dir / "_ops/facts.txt").read_text()
    assert "== uname" in facts and "== df" in facts
    assert entry["bundle"]["sha256"] and entry["bundle"]["size"] > 0


def _index(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "index.json").read_text(encoding="utf-8")))


def test_collect_over_ssh(sandbox: SandboxSession, generated: Generated, tmp_path: Path) -> None:
    result = _collect(sandbox, generated, tmp_path, "--via", "ssh")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    folder = Path(report["folder"])
    assert folder == tmp_path / report["run_id"]
    assert {h["instance_id"] for h in report["hosts"]} == {
        h["instance_id"] for h in generated.hosts
    }
    for entry in report["hosts"]:
        _check_host(entry, folder, generated)
    assert _index(folder)["hosts"] == report["hosts"]
    # the bundles left on the hosts were removed once verified
    for host in generated.hosts:
        left = _exec(host["container"], "ls /tmp | grep -c '^ops-logs-' || true")
        assert left.strip() == "0"
    search = CliRunner().invoke(cli, ["logs", "search", "héllo", "--run", report["run_id"]])
    assert search.exit_code == 0
    lines = sorted(search.stdout.splitlines())
    expected = sorted(
        f"{h['instance_id']}:{generated.folder}/{NAMES['spaced']}:1:héllo wörld"
        for h in generated.hosts
    )
    assert lines == expected
    regex = CliRunner().invoke(cli, ["logs", "search", "-E", r"^aws_key=\[REDACTED"])
    assert len(regex.stdout.splitlines()) == 2


def test_collect_over_s3_with_an_offline_host(
    sandbox: SandboxSession, generated: Generated, tmp_path: Path
) -> None:
    offline = generated.spare["instance_id"]
    fault = sandbox.ops("sandbox", "fault", "set", "agent_offline", "--instance", offline)
    assert fault.returncode == 0, fault.stderr
    try:
        result = _collect(sandbox, generated, tmp_path, "--via", "s3", "--instance", offline)
    finally:
        sandbox.ops("sandbox", "fault", "clear")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    folder = Path(report["folder"])
    entries = {h["instance_id"]: h for h in report["hosts"]}
    assert entries[offline]["status"] == "unreachable"
    assert "SSM agent" in entries[offline]["message"]
    for host in generated.hosts:
        _check_host(entries[host["instance_id"]], folder, generated)
    # nothing is left in the bucket once verified at home
    s3 = boto3.client("s3", region_name="us-east-1")
    listed = s3.list_objects_v2(
        Bucket="fleetops-sandbox-output", Prefix=f"ops/logs/{report['run_id']}/"
    )
    assert listed.get("KeyCount", 0) == 0


def _s3_request(generated: Generated, dest: Path, bucket: str | None) -> LogRequest:
    """The generated folder over S3, the last two hours: what the in-process tests collect."""
    return build_request(
        since="2h",
        until=None,
        paths=(generated.folder,),
        units=(),
        containers=(),
        max_size=CAP,
        dest=dest,
        via="s3",
        redact=False,
        bucket=bucket,
    )


def _steps(run_id: str) -> list[Any]:
    with open_journal() as journal:
        return journal.steps(run_id)


def test_an_interrupted_collection_resumes_without_fetching_twice(
    sandbox: SandboxSession,
    generated: Generated,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stopped three ways - no disk, a cancel after the first fetch, then finished by
    `--resume` - each host is built once and fetched once."""
    settings = load_settings()
    request = _s3_request(generated, tmp_path, settings.output_bucket)
    ids = tuple(h["instance_id"] for h in generated.hosts)
    hosts = _hosts(OpsContext(), TargetArgs(instances=ids), "s3")
    assert {h.instance_id for h in hosts} == set(ids)
    with open_journal() as journal:
        run = wf.begin(journal, request, hosts, settings.env)
        real_usage = wf.shutil.disk_usage
        with monkeypatch.context() as patch:
            patch.setattr(wf.shutil, "disk_usage", lambda p: real_usage(p)._replace(free=1))
            with pytest.raises(wf.NotEnoughDisk, match=f"--resume {run.id}"):
                wf.collect(run, request, hosts, settings, journal)
        cancel = threading.Event()
        listener = wf.Listener(fetched=lambda _iid, _status: cancel.set())
        first = wf.collect(
            run, request, hosts, settings, journal, listener=listener, cancel=cancel, workers=1
        )
    assert first.status == "cancelled"
    assert sorted(h.status for h in first.hosts) == ["not_run", "ok"]
    result = CliRunner().invoke(cli, ["logs", "collect", "--resume", run.id, "--output", "json"])
    assert result.exit_code == 0, result.output
    final = json.loads(result.stdout)
    assert [h["status"] for h in final["hosts"]] == ["ok", "ok"]
    for entry in final["hosts"]:
        assert (
            Path(final["folder"]) / entry["instance_id"] / generated.folder.lstrip("/")
        ).is_dir()
    steps = _steps(run.id)
    for iid in ids:
        builds = [s for s in steps if s.host == iid and s.phase == "build"]
        fetches = [s for s in steps if s.host == iid and s.phase == "fetch"]
        assert [s.status for s in builds] == ["ok"]
        assert [s.status for s in fetches] == ["ok"]
        assert fetches[0].detail["fetched"] is True
        assert fetches[0].detail["sha256"] == builds[0].detail["sha256"]


def test_a_bundle_that_changed_in_transit_is_fetched_again_then_reported(
    sandbox: SandboxSession, generated: Generated, tmp_path: Path
) -> None:
    settings = load_settings()
    request = _s3_request(generated, tmp_path, settings.output_bucket)
    hosts = _hosts(OpsContext(), TargetArgs(instances=(generated.hosts[0]["instance_id"],)), "s3")
    s3 = boto3.client("s3", region_name="us-east-1")
    with open_journal() as journal:
        run = wf.begin(journal, request, hosts, settings.env)

        def spoil(iid: str, status: str) -> None:
            prefix = f"{settings.output_prefix}logs/{run.id}/{iid}"
            for item in s3.list_objects_v2(Bucket=settings.output_bucket, Prefix=prefix)[
                "Contents"
            ]:
                s3.put_object(Bucket=settings.output_bucket, Key=item["Key"], Body=b"not it")

        report = wf.collect(
            run, request, hosts, settings, journal, listener=wf.Listener(built=spoil)
        )
    [entry] = report.hosts
    assert entry.status == "failed"
    assert "after 2 downloads" in entry.message
    assert report.exit_code == 1
    assert not (report.folder / entry.instance_id).exists()
