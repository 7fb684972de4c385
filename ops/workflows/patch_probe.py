"""What updates a host has pending, read without changing anything on it.

One shell script goes to every host in one fan-out; it asks the host's own
package manager and prints sections the parsers below read:

- Debian/Ubuntu: `apt list --upgradable` (name, suites, new and current
  version) and the `Suite:`/`Date:` of every Release file in apt's lists. apt
  has no updateinfo: an update is security when a suite that carries it is
  named `*-security` (as Debian publishes them), and it is as old as the
  Release `Date:` of the earliest such suite (Debian dates suites, not
  packages). /var/run/reboot-required says a reboot is already pending.
- Amazon Linux 2 (yum) and 2023 (dnf): `check-update` (name, new version),
  `updateinfo list` (advisory, type, package), `updateinfo info` (each
  advisory's Issued date), `rpm -q` of the pending names (current version),
  and `needs-restarting -r`. An update without an advisory is undated.

Host output is untrusted: it is parsed as text, never run or templated, and
a line that does not parse is skipped.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from dataclasses import dataclass, field
from typing import Any

PROBE_SCRIPT = r"""set +e
export LC_ALL=C
. /etc/os-release 2>/dev/null
echo "@@os ${ID:-unknown} ${VERSION_ID:-}"
case "${ID:-}" in
debian|ubuntu)
    echo "@@apt-upgradable"
    apt list --upgradable 2>/dev/null
    echo "@@apt-releases"
    for f in /var/lib/apt/lists/*Release; do
        [ -f "$f" ] || continue
        s=$(grep -m1 '^Suite:' "$f"); d=$(grep -m1 '^Date:' "$f")
        echo "${s#Suite: }|${d#Date: }"
    done
    echo "@@reboot"
    if [ -e /var/run/reboot-required ]; then echo yes; else echo no; fi
    ;;
amzn)
    if [ "${VERSION_ID:-}" = 2 ]; then pm=yum; nr="needs-restarting -r"
    else pm=dnf; nr="dnf needs-restarting -r"; fi
    echo "@@check-update"
    updates=$($pm -q check-update 2>/dev/null)
    printf '%s\n' "$updates"
    echo "@@updateinfo"
    $pm -q updateinfo list 2>/dev/null
    echo "@@updateinfo-info"
    $pm -q updateinfo info 2>/dev/null | grep -E '^ *(Update ID|Issued) *:'
    echo "@@rpm"
    printf '%s\n' "$updates" | awk 'NF>=3 && $1 ~ /\./ {sub(/\.[^.]*$/, "", $1); print $1}' \
        | xargs -r rpm -q 2>/dev/null
    echo "@@reboot"
    $nr >/dev/null 2>&1; if [ $? -eq 1 ]; then echo yes; else echo no; fi
    ;;
*)
    echo "@@unsupported"
    ;;
esac
exit 0
"""

_ARCH = r"(?:x86_64|aarch64|noarch|i686|amd64|arm64|all)"
_APT_LINE = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9+.-]*)/(?P<suites>\S+) (?P<new>\S+) \S+ "
    r"\[upgradable from: (?P<cur>[^\]]+)\]$"
)
_CHECK_UPDATE = re.compile(rf"^(?P<name>\S+)\.{_ARCH}\s+(?P<new>\S+)\s+\S+")
_UPDATEINFO = re.compile(rf"^(?P<advisory>\S+)\s+(?P<kind>\S+)\s+(?P<nevra>\S+)\.{_ARCH}$")
_RPM = re.compile(rf"^(?P<name>.+)-(?P<version>[^-]+-[^-]+)\.{_ARCH}$")
_INFO = re.compile(r"^\s*(?P<key>Update ID|Issued)\s*:\s*(?P<value>.+?)\s*$")


@dataclass(frozen=True)
class Update:
    name: str
    current: str
    new: str
    security: bool
    published: dt.datetime | None = None  # None: the repository does not date it

    def as_dict(self) -> dict[str, Any]:
        """The update as plan and compliance print it (the plan's JSON contract)."""
        return {"name": self.name, "current": self.current, "new": self.new,
                "security": self.security}  # fmt: skip


@dataclass
class HostUpdates:
    os_id: str = ""
    os_version: str = ""
    updates: list[Update] = field(default_factory=list)
    reboot_pending: bool = False
    error: str = ""

    @property
    def platform(self) -> str:
        if self.os_id == "amzn":
            return "al2" if self.os_version == "2" else f"al{self.os_version}"
        return f"{self.os_id}-{self.os_version}" if self.os_version else self.os_id


def sections(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@"):
            head, _, rest = line[2:].partition(" ")
            current = found.setdefault(head, [])
            if rest:
                current.append(rest)
            continue
        if current is not None:
            current.append(line.rstrip())
    return found


def _release_dates(lines: list[str]) -> dict[str, dt.datetime]:
    dates: dict[str, dt.datetime] = {}
    for line in lines:
        suite, _, stamp = line.partition("|")
        if not suite or not stamp:
            continue
        try:
            when = email.utils.parsedate_to_datetime(stamp)
        except (TypeError, ValueError):
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        earlier = dates.get(suite)
        dates[suite] = when if earlier is None else min(earlier, when)
    return dates


def parse_apt(found: dict[str, list[str]]) -> list[Update]:
    dates = _release_dates(found.get("apt-releases", []))
    updates = []
    for line in found.get("apt-upgradable", []):
        match = _APT_LINE.match(line.strip())
        if not match:
            continue
        suites = [s for s in match["suites"].split(",") if s and s != "now"]
        known = [dates[s] for s in suites if s in dates]
        updates.append(
            Update(
                name=match["name"],
                current=match["cur"],
                new=match["new"],
                security=any(s.endswith("-security") for s in suites),
                published=min(known) if known else None,
            )
        )
    return updates


def _issued(lines: list[str]) -> dict[str, dt.datetime]:
    issued: dict[str, dt.datetime] = {}
    advisory = ""
    for line in lines:
        match = _INFO.match(line)
        if not match:
            continue
        if match["key"] == "Update ID":
            advisory = match["value"]
            continue
        for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
            try:
                when = dt.datetime.strptime(match["value"], pattern).replace(tzinfo=dt.UTC)
            except ValueError:
                continue
            if advisory:
                issued[advisory] = when
            break
    return issued


def parse_rpm(found: dict[str, list[str]]) -> list[Update]:
    current = {}
    for line in found.get("rpm", []):
        match = _RPM.match(line.strip())
        if match:
            current[match["name"]] = match["version"]
    pending: dict[str, str] = {}
    for line in found.get("check-update", []):
        match = _CHECK_UPDATE.match(line.strip())
        if match:
            pending.setdefault(match["name"], match["new"])
    issued = _issued(found.get("updateinfo-info", []))
    advisories: dict[str, tuple[bool, dt.datetime | None]] = {}
    for line in found.get("updateinfo", []):
        match = _UPDATEINFO.match(line.strip())
        if not match:
            continue
        # the longest pending name the package NAME-VERSION-RELEASE starts with
        owners = [n for n in pending if match["nevra"].startswith(f"{n}-")]
        if not owners:
            continue
        name = max(owners, key=len)
        kind = match["kind"].lower()
        security, when = advisories.get(name, (False, None))
        advisories[name] = (
            security or "sec" in kind,
            when or issued.get(match["advisory"]),
        )
    return [
        Update(name, current.get(name, ""), new, *advisories.get(name, (False, None)))
        for name, new in pending.items()
    ]


def parse_probe(text: str) -> HostUpdates:
    """One host's probe output as its pending updates."""
    found = sections(text)
    os_line = (found.get("os") or [""])[0].split()
    host = HostUpdates(
        os_id=os_line[0] if os_line else "", os_version=os_line[1] if len(os_line) > 1 else ""
    )
    if "unsupported" in found or not os_line:
        host.error = f"no package manager this plan knows on {host.os_id or 'this host'}"
        return host
    host.updates = parse_apt(found) if "apt-upgradable" in found else parse_rpm(found)
    host.reboot_pending = (found.get("reboot") or ["no"])[0].strip() == "yes"
    return host
