"""The SSH key pair a sandbox fleet trusts.

One key per sandbox, kept in the sandbox's own folder, so tearing a sandbox
down removes its access with it and no operator key is ever placed in a
container. ECDSA P-256 because paramiko can generate it without calling out
to ssh-keygen, and every OpenSSH in the fleet accepts it.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from ops.errors import BadInput
from ops.transports.paramiko_import import paramiko

PRIVATE_NAME = "id_ecdsa"
COMMENT = "fleetops-sandbox"


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    public_line: str

    def load(self) -> paramiko.PKey:
        return paramiko.ECDSAKey.from_private_key_file(str(self.private_path))


def _write_private(path: Path, data: str) -> None:
    """Create the file 0600 from the start: there is no moment it is readable by others."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def generate_keypair(folder: Path, name: str = PRIVATE_NAME) -> KeyPair:
    """A fresh pair in folder (made 0700); any pair of the same name is replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key = paramiko.ECDSAKey.generate(bits=256)
    private_path = folder / name
    public_path = folder / f"{name}.pub"
    buf = io.StringIO()
    key.write_private_key(buf)
    _write_private(private_path, buf.getvalue())
    public_line = f"{key.get_name()} {key.get_base64()} {COMMENT}"
    _write_private(public_path, public_line + "\n")
    return KeyPair(private_path, public_path, public_line)


def ensure_keypair(folder: Path, name: str = PRIVATE_NAME) -> KeyPair:
    """Reuse the sandbox's pair if it is there and readable, so running hosts keep trusting it."""
    private_path = folder / name
    public_path = folder / f"{name}.pub"
    if private_path.is_file() and public_path.is_file():
        try:
            paramiko.ECDSAKey.from_private_key_file(str(private_path))
        except (paramiko.SSHException, OSError, ValueError):
            return generate_keypair(folder, name)
        return KeyPair(private_path, public_path, public_path.read_text().strip())
    return generate_keypair(folder, name)


def load_private_key(folder: Path, name: str = PRIVATE_NAME) -> paramiko.PKey:
    """The sandbox's existing key; never a new one, which the hosts would not trust."""
    path = folder / name
    try:
        return paramiko.ECDSAKey.from_private_key_file(str(path))
    except (OSError, paramiko.SSHException) as err:
        raise BadInput(f"cannot read the sandbox key {path}: {err}") from err
