"""`ops sandbox up` refuses what it cannot bring up whole, before it starts anything."""

from __future__ import annotations

import pytest

from ops.errors import BadInput
from ops.sandbox import engine
from ops.sandbox.spec import SandboxSpec, build_spec, parse_platforms


def test_platform_mix_is_parsed_and_named() -> None:
    assert parse_platforms("debian:4,al2:1,al2023") == {"debian": 4, "al2": 1, "al2023": 1}
    plans = SandboxSpec(platforms={"debian": 4, "al2": 1, "al2023": 1}).hosts()
    assert [p.name for p in plans] == ["web-1", "web-2", "web-3", "web-4", "worker-1", "worker-2"]
    assert {p.platform for p in plans if p.role == "web"} == {"debian", "al2", "al2023"}


def test_hosts_default_to_debian() -> None:
    assert build_spec(None, None, 0, 0).platforms == {"debian": 3}
    assert build_spec(2, None, 10, 1).platforms == {"debian": 2}
    assert build_spec(0, None, 10, 1).host_count == 0


def test_no_docker_and_not_root_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    monkeypatch.setattr(engine, "docker_answers", lambda: False)
    monkeypatch.setattr(engine.os, "geteuid", lambda: 1000)
    with pytest.raises(BadInput, match="--synthetic N, which needs no Docker"):
        engine.ensure_docker(tmp_path)  # type: ignore[arg-type]
