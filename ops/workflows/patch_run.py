"""`ops patch run` as a workflow: per host precheck, drain, apply, reboot, postcheck, register.

The plan (`ops patch plan`'s) decides the hosts, their approved updates and
the waves; everything a resume needs is in the run's arguments (hosts,
updates, load balancer memberships, waves), so a resume never plans again.
The runtime (ops.engine) goes wave by wave, checks the alarm gate before
each, and spends one failure budget across the whole run.

Every step asks the host (or the load balancer) whether it already happened
before acting, so a resume after a crash neither patches a host twice nor
skips one:

- precheck: reads the boot id, kernel, Docker state, running containers and
  the installed versions of the packages to update (read-only);
- drain: deregisters only targets still registered, then waits with the
  ELBv2 waiter until they are gone;
- apply: under a lock on the host, upgrades only packages not yet at their
  planned version (a second apply installs nothing);
- reboot: only when the host asks for one and its boot id is still the one
  precheck saw (a host already rebooted is not rebooted again);
- postcheck: Docker running if it was, the containers that ran run again,
  the app's HTTP health check answers;
- register: registers back (a no-op for a registered target) and waits
  until the target group reports it healthy.

A step's findings are its HostResult stdout (JSON), kept in the journal
(record_output), which is what `ops patch report` reads.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from ops.aws import client
from ops.config import Settings
from ops.engine.budget import parse_max_errors
from ops.engine.fanout import FanOutReport
from ops.engine.plan import GateResult, InFlight, Plan, Settled, Step, StepContext
from ops.engine.runtime import JournalState, RunReport, Runtime
from ops.errors import BadInput, OpsError
from ops.fleet.discovery import Host
from ops.fleet.inventory import APP_PORT_TAG
from ops.journal.store import Journal, Run, open_journal
from ops.transports import alarms, elb, reboot
from ops.transports.ssm import FAILED, NOT_STARTED, SUCCESS, HostResult, open_transport
from ops.workflows.patch import PatchPlan

KIND = "patch"
STEPS = ("precheck", "drain", "apply", "reboot", "postcheck", "register")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._-]{0,127}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+:~_-]{0,127}$")
_RPM = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+-[^-]+)\.[A-Za-z0-9_]+$")
_BOOT_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_CONTAINER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")  # what Docker allows as a name
# GetCommandInvocation calls a second a wave's quick first reads may spend in all:
# SSM throttles the call at about 10 a second per account (the sandbox does too).
READS_PER_S = 8.0


@dataclass(frozen=True)
class Timing:
    """How often to poll and how long to wait; the sandbox polls faster than AWS needs."""

    poll: float = 5.0
    command_timeout: float = 900.0
    reboot_timeout: float = 600.0
    lb_timeout: float = 600.0
    health_timeout: int = 120


@dataclass
class Clients:
    ssm: Any
    elbv2: Any
    cloudwatch: Any

    @classmethod
    def open(cls, settings: Settings) -> Clients:
        def make(service: str) -> Any:
            return client(service, profile=settings.profile, region=settings.region)

        return cls(make("ssm"), make("elbv2"), make("cloudwatch"))


class StepFailed(OpsError):
    """A host step did not reach its goal; the message is what the report shows."""


# host scripts --------------------------------------------------------------
_BOOT = reboot.BOOT_ID_COMMAND
_OS = '. /etc/os-release 2>/dev/null; os="${ID:-unknown}"; ver="${VERSION_ID:-}"'


def _names(updates: Sequence[Mapping[str, str]]) -> str:
    return " ".join(shlex.quote(u["name"]) for u in updates)


def _versions_block(updates: Sequence[Mapping[str, str]]) -> str:
    names = _names(updates)
    return (
        'echo "@@versions"\n'
        'if [ "$os" = amzn ]; then '
        f"rpm -q {names} 2>/dev/null; "
        f"else dpkg-query -W -f '${{Package}}\\t${{Version}}\\n' {names} 2>/dev/null; fi\n"
    )


def precheck_script(updates: Sequence[Mapping[str, str]]) -> str:
    return (
        "set +e\nexport LC_ALL=C\n"
        f"{_OS}\n"
        f'echo "@@boot"; {_BOOT}\n'
        'echo "@@kernel"; uname -r\n'
        'echo "@@os"; echo "$os $ver"\n'
        'echo "@@docker"\n'
        "if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then\n"
        "  echo active; echo \"@@containers\"; docker ps --format '{{.Names}}'\n"
        "else echo inactive; fi\n"
        f"{_versions_block(updates)}"
        "exit 0\n"
    )


def apply_script(updates: Sequence[Mapping[str, str]]) -> str:
    """Upgrade what is not at its planned version yet, under one lock per host.

    The lock makes an apply sent again by a resume wait for one an earlier
    process left running, and then find nothing to do: apt's history (and
    yum's) records each upgrade once.
    """
    pins = " ".join(shlex.quote(f"{u['name']}={u['new']}") for u in updates)
    return (
        "set -e\nexport LC_ALL=C DEBIAN_FRONTEND=noninteractive\n"
        f"{_OS}\n"
        "mkdir -p /var/lib/fleetops\nexec 9>/var/lib/fleetops/patch.lock\nflock 9\n"
        'todo=""\n'
        f"for pin in {pins}; do\n"
        '  name="${pin%%=*}"; want="${pin#*=}"\n'
        '  if [ "$os" = amzn ]; then\n'
        '    case "$(rpm -q "$name" 2>/dev/null)" in\n'
        '      "$name-$want".*) ;;\n'
        '      *) todo="$todo $name";;\n'
        "    esac\n"
        "  else\n"
        "    have=$(dpkg-query -W -f '${Version}' \"$name\" 2>/dev/null || true)\n"
        '    [ "$have" = "$want" ] || todo="$todo $pin"\n'
        "  fi\n"
        "done\n"
        'echo "@@installed"; echo "$todo"\n'
        'if [ -n "$todo" ]; then\n'
        '  if [ "$os" = amzn ]; then\n'
        '    if [ "$ver" = 2 ]; then pm=yum; else pm=dnf; fi\n'
        "    $pm -y -q update $todo >&2\n"
        "  else\n"
        "    apt-get install -y -q --only-upgrade -o DPkg::Lock::Timeout=300 "
        "-o Dpkg::Options::=--force-confold $todo >&2\n"
        "  fi\n"
        "fi\n"
        "set +e\n"
        f"{_versions_block(updates)}"
        "exit 0\n"
    )


_NEEDS_REBOOT = (
    'if [ "$os" = amzn ]; then\n'
    '  if [ "$ver" = 2 ]; then needs-restarting -r >/dev/null 2>&1; else '
    "dnf needs-restarting -r >/dev/null 2>&1; fi\n"
    "  if [ $? -eq 1 ]; then need=yes; else need=no; fi\n"
    "elif [ -e /var/run/reboot-required ]; then need=yes; else need=no; fi\n"
)


def reboot_script(token: str, boot_before: str) -> str:
    """Reboot when the host asks for one and has not rebooted since precheck, in one
    command: exit 194 makes the agent reboot and run the script again, and that run
    (which finds the marker) reports the new boot id. One SSM round trip instead of
    a check, a boot id read, the reboot and a second read; a resume sends it again
    and finds the boot id changed (`already`) instead of rebooting twice."""
    before = shlex.quote(boot_before)
    return (
        "set +e\n"
        f"{_OS}\n"
        f"marker=/var/lib/fleetops/reboot-{token}\n"
        f"boot=$({_BOOT})\n"
        'if [ -e "$marker" ]; then rm -f "$marker"; outcome=rebooted\n'
        f'elif [ -n {before} ] && [ "$boot" != {before} ]; then outcome=already\n'
        "else\n"
        f"{_NEEDS_REBOOT}"
        '  if [ "$need" = yes ]; then\n'
        '    mkdir -p /var/lib/fleetops && touch "$marker" && exit 194\n'
        "  fi\n"
        "  outcome=no\n"
        "fi\n"
        'echo "@@outcome"; echo "$outcome"\n'
        'echo "@@boot"; echo "$boot"\n'
        'echo "@@kernel"; uname -r\n'
        "exit 0\n"
    )


# One container's state as `docker container inspect` gives it: status, restart policy, health.
_INSPECT = (
    "{{.State.Status}}|{{.HostConfig.RestartPolicy.Name}}|"
    "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}"
)


def _container_wait(quoted: str) -> list[str]:
    """Wait until one container runs again (and is healthy, where it has a health check).

    A container that is gone, or stopped with the restart policy `no`, will not
    come back by itself, so it fails at once instead of at the deadline.
    """
    inspect = f"docker container inspect --format {shlex.quote(_INSPECT)} -- {quoted} 2>/dev/null"
    return [
        "while :; do",
        f"  s=$({inspect})",
        '  st="${s%%|*}"; rest="${s#*|}"; policy="${rest%%|*}"; health="${rest#*|}"',
        '  if [ "$st" = running ] && { [ "$health" = healthy ] || [ "$health" = none ]; }; then',
        f'    printf "%s|%s|%s\\n" {quoted} "$st" "$health"; break',
        "  fi",
        '  late=no; [ "$(date +%s)" -ge "$end" ] && late=yes',
        '  case "$st:$policy" in :|exited:no|exited:|created:no|created:|dead:*) late=yes;; esac',
        '  if [ "$late" = yes ]; then',
        '    if [ -z "$s" ]; then why="is gone";',
        '    elif [ "$st" = running ]; then why="runs again but is not healthy ($health)";',
        '    else why="is not running again ($st, restart policy ${policy:-no})"; health=-; fi',
        f'    echo container {quoted} "$why" >&2; bad=1',
        f'    printf "%s|%s|%s\\n" {quoted} "${{st:-missing}}" "$health"; break',
        "  fi",
        "  sleep 0.5",
        "done",
    ]


def postcheck_script(
    docker_was: bool, containers: Sequence[str], port: int | None, wait: int
) -> str:
    """Exit 1 with one line per failed check on stderr.

    Every check waits up to `wait` seconds in all: after a reboot the daemon,
    the containers it restarts and their health checks come up over some
    seconds, and a check made at once would fail a host that is fine.
    """
    lines = ["set +e", "bad=0", f"end=$(( $(date +%s) + {int(wait)} ))"]
    if docker_was:
        lines += [
            "docker=active",
            "until docker info >/dev/null 2>&1; do",
            '  if [ "$(date +%s)" -ge "$end" ]; then',
            "    echo 'docker is not running' >&2; bad=1; docker=inactive; break",
            "  fi",
            "  sleep 0.5",
            "done",
            'echo "@@docker"; echo "$docker"',
            'echo "@@containers"',
            'if [ "$docker" = active ]; then',
        ]
        for name in containers:
            lines += ["  " + line for line in _container_wait(shlex.quote(name))]
        lines.append("fi")
    if port is not None:
        url = shlex.quote(f"http://127.0.0.1:{port}/health")
        lines += [
            f"until curl -fsS -m 2 -o /dev/null {url}; do",
            f'  if [ "$(date +%s)" -ge "$end" ]; then echo "health check {url} failed" >&2; '
            "bad=1; break; fi",
            "  sleep 0.2",
            "done",
        ]
    lines += ['echo "@@kernel"; uname -r', f'echo "@@boot"; {_BOOT}', 'exit "$bad"']
    return "\n".join(lines) + "\n"


def parse_containers(lines: Sequence[str]) -> list[dict[str, str]]:
    """The postcheck's `name|state|health` lines; a line that does not parse is skipped."""
    found = []
    for line in lines:
        name, _, rest = line.partition("|")
        state, _, health = rest.partition("|")
        if name and state:
            found.append({"name": name, "state": state, "health": health or "none"})
    return found


def sections(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = found.setdefault(line[2:].strip(), [])
        elif current is not None and line.strip():
            current.append(line.strip())
    return found


def parse_versions(lines: Sequence[str]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for line in lines:
        name, tab, version = line.partition("\t")
        if tab:
            versions[name] = version
            continue
        match = _RPM.match(line)
        if match:
            versions[match["name"]] = match["version"]
    return versions


def _first(found: dict[str, list[str]], key: str) -> str:
    return (found.get(key) or [""])[0]


# talking to a host -----------------------------------------------------------
def wait_command(
    ssm: Any,
    command_id: str,
    instance_id: str,
    timing: Timing,
    *,
    first_delay: float | None = None,
    timeout: float | None = None,
) -> None:
    """SSM's waiter, reading `first_delay` apart for the first poll interval (most
    patch scripts end within a second, and a whole-second first wait is most of
    their cost), then every `timing.poll` seconds. Returns on any end state; the
    caller reads the status and output."""
    waiter = ssm.get_waiter("command_executed")
    delay = max(1.0, timing.poll)
    phases = []
    if first_delay is not None and 0 < first_delay < delay:
        phases.append({"Delay": first_delay, "MaxAttempts": int(delay / first_delay) + 1})
    attempts = max(2, int((timeout or timing.command_timeout) / delay))
    phases.append({"Delay": delay, "MaxAttempts": attempts})
    for config in phases:
        try:
            waiter.wait(CommandId=command_id, InstanceId=instance_id, WaiterConfig=config)
            return
        except WaiterError as exc:
            if not str(exc.kwargs.get("reason", "")).startswith("Max attempts exceeded"):
                return  # a failed command ends the waiter too; its status and output say why


def run_script(
    ssm: Any,
    instance_id: str,
    script: str,
    comment: str,
    timing: Timing,
    *,
    first_delay: float | None = None,
    timeout: float | None = None,
) -> tuple[str, str, str]:
    """(status, stdout, stderr) of one script on one host."""
    command = ssm.send_command(
        InstanceIds=[instance_id],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": [script]},
        Comment=comment[:100],
        TimeoutSeconds=max(30, int(timing.command_timeout)),
    )["Command"]["CommandId"]
    wait_command(ssm, command, instance_id, timing, first_delay=first_delay, timeout=timeout)
    reply = ssm.get_command_invocation(CommandId=command, InstanceId=instance_id)
    return (
        str(reply.get("Status", "Unknown")),
        str(reply.get("StandardOutputContent", "")),
        str(reply.get("StandardErrorContent", "")),
    )


def _script_ok(
    ssm: Any,
    instance_id: str,
    script: str,
    comment: str,
    timing: Timing,
    *,
    first_delay: float | None = None,
    timeout: float | None = None,
) -> dict[str, list[str]]:
    status, stdout, stderr = run_script(
        ssm, instance_id, script, comment, timing, first_delay=first_delay, timeout=timeout
    )
    if status != SUCCESS:
        raise StepFailed(f"{comment}: {status}: {(stderr or stdout).strip()[-1500:]}")
    return sections(stdout)


# the plan a run keeps ---------------------------------------------------------
@dataclass
class HostEntry:
    """One host as the run's arguments keep it."""

    instance_id: str
    name: str
    platform: str
    updates: list[dict[str, str]]
    members: list[tuple[str, int | None]] = field(default_factory=list)
    app_port: int | None = None
    reboot_expected: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "platform": self.platform,
            "updates": self.updates,
            "members": [list(m) for m in self.members],
            "app_port": self.app_port,
            "reboot_expected": self.reboot_expected,
        }

    @classmethod
    def from_dict(cls, instance_id: str, data: Mapping[str, Any]) -> HostEntry:
        updates = [dict(u) for u in data.get("updates") or []]
        for update in updates:  # the journal is a file: check again what reaches a shell
            if not _NAME.match(update.get("name", "")) or not _VERSION.match(update.get("new", "")):
                raise BadInput(f"run arguments hold a bad package entry for {instance_id}")
        return cls(
            instance_id,
            str(data.get("name", "")),
            str(data.get("platform", "")),
            updates,
            [(str(m[0]), None if m[1] is None else int(m[1])) for m in data.get("members") or []],
            None if data.get("app_port") is None else int(data["app_port"]),
            bool(data.get("reboot_expected")),
        )

    @property
    def membership(self) -> list[elb.Membership]:
        return [elb.Membership(arn, port) for arn, port in self.members]


def arguments_for(
    patch_plan: PatchPlan,
    hosts: Mapping[str, Host],
    members: Mapping[str, list[elb.Membership]],
    *,
    target: Mapping[str, Any],
    options: Mapping[str, Any],
    max_errors: str,
    alarm_names: Sequence[str],
    timing: Timing,
) -> dict[str, Any]:
    """Everything a resume needs, decided once: hosts, updates, memberships, waves."""
    entries: dict[str, Any] = {}
    for planned in patch_plan.hosts:
        if not planned.pending:
            continue
        host = hosts.get(planned.instance_id)
        port = host.tags.get(APP_PORT_TAG) if host else None
        updates = [
            {"name": u.name, "current": u.current, "new": u.new, "security": str(u.security)}
            for u in planned.pending
            if _NAME.match(u.name) and _VERSION.match(u.new)
        ]
        entries[planned.instance_id] = HostEntry(
            planned.instance_id,
            planned.name,
            planned.platform,
            updates,
            [(m.target_group_arn, m.port) for m in members.get(planned.instance_id, [])],
            int(port) if port and port.isdigit() else None,
            planned.reboot_required,
        ).as_dict()
    return {
        "target": dict(target),
        "options": dict(options),
        "max_errors": max_errors,
        "alarm_names": list(alarm_names),
        "hosts": len(entries),
        "entries": entries,
        "waves": patch_plan.waves,
        "not_planned": {h.instance_id: h.error for h in patch_plan.hosts if h.error},
        "timing": {"poll": timing.poll, "health_timeout": timing.health_timeout},
    }


# the steps ---------------------------------------------------------------------
class AlarmGate:
    """Every alarm named in settings must be OK before a wave starts."""

    name = "alarms"

    def __init__(self, cloudwatch: Any, names: Sequence[str]) -> None:
        self.cloudwatch = cloudwatch
        self.names = list(names)

    def check(self) -> GateResult:
        bad = alarms.not_ok(self.cloudwatch, self.names)
        if bad:
            return GateResult(False, ", ".join(f"{n} is {s}" for n, s in sorted(bad.items())))
        return GateResult(True)


HostAction = Callable[[HostEntry, dict[str, Any]], dict[str, Any]]


class HostStep(Step):
    """One step run on every host of a wave at once, each host in its own thread.

    Nothing is left to settle from the transport: each action looks at the
    host first (see the module docstring), so an open step is simply run
    again. Only the first step refuses to start a host once the failure
    budget is spent or the run is cancelled; a host past it finishes, so no
    host is left drained because another failed.
    """

    def __init__(self, name: str, action: HostAction, run: PatchRun, *, first: bool = False):
        self.name = name
        self.action = action
        self.patch_run = run
        self.first = first

    def settle(self, in_flight: list[InFlight], context: StepContext) -> Settled:
        return Settled(unsent=[item.host for item in in_flight])

    def run(self, hosts: list[Host], context: StepContext, settled: Settled) -> FanOutReport:
        report = FanOutReport([], {})

        def one(host: Host) -> None:
            if self.first and (context.budget.exhausted or context.cancel.is_set()):
                skipped = HostResult(host.instance_id, host.name, NOT_STARTED)
                context.on_result(skipped)
                self.patch_run.listener(self.name, skipped)
                return
            entry = self.patch_run.entries[host.instance_id]
            started = time.monotonic()
            try:
                found = self.action(entry, self.patch_run.facts(host.instance_id))
                status, stdout, stderr = SUCCESS, json.dumps(found, sort_keys=True), ""
                self.patch_run.remember(host.instance_id, self.name, found)
            except (StepFailed, elb.DrainTimeout, reboot.RebootFailed) as exc:
                status, stdout, stderr = FAILED, "", str(exc)
            except (ClientError, BotoCoreError) as exc:
                status, stdout, stderr = FAILED, "", f"{type(exc).__name__}: {exc}"
            context.budget.record(status)
            result = HostResult(
                host.instance_id,
                host.name,
                status,
                exit_code=0 if status == SUCCESS else 1,
                stdout=stdout,
                stderr=stderr,
                duration_s=round(time.monotonic() - started, 3),
            )
            context.on_result(result)
            self.patch_run.listener(self.name, result)

        self.patch_run.in_flight = len(hosts)
        with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
            list(pool.map(one, hosts))
        report.interrupted = context.cancel.is_set()
        return report


class PatchRun:
    """The actions of one run, and what each step learnt of each host."""

    def __init__(
        self,
        clients: Clients,
        entries: dict[str, HostEntry],
        timing: Timing,
        listener: Callable[[str, HostResult], None] = lambda _step, _result: None,
    ) -> None:
        self.clients = clients
        self.entries = entries
        self.timing = timing
        self.listener = listener
        self._facts: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.in_flight = 1  # hosts in the step now (HostStep.run sets it)

    @property
    def first_delay(self) -> float:
        """Seconds between a command's first reads: as quick as the wave's share of
        READS_PER_S allows, never slower than the poll."""
        return min(max(0.2, self.in_flight / READS_PER_S), max(1.0, self.timing.poll))

    def _script(
        self, entry: HostEntry, script: str, comment: str, timeout: float | None = None
    ) -> dict[str, list[str]]:
        return _script_ok(
            self.clients.ssm,
            entry.instance_id,
            script,
            comment,
            self.timing,
            first_delay=self.first_delay,
            timeout=timeout,
        )

    def facts(self, instance_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._facts.get(instance_id, {}))

    def remember(self, instance_id: str, step: str, found: dict[str, Any]) -> None:
        with self._lock:
            self._facts.setdefault(instance_id, {})[step] = found

    def load(self, journal: Journal, run_id: str) -> None:
        """What finished steps found, from the journal (a resume)."""
        for row in journal.steps(run_id):
            if row.status == SUCCESS and row.detail.get("stdout"):
                try:
                    self.remember(row.host, row.phase, json.loads(row.detail["stdout"]))
                except ValueError:
                    continue

    def steps(self) -> list[Step]:
        return [
            HostStep("precheck", self.precheck, self, first=True),
            HostStep("drain", self.drain, self),
            HostStep("apply", self.apply, self),
            HostStep("reboot", self.reboot, self),
            HostStep("postcheck", self.postcheck, self),
            HostStep("register", self.register, self),
        ]

    # actions -------------------------------------------------------------
    def precheck(self, entry: HostEntry, _facts: dict[str, Any]) -> dict[str, Any]:
        found = self._script(
            entry, precheck_script(entry.updates), "ops patch: precheck (read-only)"
        )
        return {
            "boot_id": _first(found, "boot"),
            "kernel": _first(found, "kernel"),
            "os": _first(found, "os"),
            "docker": _first(found, "docker") == "active",
            # host output: only what can be a container's name is kept to check after
            "containers": [c for c in found.get("containers", []) if _CONTAINER.match(c)],
            "versions": parse_versions(found.get("versions", [])),
        }

    def _lb_waits(self) -> tuple[int, int]:
        delay = max(1, int(self.timing.poll))
        return delay, max(2, int(self.timing.lb_timeout / delay))

    def drain(self, entry: HostEntry, _facts: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        elbv2 = self.clients.elbv2
        registered = [
            m
            for m in entry.membership
            if _target_state(elbv2, entry.instance_id, m) not in ("draining", "unused")
        ]
        delay, attempts = self._lb_waits()
        elb.deregister(elbv2, entry.instance_id, registered)
        # every group is waited for: a resume may find one still draining
        elb.wait_deregistered(
            elbv2, entry.instance_id, entry.membership, delay=delay, max_attempts=attempts
        )
        return {
            "groups": [m.target_group_arn for m in entry.membership],
            "seconds": round(time.monotonic() - started, 3),
        }

    def apply(self, entry: HostEntry, _facts: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        found = self._script(entry, apply_script(entry.updates), "ops patch: apply updates")
        return {
            "installed": " ".join(found.get("installed", [])).split(),
            "versions": parse_versions(found.get("versions", [])),
            "seconds": round(time.monotonic() - started, 3),
        }

    def reboot(self, entry: HostEntry, facts: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        ssm = self.clients.ssm
        # a resume may find the host still rebooting from an earlier process's command
        reboot.wait_online(ssm, entry.instance_id, timeout=self.timing.reboot_timeout)
        before = str(facts.get("precheck", {}).get("boot_id", ""))
        if before and not _BOOT_ID.match(before):
            raise StepFailed(f"precheck read a boot id this step cannot use: {before[:80]!r}")
        found = self._script(
            entry,
            reboot_script(uuid.uuid4().hex, before),
            "ops patch: reboot if needed",
            timeout=self.timing.reboot_timeout,
        )
        outcome, now = _first(found, "outcome"), _first(found, "boot")
        if outcome == "no":
            return {"rebooted": False, "boot_before": before, "boot_after": now, "seconds": 0.0}
        if outcome == "already":  # rebooted before a resume: the earlier process's reboot
            return {"rebooted": True, "boot_before": before, "boot_after": now, "seconds": 0.0}
        if outcome != "rebooted" or not now or now == before:
            raise reboot.RebootFailed(
                f"{entry.instance_id}: the boot id did not change ({before!r}): no reboot"
            )
        # the agent ran the script again after the reboot; be sure it still reports Online
        reboot.wait_online(ssm, entry.instance_id, timeout=self.timing.reboot_timeout)
        return {
            "rebooted": True,
            "boot_before": before,
            "boot_after": now,
            "seconds": round(time.monotonic() - started, 3),
        }

    def postcheck(self, entry: HostEntry, facts: dict[str, Any]) -> dict[str, Any]:
        pre = facts.get("precheck", {})
        started = time.monotonic()
        found = self._script(
            entry,
            postcheck_script(
                bool(pre.get("docker")),
                [str(c) for c in pre.get("containers", [])],
                entry.app_port,
                self.timing.health_timeout,
            ),
            "ops patch: postcheck",
        )
        return {
            "kernel": _first(found, "kernel"),
            "boot_id": _first(found, "boot"),
            "docker": _first(found, "docker") == "active",
            "containers": parse_containers(found.get("containers", [])),
            "seconds": round(time.monotonic() - started, 3),
        }

    def register(self, entry: HostEntry, _facts: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        delay, attempts = self._lb_waits()
        elb.register(
            self.clients.elbv2,
            entry.instance_id,
            entry.membership,
            delay=delay,
            max_attempts=attempts,
        )
        return {"seconds": round(time.monotonic() - started, 3)}


def _target(instance_id: str, member: elb.Membership) -> dict[str, Any]:
    target: dict[str, Any] = {"Id": instance_id}
    if member.port is not None:
        target["Port"] = member.port
    return target


def _target_state(elbv2: Any, instance_id: str, member: elb.Membership) -> str:
    items = elbv2.describe_target_health(
        TargetGroupArn=member.target_group_arn, Targets=[_target(instance_id, member)]
    )["TargetHealthDescriptions"]
    return str(items[0]["TargetHealth"]["State"]) if items else "unused"


# building and driving the plan ----------------------------------------------------
def build(
    arguments: dict[str, Any],
    settings: Settings,
    listener: Callable[[str, HostResult], None],
    clients: Clients | None = None,
) -> tuple[Plan, PatchRun]:
    """The runtime's plan from a run's arguments (a new run and a resume alike)."""
    timing_args = arguments.get("timing") or {}
    timing = Timing(
        poll=float(timing_args.get("poll", 5.0)),
        health_timeout=int(timing_args.get("health_timeout", 120)),
    )
    clients = clients or Clients.open(settings)
    entries = {
        iid: HostEntry.from_dict(iid, data)
        for iid, data in (arguments.get("entries") or {}).items()
    }
    patch_run = PatchRun(clients, entries, timing, listener)
    waves = [
        [Host(iid, entries[iid].name, ping_status="Online") for iid in wave if iid in entries]
        for wave in arguments.get("waves") or []
    ]
    max_errors = parse_max_errors(arguments.get("max_errors", "0"))
    plan = Plan(
        kind=KIND,
        arguments=arguments,
        waves=[wave for wave in waves if wave],
        steps=patch_run.steps(),
        concurrency=parse_max_errors("100%"),
        max_errors=max_errors,
        gates=[AlarmGate(clients.cloudwatch, arguments.get("alarm_names") or [])],
        record_output=True,
    )
    return plan, patch_run


def memberships(
    clients: Clients, settings: Settings, ids: Sequence[str]
) -> dict[str, list[elb.Membership]]:
    if not settings.target_groups:
        return {}
    arns = elb.target_group_arns(clients.elbv2, settings.target_groups)
    return {iid: elb.memberships(clients.elbv2, iid, arns) for iid in ids}


def execute(plan: Plan, settings: Settings, note: Callable[[str], None]) -> RunReport:
    with open_journal() as journal:
        runtime = Runtime(open_transport(settings), journal, on_result=_ignore, note=note)
        return runtime.execute(plan, settings.env)


def _ignore(_result: HostResult) -> None:
    """Results reach the user through PatchRun's listener, which knows the step."""


def resume(
    run: Run,
    settings: Settings,
    journal: Journal,
    listener: Callable[[str, HostResult], None],
    note: Callable[[str], None],
) -> RunReport:
    """Finish a run an earlier process left, or one its budget or an alarm halted,
    from its own arguments and journal; hosts set aside as failed are re-examined."""
    plan, patch_run = build(dict(run.arguments), settings, listener)
    patch_run.load(journal, run.id)
    state = JournalState.load(journal, run.id)
    again = reexamine(state)
    if again:
        names = ", ".join(
            sorted(patch_run.entries[i].name or i for i in again if i in patch_run.entries)
        )
        note(f"re-examining {len(again)} hosts set aside as failed: {names}")
    runtime = Runtime(open_transport(settings), journal, on_result=_ignore, note=note)
    return runtime.resume(plan, run, state)


def reexamine(state: JournalState) -> list[str]:
    """Open again the steps at which hosts failed; the hosts, in journal order.

    A failed host was set aside, possibly drained, with the cause unknown to
    ops. After a halt (or a crash) the operator may have fixed that cause, so
    a resume sends each failed host through the step it failed at and the
    steps after, rather than leaving it out of service or patching it blindly:
    every step looks at the host first (apply installs only packages not yet
    at their planned version, reboot only while the boot id is still the one
    precheck saw), so nothing is done twice. A host that fails again is set
    aside again and spends the budget again; the budget counts the hosts
    failed now, not the failures of the run's earlier parts.
    """
    hosts: list[str] = []
    for key, status in list(state.done.items()):
        if status != SUCCESS:
            del state.done[key]
            if key[1] not in hosts:
                hosts.append(key[1])
    return hosts


def check_resumable(run: Run) -> None:
    if "entries" not in run.arguments or "waves" not in run.arguments:
        raise BadInput(f"run {run.id} was recorded without its patch plan; it cannot be resumed")
