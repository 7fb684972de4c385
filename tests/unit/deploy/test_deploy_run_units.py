"""The deploy workflow's own decisions: gates, the journal's copy, which deploy a rollback
undoes, the lease taken over by a resume of the same run (moto in process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ops.config import Settings
from ops.engine.budget import Amount
from ops.engine.plan import Plan
from ops.engine.runtime import JournalState
from ops.errors import BadInput
from ops.fleet import image_ref
from ops.fleet.discovery import Host
from ops.fleet.lock import Heartbeat, Holder, LockHeld, LockTable
from ops.journal.store import Journal
from ops.transports.ssm import FAILED, SUCCESS
from ops.workflows import deploy_gates as gates
from ops.workflows import deploy_run as wf
from ops.workflows import deploy_steps as steps
from ops.workflows.deploy_spec import parse_spec

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def settings(**extra: Any) -> Settings:
    return Settings(env="sandbox", region=REGION, **extra)


def spec() -> Any:
    data = {
        "repository": "127.0.0.1:5000/hello",
        "port": 8080,
        "health_check": {"http": "/health"},
        "target_groups": ["web"],
    }
    return parse_spec("hello", Path("hello.yml"), data, environ={})


def request(**extra: Any) -> wf.DeployRequest:
    values: dict[str, Any] = {
        "service": "hello",
        "action": "deploy",
        "image": "127.0.0.1:5000/hello:v2",
        "targets": {"i-1": "127.0.0.1:5000/hello@sha256:" + "b" * 64},
        "previous": {"i-1": "127.0.0.1:5000/hello@sha256:" + "a" * 64},
        "batches": [["i-1"]],
        "min_healthy": 0,
    }
    values.update(extra)
    return wf.DeployRequest(**values)


def test_the_journals_copy_rebuilds_the_request_and_a_partial_one_is_refused() -> None:
    original = request(rollback_all=True, of="run-1")
    assert wf.DeployRequest.from_arguments(original.arguments()) == original
    with pytest.raises(BadInput, match="cannot be resumed"):
        wf.DeployRequest.from_arguments({"service": "hello"})


def test_a_rollback_undoes_the_newest_deploy_that_succeeded(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.db") as journal:
        good = journal.begin_run(wf.KIND, request().arguments(), "sandbox")
        journal.end_run(good.id, "succeeded")
        newer = request(previous={"i-1": "x@sha256:" + "c" * 64})
        failed = journal.begin_run(wf.KIND, newer.arguments(), "sandbox")
        journal.end_run(failed.id, "stopped")
        other_env = journal.begin_run(wf.KIND, newer.arguments(), "prod")
        journal.end_run(other_env.id, "succeeded")
        found = wf.last_deploy(journal, "sandbox", "hello")
        assert found is not None and found.previous == request().previous
        assert wf.last_deploy(journal, "sandbox", "other") is None


def test_the_failed_wave_is_the_first_with_a_step_not_succeeded() -> None:
    hosts = [Host("i-1", "web-1"), Host("i-2", "web-2")]
    plan = Plan(
        kind=wf.KIND, arguments={}, waves=[hosts[:1], hosts[1:]], steps=[],
        concurrency=Amount(2, percent=False), max_errors=Amount(0, percent=False),
    )  # fmt: skip
    plan.steps = [steps.DrainStep(settings(), steps.Fleet(spec(), {}, {}))]
    state = JournalState()
    state.done[(steps.DRAIN, "i-1")] = SUCCESS
    assert wf.failed_wave(plan, state) is None
    state.done[(steps.DRAIN, "i-2")] = FAILED
    assert wf.failed_wave(plan, state) == 1


@mock_aws
def test_the_alarm_gate_names_what_is_not_ok() -> None:
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_alarm(
        AlarmName="5xx", MetricName="m", Namespace="n", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
    )  # fmt: skip
    cloudwatch.set_alarm_state(AlarmName="5xx", StateValue="OK", StateReason="fine")
    assert gates.AlarmGate(settings(alarm_names=["5xx"])).check().ok
    assert gates.AlarmGate(settings()).check().ok  # no alarms configured: nothing to hold on
    cloudwatch.set_alarm_state(AlarmName="5xx", StateValue="ALARM", StateReason="5xx up")
    verdict = gates.AlarmGate(settings(alarm_names=["5xx", "gone"])).check()
    assert not verdict.ok and verdict.reason == "5xx is ALARM, gone is MISSING"


def test_the_floor_counts_healthy_targets_outside_the_next_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    healthy = {"i-1", "i-2", "i-3"}

    class Fake:
        def describe_target_groups(self, Names: list[str]) -> dict[str, Any]:
            return {"TargetGroups": [{"TargetGroupName": "web", "TargetGroupArn": "arn:web"}]}

        def describe_target_health(self, TargetGroupArn: str) -> dict[str, Any]:
            return {
                "TargetHealthDescriptions": [
                    {"Target": {"Id": i}, "TargetHealth": {"State": "healthy"}}
                    for i in sorted(healthy)
                ]
            }

    monkeypatch.setattr(gates.target_groups, "elbv2_client", lambda _s: Fake())
    gate = gates.HealthyFloorGate(settings(), spec(), [["i-1", "i-4"], ["i-2", "i-3"]], 2)
    assert gate.check().ok  # i-4 is out already: taking i-1 out leaves 2
    verdict = gate.check()
    assert not verdict.ok and "would leave 1, fewer than 2" in verdict.reason


def test_the_lease_gate_holds_once_the_lease_is_lost() -> None:
    assert gates.LeaseGate(None).check().ok

    class Lost(Heartbeat):
        def __init__(self) -> None:  # no table: only `check` is asked
            import threading

            self.lost = threading.Event()
            self.lease = type("L", (), {"key": "sandbox/service/hello"})()  # type: ignore[assignment]

    beat = Lost()
    assert gates.LeaseGate(beat).check().ok
    beat.lost.set()
    verdict = gates.LeaseGate(beat).check()
    assert not verdict.ok and "taken or broken" in verdict.reason


@mock_aws
def test_a_resume_of_the_same_run_takes_the_lease_over_and_another_run_is_refused() -> None:
    table = LockTable(region=REGION)
    key = "sandbox/service/hello"
    table.acquire(key, Holder("ann", "box", 1, "run-a"))
    with pytest.raises(LockHeld, match="ann@box"):
        table.acquire(key, Holder("bob", "box", 2, "run-b"))
    taken = table.acquire(key, Holder("ann", "box", 3, "run-a"))  # the dead holder's run
    assert table.current(key) is not None and table.current(key).lease_id == taken.lease_id  # type: ignore[union-attr]


@mock_aws
def test_ecr_images_come_with_a_registry_login_others_without() -> None:
    plain = image_ref.parse("127.0.0.1:5000/hello:v1")
    assert steps.registry_login(settings(), plain) == {}
    ecr = image_ref.parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/hello:v1")
    login = steps.registry_login(settings(), ecr)
    assert login["container_service_registry"] == ecr.registry
    assert login["container_service_registry_username"] == "AWS"
    assert login["container_service_registry_password"]


def test_a_rollback_pins_the_digest_the_last_deploy_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def plan_deploy(_settings: Any, _spec: Any, image: str, **_kw: Any) -> Any:
        asked.append(image)
        raise BadInput("stop here")

    monkeypatch.setattr(wf, "load_spec", lambda _env, _name: spec())
    monkeypatch.setattr(wf.views, "plan_deploy", plan_deploy)
    with Journal(tmp_path / "journal.db") as journal:
        with pytest.raises(BadInput, match="no deploy of hello"):
            wf.prepare_rollback(settings(), "hello", journal, to=None, batch=None,
                                min_healthy=None)  # fmt: skip
        run = journal.begin_run(wf.KIND, request().arguments(), "sandbox")
        journal.end_run(run.id, "succeeded")
        for to in (None, "sha256:" + "d" * 64):
            with pytest.raises(BadInput, match="stop here"):
                wf.prepare_rollback(settings(), "hello", journal, to=to, batch=None,
                                    min_healthy=None)  # fmt: skip
    assert asked == ["@sha256:" + "a" * 64, "@sha256:" + "d" * 64]
