"""The sandbox host's placeholder service on its app port, installed as a real host has one.

A host comes out of its image with a placeholder answering on the app port
(here ops/sandbox/host_app.py), so the load balancer sees it healthy before
any deploy. The first deploy of the real service stops the placeholder and
disables it for good, as `systemctl disable --now` would on a host with
systemd: a later reboot (a patch night) must not start it again in the
container's way. The sandbox host has no systemd, so the placeholder is a
SysV service, `/etc/init.d/fleetops-app` with the links `update-rc.d` makes,
and the host's boot command starts the sandbox's own services that are
enabled (`/etc/rc2.d/S??fleetops-*`) before sshd, as an init would. Ansible's
`service` module (`enabled: false`) then disables it through update-rc.d;
`ops deploy` does that for a spec that lists it under `replaces`. The same
hook brings back other services of the project's own that a role enables
through update-rc.d: the docker_engine role's `fleetops-dockerd`, so the
Docker daemon, and the containers it restarts, come back after a reboot.
"""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

NAME = "fleetops-app"
APP_DIR = "/usr/local/lib/fleetops"
PID_FILE = "/run/fleetops/app.pid"
APP_SCRIPT = Path(__file__).with_name("host_app.py")

INIT_SCRIPT = f"""#!/bin/sh
### BEGIN INIT INFO
# Provides:          {NAME}
# Required-Start:    $remote_fs
# Required-Stop:     $remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: The placeholder answering on the host's app port
# Description:       Answers /health for the load balancer until the first
#                    deploy stops it and disables it (update-rc.d).
### END INIT INFO
PIDFILE={PID_FILE}
APP={APP_DIR}/host_app.py
[ -r /etc/default/{NAME} ] && . /etc/default/{NAME}
export APP_PORT

case "$1" in
    start)
        mkdir -p "$(dirname "$PIDFILE")"
        start-stop-daemon --start --quiet --oknodo --background --make-pidfile \\
            --pidfile "$PIDFILE" --name python3 --startas /usr/bin/python3 -- "$APP"
        ;;
    stop)
        start-stop-daemon --stop --quiet --oknodo --retry TERM/5/KILL/2 \\
            --pidfile "$PIDFILE" --name python3
        rc=$?
        rm -f "$PIDFILE"
        exit $rc
        ;;
    status)
        start-stop-daemon --status --pidfile "$PIDFILE" --name python3
        ;;
    restart|force-reload)
        "$0" stop && "$0" start
        ;;
    *)
        echo "Usage: $0 {{start|stop|status|restart|force-reload}}" >&2
        exit 3
        ;;
esac
"""

# The host's init: /run is not emptied by a container restart as by a reboot, so
# the pid files go first; then the enabled sandbox services; then sshd in front.
BOOT_COMMAND = [
    "/bin/sh",
    "-c",
    "rm -f /run/fleetops/*.pid; "
    'for s in /etc/rc2.d/S??fleetops-*; do [ -x "$s" ] && "$s" start; done; '
    'exec /usr/sbin/sshd -D -e -p "$SSH_PORT" -o ListenAddress=127.0.0.1',
]

# as `update-rc.d fleetops-app defaults` lays them out: started in 2-5, stopped in 0, 1, 6
_LINKS = [f"etc/rc{level}.d/S01{NAME}" for level in "2345"] + [
    f"etc/rc{level}.d/K01{NAME}" for level in "016"
]


def _file(tar: tarfile.TarFile, path: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(path)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def archive(app_port: int) -> bytes:
    """A tar stream for `docker cp - CONTAINER:/`: the app, its init script, its port, enabled.

    The container is created, not yet started, so nothing can be run in it:
    the files and the rc links are laid down as the package would leave them.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(APP_DIR.lstrip("/"))
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        _file(tar, f"{folder.name}/host_app.py", APP_SCRIPT.read_bytes(), 0o755)
        _file(tar, f"etc/init.d/{NAME}", INIT_SCRIPT.encode(), 0o755)
        _file(tar, f"etc/default/{NAME}", f"APP_PORT={int(app_port)}\n".encode(), 0o644)
        for link in _LINKS:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, f"../init.d/{NAME}"
            tar.addfile(info)
    return buffer.getvalue()
