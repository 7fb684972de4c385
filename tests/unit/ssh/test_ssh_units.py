"""The SSH transport's input handling: endpoints, jump hosts, keys and policies."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.config import Settings
from ops.errors import BadInput
from ops.fleet.inventory import InventoryHost, endpoint
from ops.transports.ssh import JumpHost, SshOptions, SshTarget, SshTransport, options_from_settings


def test_targets_follow_the_ops_ssh_endpoint_else_the_private_ip() -> None:
    host, port = endpoint("127.0.0.1:2201")
    tagged = InventoryHost("i-1", ssh_host=host, ssh_port=port, private_ip="10.0.0.5")
    assert SshTarget.from_host(tagged) == SshTarget("i-1", "127.0.0.1", 2201, "root")
    plain = InventoryHost("i-2", private_ip="10.0.0.6", ssh_user="ec2-user")
    assert SshTarget.from_host(plain).label == "ec2-user@10.0.0.6:22"
    with pytest.raises(BadInput, match="no SSH address"):
        SshTarget.from_host(InventoryHost("i-3"))


def test_jump_hosts_parse_or_are_refused() -> None:
    assert JumpHost.parse("bastion.example.com", "ec2-user") == JumpHost(
        "ec2-user", "bastion.example.com", 22
    )
    assert JumpHost.parse("ops@10.0.0.1:2222", "root") == JumpHost("ops", "10.0.0.1", 2222)
    for bad in ("a b", "user@host:99999", "-oProxyCommand=x", "host:port"):
        with pytest.raises(BadInput, match="ssh_jump_host"):
            JumpHost.parse(bad, "root")


def test_options_come_from_settings(tmp_path: Path) -> None:
    settings = Settings(ssh_key="~/k", ssh_jump_host="bastion:2200", ssh_user="admin")
    options = options_from_settings(settings, known_hosts=tmp_path / "kh", workers=3)
    assert options.key_file == Path("~/k").expanduser()
    assert (options.jump_host, options.jump_user, options.workers) == ("bastion:2200", "admin", 3)


def test_bad_policy_and_unreadable_keys_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="host-key policy"):
        SshTransport(SshOptions(host_key_policy="yes"))
    junk = tmp_path / "key"
    junk.write_text("not a key")
    with pytest.raises(BadInput, match="cannot read the private key"):
        SshTransport(SshOptions(key_file=junk))
    with pytest.raises(BadInput, match="cannot read the private key"):
        SshTransport(SshOptions(key_file=tmp_path / "missing"))
