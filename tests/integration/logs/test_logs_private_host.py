"""journald and Docker on a host of this test's own: what the shared hosts lack.

The sandbox image runs no journald and no Docker, and the shared hosts must
stay as they are, so this module starts one private host and installs
Debian's systemd-journal-remote (which brings journalctl), docker.io and
busybox-static there. A journal file is written with entries two hours ago,
a minute ago and two hours ahead for one unit, with their timestamps as
given; an inner dockerd (vfs, no bridge) runs a container `web` from a
one-binary image made on the host, which writes a line to stdout and one to
stderr. `ops logs collect --via ssh` must bring back only the journal entry
inside the window, and the container's two lines.
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
install() {
  apt-get install -y -q --no-install-recommends systemd-journal-remote docker.io busybox-static
}
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
mkdir -p /var/lib/ops-docker /run/ops-docker /tmp/ops-image
nohup dockerd --bridge none --iptables=false --storage-driver vfs \
  --data-root /var/lib/ops-docker --exec-root /run/ops-docker --pidfile /run/ops-docker.pid \
  >/tmp/ops-dockerd.log 2>&1 &
tries=0
until docker info >/dev/null 2>&1; do
  tries=$((tries + 1)); [ "$tries" -lt 240 ] || { tail -n 20 /tmp/ops-dockerd.log; exit 1; }
  sleep 0.25
done
cp /bin/busybox /tmp/ops-image/busybox
tar -C /tmp/ops-image -c . | docker import - ops-tiny:1 >/dev/null
docker run -d --network host --name web ops-tiny:1 \
  /busybox sh -c 'echo to stdout; echo to stderr >&2; exec /busybox sleep 3600' >/dev/null
tries=0
until [ "$(docker logs web 2>&1 | wc -l)" -ge 2 ]; do
  tries=$((tries + 1)); [ "$tries" -lt 240 ] || exit 1
  sleep 0.25
done
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
            pytest.fail(f"preparing the host failed: {done.stdout}{done.stderr}{log.stdout}")
        yield host, keys
    finally:
        stop_hosts(label)


def test_journal_inside_the_window_and_container_logs_come_back(
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
        containers=("web", "gone", "all"),
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
    assert manifest["containers"] == {"web": "ok", "gone": "absent: no such container"}
    logs = (report.folder / target.instance_id / "_ops/containers/web.log").read_text()
    assert "to stdout" in logs and "to stderr" in logs
    assert logs.splitlines()[0].startswith("20")  # --timestamps
    facts = (report.folder / target.instance_id / "_ops/facts.txt").read_text()
    assert "ops-tiny:1" in facts  # docker ps in the facts
