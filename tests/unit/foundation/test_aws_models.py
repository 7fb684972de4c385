"""The listing's EC2 client from a cut model: the same requests and parses as the full client,
a cache that follows botocore's version, and the full client whenever a cut cannot be had."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.loaders import Loader
from moto import mock_aws
from moto.ec2.responses.instances import InstanceResponse

from ops import aws, aws_models
from ops.fleet.discovery import EC2_LISTING
from ops.sandbox import moto_server

IMAGE = "ami-12c6146b"  # any id: moto checks AMIs only when told to
# differ per request by design: the time, the signature over it, a fresh invocation id
_VOLATILE = {"X-Amz-Date", "Authorization", "amz-sdk-invocation-id"}


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Dummy credentials, an EC2 endpoint on a closed loopback port (nothing may leave
    the machine if an answer were not served), a cache folder and sessions of the test's own."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:9")
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DATA_PATH", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    aws._session.cache_clear()
    yield tmp_path / "cache"
    aws._session.cache_clear()


def _cut_client() -> Any:
    return aws.client("ec2", region="us-east-1", operations=EC2_LISTING)


def _full_client() -> Any:
    return aws.client("ec2", region="us-east-1")


def _cut_folder(cache: Path, version: str | None = None) -> Path:
    version = version or botocore.__version__
    return cache / "fleetops" / "botocore" / version / "ec2" / aws_models.version_name(EC2_LISTING)


def _fresh_sessions() -> None:
    """A new process, as far as the cache is concerned: new sessions, new loaders."""
    aws._session.cache_clear()


def test_cut_keeps_the_operations_and_every_shape_they_reach() -> None:
    full = Loader().load_service_model("ec2", "service-2")
    cut = aws_models.cut(full, EC2_LISTING)
    assert sorted(cut["operations"]) == sorted(EC2_LISTING)
    assert cut["metadata"] == full["metadata"] and cut["version"] == full["version"]
    for name, shape in cut["shapes"].items():
        assert shape == full["shapes"][name]
        refs = [m["shape"] for m in shape.get("members", {}).values()]
        refs += [shape[p]["shape"] for p in ("member", "key", "value") if p in shape]
        assert set(refs) <= set(cut["shapes"]), name
    assert "Instance" in cut["shapes"] and "RunInstancesRequest" not in cut["shapes"]
    assert len(cut["shapes"]) < len(full["shapes"]) / 10
    with pytest.raises(ValueError, match="no operation 'RunInstance'"):
        aws_models.cut(full, ["RunInstance"])


def test_cut_client_has_the_listing_operations_only_on_the_full_client_s_terms() -> None:
    full, cut = _full_client(), _cut_client()
    assert cut.meta.service_model.operation_names == sorted(EC2_LISTING)
    assert len(full.meta.service_model.operation_names) > 600
    assert cut.meta.service_model.api_version == full.meta.service_model.api_version
    assert cut.meta.service_model.metadata == full.meta.service_model.metadata
    assert cut.meta.endpoint_url == full.meta.endpoint_url == "http://127.0.0.1:9"
    assert cut.meta.config.retries == full.meta.config.retries
    assert cut.meta.region_name == full.meta.region_name
    assert cut.can_paginate("describe_instances")
    # one session: the credentials were resolved once, and both sign with them
    assert cut._request_signer._credentials is full._request_signer._credentials


def test_the_full_client_made_after_the_cut_is_whole() -> None:
    cut, full = _cut_client(), _full_client()
    assert len(cut.meta.service_model.operation_names) == 2
    assert "run_instances" in dir(full) and len(full.meta.service_model.operation_names) > 600


class _Recorder:
    """Every request a client sends (its lasting parts) and every answer it parses."""

    def __init__(self, client: Any) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []
        self.replay: list[dict[str, Any]] | None = None  # answers to serve, once set
        client.meta.events.register_first("before-send.ec2", self._send)
        client.meta.events.register("before-parse.ec2", self._parse)

    def _send(self, request: Any, **_: Any) -> AWSResponse | None:
        headers = {k: v for k, v in request.headers.items() if k not in _VOLATILE}
        headers["User-Agent"] = _features_sorted(headers["User-Agent"])
        authorization = request.headers["Authorization"]
        if isinstance(authorization, bytes):
            authorization = authorization.decode()
        # the credential scope and signed headers; the date and signature change per second
        scope = authorization.split("Credential=")[1].split("/", 1)[1].split(",")[0]
        signed = authorization.split("SignedHeaders=")[1].split(",")[0]
        body = request.body if isinstance(request.body, bytes) else request.body.encode()
        self.requests.append(
            {"method": request.method, "url": request.url, "body": body, "headers": headers,
             "scope": scope, "signed": signed}
        )  # fmt: skip
        if self.replay is None:
            return None  # moto answers
        answer = self.replay.pop(0)  # and nothing is ever sent: IndexError when none is left
        return AWSResponse(request.url, answer["status_code"], answer["headers"], _Raw(answer))

    def _parse(self, response_dict: dict[str, Any], **_: Any) -> None:
        self.answers.append(
            {k: response_dict[k] for k in ("status_code", "headers", "body")}
        )  # fmt: skip


def _features_sorted(agent: bytes | str) -> str:
    """The user agent with its feature ids (`m/A,B,...`, kept in a set) in one order."""
    text = agent.decode() if isinstance(agent, bytes) else agent
    return " ".join(
        "m/" + ",".join(sorted(part[2:].split(","))) if part.startswith("m/") else part
        for part in text.split(" ")
    )


class _Raw(io.BytesIO):
    """The urllib3 response botocore reads a body from."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(answer["body"])

    def stream(self, *_args: Any, **_kwargs: Any) -> Iterator[bytes]:
        yield self.read()


def _calls(ids: list[str]) -> list[tuple[str, Callable[[Any], Any]]]:
    def pages(**kwargs: Any) -> Callable[[Any], Any]:
        return lambda c: list(c.get_paginator("describe_instances").paginate(**kwargs))

    return [
        ("every page, 5 a page", pages(PaginationConfig={"PageSize": 5})),
        (
            "filters, as the listing sends them",
            pages(
                Filters=[
                    {"Name": "instance-state-name", "Values": ["running"]},
                    {"Name": "tag-value", "Values": ["web ü & <x>"]},
                ],
                PaginationConfig={"PageSize": 1000},
            ),
        ),
        (
            "an instance-id filter",
            pages(Filters=[{"Name": "instance-id", "Values": ids[:3]}]),
        ),
        ("by id", lambda c: c.describe_instances(InstanceIds=ids[3:5])),
        ("zones", lambda c: c.describe_availability_zones(ZoneNames=["us-east-1a"])),
        ("every zone", lambda c: c.describe_availability_zones(AllAvailabilityZones=True)),
    ]


def _error(call: Callable[[Any], Any], client: Any) -> Any:
    try:
        call(client)
    except ClientError as exc:
        return exc.response
    raise AssertionError("the call should have failed")


def test_cut_client_sends_and_parses_exactly_as_the_full_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_EC2")  # moto answers EC2's own endpoint only
    # credentials resolved before either client: the first client made would otherwise carry
    # the user agent's "credentials from the environment" feature id, and the second not
    aws.session(None, "us-east-1").get_credentials()
    full, cut = _full_client(), _cut_client()
    # moto pages DescribeInstances by reservation; the sandbox's remedy pages as EC2 does
    monkeypatch.setattr(InstanceResponse, "describe_instances", InstanceResponse.describe_instances)
    moto_server.patch_instance_paging()
    with mock_aws():
        maker = aws.client("ec2", region="us-east-1")
        ids: list[str] = []
        for size, value in ((7, "web ü & <x>"), (4, "db")):
            made = maker.run_instances(
                ImageId=IMAGE, MinCount=size, MaxCount=size, InstanceType="t3.micro",
                TagSpecifications=[{"ResourceType": "instance", "Tags": [
                    {"Key": "Name", "Value": value}, {"Key": "ops:ssh", "Value": "10.0.0.1:2201"},
                ]}],
            )  # fmt: skip
            ids += [i["InstanceId"] for i in made["Instances"]]
        recorded_full, recorded_cut = _Recorder(full), _Recorder(cut)
        calls = _calls(ids)

        def missing(c: Any) -> Any:
            return c.describe_instances(InstanceIds=["i-0123456789abcdef0"])

        for _label, call in calls:
            call(full)
            call(cut)
        _error(missing, full)
        _error(missing, cut)
        assert recorded_full.requests == recorded_cut.requests
        assert len(recorded_full.requests) > len(calls) + 1  # the first listing is paged
    # the same answers, byte for byte, parsed by each client (moto is off: only the replay answers)
    answers = list(recorded_full.answers)
    assert any(b"<instanceId>" in a["body"] for a in answers)
    parsed: dict[str, list[Any]] = {"full": [], "cut": []}
    for name, client, recorder in (("full", full, recorded_full), ("cut", cut, recorded_cut)):
        recorder.replay = list(answers)
        for _label, call in calls:
            parsed[name].append(call(client))
        parsed[name].append(_error(missing, client))
        assert not recorder.replay
    assert parsed["full"] == parsed["cut"]
    first_page = parsed["cut"][0][0]
    instance = first_page["Reservations"][0]["Instances"][0]
    assert {"InstanceId", "State", "Tags", "Placement", "PrivateIpAddress"} <= set(instance)
    assert parsed["cut"][-1]["Error"]["Code"] == "InvalidInstanceID.NotFound"


def test_cut_is_written_once_per_botocore_version(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cut_client()
    folder = _cut_folder(isolated)
    written = (folder / "service-2.json").stat().st_mtime_ns
    assert json.loads((folder / "service-2.json").read_text())["metadata"]["serviceId"] == "EC2"
    assert (folder / "endpoint-rule-set-1.json").is_file()

    def no_write(*_args: Any) -> None:
        raise AssertionError("the cut was written again")

    with monkeypatch.context() as patch:
        patch.setattr(aws_models, "_write", no_write)
        _fresh_sessions()
        assert _cut_client().meta.service_model.operation_names == sorted(EC2_LISTING)
    assert (folder / "service-2.json").stat().st_mtime_ns == written

    # another botocore: a cut of its own model, beside the first (used within the month)
    monkeypatch.setattr(botocore, "__version__", "9.9.9")
    _fresh_sessions()
    assert len(_cut_client().meta.service_model.operation_names) == 2
    assert (_cut_folder(isolated, "9.9.9") / "service-2.json").is_file()
    assert folder.is_dir()
    # a version's folder unused past STALE_AFTER_S goes when another version's is written
    old = time.time() - aws_models.STALE_AFTER_S - 60
    os.utime(folder.parents[1], (old, old))
    monkeypatch.setattr(botocore, "__version__", "9.9.10")
    _fresh_sessions()
    _cut_client()
    assert not folder.parents[1].exists()
    assert _cut_folder(isolated, "9.9.9").is_dir() and _cut_folder(isolated, "9.9.10").is_dir()


def test_a_cut_that_fails_to_load_gives_the_full_client_and_is_written_again(
    isolated: Path,
) -> None:
    _cut_client()
    folder = _cut_folder(isolated)
    (folder / "service-2.json").write_text('{"version": "2.0", "metadata": ')  # cut off
    _fresh_sessions()
    assert len(_cut_client().meta.service_model.operation_names) > 600
    assert not folder.exists()
    _fresh_sessions()
    assert len(_cut_client().meta.service_model.operation_names) == 2


def test_a_cut_without_its_rule_set_gives_the_full_client(isolated: Path) -> None:
    _cut_client()
    folder = _cut_folder(isolated)
    (folder / "endpoint-rule-set-1.json").unlink()
    _fresh_sessions()
    assert len(_cut_client().meta.service_model.operation_names) > 600
    assert not folder.exists()


def test_a_cut_short_of_an_operation_gives_the_full_client(isolated: Path) -> None:
    _cut_client()
    folder = _cut_folder(isolated)
    model = json.loads((folder / "service-2.json").read_text())
    del model["operations"]["DescribeAvailabilityZones"]
    (folder / "service-2.json").write_text(json.dumps(model))
    _fresh_sessions()
    client = _cut_client()
    assert len(client.meta.service_model.operation_names) > 600
    assert not folder.exists()


def _full_model_in(data_path: Path) -> None:
    version = Loader().determine_latest_version("ec2", "service-2")
    target = data_path / "ec2" / version
    target.mkdir(parents=True)
    model = Loader().load_service_model("ec2", "service-2")
    (target / "service-2.json").write_text(json.dumps(model))


def test_no_cut_when_another_data_path_models_ec2(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _full_model_in(tmp_path / "models")
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path / "models"))
    assert len(_cut_client().meta.service_model.operation_names) > 600
    assert not (isolated / "fleetops").exists()
    # a data folder with other files of EC2's (boto3's resource models) does not count
    (tmp_path / "resources" / "ec2" / "2016-11-15").mkdir(parents=True)
    (tmp_path / "resources" / "ec2" / "2016-11-15" / "resources-1.json").write_text("{}")
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path / "resources"))
    _fresh_sessions()
    assert len(_cut_client().meta.service_model.operation_names) == 2


def test_no_cut_when_the_ec2_api_version_is_pinned(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.write_text("[default]\napi_versions =\n    ec2 = 2016-11-15\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert len(_cut_client().meta.service_model.operation_names) > 600
    assert not (isolated / "fleetops").exists()


def test_no_cut_when_the_cache_cannot_be_written(isolated: Path) -> None:
    isolated.write_text("a file where the cache folder would be")
    assert len(_cut_client().meta.service_model.operation_names) > 600


def test_no_cut_without_a_home_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert len(_cut_client().meta.service_model.operation_names) > 600


def test_no_cut_from_a_cache_folder_someone_else_owns(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cut_client()
    root = isolated / "fleetops" / "botocore"
    root.chmod(0o755)
    _fresh_sessions()
    _cut_client()
    assert root.stat().st_mode & 0o777 == 0o700  # closed again
    monkeypatch.setattr(os, "geteuid", lambda: root.stat().st_uid + 1)
    _fresh_sessions()
    assert len(_cut_client().meta.service_model.operation_names) > 600


def test_a_half_made_cut_in_the_way_is_not_taken_for_one(isolated: Path) -> None:
    folder = _cut_folder(isolated)
    folder.mkdir(parents=True)
    (folder / "stray").write_text("")  # neither the model nor empty: rename cannot replace it
    assert len(_cut_client().meta.service_model.operation_names) > 600
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_finished_cut_written_meanwhile_by_another_process_is_kept(isolated: Path) -> None:
    loader = Loader()
    folder = isolated / "fleetops" / "botocore" / botocore.__version__
    name = aws_models.version_name(EC2_LISTING)
    aws_models._write(loader, "ec2", EC2_LISTING, folder, name)
    first = (folder / "ec2" / name / "service-2.json").read_bytes()
    aws_models._write(loader, "ec2", EC2_LISTING, folder, name)  # lost the race: no error
    assert (folder / "ec2" / name / "service-2.json").read_bytes() == first


def test_no_cut_of_a_service_the_loader_does_not_know() -> None:
    empty = Loader(include_default_search_paths=False)
    assert aws_models.cut_version(empty, "ec2", EC2_LISTING) is None
