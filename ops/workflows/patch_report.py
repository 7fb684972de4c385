"""`ops patch report RUN_ID`: what a patch run did, host by host, from the journal alone.

Every step's findings are in the journal (the run keeps its steps' output),
so a report needs no AWS call and works for a run that is still going, was
stopped by its budget or a gate, or was resumed. Old versions are the ones
precheck read before anything changed, new ones the ones apply read after:
an apply a resume sent again (and which found nothing left to do) still
shows the upgrade.
"""

from __future__ import annotations

import html
import json
from typing import Any

from ops.errors import BadInput
from ops.fleet.platforms import lookup
from ops.journal.store import INTENDED, STARTED, Journal, Run
from ops.transports.ssm import NOT_STARTED, SUCCESS
from ops.workflows.patch_run import KIND, STEPS

_OS_NAMES = {"amzn": "amzn", "debian": "debian", "ubuntu": "ubuntu"}
_OPEN = frozenset({INTENDED, STARTED})


def _findings(detail: dict[str, Any]) -> dict[str, Any]:
    try:
        found = json.loads(detail.get("stdout") or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def build_report(journal: Journal, run_id: str) -> dict[str, Any]:
    run = journal.get_run(run_id)
    if run is None:
        raise BadInput(f"no run {run_id!r} in the journal; `ops runs list` shows the ids")
    if run.kind != KIND:
        raise BadInput(f"run {run_id} is a {run.kind!r} run, not a patch run")
    return _report(run, journal)


def _report(run: Run, journal: Journal) -> dict[str, Any]:
    entries: dict[str, Any] = run.arguments.get("entries") or {}
    waves: list[list[str]] = run.arguments.get("waves") or []
    wave_of = {iid: index for index, wave in enumerate(waves) for iid in wave}
    # A step's outcome is its latest result row; the write-ahead rows (intended,
    # started) count only where no result was ever written.
    last: dict[tuple[str, str], Any] = {}
    for row in journal.steps(run.id):
        known = last.get((row.host, row.phase))
        if row.status in _OPEN and known is not None and known.status not in _OPEN:
            continue
        last[(row.host, row.phase)] = row
    hosts = []
    order = sorted(
        entries, key=lambda iid: (wave_of.get(iid, len(waves)), entries[iid].get("name", ""))
    )
    for iid in order:
        entry = entries[iid]
        steps = {step: last.get((iid, step)) for step in STEPS}
        found = {
            step: _findings(row.detail)
            for step, row in steps.items()
            if row and row.status == SUCCESS
        }
        pre = found.get("precheck", {})
        before = pre.get("versions", {})
        after = found.get("apply", {}).get("versions", {})
        changed = [
            {"name": name, "old": before.get(name, ""), "new": new}
            for name, new in sorted(after.items())
            if before.get(name) != new
        ]
        failure = next(
            (
                {"step": step, "status": row.status, "output": _output(row.detail)}
                for step, row in steps.items()
                if row is not None
                and row.status not in (SUCCESS, "intended", "started")
                and row.status != NOT_STARTED
            ),
            None,
        )
        done = all(row is not None and row.status == SUCCESS for row in steps.values())
        not_started = steps["precheck"] is None or steps["precheck"].status in (
            NOT_STARTED,
            INTENDED,
        )
        state = (
            "patched"
            if done
            else "failed"
            if failure
            else "not started"
            if not_started
            else "incomplete"
        )
        os_id, _, os_version = str(pre.get("os", "")).partition(" ")
        platform = (
            lookup(_OS_NAMES.get(os_id, os_id) or None, os_version or None) if os_id else None
        )
        reboot = found.get("reboot", {})
        hosts.append(
            {
                "instance_id": iid,
                "name": entry.get("name", ""),
                "platform": entry.get("platform", ""),
                "wave": wave_of.get(iid),
                "state": state,
                "changed": changed,
                "kernel_before": pre.get("kernel", ""),
                "kernel_after": found.get("postcheck", {}).get("kernel", ""),
                # what ran before the reboot, and how the postcheck found each one after it
                "containers_before": list(pre.get("containers", [])),
                "containers_after": list(found.get("postcheck", {}).get("containers", [])),
                "rebooted": bool(reboot.get("rebooted")),
                "boot_before": reboot.get("boot_before", ""),
                "boot_after": reboot.get("boot_after", ""),
                "drain_s": found.get("drain", {}).get("seconds"),
                "apply_s": found.get("apply", {}).get("seconds"),
                "reboot_s": reboot.get("seconds"),
                "health_s": found.get("register", {}).get("seconds"),
                "failure": failure,
                "end_of_support": bool(platform and platform.past_end_of_support()),
                "end_of_support_date": (
                    platform.end_of_support.isoformat()
                    if platform and platform.end_of_support
                    else None
                ),
            }
        )
    counts: dict[str, int] = {}
    for host in hosts:
        counts[host["state"]] = counts.get(host["state"], 0) + 1
    stopped_wave = next(
        (h["wave"] for h in hosts if h["state"] in ("not started", "incomplete", "failed")), None
    )
    return {
        "run_id": run.id,
        "status": run.status,
        "environment": run.environment,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "waves": waves,
        "summary": {
            "hosts": len(hosts),
            **counts,
            "rebooted": sum(1 for h in hosts if h["rebooted"]),
            "packages_changed": sum(len(h["changed"]) for h in hosts),
            "first_unfinished_wave": stopped_wave,
        },
        "not_planned": run.arguments.get("not_planned") or {},
        "end_of_support": [h["name"] or h["instance_id"] for h in hosts if h["end_of_support"]],
        "hosts": hosts,
    }


def _output(detail: dict[str, Any]) -> str:
    text = str(detail.get("stderr") or detail.get("reason") or detail.get("stdout") or "")
    return text[-2000:]


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}s"


def _rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for host in report["hosts"]:
        changes = ", ".join(f"{c['name']} {c['old']} -> {c['new']}" for c in host["changed"])
        rows.append(
            [
                host["name"] or host["instance_id"],
                "-" if host["wave"] is None else str(host["wave"]),
                host["state"],
                changes or "-",
                f"{host['kernel_before'] or '-'} -> {host['kernel_after'] or '-'}",
                "yes" if host["rebooted"] else "no",
                _seconds(host["drain_s"]),
                _seconds(host["apply_s"]),
                _seconds(host["reboot_s"]),
                _seconds(host["health_s"]),
            ]
        )
    return rows


HEADERS = ["host", "wave", "state", "packages", "kernel", "rebooted", "drain", "apply",
           "reboot", "health"]  # fmt: skip


def _summary_line(report: dict[str, Any]) -> str:
    summary = report["summary"]
    parts = [f"{summary['hosts']} hosts"]
    parts += [
        f"{summary[k]} {k}"
        for k in ("patched", "failed", "incomplete", "not started")
        if summary.get(k)
    ]
    parts.append(f"{summary['rebooted']} rebooted")
    parts.append(f"{summary['packages_changed']} packages changed")
    if summary.get("first_unfinished_wave") is not None:
        parts.append(f"stopped at wave {summary['first_unfinished_wave']}")
    return ", ".join(parts)


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Patch run {report['run_id']} ({report['status']}, env {report['environment']})",
        "",
        _summary_line(report),
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in _rows(report)
    ]
    failures = [h for h in report["hosts"] if h["failure"]]
    if failures:
        lines += ["", "## Failures", ""]
        for host in failures:
            failure = host["failure"]
            lines += [
                f"### {host['name'] or host['instance_id']}: {failure['step']} {failure['status']}",
                "",
                "```",
                failure["output"].replace("```", "'''"),
                "```",
            ]
    if report["not_planned"]:
        lines += ["", "## Not planned (probe failed)", ""]
        lines += [f"- {iid}: {why}" for iid, why in sorted(report["not_planned"].items())]
    if report["end_of_support"]:
        lines += [
            "",
            "## Past end of support",
            "",
            "Their repositories no longer bring fixes: " + ", ".join(report["end_of_support"]),
        ]
    return "\n".join(lines) + "\n"


def render_html(report: dict[str, Any]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADERS)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in _rows(report)
    )
    failures = "".join(
        f"<h3>{esc(h['name'] or h['instance_id'])}: {esc(h['failure']['step'])} "
        f"{esc(h['failure']['status'])}</h3><pre>{esc(h['failure']['output'])}</pre>"
        for h in report["hosts"]
        if h["failure"]
    )
    eos = (
        f"<p><strong>Past end of support:</strong> {esc(', '.join(report['end_of_support']))}</p>"
        if report["end_of_support"]
        else ""
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Patch run {esc(report['run_id'])}</title></head><body>"
        f"<h1>Patch run {esc(report['run_id'])} ({esc(report['status'])})</h1>"
        f"<p>{esc(_summary_line(report))}</p>"
        f"<table border='1'><tr>{head}</tr>{body}</table>{failures}{eos}</body></html>\n"
    )
