"""Plan arithmetic, the probe's answer, and bad input refused before any host is looked at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.config import Settings
from ops.errors import BadInput
from ops.fleet.target_groups import in_service
from ops.workflows import deploy
from ops.workflows.deploy_probe import MARKER, parse_probe, probe_command
from ops.workflows.deploy_spec import parse_spec

DIGEST = "sha256:" + "cd" * 32


def spec(health: dict | None = None):
    return parse_spec(
        "web",
        Path("services/web.yml"),
        {
            "repository": "127.0.0.1:1/web",
            "container_name": "web",
            "port": 8080,
            "health_check": health or {"http": "/health"},
            "target_groups": ["web"],
        },
        environ={},
    )


def answer(**fields: object) -> str:
    return "noise\n" + MARKER + json.dumps(fields) + "\n"


def test_probe_command_quotes_name_and_path() -> None:
    line = probe_command(spec()).commands[0]
    assert line.startswith("python3 -c '") and line.endswith(" web /health")
    assert probe_command(spec({"image": True})).commands[0].endswith(" web -")


@pytest.mark.parametrize(
    ("fields", "health", "healthy", "digest"),
    [
        (
            {"present": True, "running": True, "image": f"r/web@{DIGEST}", "http_status": 200},
            None,
            True,
            DIGEST,
        ),
        (
            {"present": True, "running": True, "digest": DIGEST, "http_status": 503},
            None,
            False,
            DIGEST,
        ),
        ({"present": True, "running": False, "digest": DIGEST}, None, False, DIGEST),
        (
            {"present": True, "running": True, "http_status": 200, "docker_health": "unhealthy"},
            None,
            False,
            None,
        ),
        (
            {"present": True, "running": True, "docker_health": "healthy"},
            {"image": True},
            True,
            None,
        ),
        (
            {"present": True, "running": True, "docker_health": "starting"},
            {"image": True},
            None,
            None,
        ),
    ],
)
def test_probe_answers_map_to_health(fields, health, healthy, digest) -> None:
    state = parse_probe(answer(**fields), spec(health))
    assert (state.present, state.healthy, state.digest) == (True, healthy, digest)


@pytest.mark.parametrize(
    ("stdout", "error"),
    [
        ("python3: not found", "no probe answer"),
        (MARKER + "{broken", "not JSON"),
        (MARKER + "[1]", "not an object"),
        (answer(present=False, error="docker: missing"), "docker: missing"),
    ],
)
def test_probe_failures_are_errors_not_crashes(stdout: str, error: str) -> None:
    state = parse_probe(stdout, spec())
    assert not state.present and error in (state.error or "")


def test_share_batches_and_gates() -> None:
    assert deploy.share("50%", 4, option="--batch", minimum=1) == 2
    assert deploy.share("10%", 4, option="--batch", minimum=1) == 1
    assert deploy.share("50%", 5, option="--min-healthy", minimum=0) == 2
    assert deploy.split_batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    deploy.check_gates(2, 2, 4)
    with pytest.raises(BadInput, match="fewer than --min-healthy"):
        deploy.check_gates(3, 2, 4)
    with pytest.raises(BadInput, match="at least one host"):
        deploy.split_batches([1], 0)


def test_in_service_needs_every_group() -> None:
    assert in_service(["a", "b"], {"a": "healthy", "b": "initial"})
    assert not in_service(["a", "b"], {"a": "healthy"})
    assert not in_service(["a"], {"a": "draining"})
    assert not in_service([], {})


@pytest.mark.parametrize(
    ("image", "batch", "min_healthy", "message"),
    [
        ("v2", "0", None, "--batch must be at least 1"),
        ("v2", "half", None, "--batch must be a count"),
        ("v2", None, "120%", "--min-healthy percentage"),
        ("v 2", None, None, "does not parse"),
        ("127.0.0.1:1/other:v2", None, None, "not from the service's repository"),
    ],
)
def test_plan_refuses_bad_input_before_any_host(image, batch, min_healthy, message) -> None:
    def prober(*_args: object) -> dict:
        raise AssertionError("a host was probed despite bad input")

    with pytest.raises(BadInput, match=message):
        deploy.plan_deploy(
            Settings(), spec(), image, batch=batch, min_healthy=min_healthy, prober=prober
        )


def test_plan_names_the_groups_whose_delay_outlasts_the_drain() -> None:
    from ops.cli.deploy import _drain_lines
    from ops.fleet import image_ref

    image = image_ref.parse("127.0.0.1:1/web:v2").with_digest(DIGEST)
    planned = deploy.DeployPlan(
        "web", image, 1, 1, drain_seconds=30, deregistration_delays={"web": 300, "api": 5}
    )
    assert planned.drain_cut() == {"web": 300}
    assert planned.as_dict()["drain"] == {
        "seconds": 30,
        "deregistration_delay": {"web": 300, "api": 5},
        "cut": ["web"],
    }
    lines = _drain_lines(planned)
    assert lines[0] == "drain: up to 30 s a host (delay: api 5 s, web 300 s)"
    assert lines[1:] == [
        "note: web keeps a deregistered target draining for 300 s; the old container stops "
        "after drain_seconds 30, cutting requests still open then"
    ]
    equal = deploy.DeployPlan("web", image, 1, 1, drain_seconds=5, deregistration_delays={"w": 5})
    assert equal.drain_cut() == {} and len(_drain_lines(equal)) == 1
