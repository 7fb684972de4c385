"""The IAM policy each `ops` command needs, narrowed to the environment's own resources.

An operator's role should grant what `ops` calls and nothing else; which
calls each command makes is known here, next to the code that makes them,
and checked by a test that runs every command on the sandbox and compares
the calls it served with this table. Resources are narrowed where IAM
allows: SendCommand to the one document `ops` uses and to instances that
carry the environment's target_filter tags, S3 to the output bucket and
prefix; the Describe and List calls accept no resource narrower than `*`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ops.errors import BadInput

DOCUMENT = "AWS-RunShellScript"
# DescribeAvailabilityZones: a listing longer than a page goes on zone by zone
DISCOVER = (
    "ec2:DescribeInstances",
    "ec2:DescribeAvailabilityZones",
    "ssm:DescribeInstanceInformation",
)
POLL = ("ssm:ListCommands", "ssm:ListCommandInvocations")
LOAD_BALANCER = (
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:DeregisterTargets",
    "elasticloadbalancing:RegisterTargets",
)
# a deploy plan shows each group's deregistration delay beside the spec's drain_seconds
DRAIN_DELAY = "elasticloadbalancing:DescribeTargetGroupAttributes"
# the team-wide lease (ops.fleet.lock): the table is created when missing
LOCK = (
    "dynamodb:CreateTable",
    "dynamodb:DescribeTable",
    "dynamodb:UpdateTimeToLive",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
)
# What each command may call, by action. Rare paths count: GetCommandInvocation
# when a host's output passes the 2,500 characters a listing carries, S3 reads
# past 24,000, CancelCommand on Ctrl-C.
ACTIONS: dict[str, tuple[str, ...]] = {
    "inventory": (*DISCOVER, "ssm:SendCommand", *POLL),
    "run": (
        *DISCOVER,
        "ssm:SendCommand",
        *POLL,
        "ssm:GetCommandInvocation",
        "ssm:CancelCommand",
        "s3:GetObject",
    ),
    "playbook": (
        *DISCOVER,
        "ssm:SendCommand",
        *POLL,
        "ssm:GetCommandInvocation",
        "ssm:CancelCommand",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
    ),
    # status: one read-only command; install: the docker_engine role pulled as a playbook
    "docker": (
        *DISCOVER,
        "ssm:SendCommand",
        *POLL,
        "ssm:GetCommandInvocation",
        "ssm:CancelCommand",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
    ),
    # the bundle's presigned PUT is signed with the operator's key: s3:PutObject is theirs
    "logs": (
        *DISCOVER,
        "ssm:SendCommand",
        *POLL,
        "ssm:GetCommandInvocation",
        "ssm:CancelCommand",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
    ),
    # plan: one read-only command; run: drains and registers, reboots, the alarm gate
    "patch": (
        *DISCOVER,
        "ssm:SendCommand",
        *POLL,
        "ssm:GetCommandInvocation",
        "ssm:CancelCommand",
        "s3:GetObject",
        *LOAD_BALANCER,
        "cloudwatch:DescribeAlarms",
    ),
    "deploy": (
        *DISCOVER,
        "ssm:SendCommand",
        *POLL,
        "ssm:GetCommandInvocation",
        "ssm:CancelCommand",
        "ssm:GetParameters",
        "s3:GetObject",
        *LOAD_BALANCER,
        DRAIN_DELAY,
        "cloudwatch:DescribeAlarms",
        "ecr:DescribeImages",
        "ecr:GetAuthorizationToken",
        *LOCK,
    ),
}
# `ops runs resume` drives again whatever the run was
ACTIONS["runs"] = tuple(sorted({a for name in ACTIONS for a in ACTIONS[name]}))
# The pull path's hosts: the SSM agent writes command output to the bucket with
# the instance profile (the bundle itself comes through a presigned URL).
INSTANCE_ACTIONS = ("s3:PutObject",)
NO_AWS = ("sandbox", "completion", "iam", "init", "doctor")


def commands(names: Sequence[str]) -> list[str]:
    """The commands asked for (all that call AWS when none), refusing unknown names."""
    if not names:
        return list(ACTIONS)
    unknown = [n for n in names if n not in ACTIONS and n not in NO_AWS]
    if unknown:
        raise BadInput(
            f"no command {', '.join(map(repr, unknown))}: choose from {', '.join(ACTIONS)}"
        )
    return [n for n in names if n in ACTIONS]


def actions(names: Iterable[str]) -> set[str]:
    return {action for name in names for action in ACTIONS[name]}


def operator_policy(
    names: Sequence[str],
    *,
    region: str,
    bucket: str | None,
    prefix: str = "",
    target_filter: Mapping[str, str] | None = None,
    target_groups: Sequence[str] = (),
    lock_table: str = "fleetops-locks",
) -> dict[str, Any]:
    """The policy document for the operator's role, for these commands."""
    wanted = actions(names)
    statements: list[dict[str, Any]] = []

    def add(sid: str, granted: Iterable[str], resources: list[str], **extra: Any) -> None:
        chosen = sorted(a for a in granted if a in wanted)
        if chosen:
            statements.append(
                {"Sid": sid, "Effect": "Allow", "Action": chosen, "Resource": resources, **extra}
            )

    # No resource-level permissions exist for these: `*` is the narrowest IAM takes.
    add("Discover", DISCOVER, ["*"])
    add("FollowCommands", (*POLL, "ssm:GetCommandInvocation", "ssm:CancelCommand"), ["*"])
    add("SendTheOneDocument", ("ssm:SendCommand",), [f"arn:aws:ssm:{region}::document/{DOCUMENT}"])
    instance = [f"arn:aws:ec2:{region}:*:instance/*"]
    if target_filter:
        condition = {
            "StringEquals": {f"ssm:resourceTag/{k}": v for k, v in sorted(target_filter.items())}
        }
        add("SendToTheEnvironment", ("ssm:SendCommand",), instance, Condition=condition)
    else:
        add("SendToTheEnvironment", ("ssm:SendCommand",), instance)
    if bucket:
        add("ReadOutput", ("s3:GetObject",), [f"arn:aws:s3:::{bucket}/{prefix}*"])
        add(
            "StageBundles",  # playbook bundles, and log bundles hosts put through a presigned URL
            ("s3:PutObject", "s3:DeleteObject"),
            [f"arn:aws:s3:::{bucket}/{prefix}pull/*", f"arn:aws:s3:::{bucket}/{prefix}logs/*"],
        )
    add("ReadLoadBalancers", (*LOAD_BALANCER[:2], DRAIN_DELAY), ["*"])
    groups = [
        g if g.startswith("arn:") else f"arn:aws:elasticloadbalancing:{region}:*:targetgroup/{g}/*"
        for g in target_groups
    ]
    add("DrainAndRegister", LOAD_BALANCER[2:], groups or ["*"])
    add("ReadAlarms", ("cloudwatch:DescribeAlarms",), ["*"])
    add("ReadServiceParameters", ("ssm:GetParameters",), [f"arn:aws:ssm:{region}:*:parameter/*"])
    add("ResolveImages", ("ecr:DescribeImages",), [f"arn:aws:ecr:{region}:*:repository/*"])
    add("RegistryLogin", ("ecr:GetAuthorizationToken",), ["*"])
    add("TeamLock", LOCK, [f"arn:aws:dynamodb:{region}:*:table/{lock_table}"])
    return {"Version": "2012-10-17", "Statement": statements}


def instance_profile_policy(bucket: str | None, prefix: str = "") -> dict[str, Any]:
    """What the hosts need beyond AmazonSSMManagedInstanceCore: writing command output."""
    resource = f"arn:aws:s3:::{bucket}/{prefix}*" if bucket else "arn:aws:s3:::OUTPUT_BUCKET/*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteCommandOutput",
                "Effect": "Allow",
                "Action": list(INSTANCE_ACTIONS),
                "Resource": [resource],
            }
        ],
    }


def granted(policy: Mapping[str, Any]) -> set[str]:
    """Every action a policy document allows."""
    return {a for statement in policy["Statement"] for a in statement["Action"]}
