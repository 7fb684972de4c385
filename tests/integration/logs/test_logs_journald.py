"""journald entries inside and outside the window, on a host of this test's own.

The sandbox image runs no journald, and the shared hosts must stay as they
are, so this test starts one private host, installs Debian's
systemd-journal-remote there (which brings journalctl) and writes a journal
file with entries two hours ago, a minute ago and two hours ahead, all for
one unit, with their timestamps as given. `ops logs collect --via ssh` must
bring back only the entry inside the window.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.config import Settings, known_hosts_path
from ops.fleet.inventory import InventoryHost
from ops.journal import open_journal
from ops.sandbox import trust
from ops.sandbox.hosts import (
    KNOWN_HOSTS,
    HostSpec,
    RunningHost,
    free_ports,
    start_hosts,
    stop_hosts,
)
from ops.sandbox.keys import PRIVATE_NAME
from ops.workflows import logs as wf
from ops.workflows.logs_input import build_request
from tests.support.sandbox import require_docker

UNIT = "ops-test.service"
WRITE_JOURNAL = r"""set -e
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -q --no-install-recommends systemd-journal-remote; }
install >/tmp/ops-apt.log 2>&1 || { apt-get update -q && install; } >>/tmp/ops-apt.log 2>&1
[ -s /etc/machine-id ] || systemd-machine-id-setup >/dev/null
mid=$(cat /etc/machine-id)
mkdir -p "/var/log/journal/$mid"
now=$(date +%s)
for spec in "$((now - 7200)) before" "$((now - 60)) inside" "$((now + 7200)) after"; do
  set -- $spec
  printf '__REALTIME_TIMESTAMP=%s000000\n__MONOTONIC_TIMESTAMP=1\n' "$1"
  printf '_BOOT_ID=0123456789abcdef0123456789abcdef\n_MACHINE_ID=%s\n' "$mid"
  printf '_SYSTEMD_UNIT=ops-test.service\nPRIORITY=6\nMESSAGE=%s the window\n\n' "$2"
done | /lib/systemd/systemd-journal-remote -o "/var/log/journal/$mid/ops-test.journal" -
"""


@pytest.fixture(scope="module")
def journal_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningHost, Path]]:
    require_docker()
    keys = tmp_path_factory.mktemp("keys")
    label = f"jd{uuid.uuid4().hex[:8]}"
    ssh_port, app_port = free_ports(2)
    try:
        [host] = start_hosts(
            [HostSpec("journal-1", "debian", "web", ssh_port, app_port)], key_dir=keys, label=label
        )
        done = subprocess.run(
            ["docker", "exec", host.container, "sh", "-c", WRITE_JOURNAL],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            log = subprocess.run(
                ["docker", "exec", host.container, "tail", "-n", "20", "/tmp/ops-apt.log"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            pytest.fail(f"writing the journal failed: {done.stderr}{log.stdout}")
        yield host, keys
    finally:
        stop_hosts(label)


def test_only_the_journal_entries_inside_the_window_come_back(
    journal_host: tuple[RunningHost, Path], tmp_path: Path
) -> None:
    host, keys = journal_host
    trust.add(keys / KNOWN_HOSTS, known_hosts_path())  # this test's own state folder
    settings = Settings(ssh_key=str(keys / PRIVATE_NAME))
    request = build_request(
        since="1h",
        until=None,
        paths=(),
        units=(UNIT, "absent.service"),
        containers=("web",),
        max_size="1MB",
        dest=tmp_path,
        via="ssh",
        redact=False,
        bucket=None,
        now=time.time() + 600,  # the window ends ten minutes from now, before "after"
    )
    target = InventoryHost(
        instance_id="i-0journal00000001",
        name=host.name,
        ssh_host="127.0.0.1",
        ssh_port=host.ssh_port,
        ssh_user="root",
    )
    with open_journal() as journal:
        run = wf.begin(journal, request, [target], settings.env)
        report = wf.collect(run, request, [target], settings, journal)
    [entry] = report.hosts
    assert entry.status == "ok", entry.message
    manifest = entry.manifest or {}
    assert manifest["journald"] == {
        "available": True,
        "units": {UNIT: "ok", "absent.service": "ok"},
    }
    lines = (report.folder / target.instance_id / f"_ops/journal/{UNIT}.log").read_text()
    assert "inside the window" in lines
    assert "before the window" not in lines and "after the window" not in lines
    absent = (report.folder / target.instance_id / "_ops/journal/absent.service.log").read_text()
    assert "the window" not in absent
    assert manifest["containers"] == {"web": "absent: docker is not installed on this host"}
