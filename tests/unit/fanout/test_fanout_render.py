"""What `ops run` prints: plain lines, JSON shapes, host-prefixed output, the progress bar."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from ops.cli.run import RunRenderer
from ops.engine.fanout import FanOutReport
from ops.transports.ssm import HostResult


def _results() -> list[HostResult]:
    return [
        HostResult("i-00000000000000001", "web-1", "Success", 0, "up 3 days\n", "", False, 0.4),
        HostResult("i-00000000000000002", "web-2", "Failed", 2, "", "disk full\n", False, 0.2),
    ]


def test_json_document_shape(capsys: pytest.CaptureFixture[str]) -> None:
    renderer = RunRenderer(output="json", show_output=False, no_color=True, total=2)
    for result in _results():
        renderer.result(result)
    renderer.finish(FanOutReport(["c-1"], {}))
    document = json.loads(capsys.readouterr().out)
    assert document["command_ids"] == ["c-1"]
    assert document["summary"] == {"Success": 1, "Failed": 1}
    assert document["results"][1] == {
        "instance_id": "i-00000000000000002",
        "name": "web-2",
        "status": "Failed",
        "exit_code": 2,
        "stdout": "",
        "stderr": "disk full\n",
        "output_truncated": False,
        "duration_s": 0.2,
    }


def test_jsonl_streams_one_line_per_host(capsys: pytest.CaptureFixture[str]) -> None:
    renderer = RunRenderer(output="jsonl", show_output=False, no_color=True, total=2)
    renderer.result(_results()[0])
    first = capsys.readouterr().out
    assert json.loads(first)["status"] == "Success"
    renderer.result(_results()[1])
    renderer.finish(FanOutReport(["c-1"], {}))
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert renderer.results == []  # nothing kept per host for jsonl


def test_plain_lines_output_prefix_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    renderer = RunRenderer(output="table", show_output=True, no_color=True, total=2)
    renderer.interactive = False
    for result in _results():
        renderer.result(result)
    renderer.finish(FanOutReport(["c-1"], {}), run_id="r-1")
    out = capsys.readouterr().out
    assert "i-00000000000000001 (web-1): Success exit=0 0.4s" in out
    assert "web-1: up 3 days" in out and "web-2!: disk full" in out
    assert "hosts not succeeded" in out and "disk full" in out


def test_progress_bar_counts_statuses_on_a_terminal() -> None:
    renderer = RunRenderer(output="table", show_output=False, no_color=True, total=2)
    renderer.console = Console(file=io.StringIO(), force_terminal=True, width=120)
    renderer.interactive = True
    with renderer.live():
        for result in _results():
            renderer.result(result)
        assert renderer._describe() == "Success 1  Failed 1"
    assert "2/2" in renderer.console.file.getvalue()  # type: ignore[attr-defined]
