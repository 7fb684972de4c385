"""Where instances run: their availability zones, for plans that spread risk across zones."""

from __future__ import annotations

from collections.abc import Sequence

from ops.aws import client
from ops.config import Settings
from ops.fleet.discovery import EC2_LISTING

_IDS_PER_CALL = 200  # an instance-id filter of up to 200 values per DescribeInstances


def availability_zones(settings: Settings, instance_ids: Sequence[str]) -> dict[str, str]:
    """instance id -> availability zone, one paginated DescribeInstances per 200 ids."""
    ec2 = client(
        "ec2",
        profile=settings.profile,
        region=settings.region,
        max_attempts=settings.max_attempts,
        operations=EC2_LISTING,
    )
    zones: dict[str, str] = {}
    ids = list(instance_ids)
    for start in range(0, len(ids), _IDS_PER_CALL):
        chunk = ids[start : start + _IDS_PER_CALL]
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-id", "Values": chunk}],
            PaginationConfig={"PageSize": 1000},
        )
        for page in pages:
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    zone = (instance.get("Placement") or {}).get("AvailabilityZone", "")
                    zones[instance["InstanceId"]] = zone
    return zones
