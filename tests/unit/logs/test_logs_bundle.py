"""The on-host builder, the unpacker and the answer parser, on this machine.

journalctl and docker are faked by scripts on PATH (the boundary): they
print what they were asked, so the tests see the window and names reach
them as separate arguments.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from ops.errors import BadInput
from ops.workflows import logs_host
from ops.workflows.logs_input import LogRequest
from ops.workflows.logs_remote import BadAnswer, parse_answer, ssh_command, ssm_script
from ops.workflows.logs_store import MANIFEST, BundleError, search, unpack

FAKE_JOURNALCTL = """#!/bin/sh
# a journal with entries at 1000, 5000 and 9000 (epoch seconds); prints those in the window
since=0; until=99999; unit=
for arg in "$@"; do
  case "$arg" in
    --since=@*) since=${arg#--since=@} ;;
    --until=@*) until=${arg#--until=@} ;;
    --unit=*) unit=${arg#--unit=} ;;
  esac
done
for t in 1000 5000 9000; do
  if [ "$t" -ge "$since" ] && [ "$t" -le "$until" ]; then echo "$t $unit entry"; fi
done
"""

FAKE_DOCKER = """#!/bin/sh
case "$1" in
  ps) printf 'web\\nworker\\n' ;;
  inspect) [ "$5" = web ] || [ "$5" = worker ] || exit 1; echo id ;;
  logs) shift; for a in "$@"; do echo "arg:$a"; done ;;
esac
"""


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("journalctl", FAKE_JOURNALCTL), ("docker", FAKE_DOCKER)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return bindir


def test_journal_keeps_to_the_window_per_unit(fakes: Path, tmp_path: Path) -> None:
    notes: dict[str, object] = {}
    work = tmp_path / "work"
    made = logs_host.journal(
        ["nginx.service", "getty@tty1.service"], 4000, 8000, str(work), notes, (str(tmp_path),)
    )
    assert [name for name, _ in made] == [
        "_ops/journal/nginx.service.log",
        "_ops/journal/getty@tty1.service.log",
    ]
    assert Path(made[0][1]).read_text() == "5000 nginx.service entry\n"
    assert Path(made[1][1]).read_text() == "5000 getty@tty1.service entry\n"
    assert notes["journald"] == {
        "available": True,
        "units": {"nginx.service": "ok", "getty@tty1.service": "ok"},
    }


def test_a_host_without_a_journal_says_so(
    fakes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes: dict[str, object] = {}
    assert logs_host.journal(["x.service"], 0, 1, str(tmp_path), notes, ("/nonexistent",)) == []
    assert notes["journald"] == {"available": False, "reason": "no journal on this host"}
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    logs_host.journal(["x.service"], 0, 1, str(tmp_path), notes, (str(tmp_path),))
    assert notes["journald"] == {"available": False, "reason": "journalctl is not installed"}


def test_containers_named_and_all(
    fakes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes: dict[str, object] = {}
    made = logs_host.containers(["nope", "all"], 0, 3600, str(tmp_path), notes)
    assert notes["containers"] == {
        "nope": "absent: no such container",
        "web": "ok",
        "worker": "ok",
    }
    text = Path(dict(made)["_ops/containers/web.log"]).read_text().splitlines()
    assert text == [
        "arg:--timestamps",
        "arg:--since",
        "arg:1970-01-01T00:00:00Z",
        "arg:--until",
        "arg:1970-01-01T01:00:00Z",
        "arg:--",
        "arg:web",
    ]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    logs_host.containers(["web"], 0, 1, str(tmp_path), notes)
    assert notes["containers"] == {"web": "absent: docker is not installed on this host"}


def _touch(path: Path, size: int, mtime: float, data: bytes | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if data is not None else b"x" * size)
    os.utime(path, (mtime, mtime))


def test_window_cap_and_what_was_left_out(
    tmp_path: Path, fakes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the facts count against the cap too; `df` alone grows with every mount on this machine
    monkeypatch.setattr(logs_host, "FACTS", (("uname", ["uname", "-s"]),))
    now = time.time()
    logs = tmp_path / "logs"
    _touch(logs / "newest.log", 3000, now - 10)
    _touch(logs / "middle.log", 3000, now - 20)
    _touch(logs / "oldest.log", 3000, now - 30)
    _touch(logs / "huge.log", 50_000, now - 5)
    _touch(logs / "before.log", 10, now - 7200)
    _touch(logs / "after.log", 10, now + 7200)
    (logs / "link.log").symlink_to("/etc/hostname")
    job = {
        "since": now - 3600,
        "until": now + 60,
        "paths": [str(logs)],
        "units": [],
        "containers": [],
        "max_size": 9000,
        "redact": False,
    }
    work = tmp_path / "work"
    work.mkdir()
    manifest, members = logs_host.build(job, str(work))
    sources = {f["source"] for f in manifest["files"]}
    assert str(logs / "newest.log") in sources and str(logs / "middle.log") in sources
    for absent in ("oldest.log", "huge.log", "before.log", "after.log", "link.log"):
        assert str(logs / absent) not in sources
    left = manifest["left_out"]
    assert [item["path"] for item in left] == [str(logs / "oldest.log"), str(logs / "huge.log")]
    assert left[0]["reason"].startswith("size cap:")
    assert left[1]["reason"].startswith("larger than the cap on its own")
    for item in manifest["files"]:
        staged = dict(members)[item["path"]]
        assert hashlib.sha256(Path(staged).read_bytes()).hexdigest() == item["sha256"]


def test_redaction_masks_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(
        b"key AKIAIOSFODNN7EXAMPLE and ASIAABCDEFGHIJKLMNOP\n"
        b'DB_PASSWORD="s3cr3t-value"\napi_key: abcd1234\n'
        b"Authorization: Bearer abc.def-ghi_jkl\nharmless=1 token=ab\n"
    )
    masked = logs_host.redact(str(path))
    text = path.read_bytes()
    assert masked == {"aws_access_key": 2, "secret_assignment": 2, "bearer_token": 1}
    for secret in (b"AKIAIOSFODNN7EXAMPLE", b"s3cr3t-value", b"abcd1234", b"abc.def-ghi_jkl"):
        assert secret not in text
    assert b"harmless=1 token=ab" in text  # too short to be a secret


def test_the_builder_runs_as_the_hosts_run_it(tmp_path: Path, fakes: Path) -> None:
    """`python3 - JOB` with the source on stdin, as SSH sends it; the bundle unpacks cleanly."""
    now = time.time()
    _touch(tmp_path / "logs" / "name with space ü.log", 0, now - 5, "line ü\n".encode())
    request = LogRequest(since=now - 60, until=now + 60, paths=(str(tmp_path / "logs"),))
    done = subprocess.run(
        [sys.executable, "-", request.job("i-1")],
        input=logs_host.__loader__.get_source(logs_host.__name__).encode(),  # type: ignore[union-attr]
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = parse_answer(done.stdout.decode())
    bundle = Path(answer.path)
    try:
        assert hashlib.sha256(bundle.read_bytes()).hexdigest() == answer.sha256
        manifest = unpack(bundle, tmp_path / "out")
    finally:
        bundle.unlink()
    rel = str(tmp_path / "logs" / "name with space ü.log").lstrip("/")
    assert (tmp_path / "out" / rel).read_text() == "line ü\n"
    assert manifest["instance_id"] == "i-1"
    assert answer.files == len(manifest["files"])


def _tar(tmp_path: Path, files: dict[str, bytes], manifest: dict[str, object]) -> Path:
    path = tmp_path / "b.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {**files, MANIFEST: json.dumps(manifest).encode()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _entry(name: str, data: bytes) -> dict[str, object]:
    return {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_unpack_refuses_what_a_host_should_not_send(tmp_path: Path) -> None:
    good = b"fine\n"
    bundle = _tar(
        tmp_path,
        {"var/log/a.log": good, "unlisted": b"?"},
        {"files": [_entry("var/log/a.log", good)]},
    )
    unpack(bundle, tmp_path / "ok")
    assert (tmp_path / "ok/var/log/a.log").read_bytes() == good
    assert not (tmp_path / "ok/unlisted").exists()
    escape = _tar(tmp_path, {"../evil": good}, {"files": [_entry("../evil", good)]})
    with pytest.raises(BundleError, match="outside"):
        unpack(escape, tmp_path / "esc")
    assert not (tmp_path / "evil").exists()
    wrong = _tar(tmp_path, {"a.log": good}, {"files": [_entry("a.log", b"other")]})
    with pytest.raises(BundleError, match="sha256 differs"):
        unpack(wrong, tmp_path / "wrong")
    missing = _tar(tmp_path, {}, {"files": [_entry("a.log", good)]})
    with pytest.raises(BundleError, match="not in the bundle"):
        unpack(missing, tmp_path / "missing")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(BundleError, match="cannot be unpacked"):
        unpack(tmp_path / "junk.tar.gz", tmp_path / "junk")


def test_answers_are_parsed_not_trusted() -> None:
    sha = "a" * 64
    line = {"sha256": sha, "size": 10, "files": 2, "path": "/tmp/ops-logs-abc_1.tar.gz"}
    assert parse_answer("noise\nOPS-BUNDLE " + json.dumps(line)).path == line["path"]
    for bad, why in (
        ("nothing here", "no result line"),
        ("OPS-BUNDLE {", "does not parse"),
        ("OPS-BUNDLE " + json.dumps({**line, "sha256": "zz"}), "sha256"),
        ("OPS-BUNDLE " + json.dumps({**line, "path": "/etc/shadow"}), "unexpected"),
        ("OPS-BUNDLE " + json.dumps({**line, "path": "/tmp/ops-logs-x.tar.gz; rm"}), "unexpected"),
    ):
        with pytest.raises(BadAnswer, match=why):
            parse_answer(bad)


def test_scripts_quote_the_job_and_keep_the_url_off_command_lines() -> None:
    job = base64.b64encode(b'{"paths": ["/var/log/it\'s"]}').decode()
    url = "http://127.0.0.1:9/b/k?X-Amz-Signature=abc&X-Amz-Credential=x%2Fy"
    script = ssm_script(job, url)
    assert script.count(url) == 1
    assert "OPS_BUNDLE_PUT_URL='" + url + "'\n" in script
    assert "<<'OPS_LOGS_BUILDER_END'\n" in script and script.endswith("OPS_LOGS_BUILDER_END\n")
    assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0
    assert ssh_command(job, "root").endswith(f"python3 - {job}")
    assert "sudo -n python3" in ssh_command(job, "ec2-user")


def test_search_fixed_regex_and_binary(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "i-1/var/log").mkdir(parents=True)
    (run / "i-1/var/log/a.log").write_text("error: a.b\nerror: axb\n")
    (run / "i-1/var/log/b.bin").write_bytes(b"\0error: a.b")
    (run / "i-1/_ops").mkdir()
    (run / "i-1/_ops/facts.txt").write_text("ERROR: A.B\n")
    fixed = [m.render() for m in search(run, "a.b")]
    assert fixed == ["i-1:/var/log/a.log:1:error: a.b"]
    regex = [m.render() for m in search(run, "a.b", regex=True, ignore_case=True)]
    assert regex == [
        "i-1:_ops/facts.txt:1:ERROR: A.B",
        "i-1:/var/log/a.log:1:error: a.b",
        "i-1:/var/log/a.log:2:error: axb",
    ]
    with pytest.raises(BadInput, match="not a regular expression"):
        list(search(run, "(", regex=True))
