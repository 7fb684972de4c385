"""The sandbox key pair: private from the first byte, reused while valid."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ops.errors import BadInput
from ops.sandbox.keys import ensure_keypair, generate_keypair, load_private_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_files_are_0600_in_a_0700_folder(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "keys")
    assert mode(pair.private_path) == 0o600
    assert mode(pair.public_path) == 0o600
    assert mode(tmp_path / "keys") == 0o700
    assert pair.public_line.startswith("ecdsa-sha2-nistp256 ")
    assert pair.public_path.read_text().strip() == pair.public_line


def test_modes_hold_under_a_permissive_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        pair = generate_keypair(tmp_path)
    finally:
        os.umask(old)
    assert mode(pair.private_path) == 0o600


def test_ensure_reuses_an_existing_pair(tmp_path: Path) -> None:
    first = ensure_keypair(tmp_path)
    second = ensure_keypair(tmp_path)
    assert first.public_line == second.public_line
    assert second.load().get_base64() == first.load().get_base64()


def test_ensure_replaces_a_broken_pair(tmp_path: Path) -> None:
    first = generate_keypair(tmp_path)
    first.private_path.write_text("not a key")
    second = ensure_keypair(tmp_path)
    assert second.public_line != first.public_line
    assert mode(second.private_path) == 0o600


def test_loading_a_missing_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="sandbox key"):
        load_private_key(tmp_path)
