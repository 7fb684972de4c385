"""What `ops` is using and what it lacks, piece by piece, for `ops doctor` and `ops --version -v`.

A new team's first failure is rarely in `ops` itself: no credentials, the
wrong project folder, no Docker engine for the sandbox. Each check here names
one piece, says what was found, and when it is missing, how to mend it, so the
operator reads one line per problem instead of a traceback later.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ops.config import inventories_dir, load_settings
from ops.errors import OpsError
from ops.project import find_project


@dataclass(frozen=True)
class Check:
    piece: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"piece": self.piece, "ok": self.ok, "detail": self.detail}


def _project_checks(env: str | None) -> tuple[list[Check], str | None, str | None]:
    checks: list[Check] = []
    try:
        project = find_project()
    except OpsError as exc:
        return [Check("project", False, str(exc))], None, None
    where = str(project.root) if project.root else "(packaged defaults)"
    checks.append(
        Check(
            "project",
            project.root is not None,
            f"{where}, {project.source}"
            if project.root
            else "no folder with inventories/ here or above: run `ops init` or pass --project",
        )
    )
    name = env or os.environ.get("OPS_ENV") or "sandbox"
    settings_file = inventories_dir() / name / "ops.yml"
    region = profile = None
    try:
        settings = load_settings(env)
        region, profile = settings.region, settings.profile
        found = settings_file.is_file()
        checks.append(
            Check(
                "settings",
                found,
                f"{settings_file} (env {name})"
                if found
                else f"{settings_file} is missing: defaults only; `ops init` writes one",
            )
        )
    except OpsError as exc:
        checks.append(Check("settings", False, str(exc)))
    checks.append(Check("playbooks", project.playbooks.is_dir(), str(project.playbooks)))
    return checks, region, profile


def _aws_check(region: str | None, profile: str | None) -> Check:
    """STS GetCallerIdentity: the one call every principal may make, so it proves credentials."""
    from botocore.exceptions import BotoCoreError, ClientError

    from ops.aws import fresh_client

    try:
        sts = fresh_client("sts", profile=profile, region=region)
        who = sts.get_caller_identity()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return Check("aws", False, f"{error.get('Code')}: {error.get('Message')} ({region})")
    except BotoCoreError as exc:
        remedy = '`aws sso login --profile NAME`, or `eval "$(ops sandbox env)"` for the sandbox'
        return Check("aws", False, f"{exc} (region {region}, profile {profile}): {remedy}")
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    via = f" via {endpoint}" if endpoint else ""
    return Check("aws", True, f"{who.get('Arn')} in {region}{via}")


def _tool_checks(sandbox: bool) -> list[Check]:
    bindir = Path(sys.executable).parent
    ansible = shutil.which("ansible-playbook") or (
        str(bindir / "ansible-playbook") if (bindir / "ansible-playbook").exists() else None
    )
    checks = [
        Check(
            "ansible",
            ansible is not None,
            ansible or "ansible-playbook not found: pip install ansible-core",
        ),
        Check(
            "ssh",
            shutil.which("ssh") is not None,
            shutil.which("ssh") or "no ssh client: install openssh-client (Ansible push uses it)",
        ),
    ]
    if sandbox:
        from ops.sandbox.engine import docker_answers

        engine = docker_answers()
        checks.append(
            Check(
                "docker",
                engine,
                "the engine answers" if engine else "no Docker engine answers: start dockerd",
            )
        )
        missing = [name for name in ("moto", "flask") if importlib.util.find_spec(name) is None]
        checks.append(
            Check(
                "sandbox extra",
                not missing,
                "moto's server is installed"
                if not missing
                else "pip install 'fleetops[sandbox]' (moto's server)",
            )
        )
    return checks


def diagnose(env: str | None = None, *, with_aws: bool = True) -> list[Check]:
    """Every piece, in the order a new team sets them up."""
    checks, region, profile = _project_checks(env)
    if with_aws:
        checks.append(_aws_check(region, profile))
    name = env or os.environ.get("OPS_ENV") or "sandbox"
    checks.extend(_tool_checks(sandbox=name == "sandbox"))
    return checks


def describe_setup(env: str | None = None) -> list[str]:
    """`ops --version -v`: the folders and settings in use, without calling AWS."""
    return [
        f"{c.piece}: {c.detail}"
        for c in diagnose(env, with_aws=False)
        if c.piece in ("project", "settings", "playbooks")
    ] + [f"python: {sys.version.split()[0]} ({sys.executable})"]
