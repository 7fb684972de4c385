"""Point each container host at the sandbox's package repository and install the old versions.

Done through `docker exec` at `up`, after the hosts answer SSH: this is the
sandbox building its machines, not `ops` acting on a fleet. Debian hosts get
an apt source and really install the older packages with apt; the Amazon
Linux stand-ins get a yum repository file and their shim records the older
versions from the repository's index.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

from ops.errors import OpsError
from ops.sandbox.packages import APT_SOURCE, YUM_REPO, apt_source, old_versions, yum_repo

TIMEOUT_S = 300


def _exec(container: str, argv: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(
        ["docker", "exec", "-i", container, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise OpsError(
            f"{container}: {' '.join(argv[:3])} failed ({done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-800:]}"
        )
    return done.stdout


def _write(container: str, path: str, text: str) -> None:
    _exec(container, ["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat >"$1"', "sh", path], text)


def apt_update_argv() -> list[str]:
    """Read only the sandbox's source: the host's Debian lists stay as the image left them."""
    return [
        "apt-get",
        "update",
        "-qq",
        "-o",
        f"Dir::Etc::sourcelist={APT_SOURCE}",
        "-o",
        "Dir::Etc::sourceparts=-",
        "-o",
        "APT::Get::List-Cleanup=0",
    ]


def prepare_debian(container: str, url: str) -> None:
    _write(container, APT_SOURCE, apt_source(url))
    _exec(container, apt_update_argv())
    _exec(
        container,
        [
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "--allow-downgrades",
            *old_versions(),
        ],
    )
    # what the old versions' install left behind is not a pending reboot
    _exec(container, ["rm", "-f", "/run/reboot-required", "/run/reboot-required.pkgs"])


def prepare_standin(container: str, url: str) -> None:
    _write(container, YUM_REPO, yum_repo(url))
    _exec(container, ["fleetops-standin", "repo-init"])


def prepare_hosts(hosts: list[tuple[str, str]], url: str) -> None:
    """(container, platform) pairs; every host ends on the older versions."""

    def one(host: tuple[str, str]) -> None:
        container, platform = host
        if platform == "debian":
            prepare_debian(container, url)
        else:
            prepare_standin(container, url)

    if not hosts:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        list(pool.map(one, hosts))
