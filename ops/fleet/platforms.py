"""Platform facts: which OS a host runs, how Ansible gets onto it, and when its support ends.

End of support is kept as data, not code, so that the on-call engineer sees the
same dates the vendors publish and a new release is one row here. The date is
the last day the vendor ships free security updates: Amazon Linux's own end of
support, Debian's LTS end, Ubuntu's end of standard support (ESM is paid).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime


@dataclass(frozen=True)
class Platform:
    """One supported OS release and the facts the toolkit acts on."""

    key: str
    family: str
    name: str
    version: str
    package_manager: str
    ansible_install: tuple[str, ...]
    end_of_support: date | None
    source: str

    def past_end_of_support(self, today: date | None = None) -> bool:
        if self.end_of_support is None:
            return False
        return (today or _today()) > self.end_of_support

    def as_dict(self, today: date | None = None) -> dict[str, object]:
        return {
            "key": self.key,
            "family": self.family,
            "name": self.name,
            "version": self.version,
            "package_manager": self.package_manager,
            "end_of_support": self.end_of_support.isoformat() if self.end_of_support else None,
            "past_end_of_support": self.past_end_of_support(today),
        }


def _today() -> date:
    return datetime.now(tz=UTC).date()


_APT = ("apt-get", "install", "-y", "ansible-core")

PLATFORMS: dict[str, Platform] = {
    p.key: p
    for p in (
        Platform(
            "al2",
            "amazon",
            "Amazon Linux",
            "2",
            "yum",
            ("amazon-linux-extras", "install", "-y", "ansible2"),
            date(2026, 6, 30),
            "https://aws.amazon.com/amazon-linux-2/faqs/",
        ),
        Platform(
            "al2023",
            "amazon",
            "Amazon Linux",
            "2023",
            "dnf",
            ("dnf", "install", "-y", "ansible-core"),
            date(2029, 6, 30),
            "https://docs.aws.amazon.com/linux/al2023/ug/release-cadence.html",
        ),
        Platform(
            "debian-11",
            "debian",
            "Debian",
            "11",
            "apt",
            _APT,
            date(2026, 8, 31),
            "https://wiki.debian.org/LTS",
        ),
        Platform(
            "debian-12",
            "debian",
            "Debian",
            "12",
            "apt",
            _APT,
            date(2028, 6, 30),
            "https://wiki.debian.org/LTS",
        ),
        Platform(
            "debian-13",
            "debian",
            "Debian",
            "13",
            "apt",
            _APT,
            date(2030, 6, 30),
            "https://wiki.debian.org/LTS",
        ),
        Platform(
            "ubuntu-20.04",
            "debian",
            "Ubuntu",
            "20.04",
            "apt",
            _APT,
            date(2025, 5, 31),
            "https://ubuntu.com/about/release-cycle",
        ),
        Platform(
            "ubuntu-22.04",
            "debian",
            "Ubuntu",
            "22.04",
            "apt",
            _APT,
            date(2027, 6, 1),
            "https://ubuntu.com/about/release-cycle",
        ),
        Platform(
            "ubuntu-24.04",
            "debian",
            "Ubuntu",
            "24.04",
            "apt",
            _APT,
            date(2029, 5, 31),
            "https://ubuntu.com/about/release-cycle",
        ),
    )
}

UNKNOWN = Platform("unknown", "unknown", "unknown", "", "", (), None, "")

# os-release ID or SSM PlatformName (lower-cased) -> key prefix
_NAMES = {
    "amzn": "amazon",
    "amazon linux": "amazon",
    "amazon linux ami": "amazon",
    "debian": "debian",
    "debian gnu/linux": "debian",
    "ubuntu": "ubuntu",
}


def lookup(name: str | None, version: str | None) -> Platform:
    """Map an OS name and version, as os-release or SSM reports them, to a known platform.

    SSM's DescribeInstanceInformation says `Amazon Linux` / `2023.6.20241031`;
    os-release says `amzn` / `2023`; both must land on the same row. An
    unrecognised platform is returned as a synthetic one with no end date so
    that it is listed, not dropped.
    """
    raw_name = (name or "").strip().lower()
    raw_version = (version or "").strip()
    family = _NAMES.get(raw_name)
    if family is None:
        if not raw_name:
            return UNKNOWN
        return Platform(
            _slug(f"{raw_name}-{raw_version}"), "unknown", name or "", raw_version, "", (), None, ""
        )
    if family == "amazon":
        major = raw_version.split(".")[0]
        key = "al2023" if major == "2023" else "al2" if major == "2" else f"amazon-{major}"
    elif family == "debian":
        key = f"debian-{raw_version.split('.')[0]}"
    else:
        key = f"ubuntu-{'.'.join(raw_version.split('.')[:2])}"
    known = PLATFORMS.get(key)
    if known is not None:
        return known
    return Platform(key, family, name or "", raw_version, "", (), None, "")


def parse_os_release(text: str) -> dict[str, str]:
    """Parse /etc/os-release text into a dict; values are unquoted as the spec allows."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        fields[key.strip()] = value
    return fields


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "unknown"
